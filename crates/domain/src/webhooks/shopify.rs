//! Shopify: webhook HMACs (base64 over the raw body) and OAuth query HMACs (hex over the
//! sorted query).

use base64::Engine as _;

use super::{
    B64, SignatureError, configured, decode_b64_tag, decode_hex_tag, matches_any, present, tag,
};

/// base64 HMAC-SHA256 of the raw body under the app's client secret.
pub const HMAC_HEADER: &str = "x-shopify-hmac-sha256";
/// Webhook topic (`orders/create`).
pub const TOPIC_HEADER: &str = "x-shopify-topic";
/// The shop that sent the webhook (`example.myshopify.com`).
pub const SHOP_HEADER: &str = "x-shopify-shop-domain";
/// One event; the same id again is a duplicate to ignore.
pub const EVENT_ID_HEADER: &str = "x-shopify-event-id";
/// One delivery attempt of an event.
pub const WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";
/// Admin API version the payload is shaped by.
pub const API_VERSION_HEADER: &str = "x-shopify-api-version";

/// Query parameters left out of the OAuth HMAC: the HMAC itself and the legacy `signature`.
const UNSIGNED_PARAMS: [&str; 2] = ["hmac", "signature"];

/// The `x-shopify-hmac-sha256` value for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    B64.encode(tag(secret, &[body]))
}

