//! The server side of the agent protocol (see `hangar_agent::protocol`).

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use hangar_agent::protocol::*;
use hangar_store::{Job, LeaseCheck, Status, Step, now_ms};

use crate::app::{AgentSeen, App};
use crate::auth::{Caller, error};

/// The largest log chunk an agent may send (the agent sends far smaller ones).
const MAX_LOG_CHUNK: usize = 1024 * 1024;

/// An idle agent's poll costs reads only; its registration row is rewritten at
/// most this often.
const PERSIST_AGENT_EVERY_MS: i64 = 60_000;

/// Notes an agent's poll; `false` when the agent is no longer registered
/// (removed while its poll was on its way): a poll never registers one.
fn seen(app: &App, req: &PollRequest) -> bool {
    let now = now_ms();
    let mut agents = app.agents.lock().unwrap_or_else(|e| e.into_inner());
    let prev = agents.get(&req.agent_id).cloned();
    let persist = match &prev {
        None => true,
        Some(p) => {
            p.labels != req.labels
                || p.capacity != req.capacity
                || now - p.persisted_at > PERSIST_AGENT_EVERY_MS
        }
    };
    let entry = AgentSeen {
        id: req.agent_id.clone(),
        name: req.name.clone(),
        labels: req.labels.clone(),
        capacity: req.capacity,
        free_slots: req.free_slots,
        last_seen: now,
        persisted_at: if persist {
            now
        } else {
            prev.as_ref().map(|p| p.persisted_at).unwrap_or(now)
        },
        embedded: req.agent_id == app.embedded_agent_id,
    };
    agents.insert(req.agent_id.clone(), entry);
    app.metrics.agents.set(
        agents
            .values()
            .filter(|a| now - a.last_seen < 60_000)
            .count() as i64,
    );
    drop(agents);
    if persist {
        let touched = app.store.touch_agent(&hangar_store::Agent {
            id: req.agent_id.clone(),
            name: req.name.clone(),
            labels: req.labels.clone(),
            capacity: req.capacity,
            last_seen: now,
            created_at: now,
            drained: false,
            token_id: None,
        });
        if let Ok(false) = touched {
            forget(app, &req.agent_id);
            return false;
        }
    }
    true
}

/// Drops an agent from the live list (it was removed).
pub(crate) fn forget(app: &App, id: &str) {
    app.agents
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
}

/// The answer to a call of an agent that is no longer registered.
fn removed(id: &str) -> Response {
    crate::errors::error_coded(
        StatusCode::UNAUTHORIZED,
        "agent_removed",
        &format!("agent `{id}` was removed; register again with a new agent token"),
    )
}

/// The most labels an agent may offer, and the longest name or label.
const MAX_LABELS: usize = 64;
const MAX_NAME: usize = 100;

/// Whether an id an agent asks for may be used: letters, digits, `.`, `_`
/// and `-` (it is a path segment of the API), not the embedded agents'
/// prefix (their jobs are recovered by it) and not a route's name.
fn usable_id(id: &str) -> bool {
    (1..=MAX_NAME).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !id.starts_with("embedded-")
        && !matches!(id, "register" | "." | "..")
}

/// A fresh id for an agent named `name`: `agent-<name>-<8 hex>`.
fn fresh_id(name: &str) -> anyhow::Result<String> {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let random = hangar_store::crypto::random_token()?;
    Ok(format!(
        "agent-{}-{}",
        clean.trim_matches('-'),
        &random[4..12]
    ))
}

/// The 409 an agent of another protocol version gets, naming both versions
/// (an agent stops at it, saying why); `None` for this version's agents.
fn other_protocol(version: u32, hangar_version: &str) -> Option<Response> {
    (version != PROTOCOL_VERSION).then(|| {
        crate::errors::error_coded(
            StatusCode::CONFLICT,
            PROTOCOL_MISMATCH,
            &version_mismatch(version, hangar_version, PROTOCOL_VERSION, HANGAR_VERSION),
        )
    })
}

