//! Password hashing: bcrypt (cost 12) by default or argon2id, off the async runtime, with
//! bounded concurrency. The hash string says which algorithm made it, so a login re-hashes
//! when the policy changed.

use std::sync::Arc;

use anyhow::anyhow;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;

/// Which algorithm new hashes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPolicy {
    /// bcrypt at this cost (4-31).
    Bcrypt {
        /// Work factor.
        cost: u32,
    },
    /// argon2id with the crate's recommended parameters.
    Argon2id,
}

/// bcrypt reads at most 72 bytes, and the `bcrypt` crate counts the NUL it appends among them, so
/// it takes at most 71 bytes of password (72 is refused as truncation). Longer passwords are
/// hashed with argon2id instead of being truncated or refused.
const BCRYPT_MAX_BYTES: usize = 71;

/// Outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password matched.
    pub ok: bool,
    /// It matched, but the stored hash was made under another policy: store a new hash.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords on blocking threads, at most `concurrency` at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    policy: HashPolicy,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the username is unknown so that the
    /// answer takes as long as for a known one. Computed in the background at start so that
    /// start-up does not wait a whole hash.
    dummy: Arc<tokio::sync::OnceCell<String>>,
}

impl PasswordHasher {
    /// A hasher with a policy and a concurrency bound (usually the number of cores).
    pub async fn new(policy: HashPolicy, concurrency: usize) -> anyhow::Result<Self> {
        let hasher = Self {
            policy,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::new(tokio::sync::OnceCell::new()),
        };
        let warm = hasher.clone();
        tokio::spawn(async move {
            if let Err(e) = warm.dummy_hash().await {
                tracing::warn!(error = %e, "precomputing the dummy hash failed");
            }
        });
        Ok(hasher)
    }

    async fn dummy_hash(&self) -> anyhow::Result<String> {
        let policy = self.policy;
        self.dummy
            .get_or_try_init(|| async move {
                let random = crate::crypto::random_token(24);
                tokio::task::spawn_blocking(move || hash_with(policy, &random)).await?
            })
            .await
            .cloned()
    }

    /// Hashes a new password under the current policy.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let (policy, pw) = (self.policy, password.to_string());
        tokio::task::spawn_blocking(move || hash_with(policy, &pw)).await?
    }

    /// Verifies against a stored hash, or against the dummy when there is none (unknown user).
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> anyhow::Result<Verified> {
        let _permit = self.permits.acquire().await?;
        let known = stored.is_some();
        let hash = match stored {
            Some(h) => h.to_string(),
            None => self.dummy_hash().await?,
        };
        let (policy, pw) = (self.policy, password.to_string());
        let (ok, needs_rehash) = tokio::task::spawn_blocking(move || {
            let ok = verify_with(&pw, &hash);
            (ok, ok && outdated(policy, &pw, &hash))
        })
        .await?;
        Ok(Verified {
            ok: ok && known,
            needs_rehash,
        })
    }
}

fn hash_with(policy: HashPolicy, password: &str) -> anyhow::Result<String> {
    match policy {
        HashPolicy::Bcrypt { cost } if password.len() <= BCRYPT_MAX_BYTES => {
            bcrypt::non_truncating_hash(password, cost).map_err(|e| anyhow!("bcrypt: {e}"))
        }
        _ => Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow!("argon2: {e}")),
    }
}

fn verify_with(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        PasswordHash::new(hash).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    } else {
        bcrypt::non_truncating_verify(password, hash).unwrap_or(false)
    }
}

