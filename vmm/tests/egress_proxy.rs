//! The egress proxy as it runs beside a sandbox (the real `paddock __egress` binary, under its
//! seccomp filter) driven on this host as the guest's forwarder drives it: every thread is
//! filtered, names are resolved with the C library's resolver under the filter, decisions are
//! logged, and what the filter refuses fails with EPERM instead of ending the proxy. No KVM
//! needed; `e2e_egress` drives the same binary from a real guest.

use paddock_protocol::egress::EgressHello;
use paddock_vmm::sandbox::egress::{self, EgressFiles};
use paddock_vmm::sandbox::SandboxPaths;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::seccomp_modes;

/// A running proxy and the process it watches.
struct Proxy {
    proxy: Child,
    watched: Child,
    socket: std::path::PathBuf,
    log: std::path::PathBuf,
    _scratch: tempfile::TempDir,
}

impl Proxy {
    fn scratch_path(&self) -> &Path {
        self._scratch.path()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
        let _ = self.watched.kill();
        let _ = self.watched.wait();
    }
}

/// Starts a proxy for sandbox `e` whose global policy is `policy`.
fn start(policy: &str) -> Proxy {
    start_as(policy, None)
}

/// Starts a proxy as [`start`] does, run by user and group `ids` if given (its files theirs).
fn start_as(policy: &str, ids: Option<(u32, u32)>) -> Proxy {
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("state");
    let config = scratch.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("policy.json"), policy).unwrap();
    let files = EgressFiles::new(&state);
    files.create().unwrap();
    let paths = SandboxPaths::new(&state, "e").unwrap();
    std::fs::create_dir_all(&paths.dir).unwrap();
    let socket = egress::socket(&paths);
    // A file beside the proxy's directories that its jail must not show.
    std::fs::write(scratch.path().join("outside"), b"host file").unwrap();
    let watched = Command::new("sleep").arg("600").spawn().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_paddock"));
    if let Some((uid, gid)) = ids {
        use std::os::unix::process::CommandExt;
        chown_tree(scratch.path(), uid, gid);
        command.uid(uid).gid(gid);
    }
    let mut proxy = command
        .arg("__egress")
        .arg("--state-dir")
        .arg(&state)
        .arg("--name")
        .arg("e")
        .arg("--vmm-pid")
        .arg(watched.id().to_string())
        .arg("--ca")
        .arg("test-ca")
        .env("PADDOCK_CONFIG_DIR", &config)
        // One name answered without DNS (as the e2e tests' are); every other goes to the C
        // library's resolver.
        .env("PADDOCK_EGRESS_RESOLVE", "allowed.example=127.0.0.1")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !socket.exists() {
        if let Ok(Some(status)) = proxy.try_wait() {
            panic!("the egress proxy ended at start: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never listened"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Proxy {
        proxy,
        watched,
        socket,
        log: files.log(),
        _scratch: scratch,
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// `CONNECT host:port` as the guest's forwarder sends it; the proxy's answer head.
fn connect(socket: &Path, host: &str, port: u16) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = EgressHello::Proxy.encode();
    request.extend_from_slice(
        format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes(),
    );
    stream.write_all(&request).unwrap();
    let mut head = Vec::new();
    let mut block = [0u8; 512];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        match stream.read(&mut block) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&block[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A `RESOLVE` question as the guest's DNS stub sends it; the answer line.
fn resolve(socket: &Path, name: &str) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(&EgressHello::Resolve(name.to_string()).encode())
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// The log's `reason` for `host`, waiting for its line.
fn logged_reason(log: &Path, host: &str) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            if entry["host"] == host {
                return entry["reason"].as_str().unwrap_or("").to_string();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no log line for {host}: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_filtered_proxy_resolves_decides_and_logs_and_every_thread_is_filtered() {
    let mut proxy = start(r#"{"preset": "open"}"#);
    let socket = proxy.socket.clone();
    // `localhost` resolves through the C library's resolver (the hosts file) under the filter;
    // the loopback addresses it gives are then refused.
    let head = connect(&socket, "localhost", 9);
    assert!(!head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(logged_reason(&proxy.log, "localhost"), "address");
    // A name no resolver knows: a query goes out (or the resolver fails), and it is logged.
    let head = connect(&socket, "no-such-host.invalid", 443);
    assert!(!head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        logged_reason(&proxy.log, "no-such-host.invalid"),
        "unresolved"
    );
    // The guest's DNS: an allowed name gets a stable address (the shared name map is locked,
    // written and renamed into place); the same one again.
    let first = resolve(&socket, "allowed.example");
    assert!(first.starts_with("A 198.1"), "{first:?}");
    assert_eq!(resolve(&socket, "allowed.example"), first);
    // Many at once (more than its blocking threads): each answered, none starts a thread.
    let answers: Vec<_> = (0..20)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || connect(&socket, &format!("n{i}.invalid"), 443))
        })
        .collect();
    for answer in answers {
        assert!(!answer.join().unwrap().is_empty());
    }
    assert!(
        proxy.proxy.try_wait().unwrap().is_none(),
        "the proxy died under its filter"
    );
    let modes = seccomp_modes(proxy.proxy.id());
    assert!(
        modes.iter().all(|m| m == "2"),
        "every thread of the egress proxy is filtered: {modes:?}"
    );
}

#[test]
fn the_proxy_is_jailed_without_privileges_and_keeps_the_network() {
    assert_jailed(&start(r#"{"preset": "open"}"#));
}

#[test]
fn run_by_an_ordinary_user_the_proxy_is_jailed_in_a_user_namespace() {
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: becoming another user needs root");
        return;
    }
    let proxy = start_as(r#"{"preset": "open"}"#, Some((65534, 65534)));
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/user")).unwrap();
    assert_ne!(
        ns(&proxy.proxy.id().to_string()),
        ns("self"),
        "its own user namespace"
    );
    assert_jailed(&proxy);
}

/// Checks a running proxy's confinement and that it still resolves names and connects out.
fn assert_jailed(proxy: &Proxy) {
    let pid = proxy.proxy.id();
    common::assert_unprivileged(pid);
    let ns = |p: &str, kind: &str| std::fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
    let me = std::process::id().to_string();
    assert_ne!(
        ns(&pid.to_string(), "mnt"),
        ns(&me, "mnt"),
        "its own mount namespace"
    );
    assert_eq!(
        ns(&pid.to_string(), "net"),
        ns(&me, "net"),
        "the host's network"
    );
    // Its root holds its files, the resolver's and nothing else of the host's.
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    let sees = |path: &Path| root.join(path.strip_prefix("/").unwrap()).exists();
    assert!(sees(&proxy.socket), "its socket");
    assert!(
        sees(&proxy.log) || sees(proxy.log.parent().unwrap()),
        "its log"
    );
    assert!(!sees(Path::new("/usr")), "no /usr");
    assert!(!sees(Path::new("/proc/self")), "no /proc");
    assert!(
        !sees(&proxy.scratch_path().join("outside")),
        "nothing else of the scratch directory"
    );
    assert_eq!(
        sees(Path::new("/etc/hosts")),
        Path::new("/etc/hosts").exists(),
        "the resolver's files"
    );
    // It still resolves with them and connects out: `localhost` from /etc/hosts is refused as
    // a loopback address, not as unresolved.
    let head = connect(&proxy.socket, "localhost", 443);
    assert!(!head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(logged_reason(&proxy.log, "localhost"), "address");
}

#[test]
fn the_proxy_ends_with_its_vmm_under_its_filter() {
    let mut proxy = start(r#"{"preset": "balanced"}"#);
    let _ = connect(&proxy.socket, "example.invalid", 443);
    proxy.watched.kill().unwrap();
    proxy.watched.wait().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = proxy.proxy.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the proxy outlived its VMM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
