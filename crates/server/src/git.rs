//! The server's reads of repositories, through `hangar_git` (see ARCHITECTURE).
//! A local clone URL (a path or `file://`) is read in place; anything else is
//! fetched into a bare mirror under the data directory, one fetch per repo at a
//! time. The URL is always the registered one (see `check_clone_url`), never a
//! payload's; every commit id is checked to be hex before git sees it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use hangar_git::{Git, commit_id};
use tokio::sync::Mutex;

#[derive(Default)]
pub struct GitReader {
    mirrors_dir: PathBuf,
    /// The PEM bundle git trusts for https clone URLs (`--git-ca-file`):
    /// a self-hosted forge's private CA. Verification is never turned off.
    ca_file: Option<PathBuf>,
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

pub fn local_path(clone_url: &str) -> Option<PathBuf> {
    let p = clone_url.strip_prefix("file://").unwrap_or(clone_url);
    let path = Path::new(p);
    (path.is_absolute() && path.exists()).then(|| path.to_path_buf())
}

/// Which local paths may be registered as clone URLs.
#[derive(Debug, Clone, Default)]
pub enum LocalRepos {
    /// Any existing local path outside the server's data directory.
    #[default]
    Any,
    /// Only paths under one of these directories (and never the data directory).
    Under(Vec<PathBuf>),
}

/// Refuses a clone URL the server must not fetch from: only `https://`,
/// `ssh://`, scp-style `user@host:path`, or an allowed local path; nothing that
/// looks like an option, no other transport (`ext::`, `git://`, `http://`), and
/// no path into the server's own data directory.
pub fn check_clone_url(url: &str, data_dir: &Path, local: &LocalRepos) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "clone_url `{}` is refused: {why}; use https://, ssh:// or an allowed local path",
            url.chars().take(200).collect::<String>()
        ))
    };
    if url.is_empty() || url.starts_with('-') {
        return bad("it is empty or looks like an option");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("it holds whitespace or control characters");
    }
    if let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("ssh://"))
    {
        let host = rest.split(['/', '@']).next().unwrap_or("");
        if rest.is_empty() || host.starts_with('-') {
            return bad("it names no host");
        }
        return Ok(());
    }
    if url.contains("://") || url.contains("::") {
        return bad("only the https and ssh transports are fetched");
    }
    let local_str = url.strip_prefix("file://").unwrap_or(url);
    if local_str.starts_with('/') {
        let Ok(real) = std::fs::canonicalize(local_str) else {
            return bad("the local path does not exist");
        };
        let data = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        if real.starts_with(&data) {
            return bad("it points into the server's data directory");
        }
        return match local {
            LocalRepos::Any => Ok(()),
            LocalRepos::Under(roots) => {
                if roots.iter().any(|r| {
                    std::fs::canonicalize(r)
                        .map(|r| real.starts_with(r))
                        .unwrap_or(false)
                }) {
                    Ok(())
                } else {
                    bad("the local path is outside the allowed directories (--local-repos)")
                }
            }
        };
    }
    // scp-like ssh: user@host:path (git reads `host:path` with no user the same way).
    if let Some((host, path)) = url.split_once(':')
        && !host.is_empty()
        && !host.contains('/')
        && !path.is_empty()
    {
        return Ok(());
    }
    bad("it is neither a URL nor an absolute path")
}

impl GitReader {
    pub fn new(mirrors_dir: PathBuf) -> GitReader {
        GitReader {
            mirrors_dir,
            ca_file: None,
            locks: Default::default(),
        }
    }

    /// Trusts `ca_file` (PEM) for https clone URLs instead of the system's roots.
    pub fn with_ca_file(mut self, ca_file: Option<PathBuf>) -> GitReader {
        self.ca_file = ca_file;
        self
    }

    /// Git run against a clone URL (fetch, push): only these transports,
    /// whatever the URL says (a redirect or submodule cannot switch to
    /// `ext::` or `git://`), and the configured CA for https.
    pub(crate) fn remote_git(&self, dir: &Path) -> Git {
        let git = Git::new(dir).env("GIT_ALLOW_PROTOCOL", "https:ssh:file");
        match &self.ca_file {
            Some(ca) => git.env("GIT_SSL_CAINFO", ca),
            None => git,
        }
    }

