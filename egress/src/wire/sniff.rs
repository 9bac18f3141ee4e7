//! Guesses what a captured connection speaks from its first bytes: a TLS handshake record or an
//! HTTP/1.x request line. Anything else is plain TCP to the policy.

/// TLS record content type `handshake` (RFC 8446 §5.1): the first byte of every ClientHello.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Longest method token accepted by [`looks_like_http`] (`VERSION-CONTROL`, `UPDATEREDIRECTREF`
/// fit).
pub const MAX_SNIFFED_METHOD: usize = 20;

/// Whether a connection whose first byte is `first` starts a TLS handshake.
pub fn looks_like_tls(first: u8) -> bool {
    first == TLS_HANDSHAKE_RECORD
}

/// Whether `prefix` starts with an HTTP method followed by a space: 1 to
/// [`MAX_SNIFFED_METHOD`] upper-case letters, `-` or `_` (every registered method has this
/// shape; requiring it keeps banners such as `SSH-2.0-…` out). False while the space has not
/// arrived yet.
pub fn looks_like_http(prefix: &[u8]) -> bool {
    let method_len = prefix
        .iter()
        .take(MAX_SNIFFED_METHOD.saturating_add(1))
        .take_while(|&&b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
        .count();
    (1..=MAX_SNIFFED_METHOD).contains(&method_len) && prefix.get(method_len) == Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_recognized_by_its_record_type() {
        assert!(looks_like_tls(0x16));
        assert!(!looks_like_tls(b'G'));
        assert!(!looks_like_tls(0x15));
    }

    #[test]
    fn http_needs_a_method_and_a_space() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"CONNECT a:1 HTTP/1.1"));
        assert!(looks_like_http(b"M-SEARCH * HTTP/1.1"));
        assert!(!looks_like_http(b"GET"));
        assert!(!looks_like_http(b""));
        assert!(!looks_like_http(b" GET /"));
        assert!(!looks_like_http(b"get / HTTP/1.1"));
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH_9.6 Ubuntu\r\n"));
        assert!(!looks_like_http(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_http(
            &[b'A'; 21].iter().chain(b" /").copied().collect::<Vec<_>>()
        ));
        assert!(looks_like_http(
            &[b'A'; 20].iter().chain(b" /").copied().collect::<Vec<_>>()
        ));
    }
}
