//! HTTP/1.x request heads from the guest, parsed with `httparse` under fixed bounds
//! ([`MAX_HEAD`] bytes, [`MAX_HEADERS`] headers): the request target as a checked [`Host`] and
//! port, the headers as sent, and the head serialized again for an origin server.

pub mod body;
mod read;
pub mod response;
mod rewrite;
mod target;
#[cfg(test)]
mod tests;

pub use body::{BodyError, BodyFraming, FramedReader};
pub use read::read_head;
pub use response::{ResponseHead, ResponseHeadError, MAX_RESPONSE_HEAD};
pub use rewrite::{rewrite_absolute_to_origin, wants_websocket, RewriteError};
pub use target::{RequestTarget, Scheme};

use super::host::{parse_authority, Host, HostError};
use std::io;
use std::time::Duration;

/// Largest request head accepted (request line, headers and the empty line).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers accepted in one head.
pub const MAX_HEADERS: usize = 64;

/// The outcome of parsing a buffer that starts with a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadStatus {
    /// The head is not complete yet and is still within bounds: read more.
    Partial,
    /// A complete, checked head.
    Complete(RequestHead),
}

/// The HTTP/1.x minor version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token as sent (`GET`, `CONNECT`…), case kept.
    pub method: String,
    /// The request target, checked.
    pub target: RequestTarget,
    /// The protocol version.
    pub version: HttpVersion,
    /// The headers in order, names as sent, values as raw bytes (they may be any obs-text).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Length of the head in the buffer, the empty line included: body bytes start here.
    pub head_len: usize,
}

/// Why a request head was refused.
#[derive(Debug, thiserror::Error)]
pub enum HttpHeadError {
    /// No complete head within the byte limit.
    #[error("request head is larger than {limit} bytes")]
    TooLarge {
        /// The limit that was reached.
        limit: usize,
    },
    /// More than [`MAX_HEADERS`] headers.
    #[error("request head has more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// Not a valid, supported request head.
    #[error("malformed request head")]
    Malformed(#[from] MalformedHead),
    /// The head did not arrive in time.
    #[error("request head not complete after {after:?}")]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
    /// The peer closed the connection before the head was complete.
    #[error("connection closed after {received} bytes, before the request head was complete")]
    Closed {
        /// Bytes received before the end of stream.
        received: usize,
    },
    /// Reading failed.
    #[error("reading the request head failed")]
    Io(#[source] io::Error),
}

/// What exactly is wrong with a request head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedHead {
    /// The request line or a header breaks the HTTP/1.x syntax.
    #[error("HTTP syntax error")]
    Syntax(#[source] httparse::Error),
    /// The target form does not fit the method: CONNECT needs `host:port`, other methods an
    /// absolute URI or a path; `*` is not supported.
    #[error("request target form does not fit the method")]
    TargetForm,
    /// An absolute URI with a scheme other than `http` or `https`.
    #[error("URI scheme is not http or https")]
    UnsupportedScheme,
    /// A CONNECT target without a port.
    #[error("CONNECT target has no port")]
    MissingPort,
    /// A fragment (`#`) in the request target.
    #[error("request target carries a fragment")]
    Fragment,
    /// The host in the target or in the `Host` header is not acceptable.
    #[error("bad host")]
    Host(#[source] HostError),
    /// More than one `Host` header.
    #[error("more than one Host header")]
    DuplicateHost,
    /// Body length announced ambiguously: both `Content-Length` and `Transfer-Encoding`,
    /// differing `Content-Length` values, or `Transfer-Encoding` in HTTP/1.0. A proxy that lets
    /// these through invites request smuggling (RFC 9112 §6.3).
    #[error("ambiguous request body length")]
    AmbiguousBodyLength,
    /// `Transfer-Encoding` whose last coding is not `chunked`, or that names `chunked` twice:
    /// the request body's end could not be found (RFC 9112 §6.3).
    #[error("request transfer coding is not chunked last")]
    UnsupportedTransferEncoding,
}

/// Parses the request head at the start of `buf`, within [`MAX_HEAD`] bytes: `Partial` while
/// more bytes could complete it, `TooLarge` once [`MAX_HEAD`] bytes hold no complete head.
pub fn parse_request_head(buf: &[u8]) -> Result<HeadStatus, HttpHeadError> {
    parse_request_head_within(buf, MAX_HEAD)
}

/// [`parse_request_head`] with a smaller byte limit (`limit` is capped at [`MAX_HEAD`]).
pub fn parse_request_head_within(buf: &[u8], limit: usize) -> Result<HeadStatus, HttpHeadError> {
    let limit = limit.min(MAX_HEAD);
    let window = buf.get(..limit).unwrap_or(buf);
    // httparse skips empty lines before the request line; a stream of them would make every
    // line feed cost a parse of the whole buffer. No client sends them first on a connection.
    if matches!(window.first(), Some(b'\r' | b'\n')) {
        return Err(MalformedHead::Syntax(httparse::Error::NewLine).into());
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if window.len() >= limit => {
            return Err(HttpHeadError::TooLarge { limit })
        }
        Ok(httparse::Status::Partial) => return Ok(HeadStatus::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpHeadError::TooManyHeaders),
        Err(error) => return Err(MalformedHead::Syntax(error).into()),
    };
    // A complete parse always fills these three; a missing one is a syntax error, not a panic.
    let (Some(method), Some(path), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(MalformedHead::Syntax(httparse::Error::Token).into());
    };
    let version = match minor {
        0 => HttpVersion::Http10,
        1 => HttpVersion::Http11,
        _ => return Err(MalformedHead::Syntax(httparse::Error::Version).into()),
    };
    let headers: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|header| (header.name.to_owned(), header.value.to_vec()))
        .collect();
    check_body_length(&headers, version)?;
    checked_host_header(&headers)?;
    let target = RequestTarget::parse(method, path)?;
    Ok(HeadStatus::Complete(RequestHead {
        method: method.to_owned(),
        target,
        version,
        headers,
        head_len,
    }))
}

impl RequestHead {
    /// The values of the headers named `name` (case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The `Host` header as host and optional port. The parser already refused heads with more
    /// than one `Host` header or a bad one, so `None` means there is none (or the headers were
    /// edited after parsing).
    pub fn host_header(&self) -> Option<(Host, Option<u16>)> {
        checked_host_header(&self.headers).ok().flatten()
    }

    /// How the body after this head is delimited. The parser already refused ambiguous or
    /// unsupported framings, so this only reads what is there.
    pub fn body_framing(&self) -> BodyFraming {
        if self.header_values("transfer-encoding").next().is_some() {
            return BodyFraming::Chunked;
        }
        let length = self
            .header_values("content-length")
            .next()
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0);
        BodyFraming::Length(length)
    }

    /// Whether this is a CONNECT request.
    pub fn is_connect(&self) -> bool {
        self.method.eq_ignore_ascii_case("CONNECT")
    }
}

/// The single `Host` header, checked: more than one, or one that is not `host[:port]`, is an
/// error.
fn checked_host_header(
    headers: &[(String, Vec<u8>)],
) -> Result<Option<(Host, Option<u16>)>, MalformedHead> {
    let mut hosts = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| value);
    let Some(value) = hosts.next() else {
        return Ok(None);
    };
    if hosts.next().is_some() {
        return Err(MalformedHead::DuplicateHost);
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| MalformedHead::Host(HostError::NotText))?
        .trim_matches([' ', '\t']);
    parse_authority(text).map(Some).map_err(MalformedHead::Host)
}

