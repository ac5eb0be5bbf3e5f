//! Deployments through the server: `hangar deploy|promote|abort|rollback|status
//! --server URL` land here for a repository the server watches. The server
//! starts the environment's controller when none runs (as the CLI would) and
//! speaks to it over its socket; a deployment runs as a server task, so it
//! outlives the CLI that asked for it, and its progress is read back by id.
//!
//! Operations live in the store, not in memory: one waiting for a protected
//! environment's reviewers (or its wait timer) is still waiting after the
//! server is killed and restarted, and is carried out when approved.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hangar_deploy::client::{EnvClient, Started};
use hangar_deploy::control::{FirstRelease, Request};
use serde::{Deserialize, Serialize};

use hangar_store::{ApprovalState, OperationPhase, Protection, Role};

use crate::App;
use crate::auth::Caller;
use crate::delivery_history::Project;

/// One deployment (or other request) the server runs for a client.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Operation {
    pub id: u64,
    pub project: String,
    pub env: String,
    /// The controller's progress lines so far.
    pub events: Vec<String>,
    pub done: bool,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// Set when the environment's hangar.yml `protection:` has reviewers or
    /// a wait timer: the request waits for them before the controller acts.
    pub approval: Option<OpApproval>,
    /// The server carrying the operation out (its embedded agent's id, whose
    /// presence the store keeps): a server that starts settles only the
    /// running operations of servers that are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The job whose `hangar/deploy` asked for it, with its deployment key
    /// (no token): only that job reads it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<i64>,
}

/// A protected environment's decision on one operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpApproval {
    pub reviewers: Vec<String>,
    pub wait_seconds: i64,
    pub prevent_self_review: bool,
    /// The token that asked for the operation.
    pub requested_by: String,
    pub state: ApprovalState,
    pub reviewer: Option<String>,
    pub comment: String,
}

/// How many times a write that lost a race with another writer of the same
/// operation reads it again before giving up.
const WRITE_TRIES: usize = 64;

fn error(status: StatusCode, msg: &str) -> Response {
    crate::errors::error(status, msg)
}

