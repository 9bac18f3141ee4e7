//! The policy that decides for one sandbox (global and sandbox layers merged) and its checks.
//! Deny rules win over allow rules and presets everywhere; every address, however it was
//! allowed, still passes the fixed deny set unless an allow rule names addresses inside it.

use super::address::{canonical_address, denied_block, DeniedBlock};
use super::decision::{Decision, DecisionReason, TrafficKind};
use super::preset::Preset;
use super::rule::{ends_in_numeric_label, Rule};
use paddock_protocol::egress::{normalize_name, MAX_NAME_LEN};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};

#[cfg(test)]
mod tests;

/// The merged policy of a sandbox; see [`super::Policy::layered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePolicy {
    preset: Preset,
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

/// What a connection target given as text turned out to be.
enum Target {
    Name(String),
    Address(IpAddr),
    Invalid,
}

impl Default for EffectivePolicy {
    /// `balanced` without rules: what a sandbox gets when no policy file exists.
    fn default() -> Self {
        EffectivePolicy::new(Preset::default(), [], [])
    }
}

impl EffectivePolicy {
    /// A policy from its parts; repeated rules are kept once.
    pub fn new(
        preset: Preset,
        allow: impl IntoIterator<Item = Rule>,
        deny: impl IntoIterator<Item = Rule>,
    ) -> Self {
        EffectivePolicy {
            preset,
            allow: unique(allow),
            deny: unique(deny),
        }
    }

    pub fn preset(&self) -> Preset {
        self.preset
    }

    pub fn allow_rules(&self) -> &[Rule] {
        &self.allow
    }

    pub fn deny_rules(&self) -> &[Rule] {
        &self.deny
    }

    /// May a connection to host `name` on `port` carrying `kind` go ahead? (Its resolved
    /// addresses are checked afterwards with [`Self::check_address`].) `name` comes from the
    /// guest: it is normalized here, and a literal IP address is judged by
    /// [`Self::check_ip_target`].
    ///
    /// A deny rule covering the name (a portless one on every port, one with a port on that
    /// port) denies. HTTP and TLS are then allowed by a covering allow rule or the preset;
    /// other TCP only by an allow rule carrying exactly this port.
    pub fn check_name(&self, name: &str, port: u16, kind: TrafficKind) -> Decision {
        let name = match classify_target(name) {
            Target::Name(name) => name,
            Target::Address(ip) => return self.check_ip_target(ip, port, kind),
            Target::Invalid => return Decision::deny(DecisionReason::InvalidName, None),
        };
        if let Some(rule) = self.deny.iter().find(|r| r.matches_name(&name, port)) {
            return Decision::deny(DecisionReason::DenyRule, Some(rule.to_string()));
        }
        let explicit = self.allow.iter().find(|rule| {
            rule.matches_name(&name, port)
                && (kind != TrafficKind::OtherTcp || rule.port().is_some())
        });
        match (explicit, kind) {
            (Some(rule), _) => Decision::allow(DecisionReason::AllowRule, Some(rule.to_string())),
            (None, TrafficKind::OtherTcp) => Decision::deny(DecisionReason::NeedsPortRule, None),
            (None, TrafficKind::Http | TrafficKind::Tls) => {
                let preset = Some(self.preset.rule_text().to_owned());
                if self.preset.allows_name(&name) {
                    Decision::allow(DecisionReason::Preset, preset)
                } else {
                    Decision::deny(DecisionReason::NotAllowed, preset)
                }
            }
        }
    }

    /// May the guest's DNS stub learn an address for `name`? Yes if the name may be used for
    /// TLS on 443, HTTP on 80, or on the port of some allow rule covering it; otherwise the
    /// denial for TLS on 443.
    pub fn check_resolve(&self, name: &str) -> Decision {
        let name = match classify_target(name) {
            Target::Name(name) => name,
            Target::Address(_) | Target::Invalid => {
                return Decision::deny(DecisionReason::InvalidName, None)
            }
        };
        let tls = self.check_name(&name, 443, TrafficKind::Tls);
        if tls.allowed {
            return tls;
        }
        let rule_ports = self
            .allow
            .iter()
            .filter(|rule| matches!(rule, Rule::Host { .. }))
            .filter_map(|rule| rule.port().filter(|&port| rule.matches_name(&name, port)));
        std::iter::once(self.check_name(&name, 80, TrafficKind::Http))
            .chain(rule_ports.map(|port| self.check_name(&name, port, TrafficKind::OtherTcp)))
            .find(|decision| decision.allowed)
            .unwrap_or(tls)
    }