/// `POST /api/v1/agents/register`: an agent token (or an admin's, or the
/// embedded agent's) registers one agent process, which is given an id and a
/// credential; the agent protocol takes that credential only. A single-use
/// token registers once.
pub async fn register(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<RegisterRequest>,
) -> Response {
    if let Some(refused) = other_protocol(req.protocol_version, &req.hangar_version) {
        return refused;
    }
    let bad =
        |s: &str| s.trim().is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control);
    if bad(&req.name) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("an agent's `name` is 1 to {MAX_NAME} characters without control characters"),
        );
    }
    if req.labels.len() > MAX_LABELS || req.labels.iter().any(|l| bad(l)) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "an agent offers at most {MAX_LABELS} `labels`, each 1 to {MAX_NAME} characters without control characters"
            ),
        );
    }
    if !(1..=1024).contains(&req.capacity) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("`capacity` is 1 to 1024 jobs at once, not {}", req.capacity),
        );
    }
    let embedded = caller.name == crate::auth::EMBEDDED_AGENT && caller.token_id.is_none();
    if caller.single_use
        && let Some(id) = caller.token_id
    {
        match app.store.use_token_once(id) {
            Ok(true) => {}
            Ok(false) => {
                return crate::errors::error_coded(
                    StatusCode::CONFLICT,
                    TOKEN_USED,
                    &format!(
                        "the token `{}` is single-use and has registered an agent already: ask an administrator for a new one",
                        caller.name
                    ),
                );
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        }
    }
    let now = now_ms();
    // The server's own embedded agent keeps its id (crash recovery finds its
    // jobs by it); any other agent, one in-process included, gets the id it
    // asks for when usable and free, else a fresh one.
    let pinned = embedded && req.agent_id == app.embedded_agent_id;
    let mut id = if pinned {
        app.embedded_agent_id.clone()
    } else if usable_id(&req.agent_id) {
        req.agent_id.clone()
    } else {
        match fresh_id(&req.name) {
            Ok(id) => id,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        }
    };
    // An id taken by another agent is never handed over: a new one is made.
    let mut credential = None;
    for _ in 0..8 {
        let agent = hangar_store::Agent {
            id: id.clone(),
            name: req.name.clone(),
            labels: req.labels.clone(),
            capacity: req.capacity,
            last_seen: now,
            created_at: now,
            drained: false,
            token_id: caller.token_id,
        };
        match app.store.register_agent(&agent) {
            Ok(Some(c)) => {
                credential = Some(c);
                break;
            }
            Ok(None) if !pinned => match fresh_id(&req.name) {
                Ok(next) => id = next,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
            },
            Ok(None) => break,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        }
    }
    let Some(credential) = credential else {
        return error(
            StatusCode::CONFLICT,
            &format!("agent `{id}` is registered already"),
        );
    };
    let _ = app.store.audit(
        &caller.name,
        "agent.registered",
        &format!("agent/{id}"),
        &json!({"name": req.name, "labels": req.labels, "capacity": req.capacity,
            "token_id": caller.token_id, "single_use": caller.single_use}),
    );
    (
        StatusCode::CREATED,
        Json(RegisterResponse {
            agent_id: id,
            credential,
        }),
    )
        .into_response()
}

pub async fn poll(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
    Json(mut req): Json<PollRequest>,
) -> Response {
    // The agent is the one its credential names, whatever the body says.
    let Some(agent) = caller.agent.clone() else {
        return removed(&req.agent_id);
    };
    req.agent_id = agent;
    // The agent reached the server at this host: its jobs' steps reach the
    // cache and artifact services there too.
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    // Another version's agent would misread the compiled job: it is told
    // why and stops, rather than failing every job it takes.
    if let Some(refused) = other_protocol(req.protocol_version, &req.hangar_version) {
        return refused;
    }
    if !seen(&app, &req) {
        return removed(&req.agent_id);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.wait_ms.min(60_000));
    // Listed with the labels it may take, so a queued job wakes this poll
    // alone when it is the one to take it (`app::Waiting`).
    let ticket = app.work.ticket(&claimable_labels(&req, &caller));
    loop {
        // Listed before looking, so a job queued in between still wakes us.
        ticket.wait();
        match try_claim(&app, &req, &host, &caller) {
            Ok(Claim::Job(a)) => return Json(*a).into_response(),
            Ok(Claim::Removed) => {
                forget(&app, &req.agent_id);
                return removed(&req.agent_id);
            }
            Ok(Claim::Nothing) => {}
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        }
        // Woken for a job this poll could not take: the others look once.
        if ticket.wake.take_targeted() {
            app.work.ring_all();
        }
        // Backstop re-check every 5 s in case a wake-up was missed.
        let backstop = tokio::time::Instant::now() + Duration::from_secs(5);
        tokio::select! {
            _ = ticket.wake.notify.notified() => {}
            _ = tokio::time::sleep_until(backstop.min(deadline)) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            if let Ok(mut agents) = app.agents.lock()
                && let Some(a) = agents.get_mut(&req.agent_id)
            {
                a.last_seen = now_ms();
            }
            return StatusCode::NO_CONTENT.into_response();
        }
    }
}

