//! Tests of the `address` module.

use super::*;

fn range_of(ip: &str) -> Option<DeniedRange> {
    denied_block(ip.parse().unwrap()).map(|block| block.range)
}

#[test]
fn every_range_of_the_deny_set_is_denied() {
    let cases = [
        ("0.0.0.0", DeniedRange::Unspecified),
        ("0.1.2.3", DeniedRange::Unspecified),
        ("::", DeniedRange::Unspecified),
        ("127.0.0.1", DeniedRange::Loopback),
        ("127.255.255.254", DeniedRange::Loopback),
        ("::1", DeniedRange::Loopback),
        ("169.254.169.254", DeniedRange::CloudMetadata),
        ("fd00:ec2::254", DeniedRange::CloudMetadata),
        ("169.254.0.1", DeniedRange::LinkLocal),
        ("169.254.169.253", DeniedRange::LinkLocal),
        ("fe80::1", DeniedRange::LinkLocal),
        ("febf:ffff::1", DeniedRange::LinkLocal),
        ("10.0.0.1", DeniedRange::Private),
        ("172.16.0.1", DeniedRange::Private),
        ("172.31.255.255", DeniedRange::Private),
        ("192.168.1.1", DeniedRange::Private),
        ("fc00::1", DeniedRange::Private),
        ("fd12:3456::1", DeniedRange::Private),
        ("fec0::1", DeniedRange::Private),
        ("64:ff9b:1::a00:1", DeniedRange::Private),
        ("100.64.0.1", DeniedRange::Cgnat),
        ("100.127.255.255", DeniedRange::Cgnat),
        ("100.100.100.200", DeniedRange::Cgnat),
        ("224.0.0.1", DeniedRange::Multicast),
        ("239.255.255.250", DeniedRange::Multicast),
        ("ff02::1", DeniedRange::Multicast),
        ("255.255.255.255", DeniedRange::Broadcast),
        ("240.0.0.1", DeniedRange::Reserved),
        ("192.0.0.192", DeniedRange::Reserved),
        ("192.88.99.1", DeniedRange::Reserved),
        ("::1.2.3.4", DeniedRange::Reserved),
        ("100::1", DeniedRange::Reserved),
        ("192.0.2.1", DeniedRange::Documentation),
        ("198.51.100.1", DeniedRange::Documentation),
        ("203.0.113.1", DeniedRange::Documentation),
        ("2001:db8::1", DeniedRange::Documentation),
        ("198.18.0.1", DeniedRange::PaddockStable),
        ("198.19.255.254", DeniedRange::PaddockStable),
    ];
    for (ip, expected) in cases {
        assert_eq!(range_of(ip), Some(expected), "{ip}");
    }
}

#[test]
fn ipv6_forms_of_ipv4_addresses_are_judged_as_ipv4() {
    let cases = [
        ("::ffff:127.0.0.1", DeniedRange::Loopback),
        ("::ffff:169.254.169.254", DeniedRange::CloudMetadata),
        ("::ffff:10.1.2.3", DeniedRange::Private),
        ("::ffff:198.18.0.7", DeniedRange::PaddockStable),
        ("64:ff9b::127.0.0.1", DeniedRange::Loopback),
        ("64:ff9b::a9fe:a9fe", DeniedRange::CloudMetadata),
        ("2002:c0a8:0101::1", DeniedRange::Private),
        ("2002:7f00:1::", DeniedRange::Loopback),
    ];
    for (ip, expected) in cases {
        assert_eq!(range_of(ip), Some(expected), "{ip}");
    }
    assert_eq!(
        canonical_address("::ffff:1.1.1.1".parse().unwrap()),
        "1.1.1.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(range_of("::ffff:1.1.1.1"), None);
    assert_eq!(range_of("64:ff9b::8.8.8.8"), None);
}

#[test]
fn public_addresses_and_range_neighbours_are_not_denied() {
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "169.253.255.255",
        "169.255.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "2001:db9::1",
    ] {
        assert_eq!(range_of(ip), None, "{ip}");
    }
}

#[test]
fn blocks_report_their_network_and_name() {
    let block = denied_block("169.254.169.254".parse().unwrap()).unwrap();
    assert_eq!(block.network.to_string(), "169.254.169.254/32");
    assert_eq!(block.range.rule_text(), "deny-set:cloud-metadata");
    let block = denied_block("::ffff:10.9.9.9".parse().unwrap()).unwrap();
    assert_eq!(block.network.to_string(), "10.0.0.0/8");
    assert_eq!(
        serde_json::to_string(&DeniedRange::PaddockStable).unwrap(),
        "\"paddock-stable\""
    );
}
