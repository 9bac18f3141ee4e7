//! Credentials end to end: the guest sends a placeholder, the upstream receives the secret; a
//! placeholder on its way to another host is blocked.

use std::sync::Arc;

use paddock_protocol::egress::EgressHello;
use rustls::RootCertStore;
use tokio::io::AsyncWriteExt;

use super::harness::*;
use crate::mitm::SandboxCa;
use crate::secrets::{Credentials, SecretValue, Service};
use crate::testing::{fake_anthropic_for, http_hello, TestPki};

const SECRET: &str = "sk-ant-real-secret-0123456789";

fn service() -> Service {
    Service::custom(
        "fakeanthropic",
        &["api.anthropic.test".to_string()],
        "x-api-key",
    )
    .unwrap()
}

/// A client configuration trusting only the sandbox's CA (what the guest's trust store holds).
fn guest_tls(ca: &SandboxCa) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_secret_and_other_hosts_get_nothing() {
    let pki = TestPki::new();
    let (fake, requests) = fake_anthropic_for(&pki, &["api.anthropic.test"], localhost(), "hi");
    let other = http_hello(localhost());
    let mut setup = Setup::new(
        r#"{"preset": "locked", "allow": ["api.anthropic.test", "other.test", "127.0.0.1/32"]}"#,
        &[
            ("api.anthropic.test", localhost()),
            ("other.test", localhost()),
        ],
    );
    let roots = setup.dir.path().join("test-root.pem");
    pki.write_root(&roots).unwrap();
    setup.config.extra_roots = vec![roots];
    let ca = SandboxCa::load_or_create(&setup.dir.path().join("ca")).unwrap();
    let guest_config = guest_tls(&ca);
    setup.config.ca = Some(ca);
    setup.config.credentials =
        Credentials::from_secrets([(service(), SecretValue::new(SECRET.to_string()).unwrap())]);
    let placeholder = service().placeholder();
    let proxy = setup.start().await;

    let (stream, head) = proxy
        .connect(&format!("api.anthropic.test:{}", fake.addr.port()))
        .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls = tls(stream, "api.anthropic.test", guest_config.clone())
        .await
        .unwrap();
    let body =
        r#"{"model":"claude-test","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}"#;
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.test\r\nx-api-key: {placeholder}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let answer = String::from_utf8(read_all(&mut tls).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("hi"), "{answer}");
    {
        let recorded = requests.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].header("x-api-key"), Some(SECRET));
        assert_eq!(recorded[0].path, "/v1/messages");
    }
    let entry = proxy
        .log_entry(|entry| entry["host"] == "api.anthropic.test" && entry["verdict"] == "allow")
        .await;
    assert!(entry["bytes_up"].as_u64().unwrap() > 0);
    assert!(entry["bytes_down"].as_u64().unwrap() > 0);

    // The placeholder anywhere but its header (here Origin, which a service might echo) is
    // refused with 403 and logged as a leak; the service never sees that request.
    let (stream, _) = proxy
        .connect(&format!("api.anthropic.test:{}", fake.addr.port()))
        .await;
    let mut refused = super::harness::tls(stream, "api.anthropic.test", guest_config)
        .await
        .unwrap();
    let request = format!(
        "GET /v1/models HTTP/1.1\r\nHost: api.anthropic.test\r\nx-api-key: {placeholder}\r\nOrigin: https://{placeholder}.example\r\n\r\n"
    );
    refused.write_all(request.as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(&read_all(&mut refused).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains(SECRET), "{answer}");
    let entry = proxy
        .log_entry(|entry| {
            entry["host"] == "api.anthropic.test" && entry["reason"] == "placeholder-leak"
        })
        .await;
    assert_eq!(entry["verdict"], "deny");
    assert_eq!(
        requests.lock().unwrap().len(),
        1,
        "the refused request never left"
    );

    // The placeholder in plain HTTP to another host is blocked; the host never sees it.
    let mut stream = proxy.open(&EgressHello::Proxy).await;
    let request = format!(
        "GET http://other.test:{}/ HTTP/1.1\r\nHost: other.test\r\nx-api-key: {placeholder}\r\n\r\n",
        other.addr.port()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = String::from_utf8(read_all(&mut stream).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("hello from"), "{answer}");
    let entry = proxy
        .log_entry(|entry| entry["reason"] == "placeholder-leak" && entry["host"] == "other.test")
        .await;
    assert_eq!(entry["verdict"], "deny");
    // The secret never reaches the log.
    let log = std::fs::read_to_string(&proxy.log).unwrap();
    assert!(!log.contains(SECRET));
}
