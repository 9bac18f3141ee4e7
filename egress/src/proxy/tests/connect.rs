//! `PROXY` connections: CONNECT tunnels (TLS with its SNI checked, plain HTTP with its Host
//! checked) and absolute-form requests.

use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::harness::*;
use crate::testing::{http_hello, https_hello, TestPki};
use paddock_protocol::egress::EgressHello;

const ALLOW_WITH_LOOPBACK: &str =
    r#"{"preset": "locked", "allow": ["allowed.test", "127.0.0.1/32"]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_an_allowed_host_reaches_it() {
    let pki = TestPki::new();
    let upstream = https_hello(&pki, &["allowed.test"], localhost());
    let port = upstream.addr.port();
    let proxy = Setup::new(ALLOW_WITH_LOOPBACK, &[("allowed.test", localhost())])
        .start()
        .await;
    let (stream, head) = proxy.connect(&format!("allowed.test:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls = tls(stream, "allowed.test", pki.client_config())
        .await
        .unwrap();
    let answer = get(&mut tls, "allowed.test").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello from allowed.test\n"), "{answer}");
    drop(tls);
    let entry = proxy
        .log_entry(|entry| {
            entry_is(
                entry,
                &[("path", json!("connect")), ("verdict", json!("allow"))],
            )
        })
        .await;
    assert_eq!(entry["sandbox"], "test-box");
    assert_eq!(entry["host"], "allowed.test");
    assert_eq!(entry["port"], port);
    assert_eq!(entry["rule"], "allowed.test");
    assert_eq!(entry["address"], format!("127.0.0.1:{port}"));
    assert!(entry["bytes_up"].as_u64().unwrap() > 100);
    assert!(entry["bytes_down"].as_u64().unwrap() > 100);
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));
    proxy.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_host_gets_403_and_a_log_line() {
    let proxy = Setup::new(ALLOW_WITH_LOOPBACK, &[("denied.test", localhost())])
        .start()
        .await;
    let (mut stream, head) = proxy.connect("denied.test:443").await;
    assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
    assert!(head.contains("X-Paddock-Egress: denied\r\n"), "{head}");
    let body = String::from_utf8(read_all(&mut stream).await).unwrap();
    assert!(body.contains("denied.test:443"), "{body}");
    assert_eq!(body.lines().count(), 1);
    let entry = proxy
        .log_entry(|entry| entry["host"] == "denied.test")
        .await;
    assert_eq!(entry["verdict"], "deny");
    assert_eq!(entry["path"], "connect");
    assert_eq!(entry["reason"], "not-allowed");
    assert_eq!(entry["bytes_up"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_loopback_is_refused_without_a_cidr_rule() {
    let pki = TestPki::new();
    let upstream = https_hello(&pki, &["allowed.test"], localhost());
    let port = upstream.addr.port();
    let proxy = Setup::new(
        r#"{"preset": "locked", "allow": ["allowed.test"]}"#,
        &[("allowed.test", localhost())],
    )
    .start()
    .await;
    let (_stream, head) = proxy.connect(&format!("allowed.test:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let entry = proxy
        .log_entry(|entry| entry["host"] == "allowed.test")
        .await;
    assert_eq!(entry["reason"], "address");
    assert_eq!(entry["rule"], "deny-set:loopback");
    // A private address likewise; the literal loopback address too.
    proxy.set_policy(r#"{"preset": "open"}"#);
    let (_stream, head) = proxy.connect(&format!("127.0.0.1:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // With the CIDR rule it is reached.
    proxy.set_policy(ALLOW_WITH_LOOPBACK);
    let (stream, head) = proxy.connect(&format!("allowed.test:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls = tls(stream, "allowed.test", pki.client_config())
        .await
        .unwrap();
    assert!(get(&mut tls, "allowed.test")
        .await
        .ends_with("hello from allowed.test\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sni_other_than_the_connect_target_is_refused() {
    let pki = TestPki::new();
    let upstream = https_hello(&pki, &["allowed.test", "other.test"], localhost());
    let port = upstream.addr.port();
    let proxy = Setup::new(ALLOW_WITH_LOOPBACK, &[("allowed.test", localhost())])
        .start()
        .await;
    let (stream, head) = proxy.connect(&format!("allowed.test:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(tls(stream, "other.test", pki.client_config())
        .await
        .is_err());
    let entry = proxy.log_entry(|entry| entry["verdict"] == "deny").await;
    assert_eq!(entry["reason"], "sni-mismatch");
    assert_eq!(entry["host"], "allowed.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_in_single_bytes_still_works() {
    let pki = TestPki::new();
    let upstream = https_hello(&pki, &["allowed.test"], localhost());
    let port = upstream.addr.port();
    let proxy = Setup::new(ALLOW_WITH_LOOPBACK, &[("allowed.test", localhost())])
        .start()
        .await;
    let (stream, head) = proxy.connect(&format!("allowed.test:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Far more than a ClientHello: every byte of it arrives on its own.
    let trickle = Trickle::new(stream, 4096);
    let mut tls = tls(trickle, "allowed.test", pki.client_config())
        .await
        .unwrap();
    assert!(get(&mut tls, "allowed.test")
        .await
        .ends_with("hello from allowed.test\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_through_connect_needs_the_right_host_header() {
    let upstream = http_hello(localhost());
    let port = upstream.addr.port();
    let proxy = Setup::new(ALLOW_WITH_LOOPBACK, &[("allowed.test", localhost())])
        .start()
        .await;
    let (mut stream, head) = proxy.connect(&format!("allowed.test:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let answer = get(&mut stream, "allowed.test").await;
    assert!(answer.ends_with("hello from allowed.test\n"), "{answer}");
    let (mut stream, _) = proxy.connect(&format!("allowed.test:{port}")).await;
    let answer = get(&mut stream, "elsewhere.test").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let entry = proxy.log_entry(|entry| entry["verdict"] == "deny").await;
    assert_eq!(entry["reason"], "host-mismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_requests_are_forwarded_in_origin_form() {
    let upstream = http_hello(localhost());
    let port = upstream.addr.port();
    let proxy = Setup::new(ALLOW_WITH_LOOPBACK, &[("allowed.test", localhost())])
        .start()
        .await;
    let mut stream = proxy.open(&EgressHello::Proxy).await;
    let request = format!(
        "GET http://allowed.test:{port}/ HTTP/1.1\r\nHost: allowed.test:{port}\r\nProxy-Connection: keep-alive\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = String::from_utf8(read_all(&mut stream).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The upstream saw the Host the proxy set from the URI.
    assert!(
        answer.ends_with(&format!("hello from allowed.test:{port}\n")),
        "{answer}"
    );
    // An allowed connection is logged when it ends.
    drop(stream);
    let entry = proxy.log_entry(|entry| entry["path"] == "http").await;
    assert_eq!(entry["verdict"], "allow");
    assert!(entry["bytes_down"].as_u64().unwrap() > 0);
    // Origin form and https:// URIs are not served.
    for request in [
        "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        "GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    ] {
        let mut stream = proxy.open(&EgressHello::Proxy).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = String::from_utf8(read_all(&mut stream).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    // A denied host is refused before anything is dialed.
    let mut stream = proxy.open(&EgressHello::Proxy).await;
    stream
        .write_all(b"GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_all(&mut stream).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("X-Paddock-Egress: denied"), "{answer}");
}