/// The labels a poll may claim jobs by: a scoped agent token claims only its
/// labels, whatever the agent says it has (and only its repositories' jobs,
/// looking further down the queue past jobs it may not take).
fn claimable_labels(req: &PollRequest, caller: &Caller) -> Vec<String> {
    let scope = &caller.scope;
    if scope.labels.is_empty() {
        req.labels.clone()
    } else {
        req.labels
            .iter()
            .filter(|l| scope.labels.iter().any(|s| s.eq_ignore_ascii_case(l)))
            .cloned()
            .collect()
    }
}

/// What one look at the queue gave a polling agent.
enum Claim {
    Job(Box<Assignment>),
    Nothing,
    /// The agent was removed while it waited.
    Removed,
}

fn try_claim(app: &App, req: &PollRequest, host: &str, caller: &Caller) -> anyhow::Result<Claim> {
    // A drained agent finishes what it holds and is given nothing new; a
    // removed one (drained too, to the store) is told so.
    if app.store.agent_drained(&req.agent_id)? {
        let removed = !app
            .store
            .list_agents()?
            .iter()
            .any(|a| a.id == req.agent_id);
        return Ok(if removed {
            Claim::Removed
        } else {
            Claim::Nothing
        });
    }
    let embedded = caller.name == crate::auth::EMBEDDED_AGENT;
    let scope = &caller.scope;
    let labels = claimable_labels(req, caller);
    let window = if scope.repos.is_empty() { 4 } else { 64 };
    for job in app.store.runnable_jobs(&labels, window)? {
        if !scope.repos.is_empty() {
            let repo = app
                .store
                .get_run(job.run_id)?
                .and_then(|r| app.store.get_repo(r.repo_id).ok().flatten());
            if !repo.is_some_and(|r| scope.repos.iter().any(|n| n == &r.name)) {
                continue;
            }
        }
        // Untrusted code (a fork's pull request) never runs inside the server's
        // own process tree, next to its data, unless the administrator says so.
        if embedded && !app.untrusted_on_embedded && app.job_is_untrusted(&job)? {
            continue;
        }
        if let Some(lease) = app.store.claim_job(job.id, &req.agent_id, app.lease_ms)? {
            // Removed (or drained) between the look above and this claim:
            // the job goes straight back rather than wait for its lease to
            // run out; the next look tells the agent which.
            if app.store.agent_drained(&req.agent_id)? {
                app.store.release_lease(
                    lease.job.id,
                    lease.fence,
                    true,
                    "its agent was removed or drained as it took the job",
                )?;
                app.wake_agents(std::slice::from_ref(&lease.job.labels));
                return Ok(Claim::Nothing);
            }
            // Read once, for the run's status and for the assignment.
            let mut run = app
                .store
                .get_run(lease.job.run_id)?
                .ok_or_else(|| anyhow::anyhow!("run {} vanished", lease.job.run_id))?;
            if run.status == Status::Queued {
                app.store
                    .set_run_status(run.id, Status::Running, None, None)?;
                run.status = Status::Running;
                app.live.publish(
                    run.id,
                    json!({"type": "run", "status": Status::Running, "conclusion": null}),
                );
            }
            app.publish_job(lease.job.run_id, lease.job.id);
            let key = lease_key(app, lease.job.id, lease.fence, &req.agent_id, &caller.name);
            return Ok(Claim::Job(Box::new(assignment(
                app,
                &run,
                &lease.job,
                lease.fence,
                host,
                key,
            )?)));
        }
    }
    Ok(Claim::Nothing)
}

