//! GitHub's Checks API: one check run per job, with the job's annotations.
//!
//! Check runs can only be written by a GitHub App (or with an installation
//! token, such as a workflow's `GITHUB_TOKEN`, that has `checks: write`). With
//! an App, hangar signs a JWT (RS256, `iss` = the App's id, valid for ten
//! minutes, `iat` back-dated a minute for clock drift, as GitHub's docs say)
//! with the App's private key, exchanges it at
//! `POST /app/installations/{id}/access_tokens` for an installation token and
//! caches that token until five minutes before the `expires_at` GitHub gives.
//! Without an installation id, `GET /repos/{owner}/{repo}/installation` finds it.
//!
//! The lifecycle of a job's check run (`docs.github.com`, REST, checks/runs):
//! created `queued` (`POST /repos/{owner}/{repo}/check-runs`), updated
//! `in_progress` with `started_at`, then `completed` with its `conclusion`,
//! `completed_at` and an `output` whose `annotations` come from the job's
//! `::error`/`::warning`/`::notice` workflow commands. GitHub takes at most 50
//! annotations per request and appends those of each update, so the rest follow
//! in further updates of 50.
//!
//! The credential lives in the store's sealed token column: a plain token means
//! commit statuses (what GitHub, Gitea and GitLab all accept), a JSON object
//! means the Checks API with a token or an App. Keeping it in one sealed value
//! keeps the App's private key encrypted exactly like a token, with no new
//! column.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use hangar_store::{ForgeCredential, Job, NewOutbound, Run, Store};

use crate::forge_status::{Key, Outcome, Reporter, Slot, send};
use std::sync::Arc;

/// GitHub refuses more annotations than this in one request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
/// The most annotations one job sends (GitHub's own runner keeps far fewer per
/// step); a job printing a million `::error::` lines must not make a million
/// requests.
pub const MAX_ANNOTATIONS: usize = 500;

/// How the server authenticates to GitHub for check runs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksCredential {
    /// An installation token with `checks: write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The App's id (or its client id): the JWT's `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The App's installation on the repository's account; looked up when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// The App's private key, PEM (PKCS#1 as GitHub hands it out, or PKCS#8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

impl ChecksCredential {
    /// The sealed form, told apart from a plain token by its leading `{`.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `None` for a plain token (commit statuses).
    pub fn decode(sealed: &str) -> Option<ChecksCredential> {
        if !sealed.starts_with('{') {
            return None;
        }
        serde_json::from_str(sealed).ok()
    }

    /// Checks the credential before it is stored: exactly one of a token and an
    /// App, an App id that fits a JWT claim, a private key that signs.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.token, &self.app_id, &self.private_key) {
            (Some(t), None, None) if !t.trim().is_empty() && self.installation_id.is_none() => {
                Ok(())
            }
            (None, Some(id), Some(pem)) => {
                if id.is_empty()
                    || id.len() > 64
                    || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
                {
                    return Err(format!(
                        "`app_id` `{id}` must be the GitHub App's id (e.g. 123456) or client id"
                    ));
                }
                parse_private_key(pem).map(|_| ())
            }
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(
                "give either `token` (an installation token with checks: write) or `app_id` and `private_key`, not both".into(),
            ),
            (None, Some(_), None) => Err("`private_key` is required with `app_id`: the App's PEM private key".into()),
            (None, None, Some(_)) => Err("`app_id` is required with `private_key`".into()),
            _ => Err(
                "the Checks API needs `token` (an installation token with checks: write) or a GitHub App's `app_id` and `private_key`".into(),
            ),
        }
    }
}

