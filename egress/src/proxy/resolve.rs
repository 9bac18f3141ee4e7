//! Name resolution by the proxy itself: the configured overrides first (tests), else the host's
//! resolver, under a timeout and with a bounded number of addresses. The guest never resolves
//! anything outside; what this returns is still checked address by address before any dial.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Most addresses kept from one resolution.
pub const MAX_ADDRESSES: usize = 16;

/// Why a name has no addresses.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The resolver did not answer in time.
    #[error("resolving {name} took longer than {after:?}")]
    Timeout {
        /// The name.
        name: String,
        /// The time allowed.
        after: Duration,
    },
    /// The resolver failed (no such name, no network, …).
    #[error("resolving {name} failed")]
    Lookup {
        /// The name.
        name: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The resolver answered with no address.
    #[error("{name} has no address")]
    NoAddress {
        /// The name.
        name: String,
    },
}

/// Resolves names for the proxy.
#[derive(Debug, Clone)]
pub struct Resolver {
    overrides: Vec<(String, IpAddr)>,
    timeout: Duration,
}

impl Resolver {
    /// A resolver answering `overrides` (names compared without case or trailing dot) itself and
    /// asking the host's resolver for everything else, each within `timeout`.
    pub fn new(overrides: Vec<(String, IpAddr)>, timeout: Duration) -> Self {
        let overrides = overrides
            .into_iter()
            .map(|(name, ip)| (normal(&name), ip))
            .collect();
        Resolver { overrides, timeout }
    }

    /// The addresses of `name` with `port`, in the resolver's order, at most [`MAX_ADDRESSES`]
    /// and without repeats.
    pub async fn resolve(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let name = normal(name);
        let mut addresses: Vec<SocketAddr> = Vec::new();
        let overridden = self
            .overrides
            .iter()
            .filter(|(overridden, _)| *overridden == name)
            .map(|(_, ip)| SocketAddr::new(*ip, port));
        push_unique(&mut addresses, overridden);
        if addresses.is_empty() {
            let looked_up =
                tokio::time::timeout(self.timeout, tokio::net::lookup_host((name.as_str(), port)))
                    .await
                    .map_err(|_| ResolveError::Timeout {
                        name: name.clone(),
                        after: self.timeout,
                    })?
                    .map_err(|source| ResolveError::Lookup {
                        name: name.clone(),
                        source,
                    })?;
            push_unique(&mut addresses, looked_up);
        }
        if addresses.is_empty() {
            return Err(ResolveError::NoAddress { name });
        }
        Ok(addresses)
    }
}

fn push_unique(addresses: &mut Vec<SocketAddr>, more: impl Iterator<Item = SocketAddr>) {
    for address in more {
        if addresses.len() >= MAX_ADDRESSES {
            break;
        }
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
}

/// A name as compared here: lower case, no trailing dot.
fn normal(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