/// Refuses the body-length ambiguities a proxy must not pass on (RFC 9112 §6.1, §6.3).
fn check_body_length(
    headers: &[(String, Vec<u8>)],
    version: HttpVersion,
) -> Result<(), MalformedHead> {
    let named = |wanted: &'static str| {
        headers
            .iter()
            .filter(move |(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.as_slice())
    };
    let chunked = named("transfer-encoding").next().is_some();
    let mut lengths = named("content-length");
    let first_length = lengths.next();
    if chunked && (first_length.is_some() || version == HttpVersion::Http10) {
        return Err(MalformedHead::AmbiguousBodyLength);
    }
    if let Some(first) = first_length {
        // At most 19 digits: every such number fits in a u64.
        let valid = |value: &[u8]| {
            !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit)
        };
        if !valid(first) || lengths.any(|other| other != first) {
            return Err(MalformedHead::AmbiguousBodyLength);
        }
    }
    if chunked {
        let codings: Vec<String> = named("transfer-encoding")
            .flat_map(|value| value.split(|&b| b == b','))
            .map(|coding| {
                String::from_utf8_lossy(coding)
                    .trim_matches([' ', '\t'])
                    .to_ascii_lowercase()
            })
            .filter(|coding| !coding.is_empty())
            .collect();
        let chunked_once_last = codings.last().is_some_and(|last| last == "chunked")
            && codings.iter().filter(|coding| *coding == "chunked").count() == 1;
        if !chunked_once_last {
            return Err(MalformedHead::UnsupportedTransferEncoding);
        }
    }
    Ok(())
}
