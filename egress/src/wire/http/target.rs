//! The request target of a head (RFC 9112 §3.2): authority form for CONNECT, absolute form for
//! requests through the proxy, origin form for requests sent straight to a server.

use super::MalformedHead;
use crate::wire::host::{parse_authority, Host};

/// The scheme of an absolute-form target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`, default port 80.
    Http,
    /// `https://`, default port 443.
    Https,
}

impl Scheme {
    /// The port used when the URI names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// The scheme as written in a URI, without `://`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A checked request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    /// `CONNECT host:port` (IPv6 as `[addr]:port`); the port is required.
    Authority {
        /// Where to connect.
        host: Host,
        /// The port named in the target.
        port: u16,
    },
    /// `GET http://host[:port]/path?query`.
    Absolute {
        /// `http` or `https`.
        scheme: Scheme,
        /// The host of the URI.
        host: Host,
        /// The port of the URI, or the scheme's default.
        port: u16,
        /// The path and query, always starting with `/`.
        path_and_query: String,
    },
    /// `GET /path?query`: the host comes from the `Host` header.
    Origin(String),
}

impl RequestTarget {
    /// Parses `target` as sent with `method`: CONNECT takes only the authority form, every
    /// other method only the absolute or origin form.
    pub(super) fn parse(method: &str, target: &str) -> Result<Self, MalformedHead> {
        if target.contains('#') {
            return Err(MalformedHead::Fragment);
        }
        if method.eq_ignore_ascii_case("CONNECT") {
            return parse_connect_target(target);
        }
        if target.starts_with('/') {
            return Ok(RequestTarget::Origin(target.to_owned()));
        }
        parse_absolute_target(target)
    }

    /// The host and port, for the authority and absolute forms.
    pub fn host_port(&self) -> Option<(&Host, u16)> {
        match self {
            RequestTarget::Authority { host, port }
            | RequestTarget::Absolute { host, port, .. } => Some((host, *port)),
            RequestTarget::Origin(_) => None,
        }
    }
}

fn parse_connect_target(target: &str) -> Result<RequestTarget, MalformedHead> {
    if target.contains(['/', '?']) {
        return Err(MalformedHead::TargetForm);
    }
    match parse_authority(target).map_err(MalformedHead::Host)? {
        (host, Some(port)) => Ok(RequestTarget::Authority { host, port }),
        (_, None) => Err(MalformedHead::MissingPort),
    }
}

fn parse_absolute_target(target: &str) -> Result<RequestTarget, MalformedHead> {
    let (scheme, rest) = target.split_once("://").ok_or(MalformedHead::TargetForm)?;
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else {
        return Err(MalformedHead::UnsupportedScheme);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    let (host, port) = parse_authority(authority).map_err(MalformedHead::Host)?;
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_owned()
    } else {
        format!("/{path_and_query}")
    };
    Ok(RequestTarget::Absolute {
        scheme,
        host,
        port: port.unwrap_or(scheme.default_port()),
        path_and_query,
    })
}
