//! The lifecycle routes the admin UI needs beyond registration: a
//! repository's registration changed or removed, agents drained or forgotten,
//! secrets and variables listed by name and removed (values are write-only:
//! no route returns one), and the public SVG status badge of a workflow.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use hangar_store::{Conclusion, RepoUpdate, RunFilter, Status};

use crate::app::App;
use crate::auth::{Caller, error};
use crate::paging::{PageQuery, page_or_400};
use crate::settings::bad_name;

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

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoPatch {
    #[serde(default)]
    pub clone_url: Option<String>,
    #[serde(default)]
    pub forge: Option<String>,
    /// A new secret, or `null` to accept no webhooks any more.
    #[serde(default, deserialize_with = "present")]
    pub webhook_secret: Option<Option<String>>,
    /// Serve its status badges without a token.
    #[serde(default)]
    pub public: Option<bool>,
}

const FORGES: &[&str] = &["github", "gitea", "forgejo", "gitlab", "local"];

pub async fn get_repo(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    match tri!(app.store.get_repo(id)) {
        Some(r) => Json(r).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no repository {id}")),
    }
}

/// `PATCH /api/v1/repos/{id}`: the clone URL, forge, webhook secret and
/// whether it is public. The name stays: webhooks, agent tokens' scopes and
/// run history know the repository by it.
pub async fn patch_repo(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<RepoPatch>,
) -> Response {
    if let Some(url) = &b.clone_url
        && let Err(msg) = crate::git::check_clone_url(url, &app.data_dir, &app.local_repos)
    {
        return error(StatusCode::BAD_REQUEST, &msg);
    }
    if let Some(f) = &b.forge
        && !FORGES.contains(&f.as_str())
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("`forge` is one of {}; got `{f}`", FORGES.join(", ")),
        );
    }
    if let Some(Some(secret)) = &b.webhook_secret
        && secret.chars().count() < crate::api::MIN_WEBHOOK_SECRET
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "`webhook_secret` must be at least {} characters; generate one with `openssl rand -hex 32`, or send null to accept no webhooks",
                crate::api::MIN_WEBHOOK_SECRET
            ),
        );
    }
    let update = RepoUpdate {
        clone_url: b.clone_url.clone(),
        forge: b.forge.clone(),
        webhook_secret: b.webhook_secret.clone(),
        public: b.public,
    };
    // The server-wide App's credential is made from the repository's name,
    // forge and clone URL.
    app.forge.forget_credentials();
    let Some(repo) = tri!(app.store.update_repo(id, &update)) else {
        return error(StatusCode::NOT_FOUND, &format!("no repository {id}"));
    };
    tri!(app.store.audit(
        &c.name,
        "repo.update",
        &format!("repo/{id}"),
        &json!({
            "clone_url": b.clone_url,
            "forge": b.forge,
            "webhook_secret": b.webhook_secret.as_ref().map(|s| if s.is_some() { "set" } else { "removed" }),
            "public": b.public,
        })
    ));
    Json(repo).into_response()
}

/// `DELETE /api/v1/repos/{id}`: the repository and everything kept for it.
/// Refused while it has runs in progress (cancel them first) or while this
/// server watches its directory (the watcher would register it again).
pub async fn delete_repo(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let Some(repo) = tri!(app.store.get_repo(id)) else {
        return error(StatusCode::NOT_FOUND, &format!("no repository {id}"));
    };
    let watched = app
        .delivery_data
        .iter()
        .any(|d| d.parent() == Some(std::path::Path::new(&repo.clone_url)));
    if watched {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "`{}` is watched by this server (--repo): restart it without that --repo to remove it",
                repo.name
            ),
        );
    }
    let active: Vec<String> = tri!(app.store.active_runs())
        .iter()
        .filter(|r| r.repo_id == id)
        .map(|r| format!("#{}", r.id))
        .collect();
    if !active.is_empty() {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "`{}` has runs in progress ({}): cancel them first",
                repo.name,
                active.join(", ")
            ),
        );
    }
    // Files first: the rows that name them go with the repository.
    let (files, bytes) = tri!(crate::retention::remove_repository_files(
        &app, id, &repo.name
    ));
    app.forge.forget_credentials();
    if !tri!(app.store.delete_repo(id)) {
        return error(StatusCode::NOT_FOUND, &format!("no repository {id}"));
    }
    app.env_loads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    tri!(app.store.audit(
        &c.name,
        "repo.delete",
        &format!("repo/{id}"),
        &json!({"name": repo.name, "files": files, "bytes": bytes})
    ));
    StatusCode::NO_CONTENT.into_response()
}

