//! End-to-end tests of egress (docs/EGRESS.md): a sandbox's only way out is its egress proxy on
//! the host, which follows the policy and adds the API key the guest never sees. Local servers
//! only (a test PKI, a fake Anthropic API): no test depends on the internet. The proxy is told
//! to resolve the test names to loopback (`PADDOCK_EGRESS_RESOLVE`) and to trust the test root
//! (`PADDOCK_EGRESS_EXTRA_ROOTS`); loopback stays refused unless a CIDR rule allows it.
//!
//! They need hardware KVM (natively, or inside the lab: `cargo xtask ci`); without it each test
//! says so and returns.

mod common;

use common::{agent_image_available, e2e_available, file_contains, memory_file, text, Scratch};
use paddock_egress::testing::{
    fake_anthropic, http_hello, https_hello, tcp_echo, RequestLog, TestPki, Upstream,
};
use std::net::SocketAddr;
use std::process::Output;

fn available() -> bool {
    e2e_available() && agent_image_available()
}

/// The key the fake API must receive; it must never be found in the sandbox.
const REAL_KEY: &str = "sk-ant-test-4f1c9e0b7d2a63e85c1f0a9b4d7e2c61";
const ANSWER: &str = "canned answer from the fake API";
/// The start of the placeholder the guest holds instead of the key.
const PLACEHOLDER: &str = "paddock-placeholder-anthropic";

/// The local servers the sandbox's names resolve to.
struct Upstreams {
    _hello: Upstream,
    _plain: Upstream,
    _echo: Upstream,
    _api: Upstream,
    api_requests: RequestLog,
    env: Vec<(String, String)>,
}

