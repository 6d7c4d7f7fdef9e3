//! SSRF: the addresses an outbound delivery must never connect to unless the operator allows
//! them. Checked on every resolved address at connect time, not on the URL's host name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::Invalid;

/// IPv4 networks that are not the public internet.
const FORBIDDEN_V4: [(Ipv4Addr, u8); 14] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),     // "this network", includes 0.0.0.0
    (Ipv4Addr::new(10, 0, 0, 0), 8),    // private
    (Ipv4Addr::new(100, 64, 0, 0), 10), // carrier-grade NAT
    (Ipv4Addr::new(127, 0, 0, 0), 8),   // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16), // link-local, cloud metadata services
    (Ipv4Addr::new(172, 16, 0, 0), 12), // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),  // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),  // documentation
    (Ipv4Addr::new(192, 168, 0, 0), 16), // private
    (Ipv4Addr::new(198, 18, 0, 0), 15), // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    (Ipv4Addr::new(203, 0, 113, 0), 24), // documentation
    (Ipv4Addr::new(224, 0, 0, 0), 4),   // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),   // reserved, includes broadcast 255.255.255.255
];

/// IPv6 networks that are not the public internet. `::` and `::1` are judged as the IPv4
/// addresses 0.0.0.0 and 0.0.0.1 they embed (IPv4-compatible form), both forbidden.
const FORBIDDEN_V6: [(Ipv6Addr, u8); 10] = [
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32), // Teredo tunnels
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48), // benchmarking
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation (RFC 9637)
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique-local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

/// IPv6 forms whose last 32 bits are an IPv4 address that the packet effectively reaches.
const EMBEDS_V4_LOW: [(Ipv6Addr, u8); 4] = [
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96), // IPv4-mapped
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96),      // IPv4-compatible (deprecated)
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96), // NAT64
    (Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96), // IPv4-translated (SIIT)
];

/// Whether `a` lies in `net/prefix`.
fn in_v4(a: Ipv4Addr, (net, prefix): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    a.to_bits() & mask == net.to_bits() & mask
}

/// Whether `a` lies in `net/prefix`.
fn in_v6(a: Ipv6Addr, (net, prefix): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a.to_bits() & mask == net.to_bits() & mask
}

/// The IPv4 address an IPv6 address stands for, if it is one of the embedding forms
/// (including 6to4, `2002:a.b.c.d::/48`).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = a.to_bits();
    let low32 = |x: u128| Ipv4Addr::from_bits(u32::try_from(x & u128::from(u32::MAX)).unwrap_or(0));
    if EMBEDS_V4_LOW.iter().any(|&n| in_v6(a, n)) {
        Some(low32(bits))
    } else if in_v6(a, (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16)) {
        Some(low32(bits >> 80))
    } else {
        None
    }
}

/// The address the rules judge: the embedded IPv4 address where there is one.
fn judged(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => embedded_v4(a).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// SSRF: addresses an outbound delivery must never reach unless the operator allows them.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match judged(ip) {
        IpAddr::V4(a) => FORBIDDEN_V4.iter().any(|&n| in_v4(a, n)),
        IpAddr::V6(a) => FORBIDDEN_V6.iter().any(|&n| in_v6(a, n)),
    }
}

/// Networks an operator allowed despite the rule above (config
/// `webhooks.allow_networks = ["127.0.0.0/8"]`); a bare address means just that address.
pub fn parse_networks(field: &'static str, v: &[String]) -> Result<Vec<IpNet>, Invalid> {
    v.iter()
        .map(|entry| {
            let s = entry.trim();
            let net = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    let shown: String = entry.chars().take(64).collect();
                    Invalid::new(
                        field,
                        "invalid_network",
                        format!("{shown:?} is not a network such as 127.0.0.0/8 or an address such as 10.0.0.5"),
                    )
                })?;
            // 127.0.0.1/8 means 127.0.0.0/8; store it the way it behaves.
            Ok(net.trunc())
        })
        .collect()
}

