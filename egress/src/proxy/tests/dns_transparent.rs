//! `RESOLVE` and `TRANSPARENT`: stable addresses handed out for allowed names, and captured
//! connections to them mapped back to the name; non-HTTP TCP only with an explicit port rule.

use std::net::{IpAddr, SocketAddr};

use paddock_protocol::egress::{EgressHello, ResolveAnswer};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::harness::*;
use crate::proxy::{is_stable, StableNames};
use crate::testing::{http_hello, https_hello, tcp_echo, TestPki};

const ALLOW_WITH_LOOPBACK: &str =
    r#"{"preset": "locked", "allow": ["allowed.test", "127.0.0.1/32"]}"#;

async fn stable_address(proxy: &Proxy, name: &str) -> IpAddr {
    match proxy.resolve(name).await {
        ResolveAnswer::Address(address) => IpAddr::V4(address),
        ResolveAnswer::NxDomain => panic!("{name} got NXDOMAIN"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_answers_allowed_names_only() {
    let proxy = Setup::new(
        ALLOW_WITH_LOOPBACK,
        &[("allowed.test", localhost()), ("denied.test", localhost())],
    )
    .start()
    .await;
    let address = stable_address(&proxy, "allowed.test").await;
    assert!(is_stable(address));
    assert_eq!(stable_address(&proxy, "allowed.test").await, address);
    // The shared map says the same.
    let map = StableNames::open(&proxy.names).unwrap();
    assert_eq!(
        map.cached_address("allowed.test").map(IpAddr::V4),
        Some(address)
    );
    assert_eq!(proxy.resolve("denied.test").await, ResolveAnswer::NxDomain);
    // Allowed but resolving nowhere: NXDOMAIN too (`.invalid` never resolves).
    proxy.set_policy(r#"{"preset": "locked", "allow": ["**.invalid"]}"#);
    assert_eq!(
        proxy.resolve("nothing.invalid").await,
        ResolveAnswer::NxDomain
    );
    let allowed = proxy
        .log_entry(|entry| {
            entry_is(
                entry,
                &[("path", json!("dns")), ("verdict", json!("allow"))],
            )
        })
        .await;
    assert_eq!(allowed["address"], address.to_string());
    let denied = proxy
        .log_entry(|entry| entry["host"] == "denied.test")
        .await;
    assert_eq!(denied["verdict"], "deny");
    assert_eq!(denied["path"], "dns");
    let unresolved = proxy
        .log_entry(|entry| entry["host"] == "nothing.invalid")
        .await;
    assert_eq!(unresolved["reason"], "unresolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_to_a_stable_address_goes_to_its_name() {
    let pki = TestPki::new();
    let https = https_hello(&pki, &["allowed.test"], localhost());
    let http = http_hello(localhost());
    let proxy = Setup::new(ALLOW_WITH_LOOPBACK, &[("allowed.test", localhost())])
        .start()
        .await;
    let address = stable_address(&proxy, "allowed.test").await;

    let hello = EgressHello::Transparent(SocketAddr::new(address, https.addr.port()));
    let stream = proxy.open(&hello).await;
    let mut tls = tls(stream, "allowed.test", pki.client_config())
        .await
        .unwrap();
    assert!(get(&mut tls, "allowed.test")
        .await
        .ends_with("hello from allowed.test\n"));

    let hello = EgressHello::Transparent(SocketAddr::new(address, http.addr.port()));
    let mut stream = proxy.open(&hello).await;
    assert!(get(&mut stream, "allowed.test")
        .await
        .ends_with("hello from allowed.test\n"));
    // Allowed connections are logged when they end.
    drop((tls, stream));

    let entry = proxy
        .log_entry(|entry| {
            entry_is(
                entry,
                &[("path", json!("transparent")), ("verdict", json!("allow"))],
            )
        })
        .await;
    assert_eq!(entry["host"], "allowed.test");

    // A stable address nobody handed out is a literal target in the deny set.
    let unknown = SocketAddr::new("198.19.255.254".parse().unwrap(), https.addr.port());
    let mut stream = proxy.open(&EgressHello::Transparent(unknown)).await;
    // The proxy may refuse and close before the request is written: a failed write is fine.
    let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(read_all(&mut stream).await.is_empty());
    let entry = proxy
        .log_entry(|entry| entry["host"] == "198.19.255.254")
        .await;
    assert_eq!(entry["verdict"], "deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tcp_needs_an_explicit_port_rule() {
    let echo = tcp_echo(localhost());
    let port = echo.addr.port();
    let proxy = Setup::new(
        r#"{"preset": "locked", "allow": ["echo.test", "127.0.0.1/32"]}"#,
        &[("echo.test", localhost())],
    )
    .start()
    .await;
    let address = stable_address(&proxy, "echo.test").await;
    let hello = EgressHello::Transparent(SocketAddr::new(address, port));

    let mut stream = proxy.open(&hello).await;
    stream.write_all(b"\x00\x01 not http\n").await.unwrap();
    assert!(read_all(&mut stream).await.is_empty());
    let entry = proxy.log_entry(|entry| entry["verdict"] == "deny").await;
    assert_eq!(entry["reason"], "needs-port-rule");

    proxy.set_policy(&format!(
        r#"{{"preset": "locked", "allow": ["echo.test:{port}", "127.0.0.1/32"]}}"#
    ));
    let mut stream = proxy.open(&hello).await;
    stream.write_all(b"\x00\x01 not http\n").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_all(&mut stream).await, b"\x00\x01 not http\n");
    let entry = proxy
        .log_entry(|entry| {
            entry_is(
                entry,
                &[("path", json!("transparent")), ("verdict", json!("allow"))],
            )
        })
        .await;
    assert_eq!(entry["rule"], format!("echo.test:{port}"));
    assert_eq!(entry["bytes_up"], 12);
    assert_eq!(entry["bytes_down"], 12);
}
