//! `POST /hooks/{github|gitea|forgejo|gitlab}`: forge webhooks. Authenticated by
//! the repository's webhook secret (forges cannot send bearer tokens), or on
//! GitHub by the server-wide App's (`github_app`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::app::{App, default_branch_refs};
use crate::auth::error;
use crate::webhook::{self, Forge};

#[derive(Deserialize)]
pub struct HookQuery {
    pub repo: Option<String>,
}

/// GitHub's own cap on a webhook payload; anything larger is refused unread.
pub const MAX_HOOK_BODY: usize = 25 * 1024 * 1024;

/// A body seen again within this window is a replay, whatever its delivery id.
const REPLAY_WINDOW_MS: i64 = 60 * 60 * 1000;
/// Bodies remembered at most (oldest forgotten first): the window's memory is bounded.
const REPLAY_MAX: usize = 50_000;

/// Digests of accepted webhook bodies in the replay window.
#[derive(Default)]
pub struct ReplayWindow {
    /// Body digest → (first seen, its delivery id).
    seen: std::collections::HashMap<[u8; 32], (i64, String)>,
    order: std::collections::VecDeque<([u8; 32], i64)>,
}

impl ReplayWindow {
    /// Records `digest` under `delivery`; false when the body was already seen
    /// within the window under another delivery id (the same id is the forge's
    /// redelivery, which the delivery record answers as a duplicate).
    fn admit(&mut self, digest: [u8; 32], delivery: &str, now: i64) -> bool {
        while let Some((d, at)) = self.order.front().copied() {
            if now - at < REPLAY_WINDOW_MS && self.order.len() < REPLAY_MAX {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&d).is_some_and(|(t, _)| *t == at) {
                self.seen.remove(&d);
            }
        }
        if let Some((_, id)) = self.seen.get(&digest) {
            return id == delivery;
        }
        self.seen.insert(digest, (now, delivery.to_string()));
        self.order.push_back((digest, now));
        true
    }

    /// Forgets a body whose delivery could not be processed, so its redelivery is.
    fn forget(&mut self, digest: &[u8; 32]) {
        self.seen.remove(digest);
    }
}

fn reject(app: &App, status: StatusCode, outcome: &str, msg: &str) -> Response {
    app.metrics.delivery(outcome);
    error(status, msg)
}

/// The answer to any delivery that cannot be authenticated: the same for an
/// unknown repository, one without a secret and a bad signature, so a caller
/// cannot probe which repositories are registered.
fn unauthenticated(app: &App, outcome: &str) -> Response {
    reject(
        app,
        StatusCode::UNAUTHORIZED,
        outcome,
        "the webhook signature does not match the repository's secret (or the repository is not registered)",
    )
}

/// Only the repository's name, read to find whose secret checks the signature;
/// everything else in the body is skipped unread until the signature holds.
#[derive(Deserialize)]
struct NameOnly {
    repository: Option<FullName>,
    project: Option<PathWithNamespace>,
}
#[derive(Deserialize)]
struct FullName {
    full_name: Option<String>,
}
#[derive(Deserialize)]
struct PathWithNamespace {
    path_with_namespace: Option<String>,
}

/// The JSON document of a body: GitHub and Gitea can send `payload=<json>` form-encoded.
fn json_of(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        for (k, v) in form_urlencoded::parse(body) {
            if k == "payload" {
                return v.into_owned().into_bytes();
            }
        }
        return Vec::new();
    }
    body.to_vec()
}

