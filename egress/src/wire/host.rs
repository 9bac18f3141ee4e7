//! The host part of a connection target (CONNECT authority, absolute URI, `Host` header): a
//! checked, lower-case DNS name or a literal IP address, never a string the guest chose freely.

use paddock_protocol::egress::{normalize_name, EgressLineError};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where a guest wants to go: a DNS name (normalized by [`normalize_name`]: lower case, no
/// trailing dot) or a literal address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A checked DNS name.
    Name(String),
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
}

/// Why a host or `host:port` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Bytes that are not text (a `Host` header value is raw bytes).
    #[error("host is not text")]
    NotText,
    /// Nothing where a host was expected.
    #[error("empty host")]
    Empty,
    /// Neither an address nor a valid DNS name.
    #[error("host is not a valid DNS name")]
    BadName(#[source] EgressLineError),
    /// Looks numeric (last label all digits, or hex `0x..`) but is not a dotted-quad IPv4
    /// address: `127.1`, `0x7f.1`, `010.0.0.1` — forms resolvers read as addresses.
    #[error("host is numeric but not a dotted-quad IPv4 address")]
    AmbiguousNumeric,
    /// A bracketed literal that is not an IPv6 address.
    #[error("bracketed host is not an IPv6 address")]
    BadIpv6Literal,
    /// An IPv6 address without its brackets where a port may follow.
    #[error("IPv6 address without brackets")]
    UnbracketedIpv6,
    /// User information (`user@host`) in an authority.
    #[error("authority carries user information")]
    UserInfo,
    /// A port that is not a decimal number from 1 to 65535.
    #[error("port is not a number from 1 to 65535")]
    BadPort,
}

impl Host {
    /// Parses a bare host: `[v6]`, a dotted-quad IPv4 address or a DNS name.
    pub fn parse(text: &str) -> Result<Self, HostError> {
        if text.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(HostError::BadIpv6Literal)?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| HostError::BadIpv6Literal);
        }
        if let Ok(ip) = text.parse::<Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(ip)));
        }
        if text.contains(':') {
            return Err(HostError::UnbracketedIpv6);
        }
        let name = normalize_name(text).map_err(HostError::BadName)?;
        if looks_numeric(&name) {
            return Err(HostError::AmbiguousNumeric);
        }
        Ok(Host::Name(name))
    }

    /// The DNS name, if this host is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(name) => Some(name),
            Host::Ip(_) => None,
        }
    }

    /// The literal address, if this host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Name(_) => None,
            Host::Ip(ip) => Some(*ip),
        }
    }
}

/// Names, IPv4 addresses, and IPv6 addresses in brackets (as in an authority or `Host` header).
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Splits and checks an authority `host[:port]` (no user information): the port is `None` when
/// absent.
pub fn parse_authority(text: &str) -> Result<(Host, Option<u16>), HostError> {
    if text.contains('@') {
        return Err(HostError::UserInfo);
    }
    let (host, port) = if text.starts_with('[') {
        match text.rfind(']') {
            Some(close) => {
                let (host, rest) = text.split_at(close + 1);
                match rest.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None if rest.is_empty() => (host, None),
                    None => return Err(HostError::BadIpv6Literal),
                }
            }
            None => return Err(HostError::BadIpv6Literal),
        }
    } else {
        match text.split_once(':') {
            Some((_, port)) if port.contains(':') => return Err(HostError::UnbracketedIpv6),
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = port.map(parse_port).transpose()?;
    Ok((Host::parse(host)?, port))
}

/// A decimal port from 1 to 65535: digits only (no sign, no spaces), at most five of them.
pub fn parse_port(text: &str) -> Result<u16, HostError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// Whether a (normalized) name would be read as a number by a resolver or URL parser: its last
/// label is all digits or `0x` followed by hex digits. Top-level domains are never numeric
/// (RFC 3696 §2), so no real name is lost.
fn looks_numeric(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last
        .strip_prefix("0x")
        .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || last.bytes().all(|b| b.is_ascii_digit())
}
