//! One egress rule as a user writes it (`paddock policy allow RULE`): a host pattern with an
//! optional port, a network in CIDR notation, or one address with a port. Rules parse from and
//! print to the same text, which is also their JSON form.
//!
//! | text                         | meaning                                              |
//! |------------------------------|------------------------------------------------------|
//! | `example.com`                | that name, any port                                  |
//! | `*.example.com`              | exactly one label below: `a.example.com`             |
//! | `**.example.com`             | any depth below: `a.example.com`, `a.b.example.com`  |
//! | `example.com:5432` (any form)| the same, on that port only                          |
//! | `10.0.0.0/8`, `2001:db8::/32`| addresses in that network, any port                  |
//! | `192.0.2.7`, `2001:db8::7`   | that one address (`/32`, `/128`), any port           |
//! | `192.0.2.7:22`, `[2001:db8::7]:22` | that address on that port only                 |
//!
//! Neither wildcard matches the base name itself: `**.example.com` does not cover
//! `example.com`; write both rules for both.

use ipnet::IpNet;
use paddock_protocol::egress::{normalize_name, EgressLineError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[cfg(test)]
mod tests;

/// Longest rule text accepted: a 253-byte name, the `**.` prefix and a `:65535` port fit.
pub const MAX_RULE_LEN: usize = 300;

/// Which host names a host rule covers. The base name is normalized (lower case, no trailing
/// dot); names given to [`HostPattern::matches`] must be normalized the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `example.com`: that name only.
    Exact(String),
    /// `*.example.com`: names exactly one label below the base.
    OneLabelBelow(String),
    /// `**.example.com`: names one or more labels below the base.
    AnyDepthBelow(String),
}

/// One allow or deny rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A host pattern, on one port or (without one) on any port.
    Host {
        pattern: HostPattern,
        port: Option<u16>,
    },
    /// Every address in a network, on any port (a bare address is a `/32` or `/128`).
    Network(IpNet),
    /// One address on one port.
    Socket { ip: IpAddr, port: u16 },
}

/// Why a rule text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("the rule is empty")]
    Empty,
    #[error("the rule is {len} bytes long, more than the {MAX_RULE_LEN}-byte limit")]
    TooLong { len: usize },
    #[error("not a valid network in CIDR notation")]
    BadNetwork(#[source] ipnet::AddrParseError),
    #[error("network {given} has host bits set (did you mean {network}?)")]
    HostBitsSet { given: IpNet, network: IpNet },
    #[error("not a valid IP address")]
    BadAddress(#[source] std::net::AddrParseError),
    #[error("an IPv6 address with a port is written `[address]:port`")]
    BadBracketedAddress,
    #[error("the port must be a number from 1 to 65535")]
    BadPort,
    #[error("not a valid host name")]
    BadName(#[source] EgressLineError),
    #[error("a wildcard is only allowed as a leading `*.` or `**.`")]
    BadWildcard,
    #[error("a host name ending in a number looks like an address; write an IP or CIDR rule")]
    LooksLikeAddress,
}

impl HostPattern {
    /// Parses `name`, `*.name` or `**.name` (no port).
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let (make, base): (fn(String) -> Self, &str) = if let Some(base) = text.strip_prefix("**.")
        {
            (HostPattern::AnyDepthBelow, base)
        } else if let Some(base) = text.strip_prefix("*.") {
            (HostPattern::OneLabelBelow, base)
        } else {
            (HostPattern::Exact, text)
        };
        if base.contains('*') {
            return Err(RuleError::BadWildcard);
        }
        let base = normalize_name(base).map_err(RuleError::BadName)?;
        if ends_in_numeric_label(&base) {
            return Err(RuleError::LooksLikeAddress);
        }
        Ok(make(base))
    }

    /// Whether the pattern covers `name` (normalized: lower case, no trailing dot).
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(base) => name == base,
            HostPattern::OneLabelBelow(base) => {
                labels_below(name, base).is_some_and(|below| !below.contains('.'))
            }
            HostPattern::AnyDepthBelow(base) => labels_below(name, base).is_some(),
        }
    }

    /// The name the pattern is anchored at.
    pub fn base(&self) -> &str {
        match self {
            HostPattern::Exact(base)
            | HostPattern::OneLabelBelow(base)
            | HostPattern::AnyDepthBelow(base) => base,
        }
    }
}

/// The labels of `name` in front of `.base`, if `name` lies strictly below `base`.
fn labels_below<'a>(name: &'a str, base: &str) -> Option<&'a str> {
    let below = name.strip_suffix(base)?.strip_suffix('.')?;
    (!below.is_empty()).then_some(below)
}

