//! The fixed deny set: address ranges a sandbox never reaches unless an explicit allow rule
//! names addresses inside that range — the host itself, its local networks, cloud metadata
//! services, multicast, ranges reserved for documentation, and paddock's own stable-address
//! range. An IPv6 address that stands for an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, NAT64
//! `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) is judged as that IPv4 address.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[cfg(test)]
mod tests;

/// Why an address is in the deny set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeniedRange {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`: the host itself.
    Loopback,
    /// Cloud instance metadata: `169.254.169.254`, `fd00:ec2::254`.
    CloudMetadata,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// RFC 1918 `10/8`, `172.16/12`, `192.168/16`; IPv6 unique-local `fc00::/7`, the
    /// deprecated site-local `fec0::/10` and local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (also Alibaba Cloud's metadata address).
    Cgnat,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`.
    Documentation,
    /// `198.18.0.0/15`: paddock hands out these addresses to the guest for names.
    PaddockStable,
    /// Other special-purpose ranges: `192.0.0/24` (IETF protocol assignments, also Oracle
    /// Cloud's metadata address), `192.88.99/24`, `240.0.0.0/4`, `::/8` (IPv4-compatible and
    /// other reserved forms), `100::/64` (discard-only).
    Reserved,
}

/// One block of the deny set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeniedBlock {
    pub range: DeniedRange,
    pub network: IpNet,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix_len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix_len))
}

const fn v6(segments: [u16; 8], prefix_len: u8) -> IpNet {
    let [a, b, c, d, e, f, g, h] = segments;
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(a, b, c, d, e, f, g, h),
        prefix_len,
    ))
}

/// The deny set, most specific block first where blocks nest (metadata inside link-local or
/// unique-local; unspecified, loopback and local-use NAT64 inside `::/8`).
const DENY_SET: &[(DeniedRange, IpNet)] = &[
    (DeniedRange::Unspecified, v4(0, 0, 0, 0, 8)),
    (DeniedRange::Private, v4(10, 0, 0, 0, 8)),
    (DeniedRange::Cgnat, v4(100, 64, 0, 0, 10)),
    (DeniedRange::Loopback, v4(127, 0, 0, 0, 8)),
    (DeniedRange::CloudMetadata, v4(169, 254, 169, 254, 32)),
    (DeniedRange::LinkLocal, v4(169, 254, 0, 0, 16)),
    (DeniedRange::Private, v4(172, 16, 0, 0, 12)),
    (DeniedRange::Reserved, v4(192, 0, 0, 0, 24)),
    (DeniedRange::Documentation, v4(192, 0, 2, 0, 24)),
    (DeniedRange::Reserved, v4(192, 88, 99, 0, 24)),
    (DeniedRange::Private, v4(192, 168, 0, 0, 16)),
    (DeniedRange::PaddockStable, v4(198, 18, 0, 0, 15)),
    (DeniedRange::Documentation, v4(198, 51, 100, 0, 24)),
    (DeniedRange::Documentation, v4(203, 0, 113, 0, 24)),
    (DeniedRange::Multicast, v4(224, 0, 0, 0, 4)),
    (DeniedRange::Broadcast, v4(255, 255, 255, 255, 32)),
    (DeniedRange::Reserved, v4(240, 0, 0, 0, 4)),
    (DeniedRange::Unspecified, v6([0, 0, 0, 0, 0, 0, 0, 0], 128)),
    (DeniedRange::Loopback, v6([0, 0, 0, 0, 0, 0, 0, 1], 128)),
    (
        DeniedRange::Private,
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
    ),
    (DeniedRange::Reserved, v6([0, 0, 0, 0, 0, 0, 0, 0], 8)),
    (DeniedRange::Reserved, v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64)),
    (
        DeniedRange::Documentation,
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
    ),
    (
        DeniedRange::CloudMetadata,
        v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
    ),
    (DeniedRange::Private, v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7)),
    (
        DeniedRange::LinkLocal,
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
    ),
    (DeniedRange::Private, v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10)),
    (DeniedRange::Multicast, v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8)),
];

/// NAT64's well-known prefix `64:ff9b::/96` (RFC 6052).
const NAT64_WELL_KNOWN: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
/// 6to4 `2002::/16` (RFC 3056): the IPv4 address is in bits 16-47.
const SIX_TO_FOUR: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);

/// The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64, 6to4), else `ip` itself.
pub fn canonical_address(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return IpAddr::V4(mapped);
    }
    let octets = v6.octets();
    if NAT64_WELL_KNOWN.contains(&v6) {
        let [.., a, b, c, d] = octets;
        return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    }
    if SIX_TO_FOUR.contains(&v6) {
        let [_, _, a, b, c, d, ..] = octets;
        return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    }
    ip
}

/// The deny-set block holding `ip` (judged by its [`canonical_address`]), if any.
pub fn denied_block(ip: IpAddr) -> Option<DeniedBlock> {
    let ip = canonical_address(ip);
    DENY_SET
        .iter()
        .find(|(_, network)| network.contains(&ip))
        .map(|&(range, network)| DeniedBlock { range, network })
}

impl DeniedRange {
    /// The kebab-case name used in logs: `loopback`, `cloud-metadata`, …
    pub fn as_str(self) -> &'static str {
        match self {
            DeniedRange::Unspecified => "unspecified",
            DeniedRange::Loopback => "loopback",
            DeniedRange::CloudMetadata => "cloud-metadata",
            DeniedRange::LinkLocal => "link-local",
            DeniedRange::Private => "private",
            DeniedRange::Cgnat => "cgnat",
            DeniedRange::Multicast => "multicast",
            DeniedRange::Broadcast => "broadcast",
            DeniedRange::Documentation => "documentation",
            DeniedRange::PaddockStable => "paddock-stable",
            DeniedRange::Reserved => "reserved",
        }
    }

    /// What a decision made by the deny set names as its rule: `deny-set:loopback`.
    pub fn rule_text(self) -> String {
        format!("deny-set:{}", self.as_str())
    }
}

impl fmt::Display for DeniedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
