//! Tests of the `rule` module.

use super::*;

fn rule(text: &str) -> Rule {
    text.parse()
        .unwrap_or_else(|error| panic!("{text:?} should parse: {error}"))
}

fn host(pattern: HostPattern, port: Option<u16>) -> Rule {
    Rule::Host { pattern, port }
}

#[test]
fn every_form_parses_and_prints_back() {
    let cases = [
        (
            "example.com",
            host(HostPattern::Exact("example.com".into()), None),
        ),
        (
            "*.example.com",
            host(HostPattern::OneLabelBelow("example.com".into()), None),
        ),
        (
            "**.example.com",
            host(HostPattern::AnyDepthBelow("example.com".into()), None),
        ),
        (
            "example.com:8443",
            host(HostPattern::Exact("example.com".into()), Some(8443)),
        ),
        (
            "*.example.com:22",
            host(HostPattern::OneLabelBelow("example.com".into()), Some(22)),
        ),
        (
            "**.example.com:1",
            host(HostPattern::AnyDepthBelow("example.com".into()), Some(1)),
        ),
        (
            "localhost",
            host(HostPattern::Exact("localhost".into()), None),
        ),
        ("10.0.0.0/8", Rule::Network("10.0.0.0/8".parse().unwrap())),
        (
            "2001:db8::/32",
            Rule::Network("2001:db8::/32".parse().unwrap()),
        ),
        ("0.0.0.0/0", Rule::Network("0.0.0.0/0".parse().unwrap())),
        ("192.0.2.7", Rule::Network("192.0.2.7/32".parse().unwrap())),
        (
            "2001:db8::7",
            Rule::Network("2001:db8::7/128".parse().unwrap()),
        ),
        (
            "192.0.2.7:5432",
            Rule::Socket {
                ip: "192.0.2.7".parse().unwrap(),
                port: 5432,
            },
        ),
        (
            "[2001:db8::7]:22",
            Rule::Socket {
                ip: "2001:db8::7".parse().unwrap(),
                port: 22,
            },
        ),
        (
            "[::ffff:127.0.0.1]:80",
            Rule::Socket {
                ip: "::ffff:127.0.0.1".parse().unwrap(),
                port: 80,
            },
        ),
    ];
    for (text, expected) in cases {
        let parsed = rule(text);
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(parsed.to_string(), text);
        assert_eq!(rule(&parsed.to_string()), parsed);
    }
}

#[test]
fn texts_are_normalized() {
    assert_eq!(rule("Example.COM.").to_string(), "example.com");
    assert_eq!(rule("**.GitHub.com.:443").to_string(), "**.github.com:443");
    assert_eq!(rule("192.0.2.7/32"), rule("192.0.2.7"));
    assert_eq!(rule("192.0.2.7/32").to_string(), "192.0.2.7");
    assert_eq!(rule("2001:DB8::/32").to_string(), "2001:db8::/32");
    assert_eq!(rule("example.com:0443").port(), Some(443));
}

/// Whether an error is the expected one.
type ErrorCheck = fn(&RuleError) -> bool;

#[test]
fn malformed_rules_are_refused_with_their_reason() {
    let long = format!("{}.com", "a".repeat(MAX_RULE_LEN));
    let cases: &[(&str, ErrorCheck)] = &[
        ("", |e| *e == RuleError::Empty),
        (&long, |e| matches!(e, RuleError::TooLong { .. })),
        (
            "10.0.0.1/8",
            |e| matches!(e, RuleError::HostBitsSet { network, .. } if network.to_string() == "10.0.0.0/8"),
        ),
        ("10.0.0.0/33", |e| matches!(e, RuleError::BadNetwork(_))),
        ("example.com/8", |e| matches!(e, RuleError::BadNetwork(_))),
        ("example.com:0", |e| *e == RuleError::BadPort),
        ("example.com:65536", |e| *e == RuleError::BadPort),
        ("example.com:+80", |e| *e == RuleError::BadPort),
        ("example.com:", |e| *e == RuleError::BadPort),
        ("example.com:http", |e| *e == RuleError::BadPort),
        ("192.0.2.7:0", |e| *e == RuleError::BadPort),
        ("[2001:db8::7]", |e| *e == RuleError::BadBracketedAddress),
        ("[2001:db8::7]:x", |e| *e == RuleError::BadPort),
        ("[example.com]:80", |e| {
            matches!(e, RuleError::BadAddress(_))
        }),
        ("[fe80::1%2]:80", |e| matches!(e, RuleError::BadAddress(_))),
        ("a:b:80", |e| *e == RuleError::BadBracketedAddress),
        ("a.*.com", |e| *e == RuleError::BadWildcard),
        ("*", |e| {
            matches!(e, RuleError::BadName(_) | RuleError::BadWildcard)
        }),
        ("**", |e| {
            matches!(e, RuleError::BadName(_) | RuleError::BadWildcard)
        }),
        ("***.example.com", |e| *e == RuleError::BadWildcard),
        ("*example.com", |e| *e == RuleError::BadWildcard),
        ("*.", |e| matches!(e, RuleError::BadName(_))),
        ("exa mple.com", |e| matches!(e, RuleError::BadName(_))),
        ("-bad.com", |e| matches!(e, RuleError::BadName(_))),
        ("a..com", |e| matches!(e, RuleError::BadName(_))),
        ("10.1", |e| *e == RuleError::LooksLikeAddress),
        ("1.2.3.4.5", |e| *e == RuleError::LooksLikeAddress),
        ("*.0x7f", |e| *e == RuleError::LooksLikeAddress),
        ("300.1.1.1:80", |e| *e == RuleError::LooksLikeAddress),
    ];
    for (text, expected) in cases {
        match text.parse::<Rule>() {
            Ok(parsed) => panic!("{text:?} parsed as {parsed:?}"),
            Err(error) => assert!(expected(&error), "{text:?}: unexpected {error:?}"),
        }
    }
}