fn assignment(
    app: &App,
    run: &hangar_store::Run,
    job: &Job,
    fence: i64,
    host: &str,
    lease_key: String,
) -> anyhow::Result<Assignment> {
    let ctx = app.store.run_context(run.id)?;
    let payload = app.store.run_payload(run.id)?;
    // The needed jobs as the scheduler saw them: a matrix job's result is its
    // legs' aggregate (not whichever leg was read last), its outputs merged.
    let all = app.store.jobs_of_run(run.id)?;
    let deps: Vec<&Job> = all.iter().filter(|d| job.needs.contains(&d.key)).collect();
    let needs = crate::app::needs_context(&deps, &crate::app::status_host_of(&deps));
    let s = |k: &str| ctx.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let services_env = results_env(app, run, job, &payload, &s("repository"), host);
    // A fork's code gets neither secrets nor variables (as on GitHub); any other
    // job only the secrets it names.
    let (secrets, vars) = if app.untrusted(&run.event, &payload) {
        // A called job of such a run holds nothing either: no mapping
        // passes on what the caller does not hold.
        Default::default()
    } else {
        // Three levels as on GitHub: the server's, overlaid by the
        // repository's, overlaid by the job's environment's. A job is only
        // queued once it passed its environment's protection (approval, wait,
        // branches), so reaching here is what releases them.
        // A called job holds what its callers' `secrets:` pass down to it.
        let mut secrets =
            crate::calls::called_secrets(&job.spec, app.store.secrets_for_repo(run.repo_id)?);
        let mut vars = app.store.variables_for_repo(run.repo_id)?;
        if let Some(env) = &job.environment {
            secrets.extend(app.store.env_secrets(run.repo_id, Some(env))?);
            vars.extend(app.store.env_variables(run.repo_id, env)?);
        }
        // Named by the job's own mapping, not by the called file around it.
        let own = crate::calls::own_mapping(&job.spec);
        (secrets_named_by(&own, secrets), vars)
    };
    // The job's masker is made now, from the values as they are when the job
    // gets them: a secret rotated before the job's first log line stays
    // masked under its old value too.
    app.masker_for_job(job, || run.repo_id);
    let deploy = crate::delivery::job_grant(app, run, job, fence, host, &payload);
    let compiled = compile_job(
        &run.workflow_path,
        &s("workflow"),
        job,
        &run.event,
        &payload,
        ctx.get("inputs"),
        needs,
    );
    Ok(Assignment {
        protocol_version: PROTOCOL_VERSION,
        hangar_version: HANGAR_VERSION.to_string(),
        job_id: job.id,
        run_id: run.id,
        fence,
        attempt: job.attempt,
        run_attempt: Some(run.attempt),
        run_number: Some(run.run_number),
        lease_ms: app.lease_ms,
        job_key: job.key.clone(),
        job_name: job.name.clone(),
        job: compiled,
        event_name: run.event.clone(),
        event: payload,
        clone_url: s("clone_url"),
        sha: run.sha.clone(),
        git_ref: run.git_ref.clone(),
        repository: s("repository"),
        secrets,
        vars,
        services_env,
        lease_key,
        notices: ctx
            .get("notices")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        deploy: Some(deploy),
    })
}