/// Checks a webhook HMAC; any configured secret may match (rotation leaves two for an hour).
pub fn verify(secrets: &[&[u8]], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let keys = configured(secrets.iter().copied())?;
    let received = decode_b64_tag(present(HMAC_HEADER, header)?)?;
    if matches_any(&keys, &[body], &[received]) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The message Shopify signs for an OAuth request: decoded params without `hmac`/`signature`,
/// sorted, joined as `k=v` with `&`.
fn canonical_query(params: &[(String, String)]) -> String {
    let mut kept: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| !UNSIGNED_PARAMS.contains(&k.as_str()))
        .collect();
    // By key, then by value, so a repeated key still gives one canonical string.
    kept.sort();
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The lower-case hex `hmac` for an OAuth install or callback query.
pub fn sign_query(secret: &[u8], params: &[(String, String)]) -> String {
    hex::encode(tag(secret, &[canonical_query(params).as_bytes()]))
}

/// Checks the `hmac` parameter of an OAuth query. The caller still checks `state`, `shop` and
/// the age of `timestamp`.
pub fn verify_query(secret: &[u8], params: &[(String, String)]) -> Result<(), SignatureError> {
    let keys = configured([secret])?;
    let mut hmacs = params.iter().filter(|(k, _)| k == "hmac");
    let (_, received) = hmacs.next().ok_or(SignatureError::Missing("hmac"))?;
    // Two hmac values leave it unclear which one was meant: refuse rather than pick.
    if hmacs.next().is_some() {
        return Err(SignatureError::Malformed(
            "the query has several hmac values",
        ));
    }
    let received = decode_hex_tag(received.trim())?;
    let message = canonical_query(params);
    if matches_any(&keys, &[message.as_bytes()], &[received]) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Whether `s` is a shop's own domain: `^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$`.
pub fn valid_shop_domain(s: &str) -> bool {
    let Some(name) = s.strip_suffix(".myshopify.com") else {
        return false;
    };
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Vectors computed with Python's hmac module, not with this code.
    const SECRET: &[u8] = b"shpss_0123456789abcdef";
    const OLD_SECRET: &[u8] = b"shpss_old_secret";
    const BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    const SIGNATURE: &str = "ne+Twf3BMrJ3AMcsdK/cwASHZl8vw1iJXvr4ORLXiaU=";
    const OLD_SIGNATURE: &str = "Y3tk7FVkJQDwnHpWz66Uc1IDd+X9j96pT60EBgezggs=";

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn a_good_webhook_signature_passes() {
        assert_eq!(sign(SECRET, BODY), SIGNATURE);
        assert_eq!(sign(OLD_SECRET, BODY), OLD_SIGNATURE);
        assert_eq!(verify(&[SECRET], Some(SIGNATURE), BODY), Ok(()));
        assert_eq!(
            verify(
                &[SECRET],
                Some(" ne+Twf3BMrJ3AMcsdK/cwASHZl8vw1iJXvr4ORLXiaU= "),
                BODY
            ),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let tampered = br#"{"id":820982911946154509,"email":"jon@example.com"}"#;
        assert_eq!(
            verify(&[SECRET], Some(SIGNATURE), tampered),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        assert_eq!(
            verify(&[b"shpss_someone_else"], Some(SIGNATURE), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_and_new_secrets_both_verify_during_rotation_and_a_third_does_not() {
        let both: [&[u8]; 2] = [SECRET, OLD_SECRET];
        assert_eq!(verify(&both, Some(SIGNATURE), BODY), Ok(()));
        assert_eq!(verify(&both, Some(OLD_SIGNATURE), BODY), Ok(()));
        let third = sign(b"shpss_third", BODY);
        assert_eq!(
            verify(&both, Some(&third), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_encodings_are_malformed_not_a_panic() {
        // The right tag in hex instead of base64: valid base64 text, but 48 bytes long.
        let hex_tag = "9def93c1fdc132b27700c72c74afdcc00487665f2fc358895efaf83912d789a5";
        for header in [hex_tag, "!!!not base64!!!", "ne+Twf3B", "=", "é"] {
            assert!(
                matches!(
                    verify(&[SECRET], Some(header), BODY),
                    Err(SignatureError::Malformed(_))
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_missing_header_or_secret_is_refused_first() {
        assert_eq!(
            verify(&[SECRET], None, BODY),
            Err(SignatureError::Missing(HMAC_HEADER))
        );
        assert_eq!(
            verify(&[SECRET], Some("  "), BODY),
            Err(SignatureError::Missing(HMAC_HEADER))
        );
        assert_eq!(
            verify(&[], Some(SIGNATURE), BODY),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(
            verify(&[b""], Some(SIGNATURE), BODY),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn the_oauth_query_is_sorted_and_signed_without_its_hmac() {
        // Shopify's documented example (secret "hush"), given here out of order.
        let params = q(&[
            ("shop", "some-shop.myshopify.com"),
            ("timestamp", "1337178173"),
            (
                "hmac",
                "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf",
            ),
            ("code", "0907a61c0c8d55e99db179b68161bc00"),
            ("state", "0.6784241404160823"),
        ]);
        assert_eq!(
            sign_query(b"hush", &params),
            "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"
        );
        assert_eq!(verify_query(b"hush", &params), Ok(()));
        let mut with_signature = params.clone();
        with_signature.push(("signature".into(), "legacy".into()));
        assert_eq!(verify_query(b"hush", &with_signature), Ok(()));
    }

    #[test]
    fn a_tampered_or_unsigned_oauth_query_is_refused() {
        let good = "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf";
        let base = [
            ("code", "0907a61c0c8d55e99db179b68161bc00"),
            ("shop", "some-shop.myshopify.com"),
            ("state", "0.6784241404160823"),
            ("timestamp", "1337178173"),
        ];
        let mut tampered = q(&base);
        tampered[1].1 = "evil-shop.myshopify.com".into();
        tampered.push(("hmac".into(), good.into()));
        assert_eq!(
            verify_query(b"hush", &tampered),
            Err(SignatureError::Mismatch)
        );

        let mut signed = q(&base);
        signed.push(("hmac".into(), good.into()));
        assert_eq!(
            verify_query(b"wrong", &signed),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify_query(b"", &signed), Err(SignatureError::NoSecret));
        assert_eq!(
            verify_query(b"hush", &q(&base)),
            Err(SignatureError::Missing("hmac"))
        );
        let mut twice = signed.clone();
        twice.push(("hmac".into(), good.into()));
        assert!(matches!(
            verify_query(b"hush", &twice),
            Err(SignatureError::Malformed(_))
        ));
        let mut garbage = q(&base);
        garbage.push(("hmac".into(), "cAAuLa2331A=".into()));
        assert!(matches!(
            verify_query(b"hush", &garbage),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn shop_domains_follow_shopifys_pattern() {
        for good in [
            "some-shop.myshopify.com",
            "A1.myshopify.com",
            "x.myshopify.com",
        ] {
            assert!(valid_shop_domain(good), "{good}");
        }
        for bad in [
            "",
            ".myshopify.com",
            "-shop.myshopify.com",
            "shop.myshopify.com.evil.com",
            "evil.com/.myshopify.com",
            "sub.shop.myshopify.com",
            "shop_1.myshopify.com",
            "shop.MYSHOPIFY.com",
            "shop.myshopify.com ",
            "shöp.myshopify.com",
            "shop.myshopify.co",
        ] {
            assert!(!valid_shop_domain(bad), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn verify_never_panics(header in "\\PC{0,120}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = verify(&[SECRET], Some(&header), &body);
            let _ = valid_shop_domain(&header);
            let params = vec![("hmac".to_string(), header.clone()), (header, "v".to_string())];
            let _ = verify_query(SECRET, &params);
        }

        #[test]
        fn what_is_signed_verifies(body in proptest::collection::vec(any::<u8>(), 0..512),
                                   params in proptest::collection::vec(("[a-z_]{1,8}", "\\PC{0,16}"), 0..6)) {
            prop_assert_eq!(verify(&[SECRET], Some(&sign(SECRET, &body)), &body), Ok(()));
            let mut params = params;
            params.retain(|(k, _)| k != "hmac");
            let h = sign_query(SECRET, &params);
            params.push(("hmac".to_string(), h));
            prop_assert_eq!(verify_query(SECRET, &params), Ok(()));
        }
    }
}
