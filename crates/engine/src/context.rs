//! What every job of one run shares: the event, the repository, secrets, vars,
//! inputs, and where things live on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// The run-wide inputs of job execution.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// `GITHUB_WORKSPACE`: the repository checkout steps run in.
    pub workspace: PathBuf,
    pub event_name: String,
    /// The webhook payload (`github.event`).
    pub event: Value,
    pub sha: String,
    /// `refs/heads/main`, `refs/tags/v1`, `refs/pull/1/merge`...
    pub git_ref: String,
    pub repository: String,
    pub actor: String,
    pub head_ref: String,
    pub base_ref: String,
    pub run_id: String,
    pub run_number: String,
    pub run_attempt: String,
    pub server_url: String,
    pub secrets: BTreeMap<String, String>,
    pub vars: BTreeMap<String, String>,
    /// `inputs` of a `workflow_dispatch` / `workflow_call` run.
    pub inputs: Map<String, Value>,
    /// Extra environment for every step and the lowest layer of the `env` context (act's `.env`).
    pub env: BTreeMap<String, String>,
    /// Persistent store for `actions/cache` (shared across runs).
    pub data_dir: PathBuf,
    /// Per-run directory (event payload, artifacts); created on demand.
    pub run_dir: PathBuf,
    /// `ACTIONS_STEP_DEBUG`: show `::debug::` lines.
    pub debug: bool,
    /// Services the run offers its steps over the network (GitHub's cache and
    /// artifact services): the engine only hands their variables to each job.
    pub services: Option<std::sync::Arc<dyn JobServices>>,
}

/// What a job's steps reach outside the engine, as the runner announces it in
/// their environment (`ACTIONS_RESULTS_URL`, `ACTIONS_RUNTIME_TOKEN`, ...).
pub trait JobServices: Send + Sync + std::fmt::Debug {
    /// Variables for every step of job `job_key` of `run`: (name, value,
    /// whether the value is a secret to mask in the job's output).
    fn job_env(&self, run: &RunContext, job_key: &str) -> Vec<(String, String, bool)>;
}

impl RunContext {
    /// A run of `event_name` in `workspace`, with `event` as payload or, when
    /// `None`, a payload built from the repository's HEAD with the `git` CLI (a
    /// `push` of HEAD; other events get the same repository fields).
    pub fn new(workspace: &Path, event_name: &str, event: Option<Value>) -> RunContext {
        let git = GitInfo::read(workspace);
        let repository = git.repository.clone();
        let owner = repository.split('/').next().unwrap_or("").to_string();
        let mut event = event.unwrap_or_else(|| git.push_event(&repository, &owner));
        if !event.is_object() {
            event = json!({});
        }
        let mut git_ref = git.git_ref.clone();
        let mut sha = git.sha.clone();
        let mut head_ref = String::new();
        let mut base_ref = String::new();
        if let Some(r) = event.get("ref").and_then(Value::as_str)
            && event_name != "pull_request"
            && !r.is_empty()
        {
            git_ref = if r.starts_with("refs/") {
                r.to_string()
            } else {
                format!("refs/heads/{r}")
            };
        }
        if let Some(pr) = event.get("pull_request") {
            head_ref = pr
                .pointer("/head/ref")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            base_ref = pr
                .pointer("/base/ref")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(n) = event.get("number").or_else(|| pr.get("number")) {
                git_ref = format!("refs/pull/{n}/merge");
            }
            if let Some(s) = pr.pointer("/head/sha").and_then(Value::as_str) {
                sha = s.to_string();
            }
        } else if let Some(s) = event.get("after").and_then(Value::as_str)
            && s.len() == 40
            && s.bytes().any(|b| b != b'0')
        {
            sha = s.to_string();
        }
        let actor = event
            .pointer("/sender/login")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| git.actor.clone());
        let repository = event
            .pointer("/repository/full_name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(repository);
        let inputs = event
            .get("inputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let data_dir = default_data_dir();
        let run_id = format!("{}", crate::report::now_ms() % 10_000_000_000);
        let run_dir =
            std::env::temp_dir().join(format!("hangar-run-{run_id}-{}", std::process::id()));
        RunContext {
            workspace: workspace.to_path_buf(),
            event_name: event_name.to_string(),
            event,
            sha,
            git_ref,
            repository,
            actor,
            head_ref,
            base_ref,
            run_id,
            run_number: "1".into(),
            run_attempt: "1".into(),
            server_url: "https://github.com".into(),
            secrets: BTreeMap::new(),
            vars: BTreeMap::new(),
            inputs,
            env: BTreeMap::new(),
            data_dir,
            run_dir,
            debug: false,
            services: None,
        }
    }

    /// `refs/heads/main` → (`main`, `branch`).
    pub fn ref_name_and_type(&self) -> (String, &'static str) {
        if let Some(b) = self.git_ref.strip_prefix("refs/heads/") {
            (b.to_string(), "branch")
        } else if let Some(t) = self.git_ref.strip_prefix("refs/tags/") {
            (t.to_string(), "tag")
        } else if let Some(p) = self.git_ref.strip_prefix("refs/") {
            (p.to_string(), "branch")
        } else {
            (self.git_ref.clone(), "branch")
        }
    }

    /// Writes the event payload once per run and returns its path.
    pub fn event_path(&self) -> PathBuf {
        let path = self.run_dir.join("event.json");
        if !path.exists() {
            let _ = std::fs::create_dir_all(&self.run_dir);
            let text = serde_json::to_string_pretty(&self.event).unwrap_or_else(|_| "{}".into());
            let _ = std::fs::write(&path, text);
        }
        path
    }

    /// Removes the per-run directory (event payload, artifacts).
    pub fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// `$XDG_DATA_HOME/hangar` or `~/.local/share/hangar`; env `HANGAR_DATA_DIR` wins.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HANGAR_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("hangar");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/hangar"),
        None => std::env::temp_dir().join("hangar-data"),
    }
}

