//! The server's reads of repositories, through the `git` CLI (see ARCHITECTURE).
//! A local clone URL (a path or `file://`) is read in place; anything else is
//! fetched into a bare mirror under the data directory, one fetch per repo at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::Mutex;

#[derive(Default)]
pub struct GitReader {
    mirrors_dir: PathBuf,
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

pub fn local_path(clone_url: &str) -> Option<PathBuf> {
    let p = clone_url.strip_prefix("file://").unwrap_or(clone_url);
    let path = Path::new(p);
    (path.is_absolute() && path.exists()).then(|| path.to_path_buf())
}

impl GitReader {
    pub fn new(mirrors_dir: PathBuf) -> GitReader {
        GitReader {
            mirrors_dir,
            locks: Default::default(),
        }
    }

    /// A git directory that contains `sha` (fetching it when needed).
    pub async fn repo_with(&self, clone_url: &str, sha: &str) -> anyhow::Result<PathBuf> {
        if let Some(p) = local_path(clone_url) {
            return Ok(p);
        }
        let name = hangar_store::crypto::sha256_hex(clone_url.as_bytes());
        let dir = self.mirrors_dir.join(format!("{}.git", &name[..16]));
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(name).or_default().clone()
        };
        let _guard = lock.lock().await;
        if !dir.exists() {
            tokio::fs::create_dir_all(&dir).await?;
            git(&dir, &["init", "-q", "--bare"]).await?;
        }
        if !sha.is_empty()
            && git(&dir, &["cat-file", "-e", &format!("{sha}^{{commit}}")])
                .await
                .is_ok()
        {
            return Ok(dir);
        }
        let target = if sha.is_empty() { "HEAD" } else { sha };
        if git(
            &dir,
            &[
                "fetch",
                "-q",
                "--no-tags",
                "--no-write-fetch-head",
                clone_url,
                target,
            ],
        )
        .await
        .is_err()
        {
            git(
                &dir,
                &[
                    "fetch",
                    "-q",
                    "--no-tags",
                    clone_url,
                    "+refs/heads/*:refs/heads/*",
                ],
            )
            .await
            .with_context(|| format!("fetching {sha} from {clone_url}"))?;
        }
        Ok(dir)
    }

    /// Workflow files (`.github/workflows/*.yml|yaml`) at `sha`: (path, text).
    pub async fn workflows_at(
        &self,
        clone_url: &str,
        sha: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let dir = self.repo_with(clone_url, sha).await?;
        git(&dir, &["cat-file", "-e", &format!("{sha}^{{commit}}")])
            .await
            .with_context(|| format!("commit {sha} is not in {clone_url}"))?;
        let listing = git_out(
            &dir,
            &[
                "ls-tree",
                "--name-only",
                &format!("{sha}:.github/workflows"),
            ],
        )
        .await;
        let Ok(listing) = listing else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        for name in listing.lines() {
            if !(name.ends_with(".yml") || name.ends_with(".yaml")) {
                continue;
            }
            let path = format!(".github/workflows/{name}");
            let text = git_out(&dir, &["show", &format!("{sha}:{path}")]).await?;
            out.push((path, text));
        }
        Ok(out)
    }

    pub async fn file_at(
        &self,
        clone_url: &str,
        sha: &str,
        path: &str,
    ) -> anyhow::Result<Option<String>> {
        let dir = self.repo_with(clone_url, sha).await?;
        Ok(git_out(&dir, &["show", &format!("{sha}:{path}")])
            .await
            .ok())
    }

    /// Resolves a branch, tag or sha to a commit id.
    pub async fn resolve(&self, clone_url: &str, rev: &str) -> anyhow::Result<String> {
        if let Some(p) = local_path(clone_url) {
            return Ok(
                git_out(&p, &["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
                    .await?
                    .trim()
                    .to_string(),
            );
        }
        let out = git_out(&self.mirrors_dir, &["ls-remote", clone_url, rev]).await?;
        match out.lines().next().and_then(|l| l.split_whitespace().next()) {
            Some(sha) => Ok(sha.to_string()),
            None if rev.len() == 40 => Ok(rev.to_string()),
            None => bail!("{rev} not found in {clone_url}"),
        }
    }

    /// The branch HEAD points at, for local repositories.
    pub async fn symbolic_head(&self, clone_url: &str) -> Option<String> {
        let p = local_path(clone_url)?;
        git_out(&p, &["symbolic-ref", "-q", "HEAD"])
            .await
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// `(ref, sha)` of every branch and tag of a local repository.
    pub async fn local_refs(&self, path: &Path) -> anyhow::Result<Vec<(String, String)>> {
        let out = git_out(
            path,
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname)",
                "refs/heads",
                "refs/tags",
            ],
        )
        .await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(r, s)| (r.to_string(), s.to_string()))
            })
            .collect())
    }

    pub async fn changed_files(&self, clone_url: &str, before: &str, after: &str) -> Vec<String> {
        let Ok(dir) = self.repo_with(clone_url, after).await else {
            return vec![];
        };
        let zero = before.is_empty() || before.bytes().all(|b| b == b'0');
        let out = if zero {
            git_out(&dir, &["show", "--name-only", "--format=", after]).await
        } else {
            git_out(&dir, &["diff", "--name-only", before, after]).await
        };
        out.map(|o| o.lines().map(String::from).collect())
            .unwrap_or_default()
    }
}

pub async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    git_out(dir, args).await.map(|_| ())
}

pub async fn git_out(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true)
        .output()
        .await
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
