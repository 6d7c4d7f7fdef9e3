//! Where outbound webhooks go: the endpoint URL and the extra headers an endpoint adds.

use std::collections::{BTreeMap, BTreeSet};

use url::Url;

use crate::Invalid;

/// Longest endpoint URL, as typed and as normalised.
const MAX_URL_LEN: usize = 2048;
/// Most custom headers per endpoint.
const MAX_HEADERS: usize = 20;
/// Longest custom header name.
const MAX_NAME_LEN: usize = 64;
/// Longest custom header value.
const MAX_VALUE_LEN: usize = 1024;

/// Headers the delivery itself sets or that change how the request is framed or routed:
/// an endpoint overriding them could corrupt the request or forge a signature header.
const RESERVED: [&str; 11] = [
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "user-agent",
    // Hop-by-hop headers (RFC 9110 section 7.6.1) mean nothing end to end.
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

/// A destination URL for outbound webhooks: http or https only, a host, no userinfo,
/// <= 2048 chars, no fragment.
///
/// Which addresses the host may resolve to is decided at delivery time ([`super::ip_allowed`]),
/// because DNS can change after registration.
pub fn parse_endpoint_url(field: &'static str, s: &str) -> Result<Url, Invalid> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Invalid::new(field, "required", "give the endpoint's URL"));
    }
    let too_long = || Invalid::new(field, "too_long", "a URL has at most 2048 characters");
    if s.len() > MAX_URL_LEN {
        return Err(too_long());
    }
    let url = Url::parse(s).map_err(|_| {
        Invalid::new(
            field,
            "invalid_url",
            "give a full URL such as https://example.com/hooks",
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Invalid::new(
            field,
            "unsupported_scheme",
            "the URL must start with https:// or http://",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Invalid::new(
            field,
            "missing_host",
            "the URL needs a host name",
        ));
    }
    // Credentials in a URL end up in logs; endpoints authenticate with custom headers instead.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Invalid::new(
            field,
            "userinfo",
            "the URL cannot contain a user name or password",
        ));
    }
    if url.fragment().is_some() {
        return Err(Invalid::new(
            field,
            "fragment",
            "the URL cannot contain a #fragment",
        ));
    }
    // Percent-encoding and IDNA can lengthen the URL we will actually store and send.
    if url.as_str().len() > MAX_URL_LEN {
        return Err(too_long());
    }
    Ok(url)
}

/// An RFC 9110 `tchar`: what a header name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A reserved name (compared in lower case).
fn is_reserved(lower: &str) -> bool {
    RESERVED.contains(&lower) || lower.starts_with("webhook-")
}