/// Repository facts read with the `git` CLI; empty-ish defaults outside a repo.
#[derive(Clone, Debug, Default)]
pub struct GitInfo {
    pub sha: String,
    pub git_ref: String,
    pub repository: String,
    pub actor: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    pub timestamp: String,
}

impl GitInfo {
    pub fn read(dir: &Path) -> GitInfo {
        let git = |args: &[&str]| -> Option<String> {
            // Only literal options here: HEAD is read, no user value reaches git.
            hangar_git::Git::new(dir)
                .args(args)
                .output()
                .ok()
                .map(|s| s.trim_end().to_string())
        };
        // One call for everything about HEAD keeps `hangar run` start-up fast.
        let head =
            git(&["log", "-1", "--format=%H%x00%an%x00%ae%x00%aI%x00%B"]).unwrap_or_default();
        let mut parts = head.splitn(5, '\0');
        let sha = parts.next().unwrap_or("").to_string();
        let author_name = parts.next().unwrap_or("").to_string();
        let author_email = parts.next().unwrap_or("").to_string();
        let timestamp = parts.next().unwrap_or("").to_string();
        let message = parts.next().unwrap_or("").trim().to_string();
        let git_ref =
            git(&["symbolic-ref", "-q", "HEAD"]).unwrap_or_else(|| "refs/heads/main".into());
        let repository = git(&["remote", "get-url", "origin"])
            .and_then(|u| repo_from_url(&u))
            .unwrap_or_else(|| {
                let name = dir
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "repo".into());
                format!("local/{name}")
            });
        let actor = if author_name.is_empty() {
            "hangar".to_string()
        } else {
            author_name.clone()
        };
        GitInfo {
            sha: if sha.is_empty() { "0".repeat(40) } else { sha },
            git_ref,
            repository,
            actor,
            message,
            author_name,
            author_email,
            timestamp,
        }
    }

    fn push_event(&self, repository: &str, owner: &str) -> Value {
        let name = repository.rsplit('/').next().unwrap_or(repository);
        json!({
            "ref": self.git_ref,
            "before": "0000000000000000000000000000000000000000",
            "after": self.sha,
            "created": false,
            "deleted": false,
            "forced": false,
            "head_commit": {
                "id": self.sha,
                "message": self.message,
                "timestamp": self.timestamp,
                "author": {"name": self.author_name, "email": self.author_email},
                "committer": {"name": self.author_name, "email": self.author_email},
            },
            "pusher": {"name": self.author_name, "email": self.author_email},
            "repository": {
                "name": name,
                "full_name": repository,
                "owner": {"login": owner, "name": owner},
                "default_branch": "main",
            },
            "sender": {"login": self.actor},
        })
    }
}

/// `git@github.com:o/r.git`, `https://host/o/r(.git)` → `o/r`.
pub fn repo_from_url(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    let path = if let Some((_, rest)) = url.split_once("://") {
        rest.split_once('/').map(|x| x.1)?
    } else if let Some((_, rest)) = url.split_once(':') {
        rest
    } else {
        url
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (parts.len() >= 2).then(|| format!("{}/{}", parts[parts.len() - 2], parts[parts.len() - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_from_remote_urls() {
        assert_eq!(
            repo_from_url("git@github.com:nektos/act.git").as_deref(),
            Some("nektos/act")
        );
        assert_eq!(
            repo_from_url("https://github.com/a/b").as_deref(),
            Some("a/b")
        );
        assert_eq!(repo_from_url("nothing"), None);
    }
}
