//! The TLS client configuration for the proxy's side of an intercepted connection: the web PKI
//! (webpki-roots) plus any extra PEM roots (tests, private registries), ALPN `http/1.1`.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::error::CaError;
use super::tls_provider;

/// Largest extra root file read.
const MAX_ROOT_FILE_LEN: u64 = 4 * 1024 * 1024;

/// A client configuration trusting webpki-roots and the certificates in `extra_roots`.
pub fn upstream_client_config(extra_roots: &[PathBuf]) -> Result<Arc<ClientConfig>, CaError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in extra_roots {
        let mut pem = Vec::new();
        File::open(path)
            .and_then(|file| file.take(MAX_ROOT_FILE_LEN).read_to_end(&mut pem))
            .map_err(|source| CaError::Read {
                path: path.clone(),
                source,
            })?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CaError::RootPem {
                path: path.clone(),
                source,
            })?;
        if certificates.is_empty() {
            return Err(CaError::NoRootCertificate { path: path.clone() });
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|source| CaError::BadRoot {
                path: path.clone(),
                source,
            })?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(tls_provider())
        .with_safe_default_protocol_versions()
        .map_err(CaError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
