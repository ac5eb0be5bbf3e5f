//! The job's workspace: the run's commit, checked out with the `git` CLI from the
//! run's clone URL (local paths and file URLs work as well as forges).
//!
//! Each agent keeps one bare mirror per clone URL and fetches a commit into it
//! once; a job's workspace is then a repository that borrows the mirror's objects
//! (what `git clone --shared` makes) plus a checkout. A run of many jobs costs one
//! fetch, and each job one `git checkout`.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::reporter::Reporter;

/// A new directory only this user can enter (0700) under the system's
/// temporary directory, for an agent's workspaces: outside the server's data
/// directory, named unpredictably and created here (never an existing one
/// reused), so another user cannot plant it or see into it.
pub fn private_work_dir(prefix: &str) -> std::io::Result<PathBuf> {
    use std::hash::BuildHasher;
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..16 {
        // RandomState's keys are random per process and per call.
        let n = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let dir = base.join(format!("{prefix}-{n:016x}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
}

/// Makes `dir` (and its parents) and restricts it to this user: workspaces hold
/// the job's checkout and step files of every job the agent runs.
pub(crate) fn make_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

pub struct Workspaces {
    mirrors: PathBuf,
    fetched: Mutex<HashSet<(String, String)>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Workspaces {
    pub fn new(work_dir: &Path) -> Workspaces {
        Workspaces {
            mirrors: work_dir.join("mirrors"),
            fetched: Default::default(),
            locks: Default::default(),
        }
    }

    /// Creates `ws` (which must not exist yet) holding `sha`.
    pub async fn prepare(
        &self,
        ws: &Path,
        clone_url: &str,
        sha: &str,
        reporter: &Reporter,
    ) -> anyhow::Result<()> {
        if clone_url.is_empty() || sha.is_empty() {
            tokio::fs::create_dir_all(ws)
                .await
                .with_context(|| format!("creating {}", ws.display()))?;
            return Ok(());
        }
        // The server sends full commit ids; anything else is refused before git sees it.
        hangar_git::commit_id("the job's commit", sha)?;
        let mirror = self.mirror_with(clone_url, sha, reporter).await?;
        // The files `git clone --shared --no-checkout` would write, written directly:
        // the clone costs ~20 ms of process start-up and ref copying per job, which
        // caps a 4-slot agent's throughput on short jobs.
        let dot_git = ws.join(".git");
        for d in ["objects/info", "refs/heads", "refs/tags"] {
            tokio::fs::create_dir_all(dot_git.join(d))
                .await
                .with_context(|| format!("creating {}", ws.display()))?;
        }
        tokio::fs::write(dot_git.join("HEAD"), "ref: refs/heads/main\n").await?;
        let config = format!(
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n\
             [remote \"origin\"]\n\turl = {}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
            clone_url.replace('\\', "\\\\").replace('"', "\\\"")
        );
        tokio::fs::write(dot_git.join("config"), config).await?;
        let objects = std::fs::canonicalize(mirror.join("objects"))?;
        tokio::fs::write(
            dot_git.join("objects/info/alternates"),
            format!("{}\n", objects.display()),
        )
        .await?;
        git(ws, &["checkout", "-q", "--detach"], &[sha]).await?;
        Ok(())
    }

    async fn mirror_with(
        &self,
        clone_url: &str,
        sha: &str,
        reporter: &Reporter,
    ) -> anyhow::Result<PathBuf> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        clone_url.hash(&mut h);
        let dir = self.mirrors.join(format!("{:016x}.git", h.finish()));
        let key = (clone_url.to_string(), sha.to_string());
        if self
            .fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(dir);
        }
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(clone_url.to_string())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if self
            .fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(dir);
        }
        if !dir.exists() {
            tokio::fs::create_dir_all(&dir).await?;
            git(&dir, &["init", "-q", "--bare"], &[]).await?;
        }
        if git(&dir, &["cat-file", "-e"], &[&format!("{sha}^{{commit}}")])
            .await
            .is_err()
        {
            // Fetch exactly the commit (protocol v2 serves any reachable object).
            if let Err(e) = git(&dir, &["fetch", "-q", "--no-tags"], &[clone_url, sha]).await {
                reporter.line(
                    None,
                    &format!("fetching {sha} by id failed ({e:#}); fetching all branches"),
                );
                git(
                    &dir,
                    &["fetch", "-q", "--no-tags"],
                    &[clone_url, "+refs/heads/*:refs/heads/*"],
                )
                .await?;
            }
        }
        // Keep the commit reachable so `git gc` in the mirror never drops it.
        let _ = git(&dir, &["update-ref"], &[&format!("refs/hangar/{sha}"), sha]).await;
        self.fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        Ok(dir)
    }
}

/// `git OPTIONS --end-of-options VALUES` in `dir` (see `hangar_git`).
async fn git(dir: &Path, options: &[&str], values: &[&str]) -> anyhow::Result<()> {
    hangar_git::Git::new(dir)
        .args(options)
        .values(values)
        .run_async()
        .await
}
