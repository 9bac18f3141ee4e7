//! The guest's egress link: every connection the guest makes to the outside is a vsock
//! connection to host port [`EGRESS_PORT`], opened by guest-init's forwarder or DNS stub, which
//! lands on the sandbox's egress proxy (a host process of its own). Each connection starts with
//! one hello line saying what it is; the host trusts none of it and checks everything itself.
//!
//! ```text
//! PADDOCK-EGRESS/1 PROXY c=<crc32>\n                      an HTTP request head follows (CONNECT or absolute URI)
//! PADDOCK-EGRESS/1 TRANSPARENT 198.18.0.7:443 c=<crc32>\n  a captured connection; its bytes follow
//! PADDOCK-EGRESS/1 RESOLVE example.com c=<crc32>\n         the host answers one line and closes:
//! A 198.18.0.7\n | NXDOMAIN\n
//! ```
//! The line carries a magic with the version and a CRC32 of what precedes ` c=`; it is at most
//! [`MAX_HELLO_LINE`] bytes with its newline.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

/// Host vsock port of the egress proxy.
pub const EGRESS_PORT: u32 = 1080;
/// Guest TCP port of guest-init's HTTP proxy forwarder (what `HTTP_PROXY` names).
pub const GUEST_PROXY_PORT: u16 = 3128;
/// Guest TCP port where captured connections are redirected.
pub const GUEST_CAPTURE_PORT: u16 = 3129;
/// Magic and version that open every hello line.
pub const EGRESS_MAGIC: &str = "PADDOCK-EGRESS/1";
/// Longest hello line, newline included.
pub const MAX_HELLO_LINE: usize = 320;
/// Longest DNS name (RFC 1035, without the trailing dot).
pub const MAX_NAME_LEN: usize = 253;

/// What a guest connection to the egress port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressHello {
    /// A program used the guest's HTTP proxy: an HTTP/1.x request head follows.
    Proxy,
    /// A connection captured on its way out (it ignored the proxy settings), to this address.
    Transparent(SocketAddr),
    /// The DNS stub asks whether this name may be used (lower case, no trailing dot).
    Resolve(String),
}

/// The host's answer to [`EgressHello::Resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveAnswer {
    /// Allowed: the guest uses this stable address, which the proxy maps back to the name.
    Address(Ipv4Addr),
    /// Denied or unknown: the stub answers NXDOMAIN.
    NxDomain,
}

/// Why a hello or answer line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressLineError {
    /// Longer than [`MAX_HELLO_LINE`] or without its newline.
    #[error("egress line is longer than {MAX_HELLO_LINE} bytes or has no newline")]
    TooLong,
    /// Not UTF-8, wrong magic, or not one of the known forms.
    #[error("egress line is malformed")]
    Malformed,
    /// A different protocol version.
    #[error("egress line has another version (expected {EGRESS_MAGIC})")]
    Version,
    /// The checksum does not match.
    #[error("egress line checksum mismatch")]
    Checksum,
    /// The name is not a valid DNS name.
    #[error("not a valid DNS name")]
    BadName,
}

impl fmt::Display for EgressHello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressHello::Proxy => write!(f, "PROXY"),
            EgressHello::Transparent(addr) => write!(f, "TRANSPARENT {addr}"),
            EgressHello::Resolve(name) => write!(f, "RESOLVE {name}"),
        }
    }
}

impl EgressHello {
    /// The hello line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let body = format!("{EGRESS_MAGIC} {self}");
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body} c={crc:08x}\n").into_bytes()
    }

    /// Parses one hello line (with or without its trailing newline).
    pub fn decode(line: &[u8]) -> Result<Self, EgressLineError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.len() >= MAX_HELLO_LINE {
            return Err(EgressLineError::TooLong);
        }
        let line = std::str::from_utf8(line).map_err(|_| EgressLineError::Malformed)?;
        let (body, crc) = line.rsplit_once(" c=").ok_or(EgressLineError::Malformed)?;
        let crc = u32::from_str_radix(crc, 16).map_err(|_| EgressLineError::Malformed)?;
        let (magic, rest) = body.split_once(' ').ok_or(EgressLineError::Malformed)?;
        if magic != EGRESS_MAGIC {
            return Err(if magic.starts_with("PADDOCK-EGRESS/") {
                EgressLineError::Version
            } else {
                EgressLineError::Malformed
            });
        }
        if crc32fast::hash(body.as_bytes()) != crc {
            return Err(EgressLineError::Checksum);
        }
        let (kind, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        match (kind, arg) {
            ("PROXY", "") => Ok(EgressHello::Proxy),
            ("TRANSPARENT", addr) => addr
                .parse()
                .map(EgressHello::Transparent)
                .map_err(|_| EgressLineError::Malformed),
            ("RESOLVE", name) => normalize_name(name).map(EgressHello::Resolve),
            _ => Err(EgressLineError::Malformed),
        }
    }
}