    /// May a connection whose target is a literal IP address (no name) go ahead? Only an
    /// allow rule for the address (for non-HTTP TCP: an `IP:port` rule) or, for HTTP and TLS,
    /// the `open` preset allows it; the address must then pass [`Self::check_address`].
    pub fn check_ip_target(&self, ip: IpAddr, port: u16, kind: TrafficKind) -> Decision {
        if let Some(rule) = self.deny_rule_for(ip, port) {
            return Decision::deny(DecisionReason::DenyRule, Some(rule.to_string()));
        }
        let explicit = self.allow.iter().find(|rule| {
            covers(rule, ip, port) && (kind != TrafficKind::OtherTcp || rule.port().is_some())
        });
        let target = match (explicit, kind) {
            (Some(rule), _) => Decision::allow(DecisionReason::AllowRule, Some(rule.to_string())),
            (None, TrafficKind::OtherTcp) => Decision::deny(DecisionReason::NeedsPortRule, None),
            (None, TrafficKind::Http | TrafficKind::Tls) if self.preset == Preset::Open => {
                Decision::allow(
                    DecisionReason::Preset,
                    Some(self.preset.rule_text().to_owned()),
                )
            }
            (None, TrafficKind::Http | TrafficKind::Tls) => Decision::deny(
                DecisionReason::NeedsAddressRule,
                Some(self.preset.rule_text().to_owned()),
            ),
        };
        if !target.allowed {
            return target;
        }
        let address = self.check_address(ip, port);
        if address.allowed {
            target
        } else {
            address
        }
    }

    /// May the proxy dial `ip` on `port` (an address a name resolved to, or a literal
    /// target)? Denied by a deny rule covering it, or by the fixed deny set unless an allow
    /// rule covers the address and names only addresses inside that deny-set block (so
    /// `0.0.0.0/0` allows every public address, never loopback or cloud metadata).
    pub fn check_address(&self, ip: IpAddr, port: u16) -> Decision {
        if let Some(rule) = self.deny_rule_for(ip, port) {
            return Decision::deny(DecisionReason::DenyRule, Some(rule.to_string()));
        }
        let Some(block) = denied_block(ip) else {
            return Decision::allow(DecisionReason::PublicAddress, None);
        };
        match self
            .allow
            .iter()
            .find(|rule| unlocks(rule, &block, ip, port))
        {
            Some(rule) => Decision::allow(DecisionReason::AllowRule, Some(rule.to_string())),
            None => Decision::deny(DecisionReason::DenySet, Some(block.range.rule_text())),
        }
    }

    fn deny_rule_for(&self, ip: IpAddr, port: u16) -> Option<&Rule> {
        self.deny.iter().find(|rule| covers(rule, ip, port))
    }
}

/// Whether an address rule covers `ip` as given or as the IPv4 address it stands for.
fn covers(rule: &Rule, ip: IpAddr, port: u16) -> bool {
    rule.covers_address(ip, port) || rule.covers_address(canonical_address(ip), port)
}

/// Whether an allow rule lets `ip` out of the deny-set `block`: it covers the address and
/// names nothing outside the block.
fn unlocks(rule: &Rule, block: &DeniedBlock, ip: IpAddr, port: u16) -> bool {
    covers(rule, ip, port)
        && rule
            .network()
            .is_some_and(|network| block.network.contains(&network))
}

/// Sorts a guest-given target into a host name (normalized), a literal address, or junk.
fn classify_target(target: &str) -> Target {
    if target.len() > MAX_NAME_LEN + 2 {
        return Target::Invalid;
    }
    if let Ok(ip) = target.parse::<IpAddr>() {
        return Target::Address(ip);
    }
    if let Some(ip) = target
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
    {
        return Target::Address(IpAddr::V6(ip));
    }
    match normalize_name(target) {
        Ok(name) if !ends_in_numeric_label(&name) => Target::Name(name),
        Ok(_) | Err(_) => Target::Invalid,
    }
}

/// The rules in their order, each kept once.
fn unique(rules: impl IntoIterator<Item = Rule>) -> Vec<Rule> {
    let mut seen = HashSet::new();
    rules
        .into_iter()
        .filter(|rule| seen.insert(rule.clone()))
        .collect()
}