impl std::fmt::Debug for ChecksCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChecksCredential")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("private_key", &self.private_key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Reads a PEM RSA private key: `RSA PRIVATE KEY` (PKCS#1, GitHub's download)
/// or `PRIVATE KEY` (PKCS#8, what `openssl genpkey` writes).
pub fn parse_private_key(pem: &str) -> Result<RsaKeyPair, String> {
    let block = |label: &str| -> Option<Vec<u8>> {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let start = pem.find(&begin)? + begin.len();
        let stop = start + pem[start..].find(&end)?;
        let b64: String = pem[start..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        STANDARD.decode(b64).ok()
    };
    let key = if let Some(der) = block("RSA PRIVATE KEY") {
        RsaKeyPair::from_der(&der).map_err(|e| e.to_string())
    } else if let Some(der) = block("PRIVATE KEY") {
        RsaKeyPair::from_pkcs8(&der).map_err(|e| e.to_string())
    } else {
        return Err(
            "`private_key` is not a PEM RSA private key: paste the whole .pem file GitHub gave for the App, from -----BEGIN RSA PRIVATE KEY----- to its END line".into(),
        );
    };
    key.map_err(|e| format!("`private_key` could not be read as an RSA key ({e}): use the App's .pem file as downloaded"))
}

/// The App's JWT for `now` (seconds since the epoch), signed RS256.
pub fn app_jwt(app_id: &str, key: &RsaKeyPair, now: u64) -> Result<String, String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = json!({"iat": now.saturating_sub(60), "exp": now + 540, "iss": app_id});
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| "signing the GitHub App's JWT failed".to_string())?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How long an installation found by `GET /repos/{o}/{r}/installation` is
/// trusted before it is asked again (an installation's id is stable; a
/// missed `installation` webhook must not make a moved one stick for ever).
pub const INSTALLATION_TTL: Duration = Duration::from_secs(3600);
/// How long "the App is not installed there" is remembered after GitHub
/// answered 404, so a repository without the App costs one request per ten
/// minutes rather than one per job update.
pub const NOT_INSTALLED_TTL: Duration = Duration::from_secs(600);

/// Installation tokens by (API root, App identity, installation id), and
/// installations by (API root, App identity, repository in lower case):
/// `Some(id)`, or `None` where the App is known not to be installed.
#[derive(Default)]
pub struct TokenCache {
    tokens: HashMap<(String, String, u64), (String, Instant)>,
    installations: HashMap<(String, String, String), (Option<u64>, Instant)>,
}

impl TokenCache {
    pub fn token(&self, key: &(String, String, u64)) -> Option<String> {
        self.tokens
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    /// Keeps a token until five minutes before GitHub says it expires (an hour
    /// when it does not say).
    pub fn keep(&mut self, key: (String, String, u64), token: String, expires_at: Option<&str>) {
        let left = expires_at
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp() - unix_now() as i64)
            .unwrap_or(3600);
        let keep = Duration::from_secs(left.saturating_sub(300).max(0) as u64);
        self.tokens.insert(key, (token, Instant::now() + keep));
    }

    /// Drops a token GitHub no longer takes (revoked, App uninstalled).
    pub fn forget(&mut self, key: &(String, String, u64)) {
        self.tokens.remove(key);
    }

    /// `Some(Some(id))`: installed; `Some(None)`: known not to be; `None`:
    /// unknown or expired, to be asked.
    pub fn installation(&self, key: &(String, String, String)) -> Option<Option<u64>> {
        self.installations
            .get(&lower(key))
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(id, _)| *id)
    }

    pub fn keep_installation(
        &mut self,
        key: (String, String, String),
        id: Option<u64>,
        ttl: Duration,
    ) {
        self.installations
            .insert(lower(&key), (id, Instant::now() + ttl));
    }

    /// The repositories known to have an installation of the App `ident`.
    pub fn known(&self, api: &str, ident: &str) -> Vec<(String, u64)> {
        let now = Instant::now();
        let mut v: Vec<(String, u64)> = self
            .installations
            .iter()
            .filter(|((a, i, _), (id, until))| {
                a == api && i == ident && id.is_some() && now < *until
            })
            .filter_map(|((_, _, r), (id, _))| Some((r.clone(), (*id)?)))
            .collect();
        v.sort();
        v
    }

    pub fn forget_installation(&mut self, key: &(String, String, String)) {
        self.installations.remove(&lower(key));
    }

    /// What an `installation` or `installation_repositories` webhook says:
    /// repositories the installation now covers, repositories it no longer
    /// covers, or (`gone`) the whole installation deleted or suspended, its
    /// tokens dropped with it.
    pub fn installation_changed(
        &mut self,
        api: &str,
        ident: &str,
        id: u64,
        added: &[String],
        removed: &[String],
        gone: bool,
    ) {
        for r in added {
            self.keep_installation(
                (api.to_string(), ident.to_string(), r.clone()),
                Some(id),
                INSTALLATION_TTL,
            );
        }
        for r in removed {
            self.keep_installation(
                (api.to_string(), ident.to_string(), r.clone()),
                None,
                INSTALLATION_TTL,
            );
        }
        if gone {
            let until = Instant::now() + INSTALLATION_TTL;
            for ((a, i, _), entry) in self.installations.iter_mut() {
                if a == api && i == ident && entry.0 == Some(id) {
                    *entry = (None, until);
                }
            }
            self.tokens
                .remove(&(api.to_string(), ident.to_string(), id));
        }
    }
}

