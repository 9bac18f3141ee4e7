//! The SNI (and ALPN, version) of a TLS ClientHello, read from the first bytes of a guest
//! connection that may arrive in any pieces: single bytes, or one handshake message fragmented
//! over several records (RFC 8446 §5.1 allows it), up to [`MAX_CLIENT_HELLO`] bytes.
//!
//! Hand-written on purpose: no well-kept standalone crate peeks a ClientHello incrementally from
//! a stream (rustls parses one only inside a full server handshake, and then only from complete
//! records it has buffered itself). Every read below goes through a bounds-checked cursor.

mod client_hello;
mod parser;
mod peek;
mod reader;
#[cfg(test)]
mod tests;

pub use super::sniff::{looks_like_http, looks_like_tls};
pub use parser::ClientHelloParser;
pub use peek::peek_client_hello;

use paddock_protocol::egress::EgressLineError;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

/// Largest ClientHello handshake message accepted (its 4-byte header included).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;
/// Most bytes (record headers included) the ClientHello may take on the wire: room for heavy
/// fragmentation, but bounded.
pub const MAX_CLIENT_HELLO_WIRE: usize = 2 * MAX_CLIENT_HELLO;
/// Largest TLS record payload (2^14, RFC 8446 §5.1).
pub const MAX_RECORD_PAYLOAD: usize = 1 << 14;

/// What a ClientHello says about where the client wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// The server name (normalized, lower case, no trailing dot), if the client sent one.
    pub sni: Option<String>,
    /// The ALPN protocols offered, in order (`h2`, `http/1.1`…).
    pub alpn: Vec<Vec<u8>>,
    /// The highest TLS version offered.
    pub tls_version: TlsVersion,
}

/// Result of feeding bytes to a [`ClientHelloParser`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloStatus {
    /// The ClientHello is not complete yet.
    NeedMore,
    /// The ClientHello is complete and valid.
    Done(ClientHelloInfo),
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.0 (0x0301).
    Tls10,
    /// TLS 1.1 (0x0302).
    Tls11,
    /// TLS 1.2 (0x0303).
    Tls12,
    /// TLS 1.3 (0x0304, only ever offered in `supported_versions`).
    Tls13,
    /// Any other version number (SSL 3.0, drafts).
    Other(u16),
}

impl TlsVersion {
    /// The version for a wire value.
    pub fn from_wire(value: u16) -> Self {
        match value {
            0x0301 => TlsVersion::Tls10,
            0x0302 => TlsVersion::Tls11,
            0x0303 => TlsVersion::Tls12,
            0x0304 => TlsVersion::Tls13,
            other => TlsVersion::Other(other),
        }
    }
}

/// Why the first bytes of a connection are not an acceptable ClientHello.
#[derive(Debug, thiserror::Error)]
pub enum TlsHelloError {
    /// A record that is not a handshake record (alert, application data, not TLS at all).
    #[error("TLS record of content type {content_type} where a handshake was expected")]
    NotHandshake {
        /// The record's content type.
        content_type: u8,
    },
    /// A record version whose major number is not 3.
    #[error("TLS record version {version:#06x} is not 3.x")]
    RecordVersion {
        /// The record's version field.
        version: u16,
    },
    /// A handshake record with no payload or more than [`MAX_RECORD_PAYLOAD`] bytes.
    #[error("TLS record length {length} is 0 or above 2^14")]
    RecordLength {
        /// The record's length field.
        length: u16,
    },
    /// The first handshake message is not a ClientHello.
    #[error("handshake message type {message_type} is not a ClientHello")]
    NotClientHello {
        /// The handshake message type.
        message_type: u8,
    },
    /// The ClientHello is longer than [`MAX_CLIENT_HELLO`] or takes more than
    /// [`MAX_CLIENT_HELLO_WIRE`] bytes on the wire.
    #[error("ClientHello larger than {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The ClientHello's structure is broken.
    #[error("malformed ClientHello")]
    Malformed(#[from] MalformedHello),
    /// The server name is not acceptable.
    #[error("unacceptable server name in ClientHello")]
    Sni(#[from] SniError),
    /// [`ClientHelloParser::push`] after it has returned an error.
    #[error("the ClientHello parser already failed")]
    AlreadyFailed,
    /// The ClientHello did not arrive in time.
    #[error("ClientHello not complete after {after:?}")]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
    /// The peer closed the connection before the ClientHello was complete.
    #[error("connection closed after {received} bytes, before the ClientHello was complete")]
    Closed {
        /// Bytes received before the end of stream.
        received: usize,
    },
    /// Reading failed.
    #[error("reading the ClientHello failed")]
    Io(#[source] io::Error),
}

/// A part of the ClientHello, to say where it is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloField {
    /// `legacy_version`.
    LegacyVersion,
    /// `random`.
    Random,
    /// `legacy_session_id`.
    SessionId,
    /// `cipher_suites`.
    CipherSuites,
    /// `legacy_compression_methods`.
    CompressionMethods,
    /// The extension list or one extension's header.
    Extensions,
    /// The `server_name` extension.
    ServerName,
    /// The `application_layer_protocol_negotiation` extension.
    Alpn,
    /// The `supported_versions` extension.
    SupportedVersions,
}

/// How a ClientHello's structure is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedHello {
    /// A length runs past the end of its enclosing structure.
    #[error("{field:?} runs past its enclosing structure")]
    Truncated {
        /// Where.
        field: HelloField,
    },
    /// Bytes left over after a structure that should have filled its length exactly.
    #[error("bytes left over after {field:?}")]
    TrailingBytes {
        /// Where.
        field: HelloField,
    },
    /// A value the specification forbids (empty list, odd-length cipher suite list…).
    #[error("invalid {field:?}")]
    Invalid {
        /// Where.
        field: HelloField,
    },
    /// The same extension twice (RFC 8446 §4.2).
    #[error("extension {extension_type} appears more than once")]
    DuplicateExtension {
        /// The repeated extension type.
        extension_type: u16,
    },
}

/// Why the server name of a ClientHello is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    /// Bytes that are not ASCII.
    #[error("server name is not ASCII")]
    NotAscii,
    /// A literal address (RFC 6066 §3 forbids them in the SNI).
    #[error("server name is the literal address {0}")]
    IpAddress(IpAddr),
    /// Not a valid DNS name.
    #[error("server name is not a valid DNS name")]
    BadName(#[source] EgressLineError),
    /// More than one host name (RFC 6066 §3 forbids it).
    #[error("more than one host name in server_name")]
    MoreThanOneName,
    /// A `server_name` extension without a host name.
    #[error("server_name extension without a host name")]
    NoHostName,
}
