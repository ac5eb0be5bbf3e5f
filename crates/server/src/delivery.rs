//! Deployments through the server: `hangar deploy|promote|abort|rollback|status
//! --server URL` land here for a repository the server watches. The server
//! starts the environment's controller when none runs (as the CLI would) and
//! speaks to it over its socket; a deployment runs as a server task, so it
//! outlives the CLI that asked for it, and its progress is read back by id.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hangar_deploy::client::{EnvClient, Started};
use hangar_deploy::control::{FirstRelease, Request};
use serde::Serialize;

use crate::App;

/// One deployment (or other request) the server runs for a client.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Operation {
    pub id: u64,
    pub project: String,
    pub env: String,
    /// The controller's progress lines so far.
    pub events: Vec<String>,
    pub done: bool,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Default)]
pub struct Operations {
    next: Mutex<u64>,
    ops: Mutex<HashMap<u64, Operation>>,
}

fn error(status: StatusCode, msg: &str) -> Response {
    crate::errors::error(status, msg)
}

/// The directory of a watched repository, by its name.
fn project_dir(app: &App, name: &str) -> Option<PathBuf> {
    app.delivery_data
        .iter()
        .filter_map(|data| data.parent())
        .find(|dir| dir.file_name().is_some_and(|n| n == name))
        .map(PathBuf::from)
}

/// `POST /api/v1/delivery/{project}/{env}` with a controller request: a
/// deployment is accepted at once (202, `{id}`) and followed with
/// `GET /api/v1/delivery/operations/{id}`; other requests answer when done.
pub async fn request(
    State(app): State<Arc<App>>,
    Path((project, env)): Path<(String, String)>,
    Json(mut req): Json<Request>,
) -> Response {
    let Some(dir) = project_dir(&app, &project) else {
        let known: Vec<String> = app
            .delivery_data
            .iter()
            .filter_map(|d| {
                d.parent()?
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .collect();
        return error(
            StatusCode::NOT_FOUND,
            &format!(
                "no watched project `{project}` (start the server with `--repo DIR`); known: {}",
                known.join(", ")
            ),
        );
    };
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
    let data = dir.join(".hangar");
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let client = EnvClient::new(&exe, &dir, &data, &env);
    let files = client.files().clone();
    if !client.running().await {
        if matches!(
            req,
            Request::Status | Request::Promote | Request::Abort | Request::Down
        ) {
            return error(
                StatusCode::CONFLICT,
                &format!("environment `{env}` of `{project}` is not running"),
            );
        }
        let first = match &req {
            Request::Deploy {
                commit,
                from_commit,
                artifact,
                ..
            } if files.load().stable.is_empty() => FirstRelease {
                git_ref: commit.clone().filter(|_| *from_commit),
                artifact: artifact.as_ref().map(PathBuf::from),
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
                return Json(made).into_response();
            }
            Ok(_) => {}
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        }
    }
    if !matches!(req, Request::Deploy { .. }) {
        return match client.call(&req, |_| {}).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &format!("{e:#}")),
        };
    }
    let id = {
        let mut next = app
            .operations
            .next
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *next += 1;
        *next
    };
    app.operations
        .ops
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            id,
            Operation {
                id,
                project: project.clone(),
                env: env.clone(),
                ..Default::default()
            },
        );
    let app2 = app.clone();
    tokio::spawn(async move {
        let update = |f: &dyn Fn(&mut Operation)| {
            if let Some(op) = app2
                .operations
                .ops
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&id)
            {
                f(op);
            }
        };
        let result = client
            .call(&req, |e| {
                let e = e.to_string();
                update(&|op| op.events.push(e.clone()));
            })
            .await;
        update(&|op| {
            op.done = true;
            match &result {
                Ok(v) => op.result = Some(v.clone()),
                Err(e) => op.error = Some(format!("{e:#}")),
            }
        });
    });
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response()
}

/// `GET /api/v1/delivery/operations/{id}`.
pub async fn operation(State(app): State<Arc<App>>, Path(id): Path<u64>) -> Response {
    match app
        .operations
        .ops
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
    {
        Some(op) => Json(op.clone()).into_response(),
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

/// The environments of a watched project: those with a state or a history
/// under its `.hangar/envs/`.
fn environments_of(data: &std::path::Path) -> Vec<String> {
    let mut envs: Vec<String> = std::fs::read_dir(data.join("envs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let p = e.path();
            p.join("history.jsonl").is_file() || p.join("state.json").is_file()
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    envs.sort();
    envs
}

/// How many deployments of an environment the delivery page shows.
const HISTORY_SHOWN: usize = 50;

/// One environment as the delivery page shows it: the controller's live
/// status when it runs (versions, weights, instances and their health, each
/// version's traffic and errors), and its history, newest first, with every
/// decision and when it was taken.
async fn environment_view(project: &str, dir: &std::path::Path, env: &str) -> serde_json::Value {
    let data = dir.join(".hangar");
    let exe = std::env::current_exe().unwrap_or_default();
    let client = EnvClient::new(&exe, dir, &data, env);
    let status = if client.running().await {
        client.call(&Request::Status, |_| {}).await.ok()
    } else {
        None
    };
    let mut history = client.files().history();
    history.reverse();
    history.truncate(HISTORY_SHOWN);
    let stable = client.files().load().stable;
    serde_json::json!({
        "project": project,
        "env": env,
        "running": status.is_some(),
        "status": status,
        "stable": stable,
        "history": history,
    })
}

/// `GET /api/v1/delivery`: every watched project's environments, for the
/// delivery page (read tokens too: it changes nothing).
pub async fn overview(State(app): State<Arc<App>>) -> Response {
    let mut out = Vec::new();
    for data in &app.delivery_data {
        let Some(dir) = data.parent() else { continue };
        let project = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for env in environments_of(data) {
            out.push(environment_view(&project, dir, &env).await);
        }
    }
    Json(out).into_response()
}

/// `GET /api/v1/delivery/{project}/{env}`: one environment (see [`overview`]).
pub async fn environment(
    State(app): State<Arc<App>>,
    Path((project, env)): Path<(String, String)>,
) -> Response {
    if let Some(r) = crate::settings::bad_name("environment", &env) {
        return r;
    }
    let Some(dir) = project_dir(&app, &project) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no watched project `{project}`"),
        );
    };
    if !environments_of(&dir.join(".hangar")).contains(&env) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("project `{project}` has no deployed environment `{env}`"),
        );
    }
    Json(environment_view(&project, &dir, &env).await).into_response()
}
