//! GitHub's results service, as a runner's steps expect to find it: the cache
//! service and the artifact service (v4), served by hangar itself on a loopback
//! port.
//!
//! What arrives, read from the clients in the real actions (`actions/cache`
//! v4/v5 and `@actions/cache` inside `Swatinem/rust-cache`; `@actions/artifact`
//! for `upload-artifact@v4`+):
//!
//! - **Cache service v2** (`ACTIONS_CACHE_SERVICE_V2` set): Twirp JSON at
//!   `ACTIONS_RESULTS_URL` `/twirp/github.actions.results.api.v1.CacheService/`
//!   `CreateCacheEntry` → a signed upload URL; the client uploads with the
//!   Azure Blob SDK (one "Put Blob" up to 128 MiB, else "Put Block"s of 64 MiB
//!   and a "Put Block List"); `FinalizeCacheEntryUpload` publishes the entry;
//!   `GetCacheEntryDownloadURL` matches keys and returns a signed URL the
//!   client fetches with a plain GET (checking `Content-Length`).
//! - **Legacy cache API** (older toolkits): `ACTIONS_CACHE_URL`
//!   `_apis/artifactcache/cache?keys=&version=`, `caches` (reserve),
//!   `PATCH caches/ID` with `Content-Range`, `POST caches/ID` (commit).
//! - **Artifact service v4**: Twirp `ArtifactService/CreateArtifact`,
//!   `FinalizeArtifact` (size and `sha256:` digest checked), `ListArtifacts`,
//!   `GetSignedArtifactURL`, `DeleteArtifact`; uploads through the blob SDK
//!   ("Put Block"s and a "Put Block List").
//!
//! Every request carries the runtime token ([`token`]) or a signed URL; no
//! request is served without one. Matching, scoping, immutability and eviction
//! are here; where entries live is a [`storage::CacheStore`].

pub mod storage;
pub mod token;

mod blob;
mod handlers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use storage::{CacheEntry, CacheStore, DirStore, Part};
pub use token::Grant;

/// Limits and places.
#[derive(Clone, Debug)]
pub struct Config {
    /// Total size of a repository's cache entries; the least recently used go
    /// first when a new entry would pass it (GitHub: 10 GB).
    pub max_total_bytes: u64,
    /// Entries not used for this long are removed (GitHub: 7 days).
    pub max_age: Duration,
    /// Where finished artifacts are kept (`NAME.zip`, or `NAME` for an
    /// artifact uploaded without archiving).
    pub artifact_dir: PathBuf,
    /// Retention of an artifact that asks for none (GitHub: 90 days).
    pub artifact_retention_days: u32,
    /// Lifetime of a runtime token and of signed URLs.
    pub token_ttl: Duration,
    /// Keep each run's artifacts in `artifact_dir/RUN/`, each with its record
    /// beside it (`.NAME.json`) so they outlive a restart (a server holding
    /// many runs), rather than directly in `artifact_dir` for the life of the
    /// service (one local run).
    pub artifacts_per_run: bool,
}

impl Config {
    pub fn new(artifact_dir: PathBuf) -> Config {
        Config {
            max_total_bytes: 10 * 1000 * 1000 * 1000,
            max_age: Duration::from_secs(7 * 24 * 3600),
            artifact_dir,
            artifact_retention_days: 90,
            token_ttl: Duration::from_secs(24 * 3600),
            artifacts_per_run: false,
        }
    }
}

/// The service: cloneable, shared by every job it grants tokens to.
#[derive(Clone, Debug)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    signer: token::Signer,
    cache: Arc<dyn CacheStore>,
    cfg: Config,
    base_url: OnceLock<String>,
    uploads: Mutex<HashMap<String, blob::Upload>>,
    artifacts: Mutex<Vec<Artifact>>,
    next_id: AtomicU64,
}

/// A finalized artifact.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    pub id: u64,
    pub run: String,
    pub job: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub mime: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub path: PathBuf,
}

