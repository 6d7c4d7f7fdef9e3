//! Standard Webhooks (Svix compatible): how shopkeep signs its outbound webhooks, and verifies
//! inbound ones signed the same way.

use std::fmt;

use base64::Engine as _;

use super::{
    B64, SignatureError, TAG_LEN, configured, fresh, matches_any, parse_unix, present, tag,
};

/// Unique message id; the same id again is a redelivery.
pub const ID_HEADER: &str = "webhook-id";
/// Unix seconds when the message was signed.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Space-separated `v1,<base64>` signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// Receivers refuse timestamps more than five minutes away.
pub const TOLERANCE_SECS: i64 = 300;

/// Prefix of a secret's text form.
const PREFIX: &str = "whsec_";
/// Accepted key sizes for a parsed secret: Svix issues 24 bytes, 64 is a block of SHA-256.
const KEY_LEN: std::ops::RangeInclusive<usize> = 24..=64;

/// A signing secret: `whsec_` + base64 of the key bytes. Debug is redacted.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Wraps freshly generated key bytes (the caller picks the length, 32 is customary).
    pub fn from_bytes(b: &[u8]) -> Self {
        Self(b.to_vec())
    }

    /// Reads `whsec_<base64>` (the prefix is optional) holding 24 to 64 key bytes.
    pub fn parse(s: &str) -> Result<Self, SignatureError> {
        let s = s.trim();
        let encoded = s.strip_prefix(PREFIX).unwrap_or(s);
        let key = B64
            .decode(encoded)
            .map_err(|_| SignatureError::Malformed("the secret is not base64"))?;
        if !KEY_LEN.contains(&key.len()) {
            return Err(SignatureError::Malformed(
                "the secret must hold 24 to 64 bytes",
            ));
        }
        Ok(Self(key))
    }

    /// The `whsec_...` text, to show once to the endpoint's owner or store encrypted.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", B64.encode(&self.0))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// The content that is signed: `"{msg_id}.{timestamp}.{body}"`.
fn signed_parts<'a>(msg_id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
}

/// One `v1,<base64>` signature.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    format!(
        "v1,{}",
        B64.encode(tag(&secret.0, &signed_parts(msg_id, &t, body)))
    )
}

