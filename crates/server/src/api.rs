//! REST API under `/api/v1` (see `openapi.rs` for the document served to clients).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use hangar_store::{ApprovalState, Conclusion, NewRepo, Role, RunFilter, Status};

use crate::app::App;
use crate::auth::{Caller, error};
use crate::errors::error_coded;
use crate::paging::{self, Key, PageQuery, page_or_400};
use crate::workflows::{self, Event};

fn internal(e: anyhow::Error) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return internal(e.into()),
        }
    };
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness (no token): 200 only when this server should be sent work: its
/// database answers, at the schema version this build migrates to (a newer
/// server may have migrated a shared database past it), and it is not
/// shutting down. Otherwise 503 with the reason's `code`
/// (`draining`, `database_unavailable`, `schema_mismatch`). `/healthz` stays
/// liveness: a server cut off from its database is alive and recovers by
/// itself, so it must not be restarted, only passed over.
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return crate::errors::error_coded(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the server is shutting down: it finishes what it holds and takes nothing new",
        );
    }
    if let Some(why) = app.store.unavailable() {
        return crate::errors::database_unavailable(&why);
    }
    let store = app.store.clone();
    let version = match tokio::task::spawn_blocking(move || store.schema_version()).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return crate::errors::database_unavailable(&format!(
                "the database did not answer: {e:#}"
            ));
        }
        Err(e) => return internal(e.into()),
    };
    if version != hangar_store::SCHEMA_VERSION {
        return crate::errors::error_coded(
            StatusCode::SERVICE_UNAVAILABLE,
            "schema_mismatch",
            &format!(
                "the database is at schema version {version} and this server's is {}: \
                 run the same hangar version on every server of a database",
                hangar_store::SCHEMA_VERSION
            ),
        );
    }
    Json(json!({"ready": true, "schema_version": version})).into_response()
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    if let Ok(d) = app.store.queue_depth() {
        app.metrics.queue_depth.set(d);
    }
    let mut text = app.metrics.render();
    // The DORA gauges are computed per scrape from the deployments in the
    // store (no history file is read here); they and the routers' series go
    // before the exposition's closing `# EOF`.
    let projects = crate::delivery_history::watched(&app);
    let now = (hangar_store::now_ms() / 1000) as u64;
    let stored = app
        .store
        .env_deployments(&hangar_store::EnvDeploymentFilter {
            started_since: i64::try_from(now.saturating_sub(DORA_WINDOW)).ok(),
            ..Default::default()
        })
        .unwrap_or_else(|e| {
            tracing::warn!("reading deployments for /metrics: {e:#}");
            Vec::new()
        });
    let mut named: Vec<(String, String)> = projects
        .iter()
        .map(|p| (p.id.clone(), p.name.clone()))
        .collect();
    for d in &stored {
        if !named.iter().any(|(id, _)| *id == d.project) {
            named.push((d.project.clone(), d.project_name.clone()));
        }
    }
    let labels = source_labels(&named);
    let mut delivery = dora_metrics(&app, &labels, &stored, now);
    // The routers of the watched projects' environments, merged: each is
    // asked over its control socket (blocking, so off the async threads).
    let sources = projects
        .iter()
        .map(|p| (labels[&p.id].clone(), p.data()))
        .collect::<Vec<_>>();
    if let Ok(routers) =
        tokio::task::spawn_blocking(move || hangar_deploy::routers_openmetrics(&sources)).await
    {
        delivery.push_str(&routers);
    }
    match text.rfind("# EOF") {
        Some(at) => text.insert_str(at, &delivery),
        None => text.push_str(&delivery),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// How the delivery metrics name each project (`source`), by project id
/// (`(id, folder name)` pairs: the watched projects and those with
/// deployments in the store): the folder name, as the delivery page shows
/// it, when no other of these projects has that name (nor is it `workflow`,
/// the DORA gauges' source of environments workflow jobs deploy to);
/// otherwise that name, `-` and the first 8 hex digits of the project's id
/// (the SHA-256 of its directory's absolute path). Two checkouts named `web`
/// then keep a series each (with one label the second's series were dropped
/// as duplicates), and the label depends only on the path, so it is the
/// same at every start of the server. A single project keeps its plain
/// name: dashboards filtering on it see no change.
pub(crate) fn source_labels(projects: &[(String, String)]) -> BTreeMap<String, String> {
    projects
        .iter()
        .map(|(id, name)| {
            let shared = name == WORKFLOW_SOURCE
                || projects.iter().filter(|(_, other)| other == name).count() > 1;
            let label = if shared {
                format!("{name}-{}", &id[..id.len().min(8)])
            } else {
                name.clone()
            };
            (id.clone(), label)
        })
        .collect()
}

/// The DORA gauges' `source` of the environments workflow jobs deploy to.
const WORKFLOW_SOURCE: &str = "workflow";

/// DORA's window: the last 30 days.
const DORA_WINDOW: u64 = 30 * 86_400;

/// DORA's four keys over the last 30 days, for every environment hangar knows:
/// those `hangar deploy` manages in projects the server watches or watched
/// (from the store's deployments, `source` labelled by [`source_labels`]) and
/// the environments workflow jobs deploy to (source = `workflow`).
fn dora_metrics(
    app: &App,
    labels: &BTreeMap<String, String>,
    stored: &[hangar_store::EnvDeployment],
    now: u64,
) -> String {
    use hangar_deploy::dora;
    use hangar_deploy::state::{DeploymentRecord, Outcome};
    let mut rows: Vec<(String, dora::Dora)> = Vec::new();
    let mut by_env: BTreeMap<(String, String), Vec<DeploymentRecord>> = BTreeMap::new();
    for d in stored {
        match crate::delivery_history::record(d) {
            Ok(rec) => by_env
                .entry((labels[&d.project].clone(), d.environment.clone()))
                .or_default()
                .push(rec),
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
    for ((source, env), history) in by_env {
        rows.push((source, dora::compute(&env, &history, now, DORA_WINDOW)));
    }
    let mut by_env: BTreeMap<String, Vec<DeploymentRecord>> = BTreeMap::new();
    for d in app.store.list_deployments(None).unwrap_or_default() {
        let at = (d.created_at / 1000) as u64;
        by_env
            .entry(d.environment.clone())
            .or_default()
            .push(DeploymentRecord {
                id: d.id as u64,
                env: d.environment,
                service: String::new(),
                version: d.sha.clone(),
                previous: None,
                strategy: "workflow".into(),
                commit: Some(d.sha),
                commit_time: None,
                started: at,
                finished: at,
                outcome: if d.status == hangar_store::Conclusion::Success {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                },
                rollback_from: None,
                events: Vec::new(),
                event_times: Vec::new(),
                started_ms: None,
                finished_ms: None,
            });
    }
    for (env, records) in by_env {
        rows.push((
            WORKFLOW_SOURCE.into(),
            dora::compute(&env, &records, now, DORA_WINDOW),
        ));
    }
    let refs: Vec<(&str, &dora::Dora)> = rows.iter().map(|(s, d)| (s.as_str(), d)).collect();
    dora::openmetrics(&refs)
}

#[derive(Deserialize)]
pub struct NewRepoBody {
    pub name: String,
    pub clone_url: String,
    #[serde(default)]
    pub forge: Option<String>,
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

pub async fn list_repos(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let repos = tri!(app.store.list_repos());
    paging::respond(&uri, repos, |r| Key::Int(r.id), false, &page)
}

/// Shortest webhook secret accepted at registration: a guessable secret is no secret.
pub(crate) const MIN_WEBHOOK_SECRET: usize = 16;

pub async fn create_repo(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NewRepoBody>,
) -> Response {
    if b.name.trim().is_empty() || b.clone_url.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "`name` and `clone_url` are required",
        );
    }
    if let Err(msg) = crate::git::check_clone_url(&b.clone_url, &app.data_dir, &app.local_repos) {
        return error(StatusCode::BAD_REQUEST, &msg);
    }
    if let Some(secret) = &b.webhook_secret
        && secret.chars().count() < MIN_WEBHOOK_SECRET
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "`webhook_secret` must be at least {MIN_WEBHOOK_SECRET} characters (an empty or short secret lets anyone forge deliveries); generate one with `openssl rand -hex 32`, or leave it out to accept no webhooks"
            ),
        );
    }
    let repo = tri!(app.store.create_repo(&NewRepo {
        name: b.name.clone(),
        clone_url: b.clone_url.clone(),
        forge: b.forge.unwrap_or_else(|| "github".into()),
        webhook_secret: b.webhook_secret,
    }));
    // Its protection rules count from now, not from the first push to main.
    app.env_loads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(repo.id, 0);
    tri!(app.store.audit(
        &c.name,
        "repo.register",
        &format!("repo/{}", repo.id),
        &json!({"name": repo.name})
    ));
    (StatusCode::CREATED, Json(repo)).into_response()
}