    /// A git directory that contains `sha` (fetching it when needed). For a pull
    /// request, `also_ref` (`refs/pull/N/head`) is fetched from the same URL when
    /// the commit itself cannot be.
    pub async fn repo_with_ref(
        &self,
        clone_url: &str,
        sha: &str,
        also_ref: Option<&str>,
    ) -> anyhow::Result<PathBuf> {
        if !sha.is_empty() {
            commit_id("commit", sha)?;
        }
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
            Git::new(&dir)
                .args(&["init", "-q", "--bare"])
                .run_async()
                .await?;
        }
        if !sha.is_empty() && has_commit(&dir, sha).await {
            return Ok(dir);
        }
        let target = if sha.is_empty() { "HEAD" } else { sha };
        let direct = self
            .remote_git(&dir)
            .args(&["fetch", "-q", "--no-tags", "--no-write-fetch-head"])
            .value(clone_url)
            .value(target)
            .run_async()
            .await;
        if direct.is_err() {
            let mut fetch = self
                .remote_git(&dir)
                .args(&["fetch", "-q", "--no-tags"])
                .value(clone_url)
                .value("+refs/heads/*:refs/heads/*");
            if let Some(r) = also_ref.filter(|r| is_review_ref(r)) {
                fetch = fetch.value(format!("+{r}:{r}"));
            }
            fetch
                .run_async()
                .await
                .with_context(|| format!("fetching {sha} from {clone_url}"))?;
        }
        Ok(dir)
    }

    /// The merge commit GitHub made for pull request `number` whose head is
    /// `head_sha` (`refs/pull/N/merge`), when the forge offers one: fetched
    /// from the registered URL into the mirror (read in place for a local
    /// repository). `None` when there is no such ref (Gitea, a conflicting
    /// pull request) or it is stale: GitHub recomputes it after each push, so a
    /// merge ref whose second parent is not the pushed head is not this
    /// event's.
    pub async fn pull_merge_commit(
        &self,
        clone_url: &str,
        number: u64,
        head_sha: &str,
    ) -> Option<String> {
        commit_id("commit", head_sha).ok()?;
        let merge_ref = format!("refs/pull/{number}/merge");
        let dir = match local_path(clone_url) {
            Some(p) => p,
            None => {
                let name = hangar_store::crypto::sha256_hex(clone_url.as_bytes());
                let dir = self.mirrors_dir.join(format!("{}.git", &name[..16]));
                let lock = {
                    let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
                    locks.entry(name).or_default().clone()
                };
                let _guard = lock.lock().await;
                self.remote_git(&dir)
                    .args(&["fetch", "-q", "--no-tags"])
                    .value(clone_url)
                    .value(format!("+{merge_ref}:{merge_ref}"))
                    .run_async()
                    .await
                    .ok()?;
                dir
            }
        };
        let rev = |spec: String| {
            let dir = dir.clone();
            async move {
                Git::new(&dir)
                    .args(&["rev-parse", "--verify", "-q"])
                    .value(spec)
                    .output_async()
                    .await
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| hangar_git::is_commit_id(s))
            }
        };
        let merge = rev(format!("{merge_ref}^{{commit}}")).await?;
        let second_parent = rev(format!("{merge}^2")).await?;
        (second_parent == head_sha).then_some(merge)
    }

    /// The last commit of branch `branch` at the registered URL, fetched into
    /// the mirror (read in place for a local repository). `branch` comes from
    /// a payload: it must be a branch name git accepts.
    pub async fn branch_head(&self, clone_url: &str, branch: &str) -> anyhow::Result<String> {
        hangar_git::branch_name("the base branch", branch)?;
        let sha = self
            .resolve(clone_url, &format!("refs/heads/{branch}"))
            .await
            .with_context(|| format!("branch `{branch}`"))?;
        self.repo_with(clone_url, &sha).await?;
        Ok(sha)
    }

    /// The files a pull request changes as GitHub's `paths` filters see them:
    /// what `head` changes since it left `base` (`git diff base...head`).
    /// `None` when either commit cannot be read (the filters then let the
    /// workflow run rather than drop it).
    pub async fn pull_request_files(
        &self,
        clone_url: &str,
        base: &str,
        head: &str,
    ) -> Option<Vec<String>> {
        commit_id("commit", base).ok()?;
        commit_id("commit", head).ok()?;
        let dir = self.repo_with(clone_url, head).await.ok()?;
        let out = Git::new(&dir)
            .args(&["diff", "--name-only", "--no-renames"])
            .value(format!("{base}...{head}"))
            .output_async()
            .await
            .ok()?;
        Some(out.lines().map(String::from).collect())
    }

    /// [`GitReader::repo_with`], with the clone URL's tags as they are now
    /// (a mirror fetches none otherwise): what decides whether a release is
    /// tagged already. Tags the URL no longer has are pruned from the mirror.
    pub async fn repo_with_tags(&self, clone_url: &str, sha: &str) -> anyhow::Result<PathBuf> {
        let dir = self.repo_with(clone_url, sha).await?;
        if local_path(clone_url).is_some() {
            return Ok(dir);
        }
        let name = hangar_store::crypto::sha256_hex(clone_url.as_bytes());
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(name).or_default().clone()
        };
        let _guard = lock.lock().await;
        self.remote_git(&dir)
            .args(&["fetch", "-q", "--prune", "--no-write-fetch-head"])
            .value(clone_url)
            .value("+refs/tags/*:refs/tags/*")
            .run_async()
            .await
            .with_context(|| format!("fetching the tags of {clone_url}"))?;
        Ok(dir)
    }

    pub async fn repo_with(&self, clone_url: &str, sha: &str) -> anyhow::Result<PathBuf> {
        self.repo_with_ref(clone_url, sha, None).await
    }

    /// Workflow files (`.github/workflows/*.yml|yaml`) at `sha`: (path, text).
    pub async fn workflows_at(
        &self,
        clone_url: &str,
        sha: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        commit_id("commit", sha)?;
        let dir = self.repo_with(clone_url, sha).await?;
        if !has_commit(&dir, sha).await {
            bail!("commit {sha} is not in {clone_url}");
        }
        let listing = Git::new(&dir)
            .args(&["ls-tree", "--name-only"])
            .value(format!("{sha}:.github/workflows"))
            .output_async()
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
            let text = Git::new(&dir)
                .arg("show")
                .value(format!("{sha}:{path}"))
                .output_async()
                .await?;
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
        commit_id("commit", sha)?;
        let dir = self.repo_with(clone_url, sha).await?;
        Ok(Git::new(&dir)
            .arg("show")
            .value(format!("{sha}:{path}"))
            .output_async()
            .await
            .ok())
    }

    /// Resolves a branch, tag or sha to a commit id.
    pub async fn resolve(&self, clone_url: &str, rev: &str) -> anyhow::Result<String> {
        let sha = if let Some(p) = local_path(clone_url) {
            Git::new(&p)
                .args(&["rev-parse", "--verify"])
                .value(format!("{rev}^{{commit}}"))
                .output_async()
                .await?
                .trim()
                .to_string()
        } else {
            let out = self
                .remote_git(&self.mirrors_dir)
                .arg("ls-remote")
                .value(clone_url)
                .value(rev)
                .output_async()
                .await?;
            match out.lines().next().and_then(|l| l.split_whitespace().next()) {
                Some(sha) => sha.to_string(),
                None if hangar_git::is_commit_id(rev) => rev.to_string(),
                None => bail!("{rev} not found in {clone_url}"),
            }
        };
        Ok(commit_id("resolved commit", &sha)?.to_string())
    }

    /// A local repository's commit as a push payload's `head_commit` says it
    /// (id, message, timestamp, author and committer); `None` for a remote one
    /// (its forge's payload carries it) or an unknown commit.
    pub async fn head_commit(&self, clone_url: &str, sha: &str) -> Option<serde_json::Value> {
        let p = local_path(clone_url)?;
        commit_id("commit", sha).ok()?;
        let out = Git::new(&p)
            .args(&[
                "log",
                "-1",
                "--format=%an%x00%ae%x00%cn%x00%ce%x00%cI%x00%B",
            ])
            .value(sha)
            .arg("--")
            .output_async()
            .await
            .ok()?;
        let f: Vec<&str> = out.splitn(6, '\0').collect();
        let [an, ae, cn, ce, at, msg] = f.as_slice() else {
            return None;
        };
        Some(serde_json::json!({
            "id": sha,
            "message": msg.trim_end(),
            "timestamp": at,
            "author": {"name": an, "email": ae},
            "committer": {"name": cn, "email": ce},
        }))
    }

    /// The branch HEAD points at, for local repositories.
    pub async fn symbolic_head(&self, clone_url: &str) -> Option<String> {
        let p = local_path(clone_url)?;
        Git::new(&p)
            .args(&["symbolic-ref", "-q", "HEAD"])
            .output_async()
            .await
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// `(ref, sha)` of every branch and tag of a local repository.
    pub async fn local_refs(&self, path: &Path) -> anyhow::Result<Vec<(String, String)>> {
        let out = Git::new(path)
            .args(&[
                "for-each-ref",
                "--format=%(refname) %(objectname)",
                "refs/heads",
                "refs/tags",
            ])
            .output_async()
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
        if commit_id("commit", after).is_err() {
            return vec![];
        }
        let Ok(dir) = self.repo_with(clone_url, after).await else {
            return vec![];
        };
        let zero = before.is_empty() || before.bytes().all(|b| b == b'0');
        let out = if zero {
            Git::new(&dir)
                .args(&["show", "--name-only", "--format="])
                .value(after)
                .output_async()
                .await
        } else if commit_id("commit", before).is_ok() {
            Git::new(&dir)
                .args(&["diff", "--name-only"])
                .value(before)
                .value(after)
                .output_async()
                .await
        } else {
            return vec![];
        };
        out.map(|o| o.lines().map(String::from).collect())
            .unwrap_or_default()
    }
}

