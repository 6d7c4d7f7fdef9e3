//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>` over `"{t}.{body}"`.

use super::{SignatureError, TAG_LEN, configured, fresh, matches_any, parse_unix, present, tag};

/// The signature header.
pub const HEADER: &str = "stripe-signature";
/// Stripe's default: refuse timestamps more than five minutes away.
pub const TOLERANCE_SECS: i64 = 300;

/// The full `stripe-signature` value for `body` signed at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let v1 = hex::encode(tag(secret.as_bytes(), &[t.as_bytes(), b".", body]));
    format!("t={t},v1={v1}")
}

/// Checks a `stripe-signature` header and returns its timestamp. The secret string, `whsec_`
/// prefix included, is the HMAC key, as Stripe uses it.
pub fn verify(
    secrets: &[&str],
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let keys = configured(secrets.iter().map(|s| s.as_bytes()))?;
    let header = present(HEADER, header)?;
    let mut t_raw = None;
    let mut saw_v1 = false;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        // v0 (test mode legacy) and keys Stripe may add later are not ours to judge.
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            // The timestamp is signed, but two of them make the header ambiguous.
            "t" if t_raw.is_some() => {
                return Err(SignatureError::Malformed(
                    "the header has several timestamps",
                ));
            }
            "t" => t_raw = Some(value),
            "v1" => {
                saw_v1 = true;
                if let Ok(raw) = hex::decode(value)
                    && raw.len() == TAG_LEN
                {
                    candidates.push(raw);
                }
            }
            _ => {}
        }
    }
    let t_raw = t_raw.ok_or(SignatureError::Malformed("the header has no t= timestamp"))?;
    let t = parse_unix(t_raw)?;
    if !saw_v1 {
        return Err(SignatureError::Malformed("the header has no v1 signature"));
    }
    if candidates.is_empty() {
        return Err(SignatureError::Malformed(
            "no v1 signature is 32 bytes of hex",
        ));
    }
    // The timestamp exactly as sent is what was signed.
    if !matches_any(&keys, &[t_raw.as_bytes(), b".", body], &candidates) {
        return Err(SignatureError::Mismatch);
    }
    // Checked after the signature, so Stale always means an authentic but replayed or
    // clock-skewed event, never a forgery.
    fresh(t, now_secs, tolerance_secs)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Vectors computed with Python's hmac module, not with this code.
    const SECRET: &str = "whsec_test_secret";
    const OLD_SECRET: &str = "whsec_old_secret";
    const T: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    const V1: &str = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";
    const OLD_V1: &str = "921476aa6febf6d11353fcee45246000c9edf7b3938ae2d09a2d6ea5cb98d9db";

    fn check(secrets: &[&str], header: &str, body: &[u8]) -> Result<i64, SignatureError> {
        verify(secrets, Some(header), body, T + 10, TOLERANCE_SECS)
    }

    #[test]
    fn a_good_signature_passes_and_gives_its_timestamp() {
        assert_eq!(sign(SECRET, T, BODY), format!("t={T},v1={V1}"));
        assert_eq!(check(&[SECRET], &format!("t={T},v1={V1}"), BODY), Ok(T));
    }

    #[test]
    fn header_items_come_in_any_order_and_v0_or_unknown_keys_are_ignored() {
        let header = format!(" v0=deadbeef , v1={V1} ,scheme=x, t={T},noequals");
        assert_eq!(check(&[SECRET], &header, BODY), Ok(T));
    }

    #[test]
    fn one_matching_v1_among_several_passes() {
        let header = format!("t={T},v1={OLD_V1},v1=zz,v1={V1}");
        assert_eq!(check(&[SECRET], &header, BODY), Ok(T));
    }

    #[test]
    fn a_tampered_body_or_timestamp_or_a_wrong_secret_is_refused() {
        let good = format!("t={T},v1={V1}");
        assert_eq!(
            check(&[SECRET], &good, br#"{"id":"evt_2","object":"event"}"#),
            Err(SignatureError::Mismatch)
        );
        let moved = format!("t={},v1={V1}", T + 1);
        assert_eq!(
            check(&[SECRET], &moved, BODY),
            Err(SignatureError::Mismatch)
        );
        let padded = format!("t=0{T},v1={V1}");
        assert_eq!(
            check(&[SECRET], &padded, BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&["whsec_other"], &good, BODY),
            Err(SignatureError::Mismatch)
        );
        // The prefix is part of the key.
        assert_eq!(
            check(&["test_secret"], &good, BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_and_new_secrets_both_verify_during_rotation_and_a_third_does_not() {
        let both = [SECRET, OLD_SECRET];
        assert_eq!(check(&both, &format!("t={T},v1={V1}"), BODY), Ok(T));
        assert_eq!(check(&both, &format!("t={T},v1={OLD_V1}"), BODY), Ok(T));
        let third = sign("whsec_third", T, BODY);
        assert_eq!(check(&both, &third, BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn wrong_encodings_and_garbage_are_malformed_not_a_panic() {
        let b64 = "DIZw7RF3UcxVGiDjWDlEcHXEKADqPPPoovvamc0ebt0=";
        for header in [
            format!("t={T},v1={b64}"),
            format!("t={T},v1={}", &V1[..62]),
            format!("t={T},v1={V1}00"),
            format!("t={T}"),
            format!("t={T},v0={V1}"),
            format!("v1={V1}"),
            format!("t=soon,v1={V1}"),
            format!("t=-5,v1={V1}"),
            format!("t={T},t={T},v1={V1}"),
            "nonsense".to_string(),
            ",,,=,=".to_string(),
        ] {
            assert!(
                matches!(
                    check(&[SECRET], &header, BODY),
                    Err(SignatureError::Malformed(_))
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_missing_header_or_secret_is_refused() {
        assert_eq!(
            verify(&[SECRET], None, BODY, T, TOLERANCE_SECS),
            Err(SignatureError::Missing(HEADER))
        );
        let good = format!("t={T},v1={V1}");
        assert_eq!(check(&[], &good, BODY), Err(SignatureError::NoSecret));
        assert_eq!(check(&[""], &good, BODY), Err(SignatureError::NoSecret));
    }

    #[test]
    fn timestamps_beyond_the_tolerance_are_stale_either_way() {
        let good = format!("t={T},v1={V1}");
        let at = |now| verify(&[SECRET], Some(&good), BODY, now, TOLERANCE_SECS);
        assert_eq!(at(T + 300), Ok(T));
        assert_eq!(at(T - 300), Ok(T));
        assert_eq!(at(T + 301), Err(SignatureError::Stale { skew_secs: 301 }));
        assert_eq!(at(T - 301), Err(SignatureError::Stale { skew_secs: -301 }));
    }

    proptest! {
        #[test]
        fn verify_never_panics(header in "\\PC{0,160}", body in proptest::collection::vec(any::<u8>(), 0..256), now in any::<i64>()) {
            let _ = verify(&[SECRET], Some(&header), &body, now, TOLERANCE_SECS);
        }

        #[test]
        fn verify_never_panics_on_near_miss_headers(header in "(t=[0-9]{0,20},)?(v[01]=[0-9a-f]{60,66},){0,3}(t=[0-9]{0,20})?", now in any::<i64>()) {
            let _ = verify(&[SECRET], Some(&header), BODY, now, TOLERANCE_SECS);
        }

        #[test]
        fn what_is_signed_verifies(body in proptest::collection::vec(any::<u8>(), 0..512), t in 0_i64..=i64::MAX) {
            let header = sign(SECRET, t, &body);
            prop_assert_eq!(verify(&[SECRET], Some(&header), &body, t, TOLERANCE_SECS), Ok(t));
        }
    }
}