#[derive(Deserialize)]
pub struct ForgeBody {
    /// A token that may write commit statuses, or check runs with
    /// `report: checks` (write-only: never shown again).
    #[serde(default)]
    pub token: Option<String>,
    /// GitHub only: `statuses` (the default with a token) or `checks` (check
    /// runs with annotations; the default with an App).
    #[serde(default)]
    pub report: Option<String>,
    /// A GitHub App's id (or client id), to report check runs as the App.
    #[serde(default)]
    pub app_id: Option<serde_json::Value>,
    /// The App's installation on the repository's account; found when absent.
    #[serde(default)]
    pub installation_id: Option<u64>,
    /// The App's PEM private key (write-only, sealed like a secret).
    #[serde(default)]
    pub private_key: Option<String>,
    /// `github`, `gitea`, `forgejo` or `gitlab`; the repository's forge when absent.
    #[serde(default)]
    pub kind: Option<String>,
    /// The forge's API root; GitHub's and gitlab.com's are the defaults.
    #[serde(default)]
    pub api_url: Option<String>,
    /// `owner/name` on the forge; the repository's registered name when absent.
    #[serde(default)]
    pub project: Option<String>,
}

fn forge_view(repo_id: i64, c: &hangar_store::ForgeCredential) -> Value {
    let checks = crate::github_checks::ChecksCredential::decode(&c.token);
    let mut v = json!({
        "repo_id": repo_id,
        "kind": c.kind,
        "api_url": c.api_url,
        "project": c.project,
        "report": if checks.is_some() { "checks" } else { "statuses" },
        "has_token": checks.as_ref().map_or(!c.token.is_empty(), |k| k.token.is_some()),
    });
    if let Some(k) = checks
        && let Some(app) = k.app_id
    {
        v["app_id"] = json!(app);
        v["installation_id"] = json!(k.installation_id);
        v["has_private_key"] = json!(k.private_key.is_some());
    }
    v
}