async fn set_drained(app: &App, c: &Caller, id: &str, drained: bool) -> Response {
    if !tri!(app.store.set_agent_drained(id, drained)) {
        return error(StatusCode::NOT_FOUND, &format!("no agent `{id}`"));
    }
    tri!(app.store.audit(
        &c.name,
        if drained {
            "agent.drain"
        } else {
            "agent.resume"
        },
        &format!("agent/{id}"),
        &json!({})
    ));
    let agents = tri!(app.store.list_agents());
    match agents.into_iter().find(|a| a.id == id) {
        Some(a) => Json(json!({"id": a.id, "name": a.name, "drained": a.drained})).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no agent `{id}`")),
    }
}

/// `POST /api/v1/agents/{agent}/drain`: the agent finishes the jobs it holds
/// and is given no new one (it keeps polling; a restart does not undo it).
pub async fn drain_agent(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    set_drained(&app, &c, &id, true).await
}

/// `POST /api/v1/agents/{agent}/resume`: a drained agent takes jobs again.
pub async fn resume_agent(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    set_drained(&app, &c, &id, false).await
}

/// `DELETE /api/v1/agents/{agent}`: removes an agent for good. Its
/// credential goes with its row, so its next call is answered 401 and
/// `hangar agent` stops; the jobs it held go back to the queue for another
/// agent; a single-use token that registered it is revoked, so the process
/// cannot register again with it (a reusable token can register a new agent).
pub async fn delete_agent(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    // The embedded agent is part of a running server: it would only register
    // again with the server's next start.
    if id == app.embedded_agent_id || (id.starts_with("embedded-") && tri!(app.store.present(&id)))
    {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "`{id}` is the embedded agent of a running server: start that server with --agent-capacity 0 to run none"
            ),
        );
    }
    let Some(agent) = tri!(app.store.remove_agent(&id)) else {
        return error(StatusCode::NOT_FOUND, &format!("no agent `{id}`"));
    };
    crate::agent_api::forget(&app, &id);
    let mut requeued = Vec::new();
    for job in tri!(app.store.jobs_leased_by_prefix(&id)) {
        if job.lease_owner.as_deref() != Some(id.as_str()) {
            continue;
        }
        let why = format!("agent `{id}` was removed; back in the queue for another agent");
        if tri!(app.store.release_lease(job.id, job.fence, true, &why)) {
            app.publish_job(job.run_id, job.id);
            requeued.push(job.id);
        }
    }
    // Waiting polls look again now: the removed agent's is answered 401 at
    // once, and another agent takes what it held.
    app.wake_all_agents();
    let mut revoked = None;
    if let Some(token) = agent.token_id {
        let single_use = tri!(app.store.list_tokens())
            .into_iter()
            .any(|t| t.id == token && !t.reusable);
        if single_use && tri!(app.store.revoke_token(token)) {
            revoked = Some(token);
        }
    }
    tri!(app.store.audit(
        &c.name,
        "agent.removed",
        &format!("agent/{id}"),
        &json!({"name": agent.name, "token_id": agent.token_id,
            "token_revoked": revoked.is_some(), "jobs_requeued": requeued})
    ));
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /api/v1/whoami`: the caller's name and role, so the UI offers only
/// the buttons the API would accept from it.
pub async fn whoami(Extension(c): Extension<Caller>) -> Response {
    Json(json!({"name": c.name, "role": c.role.as_str()})).into_response()
}

/// The level a `{id}` of a secrets or variables route names: 0 is the
/// server's own, any other a repository's.
pub(crate) fn level(repo: i64) -> Option<i64> {
    (repo != 0).then_some(repo)
}

/// `DELETE /api/v1/repos/{id}/secrets/{name}` (id 0: the server's).
pub async fn delete_secret(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path((repo, name)): Path<(i64, String)>,
) -> Response {
    if !tri!(app.store.delete_secret(level(repo), &name)) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("repository {repo} has no secret `{name}`"),
        );
    }
    tri!(app.secret_changed(
        &c.name,
        "secret.delete",
        &format!("repo/{repo}/secret/{name}"),
        None,
    ));
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /api/v1/repos/{id}/variables`: names only, as for secrets.
pub async fn list_variables(
    State(app): State<Arc<App>>,
    uri: Uri,
    Path(repo): Path<i64>,
    Query(p): Query<PageQuery>,
) -> Response {
    let page = page_or_400!(p);
    let names = tri!(app.store.variable_names(level(repo), ""));
    crate::api::names_page(&uri, names, &page)
}

pub async fn list_env_variables(
    State(app): State<Arc<App>>,
    uri: Uri,
    Path((repo, env)): Path<(i64, String)>,
    Query(p): Query<PageQuery>,
) -> Response {
    if let Some(r) = bad_name("environment", &env) {
        return r;
    }
    let page = page_or_400!(p);
    let names = tri!(app.store.variable_names(Some(repo), &env));
    crate::api::names_page(&uri, names, &page)
}

