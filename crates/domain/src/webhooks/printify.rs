//! Printify: `x-pfy-signature: sha256=<hex>`, HMAC-SHA256 of the raw body under the webhook
//! secret.

use super::{SignatureError, configured, decode_hex_tag, matches_any, present, tag};

/// The signature header.
pub const HEADER: &str = "x-pfy-signature";

/// Marker in front of the hex digest.
const PREFIX: &str = "sha256=";

/// The `x-pfy-signature` value for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("{PREFIX}{}", hex::encode(tag(secret, &[body])))
}

/// Checks `x-pfy-signature`, written `sha256=<hex>` or as bare hex.
pub fn verify(secrets: &[&[u8]], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let keys = configured(secrets.iter().copied())?;
    let header = present(HEADER, header)?;
    let digest = match header.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => &header[PREFIX.len()..],
        _ => header,
    };
    let received = decode_hex_tag(digest)?;
    if matches_any(&keys, &[body], &[received]) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Computed with Python's hmac module, not with this code.
    const SECRET: &[u8] = b"pfy_secret_123";
    const BODY: &[u8] = br#"{"id":"653b6be8","type":"order:created"}"#;
    const HEX: &str = "ab218839089ae8cb8bb1d5bb3bc17ba1d8222e5bab62f944e0030de8c47e1a10";

    #[test]
    fn a_good_signature_passes_with_or_without_its_prefix() {
        assert_eq!(sign(SECRET, BODY), format!("sha256={HEX}"));
        for header in [
            format!("sha256={HEX}"),
            HEX.to_string(),
            format!("SHA256={}", HEX.to_uppercase()),
        ] {
            assert_eq!(verify(&[SECRET], Some(&header), BODY), Ok(()), "{header}");
        }
    }

    #[test]
    fn a_tampered_body_or_a_wrong_secret_is_refused() {
        let header = format!("sha256={HEX}");
        assert_eq!(
            verify(
                &[SECRET],
                Some(&header),
                br#"{"id":"653b6be9","type":"order:created"}"#
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&[b"pfy_other"], Some(&header), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_and_new_secrets_both_verify_during_rotation_and_a_third_does_not() {
        let (old, new): (&[u8], &[u8]) = (SECRET, b"pfy_new_secret");
        let both = [new, old];
        assert_eq!(verify(&both, Some(&sign(old, BODY)), BODY), Ok(()));
        assert_eq!(verify(&both, Some(&sign(new, BODY)), BODY), Ok(()));
        assert_eq!(
            verify(&both, Some(&sign(b"pfy_third", BODY)), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_encodings_and_garbage_are_malformed_not_a_panic() {
        let b64 = "qyGIOQia6MuLsdW7O8F7odgiLlurYvlE4AMN6MR+GhA=";
        for header in [
            b64,
            "sha256=",
            "sha256=xyz",
            "sha256=abc",
            &HEX[..62],
            "sha1=ab21",
            "sha25é",
        ] {
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
    fn a_missing_header_or_secret_is_refused() {
        assert_eq!(
            verify(&[SECRET], None, BODY),
            Err(SignatureError::Missing(HEADER))
        );
        assert_eq!(
            verify(&[SECRET], Some(""), BODY),
            Err(SignatureError::Missing(HEADER))
        );
        assert_eq!(verify(&[], Some(HEX), BODY), Err(SignatureError::NoSecret));
    }

    proptest! {
        #[test]
        fn verify_never_panics(header in "\\PC{0,120}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = verify(&[SECRET], Some(&header), &body);
        }

        #[test]
        fn what_is_signed_verifies(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert_eq!(verify(&[SECRET], Some(&sign(SECRET, &body)), &body), Ok(()));
        }
    }
}