/// The `webhook-signature` value: one signature per secret, so receivers still holding the
/// previous secret keep verifying while a rotation overlaps.
pub fn signature_header(
    secrets: &[&WebhookSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks the three `webhook-*` headers against any of `secrets`.
pub fn verify(
    secrets: &[&WebhookSecret],
    msg_id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let keys = configured(secrets.iter().map(|s| s.0.as_slice()))?;
    let msg_id = present(ID_HEADER, msg_id)?;
    let t_raw = present(TIMESTAMP_HEADER, timestamp)?;
    let signature = present(SIGNATURE_HEADER, signature)?;
    let t = parse_unix(t_raw)?;
    let mut saw_v1 = false;
    let mut candidates = Vec::new();
    for entry in signature.split_ascii_whitespace() {
        // Other versions (v1a is asymmetric) are for other verifiers.
        if let Some(("v1", encoded)) = entry.split_once(',') {
            saw_v1 = true;
            if let Ok(raw) = B64.decode(encoded)
                && raw.len() == TAG_LEN
            {
                candidates.push(raw);
            }
        }
    }
    if !saw_v1 {
        return Err(SignatureError::Malformed("the header has no v1 signature"));
    }
    if candidates.is_empty() {
        return Err(SignatureError::Malformed(
            "no v1 signature is 32 bytes of base64",
        ));
    }
    // The timestamp exactly as sent is what was signed.
    if !matches_any(&keys, &signed_parts(msg_id, t_raw, body), &candidates) {
        return Err(SignatureError::Mismatch);
    }
    // After the signature, so Stale always means authentic but replayed or clock-skewed.
    fresh(t, now_secs, tolerance_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The official Standard Webhooks example; both signatures re-derived with Python.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SECOND: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const T: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const SECOND_SIG: &str = "v1,O4Gjv1HqPqsMrjmczoggs/sWA8gZD0VyHG+fLh4+ktI=";

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::parse(s).unwrap()
    }

    fn check(
        secrets: &[&WebhookSecret],
        id: &str,
        t: &str,
        sig: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        verify(
            secrets,
            Some(id),
            Some(t),
            Some(sig),
            body,
            T,
            TOLERANCE_SECS,
        )
    }

    #[test]
    fn the_official_example_signs_and_verifies() {
        let s = secret(SECRET);
        assert_eq!(sign(&s, ID, T, BODY), SIG);
        assert_eq!(check(&[&s], ID, "1614265330", SIG, BODY), Ok(()));
    }

    #[test]
    fn secrets_parse_with_or_without_prefix_and_never_print() {
        let s = secret(SECRET);
        assert_eq!(s.expose(), SECRET);
        assert_eq!(secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expose(), SECRET);
        assert_eq!(
            WebhookSecret::from_bytes(&[0; 24]).expose(),
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
        assert_eq!(format!("{s:?}"), "WebhookSecret([redacted])");
        for bad in [
            "whsec_",
            "whsec_not*base64",
            "whsec_eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=",
            "whsec_eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=",
        ] {
            assert!(
                matches!(WebhookSecret::parse(bad), Err(SignatureError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_header_carries_one_signature_per_secret() {
        let (a, b) = (secret(SECRET), secret(SECOND));
        assert_eq!(
            signature_header(&[&a, &b], ID, T, BODY),
            format!("{SIG} {SECOND_SIG}")
        );
        assert_eq!(signature_header(&[], ID, T, BODY), "");
    }

    #[test]
    fn one_matching_v1_among_several_and_other_versions_passes() {
        let s = secret(SECRET);
        let header = format!("v1a,bm90IG91cnM= v1,{} v2,x  {SIG}", &SECOND_SIG[3..]);
        assert_eq!(check(&[&s], ID, "1614265330", &header, BODY), Ok(()));
    }

    #[test]
    fn a_tampered_body_timestamp_or_id_or_a_wrong_secret_is_refused() {
        let s = secret(SECRET);
        let t = "1614265330";
        assert_eq!(
            check(&[&s], ID, t, SIG, br#"{"test": 2432232315}"#),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&[&s], ID, "1614265331", SIG, BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&[&s], "msg_other", t, SIG, BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&[&secret(SECOND)], ID, t, SIG, BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_and_new_secrets_both_verify_during_rotation_and_a_third_does_not() {
        let (old, new) = (secret(SECRET), secret(SECOND));
        let t = "1614265330";
        assert_eq!(check(&[&new, &old], ID, t, SIG, BODY), Ok(()));
        assert_eq!(check(&[&new, &old], ID, t, SECOND_SIG, BODY), Ok(()));
        let third = sign(&WebhookSecret::from_bytes(&[7; 32]), ID, T, BODY);
        assert_eq!(
            check(&[&new, &old], ID, t, &third, BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_encodings_and_garbage_are_malformed_not_a_panic() {
        let s = secret(SECRET);
        let hex = "v1,83484cf52b04f8e4cf2531adfed9882ad4b2665137b852442d594d20e2c9d4e1";
        for header in [
            hex,
            "v1,!!!",
            "v1,",
            "v1",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "garbage",
            "v1,Zm9v",
        ] {
            assert!(
                matches!(
                    check(&[&s], ID, "1614265330", header, BODY),
                    Err(SignatureError::Malformed(_))
                ),
                "{header:?}"
            );
        }
        for t in [
            "soon",
            "-1614265330",
            "1614265330.0",
            "99999999999999999999",
        ] {
            assert!(
                matches!(
                    check(&[&s], ID, t, SIG, BODY),
                    Err(SignatureError::Malformed(_))
                ),
                "{t}"
            );
        }
    }

    #[test]
    fn a_missing_header_or_secret_is_refused() {
        let s = secret(SECRET);
        let t = Some("1614265330");
        let go = |id, t, sig| verify(&[&s], id, t, sig, BODY, T, TOLERANCE_SECS);
        assert_eq!(
            go(None, t, Some(SIG)),
            Err(SignatureError::Missing(ID_HEADER))
        );
        assert_eq!(
            go(Some(ID), None, Some(SIG)),
            Err(SignatureError::Missing(TIMESTAMP_HEADER))
        );
        assert_eq!(
            go(Some(ID), t, None),
            Err(SignatureError::Missing(SIGNATURE_HEADER))
        );
        assert_eq!(
            go(Some(" "), t, Some(SIG)),
            Err(SignatureError::Missing(ID_HEADER))
        );
        assert_eq!(
            check(&[], ID, "1614265330", SIG, BODY),
            Err(SignatureError::NoSecret)
        );
        let empty = WebhookSecret::from_bytes(b"");
        assert_eq!(
            check(&[&empty], ID, "1614265330", SIG, BODY),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn timestamps_beyond_the_tolerance_are_stale_either_way() {
        let s = secret(SECRET);
        let at = |now| {
            verify(
                &[&s],
                Some(ID),
                Some("1614265330"),
                Some(SIG),
                BODY,
                now,
                TOLERANCE_SECS,
            )
        };
        assert_eq!(at(T + 300), Ok(()));
        assert_eq!(at(T - 300), Ok(()));
        assert_eq!(at(T + 301), Err(SignatureError::Stale { skew_secs: 301 }));
        assert_eq!(
            at(T - 3600),
            Err(SignatureError::Stale { skew_secs: -3600 })
        );
    }

    proptest! {
        #[test]
        fn verify_never_panics(id in "\\PC{0,40}", t in "\\PC{0,24}", sig in "\\PC{0,160}",
                               body in proptest::collection::vec(any::<u8>(), 0..256), now in any::<i64>()) {
            let s = secret(SECRET);
            let _ = verify(&[&s], Some(&id), Some(&t), Some(&sig), &body, now, TOLERANCE_SECS);
            let _ = WebhookSecret::parse(&sig);
        }

        #[test]
        fn verify_never_panics_on_near_miss_headers(sig in "(v1[a]?,[A-Za-z0-9+/=]{40,48} ?){0,3}", t in "[0-9]{0,20}") {
            let s = secret(SECRET);
            let _ = verify(&[&s], Some(ID), Some(&t), Some(&sig), BODY, T, TOLERANCE_SECS);
        }

        #[test]
        fn what_is_signed_verifies(body in proptest::collection::vec(any::<u8>(), 0..512),
                                   id in "msg_[A-Za-z0-9]{1,32}", t in 0_i64..=i64::MAX,
                                   key in proptest::collection::vec(any::<u8>(), 24..=64)) {
            let (s, other) = (WebhookSecret::from_bytes(&key), secret(SECOND));
            let header = signature_header(&[&other, &s], &id, t, &body);
            let ts = t.to_string();
            prop_assert_eq!(verify(&[&s], Some(&id), Some(&ts), Some(&header), &body, t, TOLERANCE_SECS), Ok(()));
            let reparsed = WebhookSecret::parse(&s.expose()).unwrap();
            prop_assert_eq!(verify(&[&reparsed], Some(&id), Some(&ts), Some(&header), &body, t, TOLERANCE_SECS), Ok(()));
        }
    }
}