async fn remove_variable(app: &App, c: &Caller, repo: i64, env: &str, name: &str) -> Response {
    if !tri!(app.store.delete_variable(level(repo), env, name)) {
        let at = if env.is_empty() {
            format!("repository {repo}")
        } else {
            format!("environment `{env}` of repository {repo}")
        };
        return error(
            StatusCode::NOT_FOUND,
            &format!("{at} has no variable `{name}`"),
        );
    }
    let target = if env.is_empty() {
        format!("repo/{repo}/variable/{name}")
    } else {
        format!(
            "repo/{repo}/environment/{}/variable/{name}",
            env.to_lowercase()
        )
    };
    tri!(
        app.store
            .audit(&c.name, "variable.delete", &target, &json!({}))
    );
    StatusCode::NO_CONTENT.into_response()
}

pub async fn delete_variable(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path((repo, name)): Path<(i64, String)>,
) -> Response {
    remove_variable(&app, &c, repo, "", &name).await
}

pub async fn delete_env_variable(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Path((repo, env, name)): Path<(i64, String, String)>,
) -> Response {
    if let Some(r) = bad_name("environment", &env) {
        return r;
    }
    remove_variable(&app, &c, repo, &env, &name).await
}

#[derive(Deserialize)]
pub struct BadgeQuery {
    #[serde(default)]
    pub branch: Option<String>,
}

/// XML's five characters, for text from a workflow file.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A shields-style badge: the label on grey, the status on its colour.
/// Widths are estimated at 7 px a character (Verdana 11 is close to it).
pub(crate) fn badge_svg(label: &str, status: &str, color: &str) -> String {
    let lw = 10 + 7 * label.chars().count();
    let sw = 10 + 7 * status.chars().count();
    let w = lw + sw;
    let (label, status) = (xml(label), xml(status));
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {status}"><title>{label}: {status}</title><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{sw}" height="20" fill="{color}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{sx}" y="14">{status}</text></g></svg>"##,
        lx = lw / 2,
        sx = lw + sw / 2,
    )
}

/// `GET /badge/{repo}/{workflow}.svg?branch=`: the latest finished run of a
/// workflow (its file name) on a branch, as an SVG badge. No token: a README
/// on a forge cannot send one. Only a repository marked public has badges;
/// any other name answers the same 404 as an unknown one, so names do not leak.
pub async fn badge(
    State(app): State<Arc<App>>,
    Path(path): Path<String>,
    Query(q): Query<BadgeQuery>,
    headers: HeaderMap,
) -> Response {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "no such badge: the repository is unknown or not public (PATCH /api/v1/repos/{id} with {\"public\": true})",
        )
    };
    // A repository's name may hold `/` (owner/name): the workflow is the last segment.
    let Some((repo_name, file)) = path.strip_suffix(".svg").and_then(|p| p.rsplit_once('/')) else {
        return not_found();
    };
    let Some(repo) = tri!(app.store.find_repo(repo_name)) else {
        return not_found();
    };
    if !repo.public || file.is_empty() {
        return not_found();
    }
    let filter = RunFilter {
        repo_id: Some(repo.id),
        status: Some(Status::Completed),
        workflow: Some(file.to_string()),
        branch: q.branch.filter(|b| !b.is_empty()),
        limit: Some(1),
        ..Default::default()
    };
    let last = tri!(app.store.list_runs(&filter)).into_iter().next();
    let label = last
        .as_ref()
        .map(|r| r.workflow_name.clone())
        .unwrap_or_else(|| {
            file.trim_end_matches(".yml")
                .trim_end_matches(".yaml")
                .to_string()
        });
    let (status, color) = match last.as_ref().and_then(|r| r.conclusion) {
        None => ("no status", "#9f9f9f"),
        Some(Conclusion::Success) => ("passing", "#4c1"),
        Some(Conclusion::Failure) => ("failing", "#e05d44"),
        Some(Conclusion::Cancelled) => ("cancelled", "#9f9f9f"),
        Some(_) => ("skipped", "#9f9f9f"),
    };
    let svg = badge_svg(&label, status, color);
    let etag = format!(
        "\"{}\"",
        &hangar_store::crypto::sha256_hex(svg.as_bytes())[..16]
    );
    // Short-lived and revalidated: a README's image follows the branch
    // within a minute, and an unchanged badge costs a 304.
    let common = [
        (header::CACHE_CONTROL, "public, max-age=60, must-revalidate"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, common, [(header::ETAG, etag)]).into_response();
    }
    (
        common,
        [
            (
                header::CONTENT_TYPE,
                "image/svg+xml; charset=utf-8".to_string(),
            ),
            (header::ETAG, etag),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'".to_string(),
            ),
        ],
        svg,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn badge_text_is_escaped() {
        let svg = super::badge_svg("<a&b>", "passing", "#4c1");
        assert!(svg.contains("&lt;a&amp;b&gt;"), "{svg}");
        assert!(!svg.contains("<a&b>"));
    }
}
