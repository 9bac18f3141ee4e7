//! Transparent capture: TCP that ignores the proxy settings is redirected to the capture port.
//!
//! The guest has no network card, so a connect() to the outside would fail at once (no route).
//! A dummy interface [`CAPTURE_INTERFACE`] with the address [`CAPTURE_ADDRESS`] takes the
//! default route, and nat rules in chains of our own redirect what would leave through it:
//! - `OUTPUT` (the guest's own programs): TCP out through the dummy interface → the capture
//!   port;
//! - `PREROUTING` (containers on docker's bridges): TCP to an address that is neither the
//!   guest's own nor in docker's default address pools → the capture port; UDP to port 53 of
//!   such an address or of the guest → the DNS stub (a container asking 8.8.8.8 gets the
//!   stub's answer).
//!
//! UDP and ICMP to the outside then go out through the dummy interface, i.e. nowhere.
//! [`CAPTURE_ADDRESS`] is 192.0.0.8, the "IPv4 dummy address" of RFC 7600: never routed, clear
//! of docker's pools (172.17-31.0.0/16, 192.168.0.0/16), of the private ranges a user may
//! reach through the host, and of the egress proxy's stable range (198.18.0.0/15, which must
//! be captured). Being the guest's own, it is reachable from every container network, so
//! containers are pointed at it for DNS and the proxy.
//!
//! Nothing is routed to the dummy interface unless the rules are in place.

use super::dns_server::DNS_PORT;
use super::netlink::{self, NetlinkError};
use super::tool::{ToolCommand, ToolError};
use super::transparent::CAPTURE_PORT;
use crate::reaper::Reaper;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

/// The interface holding the default route.
pub const CAPTURE_INTERFACE: &str = "paddock0";
/// Its address (see the module documentation).
pub const CAPTURE_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 8);
/// Chain of our own in the nat table's `OUTPUT`.
pub const OUTPUT_CHAIN: &str = "PADDOCK_EGRESS_OUTPUT";
/// Chain of our own in the nat table's `PREROUTING`.
pub const PREROUTING_CHAIN: &str = "PADDOCK_EGRESS_PREROUTING";
/// Destinations containers reach directly: docker's default address pools.
pub const CONTAINER_NETWORKS: [&str; 2] = ["172.16.0.0/12", "192.168.0.0/16"];
/// How long iptables-restore may take.
const RULES_TIMEOUT: Duration = Duration::from_secs(10);

/// How to set capture up; [`CaptureSetup::guest`] is the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSetup {
    pub interface: String,
    /// The interface's kind (`dummy`).
    pub kind: String,
    pub address: Ipv4Addr,
    /// Applies the rules read from its stdin.
    pub rules_tool: ToolCommand,
}

/// What [`CaptureSetup::install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureOutcome {
    /// Rules and default route in place.
    Installed,
    /// No iptables-restore (the minimal profile): the interface has its address but nothing
    /// is routed to it, so connections to the outside fail at once.
    NoIptables,
}

/// Why capture could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot create the interface {interface}: {source}")]
    Interface {
        interface: String,
        source: NetlinkError,
    },
    #[error("cannot give {interface} its address: {source}")]
    Address {
        interface: String,
        source: NetlinkError,
    },
    #[error("cannot install the capture rules: {0}")]
    Rules(#[source] ToolError),
    #[error("cannot route the outside to {interface}: {source}")]
    Route {
        interface: String,
        source: NetlinkError,
    },
}

/// Accepts "already exists" (a second run) as success.
fn tolerate_existing(result: Result<(), NetlinkError>) -> Result<(), NetlinkError> {
    match result {
        Err(e) if e.already_exists() => Ok(()),
        other => other,
    }
}

impl CaptureSetup {
    /// The guest's capture: [`CAPTURE_INTERFACE`] (dummy), [`CAPTURE_ADDRESS`], and
    /// `iptables-restore --noflush` (Debian's is the nf_tables backend).
    pub fn guest() -> Self {
        Self {
            interface: CAPTURE_INTERFACE.to_string(),
            kind: "dummy".to_string(),
            address: CAPTURE_ADDRESS,
            rules_tool: ToolCommand::new("iptables-restore", &["--noflush"]),
        }
    }

    /// Creates the interface, installs the rules, then routes the outside to the interface.
    pub fn install(&self, reaper: &Arc<Reaper>) -> Result<CaptureOutcome, CaptureError> {
        let interface = || self.interface.clone();
        tolerate_existing(netlink::add_link(&self.interface, &self.kind)).map_err(|source| {
            CaptureError::Interface {
                interface: interface(),
                source,
            }
        })?;
        let index = netlink::interface_index(&self.interface).map_err(|source| {
            CaptureError::Interface {
                interface: interface(),
                source,
            }
        })?;
        tolerate_existing(netlink::add_address(index, self.address, 32)).map_err(|source| {
            CaptureError::Address {
                interface: interface(),
                source,
            }
        })?;
        match self.rules_tool.run(
            reaper,
            capture_rules(&self.interface).as_bytes(),
            RULES_TIMEOUT,
        ) {
            Ok(()) => {}
            Err(ToolError::Missing { .. }) => return Ok(CaptureOutcome::NoIptables),
            Err(e) => return Err(CaptureError::Rules(e)),
        }
        tolerate_existing(netlink::add_default_route(index)).map_err(|source| {
            CaptureError::Route {
                interface: interface(),
                source,
            }
        })?;
        Ok(CaptureOutcome::Installed)
    }
}

/// The `iptables-restore --noflush` input: our two chains (created, or emptied if they exist)
/// and the jumps to them.
pub fn capture_rules(interface: &str) -> String {
    let mut rules = format!(
        "*nat\n:{OUTPUT_CHAIN} - [0:0]\n:{PREROUTING_CHAIN} - [0:0]\n\
         -A OUTPUT -j {OUTPUT_CHAIN}\n-A PREROUTING -j {PREROUTING_CHAIN}\n"
    );
    rules.push_str(&format!(
        "-A {OUTPUT_CHAIN} -o {interface} -p tcp -m addrtype ! --dst-type LOCAL \
         -j REDIRECT --to-ports {CAPTURE_PORT}\n"
    ));
    // DNS asked of the guest itself (daemon.json names CAPTURE_ADDRESS): answered by the stub
    // at the address of the bridge it came in on, which is also where the stub's reply comes
    // from, so the reply matches (a UDP socket bound to 0.0.0.0 replies from the address the
    // route to the container has, not from CAPTURE_ADDRESS).
    rules.push_str(&format!(
        "-A {PREROUTING_CHAIN} -p udp --dport {DNS_PORT} -m addrtype --dst-type LOCAL \
         -j REDIRECT --to-ports {DNS_PORT}\n\
         -A {PREROUTING_CHAIN} -m addrtype --dst-type LOCAL -j RETURN\n"
    ));
    for network in CONTAINER_NETWORKS {
        rules.push_str(&format!("-A {PREROUTING_CHAIN} -d {network} -j RETURN\n"));
    }
    rules.push_str(&format!(
        "-A {PREROUTING_CHAIN} -p udp --dport {DNS_PORT} -j REDIRECT --to-ports {DNS_PORT}\n\
         -A {PREROUTING_CHAIN} -p tcp -j REDIRECT --to-ports {CAPTURE_PORT}\nCOMMIT\n"
    ));
    rules
}

#[cfg(test)]
mod tests;
