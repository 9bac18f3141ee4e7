//! Tests of the `effective` module.

use super::super::Policy;
use super::*;
use TrafficKind::{Http, OtherTcp, Tls};

fn policy(preset: Preset, allow: &[&str], deny: &[&str]) -> EffectivePolicy {
    let rules = |texts: &[&str]| -> Vec<Rule> {
        texts
            .iter()
            .map(|text| text.parse().expect("test rule"))
            .collect()
    };
    EffectivePolicy::new(preset, rules(allow), rules(deny))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn allow_rules_allow_their_names() {
    let p = policy(Preset::Locked, &["**.x.com", "exact.org", "*.one.net"], &[]);
    let decision = p.check_name("a.b.x.com", 443, Tls);
    assert_eq!(
        decision,
        Decision {
            allowed: true,
            rule: Some("**.x.com".into()),
            reason: DecisionReason::AllowRule
        }
    );
    assert!(p.check_name("exact.org", 80, Http).allowed);
    assert!(p.check_name("a.one.net", 443, Tls).allowed);
    assert!(!p.check_name("a.b.one.net", 443, Tls).allowed);
    assert!(!p.check_name("x.com", 443, Tls).allowed);
    assert!(!p.check_name("one.net", 443, Tls).allowed);
}

#[test]
fn deny_wins_over_allow_rules_and_presets() {
    let p = policy(Preset::Open, &["**.x.com", "a.x.com:22"], &["a.x.com"]);
    for (port, kind) in [(443, Tls), (80, Http), (22, OtherTcp)] {
        let decision = p.check_name("a.x.com", port, kind);
        assert!(!decision.allowed, "{port} {kind}");
        assert_eq!(decision.rule.as_deref(), Some("a.x.com"));
        assert_eq!(decision.reason, DecisionReason::DenyRule);
    }
    assert!(p.check_name("b.x.com", 443, Tls).allowed);

    let balanced = policy(Preset::Balanced, &[], &["**.github.com"]);
    assert!(!balanced.check_name("api.github.com", 443, Tls).allowed);
    assert!(balanced.check_name("github.com", 443, Tls).allowed);
}

#[test]
fn a_deny_rule_with_a_port_denies_only_that_port() {
    let p = policy(Preset::Open, &[], &["x.com:80"]);
    assert!(!p.check_name("x.com", 80, Http).allowed);
    assert!(p.check_name("x.com", 443, Tls).allowed);
}

#[test]
fn an_allow_rule_with_a_port_allows_only_that_port() {
    let p = policy(Preset::Locked, &["x.com:8443"], &[]);
    assert!(p.check_name("x.com", 8443, Tls).allowed);
    assert!(!p.check_name("x.com", 443, Tls).allowed);
}

#[test]
fn other_tcp_needs_an_explicit_rule_with_its_port() {
    for preset in Preset::ALL {
        let p = policy(preset, &["x.com", "**.y.com", "db.z.com:5432"], &[]);
        let decision = p.check_name("x.com", 22, OtherTcp);
        assert!(!decision.allowed, "{preset}: a portless rule is not enough");
        assert_eq!(decision.reason, DecisionReason::NeedsPortRule);
        assert!(!p.check_name("a.y.com", 5432, OtherTcp).allowed);
        assert!(
            !p.check_name("github.com", 22, OtherTcp).allowed,
            "{preset}"
        );
        let decision = p.check_name("db.z.com", 5432, OtherTcp);
        assert!(decision.allowed, "{preset}");
        assert_eq!(decision.rule.as_deref(), Some("db.z.com:5432"));
        assert!(!p.check_name("db.z.com", 5433, OtherTcp).allowed);
    }
}

#[test]
fn presets_decide_names_without_rules() {
    let open = policy(Preset::Open, &[], &[]);
    let decision = open.check_name("anything.example", 443, Tls);
    assert!(decision.allowed);
    assert_eq!(decision.rule.as_deref(), Some("preset:open"));
    assert_eq!(decision.reason, DecisionReason::Preset);

    let balanced = policy(Preset::Balanced, &[], &[]);
    assert!(balanced.check_name("api.anthropic.com", 443, Tls).allowed);
    let decision = balanced.check_name("example.com", 443, Tls);
    assert!(!decision.allowed);
    assert_eq!(decision.rule.as_deref(), Some("preset:balanced"));
    assert_eq!(decision.reason, DecisionReason::NotAllowed);

    let locked = policy(Preset::Locked, &["example.com"], &[]);
    assert!(locked.check_name("example.com", 443, Tls).allowed);
    for name in ["api.anthropic.com", "github.com", "registry.npmjs.org"] {
        let decision = locked.check_name(name, 443, Tls);
        assert!(!decision.allowed, "{name}");
        assert_eq!(decision.rule.as_deref(), Some("preset:locked"));
    }
}

#[test]
fn guest_names_are_normalized_or_refused() {
    let p = policy(Preset::Balanced, &[], &["evil.com"]);
    assert!(p.check_name("API.Anthropic.COM.", 443, Tls).allowed);
    assert!(!p.check_name("EVIL.com.", 443, Tls).allowed);
    for junk in [
        "",
        "a b.com",
        "evil.com\0.github.com",
        "127.1",
        "0x7f.1",
        "2130706433",
        "github.com:443",
        "*.github.com",
        &"a.".repeat(200),
        &"a".repeat(100_000),
    ] {
        let decision = p.check_name(junk, 443, Tls);
        assert!(!decision.allowed, "{junk:?}");
        assert_eq!(decision.reason, DecisionReason::InvalidName, "{junk:?}");
    }
}

#[test]
fn a_literal_address_given_as_a_name_is_judged_as_an_address() {
    let balanced = policy(Preset::Balanced, &[], &[]);
    let decision = balanced.check_name("1.1.1.1", 443, Tls);
    assert!(!decision.allowed);
    assert_eq!(decision.reason, DecisionReason::NeedsAddressRule);
    let open = policy(Preset::Open, &[], &[]);
    assert!(open.check_name("1.1.1.1", 443, Tls).allowed);
    assert!(!open.check_name("127.0.0.1", 443, Tls).allowed);
    assert!(!open.check_name("[::1]", 443, Tls).allowed);
    assert!(open.check_name("[2606:4700::1111]", 443, Tls).allowed);
}

#[test]
fn public_addresses_pass_and_the_deny_set_does_not() {
    let p = policy(Preset::Open, &[], &[]);
    let decision = p.check_address(ip("1.1.1.1"), 443);
    assert_eq!(
        decision,
        Decision::allow(DecisionReason::PublicAddress, None)
    );
    for (addr, range) in [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "cloud-metadata"),
        ("fd00:ec2::254", "cloud-metadata"),
        ("10.1.2.3", "private"),
        ("100.64.0.1", "cgnat"),
        ("198.18.0.7", "paddock-stable"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
    ] {
        let decision = p.check_address(ip(addr), 443);
        assert!(!decision.allowed, "{addr}");
        assert_eq!(decision.reason, DecisionReason::DenySet);
        assert_eq!(decision.rule, Some(format!("deny-set:{range}")), "{addr}");
    }
}

#[test]
fn an_allow_rule_inside_a_denied_range_unlocks_it() {
    let p = policy(
        Preset::Locked,
        &["10.0.0.0/8", "127.0.0.1", "192.168.1.5:5432"],
        &[],
    );
    let decision = p.check_address(ip("10.9.8.7"), 443);
    assert!(decision.allowed);
    assert_eq!(decision.rule.as_deref(), Some("10.0.0.0/8"));
    assert_eq!(decision.reason, DecisionReason::AllowRule);
    assert!(p.check_address(ip("::ffff:10.9.8.7"), 443).allowed);
    assert!(p.check_address(ip("127.0.0.1"), 8080).allowed);
    assert!(!p.check_address(ip("127.0.0.2"), 8080).allowed);
    assert!(p.check_address(ip("192.168.1.5"), 5432).allowed);
    assert!(!p.check_address(ip("192.168.1.5"), 80).allowed);
    assert!(!p.check_address(ip("172.16.0.1"), 443).allowed);
}

#[test]
fn a_broad_allow_rule_does_not_unlock_the_deny_set() {
    let p = policy(
        Preset::Locked,
        &["0.0.0.0/0", "::/0", "169.254.0.0/16"],
        &[],
    );
    assert!(p.check_ip_target(ip("1.1.1.1"), 443, Tls).allowed);
    assert!(!p.check_address(ip("127.0.0.1"), 443).allowed);
    assert!(!p.check_address(ip("10.0.0.1"), 443).allowed);
    assert!(!p.check_address(ip("::1"), 443).allowed);
    assert!(p.check_address(ip("169.254.1.1"), 443).allowed);
    let decision = p.check_address(ip("169.254.169.254"), 80);
    assert!(
        !decision.allowed,
        "metadata needs a rule for exactly its address"
    );
    assert_eq!(decision.rule.as_deref(), Some("deny-set:cloud-metadata"));

    let metadata = policy(Preset::Locked, &["169.254.169.254"], &[]);
    assert!(metadata.check_address(ip("169.254.169.254"), 80).allowed);
}

#[test]
fn deny_address_rules_win_over_allow_rules() {
    let p = policy(
        Preset::Open,
        &["10.0.0.0/8", "1.1.1.1:443"],
        &["10.1.0.0/16", "1.1.1.1", "8.8.8.8:53"],
    );
    assert!(p.check_address(ip("10.2.0.1"), 443).allowed);
    let decision = p.check_address(ip("10.1.0.1"), 443);
    assert!(!decision.allowed);
    assert_eq!(decision.rule.as_deref(), Some("10.1.0.0/16"));
    assert_eq!(decision.reason, DecisionReason::DenyRule);
    assert!(!p.check_address(ip("::ffff:10.1.0.1"), 443).allowed);
    assert!(!p.check_address(ip("1.1.1.1"), 443).allowed);
    assert!(!p.check_ip_target(ip("1.1.1.1"), 443, Tls).allowed);
    assert!(!p.check_address(ip("8.8.8.8"), 53).allowed);
    assert!(p.check_address(ip("8.8.8.8"), 443).allowed);
}

#[test]
fn literal_ip_targets_need_an_address_rule_unless_open() {
    let balanced = policy(Preset::Balanced, &[], &[]);
    let decision = balanced.check_ip_target(ip("1.1.1.1"), 443, Tls);
    assert!(!decision.allowed);
    assert_eq!(decision.reason, DecisionReason::NeedsAddressRule);

    let open = policy(Preset::Open, &[], &[]);
    let decision = open.check_ip_target(ip("1.1.1.1"), 443, Tls);
    assert_eq!(
        decision,
        Decision::allow(DecisionReason::Preset, Some("preset:open".into()))
    );
    assert!(open.check_ip_target(ip("1.1.1.1"), 80, Http).allowed);
    let decision = open.check_ip_target(ip("10.0.0.1"), 443, Tls);
    assert_eq!(decision.reason, DecisionReason::DenySet);
    let decision = open.check_ip_target(ip("1.1.1.1"), 22, OtherTcp);
    assert_eq!(decision.reason, DecisionReason::NeedsPortRule);

    let ruled = policy(
        Preset::Locked,
        &["203.0.113.0/24", "192.0.2.9:22", "2001:db8::/32"],
        &[],
    );
    let decision = ruled.check_ip_target(ip("203.0.113.7"), 443, Tls);
    assert_eq!(decision.rule.as_deref(), Some("203.0.113.0/24"));
    assert!(
        decision.allowed,
        "a rule inside the documentation range unlocks it"
    );
    assert!(
        !ruled
            .check_ip_target(ip("203.0.113.7"), 22, OtherTcp)
            .allowed
    );
    assert!(ruled.check_ip_target(ip("192.0.2.9"), 22, OtherTcp).allowed);
    assert!(!ruled.check_ip_target(ip("192.0.2.9"), 23, OtherTcp).allowed);
    assert!(ruled.check_ip_target(ip("2001:db8::1"), 443, Tls).allowed);
    assert!(!ruled.check_ip_target(ip("1.1.1.1"), 443, Tls).allowed);
}

#[test]
fn resolve_is_allowed_when_some_use_of_the_name_is() {
    let p = policy(
        Preset::Locked,
        &["db.x.com:5432", "web.x.com:80"],
        &["bad.x.com"],
    );
    assert!(p.check_resolve("db.x.com").allowed);
    assert!(p.check_resolve("WEB.x.com").allowed);
    let decision = p.check_resolve("other.x.com");
    assert!(!decision.allowed);
    assert_eq!(decision.rule.as_deref(), Some("preset:locked"));
    assert!(!p.check_resolve("1.1.1.1").allowed);
    assert!(!p.check_resolve("a b").allowed);

    let balanced = policy(Preset::Balanced, &[], &["**.github.com"]);
    assert!(balanced.check_resolve("github.com").allowed);
    let decision = balanced.check_resolve("api.github.com");
    assert_eq!(decision.reason, DecisionReason::DenyRule);

    let port_denied = policy(Preset::Balanced, &[], &["github.com:443"]);
    assert!(
        port_denied.check_resolve("github.com").allowed,
        "port 80 is still allowed"
    );
}

#[test]
fn layering_overrides_the_preset_and_unions_the_rules() {
    let global = Policy {
        preset: Some(Preset::Open),
        allow: vec!["g.com:22".parse().unwrap()],
        deny: vec!["evil.com".parse().unwrap()],
    };
    let sandbox = Policy {
        preset: Some(Preset::Locked),
        allow: vec!["s.com".parse().unwrap(), "evil.com".parse().unwrap()],
        deny: vec!["g.com:22".parse().unwrap()],
    };
    let layered = Policy::layered(&global, Some(&sandbox));
    assert_eq!(layered.preset(), Preset::Locked);
    assert!(layered.check_name("s.com", 443, Tls).allowed);
    assert!(
        !layered.check_name("evil.com", 443, Tls).allowed,
        "global deny stays"
    );
    assert!(
        !layered.check_name("g.com", 22, OtherTcp).allowed,
        "sandbox deny wins"
    );
    assert!(!layered.check_name("other.com", 443, Tls).allowed);

    let inherited = Policy::layered(&global, Some(&Policy::default()));
    assert_eq!(inherited.preset(), Preset::Open);
    assert!(inherited.check_name("g.com", 22, OtherTcp).allowed);
    assert_eq!(Policy::layered(&global, None).preset(), Preset::Open);
    assert_eq!(
        Policy::layered(&Policy::default(), None),
        EffectivePolicy::default()
    );
    assert_eq!(EffectivePolicy::default().preset(), Preset::Balanced);
}

#[test]
fn repeated_rules_are_kept_once() {
    let p = policy(
        Preset::Locked,
        &["a.com", "b.com", "a.com"],
        &["c.com", "c.com"],
    );
    assert_eq!(p.allow_rules().len(), 2);
    assert_eq!(p.deny_rules().len(), 1);
    assert_eq!(p.allow_rules()[0].to_string(), "a.com");
}

#[test]
fn decisions_serialize_for_the_log() {
    let p = policy(Preset::Balanced, &[], &[]);
    let json = serde_json::to_string(&p.check_address(ip("127.0.0.1"), 80)).unwrap();
    assert_eq!(
        json,
        r#"{"allowed":false,"rule":"deny-set:loopback","reason":"deny-set"}"#
    );
    let json = serde_json::to_string(&p.check_address(ip("1.1.1.1"), 80)).unwrap();
    assert_eq!(
        json,
        r#"{"allowed":true,"rule":null,"reason":"public-address"}"#
    );
    let decision = p.check_name("github.com", 443, Tls);
    assert_eq!(decision.to_string(), "allowed by preset:balanced (preset)");
    assert_eq!(serde_json::to_string(&OtherTcp).unwrap(), "\"other-tcp\"");
}
