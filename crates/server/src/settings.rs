//! The API's access rules that are not routes of their own: names checked
//! before they reach the store, token revocation, the live stream's token,
//! secrets and variables of environments, and "approve and run" (a
//! repository's policy, and the approval of a held run).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::auth::{Caller, error};

/// Longest name of an artifact, environment, secret or variable.
pub(crate) const MAX_NAME: usize = 100;

/// A name that becomes part of a path, a key or a log line: ASCII letters,
/// digits, `.`, `_` and `-`, no `..`, at most [`MAX_NAME`] characters. The
/// 400 answer for a name that is not, `None` for one that is.
pub(crate) fn bad_name(kind: &str, name: &str) -> Option<Response> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.contains("..");
    if ok {
        return None;
    }
    let shown: String = name.chars().take(MAX_NAME).collect();
    Some(error(
        StatusCode::BAD_REQUEST,
        &format!(
            "invalid {kind} name {shown:?}: use 1 to {MAX_NAME} of A-Z a-z 0-9 . _ - (and no `..`)"
        ),
    ))
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("{:#}", anyhow::Error::from(e)),
                );
            }
        }
    };
}

/// `DELETE /api/v1/tokens/{id}`: the token answers 401 from now on.
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    if !tri!(app.store.revoke_token(id)) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no token {id}, or it was already revoked"),
        );
    }
    tri!(
        app.store
            .audit(&c.name, "token.revoke", &format!("token/{id}"), &json!({}))
    );
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /api/v1/runs/{id}/events/token`: the short-lived token the UI puts
/// in the live stream's URL (`EventSource` sends no headers).
pub async fn stream_token(State(app): State<Arc<App>>, Path(run): Path<i64>) -> Response {
    if tri!(app.store.get_run(run)).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("no run {run}"));
    }
    Json(json!({
        "token": crate::auth::mint_stream_token(&app, run),
        "expires_in": crate::auth::STREAM_TOKEN_SECS,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct ValueBody {
    pub value: String,
}

async fn repo_exists(app: &App, repo: i64) -> Result<(), Response> {
    match app.store.get_repo(repo) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            &format!("no repository {repo}"),
        )),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))),
    }
}

/// `PUT /api/v1/repos/{id}/environments/{env}/secrets/{name}`: released only
/// to a job of that environment, once it passed the environment's protection.
pub async fn put_env_secret(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path((repo, env, name)): Path<(i64, String, String)>,
    Json(b): Json<ValueBody>,
) -> Response {
    if let Some(r) = bad_name("environment", &env).or_else(|| bad_name("secret", &name)) {
        return r;
    }
    if let Err(r) = repo_exists(&app, repo).await {
        return r;
    }
    tri!(app.store.set_env_secret(repo, &env, &name, &b.value));
    tri!(app.secret_changed(
        &c.name,
        "secret.set",
        &format!(
            "repo/{repo}/environment/{}/secret/{name}",
            env.to_lowercase()
        ),
        Some(&b.value),
    ));
    StatusCode::NO_CONTENT.into_response()
}

pub async fn delete_env_secret(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path((repo, env, name)): Path<(i64, String, String)>,
) -> Response {
    if !tri!(app.store.delete_env_secret(repo, &env, &name)) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("environment `{env}` of repository {repo} has no secret `{name}`"),
        );
    }
    tri!(app.secret_changed(
        &c.name,
        "secret.delete",
        &format!(
            "repo/{repo}/environment/{}/secret/{name}",
            env.to_lowercase()
        ),
        None,
    ));
    StatusCode::NO_CONTENT.into_response()
}

pub async fn list_env_secrets(
    State(app): State<Arc<App>>,
    uri: axum::http::Uri,
    Path((repo, env)): Path<(i64, String)>,
    axum::extract::Query(p): axum::extract::Query<crate::paging::PageQuery>,
) -> Response {
    if let Some(r) = bad_name("environment", &env) {
        return r;
    }
    let page = crate::paging::page_or_400!(p);
    let names = tri!(app.store.env_secret_names(repo, &env));
    crate::api::names_page(&uri, names, &page)
}

pub async fn put_env_variable(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path((repo, env, name)): Path<(i64, String, String)>,
    Json(b): Json<ValueBody>,
) -> Response {
    if let Some(r) = bad_name("environment", &env).or_else(|| bad_name("variable", &name)) {
        return r;
    }
    if let Err(r) = repo_exists(&app, repo).await {
        return r;
    }
    tri!(app.store.set_env_variable(repo, &env, &name, &b.value));
    tri!(app.store.audit(
        &c.name,
        "variable.set",
        &format!(
            "repo/{repo}/environment/{}/variable/{name}",
            env.to_lowercase()
        ),
        &json!({})
    ));
    StatusCode::NO_CONTENT.into_response()
}

/// The "approve and run" policies, as GitHub words its own choices.
pub(crate) const POLICIES: &[(&str, &str)] = &[
    (
        "none",
        "untrusted pull requests run (without secrets) at once",
    ),
    (
        "first-time",
        "a first-time contributor's pull request from a fork waits for an approval",
    ),
    (
        "untrusted",
        "every pull request from a fork (and, with --first-time-untrusted, every first-time contributor's) waits for an approval",
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// "Approve and run": `none`, `first-time` or `untrusted`.
    pub approval_policy: String,
}

pub async fn get_settings(State(app): State<Arc<App>>, Path(repo): Path<i64>) -> Response {
    if let Err(r) = repo_exists(&app, repo).await {
        return r;
    }
    Json(json!({"approval_policy": tri!(app.store.approval_policy(repo))})).into_response()
}

pub async fn put_settings(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(repo): Path<i64>,
    Json(b): Json<SettingsBody>,
) -> Response {
    if !POLICIES.iter().any(|(p, _)| *p == b.approval_policy) {
        let known: Vec<String> = POLICIES
            .iter()
            .map(|(p, what)| format!("`{p}` ({what})"))
            .collect();
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "`approval_policy` is one of {}; got `{}`",
                known.join(", "),
                b.approval_policy
            ),
        );
    }
    if !tri!(app.store.set_approval_policy(repo, &b.approval_policy)) {
        return error(StatusCode::NOT_FOUND, &format!("no repository {repo}"));
    }
    tri!(app.store.audit(
        &c.name,
        "repo.settings",
        &format!("repo/{repo}"),
        &json!({"approval_policy": b.approval_policy})
    ));
    Json(json!({"approval_policy": b.approval_policy})).into_response()
}

/// `POST /api/v1/runs/{id}/approve`: an administrator or a `write` token lets
/// a held run (an untrusted pull request) start.
pub async fn approve_run(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(run): Path<i64>,
) -> Response {
    let Some(r) = tri!(app.store.get_run(run)) else {
        return error(StatusCode::NOT_FOUND, &format!("no run {run}"));
    };
    if !tri!(app.store.run_held(run)) {
        return error(
            StatusCode::CONFLICT,
            &format!("run {run} is not waiting for an approval to run"),
        );
    }
    if r.status == hangar_store::Status::Completed {
        return error(
            StatusCode::CONFLICT,
            &format!("run {run} is completed: there is nothing left to approve"),
        );
    }
    tri!(app.release_held_run(run, &c.name).await);
    StatusCode::ACCEPTED.into_response()
}