/// A watched project by its id (`hangar_deploy::client::project_id`), or by
/// its folder name when exactly one watched project has that name: two
/// checkouts named `web` answer 409 naming both, with their ids, rather
/// than one of them being picked.
#[allow(clippy::result_large_err)] // the Err is the answer itself, built once per call
fn find_project(app: &App, key: &str) -> Result<Project, Response> {
    let projects = crate::delivery_history::watched(app);
    if let Some(p) = projects.iter().find(|p| p.id == key) {
        return Ok(p.clone());
    }
    let named: Vec<&Project> = projects.iter().filter(|p| p.name == key).collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(error(
            StatusCode::NOT_FOUND,
            &format!(
                "no watched project `{key}` (start the server with `--repo DIR`); known: {}",
                projects
                    .iter()
                    .map(|p| format!("{} (id {})", p.name, p.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        many => Err((
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": format!(
                    "`{key}` names {} watched projects: address one by its id: {}",
                    many.len(),
                    many.iter()
                        .map(|p| format!("{} ({})", p.id, p.dir.display()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "code": "ambiguous_project",
                "candidates": many
                    .iter()
                    .map(|p| serde_json::json!({"id": p.id, "name": p.name, "path": p.dir}))
                    .collect::<Vec<_>>(),
            })),
        )
            .into_response()),
    }
}

/// `POST /api/v1/delivery/{project}/{env}` with a controller request: a
/// deployment is accepted at once (202, `{id}`) and followed with
/// `GET /api/v1/delivery/operations/{id}`; other requests answer when done.
pub async fn request(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path((project, env)): Path<(String, String)>,
    Json(mut req): Json<Request>,
) -> Response {
    let found = match find_project(&app, &project) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let dir = found.dir.clone();
    // Operations name the project by its id: the name may be shared.
    let project = found.id.clone();
    // A ref names a commit of the watched repository: resolved here, with
    // its time (for DORA's lead time).
    if let Request::Deploy {
        commit: Some(r),
        commit_time,
        from_commit: true,
        ..
    } = &mut req
    {
        match resolve(&dir, r) {
            Ok((sha, time)) => {
                *r = sha;
                *commit_time = Some(time);
            }
            Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e),
        }
    }
    // A protected environment is not changed on request: its reviewers are
    // asked and its wait timer runs first (hangar.yml of the working tree
    // the controller deploys from).
    let acts = matches!(
        req,
        Request::Deploy { .. } | Request::Rollback { .. } | Request::Promote
    );
    let protection = if acts {
        match protection_of(&dir, &env) {
            Ok(p) => p.filter(|p| !p.reviewers.is_empty() || p.wait_seconds > 0),
            Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e),
        }
    } else {
        None
    };
    if let Some(p) = protection {
        let approval = OpApproval {
            reviewers: p.reviewers.clone(),
            wait_seconds: p.wait_seconds,
            prevent_self_review: p.prevent_self_review,
            requested_by: c.name.clone(),
            state: if p.reviewers.is_empty() {
                ApprovalState::Approved
            } else {
                ApprovalState::Pending
            },
            reviewer: None,
            comment: String::new(),
        };
        let id = match new_operation(
            &app,
            &project,
            &env,
            &req,
            Some(approval),
            OperationPhase::Waiting,
        ) {
            Ok(id) => id,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        };
        if !p.reviewers.is_empty() {
            update(&app, id, None, &|op| {
                op.events.push(format!(
                    "waiting for approval by a reviewer of environment `{env}` ({}): POST /api/v1/delivery/operations/{id}/approve",
                    p.reviewers.join(", ")
                ))
            });
        }
        if let Err(e) = app.store.audit(
            &c.name,
            "delivery.requested",
            &format!("delivery/{id}"),
            &serde_json::json!({"project": found.name, "project_id": project, "environment": env, "reviewers": p.reviewers}),
        ) {
            return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"));
        }
        wait_then_perform(app.clone(), id, dir, env, req);
        return (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response();
    }
    if !matches!(req, Request::Deploy { .. }) {
        let result = perform(&dir, &env, &req, &|_| {}).await;
        if acts {
            crate::delivery_history::ingest_after(&app, &dir, &env);
        }
        return match result {
            Ok(v) => Json(v).into_response(),
            Err((status, e)) => error(status, &e),
        };
    }
    let id = match new_operation(&app, &project, &env, &req, None, OperationPhase::Running) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    let app2 = app.clone();
    tokio::spawn(async move { run_operation(&app2, id, &dir, &env, &req).await });
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response()
}

/// The protection hangar.yml gives `env` (names compare without case).
fn protection_of(dir: &std::path::Path, env: &str) -> Result<Option<Protection>, String> {
    let Some(text) = ["hangar.yml", "hangar.yaml"]
        .iter()
        .find_map(|n| std::fs::read_to_string(dir.join(n)).ok())
    else {
        return Ok(None);
    };
    let all = crate::app::parse_protections(&text).map_err(|e| format!("hangar.yml:{e}"))?;
    Ok(all
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(env))
        .map(|(_, p)| p))
}

/// Waits for an operation's reviewers and wait timer, then performs it.
/// Its state is read from the store each time, so the same task resumes an
/// operation after a restart. A restart starts the wait timer again (never
/// shortens it).
fn wait_then_perform(app: Arc<App>, id: u64, dir: PathBuf, env: String, req: Request) {
    tokio::spawn(async move {
        let wait_seconds = loop {
            let state = load(&app, id).map(|(op, _)| {
                op.approval
                    .map(|a| (a.state, a.reviewer.clone(), a.wait_seconds))
            });
            match state {
                Some(Some((ApprovalState::Approved, _, wait))) => break wait,
                Some(Some((ApprovalState::Pending, _, _))) => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await
                }
                Some(Some((other, who, _))) => {
                    write_if(&app, id, Some(OperationPhase::Done), &|op, phase| {
                        op.done = true;
                        op.error = Some(format!(
                            "the deployment to `{env}` was {other} by {}",
                            who.clone().unwrap_or_default()
                        ));
                        phase == OperationPhase::Waiting
                    });
                    return;
                }
                Some(None) => break 0,
                None => return,
            }
        };
        if wait_seconds > 0 {
            update(&app, id, None, &|op| {
                op.events.push(format!(
                    "wait timer of environment `{env}`: {wait_seconds} s"
                ))
            });
            tokio::time::sleep(std::time::Duration::from_secs(
                u64::try_from(wait_seconds).unwrap_or(0),
            ))
            .await;
        }
        // The claim: of the servers waiting on this operation (its own, and
        // any that resumed it), the one whose write moves it from waiting to
        // running carries it out; the others stop here.
        let me = app.embedded_agent_id.clone();
        let claimed = write_if(&app, id, Some(OperationPhase::Running), &|op, phase| {
            op.server = Some(me.clone());
            phase == OperationPhase::Waiting
        });
        if claimed.is_none() {
            tracing::info!(
                operation = id,
                "delivery operation taken by another server (or no longer waiting)"
            );
            return;
        }
        run_operation(&app, id, &dir, &env, &req).await;
    });
}