/// The job as the agent's engine runs it, compiled from the run's workflow
/// text as `hangar run` compiles it (the same `CompiledJob::compile`), with
/// this leg's matrix values, the needed jobs' results and the run's inputs.
/// A workflow that no longer reads gives a job that fails with why.
fn compile_job(
    path: &str,
    text: &str,
    job: &Job,
    event_name: &str,
    payload: &Value,
    inputs: Option<&Value>,
    needs: Value,
) -> hangar_engine::CompiledJob {
    // A called job is compiled from its called file, with its call's inputs.
    let call = job.spec.get(crate::calls::CALL);
    let (path, text, id) = match call {
        Some(c) => (
            c["path"].as_str().unwrap_or_default(),
            c["text"].as_str().unwrap_or_default(),
            c["job"].as_str().unwrap_or_default(),
        ),
        None => (path, text, job.key.as_str()),
    };
    let compiled =
        hangar_engine::Workflow::parse(std::path::Path::new(path), text).and_then(|wf| {
            let mut c = hangar_engine::CompiledJob::compile(&wf, id)?;
            c.inputs = Some(match call {
                Some(call) => call
                    .get("inputs")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                None => {
                    let given = inputs
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    hangar_engine::run::inputs_context(&wf, event_name, payload, &given)
                }
            });
            c.called = call.is_some();
            Ok(c)
        });
    let mut c = match compiled {
        Ok(c) => c,
        Err(e) => return hangar_engine::CompiledJob::failed(path, id, e),
    };
    c.key = job.name.clone();
    // The name the run shows (`name:` evaluated when the job was queued).
    c.name = Some(job.name.clone());
    if let Some(m) = job.spec.get("matrix").and_then(Value::as_object) {
        c.matrix = m.clone();
    }
    if let Some(s) = job
        .spec
        .get(crate::workflows::STRATEGY_CONTEXT)
        .and_then(Value::as_object)
    {
        c.strategy = s.clone();
    }
    if let Value::Object(n) = needs {
        c.needs = n;
    }
    c
}

/// The cache and artifact services' variables for one job: a runtime token
/// scoped as GitHub scopes caches (the run's ref, a pull request's base, the
/// default branch), the services at the host the agent reached.
fn results_env(
    app: &App,
    run: &hangar_store::Run,
    job: &Job,
    payload: &Value,
    repository: &str,
    host: &str,
) -> std::collections::BTreeMap<String, String> {
    if host.is_empty() {
        return Default::default();
    }
    let text = |p: &str| payload.pointer(p).and_then(Value::as_str);
    let mut grant = hangar_results::Grant::for_ref(
        repository,
        &run.id.to_string(),
        &job.key,
        &run.git_ref,
        text("/pull_request/base/ref"),
        text("/repository/default_branch").or(Some("main")),
    );
    // Untrusted code saves only where untrusted code reads: its pull
    // request's own ref, never a branch's scope (which every later run of
    // that branch restores from). Should an untrusted run ever carry a
    // branch ref, its saves go to a scope of its own.
    let pr_scope = ["refs/pull/", "refs/merge-requests/"]
        .iter()
        .any(|p| grant.write_scope.starts_with(p));
    if !pr_scope && app.untrusted(&run.event, payload) {
        grant.write_scope = format!("refs/hangar/untrusted/run-{}", run.id);
        grant.read_scopes.retain(|s| !s.is_empty());
        grant.read_scopes.insert(0, grant.write_scope.clone());
    }
    app.results
        .job_env_at(&format!("http://{host}/"), &grant)
        .into_iter()
        .collect()
}

