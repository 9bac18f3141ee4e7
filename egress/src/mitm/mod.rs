//! TLS interception for hosts that have a secret: the guest's TLS is terminated with a leaf
//! certificate from the sandbox's own CA, the proxy opens its own verified TLS connection to the
//! real host, and the plaintext HTTP/1.1 requests in between (each for that host only) have their
//! placeholders replaced by the secret in the service's own header (responses pass through
//! untouched, flushed as they arrive, unless they carry a secret back: then the connection is
//! cut).

mod ca;
mod error;
mod framing;
mod host_check;
mod intercept;
mod requests;
mod upstream;

use std::sync::Arc;

pub use ca::{SandboxCa, CA_CERT_FILE, CA_KEY_FILE};
pub use error::{CaError, HeadError, InterceptError};
pub use framing::{MAX_HEADERS, MAX_HEAD_LEN};
pub use intercept::{intercept, Transfer};
pub use upstream::upstream_client_config;

/// The crypto provider of every TLS configuration made here (ring, named explicitly so that
/// another crate enabling a second provider cannot make the process default ambiguous).
fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