/// Performs an operation's request, recording the controller's progress
/// lines and the outcome.
async fn run_operation(app: &App, id: u64, dir: &std::path::Path, env: &str, req: &Request) {
    let result = perform(dir, env, req, &|e| {
        update(app, id, None, &|op| op.events.push(e.to_string()));
    })
    .await;
    // In the store before the operation says it is done: a client that
    // follows it and then reads the history or `/metrics` sees it.
    crate::delivery_history::ingest_after(app, dir, env);
    update(app, id, Some(OperationPhase::Done), &|op| {
        op.done = true;
        match &result {
            Ok(v) => op.result = Some(v.clone()),
            Err((_, e)) => op.error = Some(e.clone()),
        }
    });
}

/// Picks up the operations a previous server process left: those waiting for
/// a decision or a wait timer wait again; those whose request was under way
/// end with an error (the environment's controller recovers or aborts the
/// deployment itself, and its history says which).
pub fn resume(app: Arc<App>) -> anyhow::Result<()> {
    for row in app.store.operations_in(OperationPhase::Running)? {
        let Ok(id) = u64::try_from(row.id) else {
            continue;
        };
        // Another server on the same database that is alive carries it on.
        let server = row.state.get("server").and_then(|s| s.as_str());
        if let Some(server) = server
            && server != app.embedded_agent_id
            && app.store.present(server)?
        {
            continue;
        }
        let env = row.environment.clone();
        write_if(&app, id, Some(OperationPhase::Done), &|op, phase| {
            op.done = true;
            op.error = Some(format!(
                "the server stopped while this operation ran; see `hangar history {env}` for what the environment's controller did"
            ));
            phase == OperationPhase::Running
        });
    }
    for row in app.store.operations_in(OperationPhase::Waiting)? {
        let Ok(id) = u64::try_from(row.id) else {
            continue;
        };
        let req: Result<Request, _> = serde_json::from_value(row.request.clone());
        let dir = find_project(&app, &row.project).ok().map(|p| p.dir);
        let (Some(dir), Ok(req)) = (dir, req) else {
            let project = row.project.clone();
            update(&app, id, Some(OperationPhase::Done), &|op| {
                op.done = true;
                op.error = Some(format!(
                    "project `{project}` is no longer watched by this server (start it with `--repo DIR`), or its request could not be read back"
                ));
            });
            continue;
        };
        tracing::info!(
            operation = id,
            "delivery operation to `{}` of `{}` waits again after a restart",
            row.environment,
            row.project
        );
        wait_then_perform(app.clone(), id, dir, row.environment, req);
    }
    Ok(())
}

fn new_operation(
    app: &App,
    project: &str,
    env: &str,
    req: &Request,
    approval: Option<OpApproval>,
    phase: OperationPhase,
) -> anyhow::Result<u64> {
    let op = Operation {
        project: project.to_string(),
        env: env.to_string(),
        approval,
        server: (phase == OperationPhase::Running).then(|| app.embedded_agent_id.clone()),
        ..Default::default()
    };
    let id = app.store.create_operation(
        project,
        env,
        &serde_json::to_value(req)?,
        &serde_json::to_value(&op)?,
        phase,
    )?;
    Ok(u64::try_from(id)?)
}

/// The operation as the API shows it, and its phase.
fn load(app: &App, id: u64) -> Option<(Operation, OperationPhase)> {
    load_versioned(app, id).map(|(op, phase, _)| (op, phase))
}

/// [`load`] with the version the store keeps for conditional writes.
fn load_versioned(app: &App, id: u64) -> Option<(Operation, OperationPhase, i64)> {
    let row = match app.store.get_operation(i64::try_from(id).ok()?) {
        Ok(row) => row?,
        Err(e) => {
            tracing::warn!(operation = id, "reading a delivery operation: {e:#}");
            return None;
        }
    };
    match serde_json::from_value::<Operation>(row.state) {
        Ok(mut op) => {
            op.id = id;
            Some((op, row.phase, row.version))
        }
        Err(e) => {
            tracing::warn!(operation = id, "reading a delivery operation: {e}");
            None
        }
    }
}

