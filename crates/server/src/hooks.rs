//! `POST /hooks/{github|gitea|forgejo|gitlab}`: forge webhooks. Authenticated by
//! the repository's webhook secret (forges cannot send bearer tokens).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{App, default_branch_refs};
use crate::auth::error;
use crate::webhook::{self, Forge};

#[derive(Deserialize)]
pub struct HookQuery {
    pub repo: Option<String>,
}

fn reject(app: &App, status: StatusCode, outcome: &str, msg: &str) -> Response {
    app.metrics.delivery(outcome);
    error(status, msg)
}

pub async fn receive(
    State(app): State<Arc<App>>,
    Path(forge): Path<String>,
    Query(q): Query<HookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(forge) = Forge::parse(&forge) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown forge: use /hooks/github, /hooks/gitea, /hooks/forgejo or /hooks/gitlab",
        );
    };
    // Which repository? `?repo=` or the payload's own name (untrusted until verified).
    let name = match q.repo {
        Some(n) => n,
        None => {
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return reject(
                        &app,
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        &format!("the payload is not JSON: {e}"),
                    );
                }
            };
            match v
                .pointer("/repository/full_name")
                .or_else(|| v.pointer("/project/path_with_namespace"))
                .and_then(Value::as_str)
            {
                Some(n) => n.to_string(),
                None => {
                    return reject(
                        &app,
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        "the payload names no repository (repository.full_name); pass ?repo=NAME",
                    );
                }
            }
        }
    };
    let repo = match app.store.find_repo(&name) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return reject(
                &app,
                StatusCode::NOT_FOUND,
                "unknown_repo",
                &format!("repository `{name}` is not registered; POST /api/v1/repos first"),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    let secret = match app.store.repo_webhook_secret(repo.id) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return reject(
                &app,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                &format!("repository `{name}` has no webhook secret; set one to accept webhooks"),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    if !webhook::verify(forge, &headers, &body, &secret) {
        return reject(
            &app,
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the webhook signature does not match the repository's secret",
        );
    }
    let parsed = match webhook::parse(forge, &headers, &body) {
        Ok(p) => p,
        Err(msg) => return reject(&app, StatusCode::BAD_REQUEST, "malformed", &msg),
    };
    let Some(mut event) = parsed.event else {
        return match app.store.record_delivery(
            &parsed.delivery_id,
            Some(repo.id),
            &parsed.event_name,
            "ignored",
            &[],
        ) {
            Ok(_) => {
                app.metrics.delivery("ignored");
                (
                    StatusCode::ACCEPTED,
                    Json(json!({"ignored": parsed.event_name})),
                )
                    .into_response()
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        };
    };
    let clone_url = parsed
        .clone_url
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| repo.clone_url.clone());
    let mut fetch_repo = repo.clone();
    fetch_repo.clone_url = clone_url;
    if event.actor.is_empty() {
        event.actor = format!("{forge:?}").to_lowercase();
    }
    queue_event(&app, &fetch_repo, &event, &parsed.delivery_id).await
}

/// Shared by webhooks and the local repository watcher.
pub async fn queue_event(
    app: &App,
    repo: &hangar_store::Repo,
    event: &crate::workflows::Event,
    delivery_id: &str,
) -> Response {
    let (runs, errors) = match app.runs_for_event(repo, event).await {
        Ok(x) => x,
        Err(e) => {
            app.metrics.delivery("fetch_failed");
            // Recorded under a distinct id: the forge's redelivery of the same id
            // must still be processed once the commit can be fetched.
            let _ = app.store.record_delivery(
                &format!("{delivery_id}#failed-{}", hangar_store::now_ms()),
                Some(repo.id),
                &event.name,
                "fetch_failed",
                &[],
            );
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("could not read the commit {}: {e:#}", event.sha),
            );
        }
    };
    let outcome = if runs.is_empty() {
        "no_workflows"
    } else {
        "queued"
    };
    match app
        .store
        .record_delivery(delivery_id, Some(repo.id), &event.name, outcome, &runs)
    {
        Ok(None) => {
            app.metrics.delivery("duplicate");
            (
                StatusCode::OK,
                Json(json!({"duplicate": true, "delivery": delivery_id})),
            )
                .into_response()
        }
        Ok(Some(ids)) => {
            app.metrics.delivery(outcome);
            if event.name == "push"
                && default_branch_refs().contains(&event.git_ref.as_str())
                && let Err(e) = app.sync_environments(repo, &event.sha).await
            {
                tracing::warn!("{e:#}");
            }
            app.start_runs(&ids).await;
            (
                StatusCode::ACCEPTED,
                Json(json!({"runs": ids, "workflow_errors": errors})),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}
