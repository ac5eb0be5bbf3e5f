//! Commit statuses on the forge: every job of a run becomes one status on its
//! commit, named as GitHub names a workflow's checks
//! (`<workflow name> / <job name> (<event>)`), pending while it waits or runs and
//! then its conclusion, with a link to the run's page.
//!
//! The forges' documented endpoints:
//! - GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, `Authorization:
//!   Bearer`, states `pending|success|failure|error`;
//! - Gitea and Forgejo: the same path under `/api/v1`, `Authorization: token`,
//!   the same states;
//! - GitLab: `POST {api}/projects/{url-encoded path}/statuses/{sha}` with
//!   `name` for the context, `PRIVATE-TOKEN`, states
//!   `pending|running|success|failed|canceled|skipped`.
//!
//! Delivery is asynchronous and never holds up scheduling: each update is a task.
//! Updates of one context are sent in order and a superseded one is dropped
//! (a slow `pending` can never land after the conclusion); a state equal to the
//! last one delivered is not sent again (GitLab refuses a transition to the
//! state a status already has). A 5xx, 429, timeout or connection error is
//! retried with bounded exponential backoff; any other 4xx is the forge saying
//! no (bad token, unknown repository) and is not retried. Every final outcome is
//! written to the store's outbound log (`GET /api/v1/outbound`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use hangar_store::{ForgeCredential, Job, NewOutbound, Run, Store};

/// How hard delivery tries. Tests shorten the backoff.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The forges hangar reports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    Gitea,
    GitLab,
}

impl Forge {
    pub fn parse(s: &str) -> Option<Forge> {
        match s {
            "github" => Some(Forge::GitHub),
            "gitea" | "forgejo" => Some(Forge::Gitea),
            "gitlab" => Some(Forge::GitLab),
            _ => None,
        }
    }

    /// The headers every request to this forge carries: its way of sending
    /// the token (`Bearer` on GitHub, `token` on Gitea and Forgejo,
    /// `PRIVATE-TOKEN` on GitLab) and GitHub's media type and API version.
    pub fn headers(self, token: &str) -> Vec<(&'static str, String)> {
        match self {
            Forge::GitHub => vec![
                ("authorization", format!("Bearer {token}")),
                ("accept", "application/vnd.github+json".into()),
                ("x-github-api-version", "2022-11-28".into()),
            ],
            Forge::Gitea => vec![("authorization", format!("token {token}"))],
            Forge::GitLab => vec![("private-token", token.to_string())],
        }
    }

    pub fn default_api_url(self) -> Option<&'static str> {
        match self {
            Forge::GitHub => Some("https://api.github.com"),
            Forge::GitLab => Some("https://gitlab.com/api/v4"),
            Forge::Gitea => None,
        }
    }
}

/// Checks a credential before it is stored: a forge hangar knows, an http(s) API
/// root, a project path that cannot leave its URL segment.
pub fn validate(cred: &ForgeCredential) -> Result<(), String> {
    if Forge::parse(&cred.kind).is_none() {
        return Err(format!(
            "unknown forge `{}`: use github, gitea, forgejo or gitlab",
            cred.kind
        ));
    }
    let url = cred.api_url.trim_end_matches('/');
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err(format!(
            "`api_url` `{}` must start with https:// (or http:// for a forge on a private network)",
            cred.api_url
        ));
    };
    if rest.is_empty() || rest.contains(['?', '#', ' ', '@']) {
        return Err(format!(
            "`api_url` `{}` must be the API root only, e.g. https://api.github.com, with no credentials, query or fragment",
            cred.api_url
        ));
    }
    let parts: Vec<&str> = cred.project.split('/').collect();
    let ok_part = |p: &&str| {
        !p.is_empty()
            && *p != "."
            && *p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if parts.len() < 2 || !parts.iter().all(ok_part) {
        return Err(format!(
            "`project` `{}` must be the repository's path on the forge, e.g. owner/name (letters, digits, - _ .)",
            cred.project
        ));
    }
    if cred.token.trim().is_empty() {
        return Err("`token` is required: a token that may write commit statuses".into());
    }
    Ok(())
}

/// One status to put on a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub sha: String,
    pub git_ref: String,
    pub context: String,
    /// hangar's view: `pending`, `running`, `success`, `failure`, `cancelled`, `skipped`.
    pub state: &'static str,
    pub description: String,
    pub target_url: String,
}

/// The context GitHub shows for a job of a workflow run.
pub fn context(workflow_name: &str, job_name: &str, event: &str) -> String {
    format!("{workflow_name} / {job_name} ({event})")
}