/// Changes an operation, and its phase when given; returns the operation as
/// written.
fn update(
    app: &App,
    id: u64,
    phase: Option<OperationPhase>,
    f: &dyn Fn(&mut Operation),
) -> Option<Operation> {
    write_if(app, id, phase, &|op, _| {
        f(op);
        true
    })
}

/// Changes an operation (and its phase when given) if `f`, shown the
/// operation and its phase as they are, says so; returns the operation as
/// written, `None` when `f` declined or the write failed. The write is
/// conditional on the version read (`Store::update_operation`): when another
/// writer came first — a task of this server, or another server on the same
/// database — the operation is read again and `f` decides again, so a
/// reviewer's decision and the controller's progress lines never overwrite
/// each other, and a decision or a claim is taken once.
fn write_if(
    app: &App,
    id: u64,
    phase: Option<OperationPhase>,
    f: &dyn Fn(&mut Operation, OperationPhase) -> bool,
) -> Option<Operation> {
    for _ in 0..WRITE_TRIES {
        let (mut op, old, version) = load_versioned(app, id)?;
        if !f(&mut op, old) {
            return None;
        }
        let result = serde_json::to_value(&op)
            .map_err(anyhow::Error::from)
            .and_then(|v| {
                app.store
                    .update_operation(i64::try_from(id)?, version, &v, phase.unwrap_or(old))
            });
        match result {
            Ok(true) => return Some(op),
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(operation = id, "writing a delivery operation: {e:#}");
                return None;
            }
        }
    }
    tracing::warn!(
        operation = id,
        "writing a delivery operation: other writers came first {WRITE_TRIES} times"
    );
    None
}

/// `POST /api/v1/delivery/operations/{id}/approve` with `{approve, comment}`:
/// a reviewer of the environment (or an administrator) decides; with
/// `prevent_self_review`, never the token that asked for the operation.
pub async fn decide(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<u64>,
    Json(b): Json<crate::api::DecisionBody>,
) -> Response {
    let Some((op, _)) = load(&app, id) else {
        return error(StatusCode::NOT_FOUND, &format!("no operation {id}"));
    };
    let Some(approval) = op.approval.clone() else {
        return error(
            StatusCode::CONFLICT,
            &format!("operation {id} needs no approval"),
        );
    };
    let env = op.env.clone();
    if c.role != Role::Admin && !approval.reviewers.iter().any(|r| r == &c.name) {
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "`{}` is not a reviewer of environment `{env}` ({})",
                c.name,
                approval.reviewers.join(", ")
            ),
        );
    }
    if approval.prevent_self_review && approval.requested_by == c.name {
        return crate::errors::error_coded(
            StatusCode::FORBIDDEN,
            "self_review",
            &format!(
                "`{}` asked for operation {id} and environment `{env}` prevents self-review: another reviewer ({}) must decide",
                c.name,
                approval.reviewers.join(", ")
            ),
        );
    }
    // Decided once, whichever server the reviewers reach: the decision is a
    // write conditional on the operation still pending as read.
    let decided = write_if(&app, id, None, &|op, _| {
        let Some(a) = op.approval.as_mut() else {
            return false;
        };
        if a.state != ApprovalState::Pending {
            return false;
        }
        a.state = if b.approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Rejected
        };
        a.reviewer = Some(c.name.clone());
        a.comment = b.comment.clone();
        let line = format!(
            "{} by {}{}",
            a.state,
            c.name,
            if b.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", b.comment)
            }
        );
        op.events.push(line);
        true
    });
    let Some(op) = decided else {
        return error(
            StatusCode::CONFLICT,
            &format!("operation {id} was already decided"),
        );
    };
    if let Err(e) = app.store.audit(
        &c.name,
        if b.approve {
            "delivery.approve"
        } else {
            "delivery.reject"
        },
        &format!("delivery/{id}"),
        &serde_json::json!({"project": op.project, "environment": env, "comment": b.comment}),
    ) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"));
    }
    Json(op).into_response()
}

