//! The server-wide GitHub App: one App the administrator registers
//! (`PUT /api/v1/github-app`, the admin page), through which every GitHub
//! repository whose owner installed it reports check runs without a
//! credential of its own. A repository's own credential wins over it.
//!
//! As GitHub documents for Apps: the installation is found per repository
//! (`GET /repos/{owner}/{repo}/installation` with the App's JWT) and cached
//! with an expiry; installation tokens are minted and cached until shortly
//! before they expire (`github_checks::TokenCache`); the App's `installation`
//! and `installation_repositories` webhooks (signed with the App's webhook
//! secret, delivered to `/hooks/github`) update what the server knows at once.
//! The App's webhook secret also authenticates the App's deliveries of a
//! registered repository's events (push, pull_request...).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use hangar_store::{ForgeCredential, Store};

use crate::app::App;
use crate::auth::{Caller, error};
use crate::github_checks::{ChecksCredential, app_ident};

/// The level of the server's own settings (as for secrets: 0 is the server's).
pub const SERVER_LEVEL: i64 = 0;
/// The `kind` of the server-wide App's row among the forge credentials.
pub const APP_KIND: &str = "github-app";

/// The server-wide GitHub App the administrator registered, as Woodpecker,
/// Drone and Jenkins set one up: every GitHub repository whose owner
/// installed it reports check runs through it, with no credential of its
/// own. It is kept as the forge credential of the server's level, so its
/// private key and webhook secret are sealed exactly like a repository's
/// token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerApp {
    /// The App's id (or client id): the JWT's `iss`.
    pub app_id: String,
    /// The App's PEM private key.
    pub private_key: String,
    /// The secret the App's webhook deliveries are signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for ServerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerApp")
            .field("app_id", &self.app_id)
            .field("private_key", &"***")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl ServerApp {
    /// The App's row among the forge credentials.
    pub fn credential(&self, api_url: &str) -> ForgeCredential {
        ForgeCredential {
            kind: APP_KIND.into(),
            api_url: api_url.trim_end_matches('/').to_string(),
            project: "*".into(),
            token: serde_json::to_string(self).unwrap_or_default(),
        }
    }

    /// The registered App and its API root, if there is one.
    pub fn load(store: &Arc<dyn Store>) -> anyhow::Result<Option<(ServerApp, String)>> {
        let Some(c) = store.forge_credential(SERVER_LEVEL)? else {
            return Ok(None);
        };
        if c.kind != APP_KIND {
            return Ok(None);
        }
        let app: ServerApp = serde_json::from_str(&c.token)
            .map_err(|e| anyhow::anyhow!("the stored GitHub App settings are unreadable: {e}"))?;
        Ok(Some((app, c.api_url)))
    }

    /// What a repository without a credential of its own reports with: the
    /// App, its installation looked up per repository.
    pub fn checks(&self) -> ChecksCredential {
        ChecksCredential {
            token: None,
            app_id: Some(self.app_id.clone()),
            installation_id: None,
            private_key: Some(self.private_key.clone()),
        }
    }

    pub fn ident(&self) -> String {
        app_ident(&self.app_id, &self.private_key)
    }
}

