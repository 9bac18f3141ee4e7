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
    let watched = Command::new("sleep").arg("600").spawn().unwrap();
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_paddock"))
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
