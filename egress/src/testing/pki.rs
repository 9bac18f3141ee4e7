//! A throwaway public-key infrastructure for tests: one root CA (ECDSA P-256, made with rcgen)
//! and leaf certificates it signs for any set of names, turned into rustls configurations.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The only application protocol the test servers speak.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A root CA that exists only for the lifetime of a test.
pub struct TestPki {
    root: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    /// A fresh root CA.
    ///
    /// # Panics
    /// If the system random generator fails (rcgen cannot make a key).
    pub fn new() -> Self {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "paddock test root");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate the root key");
        let root = params.self_signed(&key).expect("self-sign the test root");
        Self {
            root,
            issuer: Issuer::new(params, key),
        }
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root.der().clone()
    }

    /// Writes the root certificate (PEM) to `path`, e.g. for a proxy's extra upstream roots.
    pub fn write_root(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.root_pem())
    }

    /// A TLS server configuration presenting one new leaf certificate, signed by the root, valid
    /// for all of `names` (DNS names or IP addresses); ALPN `http/1.1` only.
    ///
    /// # Panics
    /// If a name is neither a valid DNS name nor an IP address, or signing fails.
    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf names are DNS names or IPs");
        params
            .distinguished_name
            .push(DnType::CommonName, "paddock test server");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate a leaf key");
        let leaf = params
            .signed_by(&key, &self.issuer)
            .expect("sign the leaf with the test root");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("the leaf key matches its certificate");
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Arc::new(config)
    }

    /// A TLS client configuration that trusts only this root; ALPN `http/1.1`.
    ///
    /// # Panics
    /// Never in practice: the root is a certificate this PKI made.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.root_der())
            .expect("the test root is a valid trust anchor");
        let mut config = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Arc::new(config)
    }
}

/// The ring provider, named explicitly so nothing depends on a process-wide default.
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