/// Starts the environment's controller when none runs (its first release
/// is the deployment asked for) and sends it the request.
async fn perform(
    dir: &std::path::Path,
    env: &str,
    req: &Request,
    on_event: &(dyn Fn(&str) + Send + Sync),
) -> Result<serde_json::Value, (StatusCode, String)> {
    let data = dir.join(".hangar");
    let exe =
        std::env::current_exe().map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let client = EnvClient::new(&exe, dir, &data, env);
    let files = client.files().clone();
    if !client.running().await {
        if matches!(
            req,
            Request::Status | Request::Promote | Request::Abort | Request::Down
        ) {
            let project = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err((
                StatusCode::CONFLICT,
                format!("environment `{env}` of `{project}` is not running"),
            ));
        }
        let first = match req {
            Request::Deploy {
                commit,
                from_commit,
                artifact,
                with_dependencies,
                ..
            } if files.load().stable.is_empty() => FirstRelease {
                git_ref: commit.clone().filter(|_| *from_commit),
                artifact: artifact.as_ref().map(PathBuf::from),
                with_dependencies: *with_dependencies,
            },
            _ => FirstRelease::default(),
        };
        let no_build = matches!(
            req,
            Request::Deploy { no_build: true, .. } | Request::Rollback { .. }
        );
        let before = files.history().len();
        match client.ensure_running(no_build, &first).await {
            Ok(Started::Now {
                first_deployment: true,
                ..
            }) if matches!(req, Request::Deploy { .. }) => {
                // The controller's start was this deployment (its first release).
                let made: Vec<_> = files.history().into_iter().skip(before).collect();
                return serde_json::to_value(made)
                    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
            }
            Ok(_) => {}
            Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))),
        }
    }
    client
        .call(req, |e| on_event(e))
        .await
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))
}

/// `GET /api/v1/delivery/operations/{id}`.
pub async fn operation(State(app): State<Arc<App>>, Path(id): Path<u64>) -> Response {
    match load(&app, id) {
        Some((op, _)) => Json(op).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no operation {id}")),
    }
}

/// `REF` → (sha, commit time) in the repository at `dir`.
fn resolve(dir: &std::path::Path, r: &str) -> Result<(String, u64), String> {
    let text = hangar_git::Git::new(dir)
        .args(&["log", "-1", "--format=%H %ct"])
        .value(r)
        .arg("--")
        .output()
        .map_err(|e| format!("ref {r}: {e:#}"))?;
    let (sha, t) = text.trim().split_once(' ').ok_or("unexpected git output")?;
    Ok((
        sha.to_string(),
        t.parse().map_err(|_| "unexpected git output")?,
    ))
}