/// GitHub compares repository names without case.
fn lower(key: &(String, String, String)) -> (String, String, String) {
    (key.0.clone(), key.1.clone(), key.2.to_ascii_lowercase())
}

/// Which App (and which of its keys) a cached token belongs to: a
/// repository whose key GitHub refuses must not ride on another
/// repository's token of the same App.
pub fn app_ident(app_id: &str, pem: &str) -> String {
    use sha2::Digest as _;
    format!(
        "{app_id}#{}",
        hex::encode(&sha2::Sha256::digest(pem.as_bytes())[..8])
    )
}

/// One annotation as the Checks API takes it.
pub fn annotation(cmd: &hangar_engine::commands::Command, workflow_path: &str) -> Option<Value> {
    let level = match cmd.name.as_str() {
        "error" => "failure",
        "warning" => "warning",
        "notice" => "notice",
        _ => return None,
    };
    let num = |k: &str| {
        cmd.props
            .get(k)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n > 0)
    };
    // GitHub requires a path in the repository; an annotation without one (or
    // with one outside the checkout) is shown on the workflow file, as
    // GitHub's runner does.
    let file = cmd
        .props
        .get("file")
        .map(|f| f.trim().trim_start_matches("./").to_string())
        .filter(|f| {
            !f.is_empty()
                && !f.starts_with('/')
                && !f.contains('\\')
                && !f.split('/').any(|p| p == ".." || p.is_empty())
        });
    let (path, start, end) = match file {
        Some(f) => {
            let start = num("line").unwrap_or(1);
            let end = num("endline").unwrap_or(start).max(start);
            (f, start, end)
        }
        None => (workflow_path.to_string(), 1, 1),
    };
    let mut a = json!({
        "path": path,
        "start_line": start,
        "end_line": end,
        "annotation_level": level,
        "message": truncate(&cmd.message, 64 * 1024).to_string(),
    });
    if let Some(t) = cmd.props.get("title").filter(|t| !t.is_empty()) {
        a["title"] = json!(truncate(t, 255));
    }
    // Columns only on a one-line annotation, as the API requires.
    if start == end
        && let Some(c) = num("col")
    {
        a["start_column"] = json!(c);
        a["end_column"] = json!(num("endcolumn").unwrap_or(c).max(c));
    }
    Some(a)
}

/// The annotations of a job's log, at most [`MAX_ANNOTATIONS`], and how many
/// more there were.
pub fn annotations_from_log(log: &str, workflow_path: &str) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut dropped = 0;
    for line in log.lines() {
        let Some(cmd) = hangar_engine::commands::parse(line) else {
            continue;
        };
        if let Some(a) = annotation(&cmd, workflow_path) {
            if out.len() < MAX_ANNOTATIONS {
                out.push(a);
            } else {
                dropped += 1;
            }
        }
    }
    (out, dropped)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// ISO 8601 as the Checks API takes it (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn iso8601(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The check run's name: GitHub shows a workflow's job as `workflow / job`.
pub fn check_name(workflow_name: &str, job_name: &str) -> String {
    format!("{workflow_name} / {job_name}")
}

