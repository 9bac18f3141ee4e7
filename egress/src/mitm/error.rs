//! The errors of the interception module: one enum for the CA and TLS configurations, one for
//! an intercepted connection, and the two ways a guest's request stream can be malformed.

use std::io;
use std::path::PathBuf;

/// Why the sandbox CA or a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Creating the CA directory failed.
    #[error("cannot create the CA directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// Reading a file failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The CA key allows access to its group or others.
    #[error("the CA key {} has mode {mode:o}, readable by others; fix with `chmod 600 {}`", path.display(), path.display())]
    InsecureKeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The certificate exists but its key does not (guests may trust it already, so a new CA is
    /// not made silently).
    #[error("the CA certificate {} exists but its key {} does not; remove the certificate to make a new CA", certificate.display(), key.display())]
    MissingKey {
        /// The certificate file.
        certificate: PathBuf,
        /// The missing key file.
        key: PathBuf,
    },
    /// Generating a key or signing a certificate failed.
    #[error("cannot generate a key or certificate")]
    Generate(#[source] rcgen::Error),
    /// The CA key file is not a usable key.
    #[error("the CA key {} is not a valid key", path.display())]
    ParseKey {
        /// The key file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: rcgen::Error,
    },
    /// The CA certificate file is not a usable CA certificate.
    #[error("the CA certificate {} is not a valid certificate", path.display())]
    ParseCertificate {
        /// The certificate file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: rcgen::Error,
    },
    /// The CA certificate is not for the CA key.
    #[error("the CA certificate {} does not belong to its key", path.display())]
    KeyMismatch {
        /// The certificate file.
        path: PathBuf,
    },
    /// The host is not a DNS name (a certificate is made for names only).
    #[error("{host:?} is not a DNS name")]
    InvalidHost {
        /// The host given.
        host: String,
    },
    /// rustls refused the configuration.
    #[error("cannot build a TLS configuration")]
    Tls(#[source] rustls::Error),
    /// A root certificate file has no certificate.
    #[error("{} has no PEM certificate", path.display())]
    NoRootCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A root certificate file is not valid PEM.
    #[error("{} is not a valid PEM file", path.display())]
    RootPem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A root certificate was not accepted.
    #[error("a root certificate in {} was not accepted", path.display())]
    BadRoot {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// Why an intercepted connection ended in error.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    /// The TLS handshake with the guest failed.
    #[error("TLS handshake with the guest failed")]
    ClientTls(#[source] io::Error),
    /// The guest's ClientHello named another server, or none.
    #[error("the guest's TLS server name {offered:?} is not {expected:?}")]
    SniMismatch {
        /// The host the connection is for.
        expected: String,
        /// The server name in the ClientHello, if any.
        offered: Option<String>,
    },
    /// No certificate could be made for the host.
    #[error("no certificate for the host")]
    Certificate(#[source] CaError),
    /// The TLS handshake with the upstream failed (including its certificate check).
    #[error("TLS handshake with the upstream failed")]
    UpstreamTls(#[source] io::Error),
    /// A request head was refused.
    #[error("a request head from the guest was refused")]
    Head(#[source] HeadError),
    /// A request body was malformed.
    #[error("a request body from the guest was malformed")]
    Body(#[source] crate::wire::http::BodyError),
    /// A request carried the placeholder of a secret that is not for this host, or a
    /// placeholder of this host's secret outside the one place the secret goes; the guest was
    /// answered 403 and nothing of the request went upstream.
    #[error("a request carried a placeholder of the {service} secret where it may not go")]
    Leak {
        /// The service whose placeholder it was.
        service: String,
    },
    /// The upstream sent a secret of this host back; the connection was cut before any byte of
    /// it reached the guest.
    #[error("the upstream's response carried the {service} secret; the connection was cut")]
    SecretEchoed {
        /// The service whose secret it was.
        service: String,
    },
    /// Reading or writing either side failed.
    #[error("relaying failed")]
    Io(#[source] io::Error),
}

/// Why a request head was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The head is longer than the limit.
    #[error("the request head is longer than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The head is not HTTP/1.x.
    #[error("the request head is malformed")]
    Malformed(#[source] httparse::Error),
    /// The connection ended within a head.
    #[error("the connection ended within a request head")]
    Truncated,
    /// A `Content-Length` is not a number, or two disagree.
    #[error("the request has an invalid Content-Length")]
    BadContentLength,
    /// A `Transfer-Encoding` does not end in `chunked`.
    #[error("the request has a Transfer-Encoding that does not end in chunked")]
    BadTransferEncoding,
    /// Both `Content-Length` and `Transfer-Encoding` (a request smuggling vector).
    #[error("the request has both Content-Length and Transfer-Encoding")]
    LengthAndEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 request (HTTP/1.0 has no chunked coding).
    #[error("the HTTP/1.0 request has a Transfer-Encoding")]
    EncodingInHttp10,
    /// No `Host` header.
    #[error("the request has no Host header")]
    MissingHost,
    /// More than one `Host` header.
    #[error("the request has {count} Host headers")]
    RepeatedHost {
        /// How many.
        count: usize,
    },
    /// The `Host` header names another host than the connection's.
    #[error("the request's Host {found:?} is not {expected:?}")]
    HostMismatch {
        /// The connection's host.
        expected: String,
        /// The header's value (lossy UTF-8, cut to 256 characters).
        found: String,
    },
    /// The request-target names another authority than the connection's host.
    #[error("the request's target {found:?} is not on {expected:?}")]
    TargetMismatch {
        /// The connection's host.
        expected: String,
        /// The target (lossy UTF-8, cut to 256 characters).
        found: String,
    },
}

impl HeadError {
    /// Whether the head was refused for naming another host than the connection's (answered
    /// `403 Forbidden`).
    pub fn is_wrong_host(&self) -> bool {
        matches!(
            self,
            HeadError::MissingHost
                | HeadError::RepeatedHost { .. }
                | HeadError::HostMismatch { .. }
                | HeadError::TargetMismatch { .. }
        )
    }
}