/// The commit a run's statuses and check runs belong on: a pull request's
/// head, as on GitHub, also when the run built its merge commit.
pub(crate) fn reported_sha(store: &Arc<dyn Store>, run: &Run) -> String {
    if run.git_ref.starts_with("refs/pull/")
        && run.git_ref.ends_with("/merge")
        && let Ok(p) = store.run_payload(run.id)
        && let Some(head) = p.pointer("/pull_request/head/sha").and_then(Value::as_str)
        && hangar_git::is_commit_id(head)
    {
        return head.to_string();
    }
    run.sha.clone()
}

/// A GitHub repository's credential through the server-wide App: the App's
/// API root, the repository's `owner/name`, the App (its installation found
/// per repository).
pub(crate) fn server_app_credential(
    store: &Arc<dyn Store>,
    repo_id: i64,
) -> Option<ForgeCredential> {
    use crate::github_app::{ServerApp, github_project};
    let repo = store.get_repo(repo_id).ok()??;
    if repo.forge != "github" {
        return None;
    }
    let (app, api_url) = match ServerApp::load(store) {
        Ok(a) => a?,
        Err(e) => {
            tracing::warn!("{e:#}");
            return None;
        }
    };
    Some(ForgeCredential {
        kind: "github".into(),
        api_url,
        project: github_project(&repo.name, &repo.clone_url)?,
        token: app.checks().encode(),
    })
}

/// What a job's state means on the forge, in hangar's words.
pub fn job_status(run: &Run, job: &Job, base_url: &str) -> Status {
    use hangar_store::{Conclusion as C, Status as S};
    let (state, description): (&'static str, String) = match job.status {
        S::Completed => match job.conclusion {
            Some(C::Success) => ("success", "Successful".into()),
            Some(C::Skipped) => ("skipped", "Skipped".into()),
            Some(C::Cancelled) => ("cancelled", "Cancelled".into()),
            Some(C::Failure) | None => ("failure", "Failing".into()),
        },
        S::Running => ("running", "In progress".into()),
        S::Queued => ("pending", "Queued".into()),
        S::Waiting => (
            "pending",
            job.waiting_reason
                .clone()
                .unwrap_or_else(|| "Waiting".into()),
        ),
    };
    Status {
        sha: run.sha.clone(),
        git_ref: run.git_ref.clone(),
        context: context(&run.workflow_name, &job.name, &run.event),
        state,
        description,
        target_url: format!("{}/ui/#/runs/{}", base_url.trim_end_matches('/'), run.id),
    }
}

