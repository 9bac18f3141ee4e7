//! What a hostile guest cannot make the proxy hold: a 1 MiB request line, thousands of
//! connections that send nothing or half a hello.

use std::io::ErrorKind;
use std::time::Duration;

use paddock_protocol::egress::{EgressHello, ResolveAnswer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::harness::*;

const ALLOW: &str = r#"{"preset": "locked", "allow": ["allowed.test"]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_connect_line_is_refused_unread() {
    let proxy = Setup::new(ALLOW, &[("allowed.test", localhost())])
        .start()
        .await;
    let stream = proxy.open(&EgressHello::Proxy).await;
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let mut line = b"CONNECT ".to_vec();
        line.resize(1 << 20, b'a');
        line.extend_from_slice(b":443 HTTP/1.1\r\n\r\n");
        writer.write_all(&line).await
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, reader.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // The proxy stopped reading after its bound and closed: the rest of the line never went in.
    let sent = tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
    let error = sent.expect_err("the proxy read the whole mebibyte");
    assert!(
        matches!(
            error.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "{error}"
    );
    let entry = proxy
        .log_entry(|entry| entry["reason"] == "bad-request")
        .await;
    assert_eq!(entry["verdict"], "deny");
}

/// Open file descriptors of this process.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A connection to the proxy's socket, retried while the listen backlog is full.
async fn connect_patiently(proxy: &Proxy) -> UnixStream {
    loop {
        match UnixStream::connect(&proxy.socket).await {
            Ok(stream) => return stream,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(error) => panic!("connecting: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_half_open_connections_are_bounded() {
    // The issue's figure: 10,000 half-open connections (the test process holds their client
    // ends, so it needs the descriptors; the hard limit is raised to where it allows).
    const HALF_OPEN: usize = 10_000;
    const LIMIT: usize = 32;
    raise_descriptor_limit(HALF_OPEN as u64 + 1_000);
    let mut setup = Setup::new(ALLOW, &[("allowed.test", localhost())]);
    setup.config.limits.max_connections = LIMIT;
    setup.config.limits.handshake_timeout = Duration::from_secs(8);
    let proxy = setup.start().await;
    let before = open_descriptors();

    let half_hello = EgressHello::Resolve("allowed.test".into()).encode();
    let half_hello = &half_hello[..half_hello.len() / 2];
    let started = std::time::Instant::now();
    let mut idle = Vec::with_capacity(HALF_OPEN);
    for i in 0..HALF_OPEN {
        let mut stream = connect_patiently(&proxy).await;
        if i % 2 == 1 {
            // Refused connections may already be closed: a failed write is fine.
            let _ = stream.write_all(half_hello).await;
        }
        idle.push(stream);
    }
    // All of them while the first ones are still within their handshake time.
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "opening took {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Beyond the limit, connections were closed at once: the proxy holds at most LIMIT.
    // (The reactor has seen every close by now; `try_read` reports it without waiting.)
    let closed = idle
        .iter()
        .filter(|stream| {
            let mut byte = [0u8; 1];
            match stream.try_read(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(error) => error.kind() != ErrorKind::WouldBlock,
            }
        })
        .count();
    assert!(
        closed >= HALF_OPEN - LIMIT - 8,
        "only {closed} of {HALF_OPEN} were closed"
    );
    let held = open_descriptors().saturating_sub(before + HALF_OPEN);
    assert!(held <= LIMIT + 16, "the proxy holds {held} descriptors");

    // Meanwhile a normal question is answered (once the half-open ones time out).
    let deadline = tokio::time::Instant::now() + WAIT;
    let answer = loop {
        let mut stream = connect_patiently(&proxy).await;
        let hello = EgressHello::Resolve("allowed.test".into()).encode();
        let mut answer = Vec::new();
        if stream.write_all(&hello).await.is_ok() {
            let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
        }
        if !answer.is_empty() {
            break ResolveAnswer::decode(&answer).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer while flooded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(matches!(answer, ResolveAnswer::Address(_)));
    drop(idle);

    // The limit was logged once per burst, not once per connection.
    let limit_lines = proxy
        .log_entries()
        .iter()
        .filter(|entry| entry["reason"] == "connection-limit")
        .count();
    assert!(
        (1..=50).contains(&limit_lines),
        "{limit_lines} connection-limit lines"
    );
    proxy.stop().await.unwrap();
}

/// Raises this process's open-file soft limit to `wanted` (as far as the hard limit allows);
/// fails the test when even the hard limit is lower.
fn raise_descriptor_limit(wanted: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= wanted,
        "the open-file hard limit ({hard}) is below the {wanted} this test needs"
    );
    if limit.current.is_some_and(|current| current < wanted) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum: limit.maximum,
            },
        )
        .expect("raise the open-file limit");
    }
}
