//! Encryption at rest for secrets: XChaCha20-Poly1305 with a key file created on
//! first start (mode 0600). Losing the key file makes stored secrets unreadable,
//! which is the point: a copied database alone reveals nothing.

use std::path::Path;

use anyhow::{Context, bail};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    pub fn load_or_create(path: &Path) -> anyhow::Result<SecretBox> {
        let key = if path.exists() {
            let key = std::fs::read(path)
                .with_context(|| format!("reading key file {}", path.display()))?;
            if key.len() != 32 {
                bail!(
                    "key file {} is corrupt: expected 32 bytes, found {}",
                    path.display(),
                    key.len()
                );
            }
            key
        } else {
            let mut key = vec![0u8; 32];
            getrandom::getrandom(&mut key).context("no randomness for the secret key")?;
            write_private(path, &key)?;
            key
        };
        Ok(SecretBox {
            cipher: XChaCha20Poly1305::new_from_slice(&key).expect("32-byte key"),
        })
    }

    /// nonce (24 bytes) followed by the ciphertext.
    pub fn seal(&self, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; 24];
        getrandom::getrandom(&mut nonce).context("no randomness for a nonce")?;
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < 24 {
            bail!("stored secret is truncated");
        }
        let (nonce, ct) = sealed.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| {
                anyhow::anyhow!("a stored secret does not decrypt: was the key file replaced?")
            })
    }
}

pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// SHA-256 hex, used for API tokens (high-entropy, so no slow KDF is needed) and blobs.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn random_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).context("no randomness for a token")?;
    Ok(format!("hgr_{}", hex::encode(b)))
}

/// The prefix of an agent's credential (a token's is `hgr_`): the server
/// tells the two apart before looking either up.
pub const CREDENTIAL_PREFIX: &str = "hga_";

/// A registered agent's credential: 256 random bits, kept only as its hash.
pub fn random_credential() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).context("no randomness for an agent credential")?;
    Ok(format!("{CREDENTIAL_PREFIX}{}", hex::encode(b)))
}