/// A service listening on a port; dropping it stops the server.
#[derive(Debug)]
pub struct Running {
    pub service: Service,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The records of artifacts kept in `dir/RUN/.NAME.json` whose bytes are there.
fn load_artifacts(dir: &std::path::Path) -> Vec<Artifact> {
    let mut out = Vec::new();
    let Ok(runs) = std::fs::read_dir(dir) else {
        return out;
    };
    for run in runs.flatten() {
        let Ok(files) = std::fs::read_dir(run.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if !(name.starts_with('.') && name.ends_with(".json")) {
                continue;
            }
            match std::fs::read(f.path()).map(|b| serde_json::from_slice::<Artifact>(&b)) {
                Ok(Ok(a)) if a.path.is_file() => out.push(a),
                Ok(Ok(_)) => {}
                _ => {
                    tracing::warn!(message = "Unreadable artifact record skipped.", file = %f.path().display())
                }
            }
        }
    }
    out
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Service {
    pub fn new(cache: Arc<dyn CacheStore>, cfg: Config) -> anyhow::Result<Service> {
        std::fs::create_dir_all(&cfg.artifact_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the artifact directory {}: {e}",
                cfg.artifact_dir.display()
            )
        })?;
        // Ids only need to be unique within a store; time-based so that ids of
        // two processes sharing a store do not collide in practice, and the
        // store refuses a clash anyway (its blob would exist).
        let seed = (now_ms() as u64 & 0x000f_ffff_ffff) << 12;
        let artifacts = if cfg.artifacts_per_run {
            load_artifacts(&cfg.artifact_dir)
        } else {
            Vec::new()
        };
        let svc = Service {
            inner: Arc::new(Inner {
                signer: token::Signer::random()?,
                cache,
                cfg,
                base_url: OnceLock::new(),
                uploads: Mutex::new(HashMap::new()),
                artifacts: Mutex::new(artifacts),
                next_id: AtomicU64::new(seed.max(1)),
            }),
        };
        svc.sweep_expired_artifacts();
        Ok(svc)
    }

    fn record_path(a: &Artifact) -> PathBuf {
        let name = a
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        a.path.with_file_name(format!(".{name}.json"))
    }

    /// Writes an artifact's record beside it (kept services only).
    pub(crate) fn remember_artifact(&self, a: &Artifact) -> std::io::Result<()> {
        if !self.inner.cfg.artifacts_per_run {
            return Ok(());
        }
        let rec = Self::record_path(a);
        let tmp = rec.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(a)?)?;
        std::fs::rename(&tmp, &rec)
    }

    /// Removes an artifact's bytes and record.
    pub(crate) fn forget_artifact(&self, a: &Artifact) {
        let _ = std::fs::remove_file(Self::record_path(a));
        let _ = std::fs::remove_file(&a.path);
    }

    /// Removes artifacts past their retention.
    pub(crate) fn sweep_expired_artifacts(&self) {
        let now = now_ms();
        let expired: Vec<Artifact> = {
            let mut arts = self
                .inner
                .artifacts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *arts)
                .into_iter()
                .partition(|a| a.expires_ms <= now);
            *arts = keep;
            gone
        };
        for a in &expired {
            self.forget_artifact(a);
        }
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The endpoints, to serve on a router of one's own (`hangar serve` puts
    /// them beside its API). Signed URLs point back at the host each request
    /// came to, so a client reaches them the way it reached the service.
    pub fn router(&self) -> axum::Router {
        handlers::router(self.clone())
    }

    /// Listens on `addr` (a loopback address for `hangar run`) on the current
    /// tokio runtime.
    pub async fn start(self, addr: SocketAddr) -> anyhow::Result<Running> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr} for the cache and artifact service: {e}")
        })?;
        let local = listener.local_addr()?;
        let url = format!("http://{local}/");
        let _ = self.inner.base_url.set(url.clone());
        let app = handlers::router(self.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Running {
            service: self,
            url,
            stop: Some(tx),
        })
    }

    fn base_url(&self) -> &str {
        self.inner
            .base_url
            .get()
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1/")
    }

    /// A runtime token for one job.
    pub fn token(&self, grant: &Grant) -> String {
        self.inner.signer.token(
            grant,
            now_ms() / 1000,
            self.inner.cfg.token_ttl.as_secs() as i64,
        )
    }

    /// The variables a job's steps get, as GitHub's runner sets them.
    /// `ACTIONS_RUNTIME_TOKEN` is a secret: mask it.
    pub fn job_env(&self, grant: &Grant) -> Vec<(String, String)> {
        self.job_env_at(self.base_url(), grant)
    }

    /// [`Service::job_env`] for a service reached at `url` (`http://HOST/`).
    pub fn job_env_at(&self, url: &str, grant: &Grant) -> Vec<(String, String)> {
        let url = if url.ends_with('/') {
            url.to_string()
        } else {
            format!("{url}/")
        };
        vec![
            ("ACTIONS_RESULTS_URL".into(), url.clone()),
            ("ACTIONS_CACHE_URL".into(), url),
            ("ACTIONS_CACHE_SERVICE_V2".into(), "True".into()),
            ("ACTIONS_RUNTIME_TOKEN".into(), self.token(grant)),
        ]
    }

    /// Finalized, unexpired artifacts of a run.
    pub fn artifacts(&self, run: &str) -> Vec<Artifact> {
        let now = now_ms();
        self.inner
            .artifacts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|a| a.run == run && a.expires_ms > now)
            .cloned()
            .collect()
    }

    /// Removes what uploads left behind that never finished (a job killed mid-upload).
    pub fn discard_unfinished(&self) {
        let ups: Vec<blob::Upload> = self
            .inner
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, u)| u)
            .collect();
        for u in ups {
            u.discard();
        }
    }
}
