//! Signed webhooks: verifying what Shopify, Stripe and Printify send, signing what shopkeep
//! sends (Standard Webhooks), and the rules for outbound endpoints (events, URLs, SSRF).
//!
//! Every verifier takes the raw body bytes and compares signatures in constant time.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

mod endpoint;
mod events;
pub mod payload;
pub mod printify;
pub mod shopify;
mod ssrf;
pub mod standard;
pub mod stripe;

pub use endpoint::{parse_custom_headers, parse_endpoint_url};
pub use events::{EventType, filter_matches, parse_filters};
pub use ssrf::{ip_allowed, is_forbidden_ip, literal_ip, parse_networks};

/// Why a signed request was refused (always answered 401 by the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The named header (or query parameter) is absent or empty.
    Missing(&'static str),
    /// The signature data cannot be read; the text says what is wrong.
    Malformed(&'static str),
    /// Well formed, but no signature matches any configured secret.
    Mismatch,
    /// Authentic, but signed too long ago or in the future (`now - t`, in seconds).
    Stale {
        /// Seconds between the signed timestamp and now; negative means the future.
        skew_secs: i64,
    },
    /// No secret is configured, so nothing can be verified.
    NoSecret,
}

impl SignatureError {
    /// Stable machine code for logs and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "missing_signature",
            SignatureError::Malformed(_) => "malformed_signature",
            SignatureError::Mismatch => "bad_signature",
            SignatureError::Stale { .. } => "stale_timestamp",
            SignatureError::NoSecret => "not_configured",
        }
    }
}

// Only static text and the skew: never a secret, a received or an expected signature.
impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Missing(name) => write!(f, "the request has no {name}"),
            // Each reason is a whole clause (`the signature is not hex`).
            SignatureError::Malformed(what) => f.write_str(what),
            SignatureError::Mismatch => f.write_str("the signature does not match"),
            SignatureError::Stale { skew_secs } => write!(
                f,
                "the signed timestamp is {skew_secs} seconds away from now, outside the tolerance"
            ),
            SignatureError::NoSecret => f.write_str("no signing secret is configured"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// Outbound delivery retry schedule (Svix's): attempt 1 is immediate; after attempt n failed,
/// wait `RETRY_SCHEDULE[n - 1]` (see [`next_retry`]).
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Deliveries per message: the immediate one plus one per schedule entry.
pub const MAX_ATTEMPTS: i32 = 8;

const _: () = assert!(MAX_ATTEMPTS as usize == RETRY_SCHEDULE.len() + 1);

/// How long to wait after attempt `failed_attempt` (1-based) failed; `None` once exhausted.
pub fn next_retry(failed_attempt: i32) -> Option<Duration> {
    let index = usize::try_from(failed_attempt.checked_sub(1)?).ok()?;
    RETRY_SCHEDULE.get(index).copied()
}

/// Length of an HMAC-SHA256 tag in bytes.
const TAG_LEN: usize = 32;

/// An HMAC-SHA256 keyed with `key` that has absorbed `parts` in order.
fn keyed(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC hashes long keys and pads short ones, so no key length is refused.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The HMAC-SHA256 tag of `parts` under `key`.
fn tag(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    keyed(key, parts).finalize().into_bytes().to_vec()
}

/// Whether any candidate tag is the MAC of `parts` under any key; each check is constant time.
fn matches_any(keys: &[&[u8]], parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    keys.iter().any(|key| {
        let mac = keyed(key, parts);
        candidates
            .iter()
            .any(|c| mac.clone().verify_slice(c).is_ok())
    })
}

/// The usable secrets. An empty secret is a configuration mistake that anyone could sign with,
/// so it counts as no secret at all.
fn configured<'a>(
    keys: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<&'a [u8]>, SignatureError> {
    let keys: Vec<&[u8]> = keys.into_iter().filter(|k| !k.is_empty()).collect();
    if keys.is_empty() {
        Err(SignatureError::NoSecret)
    } else {
        Ok(keys)
    }
}

/// The trimmed header value; absent and blank are the same refusal.
fn present<'a>(name: &'static str, value: Option<&'a str>) -> Result<&'a str, SignatureError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(SignatureError::Missing(name)),
    }
}