/// The environments of a watched project: those with a state, a history or
/// a backup schedule under its `.hangar/envs/`.
fn environments_of(data: &std::path::Path) -> Vec<String> {
    let mut envs: Vec<String> = std::fs::read_dir(data.join("envs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let p = e.path();
            p.join("history.jsonl").is_file()
                || p.join("state.json").is_file()
                || p.join(hangar_deploy::recovery::SCHEDULE).is_file()
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    envs.sort();
    envs
}

/// How many deployments of an environment the delivery page shows.
const HISTORY_SHOWN: i64 = 50;

/// The environments of a watched project: those under its `.hangar/envs/`
/// (a state, a history or a backup schedule) and those the store has
/// deployments of (its folder may be gone).
fn environments(app: &App, project: &Project) -> Vec<String> {
    let mut envs = environments_of(&project.data());
    match app.store.env_deployment_environments(&project.id) {
        Ok(stored) => envs.extend(stored),
        Err(e) => tracing::warn!("listing environments of {}: {e:#}", project.name),
    }
    envs.sort();
    envs.dedup();
    envs
}

/// One environment as the delivery page shows it: the controller's live
/// status when it runs (versions, weights, instances and their health, each
/// version's traffic and errors), and its history from the store, newest
/// first, with every decision and when it was taken.
#[allow(clippy::result_large_err)] // the Err is the answer itself, built once per call
async fn environment_view(
    app: &App,
    project: &Project,
    env: &str,
) -> Result<serde_json::Value, Response> {
    let dir = &project.dir;
    let data = project.data();
    let exe = std::env::current_exe().unwrap_or_default();
    let client = EnvClient::new(&exe, dir, &data, env);
    let status = if client.running().await {
        client.call(&Request::Status, |_| {}).await.ok()
    } else {
        None
    };
    let mut history =
        crate::delivery_history::history(app.store.as_ref(), &project.id, env, Some(HISTORY_SHOWN))
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")))?;
    history.reverse();
    let stable = client.files().load().stable;
    Ok(serde_json::json!({
        "project": project.name,
        "project_id": project.id,
        "env": env,
        "running": status.is_some(),
        "status": status,
        "stable": stable,
        "history": history,
        "backups": backups_view(dir, env),
    }))
}

/// An environment's backups as the delivery page shows them: how many are
/// kept, the newest, the schedule and its alerts (null without `recovery:`).
fn backups_view(dir: &std::path::Path, env: &str) -> serde_json::Value {
    use hangar_deploy::recovery;
    let Ok((_, project)) = hangar_project::load(dir) else {
        return serde_json::Value::Null;
    };
    let Some(r) = &project.recovery else {
        return serde_json::Value::Null;
    };
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let all = recovery::list(dir, &project, env).unwrap_or_default();
    let state = recovery::schedule_state(&dir.join(".hangar"), env).unwrap_or_default();
    let scheduled = r.environments.iter().any(|e| e.value == env);
    serde_json::json!({
        "count": all.len(),
        "keep": r.keep,
        "newest_ms": all.first().map(|s| s.manifest.created_ms),
        "newest": all.first().map(|s| s.path.display().to_string()),
        "every_ms": r.every.as_ref().filter(|_| scheduled).map(|e| ms(e.value.0)),
        "rpo_ms": r.rpo.map(|d| ms(d.0)),
        "last_attempt_ms": state.last_attempt_ms,
        "last_error": state.last_error,
        "failing_since_ms": state.failing_since_ms,
        "rpo_breached_since_ms": state.rpo_breached_since_ms,
    })
}

/// `GET /api/v1/delivery`: every watched project's environments, for the
/// delivery page (read tokens too: it changes nothing).
pub async fn overview(State(app): State<Arc<App>>) -> Response {
    let mut out = Vec::new();
    for project in crate::delivery_history::watched(&app) {
        for env in environments(&app, &project) {
            match environment_view(&app, &project, &env).await {
                Ok(v) => out.push(v),
                Err(r) => return r,
            }
        }
    }
    Json(out).into_response()
}

/// `GET /api/v1/delivery/{project}/{env}`: one environment (see [`overview`]);
/// the project by its id, or by its folder name when that is unambiguous.
pub async fn environment(
    State(app): State<Arc<App>>,
    Path((project, env)): Path<(String, String)>,
) -> Response {
    if let Some(r) = crate::settings::bad_name("environment", &env) {
        return r;
    }
    let project = match find_project(&app, &project) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !environments(&app, &project).contains(&env) {
        return error(
            StatusCode::NOT_FOUND,
            &format!(
                "project `{}` has no deployed environment `{env}`",
                project.name
            ),
        );
    }
    match environment_view(&app, &project, &env).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// How often a watched project's alert event logs are read.
const ALERT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Relays the alerts of a watched project (its environments' controllers
/// append every firing and resolved alert to `alert-events.jsonl`) through
/// the server's notification channels, as the events `alert_firing` and
/// `alert_resolved`. Reading starts at the logs' ends when the server starts:
/// an alert announced while no server ran went to the environment's own
/// webhook only, and is not announced again.
pub fn relay_alerts(app: Arc<App>, repo_id: i64, repo: String, data: PathBuf) {
    tokio::spawn(async move {
        let mut offsets: std::collections::HashMap<String, u64> = environments_with_alerts(&data)
            .into_iter()
            .map(|env| {
                let end = hangar_deploy::alerts::events_end(&data.join("envs").join(&env));
                (env, end)
            })
            .collect();
        loop {
            tokio::time::sleep(ALERT_POLL).await;
            for env in environments_with_alerts(&data) {
                let dir = data.join("envs").join(&env);
                let offset = offsets.get(&env).copied().unwrap_or(0);
                let (events, next) = hangar_deploy::alerts::events_since(&dir, offset);
                offsets.insert(env.clone(), next);
                for e in events {
                    let field =
                        |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                    let event = match field("status").as_str() {
                        "firing" => "alert_firing",
                        "resolved" => "alert_resolved",
                        _ => continue,
                    };
                    app.notifier.notify(
                        &app.store,
                        crate::notify::Notice {
                            event,
                            repo_id: Some(repo_id),
                            run_id: None,
                            title: format!(
                                "Alert {} {}: {repo} {env}/{}",
                                field("rule"),
                                field("status"),
                                field("service")
                            ),
                            text: field("summary"),
                            data: serde_json::json!({ "project": repo, "alert": e }),
                        },
                    );
                }
            }
        }
    });
}

/// The environments of a watched project that have an alert event log.
fn environments_with_alerts(data: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(data.join("envs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(hangar_deploy::alerts::EVENTS).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// The watched checkout of a repository, by its clone URL (a watched
/// repository is registered with its directory's canonical path): the
/// server's own view of the project, whose environments its delivery API,
/// `/metrics` and `hangar status|down --server` read.
fn watched_dir_of(app: &App, clone_url: &str) -> Option<PathBuf> {
    let path = std::path::Path::new(clone_url);
    if !path.is_absolute() {
        return None;
    }
    let path = std::fs::canonicalize(path).ok()?;
    app.delivery_data
        .iter()
        .filter_map(|data| data.parent())
        .find(|dir| *dir == path)
        .map(PathBuf::from)
}

/// The key of a job's deployments (see `JobDeploy::Server`): HMAC-SHA256
/// under the server's lease secret of the purpose, the job and the
/// attempt's fence, cut to 128 bits. Derived rather than stored, like the
/// lease key: it dies with the attempt (a new fence) and names nothing the
/// caller could change — the environment, the repository and the commit are
/// the job's own, read from the store when it is used.
fn deploy_key(app: &App, job_id: i64, fence: i64) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&app.lease_secret).expect("any key length");
    mac.update(format!("deploy\0{job_id}\0{fence}").as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// What a leased job's `hangar/deploy` may do (option (a) of deploying from
/// a server's job: through the server that leased it). Chosen over a deploy
/// home per agent because the server already has the project's one view —
/// its watched checkout, where `hangar down --server`, the delivery page and
/// `/metrics` look — and already decided the environment's protection before
/// leasing the job, so the deployment is the job's approved environment and
/// nothing else, for remote agents as for the embedded one.
pub(crate) fn job_grant(
    app: &App,
    run: &hangar_store::Run,
    job: &hangar_store::Job,
    fence: i64,
    host: &str,
    payload: &serde_json::Value,
) -> hangar_engine::JobDeploy {
    use hangar_engine::JobDeploy::{Refused, Server};
    if app.untrusted(&run.event, payload) {
        return Refused(
            "a pull request from a fork (untrusted code) cannot deploy through the server".into(),
        );
    }
    let Some(env) = &job.environment else {
        return Refused(
            "the job names no `environment:`: a server's job deploys its own environment, which \
             the server's protection decided before leasing it (add `environment: NAME` to the job)"
                .into(),
        );
    };
    let watched = app
        .store
        .get_repo(run.repo_id)
        .ok()
        .flatten()
        .and_then(|r| watched_dir_of(app, &r.clone_url));
    if watched.is_none() {
        return Refused(format!(
            "the server watches no checkout of this repository (`hangar serve --repo DIR`), so \
             environment `{env}` has no home outlasting the job's workspace; give the step \
             `server:` and `token:` of a server that watches it"
        ));
    }
    if host.is_empty() {
        return Refused("the agent reached the server without a Host header".into());
    }
    Server {
        url: format!("http://{host}"),
        job_id: job.id,
        fence,
        key: deploy_key(app, job.id, fence),
    }
}

/// The job whose running attempt `headers` prove with its deployment key,
/// its run and the checkout its deployments go to. Every refusal is a 403
/// of the same shape whatever was wrong with the key, so the route tells an
/// outsider nothing about which jobs exist.
#[allow(clippy::result_large_err)] // the Err is the answer itself
fn deploying_job(
    app: &App,
    job_id: i64,
    headers: &axum::http::HeaderMap,
) -> Result<(hangar_store::Job, hangar_store::Run, PathBuf), Response> {
    use subtle::ConstantTimeEq;
    let refused = || {
        error(
            StatusCode::FORBIDDEN,
            "not the deployment key of a running job: a job's `hangar/deploy` gets it from the server that leased the job, for that attempt only",
        )
    };
    let given = headers
        .get(hangar_deploy::client::JOB_DEPLOY_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refused)?;
    let job = match app.store.get_job(job_id) {
        Ok(Some(j)) if j.status == hangar_store::Status::Running => j,
        Ok(_) => return Err(refused()),
        Err(e) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))),
    };
    let expected = deploy_key(app, job.id, job.fence);
    if !(given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))) {
        return Err(refused());
    }
    let internal = |e: anyhow::Error| error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"));
    let run = app
        .store
        .get_run(job.run_id)
        .map_err(internal)?
        .ok_or_else(refused)?;
    // Checked again at use, not only when the key was handed out.
    let payload = app.store.run_payload(run.id).map_err(internal)?;
    if app.untrusted(&run.event, &payload) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "a pull request from a fork (untrusted code) cannot deploy through the server",
        ));
    }
    let dir = app
        .store
        .get_repo(run.repo_id)
        .map_err(internal)?
        .and_then(|r| watched_dir_of(app, &r.clone_url))
        .ok_or_else(|| {
            error(
                StatusCode::FORBIDDEN,
                "the server watches no checkout of this job's repository",
            )
        })?;
    Ok((job, run, dir))
}