/// The secrets a job's definition names (`secrets.NAME`, `secrets['NAME']`):
/// an agent holding one job learns no other secret. A job that indexes
/// `secrets` with an expression or serialises the whole context gets them all.
fn secrets_named_by(
    spec: &Value,
    all: std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    let text = spec.to_string().to_ascii_uppercase();
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let dynamic = compact.match_indices("SECRETS[").any(|(i, m)| {
        !matches!(
            compact[i + m.len()..].chars().next(),
            Some('\'') | Some('\\')
        )
    }) || compact.contains("TOJSON(SECRETS)")
        || compact.contains("SECRETS:INHERIT")
        || compact.contains("\"SECRETS\":\"INHERIT\"");
    if dynamic {
        return all;
    }
    all.into_iter()
        .filter(|(name, _)| {
            let n = name.to_ascii_uppercase();
            compact.contains(&format!("SECRETS.{n}"))
                && !compact
                    .match_indices(&format!("SECRETS.{n}"))
                    .all(|(i, m)| {
                        compact[i + m.len()..]
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                || compact.contains(&format!("SECRETS['{n}']"))
                || compact.contains(&format!("SECRETS[\\\"{n}\\\"]"))
        })
        .collect()
}

/// The key of a lease (see `Assignment::lease_key`): HMAC-SHA256 under the
/// server's lease secret of the job, the attempt's fence, the agent and the
/// token it polled with, cut to 128 bits. Derived rather than stored, so every
/// attempt has its own key without a column for it, and a restarted server
/// still recognises the keys its agents hold.
pub(crate) fn lease_key(app: &App, job_id: i64, fence: i64, agent: &str, token: &str) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&app.lease_secret).expect("any key length");
    mac.update(format!("{job_id}\0{fence}\0{agent}\0{token}").as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Whether the caller proves the job's current lease with `X-Hangar-Lease`.
fn proves_lease(app: &App, job: &Job, caller: &Caller, headers: &HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let Some(owner) = job.lease_owner.as_deref() else {
        return false;
    };
    // The credential names its agent: only the lease's owner speaks of it.
    if caller.agent.as_deref() != Some(owner) {
        return false;
    }
    let Some(given) = headers.get(LEASE_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let expected = lease_key(app, job.id, job.fence, owner, &caller.name);
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

#[allow(clippy::result_large_err)] // the Err is the answer itself, built once per call
fn not_yours() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "this job is leased to another agent: the X-Hangar-Lease key does not match",
    )
}

/// The job, if `fence` is the current one, the job is still running and the
/// caller holds its lease.
#[allow(clippy::result_large_err)] // the Err is the answer itself, built once per call
fn held(
    app: &App,
    job_id: i64,
    fence: i64,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<Job, Response> {
    match app.store.get_job(job_id) {
        Ok(Some(j)) if j.fence == fence && j.status == Status::Running => {
            if proves_lease(app, &j, caller, headers) {
                Ok(j)
            } else {
                Err(not_yours())
            }
        }
        Ok(Some(_)) => Err(error(
            StatusCode::CONFLICT,
            "the lease is no longer yours: stop this job",
        )),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, "no such job")),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))),
    }
}

