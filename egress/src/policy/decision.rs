//! What a policy check returns: the verdict, the rule that decided it and why, ready to be
//! written into the JSON log and the `403` body.

use serde::Serialize;
use std::fmt;

/// What kind of traffic a connection carries, as far as the proxy could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrafficKind {
    /// Plain HTTP/1.x (a proxied request or a captured connection that starts like one).
    Http,
    /// TLS (starts with a ClientHello).
    Tls,
    /// Any other TCP: allowed only by an explicit rule with its port.
    OtherTcp,
}

/// Why a check decided as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionReason {
    /// An explicit allow rule (named in [`Decision::rule`]).
    AllowRule,
    /// The preset allows it (`preset:open`, `preset:balanced`).
    Preset,
    /// A public address no rule denies.
    PublicAddress,
    /// An explicit deny rule (named in [`Decision::rule`]); deny rules win over everything.
    DenyRule,
    /// Neither an allow rule nor the preset allows the name.
    NotAllowed,
    /// Non-HTTP TCP needs an allow rule carrying the port (`host:port` or `IP:port`).
    NeedsPortRule,
    /// A connection to a literal IP address needs an allow rule for the address (or `open`).
    NeedsAddressRule,
    /// The address is in the fixed deny set (the range is named in [`Decision::rule`]).
    DenySet,
    /// The target is not a valid host name.
    InvalidName,
}

/// The outcome of one policy check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// The rule text that decided (`**.github.com`), or `preset:balanced`,
    /// `deny-set:loopback`; `None` when no rule was involved.
    pub rule: Option<String>,
    pub reason: DecisionReason,
}

impl Decision {
    pub(crate) fn allow(reason: DecisionReason, rule: Option<String>) -> Self {
        Decision {
            allowed: true,
            rule,
            reason,
        }
    }

    pub(crate) fn deny(reason: DecisionReason, rule: Option<String>) -> Self {
        Decision {
            allowed: false,
            rule,
            reason,
        }
    }
}

impl TrafficKind {
    /// `http`, `tls` or `other-tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficKind::Http => "http",
            TrafficKind::Tls => "tls",
            TrafficKind::OtherTcp => "other-tcp",
        }
    }
}

impl DecisionReason {
    /// The kebab-case name used in logs: `deny-rule`, `needs-port-rule`, …
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionReason::AllowRule => "allow-rule",
            DecisionReason::Preset => "preset",
            DecisionReason::PublicAddress => "public-address",
            DecisionReason::DenyRule => "deny-rule",
            DecisionReason::NotAllowed => "not-allowed",
            DecisionReason::NeedsPortRule => "needs-port-rule",
            DecisionReason::NeedsAddressRule => "needs-address-rule",
            DecisionReason::DenySet => "deny-set",
            DecisionReason::InvalidName => "invalid-name",
        }
    }

    /// A sentence for people (the body of a `403`).
    pub fn describe(self) -> &'static str {
        match self {
            DecisionReason::AllowRule => "allowed by a rule",
            DecisionReason::Preset => "allowed by the preset",
            DecisionReason::PublicAddress => "a public address",
            DecisionReason::DenyRule => "denied by a rule",
            DecisionReason::NotAllowed => "not allowed by any rule or the preset",
            DecisionReason::NeedsPortRule => {
                "non-HTTP traffic needs an allow rule with its port (host:port or IP:port)"
            }
            DecisionReason::NeedsAddressRule => {
                "a connection to an IP address needs an allow rule for that address"
            }
            DecisionReason::DenySet => "the address is in a range sandboxes never reach",
            DecisionReason::InvalidName => "not a valid host name",
        }
    }
}

impl fmt::Display for TrafficKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DecisionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Decision {
    /// `allowed by **.github.com (allow-rule)`, `denied by deny-set:loopback (deny-set)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        match &self.rule {
            Some(rule) => write!(f, "{verdict} by {rule} ({})", self.reason),
            None => write!(f, "{verdict} ({})", self.reason),
        }
    }
}
