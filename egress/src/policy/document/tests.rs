//! Tests of the `document` module.

use super::*;

fn rule(text: &str) -> Rule {
    text.parse().unwrap()
}

#[test]
fn add_allow_adds_once_and_lifts_a_deny() {
    let mut policy = Policy::default();
    assert!(policy.add_allow(rule("a.com")));
    assert!(!policy.add_allow(rule("a.com")));
    assert_eq!(policy.allow, vec![rule("a.com")]);

    assert!(policy.add_deny(rule("a.com")));
    assert!(policy.allow.is_empty());
    assert_eq!(policy.deny, vec![rule("a.com")]);
    assert!(!policy.add_deny(rule("a.com")));

    assert!(policy.add_allow(rule("a.com")));
    assert!(policy.deny.is_empty());
    assert_eq!(policy.allow, vec![rule("a.com")]);
}

#[test]
fn remove_takes_a_rule_off_both_lists() {
    let mut policy = Policy {
        preset: None,
        allow: vec![rule("a.com"), rule("b.com")],
        deny: vec![rule("10.0.0.0/8")],
    };
    assert!(policy.remove(&rule("10.0.0.0/8")));
    assert!(policy.deny.is_empty());
    assert!(policy.remove(&rule("a.com")));
    assert!(!policy.remove(&rule("a.com")));
    assert_eq!(policy.allow, vec![rule("b.com")]);
}

#[test]
fn policies_have_a_stable_json_form() {
    let policy = Policy {
        preset: Some(Preset::Locked),
        allow: vec![rule("**.github.com"), rule("10.1.2.3:5432")],
        deny: vec![rule("gist.github.com")],
    };
    let json = serde_json::to_string(&policy).unwrap();
    assert_eq!(
        json,
        r#"{"preset":"locked","allow":["**.github.com","10.1.2.3:5432"],"deny":["gist.github.com"]}"#
    );
    assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), policy);
    assert_eq!(
        serde_json::to_string(&Policy::default()).unwrap(),
        r#"{"allow":[],"deny":[]}"#
    );
    assert_eq!(
        serde_json::from_str::<Policy>("{}").unwrap(),
        Policy::default()
    );
    assert_eq!(Policy::with_preset(Preset::Open).preset, Some(Preset::Open));
}

#[test]
fn unknown_fields_and_bad_rules_are_refused() {
    assert!(serde_json::from_str::<Policy>(r#"{"alow":["a.com"]}"#).is_err());
    assert!(serde_json::from_str::<Policy>(r#"{"allow":["a.*.com"]}"#).is_err());
    assert!(serde_json::from_str::<Policy>(r#"{"preset":"wide"}"#).is_err());
}