/// Sets where a repository's commit statuses go, with the token sealed like a secret.
pub async fn put_forge(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(repo_id): Path<i64>,
    Json(b): Json<ForgeBody>,
) -> Response {
    let Some(repo) = tri!(app.store.get_repo(repo_id)) else {
        return error(StatusCode::NOT_FOUND, &format!("no repository {repo_id}"));
    };
    let kind = b.kind.unwrap_or_else(|| repo.forge.clone());
    let kind = if kind == "forgejo" {
        "gitea".to_string()
    } else {
        kind
    };
    let api_url = match b.api_url.or_else(|| {
        crate::forge_status::Forge::parse(&kind)
            .and_then(|f| f.default_api_url())
            .map(String::from)
    }) {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "`api_url` is required for {kind}: the forge's API root, e.g. https://gitea.example.com/api/v1"
                ),
            );
        }
    };
    let app_id = match b.app_id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("`app_id` must be the GitHub App's id, not {other}"),
            );
        }
    };
    let as_app = app_id.is_some() || b.private_key.is_some() || b.installation_id.is_some();
    let checks = match b.report.as_deref() {
        None => as_app,
        Some("checks") => true,
        Some("statuses") if !as_app => false,
        Some("statuses") => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "a GitHub App reports check runs: drop `report: statuses` or use a token",
            );
        }
        Some(other) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("`report` `{other}` is not one of statuses, checks"),
            );
        }
    };
    let token = if checks {
        if kind != "github" {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "check runs are GitHub's; {kind} takes commit statuses (drop `report`, `app_id`, `private_key`)"
                ),
            );
        }
        let c = crate::github_checks::ChecksCredential {
            token: b.token,
            app_id,
            installation_id: b.installation_id,
            private_key: b.private_key,
        };
        if let Err(msg) = c.validate() {
            return error(StatusCode::UNPROCESSABLE_ENTITY, &msg);
        }
        c.encode()
    } else {
        match b.token {
            // A plain token is told apart from the checks credential by its
            // first character.
            Some(t) if t.trim_start().starts_with('{') => {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "`token` is not a token");
            }
            Some(t) => t,
            None => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "`token` is required: a token that may write commit statuses",
                );
            }
        }
    };
    let cred = hangar_store::ForgeCredential {
        kind,
        api_url,
        project: b.project.unwrap_or_else(|| repo.name.clone()),
        token,
    };
    if let Err(msg) = crate::forge_status::validate(&cred) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &msg);
    }
    tri!(app.store.set_forge_credential(repo_id, &cred));
    app.forge.forget_credentials();
    tri!(app.store.audit(
        &c.name,
        "repo.forge.set",
        &format!("repo/{repo_id}"),
        &json!({"kind": cred.kind, "api_url": cred.api_url, "project": cred.project, "report": if checks { "checks" } else { "statuses" }})
    ));
    Json(forge_view(repo_id, &cred)).into_response()
}

pub async fn get_forge(State(app): State<Arc<App>>, Path(repo_id): Path<i64>) -> Response {
    // Level 0 holds the server-wide App (`/api/v1/github-app`), no repository's.
    if repo_id == crate::github_app::SERVER_LEVEL {
        return error(StatusCode::NOT_FOUND, "no repository 0");
    }
    match tri!(app.store.forge_credential(repo_id)) {
        Some(c) => Json(forge_view(repo_id, &c)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("repository {repo_id} reports to no forge"),
        ),
    }
}

pub async fn delete_forge(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(repo_id): Path<i64>,
) -> Response {
    if repo_id == crate::github_app::SERVER_LEVEL {
        return error(StatusCode::NOT_FOUND, "no repository 0");
    }
    if !tri!(app.store.delete_forge_credential(repo_id)) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("repository {repo_id} reports to no forge"),
        );
    }
    app.forge.forget_credentials();
    tri!(app.store.audit(
        &c.name,
        "repo.forge.delete",
        &format!("repo/{repo_id}"),
        &json!({})
    ));
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct OutboundQuery {
    #[serde(default)]
    pub kind: Option<String>,
}

/// What the server sent out (commit statuses, notifications) and how it went.
pub async fn list_outbound(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(q): Query<OutboundQuery>,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    // Pages walk the newest entries the log keeps in one read.
    let all = tri!(app.store.list_outbound(q.kind.as_deref(), LIST_WINDOW));
    paging::respond(&uri, all, |o| Key::Int(o.id), true, &page)
}

/// The newest entries of an append-only log (outbound, deliveries, audit)
/// that its list pages through.
const LIST_WINDOW: i64 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationBody {
    /// The repository whose events are sent; absent: every repository.
    #[serde(default)]
    pub repo_id: Option<i64>,
    pub events: Vec<String>,
    /// `slack`, `teams` or `webhook`.
    pub channel: String,
    /// The channel's incoming webhook URL (write-only: only its host is shown).
    pub url: String,
    /// `webhook` only: signs each body, `X-Hangar-Signature-256: sha256=<hmac>`.
    #[serde(default)]
    pub secret: Option<String>,
}

fn rule_view(r: &hangar_store::NotificationRule) -> Value {
    json!({
        "id": r.id,
        "repo_id": r.repo_id,
        "events": r.events,
        "channel": r.channel,
        "host": crate::notify::host_of(&r.target),
        "signed": r.secret.is_some(),
        "created_at": r.created_at,
    })
}

pub async fn create_notification(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Json(b): Json<NotificationBody>,
) -> Response {
    if let Some(id) = b.repo_id
        && tri!(app.store.get_repo(id)).is_none()
    {
        return error(StatusCode::NOT_FOUND, &format!("no repository {id}"));
    }
    let mut rule = hangar_store::NotificationRule {
        id: 0,
        repo_id: b.repo_id,
        events: b.events,
        channel: b.channel,
        target: b.url,
        secret: b.secret.filter(|s| !s.is_empty()),
        created_at: hangar_store::now_ms(),
    };
    if let Err(msg) = crate::notify::validate(&rule) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &msg);
    }
    rule.id = tri!(app.store.create_notification_rule(&rule));
    tri!(app.store.audit(
        &c.name,
        "notification.create",
        &format!("notification/{}", rule.id),
        &json!({"channel": rule.channel, "events": rule.events, "repo_id": rule.repo_id})
    ));
    (StatusCode::CREATED, Json(rule_view(&rule))).into_response()
}