/// `POST /api/v1/jobs/{id}/deploy/{env}` with a controller `Deploy`
/// request, authenticated by the job's deployment key (`X-Hangar-Deploy`):
/// a `hangar/deploy` step of a running job. The server deploys the job's
/// own environment of its repository's watched checkout at the job's
/// commit (the request's commit and artifact are not read); any other
/// environment is refused. The environment's reviewers and wait timer are
/// not asked again: the job was leased only once they were satisfied.
/// Accepted at once (202, `{id}`), followed with
/// `GET /api/v1/jobs/{id}/deploy/operations/{op}`.
pub async fn job_deploy(
    State(app): State<Arc<App>>,
    Path((job_id, env)): Path<(i64, String)>,
    headers: axum::http::HeaderMap,
    Json(req): Json<Request>,
) -> Response {
    let (job, run, dir) = match deploying_job(&app, job_id, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(own) = job.environment.clone() else {
        return error(
            StatusCode::FORBIDDEN,
            "this job names no `environment:`, so it deploys none",
        );
    };
    if !own.eq_ignore_ascii_case(&env) {
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "this job deploys its own environment `{own}` only (its `environment:`), not `{env}`"
            ),
        );
    }
    let Request::Deploy {
        service,
        no_build,
        with_dependencies,
        ..
    } = req
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "a job's deployment key deploys; other requests need a token",
        );
    };
    let (commit, time) = match resolve(&dir, &run.sha) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("the job's commit is not in the watched checkout: {e}"),
            );
        }
    };
    let req = Request::Deploy {
        service,
        artifact: None,
        commit: Some(commit.clone()),
        commit_time: Some(time),
        no_build,
        // The job's commit, exported from the watched repository: what the
        // job built and tested, whatever the checkout's working tree holds.
        from_commit: true,
        with_dependencies,
    };
    // Operations name the project by its id: the folder name may be shared.
    let found = Project::at(&dir);
    let project = found.id.clone();
    let op = Operation {
        project: project.clone(),
        env: own.clone(),
        job: Some(job.id),
        server: Some(app.embedded_agent_id.clone()),
        ..Default::default()
    };
    let id = match serde_json::to_value(&req)
        .map_err(anyhow::Error::from)
        .and_then(|r| {
            app.store.create_operation(
                &project,
                &own,
                &r,
                &serde_json::to_value(&op)?,
                OperationPhase::Running,
            )
        })
        .and_then(|id| Ok(u64::try_from(id)?))
    {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    if let Err(e) = app.store.audit(
        &format!("job {}", job.id),
        "delivery.job_deploy",
        &format!("delivery/{id}"),
        &serde_json::json!({"project": found.name, "project_id": project, "environment": own, "run": run.id, "commit": commit}),
    ) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"));
    }
    let app2 = app.clone();
    tokio::spawn(async move { run_operation(&app2, id, &dir, &own, &req).await });
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response()
}

/// `GET /api/v1/jobs/{id}/deploy/operations/{op}`: a job's own deployment,
/// with its deployment key.
pub async fn job_operation(
    State(app): State<Arc<App>>,
    Path((job_id, id)): Path<(i64, u64)>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(r) = deploying_job(&app, job_id, &headers) {
        return r;
    }
    match load(&app, id) {
        Some((op, _)) if op.job == Some(job_id) => Json(op).into_response(),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no deployment {id} of job {job_id}"),
        ),
    }
}
