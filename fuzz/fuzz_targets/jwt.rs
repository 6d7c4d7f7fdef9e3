//! `jwt::key_id` and `jwt::decode` (the access-token checks the server runs) on arbitrary text
//! with a fixed Ed25519 key: never a panic; only the token the key signed is accepted, so any
//! changed character is refused; claims outside issuer, audience or time window are refused.

#![no_main]

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{DecodingKey, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use shopkeep_domain::jwt::{self, ALGORITHM, LEEWAY_SECS, TokenError};

/// A throwaway Ed25519 key (PKCS#8 DER, base64) made for this target only.
const PRIVATE_PKCS8: &str = "MC4CAQAwBQYDK2VwBCIEIGk5bQnT56NR3O4JZzHFrfobKZflYpgLGdIfizoZmb6K";
/// Its public key, the JWK `x`.
const PUBLIC_X: &str = "lnxRhAHGBl7hp8vjq550DbqdyEYf3492xgW9RhBkurc";
const ISS: &str = "https://shop.example";
const AUD: &str = "shopkeep";
/// 2100-01-01: the fixed token stays valid for as long as this target is run.
const FAR_FUTURE: i64 = 4_102_444_800;

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    token: String,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let der = STANDARD.decode(PRIVATE_PKCS8).expect("the key is base64");
    let encoding = EncodingKey::from_ed_der(&der);
    let decoding = DecodingKey::from_ed_components(PUBLIC_X).expect("the public key is base64url");
    let claims = json!({ "iss": ISS, "aud": AUD, "sub": "u1", "nbf": 0, "exp": FAR_FUTURE });
    let token = sign(&encoding, Some("k1"), &claims);
    Keys {
        encoding,
        decoding,
        token,
    }
});

fn sign(key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let header = Header {
        kid: kid.map(str::to_string),
        ..Header::new(ALGORITHM)
    };
    jsonwebtoken::encode(&header, claims, key).expect("an Ed25519 key signs")
}

fn now() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    change_at: usize,
    change_to: char,
    /// Offsets from now, bounded so the claims stay positive.
    nbf_offset: i16,
    exp_offset: i16,
    kid: &'a str,
    iss: &'a str,
    aud: &'a str,
    /// Last, so it takes the rest of the input.
    text: &'a str,
}

fuzz_target!(|i: Input<'_>| {
    let keys = &*KEYS;

    // Arbitrary text: no key id unless the header is EdDSA with a kid; never accepted unless
    // it is exactly the token the key signed (EdDSA signatures and base64url are canonical).
    let _ = jwt::key_id(i.text);
    if jwt::decode::<Value>(i.text, &keys.decoding, ISS, AUD).is_ok() {
        assert_eq!(
            i.text, keys.token,
            "a token the key did not sign was accepted"
        );
    }

    // The signed token with one character changed is refused.
    let mut chars: Vec<char> = keys.token.chars().collect();
    let at = i.change_at % chars.len();
    if chars[at] != i.change_to {
        chars[at] = i.change_to;
        let changed: String = chars.into_iter().collect();
        assert!(
            jwt::decode::<Value>(&changed, &keys.decoding, ISS, AUD).is_err(),
            "a changed token was accepted: {changed}"
        );
    }

    // Fresh tokens with fuzzed kid and claims: the kid comes back; the claims are accepted
    // exactly when issuer, audience and window fit (boundaries within a minute are skipped,
    // the clock moves while this runs).
    let t = now();
    let (nbf, exp) = (t + i64::from(i.nbf_offset), t + i64::from(i.exp_offset));
    let claims = json!({ "iss": i.iss, "aud": i.aud, "sub": "u1", "nbf": nbf, "exp": exp });
    let token = sign(&keys.encoding, Some(i.kid), &claims);
    assert_eq!(jwt::key_id(&token), Ok(i.kid.to_string()));
    let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
    let near = |edge: i64| (edge - t).abs() <= leeway + 60;
    if near(nbf) || near(exp) {
        return;
    }
    let expired = exp < t;
    let in_window = nbf < t && !expired;
    let got = jwt::decode::<Value>(&token, &keys.decoding, ISS, AUD);
    if i.iss == ISS && i.aud == AUD && in_window {
        assert_eq!(got, Ok(claims));
    } else {
        assert!(
            got.is_err(),
            "accepted iss={:?} aud={:?} nbf={nbf} exp={exp} now={t}",
            i.iss,
            i.aud
        );
        if expired && got != Err(TokenError::Expired) {
            // Expiry is reported as such only once the rest passes; anything else is Invalid.
            assert_eq!(got, Err(TokenError::Invalid));
        }
    }
});