pub async fn heartbeat(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(job_id): Path<i64>,
    Json(req): Json<FenceOnly>,
) -> Response {
    if let Err(r) = held(&app, job_id, req.fence, &caller, &headers) {
        return r;
    }
    match app.store.heartbeat(job_id, req.fence, app.lease_ms) {
        Ok(LeaseCheck::Held { cancel_requested }) => Json(HeartbeatResponse {
            cancel: cancel_requested,
        })
        .into_response(),
        Ok(LeaseCheck::Lost) => error(
            StatusCode::CONFLICT,
            "the lease is no longer yours: stop this job",
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

pub async fn logs(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(job_id): Path<i64>,
    Json(up): Json<LogUpload>,
) -> Response {
    let job = match held(&app, job_id, up.fence, &caller, &headers) {
        Ok(j) => j,
        Err(r) => return r,
    };
    if up.text.len() > MAX_LOG_CHUNK {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("a log chunk is at most {MAX_LOG_CHUNK} bytes; send smaller chunks"),
        );
    }
    if let Some(step) = up.step.filter(|&s| s < 0 && s != COMPLETE_JOB_STEP) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("a chunk's step is the step's index (0 or more), not {step}"),
        );
    }
    let repo_id = || {
        app.store
            .get_run(job.run_id)
            .ok()
            .flatten()
            .map(|r| r.repo_id)
            .unwrap_or(0)
    };
    let text = app.masker_for_job(&job, repo_id).mask(&up.text);
    // A job's log has a ceiling: a step printing without end must not fill
    // the server's disk. The chunk that crosses it keeps the lines that fit
    // and says what happened; later chunks are acknowledged and dropped.
    let used = match app.store.log_bytes(job_id, job.attempt) {
        Ok(n) => n.max(0) as u64,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    if used >= app.max_log_bytes {
        return Json(LogAck {
            chunk: up.chunk,
            stored: false,
        })
        .into_response();
    }
    let text = if used + text.len() as u64 > app.max_log_bytes {
        let room = (app.max_log_bytes - used) as usize;
        // Cut after a newline (a byte search: `room` may fall inside a character).
        let cut = text.as_bytes()[..room.min(text.len())]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        format!(
            "{}hangar: this job's log reached its limit of {} bytes; later lines were not kept\n",
            &text[..cut],
            app.max_log_bytes
        )
    } else {
        text
    };
    match app.store.append_step_log_chunk(
        job_id,
        job.attempt,
        up.chunk,
        up.first_line,
        up.step,
        &text,
    ) {
        Ok(stored) => {
            if stored {
                app.metrics.log_bytes.inc_by(text.len() as u64);
                app.live.publish(
                    job.run_id,
                    json!({"type": "log", "job_id": job_id, "attempt": job.attempt, "chunk": up.chunk, "first_line": up.first_line, "step": up.step, "text": text}),
                );
            }
            Json(LogAck {
                chunk: up.chunk,
                stored,
            })
            .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

pub async fn step(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(job_id): Path<i64>,
    Json(s): Json<StepReport>,
) -> Response {
    let job = match held(&app, job_id, s.fence, &caller, &headers) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let now = now_ms();
    let step = Step {
        job_id,
        attempt: job.attempt,
        idx: s.idx,
        name: s.name.clone(),
        status: s.status,
        conclusion: s.conclusion,
        started_at: Some(now),
        finished_at: (s.status == Status::Completed).then_some(now),
    };
    if let Err(e) = app.store.upsert_step(&step) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"));
    }
    let stored = app
        .store
        .steps_of_job(job_id, Some(job.attempt))
        .ok()
        .and_then(|v| v.into_iter().find(|x| x.idx == s.idx));
    app.live.publish(
        job.run_id,
        json!({"type": "step", "step": stored.unwrap_or(step)}),
    );
    StatusCode::NO_CONTENT.into_response()
}

pub async fn complete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(job_id): Path<i64>,
    Json(req): Json<CompleteRequest>,
) -> Response {
    let job = match held(&app, job_id, req.fence, &caller, &headers) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let run = app.store.get_run(job.run_id).ok().flatten();
    let repo_id = run.as_ref().map(|r| r.repo_id).unwrap_or(0);
    let masker = app.masker_for_job(&job, || repo_id);
    let outputs: serde_json::Map<String, Value> = req
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(masker.mask(v))))
        .collect();
    let conclusion = req.conclusion;
    match app
        .store
        .complete_job(job_id, req.fence, conclusion, &Value::Object(outputs))
    {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::CONFLICT, "the lease is no longer yours"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
    let secs = job
        .started_at
        .map(|s| (now_ms() - s) as f64 / 1000.0)
        .unwrap_or(0.0);
    app.metrics
        .job_duration
        .get_or_create(&crate::metrics::ConclusionLabel {
            conclusion: conclusion.to_string(),
        })
        .observe(secs);
    if let (Some(env), Some(run)) = (&job.environment, &run) {
        let _ = app
            .store
            .record_deployment(run.id, job.id, env, &run.sha, conclusion);
    }
    app.publish_job(job.run_id, job_id);
    app.advance_run(job.run_id).await;
    app.wake_group(job_id).await;
    StatusCode::NO_CONTENT.into_response()
}

/// An agent will not run its assignment: the server speaks another
/// protocol version. The job goes back to the queue at once when another
/// agent of this server's version, offering its labels, has been seen in
/// the last minute; otherwise it fails, naming both versions, rather than
/// stay leased to an agent that will never run it until the lease expires.
pub async fn refuse(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(job_id): Path<i64>,
    Json(req): Json<RefuseRequest>,
) -> Response {
    let job = match held(&app, job_id, req.fence, &caller, &headers) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let refuser = job.lease_owner.clone().unwrap_or_default();
    let theirs = version_mismatch(
        req.protocol_version,
        &req.hangar_version,
        PROTOCOL_VERSION,
        HANGAR_VERSION,
    );
    // The refuser is not an agent of this version, whatever it polled with.
    let others = {
        let mut agents = app.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.remove(&refuser);
        let now = now_ms();
        agents
            .values()
            .filter(|a| now - a.last_seen < 60_000)
            .filter(|a| !app.store.agent_drained(&a.id).unwrap_or(false))
            .filter(|a| {
                job.labels
                    .iter()
                    .all(|l| a.labels.iter().any(|o| o.eq_ignore_ascii_case(l)))
            })
            .count()
    };
    let requeue = others > 0;
    let reason = if requeue {
        format!("agent {refuser} refused the job ({theirs}); back in the queue for another agent")
    } else {
        format!(
            "agent {refuser} refused the job ({theirs}); no other agent of protocol {PROTOCOL_VERSION} offering {} is connected, so the job fails rather than wait",
            if job.labels.is_empty() {
                "any labels".to_string()
            } else {
                job.labels.join(", ")
            }
        )
    };
    match app.store.release_lease(job.id, job.fence, requeue, &reason) {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::CONFLICT, "the lease is no longer yours"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
    tracing::warn!(job = job.id, "{reason}");
    if !requeue {
        let _ = app.store.append_log_chunk(
            job.id,
            job.attempt,
            1_000_000,
            10_000_000,
            &format!("##[error]{reason}\n"),
        );
    }
    let _ = app.store.audit(
        &caller.name,
        "job.refused",
        &format!("job/{}", job.id),
        &json!({"agent": refuser, "protocol_version": req.protocol_version,
            "hangar_version": req.hangar_version, "requeued": requeue}),
    );
    app.publish_job(job.run_id, job.id);
    if requeue {
        app.wake_agents(std::slice::from_ref(&job.labels));
    }
    app.advance_run(job.run_id).await;
    app.wake_group(job.id).await;
    StatusCode::NO_CONTENT.into_response()
}

/// The run of a job the caller holds the lease of: an agent reads the
/// artifacts of its own job's run only.
#[allow(clippy::result_large_err)] // the Err is the answer itself, built once per call
fn run_of_job(
    app: &App,
    job_id: i64,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<i64, Response> {
    match app.store.get_job(job_id) {
        Ok(Some(j)) if j.status == Status::Running && proves_lease(app, &j, caller, headers) => {
            Ok(j.run_id)
        }
        Ok(Some(_)) => Err(not_yours()),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, "no such job")),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))),
    }
}