pub async fn list_notifications(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let rules = tri!(app.store.notification_rules());
    let views: Vec<Value> = rules.iter().map(rule_view).collect();
    paging::respond(
        &uri,
        views,
        |r| Key::Int(r["id"].as_i64().unwrap_or(0)),
        false,
        &page,
    )
}

pub async fn delete_notification(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    if !tri!(app.store.delete_notification_rule(id)) {
        return error(StatusCode::NOT_FOUND, &format!("no notification rule {id}"));
    }
    tri!(app.store.audit(
        &c.name,
        "notification.delete",
        &format!("notification/{id}"),
        &json!({})
    ));
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct SecretBody {
    pub value: String,
}

pub async fn put_secret(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path((repo, name)): Path<(i64, String)>,
    Json(b): Json<SecretBody>,
) -> Response {
    if let Some(r) = crate::settings::bad_name("secret", &name) {
        return r;
    }
    let repo = crate::admin::level(repo);
    tri!(app.store.set_secret(repo, &name, &b.value));
    tri!(app.secret_changed(
        &c.name,
        "secret.set",
        &format!("repo/{}/secret/{name}", repo.unwrap_or(0)),
        Some(&b.value),
    ));
    StatusCode::NO_CONTENT.into_response()
}

pub async fn list_secrets(
    State(app): State<Arc<App>>,
    uri: Uri,
    Path(repo): Path<i64>,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let repo = crate::admin::level(repo);
    names_page(&uri, tri!(app.store.secret_names(repo)), &page)
}

/// A page of names, as `{"names": [...]}` with the paging headers.
pub(crate) fn names_page(uri: &Uri, names: Vec<String>, page: &paging::Page) -> Response {
    let (out, total, next) = paging::slice(names, |n| Key::Str(n.clone()), false, page);
    (
        paging::headers(uri, total, next.as_ref()),
        Json(json!({"names": out})),
    )
        .into_response()
}

pub async fn put_variable(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path((repo, name)): Path<(i64, String)>,
    Json(b): Json<SecretBody>,
) -> Response {
    if let Some(r) = crate::settings::bad_name("variable", &name) {
        return r;
    }
    let repo = crate::admin::level(repo);
    tri!(app.store.set_variable(repo, &name, &b.value));
    tri!(app.store.audit(
        &c.name,
        "variable.set",
        &format!("repo/{}/variable/{name}", repo.unwrap_or(0)),
        &json!({})
    ));
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct DispatchBody {
    pub workflow: String,
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
}

pub async fn dispatch(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(repo_id): Path<i64>,
    Json(b): Json<DispatchBody>,
) -> Response {
    let Some(repo) = tri!(app.store.get_repo(repo_id)) else {
        return error(StatusCode::NOT_FOUND, "no such repository");
    };
    let rev = b.git_ref.clone().unwrap_or_else(|| "HEAD".into());
    let sha = match app.git.resolve(&repo.clone_url, &rev).await {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot resolve `{rev}`: {e:#}"),
            );
        }
    };
    let files = tri!(app.git.workflows_at(&repo.clone_url, &sha).await);
    let wanted = b.workflow.trim_start_matches(".github/workflows/");
    let Some((path, text)) = files
        .into_iter()
        .find(|(p, _)| p.trim_start_matches(".github/workflows/") == wanted)
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no workflow `{}` at {sha}", b.workflow),
        );
    };
    let wf = match workflows::parse(&path, &text) {
        Ok(w) => w,
        // GitHub answers a dispatch of an invalid file 422, and starts nothing.
        Err(invalid) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error": format!(
                        "Invalid workflow file: {path}#L{}\n{}",
                        invalid.first_line(),
                        workflows::errors_text(&invalid.errors)
                    ),
                    "code": "invalid_workflow",
                    "errors": invalid.errors,
                })),
            )
                .into_response();
        }
    };
    let Some(declared) = wf.dispatch_inputs() else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{path} has no `workflow_dispatch` trigger"),
        );
    };
    let inputs = match workflows::check_inputs(declared, &b.inputs) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let git_ref = match &b.git_ref {
        Some(r) if r.starts_with("refs/") => r.clone(),
        Some(r) if r.len() != 40 => format!("refs/heads/{r}"),
        _ => app
            .git
            .symbolic_head(&repo.clone_url)
            .await
            .unwrap_or_else(|| "refs/heads/main".into()),
    };
    let ev = Event {
        name: "workflow_dispatch".into(),
        git_ref,
        sha,
        payload: json!({"inputs": inputs, "ref": b.git_ref, "sender": {"login": c.name}}),
        actor: c.name.clone(),
        ..Default::default()
    };
    let run = match app.new_run(&repo, &wf, &ev, inputs) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let id = tri!(app.store.create_run(&run));
    tri!(app.store.audit(
        &c.name,
        "run.dispatch",
        &format!("run/{id}"),
        &json!({"workflow": path})
    ));
    app.start_runs(&[id]).await;
    (StatusCode::CREATED, Json(json!({"run": id}))).into_response()
}

#[derive(Deserialize)]
pub struct RefQuery {
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
}

