//! Small cryptographic helpers over aws-lc-rs (already linked for TLS): hashing, sealing
//! secrets at rest, random tokens.

use anyhow::{Context, anyhow};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use shopkeep_domain::Secret;

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

/// `n` random bytes from the system generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).expect("the system random generator works");
    b
}

/// A random token: base64url of `n` random bytes.
pub fn random_token(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// Seals and opens values at rest with AES-256-GCM: a fresh random nonce per value, and
/// associated data (e.g. the row id) binding the ciphertext to its row.
pub struct Sealer {
    key: LessSafeKey,
}

/// Version byte in front of every sealed value, so the scheme can change later.
const SEALED_V1: u8 = 1;

impl Sealer {
    /// A sealer over a 32-byte key.
    pub fn new(key: &Secret<Vec<u8>>) -> anyhow::Result<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, key.expose())
            .map_err(|_| anyhow!("the secret key must be 32 bytes"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// `version || nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] =
            random_bytes(NONCE_LEN).try_into().expect("nonce length");
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad),
                &mut buf,
            )
            .expect("AES-GCM sealing does not fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&buf);
        out
    }

    /// Opens a sealed value; fails when the key, the associated data or the bytes differ.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
        let (version, rest) = sealed.split_first().context("empty sealed value")?;
        if *version != SEALED_V1 || rest.len() < NONCE_LEN {
            anyhow::bail!("unknown sealed value format");
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow!("bad nonce"))?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| anyhow!("cannot open a sealed value: wrong secret key or damaged data"))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_associated_data() {
        let s = Sealer::new(&Secret::new(vec![7; 32])).unwrap();
        let sealed = s.seal(b"private key", b"kid-1");
        assert_ne!(&sealed[13..], b"private key");
        assert_eq!(s.open(&sealed, b"kid-1").unwrap(), b"private key");
        assert!(s.open(&sealed, b"kid-2").is_err());
        let other = Sealer::new(&Secret::new(vec![8; 32])).unwrap();
        assert!(other.open(&sealed, b"kid-1").is_err());
        assert!(s.open(&[], b"").is_err() && s.open(&[1, 2, 3], b"").is_err());
        assert_ne!(
            s.seal(b"x", b""),
            s.seal(b"x", b""),
            "fresh nonce per value"
        );
    }
}