/// What the Checks API is told about a job in its current state: the body
/// of a create or update, without annotations, and the wire status.
pub fn check_body(run: &Run, job: &Job, base_url: &str) -> (Value, &'static str) {
    use hangar_store::{Conclusion as C, Status as S};
    let now = chrono::Utc::now().timestamp_millis();
    let mut body = json!({
        "name": check_name(&run.workflow_name, &job.name),
        "details_url": format!("{}/ui/#/runs/{}", base_url.trim_end_matches('/'), run.id),
        "external_id": job.id.to_string(),
    });
    let status = match job.status {
        S::Waiting | S::Queued => "queued",
        S::Running => "in_progress",
        S::Completed => "completed",
    };
    body["status"] = json!(status);
    if matches!(job.status, S::Running | S::Completed)
        && let Some(t) = job.started_at
    {
        body["started_at"] = json!(iso8601(t));
    } else if job.status == S::Running {
        body["started_at"] = json!(iso8601(now));
    }
    if job.status == S::Completed {
        let (conclusion, title) = match job.conclusion {
            Some(C::Success) => ("success", "Successful"),
            Some(C::Skipped) => ("skipped", "Skipped"),
            Some(C::Cancelled) => ("cancelled", "Cancelled"),
            Some(C::Failure) | None => ("failure", "Failing"),
        };
        body["conclusion"] = json!(conclusion);
        body["completed_at"] = json!(iso8601(job.finished_at.unwrap_or(now)));
        body["output"] = json!({
            "title": title,
            "summary": format!(
                "Job `{}` of workflow `{}` ({}, run {} attempt {}): {conclusion}.",
                job.name, run.workflow_name, run.event, run.id, job.attempt.max(1)
            ),
        });
    }
    (body, status)
}

/// Where a completed check run's annotations come from.
pub(crate) enum Annotations {
    /// The `::error`/`::warning`/`::notice` commands of this job's log.
    Log(i64),
    /// These, made by the server (a refused run's errors).
    Given(Vec<Value>),
}

/// The request headers GitHub's REST API wants.
fn github_headers(token: &str) -> Vec<(&'static str, String)> {
    crate::forge_status::Forge::GitHub.headers(token)
}

/// A request's outcome for the outbound log.
pub(crate) struct Sent {
    pub(crate) target: String,
    pub(crate) subject: String,
    pub(crate) state: String,
    pub(crate) out: Outcome,
}

impl Sent {
    /// Its line of the outbound log, as `kind` (`check`, `release-tag`).
    pub(crate) fn outbound(self, kind: &str, repo_id: i64, run_id: Option<i64>) -> NewOutbound {
        NewOutbound {
            kind: kind.into(),
            repo_id: Some(repo_id),
            run_id,
            target: self.target,
            subject: self.subject,
            state: self.state,
            attempts: self.out.attempts as i64,
            outcome: self.out.outcome.into(),
            http_status: self.out.http_status.map(i64::from),
            error: self.out.error,
        }
    }
}