/// A GitHub repository's `owner/name`: its registered name when it has that
/// shape (GitHub's webhooks find repositories by `full_name`), else the last
/// two segments of its clone URL.
pub fn github_project(name: &str, clone_url: &str) -> Option<String> {
    let ok = |p: &str| {
        let parts: Vec<&str> = p.split('/').collect();
        parts.len() == 2
            && parts.iter().all(|s| {
                !s.is_empty()
                    && *s != "."
                    && *s != ".."
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            })
    };
    if ok(name) {
        return Some(name.to_string());
    }
    let url = clone_url.trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    let mut segs = url.rsplit(['/', ':']);
    let repo = segs.next()?;
    let owner = segs.next()?;
    let p = format!("{owner}/{repo}");
    ok(&p).then_some(p)
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

/// What the API shows of the App: never its key or its webhook secret.
async fn view(app: &App, s: &ServerApp, api_url: &str) -> Value {
    let base = app
        .forge
        .base_url
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let installations: Vec<Value> = app
        .forge
        .tokens
        .lock()
        .await
        .known(api_url, &s.ident())
        .into_iter()
        .map(|(repo, id)| json!({"repository": repo, "installation_id": id}))
        .collect();
    json!({
        "app_id": s.app_id,
        "api_url": api_url,
        "has_private_key": true,
        "has_webhook_secret": s.webhook_secret.is_some(),
        "webhook_url": format!("{}/hooks/github", base.trim_end_matches('/')),
        "installations": installations,
    })
}

/// `GET /api/v1/github-app`.
pub async fn get_app(State(app): State<Arc<App>>) -> Response {
    match tri!(ServerApp::load(&app.store)) {
        Some((s, api)) => Json(view(&app, &s, &api).await).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no GitHub App is registered: PUT /api/v1/github-app with its app_id, private_key and webhook_secret",
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppBody {
    /// The App's id (a number) or client id.
    pub app_id: Value,
    /// The App's PEM private key; the stored one is kept when absent.
    #[serde(default)]
    pub private_key: Option<String>,
    /// The App's webhook secret; absent keeps the stored one, `null` removes it.
    #[serde(default, deserialize_with = "some")]
    pub webhook_secret: Option<Option<String>>,
    /// GitHub's API root (a GitHub Enterprise Server's `https://HOST/api/v3`);
    /// `https://api.github.com` by default.
    #[serde(default)]
    pub api_url: Option<String>,
}

/// Tells `"webhook_secret": null` (remove it) from no `webhook_secret` (keep it).
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `PUT /api/v1/github-app`: registers (or replaces) the server-wide App.
pub async fn put_app(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Caller>,
    Json(b): Json<AppBody>,
) -> Response {
    let unprocessable = |m: &str| error(StatusCode::UNPROCESSABLE_ENTITY, m);
    let app_id = match b.app_id {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        other => {
            return unprocessable(&format!(
                "`app_id` must be the GitHub App's id (its settings page shows it), not {other}"
            ));
        }
    };
    let stored = tri!(ServerApp::load(&app.store));
    let private_key = match (b.private_key, &stored) {
        (Some(k), _) => k,
        (None, Some((s, _))) if s.app_id == app_id => s.private_key.clone(),
        (None, _) => {
            return unprocessable(
                "`private_key` is required: the App's .pem file as GitHub generated it",
            );
        }
    };
    let checked = ChecksCredential {
        token: None,
        app_id: Some(app_id.clone()),
        installation_id: None,
        private_key: Some(private_key.clone()),
    };
    if let Err(m) = checked.validate() {
        return unprocessable(&m);
    }
    let webhook_secret = match b.webhook_secret {
        Some(s) => s,
        None => stored.as_ref().and_then(|(s, _)| s.webhook_secret.clone()),
    };
    if let Some(s) = &webhook_secret
        && s.chars().count() < crate::api::MIN_WEBHOOK_SECRET
    {
        return unprocessable(&format!(
            "`webhook_secret` must be at least {} characters and be the secret set on the App's settings page (generate one with `openssl rand -hex 32`)",
            crate::api::MIN_WEBHOOK_SECRET
        ));
    }
    let api_url = b
        .api_url
        .unwrap_or_else(|| "https://api.github.com".into())
        .trim_end_matches('/')
        .to_string();
    // The API root is checked as a repository's GitHub credential's is.
    if let Err(m) = crate::forge_status::validate(&ForgeCredential {
        kind: "github".into(),
        api_url: api_url.clone(),
        project: "app/settings".into(),
        token: "-".into(),
    }) {
        return unprocessable(&m);
    }
    let s = ServerApp {
        app_id,
        private_key,
        webhook_secret,
    };
    tri!(
        app.store
            .set_forge_credential(SERVER_LEVEL, &s.credential(&api_url))
    );
    app.forge.forget_credentials();
    tri!(app.store.audit(
        &c.name,
        "github_app.set",
        "github-app",
        &json!({"app_id": s.app_id, "api_url": api_url, "has_webhook_secret": s.webhook_secret.is_some()})
    ));
    Json(view(&app, &s, &api_url).await).into_response()
}

/// `DELETE /api/v1/github-app`: repositories without a credential of their
/// own report nothing from now on.
pub async fn delete_app(State(app): State<Arc<App>>, Extension(c): Extension<Caller>) -> Response {
    if tri!(ServerApp::load(&app.store)).is_none()
        || !tri!(app.store.delete_forge_credential(SERVER_LEVEL))
    {
        return error(StatusCode::NOT_FOUND, "no GitHub App is registered");
    }
    app.forge.forget_credentials();
    tri!(
        app.store
            .audit(&c.name, "github_app.delete", "github-app", &json!({}))
    );
    StatusCode::NO_CONTENT.into_response()
}

/// How `/hooks/github` treats a delivery as far as the App is concerned.
pub(crate) enum Delivery {
    /// Not signed with the App's secret: the repository's secret decides.
    NotTheApp,
    /// An event of a repository, signed with the App's webhook secret.
    Verified,
    /// An installation event, answered here.
    Answered(Response),
}

/// Repositories listed in an installation event, at most this many read (a
/// real installation lists up to GitHub's own limit; the rest is a hostile body).
const MAX_LISTED: usize = 10_000;

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .take(MAX_LISTED)
                .filter_map(|r| r["full_name"].as_str())
                .filter_map(|n| github_project(n, ""))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a GitHub delivery against the App's webhook secret, and applies an
/// `installation` or `installation_repositories` event.
pub(crate) async fn delivery(
    app: &App,
    headers: &HeaderMap,
    body: &[u8],
    json: &[u8],
    unauthenticated: impl Fn() -> Response,
) -> Delivery {
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let installation_event = matches!(event, "installation" | "installation_repositories");
    let loaded = match ServerApp::load(&app.store) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("{e:#}");
            None
        }
    };
    let secret = loaded
        .as_ref()
        .and_then(|(s, _)| s.webhook_secret.clone())
        .filter(|s| s.chars().count() >= crate::api::MIN_WEBHOOK_SECRET);
    // The same work with or without an App (no timing probe).
    let verified = crate::webhook::verify(
        crate::webhook::Forge::GitHub,
        headers,
        body,
        secret.as_deref().unwrap_or("hangar-no-github-app-secret"),
    ) && secret.is_some();
    if !installation_event {
        return if verified {
            Delivery::Verified
        } else {
            Delivery::NotTheApp
        };
    }
    let (true, Some((s, api))) = (verified, loaded) else {
        return Delivery::Answered(unauthenticated());
    };
    let Ok(v) = serde_json::from_slice::<Value>(json) else {
        return Delivery::Answered(error(StatusCode::BAD_REQUEST, "the payload is not JSON"));
    };
    let Some(id) = v.pointer("/installation/id").and_then(Value::as_u64) else {
        return Delivery::Answered(error(
            StatusCode::BAD_REQUEST,
            "an installation event without installation.id",
        ));
    };
    let action = v["action"].as_str().unwrap_or("");
    let (added, removed, gone) = match (event, action) {
        ("installation", "deleted" | "suspend") => (Vec::new(), Vec::new(), true),
        ("installation", _) => (names(&v["repositories"]), Vec::new(), false),
        (_, "added") => (names(&v["repositories_added"]), Vec::new(), false),
        (_, "removed") => (Vec::new(), names(&v["repositories_removed"]), false),
        _ => (Vec::new(), Vec::new(), false),
    };
    let delivery_id = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .filter(|d| !d.is_empty() && d.len() <= 200)
        .map(String::from)
        .unwrap_or_else(|| format!("installation-{id}-{}", hangar_store::now_ms()));
    let outcome = format!("installation {action}");
    match app
        .store
        .record_delivery(&delivery_id, None, event, &outcome, &[])
    {
        Ok(None) => {
            return Delivery::Answered(
                (
                    StatusCode::OK,
                    Json(json!({"duplicate": true, "delivery": delivery_id})),
                )
                    .into_response(),
            );
        }
        Ok(Some(_)) => {}
        Err(e) => {
            return Delivery::Answered(error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")));
        }
    }
    app.forge.tokens.lock().await.installation_changed(
        &api,
        &s.ident(),
        id,
        &added,
        &removed,
        gone,
    );
    app.metrics.delivery("installation");
    Delivery::Answered(
        (
            StatusCode::OK,
            Json(json!({
                "installation": id,
                "action": action,
                "added": added,
                "removed": removed,
                "removed_installation": gone,
            })),
        )
            .into_response(),
    )
}
