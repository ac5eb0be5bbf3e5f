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
    /// `hangar run`: the environments hangar.yml defines (empty: no
    /// hangar.yml, any name). A job's `environment:` expression must then
    /// evaluate to one of them, never to nothing; the job fails before its
    /// first step otherwise, at the key's line and column. `None` (an
    /// agent): the server evaluated and decided the environment already.
    pub environments: Option<Vec<String>>,
    /// `hangar run`: each environment's own secrets, by its name in lower
    /// case (GitHub's environment names ignore case), laid over `secrets`
    /// for a job whose `environment:` names it, as GitHub does. Empty for an
    /// agent: the server sends a job its environment's secrets already.
    pub environment_secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// The same for variables, laid over `vars`.
    pub environment_vars: BTreeMap<String, BTreeMap<String, String>>,
    /// The job runs because a server decided its environment's protection
    /// (an agent's lease comes after the reviewers and the wait timer): a
    /// `hangar/deploy` to the job's own environment needs no other approval.
    pub environment_approved: bool,
    /// The project a direct `hangar/deploy` deploys when the job's workspace
    /// does not outlive the run: `hangar run`'s private copy is removed when
    /// the run ends, but the environment's controller, releases and history
    /// must stay where `hangar status|down|rollback` find them, the user's
    /// checkout. `None`: the workspace itself (`--bind`, an agent).
    pub deploy_home: Option<PathBuf>,
    /// A server's job: how its `hangar/deploy` deploys without a `server:`
    /// input (`None`: not a server's job; see [`JobDeploy`]).
    pub job_deploy: Option<JobDeploy>,
}

/// How `hangar/deploy` deploys in a job a server leased. The job's
/// workspace is removed when the job ends, so a controller started there
/// would serve from a deleted directory and clash with the next one for the
/// environment's addresses: the deployment belongs to the server's own view
/// of the project (the watched checkout whose environments its delivery API,
/// `hangar status|down --server` and `/metrics` read).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobDeploy {
    /// Through the server that leased the job, with a key it derived for
    /// this attempt of this job alone: the server deploys the job's own
    /// (already approved) environment of the job's repository at the job's
    /// commit, and refuses anything else.
    Server {
        /// The server's base URL as the agent reached it.
        url: String,
        job_id: i64,
        fence: i64,
        /// Sent as `X-Hangar-Deploy`; valid while this attempt runs.
        key: String,
    },
    /// The server will not deploy for this job, and why (a fork's pull
    /// request, no `environment:`, a repository it does not watch).
    Refused(String),
}

