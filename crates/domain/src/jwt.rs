//! Access tokens: the checks an EdDSA JWT passes before its claims are believed. The server
//! finds the key by [`key_id`] and hands it to [`decode`]; keeping both here, with no key store
//! and no crypto backend chosen, lets the fuzz targets drive the exact checks the server runs.
//!
//! The crypto backend is picked by whoever links this crate (the server enables jsonwebtoken's
//! `aws_lc_rs`), so this module performs no I/O and needs no key material of its own.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;

/// The only algorithm access tokens are signed with.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

/// Clock skew forgiven on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// Claims a token must carry (registered names, RFC 7519).
pub const REQUIRED_CLAIMS: [&str; 5] = ["exp", "nbf", "iss", "aud", "sub"];

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, wrong signature, unknown key, wrong issuer or audience.
    Invalid,
    /// Past `exp`.
    Expired,
    /// Logged out.
    Revoked,
}

/// The `kid` of a token whose header names [`ALGORITHM`]; anything else is [`TokenError::Invalid`].
///
/// The signature is not checked yet: the id only says which key to check it with.
pub fn key_id(token: &str) -> Result<String, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    if header.alg != ALGORITHM {
        return Err(TokenError::Invalid);
    }
    header.kid.ok_or(TokenError::Invalid)
}

/// What [`decode`] checks besides the signature: issuer, audience, the required claims, and the
/// `nbf`..`exp` window with [`LEEWAY_SECS`] either side.
pub fn validation(issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(ALGORITHM);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&REQUIRED_CLAIMS);
    v.validate_nbf = true;
    v.leeway = LEEWAY_SECS;
    v
}

/// Verifies `token` with `key` under [`validation`] and returns its claims.
pub fn decode<C: DeserializeOwned>(
    token: &str,
    key: &DecodingKey,
    issuer: &str,
    audience: &str,
) -> Result<C, TokenError> {
    jsonwebtoken::decode::<C>(token, key, &validation(issuer, audience))
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const ISS: &str = "https://shop.example";
    const AUD: &str = "shopkeep";

    fn keys() -> (EncodingKey, DecodingKey) {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        (
            EncodingKey::from_ed_der(pkcs8.as_ref()),
            DecodingKey::from_ed_components(&x).unwrap(),
        )
    }

    fn now() -> i64 {
        crate::Timestamp::now().unix_seconds()
    }

    fn claims(exp: i64) -> Value {
        json!({ "iss": ISS, "aud": AUD, "sub": "u1", "nbf": now() - 1, "exp": exp })
    }

    fn sign(key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
        let header = Header {
            kid: kid.map(str::to_string),
            ..Header::new(ALGORITHM)
        };
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[test]
    fn a_signed_token_gives_its_key_id_and_claims() {
        let (ek, dk) = keys();
        let c = claims(now() + 60);
        let t = sign(&ek, Some("k1"), &c);
        assert_eq!(key_id(&t), Ok("k1".to_string()));
        assert_eq!(decode::<Value>(&t, &dk, ISS, AUD), Ok(c));
    }

    #[test]
    fn a_token_without_kid_or_with_another_algorithm_has_no_key_id() {
        let (ek, _) = keys();
        assert_eq!(
            key_id(&sign(&ek, None, &claims(now() + 60))),
            Err(TokenError::Invalid)
        );
        let hs = jsonwebtoken::encode(
            &Header {
                kid: Some("k1".into()),
                ..Header::new(Algorithm::HS256)
            },
            &claims(now() + 60),
            &EncodingKey::from_secret(b"guessable"),
        )
        .unwrap();
        assert_eq!(key_id(&hs), Err(TokenError::Invalid));
        for junk in ["", "a.b.c", "..", "not a token"] {
            assert_eq!(key_id(junk), Err(TokenError::Invalid), "{junk:?}");
        }
    }

    #[test]
    fn expiry_is_its_own_refusal_and_other_claims_are_checked() {
        let (ek, dk) = keys();
        let old = sign(&ek, Some("k1"), &claims(now() - 60));
        assert_eq!(
            decode::<Value>(&old, &dk, ISS, AUD),
            Err(TokenError::Expired)
        );
        let t = sign(&ek, Some("k1"), &claims(now() + 60));
        assert_eq!(
            decode::<Value>(&t, &dk, "https://other.example", AUD),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            decode::<Value>(&t, &dk, ISS, "other"),
            Err(TokenError::Invalid)
        );
        let mut no_sub = claims(now() + 60);
        no_sub.as_object_mut().unwrap().remove("sub");
        let t = sign(&ek, Some("k1"), &no_sub);
        assert_eq!(decode::<Value>(&t, &dk, ISS, AUD), Err(TokenError::Invalid));
        let mut later = claims(now() + 600);
        later["nbf"] = json!(now() + 300);
        let t = sign(&ek, Some("k1"), &later);
        assert_eq!(decode::<Value>(&t, &dk, ISS, AUD), Err(TokenError::Invalid));
    }

    #[test]
    fn another_key_refuses_the_signature() {
        let (ek, _) = keys();
        let (_, other) = keys();
        let t = sign(&ek, Some("k1"), &claims(now() + 60));
        assert_eq!(
            decode::<Value>(&t, &other, ISS, AUD),
            Err(TokenError::Invalid)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_changed_character_of_a_token_is_refused(at in any::<prop::sample::Index>(), to in any::<char>()) {
            let (ek, dk) = keys();
            let t = sign(&ek, Some("k1"), &claims(now() + 60));
            let mut chars: Vec<char> = t.chars().collect();
            let i = at.index(chars.len());
            prop_assume!(chars[i] != to);
            chars[i] = to;
            let changed: String = chars.into_iter().collect();
            prop_assert!(decode::<Value>(&changed, &dk, ISS, AUD).is_err(), "{changed}");
        }
    }
}