#[test]
fn one_label_wildcard_covers_exactly_one_label() {
    let pattern = HostPattern::parse("*.x.com").unwrap();
    assert!(pattern.matches("a.x.com"));
    assert!(!pattern.matches("a.b.x.com"));
    assert!(!pattern.matches("x.com"));
    assert!(!pattern.matches("ax.com"));
    assert!(!pattern.matches("a.x.com.evil.org"));
}

#[test]
fn any_depth_wildcard_covers_every_depth_but_not_the_base() {
    let pattern = HostPattern::parse("**.x.com").unwrap();
    assert!(pattern.matches("a.x.com"));
    assert!(pattern.matches("a.b.x.com"));
    assert!(pattern.matches("a.b.c.d.x.com"));
    assert!(!pattern.matches("x.com"));
    assert!(!pattern.matches("evilx.com"));
    assert!(!pattern.matches("a.evilx.com"));
    assert!(!pattern.matches("x.com.evil.org"));
}

#[test]
fn exact_pattern_covers_only_its_name() {
    let pattern = HostPattern::parse("x.com").unwrap();
    assert!(pattern.matches("x.com"));
    assert!(!pattern.matches("a.x.com"));
    assert!(!pattern.matches("x.co"));
    assert_eq!(pattern.base(), "x.com");
}

#[test]
fn ports_limit_host_rules() {
    let any_port = rule("example.com");
    let one_port = rule("example.com:8443");
    assert!(any_port.matches_name("example.com", 1));
    assert!(any_port.matches_name("example.com", 65535));
    assert!(one_port.matches_name("example.com", 8443));
    assert!(!one_port.matches_name("example.com", 443));
    assert!(!one_port.matches_name("other.com", 8443));
    assert!(!one_port.covers_address("192.0.2.1".parse().unwrap(), 8443));
}

#[test]
fn address_rules_cover_their_addresses() {
    let network = rule("10.0.0.0/8");
    assert!(network.covers_address("10.255.0.1".parse().unwrap(), 1));
    assert!(!network.covers_address("11.0.0.1".parse().unwrap(), 1));
    assert!(!network.covers_address("::ffff:10.0.0.1".parse().unwrap(), 1));
    assert!(!network.matches_name("10.0.0.1", 1));
    assert_eq!(network.port(), None);

    let socket = rule("[2001:db8::7]:22");
    assert!(socket.covers_address("2001:db8::7".parse().unwrap(), 22));
    assert!(!socket.covers_address("2001:db8::7".parse().unwrap(), 23));
    assert!(!socket.covers_address("2001:db8::8".parse().unwrap(), 22));
    assert_eq!(socket.network(), Some("2001:db8::7/128".parse().unwrap()));
    assert_eq!(rule("example.com").network(), None);
}

#[test]
fn rules_are_json_strings() {
    let rules = vec![
        rule("**.github.com"),
        rule("10.0.0.0/8"),
        rule("[2001:db8::7]:22"),
    ];
    let json = serde_json::to_string(&rules).unwrap();
    assert_eq!(json, r#"["**.github.com","10.0.0.0/8","[2001:db8::7]:22"]"#);
    assert_eq!(serde_json::from_str::<Vec<Rule>>(&json).unwrap(), rules);

    let error = serde_json::from_str::<Rule>(r#""a.*.com""#).unwrap_err();
    assert!(error.to_string().contains("a.*.com"), "{error}");
    assert!(serde_json::from_str::<Rule>("42").is_err());
    let huge = format!("\"{}\"", "a".repeat(100_000));
    let error = serde_json::from_str::<Rule>(&huge).unwrap_err();
    assert!(
        error.to_string().len() < 200,
        "the error should not echo a huge rule"
    );
}