/// The repository's workflows at a ref (default: its HEAD), with the
/// `workflow_dispatch` inputs the UI turns into a form.
pub async fn list_workflows(
    State(app): State<Arc<App>>,
    Path(repo_id): Path<i64>,
    Query(q): Query<RefQuery>,
) -> Response {
    let Some(repo) = tri!(app.store.get_repo(repo_id)) else {
        return error(StatusCode::NOT_FOUND, "no such repository");
    };
    let rev = match q.git_ref {
        Some(r) => r,
        None => app
            .git
            .symbolic_head(&repo.clone_url)
            .await
            .unwrap_or_else(|| "HEAD".into()),
    };
    let sha = match app.git.resolve(&repo.clone_url, &rev).await {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot resolve `{rev}`: {e:#}"),
            );
        }
    };
    let files = tri!(app.git.workflows_at(&repo.clone_url, &sha).await);
    let out: Vec<Value> = files
        .into_iter()
        .map(|(path, text)| match workflows::parse(&path, &text) {
            Ok(wf) => {
                json!({"path": path, "name": wf.name, "dispatch_inputs": wf.dispatch_inputs_json()})
            }
            Err(invalid) => {
                json!({"path": path, "error": invalid.to_string(), "errors": invalid.errors})
            }
        })
        .collect();
    Json(json!({"ref": rev, "sha": sha, "workflows": out})).into_response()
}

#[derive(Deserialize)]
pub struct RunsQuery {
    pub repo: Option<i64>,
    pub status: Option<String>,
    pub event: Option<String>,
    pub branch: Option<String>,
    pub workflow: Option<String>,
    pub conclusion: Option<String>,
    pub commit: Option<String>,
    pub actor: Option<String>,
    pub pull_request: Option<i64>,
}

/// Runs, newest first, filtered and paged (see `paging.rs`).
pub async fn list_runs(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(q): Query<RunsQuery>,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = match p.page(50) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let before = match page.after {
        None => None,
        Some(Key::Int(id)) => Some(id),
        Some(Key::Str(_)) => {
            return error_coded(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "`cursor` is not a cursor of the runs list",
            );
        }
    };
    let some = |s: Option<String>| s.filter(|s| !s.is_empty());
    let status = match some(q.status).map(|s| s.parse::<Status>()) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            return error_coded(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                &format!("`status`: {e}"),
            );
        }
    };
    let conclusion = match some(q.conclusion).map(|c| c.parse::<Conclusion>()) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            return error_coded(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                &format!("`conclusion`: {e}"),
            );
        }
    };
    let mut f = RunFilter {
        repo_id: q.repo,
        status,
        event: some(q.event),
        branch: some(q.branch),
        workflow: some(q.workflow),
        conclusion,
        commit: some(q.commit),
        actor: some(q.actor),
        pull_request: q.pull_request,
        before,
        // One more than the page says whether another page follows.
        limit: Some(page.limit + 1),
    };
    let mut runs = tri!(app.store.list_runs(&f));
    f.before = None;
    let total = tri!(app.store.count_runs(&f));
    let next = if runs.len() as i64 > page.limit {
        runs.truncate(page.limit as usize);
        runs.last().map(|r| Key::Int(r.id))
    } else {
        None
    };
    let repos: BTreeMap<i64, String> = tri!(app.store.list_repos())
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect();
    // A run whose job waits for a reviewer is "waiting", as GitHub shows it,
    // whatever its other jobs do meanwhile.
    let mut reviews: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for a in tri!(app.store.list_approvals(true)) {
        reviews.entry(a.run_id).or_default().push(a.environment);
    }
    let rows: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut v = run_row(&app, r, repos.get(&r.repo_id));
            if let Some(envs) = reviews.get(&r.id)
                && r.status != Status::Completed
            {
                v["status"] = json!(Status::Waiting);
                v["waiting_reason"] = json!(format!(
                    "waiting for a reviewer to approve the deployment to {}",
                    envs.join(", ")
                ));
            }
            v
        })
        .collect();
    (paging::headers(&uri, total, next.as_ref()), Json(rows)).into_response()
}

/// A run as the runs list shows it: the run, its repository's name, and the
/// commit message's first line and author from the event (a push's
/// `head_commit`, a pull request's title and author).
fn run_row(app: &App, run: &hangar_store::Run, repo: Option<&String>) -> Value {
    let mut v = serde_json::to_value(run).unwrap_or_default();
    let payload = app.store.run_payload(run.id).unwrap_or_default();
    let (message, author) = if let Some(pr) = payload.get("pull_request").filter(|p| p.is_object())
    {
        (pr["title"].as_str(), pr["user"]["login"].as_str())
    } else {
        let c = &payload["head_commit"];
        (
            c["message"].as_str(),
            c["author"]["name"]
                .as_str()
                .or_else(|| c["author"]["username"].as_str()),
        )
    };
    v["repo"] = json!(repo);
    v["commit_message"] = json!(message.map(|m| m.lines().next().unwrap_or("").to_string()));
    v["author"] = json!(author.unwrap_or(&run.actor));
    v
}