impl std::fmt::Debug for JobDeploy {
    // The key is a credential: never in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobDeploy::Server {
                url, job_id, fence, ..
            } => f
                .debug_struct("Server")
                .field("url", url)
                .field("job_id", job_id)
                .field("fence", fence)
                .finish_non_exhaustive(),
            JobDeploy::Refused(why) => f.debug_tuple("Refused").field(why).finish(),
        }
    }
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
            if event_name == "pull_request_target" {
                // GitHub runs the base branch's workflow at the base branch:
                // its ref and commit, never the pull request's.
                if !base_ref.is_empty() {
                    git_ref = format!("refs/heads/{base_ref}");
                }
                if let Some(s) = pr.pointer("/base/sha").and_then(Value::as_str) {
                    sha = s.to_string();
                }
            } else {
                if let Some(n) = event.get("number").or_else(|| pr.get("number")) {
                    git_ref = format!("refs/pull/{n}/merge");
                }
                if let Some(s) = pr.pointer("/head/sha").and_then(Value::as_str) {
                    sha = s.to_string();
                }
            }
        } else if let Some(s) = event.get("after").and_then(Value::as_str)
            && s.len() == 40
            && s.bytes().any(|b| b != b'0')
        {
            sha = s.to_string();
        }
        let actor = event_actor(&event).unwrap_or_else(|| git.actor.clone());
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
        // Unique in this process too: two runs started in the same
        // millisecond (concurrent tests, a library running several) must not
        // share a directory that the first to finish removes.
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nth = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run_dir =
            std::env::temp_dir().join(format!("hangar-run-{run_id}-{}-{nth}", std::process::id()));
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
            environments: None,
            environment_secrets: BTreeMap::new(),
            environment_vars: BTreeMap::new(),
            environment_approved: false,
            deploy_home: None,
            job_deploy: None,
        }
    }

    /// `refs/heads/main` → (`main`, `branch`).
    pub fn ref_name_and_type(&self) -> (String, &'static str) {
        ref_name_and_type(&self.git_ref)
    }

    /// The facts of this run for [`github_context`], in `workflow`'s job `job`.
    pub fn github_facts(&self, workflow: &crate::Workflow, job: &str) -> GithubFacts {
        self.github_facts_for(&crate::compiled::CompiledWorkflow::of(workflow), job)
    }

    /// [`RunContext::github_facts`] from a compiled job's workflow.
    pub fn github_facts_for(
        &self,
        workflow: &crate::compiled::CompiledWorkflow,
        job: &str,
    ) -> GithubFacts {
        GithubFacts {
            event_name: self.event_name.clone(),
            event: self.event.clone(),
            git_ref: self.git_ref.clone(),
            sha: self.sha.clone(),
            repository: self.repository.clone(),
            actor: self.actor.clone(),
            head_ref: self.head_ref.clone(),
            base_ref: self.base_ref.clone(),
            run_id: self.run_id.clone(),
            run_number: self.run_number.clone(),
            run_attempt: self.run_attempt.clone(),
            server_url: self.server_url.clone(),
            workflow: workflow.name.clone(),
            workflow_path: workflow.path.clone(),
            job: job.to_string(),
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

/// What the `github` context is made of: facts of the event and the run,
/// held alike by `hangar run` ([`RunContext::github_facts`]) and by the
/// server (from its run row). [`github_context`] is the one builder of the
/// context from them, so a local run and a server run of the same event see
/// the same `github`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GithubFacts {
    pub event_name: String,
    /// The webhook payload (`github.event`).
    pub event: Value,
    /// The full ref: `refs/heads/feature/x`, `refs/tags/v1`, `refs/pull/1/merge`.
    pub git_ref: String,
    pub sha: String,
    /// `owner/name`.
    pub repository: String,
    pub actor: String,
    pub head_ref: String,
    pub base_ref: String,
    pub run_id: String,
    pub run_number: String,
    pub run_attempt: String,
    pub server_url: String,
    /// The workflow's `name:` (or its path when unnamed).
    pub workflow: String,
    /// The workflow file from the repository root (`.github/workflows/ci.yml`).
    pub workflow_path: String,
    /// The job id.
    pub job: String,
}

/// What only the runner of a job knows: its files and workspace, and the
/// token. Absent where a job's steps are not running (job `if:`, concurrency).
#[derive(Clone, Debug, Default)]
pub struct RunnerFiles {
    pub env: String,
    pub event_path: String,
    pub output: String,
    pub path: String,
    pub state: String,
    pub step_summary: String,
    pub token: String,
    pub workspace: String,
}

/// `github.actor` from a payload: the account that triggered the event
/// (`sender.login`), else a push's pusher.
pub fn event_actor(event: &Value) -> Option<String> {
    ["/sender/login", "/pusher/name"]
        .iter()
        .filter_map(|p| event.pointer(p).and_then(Value::as_str))
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

/// A pull request's head and base branches from its payload (empty for
/// other events).
pub fn pr_refs(event: &Value) -> (String, String) {
    let at = |p: &str| {
        event
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match event.get("pull_request") {
        Some(_) => (at("/pull_request/head/ref"), at("/pull_request/base/ref")),
        None => (String::new(), String::new()),
    }
}

/// `refs/heads/feature/x` → (`feature/x`, `branch`): the whole name after the
/// kind, slashes and all, as GitHub gives `github.ref_name`.
pub fn ref_name_and_type(git_ref: &str) -> (String, &'static str) {
    if let Some(b) = git_ref.strip_prefix("refs/heads/") {
        (b.to_string(), "branch")
    } else if let Some(t) = git_ref.strip_prefix("refs/tags/") {
        (t.to_string(), "tag")
    } else if let Some(p) = git_ref.strip_prefix("refs/pull/") {
        // `<number>/merge`, as GitHub names a pull request's ref.
        (p.to_string(), "branch")
    } else if let Some(p) = git_ref.strip_prefix("refs/") {
        (p.to_string(), "branch")
    } else {
        (git_ref.to_string(), "branch")
    }
}

/// The `github` context from `facts`, with the runner's own fields when a
/// job's steps are running.
pub fn github_context(facts: &GithubFacts, runner: Option<&RunnerFiles>) -> Map<String, Value> {
    // A pull request runs on its merge ref, whichever of its refs was fetched.
    let merge_ref;
    let git_ref = match facts.git_ref.strip_suffix("/head") {
        Some(pr) if facts.event_name == "pull_request" && pr.starts_with("refs/pull/") => {
            merge_ref = format!("{pr}/merge");
            &merge_ref
        }
        _ => &facts.git_ref,
    };
    let (ref_name, ref_type) = ref_name_and_type(git_ref);
    let owner = facts.repository.split('/').next().unwrap_or("");
    // Numeric ids from the payload (GitHub sends them as strings in the
    // context and the environment); "0" for a payload built locally.
    let id_at = |pointer: &str| -> String {
        match facts.event.pointer(pointer) {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => "0".to_string(),
        }
    };
    let mut github = Map::new();
    let mut gh = |k: &str, v: Value| {
        github.insert(k.to_string(), v);
    };
    let local = |gh: &mut dyn FnMut(&str, Value), k: &str, f: fn(&RunnerFiles) -> &String| {
        if let Some(r) = runner {
            gh(k, json!(f(r)));
        }
    };
    gh("action", json!(""));
    gh("action_path", json!(""));
    gh("action_ref", json!(""));
    gh("action_repository", json!(""));
    gh("actor", json!(facts.actor));
    gh("actor_id", json!(id_at("/sender/id")));
    gh("api_url", json!("https://api.github.com"));
    gh("base_ref", json!(facts.base_ref));
    local(&mut gh, "env", |r| &r.env);
    gh("event", facts.event.clone());
    gh("event_name", json!(facts.event_name));
    local(&mut gh, "event_path", |r| &r.event_path);
    gh("graphql_url", json!("https://api.github.com/graphql"));
    gh("head_ref", json!(facts.head_ref));
    gh("job", json!(facts.job));
    local(&mut gh, "output", |r| &r.output);
    local(&mut gh, "path", |r| &r.path);
    gh("ref", json!(git_ref));
    gh("ref_name", json!(ref_name));
    gh("ref_protected", json!(false));
    gh("ref_type", json!(ref_type));
    gh("repository", json!(facts.repository));
    gh("repository_id", json!(id_at("/repository/id")));
    gh("repository_owner", json!(owner));
    gh("repository_owner_id", json!(id_at("/repository/owner/id")));
    gh(
        "repositoryUrl",
        json!(format!("{}/{}.git", facts.server_url, facts.repository)),
    );
    gh("retention_days", json!("0"));
    gh("run_attempt", json!(facts.run_attempt));
    gh("run_id", json!(facts.run_id));
    gh("run_number", json!(facts.run_number));
    gh("secret_source", json!("None"));
    gh("server_url", json!(facts.server_url));
    gh("sha", json!(facts.sha));
    local(&mut gh, "state", |r| &r.state);
    local(&mut gh, "step_summary", |r| &r.step_summary);
    local(&mut gh, "token", |r| &r.token);
    gh("triggering_actor", json!(facts.actor));
    gh("workflow", json!(facts.workflow));
    gh(
        "workflow_ref",
        json!(format!(
            "{}/{}@{}",
            facts.repository, facts.workflow_path, git_ref
        )),
    );
    gh("workflow_sha", json!(facts.sha));
    local(&mut gh, "workspace", |r| &r.workspace);
    github
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

/// The `strategy` context of leg `index` of the `total` legs of a job whose
/// `strategy:` is `strategy` (evaluated, or as written): GitHub's
/// `fail-fast` (true unless `false`), `job-index`, `job-total` and
/// `max-parallel` (the number of legs when unset). A job without a
/// strategy has one leg. The one builder, used by `hangar run` for each leg
/// it starts and by the server for each leg it plans.
pub fn strategy_context(strategy: &Value, index: usize, total: usize) -> Map<String, Value> {
    let fail_fast = strategy
        .get("fail-fast")
        .map(|v| {
            !matches!(v, Value::Bool(false))
                && crate::workflow::scalar_string(v).as_deref() != Some("false")
        })
        .unwrap_or(true);
    let max_parallel = strategy
        .get("max-parallel")
        .and_then(|v| crate::workflow::scalar_string(v)?.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(total);
    let mut cx = Map::new();
    cx.insert("fail-fast".into(), json!(fail_fast));
    cx.insert("job-index".into(), json!(index));
    cx.insert("job-total".into(), json!(total));
    cx.insert("max-parallel".into(), json!(max_parallel));
    cx
}

/// The `needs` context from each needed job's id, result (its legs'
/// aggregate) and outputs: `{id: {result, outputs}}`. The one builder, used
/// by `hangar run` and by the server.
pub fn needs_context(
    needs: impl IntoIterator<
        Item = (
            String,
            Option<hangar_status::Conclusion>,
            Map<String, Value>,
        ),
    >,
) -> Map<String, Value> {
    needs
        .into_iter()
        .map(|(id, result, outputs)| {
            (
                id,
                json!({"result": result.map(|r| r.as_str()), "outputs": outputs}),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs started together in one process get run directories of their
    /// own (one removes its directory when it is dropped).
    #[test]
    fn runs_started_together_have_their_own_run_directories() {
        let dir = std::env::temp_dir();
        let a = RunContext::new(&dir, "push", None);
        let b = RunContext::new(&dir, "push", None);
        assert_ne!(a.run_dir, b.run_dir);
    }

    #[test]
    fn pull_request_target_runs_at_the_base_branch() {
        let dir = std::env::temp_dir();
        let (base, head) = ("b".repeat(40), "a".repeat(40));
        let payload = json!({"number": 7, "pull_request": {
            "number": 7,
            "head": {"sha": head, "ref": "feature"},
            "base": {"sha": base, "ref": "main"}}});
        let t = RunContext::new(&dir, "pull_request_target", Some(payload.clone()));
        assert_eq!(
            (t.git_ref.as_str(), t.sha.as_str()),
            ("refs/heads/main", base.as_str())
        );
        assert_eq!(
            (t.head_ref.as_str(), t.base_ref.as_str()),
            ("feature", "main")
        );
        let p = RunContext::new(&dir, "pull_request", Some(payload));
        assert_eq!(
            (p.git_ref.as_str(), p.sha.as_str()),
            ("refs/pull/7/merge", head.as_str())
        );
    }

    #[test]
    fn ref_names_are_whole_names() {
        for (git_ref, name, kind) in [
            ("refs/heads/feature/x", "feature/x", "branch"),
            ("refs/heads/main", "main", "branch"),
            ("refs/tags/v1/rc", "v1/rc", "tag"),
            ("refs/pull/7/merge", "7/merge", "branch"),
            ("main", "main", "branch"),
        ] {
            assert_eq!(ref_name_and_type(git_ref), (name.to_string(), kind));
        }
    }

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
