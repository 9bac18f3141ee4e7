//! Serializes a request head again for the origin server: origin-form target, `Host` from the
//! URI, hop-by-hop headers dropped (RFC 9110 §7.6.1) and `Connection: close` (or `Upgrade` for a
//! WebSocket handshake): the proxy forwards exactly one request per connection, its body as
//! framed, and nothing the guest sends after it.

use super::{HttpVersion, RequestHead, RequestTarget};

/// Headers that concern only the hop between the guest and the proxy.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Headers a `Connection` list may not remove: dropping them would change which host is meant
/// or how the body that follows is framed.
const PROTECTED: &[&str] = &["host", "content-length", "transfer-encoding"];

/// Why a head cannot be serialized for an origin server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// CONNECT opens a tunnel; there is no request to forward.
    #[error("a CONNECT request has no origin-form equivalent")]
    Connect,
    /// A method or target edited after parsing no longer fits on the request line.
    #[error("the method or target does not fit on a request line")]
    InvalidRequestLine,
    /// A header edited after parsing no longer fits on one header line.
    #[error("header {name:?} has an invalid name or value")]
    InvalidHeader {
        /// The header's name.
        name: String,
    },
}

/// The head to send to the origin server for `head` (absolute or origin form): request line with
/// the origin-form target, `Host` set from the URI for the absolute form (any `Host` header the
/// guest sent is replaced), hop-by-hop headers and those listed in `Connection` removed, and
/// `Connection: close` — or `Connection: Upgrade` with the `Upgrade` header kept for a WebSocket
/// handshake. Ends with the empty line; body bytes are not included.
pub fn rewrite_absolute_to_origin(head: &RequestHead) -> Result<Vec<u8>, RewriteError> {
    let (target, host_line) = match &head.target {
        RequestTarget::Authority { .. } => return Err(RewriteError::Connect),
        RequestTarget::Absolute {
            scheme,
            host,
            port,
            path_and_query,
        } => {
            let host_line = if *port == scheme.default_port() {
                host.to_string()
            } else {
                format!("{host}:{port}")
            };
            (path_and_query.as_str(), Some(host_line))
        }
        RequestTarget::Origin(path) => (path.as_str(), None),
    };
    let listed = connection_tokens(head);
    let websocket = wants_websocket(head);
    let version = match head.version {
        HttpVersion::Http10 => "1.0",
        HttpVersion::Http11 => "1.1",
    };

    if !is_token(&head.method) || !target.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80) {
        return Err(RewriteError::InvalidRequestLine);
    }
    let mut out = Vec::with_capacity(head.head_len.saturating_add(64));
    out.extend_from_slice(format!("{} {target} HTTP/{version}\r\n", head.method).as_bytes());
    if let Some(host_line) = &host_line {
        out.extend_from_slice(format!("Host: {host_line}\r\n").as_bytes());
    }
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        let replaced_host = host_line.is_some() && lower == "host";
        let keep_upgrade = websocket && lower == "upgrade";
        let hop_by_hop = HOP_BY_HOP.contains(&lower.as_str())
            || (listed.contains(&lower) && !PROTECTED.contains(&lower.as_str()));
        if replaced_host || (hop_by_hop && !keep_upgrade) {
            continue;
        }
        if !is_token(name) || value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(RewriteError::InvalidHeader { name: name.clone() });
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let connection = if websocket { "Upgrade" } else { "close" };
    out.extend_from_slice(format!("Connection: {connection}\r\n\r\n").as_bytes());
    Ok(out)
}

/// Whether `head` asks to switch to WebSocket (`Connection: upgrade` and `Upgrade: websocket`):
/// only then is the `Upgrade` header forwarded, and only a `101` answer lets raw bytes through.
pub fn wants_websocket(head: &RequestHead) -> bool {
    connection_tokens(head)
        .iter()
        .any(|token| token == "upgrade")
        && head
            .header_values("upgrade")
            .any(|value| list_tokens(value).any(|token| token == "websocket"))
}

/// The lower-case tokens of every `Connection` and `Proxy-Connection` header.
fn connection_tokens(head: &RequestHead) -> Vec<String> {
    head.header_values("connection")
        .chain(head.header_values("proxy-connection"))
        .flat_map(list_tokens)
        .collect()
}

/// The lower-case, trimmed, non-empty elements of a comma-separated header value.
fn list_tokens(value: &[u8]) -> impl Iterator<Item = String> + '_ {
    value
        .split(|&b| b == b',')
        .map(|item| String::from_utf8_lossy(item).trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
}

/// Whether `name` is a header field name token (RFC 9110 §5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