pub async fn get_run(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    let Some(run) = tri!(app.store.get_run(id)) else {
        return error(StatusCode::NOT_FOUND, "no such run");
    };
    let mut jobs = Vec::new();
    let all = tri!(app.store.jobs_of_run(id));
    // A caller of a reusable workflow that was expanded is not shown as a
    // job, as on GitHub: its called jobs are, named `caller / callee`. It
    // stays in the run for its conclusion and outputs. (Never leased, it
    // never started.)
    let mut hidden: Vec<(&hangar_store::Job, String)> = Vec::new();
    if all.iter().any(|j| j.key.contains(" / ")) {
        for job in all.iter().filter(|j| j.started_at.is_none()) {
            let spec = tri!(app.store.get_job(job.id)).map(|j| j.spec);
            if let Some(prefix) = spec.and_then(|s| crate::calls::called_prefix(&s))
                && all.iter().any(|j| j.key.starts_with(&prefix))
            {
                hidden.push((job, prefix));
            }
        }
    }
    let mut graph = crate::calls::graph_needs(&all, &hidden);
    for job in all
        .iter()
        .filter(|j| !hidden.iter().any(|(h, _)| h.id == j.id))
    {
        let steps = tri!(app.store.steps_of_job(job.id, None));
        let approvals = tri!(app.store.approvals_of_job(job.id));
        let (_, lines) = tri!(app.store.log_stats(job.id, None));
        let mut v = serde_json::to_value(job).unwrap_or_default();
        if job.status == Status::Queued {
            v["waiting_reason"] = json!(app.queued_reason(job));
        }
        // What the run graph draws its lines from (see `graph_needs`).
        v["graph_needs"] = json!(graph.remove(&job.id).unwrap_or_default());
        v["steps"] = json!(steps);
        v["approvals"] = json!(approvals);
        v["log_lines"] = json!(lines);
        // Which steps wrote lines, and how many (`null`: lines of no step,
        // -1: the job's "Complete job"):
        // the job page shows a log whose lines know no step as one log.
        let by_step = tri!(app.store.log_lines_by_step(job.id, None));
        v["log_steps"] = json!(
            by_step
                .iter()
                .map(|(step, lines)| json!({"step": step, "lines": lines}))
                .collect::<Vec<_>>()
        );
        let attempts = tri!(app.store.log_attempts(job.id));
        // Re-run history: each earlier attempt with its steps and how it ended
        // (its first failing step's conclusion, or success when none failed).
        let mut history = Vec::new();
        for &n in attempts.iter().filter(|&&n| n != job.attempt) {
            let steps = tri!(app.store.steps_of_job(job.id, Some(n)));
            let failed = steps.iter().find(|s| {
                matches!(
                    s.conclusion,
                    Some(hangar_store::Conclusion::Failure | hangar_store::Conclusion::Cancelled)
                )
            });
            history.push(json!({
                "attempt": n,
                "conclusion": failed.and_then(|s| s.conclusion).or(steps.last().and_then(|s| s.conclusion)),
                "failed_step": failed.map(|s| s.name.clone()),
                "started_at": steps.first().and_then(|s| s.started_at),
                "finished_at": steps.last().and_then(|s| s.finished_at),
                "steps": steps,
            }));
        }
        v["attempts"] = json!(attempts);
        v["attempt_history"] = json!(history);
        jobs.push(v);
    }
    let repo = tri!(app.store.get_repo(run.repo_id));
    let artifacts = tri!(app.store.list_artifacts(id));
    // `held`: an untrusted run waiting for "approve and run".
    let held = tri!(app.store.run_held(id));
    // A run refused at intake (no jobs): its errors, and its title
    // ("Invalid workflow file: PATH#L7").
    let context = if all.is_empty() {
        tri!(app.store.run_context(id))
    } else {
        Value::Null
    };
    let errors = &context[crate::app::REFUSED_ERRORS];
    let refused = &context[crate::app::REFUSED];
    Json(json!({
        "run": run,
        "repo": repo,
        "jobs": jobs,
        "artifacts": artifacts,
        "held": held,
        "errors": if errors.is_array() { errors.clone() } else { json!([]) },
        "refused": refused.get("title").map(|t| json!({"title": t, "rerun": refused["rerun"]})),
    }))
    .into_response()
}

pub async fn cancel_run(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    if tri!(app.store.get_run(id)).is_none() {
        return error(StatusCode::NOT_FOUND, "no such run");
    }
    tri!(
        app.cancel_run(id, &c.name, &format!("cancelled by {}", c.name))
            .await
    );
    StatusCode::ACCEPTED.into_response()
}

#[derive(Deserialize)]
pub struct RerunBody {
    #[serde(default)]
    pub jobs: Option<Value>,
}

pub async fn rerun(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    body: Option<Json<RerunBody>>,
) -> Response {
    let which = match body.and_then(|b| b.0.jobs) {
        None => "all".to_string(),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("`jobs` is `all`, `failed` or a job id, not {other}"),
            );
        }
    };
    match app.rerun(id, &which, &c.name).await {
        Ok(jobs) => (StatusCode::ACCEPTED, Json(json!({"jobs": jobs}))).into_response(),
        Err(e) => error(StatusCode::CONFLICT, &format!("{e:#}")),
    }
}

/// Releases a run's live channel when the SSE stream that read it ends.
struct LeaveOnDrop {
    app: Arc<App>,
    run: i64,
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        self.app.live.release(self.run);
    }
}

pub async fn run_events(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    // An unknown run has no channel to make: 404, nothing kept.
    match app.store.get_run(id) {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, &format!("no run {id}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
    let rx = app.live.subscribe(id);
    let leave = LeaveOnDrop {
        app: app.clone(),
        run: id,
    };
    let hello = tokio_stream::once(Ok::<_, Infallible>(
        SseEvent::default().data(json!({"type": "hello", "run": id}).to_string()),
    ));
    // The guard lives in the closure, which drops after the receiver.
    let stream = BroadcastStream::new(rx).map(move |m| {
        let _ = &leave;
        Ok(match m {
            Ok(s) => SseEvent::default().data(&*s),
            // Too slow to keep up: the client reloads from the store.
            Err(_) => SseEvent::default().data(json!({"type": "resync"}).to_string()),
        })
    });
    Sse::new(hello.chain(stream))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Deserialize)]
pub struct LinesQuery {
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// An earlier attempt of the job (a retry or a re-run); default the latest.
    pub attempt: Option<i64>,
    /// Only this step's lines (its index, as in the job's `steps`), numbered
    /// from 0 within the step; `none`: the lines of no step (the job's set-up,
    /// and every line of a log written before lines knew their step);
    /// `complete` (or -1): the job's own lines once its steps were done
    /// (GitHub's "Complete job": its timeout, its orphans ended).
    pub step: Option<String>,
}

#[derive(Deserialize)]
pub struct AttemptQuery {
    pub attempt: Option<i64>,
}

pub async fn job_log_lines(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    Query(q): Query<LinesQuery>,
) -> Response {
    let from = q.from.unwrap_or(0).max(0);
    // Saturating: `from` near i64::MAX must not overflow.
    let to =
        q.to.unwrap_or(from.saturating_add(1000))
            .min(from.saturating_add(10_000));
    if let Some(step) = &q.step {
        let complete = hangar_agent::protocol::COMPLETE_JOB_STEP;
        let step = match step.as_str() {
            "none" => None,
            "complete" => Some(complete),
            s => match s.parse::<i64>() {
                Ok(n) if n >= 0 || n == complete => Some(n),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "`step` is a step's index (0 or more, as in the job's `steps`), `none` (the job's set-up) or `complete` (its \"Complete job\", also -1), not `{s}`"
                        ),
                    );
                }
            },
        };
        return step_log_lines(&app, id, q.attempt, step, from, to);
    }
    let chunks = tri!(app.store.log_chunks_for_lines(id, q.attempt, from, to));
    let mut lines = Vec::new();
    for c in chunks {
        let text = String::from_utf8_lossy(&c.data).into_owned();
        for (i, l) in text.lines().enumerate() {
            let n = c.first_line + i as i64;
            if n >= from && n < to {
                lines.push(json!([n, l, c.step]));
            }
        }
    }
    let (_, total) = tri!(app.store.log_stats(id, q.attempt));
    Json(json!({"from": from, "total": total, "lines": lines})).into_response()
}