pub async fn receive(
    State(app): State<Arc<App>>,
    Path(forge): Path<String>,
    Query(q): Query<HookQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(forge) = Forge::parse(&forge) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown forge: use /hooks/github, /hooks/gitea, /hooks/forgejo or /hooks/gitlab",
        );
    };
    let too_large = || {
        reject(
            &app,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("a webhook body is at most {MAX_HOOK_BODY} bytes"),
        )
    };
    // Refused before a byte is read when the length is announced; otherwise the
    // read stops at the cap.
    if headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_HOOK_BODY as u64)
    {
        return too_large();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_HOOK_BODY).await else {
        return too_large();
    };
    let json = json_of(&headers, &body);
    // The server-wide GitHub App's deliveries are signed with its own secret;
    // its installation events name no repository and are answered here.
    let mut by_app = false;
    if forge == Forge::GitHub {
        match crate::github_app::delivery(&app, &headers, &body, &json, || {
            unauthenticated(&app, "bad_signature")
        })
        .await
        {
            crate::github_app::Delivery::Answered(r) => return r,
            crate::github_app::Delivery::Verified => by_app = true,
            crate::github_app::Delivery::NotTheApp => {}
        }
    }
    // Which repository? `?repo=` or the payload's own name (untrusted until verified).
    let name = match q.repo {
        Some(n) => n,
        None => {
            let named = match serde_json::from_slice::<NameOnly>(&json) {
                Ok(n) => n
                    .repository
                    .and_then(|r| r.full_name)
                    .or_else(|| n.project.and_then(|p| p.path_with_namespace)),
                Err(e) => {
                    return reject(
                        &app,
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        &format!("the payload is not JSON: {e}"),
                    );
                }
            };
            match named {
                Some(n) => n,
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
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    let secret = match &repo {
        Some(r) => match app.store.repo_webhook_secret(r.id) {
            Ok(s) => s,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        },
        None => None,
    };
    // A secret stored before short ones were refused authenticates nothing.
    let secret = secret.filter(|s| s.chars().count() >= crate::api::MIN_WEBHOOK_SECRET);
    // The same work whether or not the repository exists (no timing probe).
    let verified = webhook::verify(
        forge,
        &headers,
        &body,
        secret
            .as_deref()
            .unwrap_or("hangar-no-such-repository-secret"),
    );
    let (Some(repo), true) = (repo, by_app || (secret.is_some() && verified)) else {
        return unauthenticated(&app, "bad_signature");
    };
    let parsed = match webhook::parse(forge, &headers, &json) {
        Ok(p) => p,
        Err(msg) => return reject(&app, StatusCode::BAD_REQUEST, "malformed", &msg),
    };
    let digest: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(&body).into()
    };
    let fresh = app.replays.lock().unwrap_or_else(|e| e.into_inner()).admit(
        digest,
        &parsed.delivery_id,
        hangar_store::now_ms(),
    );
    if !fresh {
        return reject(
            &app,
            StatusCode::CONFLICT,
            "replay",
            "this body was already delivered (a replay under a new delivery id is refused)",
        );
    }
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
    if event.actor.is_empty() {
        event.actor = format!("{forge:?}").to_lowercase();
    }
    // The payload's clone URL is never fetched: the repository is read from the
    // URL the administrator registered.
    let answer = queue_event(&app, &repo, &event, &parsed.delivery_id).await;
    if answer.status() == StatusCode::UNPROCESSABLE_ENTITY || answer.status().is_server_error() {
        app.replays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(&digest);
    }
    answer
}

/// Shared by webhooks and the local repository watcher.
pub async fn queue_event(
    app: &Arc<App>,
    repo: &hangar_store::Repo,
    event: &crate::workflows::Event,
    delivery_id: &str,
) -> Response {
    // A deleted branch or tag has no commit to read (its `after` is all
    // zeros): nothing to build, and nothing the forge should retry.
    if event.name == "push" && event.deleted {
        app.metrics.delivery("ref_deleted");
        let duplicate = matches!(
            app.store
                .record_delivery(delivery_id, Some(repo.id), &event.name, "ref_deleted", &[]),
            Ok(None)
        );
        return (
            StatusCode::OK,
            Json(json!({"runs": [], "ref_deleted": true, "duplicate": duplicate})),
        )
            .into_response();
    }
    let intake = match app.runs_for_event(repo, event).await {
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
    let crate::app::Intake {
        mut runs,
        mut refused,
        errors,
        head_unreadable,
    } = intake;
    // A pull request whose head cannot be read still answers 2xx: the base's
    // `pull_request_target` runs are queued, and the head's failure is a
    // failed run (on the forge as a failed check) rather than a delivery the
    // forge would retry for ever (GitLab disables a hook that keeps failing).
    let head_run = head_unreadable.as_ref().map(|why| {
        refused.push(app.unreadable_head_run(repo, event, why));
        refused.len() - 1
    });
    // Stored with the runs, in the one transaction of the delivery: a
    // redelivery doubles neither. Refused runs come last.
    let to_start = runs.len();
    runs.append(&mut refused);
    let outcome = if head_unreadable.is_some() {
        "head_unreadable"
    } else if runs.is_empty() {
        "no_workflows"
    } else if to_start == 0 {
        // Only invalid files' failed runs: nothing will run.
        "invalid_workflows"
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
        Ok(Some(mut ids)) => {
            app.metrics.delivery(outcome);
            if event.name == "push"
                && default_branch_refs().contains(&event.git_ref.as_str())
                && let Err(e) = app.sync_environments(repo, &event.sha).await
            {
                tracing::warn!("{e:#}");
            }
            let refused = ids.split_off(to_start);
            for &run in &refused {
                if let Err(e) = app.fail_refused(run).await {
                    tracing::warn!(run, "failing a refused run: {e:#}");
                }
            }
            let failed = head_run.map(|i| refused[i]);
            app.start_runs(&ids).await;
            // A fresh delivery only: a redelivery (answered above) tags nothing.
            crate::release_tag::after_push(app, repo, event, delivery_id);
            let invalid: Vec<i64> = refused
                .iter()
                .copied()
                .filter(|r| Some(*r) != failed)
                .collect();
            let mut answer = json!({
                "runs": ids,
                "workflow_errors": errors,
                "invalid_workflow_runs": invalid,
            });
            if let (Some(run), Some(why)) = (failed, head_unreadable) {
                answer["head_unreadable"] = json!({"run": run, "error": why});
            }
            (StatusCode::ACCEPTED, Json(answer)).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}
