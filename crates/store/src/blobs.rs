//! Content-addressed blob files: `blobs/sha256/<2 hex>/<64 hex>`. Writes go to a
//! temporary file first and are renamed, so a crash never leaves a half blob under
//! its final name.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    pub fn new(root: PathBuf) -> BlobDir {
        BlobDir { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, digest: &str) -> anyhow::Result<PathBuf> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("not a sha256 digest: {digest:?}");
        }
        Ok(self.root.join("sha256").join(&digest[..2]).join(digest))
    }

    pub fn put(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let digest = crate::crypto::sha256_hex(bytes);
        let path = self.path_of(&digest)?;
        if path.exists() {
            return Ok(digest);
        }
        let dir = path.parent().expect("blob path has a parent");
        crate::fsmode::create_private_dir(dir)?;
        let tmp = dir.join(format!(".{digest}.{}.tmp", std::process::id()));
        crate::fsmode::write_private_file(&tmp, bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
        Ok(digest)
    }

    pub fn get(&self, digest: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.path_of(digest)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Deletes a blob; a blob already gone is no error.
    pub fn remove(&self, digest: &str) -> anyhow::Result<()> {
        let path = self.path_of(digest)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }
}