impl Upstreams {
    fn start(s: &Scratch) -> Self {
        let pki = TestPki::new();
        let root = s.path("test-root.pem");
        pki.write_root(&root).unwrap();
        let hello = https_hello(
            &pki,
            &["allowed.test", "denied.test", "private.test"],
            "127.0.0.1:443".parse::<SocketAddr>().unwrap(),
        );
        let plain = http_hello("127.0.0.1:80".parse::<SocketAddr>().unwrap());
        let echo = tcp_echo("127.0.0.1:7777".parse::<SocketAddr>().unwrap());
        let (api, api_requests) =
            fake_anthropic(&pki, "127.0.0.2:443".parse::<SocketAddr>().unwrap(), ANSWER);
        let resolve = "allowed.test=127.0.0.1,denied.test=127.0.0.1,private.test=127.0.0.3,\
                       plain.test=127.0.0.1,echo.test=127.0.0.1,api.anthropic.com=127.0.0.2";
        Upstreams {
            _hello: hello,
            _plain: plain,
            _echo: echo,
            _api: api,
            api_requests,
            env: vec![
                ("PADDOCK_EGRESS_LOG".into(), "debug".into()),
                ("PADDOCK_EGRESS_RESOLVE".into(), resolve.into()),
                (
                    "PADDOCK_EGRESS_EXTRA_ROOTS".into(),
                    root.display().to_string(),
                ),
            ],
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// `paddock ARGS` with the upstreams' environment.
fn cli(s: &Scratch, up: &Upstreams, args: &[&str]) -> Output {
    s.cli_env(args, &up.env())
}

/// Runs `script` as the agent user in sandbox `name` (made for `dir` if new) through `paddock
/// run shell`, which gives it the session's proxy settings, placeholders and CA.
fn agent_sh(s: &Scratch, up: &Upstreams, name: &str, dir: &str, script: &str) -> Output {
    cli(
        s,
        up,
        &[
            "run", "--name", name, "shell", dir, "--", "bash", "-c", script,
        ],
    )
}

fn stdout_ok(out: &Output, what: &str, s: &Scratch, name: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: stdout {}\nstderr {}\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        s.sandbox_logs(name),
        egress_logs(s, name)
    );
    text(&out.stdout)
}

/// The last egress decisions and the sandbox's proxy log, for failure messages.
fn egress_logs(s: &Scratch, name: &str) -> String {
    let decisions =
        std::fs::read_to_string(s.state_dir().join("egress/log.jsonl")).unwrap_or_default();
    let tail: Vec<&str> = decisions.lines().rev().take(15).collect();
    let proxy = std::fs::read_to_string(
        s.state_dir()
            .join("sandboxes")
            .join(name)
            .join("egress-proxy.log"),
    )
    .unwrap_or_default();
    let proxy_tail: Vec<&str> = proxy.lines().rev().take(30).collect();
    format!(
        "--- egress decisions (newest first) ---\n{}\n--- {name}: egress-proxy.log (newest first) ---\n{}",
        tail.join("\n"),
        proxy_tail.join("\n")
    )
}

/// The decisions logged for `host` so far (JSON lines).
fn decisions(s: &Scratch, host: &str) -> Vec<serde_json::Value> {
    s.ok(&["policy", "log", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["host"] == host)
        .collect()
}

fn project(s: &Scratch, name: &str) -> String {
    let dir = s.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(&dir).unwrap().display().to_string()
}

#[test]
fn egress_follows_the_policy_and_the_key_never_enters_the_sandbox() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    let up = Upstreams::start(&s);
    let dir = project(&s, "proj");
    let out = s.cli_env(
        &["secret", "set", "anthropic", "--from-env", "TEST_KEY"],
        &[("TEST_KEY", REAL_KEY)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let secrets = std::fs::metadata(s.config_dir().join("secrets.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&secrets.permissions()) & 0o777,
        0o600
    );
    // Loopback is refused even for allowed names unless a CIDR rule allows it: allow the two
    // test addresses, not 127.0.0.3 (private.test).
    s.ok(&[
        "policy",
        "allow",
        "allowed.test",
        "private.test",
        "plain.test",
        "echo.test:7777",
        "127.0.0.1/32",
        "127.0.0.2/32",
    ]);

    // Through the proxy settings: the allowed host answers, the denied one is refused.
    let out = agent_sh(&s, &up, "eg", &dir, "curl -sS -k https://allowed.test/");
    assert_eq!(
        stdout_ok(&out, "allowed host", &s, "eg"),
        "hello from allowed.test\n"
    );
    let out = agent_sh(&s, &up, "eg", &dir, "curl -sS -k https://denied.test/");
    assert_ne!(out.status.code(), Some(0), "denied.test answered");
    assert!(
        decisions(&s, "denied.test")
            .iter()
            .any(|d| d["verdict"] == "deny" && d["sandbox"] == "eg"),
        "no denial logged"
    );
    // An allowed name on a loopback address no CIDR rule covers.
    let out = agent_sh(&s, &up, "eg", &dir, "curl -sS -k https://private.test/");
    assert_ne!(out.status.code(), Some(0), "private.test answered");
    assert!(
        decisions(&s, "private.test")
            .iter()
            .any(|d| d["verdict"] == "deny"
                && d["rule"].as_str().is_some_and(|r| r.contains("loopback"))),
        "{:?}",
        decisions(&s, "private.test")
    );

    // DNS inside the guest: allowed names get a stable address, denied ones NXDOMAIN.
    let out = agent_sh(
        &s,
        &up,
        "eg",
        &dir,
        "getent hosts allowed.test | cut -d' ' -f1; getent hosts denied.test; echo status=$?",
    );
    let got = stdout_ok(&out, "dns", &s, "eg");
    assert!(got.starts_with("198.1"), "{got}");
    assert!(got.trim_end().ends_with("status=2"), "{got}");

    // Programs that ignore the proxy settings are captured and checked the same way.
    let out = agent_sh(
        &s,
        &up,
        "eg",
        &dir,
        "curl -sS -k --noproxy '*' https://allowed.test/ && curl -sS --noproxy '*' http://plain.test/",
    );
    assert_eq!(
        stdout_ok(&out, "captured", &s, "eg"),
        "hello from allowed.test\nhello from plain.test\n"
    );
    let out = agent_sh(
        &s,
        &up,
        "eg",
        &dir,
        "curl -sS -k --max-time 20 --noproxy '*' https://denied.test/",
    );
    assert_ne!(out.status.code(), Some(0), "captured denied.test answered");

    // Non-HTTP TCP only with a port rule; UDP and ICMP never leave.
    let script = r#"python3 - <<'EOF'
import socket
s = socket.create_connection(("echo.test", 7777), timeout=20)
s.sendall(b"ping\n")
print(s.recv(100).decode().strip())
try:
    t = socket.create_connection(("allowed.test", 7777), timeout=20)
    t.sendall(b"ping\n")
    print("other port:", t.recv(100) or b"closed")
except OSError as e:
    print("other port: refused")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
try:
    u.sendto(query, ("1.1.1.1", 53))
    u.recvfrom(512)
    print("udp: answered")
except OSError:
    print("udp: no answer")
EOF
ping -c 1 -W 3 1.1.1.1 >/dev/null 2>&1 && echo icmp: answered || echo icmp: no answer"#;
    let out = agent_sh(&s, &up, "eg", &dir, script);
    assert_eq!(
        stdout_ok(&out, "tcp/udp/icmp", &s, "eg"),
        "ping\nother port: b'closed'\nudp: no answer\nicmp: no answer\n"
    );

    // The fake API gets the real key; the guest only ever has the placeholder.
    let call_api = r#"echo "key=$ANTHROPIC_API_KEY"
curl -sS https://api.anthropic.com/v1/messages -H "x-api-key: $ANTHROPIC_API_KEY" \
  -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
  -d '{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'"#;
    let out = agent_sh(&s, &up, "eg", &dir, call_api);
    let got = stdout_ok(&out, "api", &s, "eg");
    assert!(
        got.starts_with("key=paddock-placeholder-anthropic\n"),
        "{got}"
    );
    assert!(got.contains(ANSWER), "{got}");
    let keys: Vec<String> = up
        .api_requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.header("x-api-key").map(str::to_string))
        .collect();
    assert_eq!(keys, vec![REAL_KEY.to_string()]);
    // The placeholder bound for another host, in plain HTTP, is blocked.
    let out = agent_sh(
        &s,
        &up,
        "eg",
        &dir,
        r#"curl -sS -f http://plain.test/ -H "x-api-key: $ANTHROPIC_API_KEY""#,
    );
    assert_ne!(out.status.code(), Some(0), "placeholder sent to plain.test");

    // The real Claude Code talks to the fake API through the proxy.
    let out = cli(
        &s,
        &up,
        &[
            "run",
            "--timeout",
            "240",
            "--name",
            "eg",
            "claude",
            &dir,
            "--",
            "-p",
            "say hi",
        ],
    );
    let got = stdout_ok(&out, "claude -p", &s, "eg");
    assert!(got.contains(ANSWER), "{got}");

    // A container of the guest's engine obeys the same policy, and a build step fetches from
    // an allowed host.
    let script = r#"set -e
d=$(mktemp -d)
cp /bin/busybox "$d/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "wget", "-q", "-O", "/got", "http://plain.test/"]\nENTRYPOINT ["/bin/busybox"]\n' > "$d/Dockerfile"
docker build -q -t fetched "$d" >/dev/null
docker run --rm fetched cat /got
docker run --rm fetched wget -q -O - http://plain.test/
docker run --rm fetched wget -q -T 20 -O - http://denied.test/ && echo denied-answered || echo denied-refused"#;
    let out = agent_sh(&s, &up, "eg", &dir, script);
    assert_eq!(
        stdout_ok(&out, "docker", &s, "eg"),
        "hello from plain.test\nhello from plain.test\ndenied-refused\n"
    );

    // A policy change applies to the running sandbox at its next connection.
    s.ok(&["policy", "deny", "--sandbox", "eg", "allowed.test"]);
    let out = agent_sh(&s, &up, "eg", &dir, "curl -sS -k https://allowed.test/");
    assert_ne!(
        out.status.code(),
        Some(0),
        "allowed.test answered after deny"
    );

    // Nothing of the key in the guest's memory, its console or `ls --json`. The placeholder is
    // put in a tmpfs file first, so the search has something it must find (a freed page of an
    // ended session may be reused, and was, by the time of the snapshot).
    let out = agent_sh(
        &s,
        &up,
        "eg",
        &dir,
        r#"printf '%s\n' "$ANTHROPIC_API_KEY" > /dev/shm/placeholder-copy; cut -c1-29 /dev/shm/placeholder-copy"#,
    );
    let copied = stdout_ok(&out, "placeholder copy", &s, "eg");
    let snap = s.path("snap");
    let snapshotted = s.ok(&["snapshot", "eg", snap.to_str().unwrap()]);
    let memory = memory_file(&snap);
    assert!(
        !file_contains(&memory, REAL_KEY),
        "the key is in the guest's memory"
    );
    if !file_contains(&memory, PLACEHOLDER) {
        // Tell a snapshot that lost pages from guest writes that never reached the VMM's
        // mapping (seen only in the lab, where KVM runs nested under qemu TCG).
        let live = live_guest_memory_holds(s.pid_of("eg"), PLACEHOLDER);
        let again = s.path("snap-again");
        s.ok(&["snapshot", "eg", again.to_str().unwrap()]);
        let in_second = file_contains(&memory_file(&again), PLACEHOLDER);
        panic!(
            "the memory search found not even the placeholder (the guest's copy starts \
             {copied:?}; {snapshotted}; {} bytes of memory file); the VMM's live guest memory \
             holds it: {live:?}; a second snapshot holds it: {in_second}\n{}",
            std::fs::metadata(&memory).map_or(0, |m| m.len()),
            s.sandbox_logs("eg")
        );
    }
    assert!(!s.sandbox_logs("eg").contains(REAL_KEY));
    assert!(!s.ok(&["ls", "--json"]).contains(REAL_KEY));
    for entry in walk(&snap) {
        assert!(
            !file_contains(&entry, REAL_KEY),
            "the key is in {}",
            entry.display()
        );
    }

    // After a reset and in a fork, the sandbox's rules and the key still apply.
    let out = cli(&s, &up, &["reset", "eg"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = agent_sh(&s, &up, "eg", &dir, "curl -sS -k https://allowed.test/");
    assert_ne!(
        out.status.code(),
        Some(0),
        "allowed.test answered after reset"
    );
    let out = agent_sh(&s, &up, "eg", &dir, call_api);
    assert!(stdout_ok(&out, "api after reset", &s, "eg").contains(ANSWER));
    let out = cli(
        &s,
        &up,
        &[
            "fork",
            snap.to_str().unwrap(),
            "--count",
            "1",
            "--prefix",
            "egf",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = agent_sh(&s, &up, "egf-0", &dir, "curl -sS -k https://allowed.test/");
    assert_ne!(out.status.code(), Some(0), "the fork reached allowed.test");
    let out = agent_sh(&s, &up, "egf-0", &dir, call_api);
    assert!(stdout_ok(&out, "api in a fork", &s, "egf-0").contains(ANSWER));
    let keys: Vec<Option<String>> = up
        .api_requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.starts_with("/v1/messages"))
        .map(|r| r.header("x-api-key").map(str::to_string))
        .collect();
    assert!(keys.len() >= 4, "{keys:?}");
    assert!(
        keys.iter().all(|k| k.as_deref() == Some(REAL_KEY)),
        "{keys:?}"
    );

    s.ok(&["rm", "--force", "eg", "egf-0"]);
    s.assert_clean();
}

/// Where `needle` occurs in the VMM's guest RAM (its private mapping of a snapshot's memory
/// file, or its guest-RAM memfd), read through `/proc/PID/mem`, with that page's pagemap entry:
/// a diagnostic for a failed memory search.
fn live_guest_memory_holds(pid: u32, needle: &str) -> Result<Option<String>, String> {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| e.to_string())?;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|e| e.to_string())?;
    let pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).map_err(|e| e.to_string())?;
    let needle = needle.as_bytes();
    const CHUNK: usize = 8 << 20;
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [range, _perms, offset, _dev, _inode, path, ..] = fields[..] else {
            continue;
        };
        if !path.contains("memory-") && !path.contains("paddock-guest-ram") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(start, 16),
            u64::from_str_radix(end, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        let mut buf = vec![0u8; CHUNK + needle.len()];
        let mut at = start;
        while at < end {
            let len = usize::try_from(end - at).map_or(buf.len(), |left| left.min(buf.len()));
            mem.read_exact_at(&mut buf[..len], at)
                .map_err(|e| format!("reading {at:#x}: {e}"))?;
            if let Some(i) = memchr::memmem::find(&buf[..len], needle) {
                let va = at + i as u64;
                let mut entry = [0u8; 8];
                pagemap
                    .read_exact_at(&mut entry, va / 4096 * 8)
                    .map_err(|e| e.to_string())?;
                return Ok(Some(format!(
                    "at {va:#x} in {line:?} (file offset {:#x}), pagemap entry {:#018x}",
                    va - start + offset,
                    u64::from_le_bytes(entry)
                )));
            }
            at += CHUNK as u64;
        }
    }
    Ok(None)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The memory search itself: text after NULs on its line, in a sparse file, across the 8 MiB
/// read boundary, and no false match.
#[test]
fn the_memory_search_finds_bytes_grep_would_miss() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mem");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(64 << 20).unwrap();
    file.write_all_at(b"\0\0\0HOME=/root\0paddock-placeholder-x\0", 40 << 20)
        .unwrap();
    // Straddling the first read's end (8 MiB plus the needle's length, from the data's start).
    let data = 16u64 << 20;
    let needle = b"straddling-needle";
    file.write_all_at(&vec![7u8; 9 << 20], data).unwrap();
    file.write_all_at(needle, data + (8 << 20) + needle.len() as u64 - 5)
        .unwrap();
    assert!(file_contains(
        &path,
        PLACEHOLDER.trim_end_matches("anthropic")
    ));
    assert!(file_contains(&path, "paddock-placeholder-x"));
    assert!(file_contains(&path, "straddling-needle"));
    assert!(!file_contains(&path, REAL_KEY));
}
