//! From a target to a connected upstream: the policy check of the name (or literal address) for
//! a kind of traffic, the resolution, the check of every resolved address, and the dial of the
//! first address that passed — never of one that did not.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::policy::{Decision, EffectivePolicy, TrafficKind};
use crate::wire::Host;

use super::log::EgressPath;
use super::resolve::ResolveError;
use super::shared::Shared;

/// Where the guest wants to go, and how it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) path: EgressPath,
    pub(crate) host: Host,
    pub(crate) port: u16,
}

impl Target {
    /// The host as the log names it: the name, or the bare address.
    pub(crate) fn host_text(&self) -> String {
        match &self.host {
            Host::Name(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }

    /// The policy's decision on this target carrying `kind`.
    pub(crate) fn check(&self, policy: &EffectivePolicy, kind: TrafficKind) -> Decision {
        match &self.host {
            Host::Name(name) => policy.check_name(name, self.port, kind),
            Host::Ip(ip) => policy.check_ip_target(*ip, self.port, kind),
        }
    }
}

/// The addresses of a target that passed the address check, in the resolver's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) addresses: Vec<SocketAddr>,
}

/// Why a target has no route.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    /// The name did not resolve.
    #[error("the target does not resolve")]
    Unresolved(#[source] ResolveError),
    /// Every address was denied; the decision on the first one.
    #[error("every address of the target is denied ({0})")]
    Denied(Decision),
}

/// Why no connection to the upstream was made.
#[derive(Debug, thiserror::Error)]
#[error("connecting to {address} failed")]
pub(crate) struct DialError {
    /// The last address tried.
    pub(crate) address: SocketAddr,
    /// Its error.
    #[source]
    pub(crate) source: io::Error,
}

/// Resolves `target` (a literal address is its own resolution) and keeps the addresses the
/// policy lets the proxy dial.
pub(crate) async fn route(
    shared: &Shared,
    policy: &EffectivePolicy,
    target: &Target,
) -> Result<Route, RouteError> {
    let resolved = match &target.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
        Host::Name(name) => shared
            .resolver
            .resolve(name, target.port)
            .await
            .map_err(RouteError::Unresolved)?,
    };
    let mut first_denial = None;
    let mut addresses = Vec::with_capacity(resolved.len());
    for address in resolved {
        let decision = policy.check_address(address.ip(), address.port());
        if decision.allowed {
            addresses.push(address);
        } else if first_denial.is_none() {
            first_denial = Some(decision);
        }
    }
    match first_denial {
        Some(denial) if addresses.is_empty() => Err(RouteError::Denied(denial)),
        _ => Ok(Route { addresses }),
    }
}

/// Connects to the route's addresses in order, each within `timeout`; the first that answers
/// wins.
pub(crate) async fn dial(
    route: &Route,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), DialError> {
    let mut last = None;
    for &address in &route.addresses {
        let attempt = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(attempt) => attempt,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        };
        match attempt {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, address));
            }
            Err(source) => last = Some(DialError { address, source }),
        }
    }
    Err(last.unwrap_or_else(|| DialError {
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source: io::Error::new(io::ErrorKind::NotFound, "no address to dial"),
    }))
}
