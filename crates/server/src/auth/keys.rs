//! The EdDSA key ring that signs and verifies access tokens, shared by all instances through the
//! database. The newest unretired key signs; retired keys keep verifying until every token they
//! signed has expired. Instances reload the ring when they meet an unknown `kid`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::Serialize;
use shopkeep_domain::Timestamp;
use shopkeep_store::{Db, tokens};
use utoipa::ToSchema;

use crate::crypto::Sealer;

/// A public key in JWKS form (RFC 8037 OKP).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: &'static str,
    /// Always `Ed25519`.
    pub crv: &'static str,
    /// Always `EdDSA`.
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
    /// Key id.
    pub kid: String,
    /// base64url public key.
    pub x: String,
}

/// `/.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Jwks {
    /// Every key that may have signed a live token.
    pub keys: Vec<Jwk>,
}

struct Ring {
    signing: (String, Arc<EncodingKey>),
    verifying: HashMap<String, Arc<DecodingKey>>,
    jwks: Jwks,
    loaded_at: Instant,
}

/// Signing and verification keys.
pub struct KeyRing {
    db: Db,
    sealer: Sealer,
    token_ttl: Duration,
    ring: RwLock<Ring>,
}

/// A fresh Ed25519 key: (kid, PKCS#8 private key, raw public key).
fn generate() -> anyhow::Result<(String, Vec<u8>, Vec<u8>)> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow!("cannot generate an Ed25519 key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| anyhow!("generated key rejected"))?;
    let public = pair.public_key().as_ref().to_vec();
    let kid = format!(
        "k{}",
        &URL_SAFE_NO_PAD.encode(crate::crypto::sha256(&public))[..16]
    );
    Ok((kid, pkcs8.as_ref().to_vec(), public))
}

impl KeyRing {
    /// Loads the ring, creating the first key when the database has none.
    pub async fn load(db: Db, sealer: Sealer, token_ttl: Duration) -> anyhow::Result<KeyRing> {
        let (kid, private, public) = generate()?;
        let sealed = sealer.seal(&private, kid.as_bytes());
        if tokens::insert_first_signing_key(&db, &kid, &sealed, &public).await? {
            tracing::info!(kid, "created the first token signing key");
        }
        let ring = Self::read(&db, &sealer, token_ttl).await?;
        Ok(KeyRing {
            db,
            sealer,
            token_ttl,
            ring: RwLock::new(ring),
        })
    }

    async fn read(db: &Db, sealer: &Sealer, ttl: Duration) -> anyhow::Result<Ring> {
        // A key retired longer ago than a token lives cannot have signed a live token.
        let horizon = Timestamp(
            Timestamp::now().0 - i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX) - 60_000_000,
        );
        let rows = tokens::signing_keys(db, horizon).await?;
        let mut verifying = HashMap::new();
        let mut keys = Vec::new();
        let mut signing = None;
        for row in &rows {
            verifying.insert(
                row.kid.clone(),
                Arc::new(DecodingKey::from_ed_der(&row.public_key)),
            );
            keys.push(Jwk {
                kty: "OKP",
                crv: "Ed25519",
                alg: "EdDSA",
                use_: "sig",
                kid: row.kid.clone(),
                x: URL_SAFE_NO_PAD.encode(&row.public_key),
            });
            if row.retired_at.is_none() {
                let private = sealer
                    .open(&row.private_key, row.kid.as_bytes())
                    .with_context(|| {
                        format!(
                            "opening signing key {}: is secret_key the one that sealed it?",
                            row.kid
                        )
                    })?;
                signing = Some((
                    row.kid.clone(),
                    Arc::new(EncodingKey::from_ed_der(&private)),
                ));
            }
        }
        let signing = signing.context("no active token signing key")?;
        Ok(Ring {
            signing,
            verifying,
            jwks: Jwks { keys },
            loaded_at: Instant::now(),
        })
    }

    /// Replaces the signing key; the old one keeps verifying until its tokens expire.
    pub async fn rotate(&self) -> anyhow::Result<String> {
        let (kid, private, public) = generate()?;
        let sealed = self.sealer.seal(&private, kid.as_bytes());
        tokens::rotate_signing_key(&self.db, &kid, &sealed, &public).await?;
        self.reload().await?;
        tracing::info!(kid, "rotated the token signing key");
        Ok(kid)
    }

    /// Re-reads the ring from the database.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let ring = Self::read(&self.db, &self.sealer, self.token_ttl).await?;
        *self.ring.write().expect("key ring lock") = ring;
        Ok(())
    }

    /// Re-reads the ring every `every` until `stop` fires, so a rotation made by another
    /// instance or the CLI switches the signing key everywhere.
    pub async fn run(self: Arc<Self>, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.reload().await {
                tracing::warn!(error = format!("{e:#}"), "reloading the key ring failed");
            }
        }
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> (String, Arc<EncodingKey>) {
        self.ring.read().expect("key ring lock").signing.clone()
    }

    /// The verification key for `kid`; reloads once (at most every 5 s) when it is unknown,
    /// so a key another instance rotated in is picked up.
    pub async fn verifying_key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        let stale = {
            let ring = self.ring.read().expect("key ring lock");
            if let Some(k) = ring.verifying.get(kid) {
                return Some(k.clone());
            }
            ring.loaded_at.elapsed() > Duration::from_secs(5)
        };
        if stale && let Err(e) = self.reload().await {
            tracing::warn!(error = format!("{e:#}"), "reloading the key ring failed");
        }
        self.ring
            .read()
            .expect("key ring lock")
            .verifying
            .get(kid)
            .cloned()
    }

    /// The public keys as JWKS.
    pub fn jwks(&self) -> Jwks {
        self.ring.read().expect("key ring lock").jwks.clone()
    }
}