/// The request a forge expects for a status: URL, auth header, JSON body.
pub fn request_for(
    forge: Forge,
    cred: &ForgeCredential,
    s: &Status,
) -> (String, (&'static str, String), Value) {
    let api = cred.api_url.trim_end_matches('/');
    // The forge rejects descriptions over 140 characters (GitHub) or 255 (GitLab).
    let description: String = s.description.chars().take(140).collect();
    match forge {
        Forge::GitHub | Forge::Gitea => {
            let state = match s.state {
                "pending" | "running" => "pending",
                "success" | "skipped" => "success",
                "failure" => "failure",
                _ => "error",
            };
            let auth = forge.headers(&cred.token).swap_remove(0);
            (
                format!("{api}/repos/{}/statuses/{}", cred.project, s.sha),
                auth,
                json!({
                    "state": state,
                    "target_url": s.target_url,
                    "description": description,
                    "context": s.context,
                }),
            )
        }
        Forge::GitLab => {
            let state = match s.state {
                "pending" => "pending",
                "running" => "running",
                "success" => "success",
                "skipped" => "skipped",
                "cancelled" => "canceled",
                _ => "failed",
            };
            let branch = s
                .git_ref
                .strip_prefix("refs/heads/")
                .or_else(|| s.git_ref.strip_prefix("refs/tags/"));
            let mut body = json!({
                "state": state,
                "name": s.context,
                "target_url": s.target_url,
                "description": description,
            });
            if let Some(b) = branch {
                body["ref"] = json!(b);
            }
            (
                format!(
                    "{api}/projects/{}/statuses/{}",
                    cred.project.replace('/', "%2F"),
                    s.sha
                ),
                forge.headers(&cred.token).swap_remove(0),
                body,
            )
        }
    }
}

/// The outcome of delivering one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub attempts: u32,
    /// `delivered`, `refused` (4xx, not retried) or `failed` (retries exhausted).
    pub outcome: &'static str,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

/// Sends one JSON request with retries on 5xx, 429, timeouts and connection
/// errors, and none on other 4xx. `headers` are sent as given (credentials
/// included), and never logged.
pub async fn send_with_retries(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Outcome {
    send(
        client,
        policy,
        reqwest::Method::POST,
        url,
        headers,
        Some(body),
    )
    .await
    .0
}

/// [`send_with_retries`] with any method, returning the JSON the forge answered
/// a successful request with (a created check run's id, an installation token).
pub async fn send(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> (Outcome, Option<Value>) {
    let mut backoff = policy.first_backoff;
    let mut last = Outcome {
        attempts: 0,
        outcome: "failed",
        http_status: None,
        error: None,
    };
    for attempt in 1..=policy.attempts.max(1) {
        last.attempts = attempt;
        let mut req = client
            .request(method.clone(), url)
            .timeout(policy.timeout)
            .header("user-agent", concat!("hangar/", env!("CARGO_PKG_VERSION")));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_vec());
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.send().await {
            Ok(resp) => {
                let code = resp.status();
                last.http_status = Some(code.as_u16());
                if code.is_success() {
                    last.outcome = "delivered";
                    last.error = None;
                    // A body that never ends is the forge's fault, not a
                    // reason to hold the slot: bounded by the timeout.
                    let answer = tokio::time::timeout(policy.timeout, resp.bytes())
                        .await
                        .ok()
                        .and_then(|b| b.ok())
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    return (last, answer);
                }
                let text: String = resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                last.error = Some(format!("HTTP {code}: {text}"));
                if code.is_client_error() && code.as_u16() != 429 {
                    last.outcome = "refused";
                    return (last, None);
                }
            }
            Err(e) => {
                last.http_status = None;
                // Without the URL: it is in `target` already, and stays free of
                // anything a user put in a query string.
                last.error = Some(e.without_url().to_string());
            }
        }
        if attempt < policy.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }
    last.outcome = "failed";
    (last, None)
}

pub(crate) type Key = (i64, String, String);

#[derive(Default)]
pub(crate) struct Slot {
    /// The forge state last delivered.
    pub(crate) delivered: Option<&'static str>,
    /// GitHub's id of the job's check run, once created.
    pub(crate) check_run: Option<u64>,
}

/// Reports job states to the forge of each repository that has a credential.
pub struct Reporter {
    pub(crate) client: reqwest::Client,
    pub policy: RetryPolicy,
    /// The server's address as users reach it, for the links on statuses.
    pub base_url: Mutex<String>,
    slots: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Slot>>>>,
    seq: std::sync::atomic::AtomicU64,
    newest: Mutex<HashMap<Key, u64>>,
    /// GitHub App installation tokens; held across an exchange so that the jobs
    /// of a run starting together cost one exchange.
    pub(crate) tokens: tokio::sync::Mutex<crate::github_checks::TokenCache>,
    /// Each repository's resolved credential (its own, the server-wide App's,
    /// or none), reused for [`CREDENTIAL_TTL`]: every change of every job asks,
    /// and two lookups a change were a good share of a job's database trips.
    credentials: Mutex<HashMap<i64, (std::time::Instant, Option<ForgeCredential>)>>,
    /// What a status needs of its run (ids, commit as reported, ref, names),
    /// none of which changes once the run exists: read once per run.
    runs: Mutex<HashMap<i64, Run>>,
}

/// How long a repository's credential, or its absence, is reused. One set or
/// removed through this server's API is seen at once
/// ([`Reporter::forget_credentials`]); one changed through another server on
/// the same database, within this long.
const CREDENTIAL_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs remembered by [`Reporter::run`] at most (forgotten all at once past it).
const RUNS_REMEMBERED: usize = 4096;

/// What [`Reporter::reporting`] found for a run.
struct Reporting {
    cred: ForgeCredential,
    forge: Forge,
    base: String,
    checks: Option<crate::github_checks::ChecksCredential>,
}

impl Reporter {
    pub fn new(policy: RetryPolicy) -> Reporter {
        Reporter {
            client: reqwest::Client::new(),
            policy,
            base_url: Mutex::new(String::new()),
            slots: Default::default(),
            seq: Default::default(),
            newest: Default::default(),
            tokens: Default::default(),
            credentials: Default::default(),
            runs: Default::default(),
        }
    }

    /// A forge credential or the server-wide App was set or removed.
    pub fn forget_credentials(&self) {
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The credential `repo_id` reports with, if any (see `credentials`).
    fn credential(&self, store: &Arc<dyn Store>, repo_id: i64) -> Option<ForgeCredential> {
        if let Some((at, c)) = self
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&repo_id)
            && at.elapsed() < CREDENTIAL_TTL
        {
            return c.clone();
        }
        let cred = match store.forge_credential(repo_id) {
            Ok(Some(c)) => Some(c),
            // A repository's own credential wins; without one, a GitHub
            // repository reports through the server-wide App, if any.
            Ok(None) => server_app_credential(store, repo_id),
            Err(e) => {
                // Not remembered: the next change asks again.
                tracing::warn!(repo = repo_id, "reading the forge credential: {e:#}");
                return None;
            }
        };
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(repo_id, (std::time::Instant::now(), cred.clone()));
        cred
    }

    /// Run `id` as its statuses show it, its commit the one reported.
    fn run(&self, store: &Arc<dyn Store>, id: i64) -> Option<Run> {
        if let Some(r) = self.runs.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Some(r.clone());
        }
        let mut run = store.get_run(id).ok()??;
        run.sha = reported_sha(store, &run);
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.len() >= RUNS_REMEMBERED {
            runs.clear();
        }
        runs.insert(id, run.clone());
        Some(run)
    }

    /// Takes a sequence number for a new state of `key` and the key's slot.
    pub(crate) fn enqueue(&self, key: &Key) -> (u64, Arc<tokio::sync::Mutex<Slot>>) {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), seq);
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        (seq, slot)
    }

    /// Whether a newer state of `key` came in after `seq`.
    pub(crate) fn superseded(&self, key: &Key, seq: u64) -> bool {
        self.newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|n| *n > seq)
    }

    /// After a final state: forgets the context unless a newer state came in
    /// (a re-run starts it again with a fresh slot).
    pub(crate) fn forget(&self, key: &Key, seq: u64) {
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        if newest.get(key) == Some(&seq) {
            newest.remove(key);
            self.slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
        }
    }

    /// Called whenever a job changed: queues the status its state means, when
    /// the repository reports to a forge. Returns at once.
    pub fn job_changed(self: &Arc<Self>, store: &Arc<dyn Store>, job: &Job) {
        // Only the run's fields that never change are read (see `run`).
        let Some(run) = self.run(store, job.run_id) else {
            return;
        };
        let Some(Reporting {
            cred,
            forge,
            base,
            checks,
        }) = self.reporting(store, &run)
        else {
            return;
        };
        if let Some(checks) = checks {
            self.check_changed(store, run, job.clone(), cred, checks, base);
            return;
        }
        let status = job_status(&run, job, &base);
        self.deliver_status(store, &run, forge, cred, status);
    }

    /// How `run` is reported, if at all: its repository's forge credential
    /// (and on GitHub with an App, the Checks API's), and this server's
    /// address for the links. None when the repository reports to no forge,
    /// or when the run's commit id is not one: commit ids come from
    /// webhooks, and only a hex id reaches a URL.
    fn reporting(&self, store: &Arc<dyn Store>, run: &Run) -> Option<Reporting> {
        let cred = self.credential(store, run.repo_id)?;
        let forge = Forge::parse(&cred.kind)?;
        if !hangar_git::is_commit_id(&run.sha) {
            return None;
        }
        let base = self
            .base_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let checks = if forge == Forge::GitHub {
            crate::github_checks::ChecksCredential::decode(&cred.token)
        } else {
            None
        };
        Some(Reporting {
            cred,
            forge,
            base,
            checks,
        })
    }

    /// Called once for a run refused at intake, which has no jobs (an
    /// invalid workflow file, an unreadable pull request head): one failed
    /// status named after the run (`PATH (push)`), or on GitHub with the
    /// Checks API one failed check run named after it, whose annotation is
    /// `title` with `text` at the first error's line, as GitHub shows an
    /// invalid workflow file. Returns at once.
    pub fn run_refused(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        run: &Run,
        title: &str,
        text: &str,
        errors: &[crate::workflows::FileError],
    ) {
        let mut run = run.clone();
        run.sha = reported_sha(store, &run);
        let Some(Reporting {
            cred,
            forge,
            base,
            checks,
        }) = self.reporting(store, &run)
        else {
            return;
        };
        if let Some(checks) = checks {
            let line = errors
                .iter()
                .find(|e| e.file.as_deref() == Some(run.workflow_path.as_str()))
                .and_then(|e| e.line);
            self.refused_check(store, run, cred, checks, base, title, text, line);
            return;
        }
        let status = Status {
            sha: run.sha.clone(),
            git_ref: run.git_ref.clone(),
            context: format!("{} ({})", run.workflow_name, run.event),
            state: "failure",
            description: title.to_string(),
            target_url: format!("{}/ui/#/runs/{}", base.trim_end_matches('/'), run.id),
        };
        self.deliver_status(store, &run, forge, cred, status);
    }

    /// Sends `status` of `run` in the background, in order per context.
    fn deliver_status(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        run: &Run,
        forge: Forge,
        cred: ForgeCredential,
        status: Status,
    ) {
        let key: Key = (run.repo_id, status.sha.clone(), status.context.clone());
        let (seq, slot) = self.enqueue(&key);
        let me = self.clone();
        let store = store.clone();
        let run_id = run.id;
        let repo_id = run.repo_id;
        tokio::spawn(async move {
            let mut slot = slot.lock().await;
            if me.superseded(&key, seq) {
                return; // superseded by a newer state of the same context
            }
            let (url, _, body) = request_for(forge, &cred, &status);
            let wire_state = body["state"].as_str().unwrap_or_default();
            if slot.delivered.is_some_and(|d| d == wire_state) {
                return;
            }
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let headers = forge.headers(&cred.token);
            let out = send_with_retries(&me.client, &me.policy, &url, &headers, &bytes).await;
            if out.outcome == "delivered" {
                slot.delivered = Some(match wire_state {
                    "pending" => "pending",
                    "running" => "running",
                    "success" => "success",
                    "failure" => "failure",
                    "failed" => "failed",
                    "canceled" => "canceled",
                    "skipped" => "skipped",
                    _ => "error",
                });
            } else {
                tracing::warn!(
                    repo = repo_id,
                    context = %status.context,
                    "commit status not delivered after {} attempt(s): {}",
                    out.attempts,
                    out.error.as_deref().unwrap_or(out.outcome)
                );
            }
            if status.state != "pending" && status.state != "running" {
                me.forget(&key, seq);
            }
            let _ = store.record_outbound(&NewOutbound {
                kind: "status".into(),
                repo_id: Some(repo_id),
                run_id: Some(run_id),
                target: url,
                subject: status.context.clone(),
                state: wire_state.to_string(),
                attempts: out.attempts as i64,
                outcome: out.outcome.into(),
                http_status: out.http_status.map(i64::from),
                error: out.error,
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(kind: &str) -> ForgeCredential {
        ForgeCredential {
            kind: kind.into(),
            api_url: "https://forge.example/api/v1/".into(),
            project: "acme/app".into(),
            token: "t0ken".into(),
        }
    }

    #[test]
    fn credentials_are_checked_before_they_are_stored() {
        assert!(validate(&cred("github")).is_ok());
        assert!(
            validate(&cred("bitbucket"))
                .unwrap_err()
                .contains("unknown forge")
        );
        for project in ["acme", "acme/../x", "acme/app?x=1", "/app", "acme/a b"] {
            let c = ForgeCredential {
                project: project.into(),
                ..cred("github")
            };
            assert!(validate(&c).is_err(), "{project}");
        }
        for url in ["ftp://x", "https://u:p@x", "https://x/?a", "api.github.com"] {
            let c = ForgeCredential {
                api_url: url.into(),
                ..cred("github")
            };
            assert!(validate(&c).is_err(), "{url}");
        }
    }

    #[test]
    fn gitlab_gets_its_own_states_path_and_header() {
        let s = Status {
            sha: "a".repeat(40),
            git_ref: "refs/heads/main".into(),
            context: "ci / build (push)".into(),
            state: "cancelled",
            description: "x".repeat(300),
            target_url: "http://h/ui/#/runs/1".into(),
        };
        let (url, auth, body) = request_for(Forge::GitLab, &cred("gitlab"), &s);
        assert_eq!(
            url,
            format!(
                "https://forge.example/api/v1/projects/acme%2Fapp/statuses/{}",
                s.sha
            )
        );
        assert_eq!(auth, ("private-token", "t0ken".to_string()));
        assert_eq!(body["state"], "canceled");
        assert_eq!(body["name"], "ci / build (push)");
        assert_eq!(body["ref"], "main");
        assert_eq!(body["description"].as_str().unwrap().len(), 140);
        let (_, auth, body) = request_for(Forge::GitHub, &cred("github"), &s);
        assert_eq!(auth.1, "Bearer t0ken");
        assert_eq!(body["state"], "error");
        let (_, auth, _) = request_for(Forge::Gitea, &cred("gitea"), &s);
        assert_eq!(auth.1, "token t0ken");
    }
}
