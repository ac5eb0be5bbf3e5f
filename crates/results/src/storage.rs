//! Where cache entries live: the [`CacheStore`] trait and [`DirStore`], its
//! implementation in a directory (one per data directory, shared by every
//! `hangar run` of the machine and safe for concurrent ones).
//!
//! An entry is published in two steps that each are atomic on one filesystem:
//! the finished upload is renamed to `blobs/ID`, then its metadata is linked to
//! `entries/NAME.json`, where NAME is a digest of (repository, scope, version,
//! key). The link fails when the name exists, which is what makes entries
//! immutable even between processes; a reader that finds metadata without its
//! blob (a crash between the steps, a file removed by hand) skips it.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One saved cache entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheEntry {
    /// Positive, unique: the `entry_id` / `cacheId` the clients see.
    pub id: u64,
    pub repository: String,
    /// The ref it was saved from (`refs/heads/main`).
    pub scope: String,
    pub key: String,
    /// The client's hash of paths and compression: entries only match their own version.
    pub version: String,
    pub size: u64,
    /// The blob as uploaded, part by part (one part, or one per Azure block),
    /// each with its SHA-256: checked while it is served. Digests are taken
    /// while the bytes arrive, so committing a block list costs no second
    /// read of the archive.
    #[serde(default)]
    pub parts: Vec<Part>,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    pub last_used_ms: i64,
}

/// A run of bytes of a blob and its digest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Part {
    pub size: u64,
    pub sha256: String,
}

impl CacheEntry {
    /// The name that makes (repository, scope, version, key) unique.
    pub fn slot(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.repository, &self.scope, &self.version, &self.key] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// Storage of cache entries. Matching, scoping and eviction are the service's;
/// a store only keeps entries and their bytes. Calls are blocking.
pub trait CacheStore: Send + Sync + std::fmt::Debug {
    /// A directory on the same filesystem as the blobs, for uploads in progress.
    fn staging_dir(&self) -> &Path;
    /// Makes `parts` (a finished upload's directory of parts in the staging
    /// directory) the bytes of `entry`. `Ok(false)`: an entry with the same
    /// slot exists (the upload is removed).
    fn publish(&self, entry: &CacheEntry, parts: &Path) -> io::Result<bool>;
    /// Every entry of `repository`.
    fn entries(&self, repository: &str) -> io::Result<Vec<CacheEntry>>;
    /// Every repository's entries (for eviction).
    fn all_entries(&self) -> io::Result<Vec<CacheEntry>>;
    /// The directory holding an entry's parts (`0`, `1`, ...).
    fn blob_path(&self, entry: &CacheEntry) -> PathBuf;
    /// Records a use (eviction removes the least recently used first).
    fn touch(&self, entry: &CacheEntry, now_ms: i64) -> io::Result<()>;
    fn remove(&self, entry: &CacheEntry) -> io::Result<()>;
}

/// [`CacheStore`] in a directory: `entries/*.json`, `blobs/ID`, `staging/`.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    staging: PathBuf,
}

impl DirStore {
    pub fn open(root: &Path) -> io::Result<DirStore> {
        for d in ["entries", "blobs", "staging"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(DirStore {
            root: root.to_path_buf(),
            staging: root.join("staging"),
        })
    }

    fn entry_path(&self, slot: &str) -> PathBuf {
        self.root.join("entries").join(format!("{slot}.json"))
    }

    fn read_all(&self) -> io::Result<Vec<CacheEntry>> {
        let mut out = Vec::new();
        for f in std::fs::read_dir(self.root.join("entries"))? {
            let f = f?;
            let name = f.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let bytes = match std::fs::read(f.path()) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match serde_json::from_slice::<CacheEntry>(&bytes) {
                Ok(e) if self.blob_path(&e).is_dir() => out.push(e),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(message = "Unreadable cache entry skipped.", file = %f.path().display(), error = %e);
                }
            }
        }
        Ok(out)
    }
}