/// A pull or merge request's head ref, the only refs besides branches a mirror fetches.
fn is_review_ref(r: &str) -> bool {
    let num = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    r.strip_prefix("refs/pull/")
        .and_then(|x| x.strip_suffix("/head"))
        .is_some_and(num)
        || r.strip_prefix("refs/merge-requests/")
            .and_then(|x| x.strip_suffix("/head"))
            .is_some_and(num)
}

async fn has_commit(dir: &Path, sha: &str) -> bool {
    Git::new(dir)
        .args(&["cat-file", "-e"])
        .value(format!("{sha}^{{commit}}"))
        .run_async()
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_urls() {
        let data = std::env::temp_dir().join("hangar-data-clone-url-test");
        std::fs::create_dir_all(data.join("db")).unwrap();
        let any = LocalRepos::Any;
        assert!(check_clone_url("https://github.com/a/b.git", &data, &any).is_ok());
        assert!(check_clone_url("ssh://git@host/a/b", &data, &any).is_ok());
        assert!(check_clone_url("git@github.com:a/b.git", &data, &any).is_ok());
        for bad in [
            "",
            "--upload-pack=touch x",
            "http://169.254.169.254/latest",
            "git://host/x",
            "ext::sh -c touch% /tmp/pwned",
            "file:///nonexistent-hangar-path",
            "https://-oProxyCommand=x/",
            "relative/path",
        ] {
            assert!(check_clone_url(bad, &data, &any).is_err(), "{bad}");
        }
        let inside = format!("file://{}", data.join("db").display());
        assert!(check_clone_url(&inside, &data, &any).is_err());
        let other = std::env::temp_dir();
        let under = LocalRepos::Under(vec![data.join("nowhere")]);
        assert!(check_clone_url(&other.to_string_lossy(), &data, &under).is_err());
        assert!(is_review_ref("refs/pull/12/head"));
        assert!(!is_review_ref("refs/pull/--x/head"));
    }
}