impl Reporter {
    /// A job changed on a repository that reports check runs: creates or
    /// updates its check run in the background, in order per job.
    pub(crate) fn check_changed(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        run: Run,
        job: Job,
        cred: ForgeCredential,
        checks: ChecksCredential,
        base: String,
    ) {
        // One check run per job and run: a push and a pull request of one
        // commit are two runs, each with its own check runs.
        let key: Key = (
            run.repo_id,
            run.sha.clone(),
            format!("{}#{}", run.id, job.id),
        );
        let (seq, slot) = self.enqueue(&key);
        let me = self.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let mut slot = slot.lock().await;
            if me.superseded(&key, seq) {
                return;
            }
            let (mut body, status) = check_body(&run, &job, &base);
            if slot.delivered == Some(status) {
                return;
            }
            let mut sent = Vec::new();
            let final_state = status == "completed";
            me.deliver_check(
                &store,
                &run,
                Annotations::Log(job.id),
                &cred,
                &checks,
                &mut slot,
                &mut body,
                status,
                &mut sent,
            )
            .await;
            if final_state {
                me.forget(&key, seq);
            }
            me.record_checks(&store, &run, sent);
        });
    }

    /// The one check run of a run refused at intake (no jobs): completed,
    /// failed, named after the run, with one annotation on the workflow
    /// file at `line` (when the errors are in it), titled `title` and
    /// saying `text`, as GitHub shows an invalid workflow file.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn refused_check(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        run: Run,
        cred: ForgeCredential,
        checks: ChecksCredential,
        base: String,
        title: &str,
        text: &str,
        line: Option<usize>,
    ) {
        let key: Key = (run.repo_id, run.sha.clone(), format!("{}#refused", run.id));
        let (seq, slot) = self.enqueue(&key);
        let now = chrono::Utc::now().timestamp_millis();
        // GitHub's bounds: a title of 255 characters, texts of 64 KiB.
        let mut body = json!({
            "name": run.workflow_name,
            "details_url": format!("{}/ui/#/runs/{}", base.trim_end_matches('/'), run.id),
            "external_id": format!("run-{}", run.id),
            "status": "completed",
            "conclusion": "failure",
            "started_at": iso8601(run.created_at),
            "completed_at": iso8601(run.finished_at.unwrap_or(now)),
            "output": {"title": truncate(title, 255), "summary": truncate(text, 64 * 1024)},
        });
        let annotations = match line {
            Some(l) if !run.workflow_path.is_empty() => vec![json!({
                "path": run.workflow_path,
                "start_line": l,
                "end_line": l,
                "annotation_level": "failure",
                "title": truncate(title, 255),
                "message": truncate(text, 64 * 1024),
            })],
            _ => Vec::new(),
        };
        let me = self.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let mut slot = slot.lock().await;
            if me.superseded(&key, seq) || slot.delivered.is_some() {
                return;
            }
            let mut sent = Vec::new();
            me.deliver_check(
                &store,
                &run,
                Annotations::Given(annotations),
                &cred,
                &checks,
                &mut slot,
                &mut body,
                "completed",
                &mut sent,
            )
            .await;
            me.forget(&key, seq);
            me.record_checks(&store, &run, sent);
        });
    }

    /// The outbound log's lines of a check run's requests, a warning for each
    /// one not delivered.
    fn record_checks(&self, store: &Arc<dyn Store>, run: &Run, sent: Vec<Sent>) {
        for s in sent {
            if s.out.outcome != "delivered" {
                tracing::warn!(
                    repo = run.repo_id,
                    check = %s.subject,
                    "check run update not delivered after {} attempt(s): {}",
                    s.out.attempts,
                    s.out.error.as_deref().unwrap_or(s.out.outcome)
                );
            }
            let _ = store.record_outbound(&s.outbound("check", run.repo_id, Some(run.id)));
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn deliver_check(
        &self,
        store: &Arc<dyn Store>,
        run: &Run,
        annotations: Annotations,
        cred: &ForgeCredential,
        checks: &ChecksCredential,
        slot: &mut Slot,
        body: &mut Value,
        status: &'static str,
        sent: &mut Vec<Sent>,
    ) {
        let api = cred.api_url.trim_end_matches('/').to_string();
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let Some((token, cache_key)) = self.installation_token(&api, cred, checks, sent).await
        else {
            return;
        };
        // The annotations go with the completion, 50 per request.
        let mut batches: Vec<Vec<Value>> = Vec::new();
        if status == "completed" {
            let (all, dropped) = match annotations {
                Annotations::Log(job) => {
                    let mut log = Vec::new();
                    if let Ok(chunks) = store.log_chunks(job, None, 0) {
                        for c in chunks {
                            log.extend_from_slice(&c.data);
                        }
                    }
                    annotations_from_log(&String::from_utf8_lossy(&log), &run.workflow_path)
                }
                Annotations::Given(all) => (all, 0),
            };
            if dropped > 0 {
                let summary = body["output"]["summary"].as_str().unwrap_or_default();
                body["output"]["summary"] = json!(format!(
                    "{summary}\n\n{dropped} more annotations were not sent (at most {MAX_ANNOTATIONS} per job)."
                ));
            }
            batches = all
                .chunks(ANNOTATIONS_PER_REQUEST)
                .map(<[Value]>::to_vec)
                .collect();
            if let Some(first) = batches.first() {
                body["output"]["annotations"] = json!(first);
            }
        }
        let headers = github_headers(&token);
        let base = format!("{api}/repos/{}/check-runs", cred.project);
        let (method, url) = match slot.check_run {
            Some(id) => (reqwest::Method::PATCH, format!("{base}/{id}")),
            None => {
                body["head_sha"] = json!(run.sha);
                (reqwest::Method::POST, base.clone())
            }
        };
        let bytes = serde_json::to_vec(&*body).unwrap_or_default();
        let (out, answer) = send(
            &self.client,
            &self.policy,
            method,
            &url,
            &headers,
            Some(&bytes),
        )
        .await;
        let ok = out.outcome == "delivered";
        if out.http_status == Some(401)
            && let Some(k) = &cache_key
        {
            // Revoked or expired early: the next update exchanges again.
            self.tokens.lock().await.forget(k);
        }
        sent.push(Sent {
            target: url,
            subject: name.clone(),
            state: body["conclusion"].as_str().unwrap_or(status).to_string(),
            out,
        });
        if !ok {
            return;
        }
        if slot.check_run.is_none() {
            slot.check_run = answer.as_ref().and_then(|a| a["id"].as_u64());
        }
        slot.delivered = Some(status);
        let Some(id) = slot.check_run else {
            return;
        };
        // The rest of the annotations: each update appends its own.
        let url = format!("{base}/{id}");
        for (i, batch) in batches.iter().enumerate().skip(1) {
            let update = json!({"output": {
                "title": body["output"]["title"],
                "summary": body["output"]["summary"],
                "annotations": batch,
            }});
            let bytes = serde_json::to_vec(&update).unwrap_or_default();
            let (out, _) = send(
                &self.client,
                &self.policy,
                reqwest::Method::PATCH,
                &url,
                &headers,
                Some(&bytes),
            )
            .await;
            let ok = out.outcome == "delivered";
            let from = i * ANNOTATIONS_PER_REQUEST + 1;
            sent.push(Sent {
                target: url.clone(),
                subject: name.clone(),
                state: format!("annotations {from}-{}", from + batch.len() - 1),
                out,
            });
            if !ok {
                return;
            }
        }
    }

    /// The token for check runs: the given one, or the App's installation
    /// token from the cache or a fresh exchange. `None` when GitHub refused or
    /// could not be reached (recorded in `sent`).
    pub(crate) async fn installation_token(
        &self,
        api: &str,
        cred: &ForgeCredential,
        checks: &ChecksCredential,
        sent: &mut Vec<Sent>,
    ) -> Option<(String, Option<(String, String, u64)>)> {
        if let Some(t) = &checks.token {
            return Some((t.clone(), None));
        }
        let (Some(app_id), Some(pem)) = (&checks.app_id, &checks.private_key) else {
            return None;
        };
        // Held across the exchange: the other jobs of the run wait for it and
        // then find the token in the cache.
        let mut cache = self.tokens.lock().await;
        let ident = app_ident(app_id, pem);
        let repo_key = (api.to_string(), ident.clone(), cred.project.clone());
        let key = match checks.installation_id {
            Some(id) => Some(id),
            None => match cache.installation(&repo_key) {
                // Known not to be installed there: nothing to send.
                Some(None) => return None,
                Some(Some(id)) => Some(id),
                None => None,
            },
        };
        if let Some(id) = key
            && let Some(t) = cache.token(&(api.to_string(), ident.clone(), id))
        {
            return Some((t, Some((api.to_string(), ident, id))));
        }
        let key_pair = match parse_private_key(pem) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("GitHub App key: {e}");
                return None;
            }
        };
        let jwt = match app_jwt(app_id, &key_pair, unix_now()) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!("{e}");
                return None;
            }
        };
        let headers = github_headers(&jwt);
        let installation = match key {
            Some(id) => id,
            None => {
                let url = format!("{api}/repos/{}/installation", cred.project);
                let (out, answer) = send(
                    &self.client,
                    &self.policy,
                    reqwest::Method::GET,
                    &url,
                    &headers,
                    None,
                )
                .await;
                let id = answer.as_ref().and_then(|a| a["id"].as_u64());
                let not_installed = out.http_status == Some(404);
                sent.push(Sent {
                    target: url,
                    subject: format!("GitHub App {app_id}"),
                    state: "installation".into(),
                    out,
                });
                if not_installed {
                    cache.keep_installation(repo_key.clone(), None, NOT_INSTALLED_TTL);
                    return None;
                }
                let id = id?;
                cache.keep_installation(repo_key.clone(), Some(id), INSTALLATION_TTL);
                id
            }
        };
        let url = format!("{api}/app/installations/{installation}/access_tokens");
        let (out, answer) = send(
            &self.client,
            &self.policy,
            reqwest::Method::POST,
            &url,
            &headers,
            None,
        )
        .await;
        let token = answer
            .as_ref()
            .and_then(|a| a["token"].as_str())
            .map(String::from);
        if out.http_status == Some(404) && checks.installation_id.is_none() {
            // Uninstalled since it was found: looked up again next time.
            cache.forget_installation(&repo_key);
        }
        sent.push(Sent {
            target: url,
            subject: format!("GitHub App {app_id}"),
            state: "installation token".into(),
            out,
        });
        let token = token?;
        let ck = (api.to_string(), ident, installation);
        cache.keep(
            ck.clone(),
            token.clone(),
            answer.as_ref().and_then(|a| a["expires_at"].as_str()),
        );
        Some((token, Some(ck)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_take_the_checks_api_shape() {
        let log = "plain\n::error file=./src/a.rs,line=3,endLine=5,col=2,title=Bad%3A x::oh%0Ano\n\
                   ::warning file=/abs/b.rs,line=9::w\n::notice::n\n::debug::d\n\
                   ::error file=src/c.rs,line=4,col=7,endColumn=9::c\n::error file=../x,line=2::up\n";
        let (a, dropped) = annotations_from_log(log, ".github/workflows/ci.yml");
        assert_eq!(dropped, 0);
        assert_eq!(a.len(), 5);
        assert_eq!(
            a[0],
            json!({"path": "src/a.rs", "start_line": 3, "end_line": 5, "annotation_level": "failure",
                   "message": "oh\nno", "title": "Bad: x"})
        );
        // Outside the repository: on the workflow file.
        assert_eq!(a[1]["path"], ".github/workflows/ci.yml");
        assert_eq!(a[1]["annotation_level"], "warning");
        assert_eq!(a[2]["annotation_level"], "notice");
        assert_eq!(
            (&a[3]["start_column"], &a[3]["end_column"]),
            (&json!(7), &json!(9))
        );
        assert_eq!(a[4]["path"], ".github/workflows/ci.yml");
        let many = "::error file=x,line=1::m\n".repeat(MAX_ANNOTATIONS + 7);
        let (a, dropped) = annotations_from_log(&many, "w.yml");
        assert_eq!((a.len(), dropped), (MAX_ANNOTATIONS, 7));
    }

    #[test]
    fn credentials_are_checked() {
        let c = |v: Value| serde_json::from_value::<ChecksCredential>(v).unwrap();
        assert!(c(json!({"token": "ghs_x"})).validate().is_ok());
        assert!(
            c(json!({"token": "t", "app_id": "1"}))
                .validate()
                .unwrap_err()
                .contains("not both")
        );
        assert!(
            c(json!({"app_id": "1", "private_key": "nope"}))
                .validate()
                .unwrap_err()
                .contains("PEM")
        );
        assert!(
            c(json!({"app_id": "1 2", "private_key": "x"}))
                .validate()
                .unwrap_err()
                .contains("app_id")
        );
        assert!(ChecksCredential::decode("ghp_plain").is_none());
        let enc = c(json!({"token": "ghs_x"})).encode();
        assert_eq!(
            ChecksCredential::decode(&enc).unwrap().token.as_deref(),
            Some("ghs_x")
        );
        assert!(!format!("{:?}", c(json!({"token": "ghs_x"}))).contains("ghs_x"));
    }
}
