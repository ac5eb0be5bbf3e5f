//! The cache service's entries in the server's store: rows in SQLite (through
//! `Store`), bytes under the store's blob directory (`blobs/results/ID/`,
//! one file per part). Every agent's jobs share them.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hangar_results::{CacheEntry, CacheStore, Part};
use hangar_store::{ResultsCacheRow, Store};

pub struct StoreCache {
    store: Arc<dyn Store>,
    root: PathBuf,
    staging: PathBuf,
}

impl std::fmt::Debug for StoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCache")
            .field("root", &self.root)
            .finish()
    }
}

impl StoreCache {
    pub fn open(store: Arc<dyn Store>) -> io::Result<StoreCache> {
        let root = store.blob_root().join("results");
        let staging = root.join("staging");
        std::fs::create_dir_all(&staging)?;
        Ok(StoreCache {
            store,
            root,
            staging,
        })
    }
}

/// Deletes a cache entry: the row first (an entry is never visible without
/// its bytes), then its bytes. Used by the service's eviction and by retention.
pub(crate) fn remove_entry(store: &dyn Store, id: i64) -> anyhow::Result<()> {
    store.delete_results_cache(id)?;
    let dir = store.blob_root().join("results").join(id.to_string());
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("removing {}", dir.display())))
        }
        _ => Ok(()),
    }
}

fn io_err(e: anyhow::Error) -> io::Error {
    io::Error::other(format!("{e:#}"))
}

fn to_entry(r: ResultsCacheRow) -> CacheEntry {
    CacheEntry {
        id: r.id as u64,
        repository: r.repository,
        scope: r.scope,
        key: r.key,
        version: r.version,
        size: r.size as u64,
        parts: serde_json::from_value::<Vec<Part>>(r.parts).unwrap_or_default(),
        created_ms: r.created_at,
        last_used_ms: r.last_used_at,
    }
}

impl CacheStore for StoreCache {
    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    fn publish(&self, entry: &CacheEntry, parts: &Path) -> io::Result<bool> {
        // Bytes first, then the row: a row is never visible without its bytes;
        // a crash in between leaves a directory no row names (never served).
        let blob = self.blob_path(entry);
        std::fs::rename(parts, &blob)?;
        let row = ResultsCacheRow {
            id: entry.id as i64,
            repository: entry.repository.clone(),
            scope: entry.scope.clone(),
            key: entry.key.clone(),
            version: entry.version.clone(),
            size: entry.size as i64,
            parts: serde_json::to_value(&entry.parts)?,
            created_at: entry.created_ms,
            last_used_at: entry.last_used_ms,
        };
        match self.store.insert_results_cache(&row) {
            Ok(true) => Ok(true),
            Ok(false) => {
                let _ = std::fs::remove_dir_all(&blob);
                Ok(false)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&blob);
                Err(io_err(e))
            }
        }
    }

    fn entries(&self, repository: &str) -> io::Result<Vec<CacheEntry>> {
        Ok(self
            .store
            .results_caches(Some(repository))
            .map_err(io_err)?
            .into_iter()
            .map(to_entry)
            .filter(|e| self.blob_path(e).is_dir())
            .collect())
    }

    fn all_entries(&self) -> io::Result<Vec<CacheEntry>> {
        Ok(self
            .store
            .results_caches(None)
            .map_err(io_err)?
            .into_iter()
            .map(to_entry)
            .filter(|e| self.blob_path(e).is_dir())
            .collect())
    }

    fn blob_path(&self, entry: &CacheEntry) -> PathBuf {
        self.root.join(entry.id.to_string())
    }

    fn touch(&self, entry: &CacheEntry, now_ms: i64) -> io::Result<()> {
        self.store
            .touch_results_cache(entry.id as i64, now_ms)
            .map_err(io_err)
    }

    fn remove(&self, entry: &CacheEntry) -> io::Result<()> {
        remove_entry(&*self.store, entry.id as i64).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(c: &StoreCache, name: &str, bytes: &[u8]) -> PathBuf {
        let d = c.staging_dir().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("0"), bytes).unwrap();
        d
    }

    #[test]
    fn entries_live_in_the_store_and_stay_immutable() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(hangar_store::open(dir.path()).unwrap());
        let c = StoreCache::open(store.clone()).unwrap();
        let entry = |id: u64| CacheEntry {
            id,
            repository: "o/r".into(),
            scope: "refs/heads/main".into(),
            key: "k".into(),
            version: "v".into(),
            size: 3,
            parts: vec![Part {
                size: 3,
                sha256: "ab".into(),
            }],
            created_ms: 1,
            last_used_ms: 1,
        };
        assert!(c.publish(&entry(5), &upload(&c, "a", b"one")).unwrap());
        assert!(!c.publish(&entry(6), &upload(&c, "b", b"two")).unwrap());
        assert!(
            !c.blob_path(&entry(6)).exists(),
            "the losing bytes are gone"
        );
        let all = c.entries("o/r").unwrap();
        assert_eq!(all, vec![entry(5)]);
        assert_eq!(
            std::fs::read(c.blob_path(&all[0]).join("0")).unwrap(),
            b"one"
        );
        // Reopened (a server restart): still there.
        let c = StoreCache::open(Arc::new(hangar_store::open(dir.path()).unwrap())).unwrap();
        assert_eq!(c.all_entries().unwrap().len(), 1);
        c.remove(&entry(5)).unwrap();
        assert!(c.all_entries().unwrap().is_empty());
        assert!(!c.blob_path(&entry(5)).exists());
    }
}