/// One step's lines `[from, to)`, numbered within the step (a chunk holds
/// the lines of one step, in order): `[number, text, number in the job's log]`.
fn step_log_lines(
    app: &App,
    job: i64,
    attempt: Option<i64>,
    step: Option<i64>,
    from: i64,
    to: i64,
) -> Response {
    let chunks = tri!(app.store.log_chunks_of_step(job, attempt, step));
    let mut lines = Vec::new();
    let mut n = 0i64;
    for c in chunks {
        if n + c.line_count <= from || n >= to {
            n += c.line_count;
            continue;
        }
        let text = String::from_utf8_lossy(&c.data).into_owned();
        for (i, l) in text.lines().enumerate() {
            if n >= from && n < to {
                // The line's number in the job's whole log too: the page
                // matches live chunks (numbered so) against what it read.
                lines.push(json!([n, l, c.first_line + i as i64]));
            }
            n += 1;
        }
    }
    Json(json!({"step": step, "from": from, "total": n, "lines": lines})).into_response()
}

pub async fn job_log_raw(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    Query(q): Query<AttemptQuery>,
) -> Response {
    let chunks = tri!(app.store.log_chunks(id, q.attempt, 0));
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.data.len()).sum());
    for c in chunks {
        out.extend_from_slice(&c.data);
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
}

pub async fn list_artifacts(
    State(app): State<Arc<App>>,
    uri: Uri,
    Path(run): Path<i64>,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    if tri!(app.store.get_run(run)).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("no run {run}"));
    }
    let arts = tri!(app.store.list_artifacts(run));
    paging::respond(&uri, arts, |a| Key::Int(a.id), false, &page)
}

pub async fn upload_artifact(
    State(app): State<Arc<App>>,
    Path((run, name)): Path<(i64, String)>,
    body: Bytes,
) -> Response {
    if let Some(r) = crate::settings::bad_name("artifact", &name) {
        return r;
    }
    if tri!(app.store.get_run(run)).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("no run {run}"));
    }
    let digest = tri!(app.store.put_blob(&body));
    let id = tri!(
        app.store
            .create_artifact(run, &name, &digest, body.len() as i64)
    );
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "digest": digest})),
    )
        .into_response()
}

pub async fn download_artifact(
    State(app): State<Arc<App>>,
    Path((run, name)): Path<(i64, String)>,
) -> Response {
    let arts = tri!(app.store.list_artifacts(run));
    let Some(a) = arts.into_iter().rev().find(|a| a.name == name) else {
        return error(StatusCode::NOT_FOUND, "no such artifact");
    };
    match tri!(app.store.get_blob(&a.digest)) {
        Some(b) => ([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response(),
        None => error(
            StatusCode::GONE,
            "the artifact's blob is missing from the data directory",
        ),
    }
}

#[derive(Deserialize)]
pub struct ApprovalsQuery {
    pub pending: Option<bool>,
}

pub async fn list_approvals(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(q): Query<ApprovalsQuery>,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let all = tri!(app.store.list_approvals(q.pending.unwrap_or(true)));
    paging::respond(&uri, all, |a| Key::Int(a.id), true, &page)
}

#[derive(Deserialize)]
pub struct DecisionBody {
    pub approve: bool,
    #[serde(default)]
    pub comment: String,
}

pub async fn decide_approval(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<DecisionBody>,
) -> Response {
    let all = tri!(app.store.list_approvals(false));
    let Some(a) = all.into_iter().find(|a| a.id == id) else {
        return error(StatusCode::NOT_FOUND, "no such approval");
    };
    let run = tri!(app.store.get_run(a.run_id));
    let protection = match &run {
        Some(r) => tri!(app.store.get_environment(r.repo_id, &a.environment)).unwrap_or_default(),
        None => Default::default(),
    };
    if c.role != Role::Admin && !protection.reviewers.iter().any(|r| r == &c.name) {
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "`{}` is not a reviewer of environment `{}` ({})",
                c.name,
                a.environment,
                protection.reviewers.join(", ")
            ),
        );
    }
    // GitHub's "prevent self-review": the run's own trigger may not approve
    // it, an administrator's token included.
    if protection.prevent_self_review
        && let Some(r) = &run
        && r.actor == c.name
    {
        return crate::errors::error_coded(
            StatusCode::FORBIDDEN,
            "self_review",
            &format!(
                "`{}` triggered run {} and environment `{}` prevents self-review: another reviewer ({}) must decide",
                c.name,
                r.id,
                a.environment,
                protection.reviewers.join(", ")
            ),
        );
    }
    if a.state != ApprovalState::Pending {
        return error(
            StatusCode::CONFLICT,
            &format!("approval {id} is already {}", a.state),
        );
    }
    if let Some(r) = &run
        && r.status == Status::Completed
    {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "run {} is completed ({}): there is nothing left to approve",
                r.id,
                r.conclusion.map_or("no conclusion", |c| c.as_str())
            ),
        );
    }
    let Some(decided) = tri!(
        app.store
            .decide_approval(id, b.approve, &c.name, &b.comment)
    ) else {
        return error(StatusCode::CONFLICT, "this approval was already decided");
    };
    tri!(app.store.audit(
        &c.name,
        if b.approve { "approval.approve" } else { "approval.reject" },
        &format!("approval/{id}"),
        &json!({"job": a.job_id, "run": a.run_id, "environment": a.environment, "comment": b.comment}),
    ));
    app.advance_run(a.run_id).await;
    Json(decided).into_response()
}

