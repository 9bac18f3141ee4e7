//! What every connection of one proxy shares: the sandbox's name, the policy (reloaded when its
//! files change), the stable-name map, the log, the resolver, the credentials and TLS material,
//! and the limits; plus the words the log uses for a denial.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::mitm::SandboxCa;
use crate::policy::{DecisionReason, PolicyWatcher};
use crate::secrets::Credentials;

use super::config::Limits;
use super::log::{EgressLog, EgressLogEntry, EgressPath, Verdict};
use super::names::{NamesError, StableNames};
use super::resolve::Resolver;

/// The state shared by a proxy's connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) sandbox: String,
    pub(crate) policy: PolicyWatcher,
    pub(crate) names: Arc<StableNames>,
    pub(crate) log: EgressLog,
    pub(crate) resolver: Resolver,
    pub(crate) credentials: Credentials,
    pub(crate) ca: Option<SandboxCa>,
    pub(crate) upstream_tls: Arc<rustls::ClientConfig>,
    pub(crate) limits: Limits,
}

/// Why a connection was refused, as the log and the `403` body say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DenyReason {
    /// The policy refused the name or literal address (its own reason: `deny-rule`, …).
    Policy(DecisionReason),
    /// Every address the name resolved to is denied.
    Address,
    /// The name did not resolve.
    Unresolved,
    /// The ClientHello's server name is not the target.
    SniMismatch,
    /// The `Host` header is not the target.
    HostMismatch,
    /// A placeholder of a secret was on its way to a host that is not its service's.
    PlaceholderLeak,
    /// Not a request the proxy serves (malformed, origin form, `https://` URI, …).
    BadRequest,
    /// The guest sent nothing usable in time.
    Timeout,
    /// The proxy already handles its maximum of connections.
    ConnectionLimit,
}

impl DenyReason {
    /// The word in the log's `reason` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DenyReason::Policy(reason) => reason.as_str(),
            DenyReason::Address => "address",
            DenyReason::Unresolved => "unresolved",
            DenyReason::SniMismatch => "sni-mismatch",
            DenyReason::HostMismatch => "host-mismatch",
            DenyReason::PlaceholderLeak => "placeholder-leak",
            DenyReason::BadRequest => "bad-request",
            DenyReason::Timeout => "timeout",
            DenyReason::ConnectionLimit => "connection-limit",
        }
    }

    /// A sentence for the body of a `403`.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            DenyReason::Policy(reason) => reason.describe(),
            DenyReason::Address => {
                "every address of the name is denied (private, loopback, metadata or a deny rule)"
            }
            DenyReason::Unresolved => "the name does not resolve",
            DenyReason::SniMismatch => "the TLS server name is not the host connected to",
            DenyReason::HostMismatch => "the Host header is not the host connected to",
            DenyReason::PlaceholderLeak => {
                "the request carries the placeholder of a secret for another host"
            }
            DenyReason::BadRequest => "not a request the egress proxy serves",
            DenyReason::Timeout => "nothing usable arrived in time",
            DenyReason::ConnectionLimit => "too many connections at once",
        }
    }
}

impl Shared {
    /// Logs a denial of `host:port` that came by `path`.
    pub(crate) fn log_denied(
        &self,
        path: EgressPath,
        host: &str,
        port: u16,
        reason: DenyReason,
        rule: Option<String>,
    ) {
        let mut entry = EgressLogEntry::new(&self.sandbox, path, host, port, Verdict::Deny);
        entry.reason = Some(reason.as_str().to_string());
        entry.rule = rule;
        self.log.record(&entry);
    }

    /// The stable address of `name`, handed out (and the shared map written) off the async
    /// workers if it is new.
    pub(crate) async fn stable_address(&self, name: &str) -> Result<Ipv4Addr, StableAddressError> {
        if let Some(address) = self.names.cached_address(name) {
            return Ok(address);
        }
        let names = Arc::clone(&self.names);
        let name = name.to_string();
        tokio::task::spawn_blocking(move || names.address_for(&name))
            .await
            .map_err(|_| StableAddressError::Interrupted)?
            .map_err(StableAddressError::Names)
    }

    /// The name a stable address stands for (rereading the shared map off the async workers if
    /// the address is new to this process).
    pub(crate) async fn stable_name(&self, address: Ipv4Addr) -> Option<String> {
        let names = Arc::clone(&self.names);
        tokio::task::spawn_blocking(move || names.name_for(address))
            .await
            .ok()
            .flatten()
    }
}

/// Why a name got no stable address.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StableAddressError {
    /// The map refused.
    #[error("stable-name map")]
    Names(#[source] NamesError),
    /// The blocking task did not finish (the runtime is shutting down).
    #[error("the stable-name lookup was interrupted")]
    Interrupted,
}
