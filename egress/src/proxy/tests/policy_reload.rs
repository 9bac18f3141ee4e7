//! A policy edit applies to a running proxy's next connection.

use super::harness::*;
use crate::testing::{https_hello, TestPki};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_applies_to_the_next_connection() {
    let pki = TestPki::new();
    let upstream = https_hello(&pki, &["allowed.test"], localhost());
    let target = format!("allowed.test:{}", upstream.addr.port());
    let proxy = Setup::new(
        r#"{"preset": "locked", "allow": ["allowed.test", "127.0.0.1/32"]}"#,
        &[("allowed.test", localhost())],
    )
    .start()
    .await;
    let (stream, head) = proxy.connect(&target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls = tls(stream, "allowed.test", pki.client_config())
        .await
        .unwrap();
    assert!(get(&mut tls, "allowed.test")
        .await
        .ends_with("hello from allowed.test\n"));

    proxy.set_policy(
        r#"{"preset": "locked", "allow": ["allowed.test", "127.0.0.1/32"], "deny": ["allowed.test"]}"#,
    );
    let (_stream, head) = proxy.connect(&target).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let entry = proxy.log_entry(|entry| entry["verdict"] == "deny").await;
    assert_eq!(entry["reason"], "deny-rule");
    assert_eq!(entry["rule"], "allowed.test");

    // A broken edit keeps the last good policy in force.
    std::fs::write(&proxy.policy, b"{ not json").unwrap();
    let (_stream, head) = proxy.connect(&target).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}