/// No top-level domain starts with a digit, while `inet_aton` reads `127.1` or `0x7f.1` as
/// addresses: a name like that is an address in disguise, never a host name.
pub(crate) fn ends_in_numeric_label(name: &str) -> bool {
    name.rsplit('.')
        .next()
        .and_then(|label| label.bytes().next())
        .is_some_and(|first| first.is_ascii_digit())
}

impl Rule {
    /// Whether this is a host rule covering `name` (normalized) on `port`.
    pub fn matches_name(&self, name: &str, port: u16) -> bool {
        match self {
            Rule::Host {
                pattern,
                port: rule_port,
            } => rule_port.is_none_or(|p| p == port) && pattern.matches(name),
            Rule::Network(_) | Rule::Socket { .. } => false,
        }
    }

    /// Whether this is an address rule covering `ip` on `port`.
    pub fn covers_address(&self, ip: IpAddr, port: u16) -> bool {
        match self {
            Rule::Network(network) => network.contains(&ip),
            Rule::Socket {
                ip: rule_ip,
                port: rule_port,
            } => *rule_ip == ip && *rule_port == port,
            Rule::Host { .. } => false,
        }
    }

    /// The port the rule is limited to, if any.
    pub fn port(&self) -> Option<u16> {
        match self {
            Rule::Host { port, .. } => *port,
            Rule::Socket { port, .. } => Some(*port),
            Rule::Network(_) => None,
        }
    }

    /// The addresses an address rule names (a socket rule names one address).
    pub fn network(&self) -> Option<IpNet> {
        match self {
            Rule::Network(network) => Some(*network),
            Rule::Socket { ip, .. } => Some(IpNet::from(*ip)),
            Rule::Host { .. } => None,
        }
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, RuleError> {
        if text.is_empty() {
            return Err(RuleError::Empty);
        }
        if text.len() > MAX_RULE_LEN {
            return Err(RuleError::TooLong { len: text.len() });
        }
        if text.contains('/') {
            return parse_network(text);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Rule::Network(IpNet::from(ip)));
        }
        if let Some(bracketed) = text.strip_prefix('[') {
            let (ip, port) = bracketed
                .split_once("]:")
                .ok_or(RuleError::BadBracketedAddress)?;
            let ip = ip.parse::<Ipv6Addr>().map_err(RuleError::BadAddress)?;
            return Ok(Rule::Socket {
                ip: IpAddr::V6(ip),
                port: parse_port(port)?,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (text, None),
        };
        if let (Ok(ip), Some(port)) = (host.parse::<Ipv4Addr>(), port) {
            return Ok(Rule::Socket {
                ip: IpAddr::V4(ip),
                port,
            });
        }
        if host.contains(':') {
            return Err(RuleError::BadBracketedAddress);
        }
        Ok(Rule::Host {
            pattern: HostPattern::parse(host)?,
            port,
        })
    }
}

fn parse_network(text: &str) -> Result<Rule, RuleError> {
    let given = text.parse::<IpNet>().map_err(RuleError::BadNetwork)?;
    let network = given.trunc();
    if network != given {
        return Err(RuleError::HostBitsSet { given, network });
    }
    Ok(Rule::Network(network))
}

/// Digits only (no sign), 1-65535.
fn parse_port(text: &str) -> Result<u16, RuleError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(RuleError::BadPort),
        Ok(port) => Ok(port),
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(base) => write!(f, "{base}"),
            HostPattern::OneLabelBelow(base) => write!(f, "*.{base}"),
            HostPattern::AnyDepthBelow(base) => write!(f, "**.{base}"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Host {
                pattern,
                port: Some(port),
            } => write!(f, "{pattern}:{port}"),
            Rule::Host {
                pattern,
                port: None,
            } => write!(f, "{pattern}"),
            Rule::Network(network) if network.prefix_len() == network.max_prefix_len() => {
                write!(f, "{}", network.addr())
            }
            Rule::Network(network) => write!(f, "{network}"),
            Rule::Socket {
                ip: IpAddr::V4(ip),
                port,
            } => write!(f, "{ip}:{port}"),
            Rule::Socket {
                ip: IpAddr::V6(ip),
                port,
            } => write!(f, "[{ip}]:{port}"),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(|error: RuleError| match error {
            RuleError::TooLong { .. } => serde::de::Error::custom(error),
            _ => serde::de::Error::custom(format_args!("bad rule {text:?}: {error}")),
        })
    }
}