pub async fn list_agents(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let stored = tri!(app.store.list_agents());
    let live = app.agents.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let now = hangar_store::now_ms();
    let out: Vec<Value> = stored
        .into_iter()
        .map(|a| {
            let l = live.get(&a.id);
            json!({
                "id": a.id, "name": a.name, "labels": a.labels, "capacity": a.capacity,
                "last_seen": l.map(|l| l.last_seen).unwrap_or(a.last_seen),
                "connected": l.map(|l| now - l.last_seen < 60_000).unwrap_or(false),
                "free_slots": l.map(|l| l.free_slots),
                "embedded": l.map(|l| l.embedded).unwrap_or(false),
                "drained": a.drained,
            })
        })
        .collect();
    let id_of = |a: &Value| Key::Str(a["id"].as_str().unwrap_or("").to_string());
    paging::respond(&uri, out, id_of, false, &page)
}

pub async fn list_deliveries(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let all = tri!(app.store.list_deliveries(LIST_WINDOW));
    paging::respond(&uri, all, |d| Key::Int(d.id), true, &page)
}

pub async fn list_audit(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let all = tri!(app.store.list_audit(LIST_WINDOW));
    paging::respond(&uri, all, |a| Key::Int(a.id), true, &page)
}

#[derive(Deserialize)]
pub struct TokenBody {
    pub name: String,
    pub role: String,
    /// Seconds until the token stops authenticating; absent: it lasts until revoked.
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// `agent` tokens only: the repositories (names) whose jobs it may take.
    #[serde(default)]
    pub repos: Vec<String>,
    /// `agent` tokens only: the labels it may claim; a job is taken only when
    /// all its `runs-on` labels are among them.
    #[serde(default)]
    pub labels: Vec<String>,
    /// `agent` tokens only: `false` makes a single-use token, which registers
    /// one agent and is revoked when that agent is removed. Default `true`.
    #[serde(default)]
    pub reusable: Option<bool>,
}

/// The longest `expires_in`: ten years, far beyond any sensible lifetime,
/// only so the expiry instant cannot overflow.
const MAX_TOKEN_SECS: i64 = 10 * 366 * 86_400;

pub async fn create_token(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Json(b): Json<TokenBody>,
) -> Response {
    let Some(role) = Role::parse(&b.role) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`role` is `admin`, `write`, `read` or `agent`",
        );
    };
    if let Some(r) = crate::settings::bad_name("token", &b.name) {
        return r;
    }
    let expires_at = match b.expires_in {
        None => None,
        Some(secs) if (1..=MAX_TOKEN_SECS).contains(&secs) => {
            Some(hangar_store::now_ms() + secs * 1000)
        }
        Some(secs) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "`expires_in` is a number of seconds from 1 to {MAX_TOKEN_SECS}, not {secs}; leave it out for a token that lasts until revoked"
                ),
            );
        }
    };
    let scope = hangar_store::TokenScope {
        repos: b.repos,
        labels: b.labels,
    };
    if !scope.is_empty() && role != Role::Agent {
        return error(
            StatusCode::BAD_REQUEST,
            "`repos` and `labels` limit agent tokens only; other roles' reach is their role",
        );
    }
    if scope.repos.len() + scope.labels.len() > 1000
        || scope
            .repos
            .iter()
            .chain(&scope.labels)
            .any(|n| n.is_empty() || n.len() > 200 || n.chars().any(char::is_control))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "`repos` and `labels` hold at most 1000 non-empty names of up to 200 characters",
        );
    }
    if b.reusable.is_some() && role != Role::Agent {
        return error(
            StatusCode::BAD_REQUEST,
            "`reusable` applies to agent tokens only (a single-use token registers one agent)",
        );
    }
    let reusable = b.reusable.unwrap_or(true);
    let (id, token) = tri!(
        app.store
            .create_token_with(&b.name, role, expires_at, &scope, reusable)
    );
    tri!(app.store.audit(
        &c.name,
        "token.create",
        &format!("token/{id}"),
        &json!({"name": b.name, "role": b.role, "expires_at": expires_at, "scope": scope, "reusable": reusable})
    ));
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "token": token, "name": b.name, "role": b.role, "expires_at": expires_at, "scope": scope, "reusable": reusable})),
    )
        .into_response()
}

pub async fn list_tokens(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let all = tri!(app.store.list_tokens());
    paging::respond(&uri, all, |t| Key::Int(t.id), false, &page)
}

pub async fn list_deployments(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let all = tri!(app.store.list_deployments(None));
    paging::respond(&uri, all, |d| Key::Int(d.id), true, &page)
}