/// Custom headers an endpoint adds: at most 20, names are valid HTTP token chars <= 64, values
/// printable ASCII without CR/LF <= 1024, and none of the reserved names (case-insensitive):
/// host, content-type, content-length, transfer-encoding, connection, user-agent, hop-by-hop
/// headers, and anything starting with webhook- .
pub fn parse_custom_headers(
    field: &'static str,
    h: &BTreeMap<String, String>,
) -> Result<(), Vec<Invalid>> {
    let mut errors = Vec::new();
    if h.len() > MAX_HEADERS {
        errors.push(Invalid::new(field, "too_many", "at most 20 custom headers"));
    }
    let mut seen = BTreeSet::new();
    for (name, value) in h {
        // The name is echoed (Debug quoted, bounded); values are never echoed, they are often
        // credentials.
        let shown: String = name.chars().take(MAX_NAME_LEN).collect();
        if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(is_tchar) {
            errors.push(Invalid::new(
                field,
                "invalid_header_name",
                format!(
                    "{shown:?} is not a header name: 1 to 64 letters, digits or -_.!#$%&'*+^`|~"
                ),
            ));
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if is_reserved(&lower) {
            errors.push(Invalid::new(
                field,
                "reserved_header",
                format!("{shown:?} is set by shopkeep and cannot be overridden"),
            ));
        } else if !seen.insert(lower) {
            errors.push(Invalid::new(
                field,
                "duplicate_header",
                format!("{shown:?} is given twice (header names ignore case)"),
            ));
        }
        if value.len() > MAX_VALUE_LEN {
            errors.push(Invalid::new(
                field,
                "header_value_too_long",
                format!("the value of {shown:?} has more than 1024 characters"),
            ));
        } else if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            errors.push(Invalid::new(
                field,
                "invalid_header_value",
                format!("the value of {shown:?} must be printable ASCII on one line"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(s: &str) -> &'static str {
        let e = parse_endpoint_url("url", s).unwrap_err();
        assert_eq!(e.field, "url");
        e.code
    }

    fn headers(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn codes(v: &[(&str, &str)]) -> Vec<&'static str> {
        let errors = parse_custom_headers("headers", &headers(v)).unwrap_err();
        assert!(errors.iter().all(|e| e.field == "headers"));
        errors.iter().map(|e| e.code).collect()
    }

    #[test]
    fn endpoint_urls_are_plain_http_or_https() {
        for good in [
            "https://example.com/hooks",
            "  http://example.com:8080/a?b=c  ",
            "https://[2606:4700::1111]/x",
            "https://127.0.0.1/",
            "https://bücher.example/",
        ] {
            let url = parse_endpoint_url("url", good).unwrap();
            assert!(url.scheme().starts_with("http"));
        }
        assert_eq!(
            parse_endpoint_url("url", "https://bücher.example/")
                .unwrap()
                .host_str(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(code(""), "required");
        assert_eq!(code("   "), "required");
        assert_eq!(code("example.com/hooks"), "invalid_url");
        assert_eq!(code("https://exa mple.com/"), "invalid_url");
        assert_eq!(code("ftp://example.com/"), "unsupported_scheme");
        assert_eq!(code("file:///etc/passwd"), "unsupported_scheme");
        assert_eq!(code("javascript:alert(1)"), "unsupported_scheme");
        assert_eq!(code("https://user:pw@example.com/"), "userinfo");
        assert_eq!(code("https://user@example.com/"), "userinfo");
        assert_eq!(code("https://example.com/#top"), "fragment");
        assert_eq!(code("https://example.com/#"), "fragment");
        let path = "a".repeat(MAX_URL_LEN);
        assert_eq!(code(&format!("https://example.com/{path}")), "too_long");
        let fits = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
        assert!(parse_endpoint_url("url", &fits).is_ok());
        // Each space becomes %20 when normalised, pushing the stored form past the limit.
        let grows = format!("https://example.com/{}x", " ".repeat(MAX_URL_LEN - 30));
        assert_eq!(code(&grows), "too_long");
    }

    #[test]
    fn custom_headers_are_tokens_with_one_line_values() {
        assert_eq!(parse_custom_headers("headers", &BTreeMap::new()), Ok(()));
        let good = headers(&[
            ("Authorization", "Bearer abc.def"),
            ("X-Tenant", "42"),
            ("x-empty", ""),
        ]);
        assert_eq!(parse_custom_headers("headers", &good), Ok(()));
        assert_eq!(codes(&[("", "v")]), ["invalid_header_name"]);
        assert_eq!(codes(&[("x tenant", "v")]), ["invalid_header_name"]);
        assert_eq!(codes(&[("x:tenant", "v")]), ["invalid_header_name"]);
        assert_eq!(codes(&[("x-tenänt", "v")]), ["invalid_header_name"]);
        assert_eq!(codes(&[(&"x".repeat(65), "v")]), ["invalid_header_name"]);
        assert!(parse_custom_headers("headers", &headers(&[(&"x".repeat(64), "v")])).is_ok());
        assert_eq!(
            codes(&[("x-a", "one\r\nx-b: two")]),
            ["invalid_header_value"]
        );
        assert_eq!(codes(&[("x-a", "tab\there")]), ["invalid_header_value"]);
        assert_eq!(codes(&[("x-a", "é")]), ["invalid_header_value"]);
        assert_eq!(
            codes(&[("x-a", &"v".repeat(1025))]),
            ["header_value_too_long"]
        );
        assert!(parse_custom_headers("headers", &headers(&[("x-a", &"v".repeat(1024))])).is_ok());
        assert_eq!(codes(&[("X-A", "1"), ("x-a", "2")]), ["duplicate_header"]);
    }

    #[test]
    fn reserved_headers_cannot_be_overridden_in_any_case() {
        for name in [
            "Host",
            "content-type",
            "Content-Length",
            "TRANSFER-ENCODING",
            "connection",
            "User-Agent",
            "Webhook-Signature",
            "webhook-id",
            "webhook-anything",
            "Upgrade",
        ] {
            assert_eq!(codes(&[(name, "v")]), ["reserved_header"], "{name}");
        }
        assert!(parse_custom_headers("headers", &headers(&[("x-webhook-source", "v")])).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut many: BTreeMap<String, String> = (0..21)
            .map(|i| (format!("x-h{i:02}"), "v".into()))
            .collect();
        many.insert("host".into(), "bad\n".into());
        let got: Vec<&str> = parse_custom_headers("headers", &many)
            .unwrap_err()
            .iter()
            .map(|e| e.code)
            .collect();
        assert_eq!(got, ["too_many", "reserved_header", "invalid_header_value"]);
        let twenty: BTreeMap<String, String> = (0..20)
            .map(|i| (format!("x-h{i:02}"), "v".into()))
            .collect();
        assert_eq!(parse_custom_headers("headers", &twenty), Ok(()));
    }

    proptest! {
        #[test]
        fn url_and_header_checks_never_panic(s in "\\PC{0,200}", v in "\\PC{0,40}") {
            let _ = parse_endpoint_url("url", &s);
            let mut h = BTreeMap::new();
            h.insert(s, v);
            let _ = parse_custom_headers("headers", &h);
        }

        #[test]
        fn accepted_urls_keep_the_rules(s in "(https?|ftp)://[a-z0-9.@:#/?-]{0,40}") {
            if let Ok(url) = parse_endpoint_url("url", &s) {
                prop_assert!(url.scheme() == "http" || url.scheme() == "https");
                prop_assert!(url.username().is_empty() && url.password().is_none());
                prop_assert!(url.fragment().is_none());
                prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()));
            }
        }

        #[test]
        fn urls_over_2048_characters_are_refused_naming_the_field(n in 2049_usize..2300) {
            let s = format!("https://example.com/{}", "a".repeat(n - 20));
            prop_assert_eq!((code(&s), parse_endpoint_url("url", &s).unwrap_err().field), ("too_long", "url"));
        }

        #[test]
        fn accepted_custom_headers_keep_the_rules(h in proptest::collection::btree_map("[A-Za-z0-9 :_-]{0,70}", "\\PC{0,20}|[ -~]{0,1030}", 0..24)) {
            match parse_custom_headers("headers", &h) {
                Ok(()) => {
                    prop_assert!(h.len() <= 20);
                    for (name, value) in &h {
                        prop_assert!((1..=64).contains(&name.len()) && name.bytes().all(is_tchar));
                        prop_assert!(!is_reserved(&name.to_ascii_lowercase()));
                        prop_assert!(value.len() <= 1024 && value.bytes().all(|b| (b' '..=b'~').contains(&b)));
                    }
                }
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    prop_assert!(errors.iter().all(|e| e.field == "headers"));
                    if h.len() > 20 {
                        prop_assert!(errors.iter().any(|e| e.code == "too_many"));
                    }
                    if h.values().any(|v| v.len() > 1024) {
                        prop_assert!(errors.iter().any(|e| e.code == "header_value_too_long" || e.code == "invalid_header_name"));
                    }
                }
            }
        }
    }
}