/// The address a URL names literally (`http://10.0.0.1/`, `http://[::1]/`). Such a host never
/// reaches a DNS resolver, so callers check it themselves.
pub fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Whether a delivery may connect to `ip`: public, or inside a network the operator allowed.
pub fn ip_allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    if !is_forbidden_ip(ip) {
        return true;
    }
    // An allowed 127.0.0.0/8 also admits ::ffff:127.0.0.1, judged the same way.
    let j = judged(ip);
    allow.iter().any(|n| n.contains(&ip) || n.contains(&j))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_non_public_range_is_forbidden() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "fe80::1",
            "febf::1",
            "224.0.0.1",
            "239.255.255.255",
            "ff02::1",
            "ff00::",
            "255.255.255.255",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "2001:db8::1",
            "240.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b::c0a8:101",
            "::ffff:0:127.0.0.1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "3fff::1",
        ] {
            assert!(is_forbidden_ip(ip(s)), "{s} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_not_forbidden() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.0.1",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "11.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:db9::1",
        ] {
            assert!(!is_forbidden_ip(ip(s)), "{s} should be public");
        }
    }

    #[test]
    fn an_allow_list_lets_chosen_networks_through() {
        let allow = parse_networks(
            "webhooks.allow_networks",
            &["127.0.0.0/8".into(), " 10.1.2.3 ".into(), "fd00::/8".into()],
        )
        .unwrap();
        assert_eq!(allow[1].to_string(), "10.1.2.3/32");
        assert!(ip_allowed(ip("127.0.0.1"), &allow));
        assert!(ip_allowed(ip("::ffff:127.0.0.1"), &allow));
        assert!(ip_allowed(ip("10.1.2.3"), &allow));
        assert!(!ip_allowed(ip("10.1.2.4"), &allow));
        assert!(ip_allowed(ip("fd00::5"), &allow));
        assert!(!ip_allowed(ip("::1"), &allow));
        assert!(!ip_allowed(ip("169.254.169.254"), &allow));
        assert!(ip_allowed(ip("8.8.8.8"), &[]));
        assert!(!ip_allowed(ip("127.0.0.1"), &[]));
    }

    #[test]
    fn networks_are_parsed_truncated_and_bad_ones_name_the_field() {
        let nets = parse_networks("allow", &["127.0.0.1/8".into(), "::1".into()]).unwrap();
        assert_eq!(nets[0].to_string(), "127.0.0.0/8");
        assert_eq!(nets[1].to_string(), "::1/128");
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "10.0.0/8",
            "::1/129",
            "1.2.3.4/8/8",
        ] {
            let e = parse_networks("allow", &["10.0.0.0/8".into(), bad.into()]).unwrap_err();
            assert_eq!((e.field, e.code), ("allow", "invalid_network"), "{bad:?}");
        }
        assert_eq!(parse_networks("allow", &[]).unwrap(), Vec::<IpNet>::new());
    }

    proptest! {
        #[test]
        fn a_mapped_address_is_judged_like_its_ipv4(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from_bits(bits);
            prop_assert_eq!(is_forbidden_ip(IpAddr::V6(v4.to_ipv6_mapped())), is_forbidden_ip(IpAddr::V4(v4)));
        }

        #[test]
        fn network_parsing_never_panics(s in "\\PC{0,50}", bits in any::<u128>()) {
            let _ = parse_networks("allow", &[s]);
            let _ = is_forbidden_ip(IpAddr::V6(Ipv6Addr::from_bits(bits)));
        }

        #[test]
        fn accepted_networks_are_stored_truncated_and_contain_what_they_were_given(a in any::<u32>(), prefix in 0_u8..=32, bad in "[0-9./a-z]{0,12}") {
            let given = Ipv4Addr::from_bits(a);
            let nets = parse_networks("allow", &[format!("{given}/{prefix}"), given.to_string()]).unwrap();
            prop_assert_eq!(nets[0], nets[0].trunc());
            prop_assert!(nets[0].contains(&IpAddr::V4(given)));
            prop_assert_eq!(nets[1].prefix_len(), 32);
            if let Err(e) = parse_networks("allow", &[bad]) {
                prop_assert_eq!((e.field, e.code), ("allow", "invalid_network"));
            }
        }
    }
}
