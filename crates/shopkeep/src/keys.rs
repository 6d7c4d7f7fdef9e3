//! Keys shopkeep generates for itself when the operator does not provide them.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::Path;

use anyhow::{Context, bail};
use shopkeep_domain::Secret;

/// Reads `dir/name` (hex), or creates it once with `len` random bytes and mode 0600.
///
/// Two processes starting together agree on one key: the new key is written and synced to a
/// private temporary file first, then hard-linked into place, which fails if a key already exists;
/// the loser reads the winner's complete file.
pub fn load_or_generate(dir: &Path, name: &str, len: usize) -> anyhow::Result<Secret<Vec<u8>>> {
    let path = dir.join(name);
    if path.exists() {
        return read_key(&path, len);
    }
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    let tmp = dir.join(format!(".{name}.{}.{}", std::process::id(), hex(&nonce)));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(hex(&bytes).as_bytes())
                .and_then(|()| f.sync_all())
        })
        .with_context(|| format!("writing a new key file in {}", dir.display()));
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, &path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating the key file {}", path.display())),
    });
    let _ = std::fs::remove_file(&tmp);
    if linked? {
        tracing::info!(path = %path.display(), "generated a new key");
        Ok(Secret::new(bytes))
    } else {
        read_key(&path, len)
    }
}

fn read_key(path: &Path, len: usize) -> anyhow::Result<Secret<Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "key file is readable by others; chmod 600 it");
        }
    }
    match unhex(text.trim()) {
        Some(b) if b.len() == len => Ok(Secret::new(b)),
        _ => bail!(
            "the key file {} is damaged: expected {} hexadecimal characters",
            path.display(),
            len * 2
        ),
    }
}

/// The instance secret key: `secret_key` from the configuration, or `data_dir/secret.key`.
pub fn secret_key(config: &crate::Config) -> anyhow::Result<Secret<Vec<u8>>> {
    match &config.secret_key {
        Some(hex) => Ok(Secret::new(
            unhex(hex.expose()).context("secret_key is not hexadecimal")?,
        )),
        None => load_or_generate(&config.data_dir, "secret.key", 32),
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex, or `None` when the text is not even-length hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_generated_once_with_private_permissions_and_reused() {
        let dir = tempfile_dir();
        let a = load_or_generate(&dir, "secret.key", 32).unwrap();
        let b = load_or_generate(&dir, "secret.key", 32).unwrap();
        assert_eq!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.join("secret.key"), "zz").unwrap();
        let err = load_or_generate(&dir, "secret.key", 32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("damaged"), "{err}");
        // Racing starters all end with the same key.
        std::fs::remove_file(dir.join("secret.key")).unwrap();
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        load_or_generate(&dir, "secret.key", 32)
                            .unwrap()
                            .expose()
                            .clone()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "shopkeep-keys-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            unhex(&hex(&[0, 1, 254, 255])).unwrap(),
            vec![0, 1, 254, 255]
        );
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
