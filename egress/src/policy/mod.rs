//! The egress policy: which connections a sandbox may make. A policy is a preset (`open`,
//! `balanced`, `locked`) plus allow and deny rules, stored as JSON in a global file and a
//! sandbox file that layer into one [`EffectivePolicy`]. Its checks decide a target name
//! ([`EffectivePolicy::check_name`]), a literal IP target
//! ([`EffectivePolicy::check_ip_target`]) and every address the proxy is about to dial
//! ([`EffectivePolicy::check_address`], which also applies the fixed deny set). Deny wins over
//! allow everywhere. [`PolicyWatcher`] rereads the files when they change, so an edit applies
//! to a running sandbox's next connection.

mod address;
mod decision;
mod document;
mod effective;
mod preset;
mod rule;
mod store;
mod watcher;

pub use address::{canonical_address, denied_block, DeniedBlock, DeniedRange};
pub use decision::{Decision, DecisionReason, TrafficKind};
pub use document::Policy;
pub use effective::EffectivePolicy;
pub use preset::{Preset, PresetGroup, UnknownPreset, BALANCED_GROUPS};
pub use rule::{HostPattern, Rule, RuleError, MAX_RULE_LEN};
pub use store::{read_policy, PolicyFile, PolicyFileError, MAX_POLICY_FILE_LEN};
pub use watcher::PolicyWatcher;
