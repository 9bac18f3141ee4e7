//! A policy as stored in one file: the global one (`<state>/egress/policy.json`) or a
//! sandbox's (`<sandbox>/policy.json`), and how the two layer into the policy that decides.

use super::effective::EffectivePolicy;
use super::preset::Preset;
use super::rule::Rule;
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// One policy file's content, e.g.
/// `{"preset": "locked", "allow": ["**.github.com", "10.1.2.3:5432"], "deny": ["gist.github.com"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The preset; `None` inherits: a sandbox's falls back to the global one, the global one
    /// to [`Preset::Balanced`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[serde(default)]
    pub allow: Vec<Rule>,
    #[serde(default)]
    pub deny: Vec<Rule>,
}

impl Policy {
    /// A policy with this preset and no rules.
    pub fn with_preset(preset: Preset) -> Self {
        Policy {
            preset: Some(preset),
            ..Policy::default()
        }
    }

    /// The policy that decides for a sandbox: the sandbox's preset if it has one, else the
    /// global one, else `balanced`; the allow and deny rules of both (deny wins over allow).
    pub fn layered(global: &Policy, sandbox: Option<&Policy>) -> EffectivePolicy {
        let preset = sandbox
            .and_then(|policy| policy.preset)
            .or(global.preset)
            .unwrap_or_default();
        let layers = || std::iter::once(global).chain(sandbox);
        EffectivePolicy::new(
            preset,
            layers().flat_map(|policy| policy.allow.iter().cloned()),
            layers().flat_map(|policy| policy.deny.iter().cloned()),
        )
    }

    /// Adds an allow rule, and takes the same rule off the deny list (the latest word wins).
    /// Returns whether anything changed.
    pub fn add_allow(&mut self, rule: Rule) -> bool {
        let undenied = remove_rule(&mut self.deny, &rule);
        insert_rule(&mut self.allow, rule) || undenied
    }

    /// Adds a deny rule, and takes the same rule off the allow list. Returns whether anything
    /// changed.
    pub fn add_deny(&mut self, rule: Rule) -> bool {
        let unallowed = remove_rule(&mut self.allow, &rule);
        insert_rule(&mut self.deny, rule) || unallowed
    }

    /// Removes the rule from both lists. Returns whether it was on either.
    pub fn remove(&mut self, rule: &Rule) -> bool {
        let from_allow = remove_rule(&mut self.allow, rule);
        let from_deny = remove_rule(&mut self.deny, rule);
        from_allow || from_deny
    }
}

fn insert_rule(rules: &mut Vec<Rule>, rule: Rule) -> bool {
    if rules.contains(&rule) {
        return false;
    }
    rules.push(rule);
    true
}

fn remove_rule(rules: &mut Vec<Rule>, rule: &Rule) -> bool {
    let before = rules.len();
    rules.retain(|kept| kept != rule);
    rules.len() != before
}
