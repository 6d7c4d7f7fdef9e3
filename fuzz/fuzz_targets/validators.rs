//! Every validator of typed input in shopkeep-domain on arbitrary text (accounts, orders,
//! webhook endpoints, event filters, allowed networks): never a panic; whatever is accepted
//! obeys the documented rule; a refusal names the field it was given.

#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shopkeep_domain::Invalid;
use shopkeep_domain::accounts::{
    self, NewPassword, Role, Scope, Username, parse_currency, parse_email, parse_locale,
    parse_timezone,
};
use shopkeep_domain::orders::{self, parse_item_name, parse_quantity, parse_text};
use shopkeep_domain::webhooks::{
    EventType, filter_matches, ip_allowed, is_forbidden_ip, parse_custom_headers,
    parse_endpoint_url, parse_filters, parse_networks, shopify,
};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    text: &'a str,
    number: i64,
    max: u16,
    list: Vec<String>,
    headers: BTreeMap<String, String>,
    v4: u32,
    v6: u128,
}

/// A refusal names the field it was asked about.
fn named<T>(field: &str, r: &Result<T, Invalid>) {
    if let Err(e) = r {
        assert_eq!(e.field, field);
        assert!(!e.code.is_empty() && !e.message.is_empty());
    }
}

/// Dot-separated non-empty runs of `[a-z0-9_]`.
fn segments_ok(s: &str) -> bool {
    s.split('.').all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn accounts(s: &str, inputs: &[&str]) {
    let r = Username::parse("username", s);
    named("username", &r);
    if let Ok(u) = r {
        assert_eq!(u.as_str(), s);
        assert!((4..=20).contains(&chars(s)) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(u.folded(), s.to_ascii_lowercase());
    }

    // The strength estimate costs milliseconds on long text and would starve every other
    // check here; lengths from 41 to 128 are left to the property tests. Past 128 the policy
    // refuses before estimating, which is cheap.
    let n = chars(s);
    if n <= 40 || n > 128 {
        let r = NewPassword::parse("password", s, inputs);
        named("password", &r);
        if let Ok(p) = r {
            assert_eq!(p.expose(), s);
            assert!((8..=128).contains(&n));
            assert!(accounts::password_strength(s, inputs) >= 1);
        }
    }
    if n <= 40 {
        assert!(accounts::password_strength(s, inputs) <= 4);
    }

    let r = parse_email("email", s);
    named("email", &r);
    if let Ok(e) = r {
        assert_eq!(e, s.trim());
        assert!(e.len() <= 254 && e.matches('@').count() == 1);
        let (local, domain) = e.split_once('@').unwrap();
        assert!(!local.is_empty() && domain.contains('.'));
        assert!(!domain.starts_with('.') && !domain.ends_with('.'));
        assert!(!e.chars().any(|c| c.is_whitespace() || c.is_control()));
    }

    let r = parse_locale("locale", s);
    named("locale", &r);
    if let Ok(l) = r {
        let (lang, region) = l.split_once('-').unwrap_or((&l, ""));
        assert!((2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase()));
        assert!(
            region.is_empty()
                || (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    let r = parse_currency("currency", s);
    named("currency", &r);
    if let Ok(c) = r {
        assert!(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
    }

    let r = parse_timezone("timezone", s);
    named("timezone", &r);
    if let Ok(t) = r {
        assert!(!t.is_empty() && t.len() <= 64);
        assert!(!t.split('/').any(|p| p.is_empty() || p == "." || p == ".."));
    }

    if let Ok(role) = s.parse::<Role>() {
        assert_eq!(role.as_str(), s);
    }
    if let Ok(scope) = s.parse::<Scope>() {
        assert_eq!(scope.as_str(), s);
    }
}

fn orders(s: &str, number: i64, max: usize) {
    let r = parse_item_name("item_name", s);
    named("item_name", &r);
    match r {
        Ok(n) => {
            assert_eq!(n, s.trim());
            assert!((1..=255).contains(&chars(&n)));
            assert!(!n.chars().any(char::is_control));
        }
        Err(e) if s.trim().is_empty() => assert_eq!(e.code, "required"),
        Err(e) if chars(s.trim()) > 255 => assert_eq!(e.code, "too_long"),
        Err(_) => assert!(s.trim().chars().any(char::is_control)),
    }

    let r = parse_quantity("quantity", number);
    named("quantity", &r);
    assert_eq!(
        r.ok().map(i64::from),
        (1..=100).contains(&number).then_some(number)
    );

    let r = parse_text("notes", s, max);
    named("notes", &r);
    match r {
        Ok(None) => assert!(s.trim().is_empty()),
        Ok(Some(t)) => {
            assert_eq!(t, s.trim());
            assert!(!t.is_empty() && chars(&t) <= max);
            assert!(
                !t.chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            );
        }
        Err(e) if chars(s.trim()) > max => assert_eq!(e.code, "too_long"),
        Err(e) => assert_eq!(e.code, "control_characters"),
    }

    if let Ok(st) = s.parse::<orders::Status>() {
        assert!(st.as_str() == s || st.filter_name() == s);
    }
    if let Ok(src) = s.parse::<orders::Source>() {
        assert_eq!(src.as_str(), s);
    }
}

fn webhooks(i: &Input<'_>) {
    let s = i.text;
    let r = parse_endpoint_url("url", s);
    named("url", &r);
    if let Ok(u) = r {
        assert!(matches!(u.scheme(), "http" | "https"));
        assert!(u.host_str().is_some_and(|h| !h.is_empty()));
        assert!(u.username().is_empty() && u.password().is_none() && u.fragment().is_none());
        assert!(u.as_str().len() <= 2048);
    }

    match parse_custom_headers("headers", &i.headers) {
        Ok(()) => {
            assert!(i.headers.len() <= 20);
            for (name, value) in &i.headers {
                assert!((1..=64).contains(&name.len()));
                assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                );
                let lower = name.to_ascii_lowercase();
                assert!(
                    !lower.starts_with("webhook-") && lower != "host" && lower != "content-length"
                );
                assert!(value.len() <= 1024 && value.bytes().all(|b| (b' '..=b'~').contains(&b)));
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            assert!(errors.iter().all(|e| e.field == "headers"));
        }
    }

    let r = EventType::parse(s);
    named("event_type", &r);
    if let Ok(t) = &r {
        assert!((3..=64).contains(&s.len()) && s.contains('.'));
        assert!(segments_ok(s));
        assert!(filter_matches(&[], t.as_str()));
        assert!(filter_matches(&["*".to_string()], t.as_str()));
        assert!(filter_matches(
            std::slice::from_ref(&s.to_string()),
            t.as_str()
        ));
    }

    let r = parse_filters("filters", &i.list);
    named("filters", &r);
    if let Ok(kept) = r {
        assert!(kept.len() <= 50 && kept.len() <= i.list.len());
        for (n, f) in kept.iter().enumerate() {
            assert!(!kept[..n].contains(f), "a repeat was kept");
            let exact = EventType::parse(f).is_ok();
            let wildcard =
                f == "*" || (f.len() <= 64 && f.strip_suffix(".*").is_some_and(segments_ok));
            assert!(exact || wildcard, "{f:?} was kept");
        }
        let _ = filter_matches(&kept, s);
    }
    let _ = filter_matches(&i.list, s);

    let r = parse_networks("allow_networks", &i.list);
    named("allow_networks", &r);
    if let Ok(nets) = r {
        assert_eq!(nets.len(), i.list.len());
        for n in &nets {
            assert_eq!(*n, n.trunc(), "a network is stored truncated");
        }
        let ip = IpAddr::V4(Ipv4Addr::from_bits(i.v4));
        let _ = ip_allowed(ip, &nets);
    }

    if shopify::valid_shop_domain(s) {
        let name = s.strip_suffix(".myshopify.com").unwrap();
        assert!(
            name.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
        );
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }

    // An IPv4 address is judged the same in its IPv4-mapped IPv6 form.
    let v4 = Ipv4Addr::from_bits(i.v4);
    assert_eq!(
        is_forbidden_ip(IpAddr::V4(v4)),
        is_forbidden_ip(IpAddr::V6(v4.to_ipv6_mapped()))
    );
    let v6 = IpAddr::V6(Ipv6Addr::from_bits(i.v6));
    if !is_forbidden_ip(v6) {
        assert!(ip_allowed(v6, &[]));
    }
}

fuzz_target!(|i: Input<'_>| {
    let inputs: Vec<&str> = i.list.iter().map(String::as_str).take(2).collect();
    accounts(i.text, &inputs);
    orders(i.text, i.number, usize::from(i.max));
    webhooks(&i);
});
