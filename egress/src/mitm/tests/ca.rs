//! The sandbox CA: files and permissions, certificate contents, leaves that chain to it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;
use tokio_rustls::TlsAcceptor;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{client_trusting, connect_tls, HOST};
use crate::mitm::{upstream_client_config, CaError, SandboxCa, CA_CERT_FILE, CA_KEY_FILE};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

const DAY: i64 = 24 * 3600;

#[test]
fn ca_is_created_with_its_modes_and_reloaded_unchanged() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("sandbox/ca");
    let created = SandboxCa::load_or_create(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CA_CERT_FILE)), 0o644);
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(
        fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap(),
        created.cert_pem()
    );
    assert!(created
        .cert_pem()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    let reloaded = SandboxCa::load_or_create(&dir).unwrap();
    assert_eq!(reloaded.cert_pem(), created.cert_pem());
    // The reloaded CA signs leaves that chain to the same certificate.
    let config = reloaded.server_config_for(HOST).unwrap();
    assert!(!config.alpn_protocols.is_empty());

    let other = SandboxCa::load_or_create(&temp.path().join("other")).unwrap();
    assert_ne!(other.cert_pem(), created.cert_pem());
}

#[test]
fn ca_certificate_is_a_p256_ca_named_with_a_random_id_for_ten_years() {
    let temp = tempfile::tempdir().unwrap();
    let ca = SandboxCa::load_or_create(temp.path()).unwrap();
    let (_, cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    let id = common_name.strip_prefix("paddock sandbox CA ").unwrap();
    assert_eq!(id.len(), 16, "{common_name}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(cert.subject(), cert.issuer());
    assert!(cert.is_ca());
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign());
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "an EC key"
    );
    assert_eq!(
        cert.public_key()
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap()
            .to_id_string(),
        "1.2.840.10045.3.1.7",
        "on P-256"
    );
    let not_after = cert.validity().not_after.timestamp();
    assert!((not_after - unix_now() - 3650 * DAY).abs() < DAY);
    assert!(cert.verify_signature(None).is_ok(), "self-signed");
}

#[tokio::test]
async fn leaf_names_the_host_is_short_lived_and_signed_by_the_ca() {
    let temp = tempfile::tempdir().unwrap();
    let ca = SandboxCa::load_or_create(temp.path()).unwrap();
    let client = handshake(&ca, "API.Anthropic.com.", &ca, HOST)
        .await
        .unwrap();
    let chain = client.get_ref().1.peer_certificates().unwrap().to_vec();
    assert_eq!(chain.len(), 2, "leaf and CA");
    assert_eq!(chain[1].as_ref(), ca.cert_der().as_ref());
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(name) => name.to_string(),
            other => panic!("unexpected name {other:?}"),
        })
        .collect();
    assert_eq!(names, [HOST]);
    assert!(!leaf.is_ca());
    let now = unix_now();
    assert!((leaf.validity().not_before.timestamp() - (now - DAY)).abs() < 600);
    assert!((leaf.validity().not_after.timestamp() - (now + 30 * DAY)).abs() < 600);
    let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    assert_eq!(leaf.issuer(), ca_cert.subject());
    assert!(leaf.verify_signature(Some(ca_cert.public_key())).is_ok());
}

/// A TLS handshake over memory: the server presents `server_ca`'s leaf for `leaf_host`, the
/// client trusts only `client_ca` and asks for `name`.
async fn handshake(
    server_ca: &SandboxCa,
    leaf_host: &str,
    client_ca: &SandboxCa,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::io::DuplexStream>> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server_ca.server_config_for(leaf_host).unwrap());
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let (server, client) = tokio::join!(
        acceptor.accept(server_io),
        connect_tls(client_ca, name, client_io)
    );
    assert_eq!(server.is_ok(), client.is_ok());
    client
}

#[test]
fn leaves_are_cached_per_host_and_only_for_dns_names() {
    let temp = tempfile::tempdir().unwrap();
    let ca = SandboxCa::load_or_create(temp.path()).unwrap();
    let first = ca.server_config_for(HOST).unwrap();
    assert!(Arc::ptr_eq(
        &first,
        &ca.server_config_for("api.anthropic.com.").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        &first,
        &ca.server_config_for("api.openai.com").unwrap()
    ));
    for bad in ["1.2.3.4", "::1", "bad host", "", "-x.example"] {
        assert!(
            matches!(ca.server_config_for(bad), Err(CaError::InvalidHost { .. })),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_client_trusting_only_the_ca_accepts_the_leaf_for_its_host_only() {
    let temp = tempfile::tempdir().unwrap();
    let ca = SandboxCa::load_or_create(&temp.path().join("a")).unwrap();
    let stranger = SandboxCa::load_or_create(&temp.path().join("b")).unwrap();
    let client = handshake(&ca, HOST, &ca, HOST).await.unwrap();
    assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(
        handshake(&ca, HOST, &stranger, HOST).await.is_err(),
        "another CA is not trusted"
    );
    assert!(
        handshake(&ca, HOST, &ca, "api.openai.com").await.is_err(),
        "the leaf names one host"
    );
}

#[tokio::test]
async fn a_client_offering_only_h2_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let ca = SandboxCa::load_or_create(temp.path()).unwrap();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = TlsAcceptor::from(ca.server_config_for(HOST).unwrap()).accept(server_io);
    let client = tokio_rustls::TlsConnector::from(client_trusting(&ca, &[b"h2"]))
        .connect(ServerName::try_from(HOST).unwrap(), client_io);
    let (server, client) = tokio::join!(server, client);
    assert!(server.is_err());
    assert!(client.is_err());
}

#[test]
fn key_readable_by_others_missing_or_foreign_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ca");
    SandboxCa::load_or_create(&dir).unwrap();
    let key = dir.join(CA_KEY_FILE);

    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let error = SandboxCa::load_or_create(&dir).unwrap_err();
    assert!(
        matches!(error, CaError::InsecureKeyPermissions { mode: 0o640, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("chmod 600"));
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();

    let other = temp.path().join("other");
    SandboxCa::load_or_create(&other).unwrap();
    fs::copy(other.join(CA_CERT_FILE), dir.join(CA_CERT_FILE)).unwrap();
    assert!(matches!(
        SandboxCa::load_or_create(&dir),
        Err(CaError::KeyMismatch { .. })
    ));

    fs::remove_file(&key).unwrap();
    assert!(matches!(
        SandboxCa::load_or_create(&dir),
        Err(CaError::MissingKey { .. })
    ));

    fs::write(&key, "not a key").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        SandboxCa::load_or_create(&dir),
        Err(CaError::ParseKey { .. })
    ));
}

#[test]
fn upstream_config_adds_extra_roots_and_refuses_bad_files() {
    let temp = tempfile::tempdir().unwrap();
    let ca = SandboxCa::load_or_create(temp.path()).unwrap();
    let config = upstream_client_config(&[temp.path().join(CA_CERT_FILE)]).unwrap();
    assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    assert!(!ca.cert_pem().is_empty());

    let missing = temp.path().join("missing.pem");
    assert!(matches!(
        upstream_client_config(&[missing]),
        Err(CaError::Read { .. })
    ));
    let empty = temp.path().join("empty.pem");
    fs::write(&empty, "no certificates here\n").unwrap();
    assert!(matches!(
        upstream_client_config(&[empty]),
        Err(CaError::NoRootCertificate { .. })
    ));
}