/// Names of the artifacts of the job's run (the newest upload of each name wins).
pub async fn artifact_names(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(job_id): Path<i64>,
) -> Response {
    let run = match run_of_job(&app, job_id, &caller, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match app.store.list_artifacts(run) {
        Ok(list) => {
            let mut names: Vec<String> = list.into_iter().map(|a| a.name).collect();
            names.sort();
            names.dedup();
            Json(names).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

pub async fn artifact_download(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((job_id, name)): Path<(i64, String)>,
) -> Response {
    let run = match run_of_job(&app, job_id, &caller, &headers) {
        Ok(r) => r,
        Err(r) => return r,
    };
    crate::api::download_artifact(State(app), Path((run, name))).await
}

#[derive(serde::Deserialize)]
pub struct FenceQuery {
    pub fence: i64,
}

pub async fn artifact_upload(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((job_id, name)): Path<(i64, String)>,
    axum::extract::Query(q): axum::extract::Query<FenceQuery>,
    body: axum::body::Bytes,
) -> Response {
    let job = match held(&app, job_id, q.fence, &caller, &headers) {
        Ok(j) => j,
        Err(r) => return r,
    };
    // GitHub's artifact names (a workflow's `name:` may hold spaces), minus
    // anything that walks out of the directory another agent unpacks it to.
    const BAD: &[char] = &[
        '"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\\', '/', '\0',
    ];
    if name.trim().is_empty() || name.len() > 256 || name.contains(BAD) || name.contains("..") {
        return error(
            StatusCode::BAD_REQUEST,
            "an artifact name is 1 to 256 characters, none of \" : < > | * ? \\ / or line breaks, and no `..`",
        );
    }
    let stored = app.store.put_blob(&body).and_then(|digest| {
        app.store
            .create_artifact(job.run_id, &name, &digest, body.len() as i64)
    });
    match stored {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}