impl ResolveAnswer {
    /// The answer line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ResolveAnswer::Address(ip) => format!("A {ip}\n").into_bytes(),
            ResolveAnswer::NxDomain => b"NXDOMAIN\n".to_vec(),
        }
    }

    /// Parses an answer line (with or without its trailing newline).
    pub fn decode(line: &[u8]) -> Result<Self, EgressLineError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.len() >= MAX_HELLO_LINE {
            return Err(EgressLineError::TooLong);
        }
        let line = std::str::from_utf8(line).map_err(|_| EgressLineError::Malformed)?;
        if line == "NXDOMAIN" {
            return Ok(ResolveAnswer::NxDomain);
        }
        line.strip_prefix("A ")
            .and_then(|ip| ip.parse().ok())
            .map(ResolveAnswer::Address)
            .ok_or(EgressLineError::Malformed)
    }
}

/// Checks a DNS name and returns it in lower case without a trailing dot: 1-253 characters,
/// labels of 1-63 letters, digits, `-` or `_`, not starting or ending with `-`.
pub fn normalize_name(name: &str) -> Result<String, EgressLineError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(EgressLineError::BadName);
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.split('.').all(label_ok) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(EgressLineError::BadName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_round_trip() {
        for hello in [
            EgressHello::Proxy,
            EgressHello::Transparent("198.18.0.7:443".parse().unwrap()),
            EgressHello::Transparent("[2001:db8::1]:80".parse().unwrap()),
            EgressHello::Resolve("api.anthropic.com".into()),
        ] {
            let line = hello.encode();
            assert!(line.len() <= MAX_HELLO_LINE);
            assert_eq!(EgressHello::decode(&line), Ok(hello));
        }
    }

    #[test]
    fn answers_round_trip() {
        for answer in [
            ResolveAnswer::Address(Ipv4Addr::new(198, 18, 0, 7)),
            ResolveAnswer::NxDomain,
        ] {
            assert_eq!(ResolveAnswer::decode(&answer.encode()), Ok(answer));
        }
        assert!(ResolveAnswer::decode(b"A 300.1.1.1\n").is_err());
        assert!(ResolveAnswer::decode(&[b'A'; 1000]).is_err());
    }

    #[test]
    fn bad_hellos_are_refused() {
        let good = EgressHello::Resolve("example.com".into()).encode();
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        assert_eq!(
            EgressHello::decode(&flipped),
            Err(EgressLineError::Checksum)
        );
        let other_version = String::from_utf8(good.clone()).unwrap().replace("/1", "/2");
        assert_eq!(
            EgressHello::decode(other_version.as_bytes()),
            Err(EgressLineError::Version)
        );
        assert_eq!(
            EgressHello::decode(&vec![b'x'; 4096]),
            Err(EgressLineError::TooLong)
        );
        assert_eq!(
            EgressHello::decode(b"\xff\xfe c=0\n"),
            Err(EgressLineError::Malformed)
        );
        let bad_name = format!("{EGRESS_MAGIC} RESOLVE ../etc");
        let line = format!(
            "{bad_name} c={:08x}\n",
            crc32fast::hash(bad_name.as_bytes())
        );
        assert_eq!(
            EgressHello::decode(line.as_bytes()),
            Err(EgressLineError::BadName)
        );
    }

    #[test]
    fn names_are_normalized_and_checked() {
        assert_eq!(normalize_name("Example.COM."), Ok("example.com".into()));
        assert!(normalize_name("").is_err());
        assert!(normalize_name("a..b").is_err());
        assert!(normalize_name("-a.b").is_err());
        assert!(normalize_name(&"a".repeat(64)).is_err());
        assert!(normalize_name(&["a"; 130].join(".")).is_err());
        assert!(normalize_name("a b").is_err());
    }
}