/// Would the current policy have produced a different kind of hash?
fn outdated(policy: HashPolicy, password: &str, hash: &str) -> bool {
    match policy {
        HashPolicy::Bcrypt { cost } if password.len() <= BCRYPT_MAX_BYTES => {
            let stored_cost = hash.split('$').nth(2).and_then(|c| c.parse::<u32>().ok());
            !hash.starts_with("$2") || stored_cost != Some(cost)
        }
        _ => {
            let current = Argon2::default()
                .hash_password(b"probe")
                .map(|h| h.to_string())
                .unwrap_or_default();
            let params = |h: &str| h.split('$').take(4).collect::<Vec<_>>().join("$");
            params(hash) != params(&current)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_says_its_algorithm_and_verifies_only_the_right_password() {
        let h = PasswordHasher::new(HashPolicy::Bcrypt { cost: 4 }, 2)
            .await
            .unwrap();
        let stored = h.hash("correct horse battery").await.unwrap();
        assert!(stored.starts_with("$2b$04$"), "{stored}");
        assert_eq!(
            h.verify("correct horse battery", Some(&stored))
                .await
                .unwrap(),
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        assert!(
            !h.verify("wrong horse battery", Some(&stored))
                .await
                .unwrap()
                .ok
        );
        assert!(
            !h.verify("anything", None).await.unwrap().ok,
            "unknown users never verify"
        );
        assert!(!h.verify("x", Some("not a hash")).await.unwrap().ok);
    }

    #[tokio::test]
    async fn a_policy_change_asks_for_a_rehash_on_the_next_login() {
        let bcrypt4 = PasswordHasher::new(HashPolicy::Bcrypt { cost: 4 }, 1)
            .await
            .unwrap();
        let bcrypt5 = PasswordHasher::new(HashPolicy::Bcrypt { cost: 5 }, 1)
            .await
            .unwrap();
        let argon = PasswordHasher::new(HashPolicy::Argon2id, 1).await.unwrap();
        let old = bcrypt4.hash("correct horse battery").await.unwrap();
        assert!(
            bcrypt5
                .verify("correct horse battery", Some(&old))
                .await
                .unwrap()
                .needs_rehash
        );
        let v = argon
            .verify("correct horse battery", Some(&old))
            .await
            .unwrap();
        assert!(v.ok && v.needs_rehash);
        let a = argon.hash("correct horse battery").await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert!(
            !argon
                .verify("correct horse battery", Some(&a))
                .await
                .unwrap()
                .needs_rehash
        );
        assert!(
            bcrypt4
                .verify("correct horse battery", Some(&a))
                .await
                .unwrap()
                .needs_rehash
        );
    }

    #[tokio::test]
    async fn passwords_longer_than_bcrypt_reads_are_not_truncated() {
        let h = PasswordHasher::new(HashPolicy::Bcrypt { cost: 4 }, 1)
            .await
            .unwrap();
        let long = "a".repeat(100);
        let stored = h.hash(&long).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(h.verify(&long, Some(&stored)).await.unwrap().ok);
        assert!(!h.verify(&"a".repeat(99), Some(&stored)).await.unwrap().ok);
        assert!(!h.verify(&long, Some(&stored)).await.unwrap().needs_rehash);
    }

    #[tokio::test]
    async fn passwords_at_the_bcrypt_limit_hash_and_verify() {
        let h = PasswordHasher::new(HashPolicy::Bcrypt { cost: 4 }, 1)
            .await
            .unwrap();
        // 71 bytes is the longest bcrypt takes; 72 and 73 (also in multi-byte characters) go to
        // argon2id. Each verifies, and is not mistaken for the same password one byte shorter.
        for (pw, kind) in [
            ("a".repeat(71), "$2"),
            ("a".repeat(72), "$argon2id$"),
            ("a".repeat(73), "$argon2id$"),
            (format!("{}a", "é".repeat(35)), "$2"),
            ("é".repeat(36), "$argon2id$"),
        ] {
            let stored = h.hash(&pw).await.unwrap();
            assert!(stored.starts_with(kind), "{} bytes: {stored}", pw.len());
            let v = h.verify(&pw, Some(&stored)).await.unwrap();
            assert!(v.ok && !v.needs_rehash, "{} bytes", pw.len());
            let shorter = &pw[..pw.len() - pw.chars().last().unwrap().len_utf8()];
            assert!(!h.verify(shorter, Some(&stored)).await.unwrap().ok);
        }
    }
}