/// Unix seconds written as plain decimal digits.
fn parse_unix(s: &str) -> Result<i64, SignatureError> {
    let bad = SignatureError::Malformed("the timestamp is not unix seconds");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    s.parse().map_err(|_| bad)
}

/// Refuses a timestamp more than `tolerance_secs` away from now, in either direction.
fn fresh(t: i64, now_secs: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
    // Saturating, so hostile timestamps near i64::MIN/MAX cannot overflow.
    let skew_secs = now_secs.saturating_sub(t);
    if skew_secs.unsigned_abs() > tolerance_secs.max(0).unsigned_abs() {
        Err(SignatureError::Stale { skew_secs })
    } else {
        Ok(())
    }
}

/// Decodes a base64 tag; refuses anything that is not exactly one HMAC-SHA256 tag.
fn decode_b64_tag(s: &str) -> Result<Vec<u8>, SignatureError> {
    let raw = B64
        .decode(s)
        .map_err(|_| SignatureError::Malformed("the signature is not base64"))?;
    exact_len(raw)
}

/// Decodes a hex tag; refuses anything that is not exactly one HMAC-SHA256 tag.
fn decode_hex_tag(s: &str) -> Result<Vec<u8>, SignatureError> {
    let raw = hex::decode(s).map_err(|_| SignatureError::Malformed("the signature is not hex"))?;
    exact_len(raw)
}

/// Passes a decoded tag of the HMAC-SHA256 length.
fn exact_len(raw: Vec<u8>) -> Result<Vec<u8>, SignatureError> {
    if raw.len() == TAG_LEN {
        Ok(raw)
    } else {
        Err(SignatureError::Malformed(
            "the signature has the wrong length",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_a_stable_code_and_a_sentence_without_secrets() {
        let cases = [
            (
                SignatureError::Missing("stripe-signature"),
                "missing_signature",
            ),
            (
                SignatureError::Malformed("the signature is not hex"),
                "malformed_signature",
            ),
            (SignatureError::Mismatch, "bad_signature"),
            (SignatureError::Stale { skew_secs: -301 }, "stale_timestamp"),
            (SignatureError::NoSecret, "not_configured"),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code);
            assert!(!e.to_string().is_empty());
        }
        assert!(
            SignatureError::Stale { skew_secs: 301 }
                .to_string()
                .contains("301")
        );
    }

    #[test]
    fn the_retry_schedule_is_svixs() {
        let secs = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        for (n, s) in (1..).zip(secs) {
            assert_eq!(next_retry(n), Some(Duration::from_secs(s)), "attempt {n}");
        }
        assert_eq!(next_retry(MAX_ATTEMPTS), None);
        assert_eq!(next_retry(0), None);
        assert_eq!(next_retry(-1), None);
        assert_eq!(next_retry(i32::MIN), None);
        assert_eq!(next_retry(i32::MAX), None);
    }

    #[test]
    fn tolerance_is_inclusive_and_survives_extreme_timestamps() {
        assert_eq!(fresh(1000, 1300, 300), Ok(()));
        assert_eq!(fresh(1000, 700, 300), Ok(()));
        assert_eq!(
            fresh(1000, 1301, 300),
            Err(SignatureError::Stale { skew_secs: 301 })
        );
        assert_eq!(
            fresh(1000, 699, 300),
            Err(SignatureError::Stale { skew_secs: -301 })
        );
        assert!(fresh(i64::MAX, i64::MIN, 300).is_err());
        assert!(fresh(i64::MIN, i64::MAX, i64::MAX).is_ok());
        assert!(fresh(1000, 1001, -5).is_err());
    }

    #[test]
    fn timestamps_are_plain_digits() {
        assert_eq!(parse_unix("1614265330"), Ok(1_614_265_330));
        for bad in ["", "+1", "-1", "1.5", " 1", "99999999999999999999", "１"] {
            assert!(parse_unix(bad).is_err(), "{bad:?}");
        }
    }
}