impl CacheStore for DirStore {
    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    fn publish(&self, entry: &CacheEntry, parts: &Path) -> io::Result<bool> {
        let slot = entry.slot();
        let final_meta = self.entry_path(&slot);
        if final_meta.exists() {
            let _ = std::fs::remove_dir_all(parts);
            return Ok(false);
        }
        let blob = self.blob_path(entry);
        std::fs::rename(parts, &blob)?;
        let tmp = self
            .root
            .join("entries")
            .join(format!(".{slot}.{}.tmp", entry.id));
        std::fs::write(&tmp, serde_json::to_vec(entry)?)?;
        // A hard link fails when the target exists: the first writer wins, and
        // a reader never sees a half-written metadata file.
        let linked = std::fs::hard_link(&tmp, &final_meta);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_dir_all(&blob);
                Ok(false)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&blob);
                Err(e)
            }
        }
    }

    fn entries(&self, repository: &str) -> io::Result<Vec<CacheEntry>> {
        Ok(self
            .read_all()?
            .into_iter()
            .filter(|e| e.repository == repository)
            .collect())
    }

    fn all_entries(&self) -> io::Result<Vec<CacheEntry>> {
        self.read_all()
    }

    fn blob_path(&self, entry: &CacheEntry) -> PathBuf {
        self.root.join("blobs").join(entry.id.to_string())
    }

    fn touch(&self, entry: &CacheEntry, now_ms: i64) -> io::Result<()> {
        let slot = entry.slot();
        let mut e = entry.clone();
        e.last_used_ms = now_ms;
        let tmp = self
            .root
            .join("entries")
            .join(format!(".{slot}.{}.touch", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(&e)?)?;
        // Only the use time changes; rename replaces the file atomically.
        std::fs::rename(&tmp, self.entry_path(&slot))
    }

    fn remove(&self, entry: &CacheEntry) -> io::Result<()> {
        // Metadata first: an entry is never visible without its bytes.
        match std::fs::remove_file(self.entry_path(&entry.slot())) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match std::fs::remove_dir_all(self.blob_path(entry)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, key: &str) -> CacheEntry {
        CacheEntry {
            id,
            repository: "o/r".into(),
            scope: "refs/heads/main".into(),
            key: key.into(),
            version: "v".into(),
            size: 3,
            parts: Vec::new(),
            created_ms: 1,
            last_used_ms: 1,
        }
    }

    fn upload(s: &DirStore, name: &str, bytes: &[u8]) -> PathBuf {
        let d = s.staging_dir().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("0"), bytes).unwrap();
        d
    }

    #[test]
    fn entries_are_immutable_and_never_visible_without_bytes() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open(d.path()).unwrap();
        let f = upload(&s, "up1", b"abc");
        assert!(s.publish(&entry(1, "k"), &f).unwrap());
        let f2 = upload(&s, "up2", b"xyz");
        assert!(!s.publish(&entry(2, "k"), &f2).unwrap(), "same slot twice");
        assert!(!f2.exists(), "the losing upload is removed");
        let all = s.entries("o/r").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            std::fs::read(s.blob_path(&all[0]).join("0")).unwrap(),
            b"abc"
        );
        // Bytes gone (by hand, or a crash): the entry is not offered.
        std::fs::remove_dir_all(s.blob_path(&all[0])).unwrap();
        assert!(s.entries("o/r").unwrap().is_empty());
        // A corrupt metadata file is skipped, not fatal.
        std::fs::write(d.path().join("entries/bad.json"), b"{").unwrap();
        assert!(s.all_entries().unwrap().is_empty());
    }

    #[test]
    fn touch_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open(d.path()).unwrap();
        let f = upload(&s, "up", b"abc");
        let e = entry(7, "k");
        s.publish(&e, &f).unwrap();
        s.touch(&e, 99).unwrap();
        assert_eq!(s.entries("o/r").unwrap()[0].last_used_ms, 99);
        s.remove(&e).unwrap();
        assert!(s.all_entries().unwrap().is_empty());
        assert!(!s.blob_path(&e).exists());
    }
}
