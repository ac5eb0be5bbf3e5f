//! Bearer-token authentication and roles. Tokens are looked up by their SHA-256;
//! the embedded agent's token lives only in memory.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use hangar_store::Role;

use crate::app::App;

#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// An agent token's limits (repositories, labels); empty for everyone else.
    pub scope: hangar_store::TokenScope,
    /// The token's id (none for the embedded agent's and the stream token).
    pub token_id: Option<i64>,
    /// A token that registers one agent (`reusable: false` at creation).
    pub single_use: bool,
    /// The registered agent whose credential this is; `None` for a token.
    pub agent: Option<String>,
}

impl Caller {
    fn of_token(name: String, role: Role) -> Caller {
        Caller {
            name,
            role,
            scope: Default::default(),
            token_id: None,
            single_use: false,
            agent: None,
        }
    }
}

/// The one path a token (not a credential) reaches as an agent.
pub(crate) const REGISTER_PATH: &str = "/api/v1/agents/register";

/// The bearer token of the `Authorization` header. A token anywhere else (a
/// query string lands in proxies' logs, browser history and `Referer`) is
/// not looked at, except the stream token below.
fn bearer_of(req: &Request) -> Option<String> {
    let h = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())?;
    h.strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .map(|t| t.trim().to_string())
}

/// `EventSource` cannot send headers: the live stream of a run, and only it,
/// takes `?access_token=` holding a stream token minted for that run
/// (`POST /api/v1/runs/{id}/events/token`), which expires within a minute
/// and opens nothing else.
fn stream_token_of(req: &Request) -> Option<String> {
    if req.method() != Method::GET {
        return None;
    }
    let rest = req.uri().path().strip_prefix("/api/v1/runs/")?;
    rest.strip_suffix("/events")?;
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token=").map(String::from))
}

/// How long a stream token opens its run's live stream (an open stream
/// outlives it; a reconnect mints a new one).
pub(crate) const STREAM_TOKEN_SECS: i64 = 60;

fn stream_mac(app: &App, run: i64, expires: i64) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&app.lease_secret).expect("any key length");
    mac.update(format!("stream-token\0{run}\0{expires}").as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// A token that opens `GET /api/v1/runs/{run}/events` until it expires.
pub(crate) fn mint_stream_token(app: &App, run: i64) -> String {
    let expires = hangar_store::now_ms() + STREAM_TOKEN_SECS * 1000;
    format!("hst.{run}.{expires}.{}", stream_mac(app, run, expires))
}

/// Whether `token` is a live stream token for the run whose events `path` reads.
fn stream_token_opens(app: &App, token: &str, path: &str) -> bool {
    let mut parts = token.split('.');
    let (Some("hst"), Some(run), Some(expires), Some(mac), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(run), Ok(expires)) = (run.parse::<i64>(), expires.parse::<i64>()) else {
        return false;
    };
    let expected = stream_mac(app, run, expires);
    expires > hangar_store::now_ms()
        && path == format!("/api/v1/runs/{run}/events")
        && mac.len() == expected.len()
        && bool::from(mac.as_bytes().ct_eq(expected.as_bytes()))
}

/// Paths only an administrator reaches, whatever the method: the tokens
/// (a `read` token must not learn who else holds one), the audit log and the
/// server-wide GitHub App's settings.
fn admin_only(path: &str) -> bool {
    path == "/api/v1/tokens"
        || path.starts_with("/api/v1/tokens/")
        || path == "/api/v1/audit"
        || path == "/api/v1/github-app"
}

/// What a `write` token may change: runs (dispatch, cancel, re-run, approve
/// an untrusted run), approvals and artifacts. Repositories' settings,
/// secrets, variables, forge credentials and notification rules stay the
/// administrator's.
fn write_may(method: &Method, path: &str) -> bool {
    if method == Method::GET {
        return true;
    }
    let run_action = path.strip_prefix("/api/v1/runs/").is_some_and(|rest| {
        let mut p = rest.split('/');
        p.next().is_some_and(|id| id.parse::<i64>().is_ok())
            && matches!(
                (p.next(), p.next(), p.next()),
                (Some("cancel" | "rerun" | "approve"), None, None)
                    | (Some("artifacts"), Some(_), None)
                    | (Some("events"), Some("token"), None)
            )
    });
    let dispatch = path
        .strip_prefix("/api/v1/repos/")
        .and_then(|rest| rest.strip_suffix("/dispatch"))
        .is_some_and(|id| id.parse::<i64>().is_ok());
    run_action || dispatch || path.starts_with("/api/v1/approvals/") || delivery_decision(path)
}

/// A reviewer's decision on a protected environment's delivery operation
/// (the handler checks that the caller is one of its reviewers).
fn delivery_decision(path: &str) -> bool {
    path.strip_prefix("/api/v1/delivery/operations/")
        .and_then(|rest| rest.strip_suffix("/approve"))
        .is_some_and(|id| id.parse::<u64>().is_ok())
}

/// A `read` token's one write: minting the stream token of a run it may read.
fn read_may(method: &Method, path: &str) -> bool {
    method == Method::GET
        || path.starts_with("/api/v1/approvals/")
        || (method == Method::POST && delivery_decision(path))
        || (method == Method::POST
            && path.starts_with("/api/v1/runs/")
            && path.ends_with("/events/token"))
}

/// The caller name of the embedded agent's in-memory token.
pub(crate) const EMBEDDED_AGENT: &str = "embedded-agent";

pub use crate::errors::error;

pub async fn require_token(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path == "/metrics" && app.metrics_public {
        return next.run(req).await;
    }
    if let Some(token) = stream_token_of(&req)
        && bearer_of(&req).is_none()
    {
        if !stream_token_opens(&app, &token, &path) {
            return error(
                StatusCode::UNAUTHORIZED,
                "`access_token` must be a live stream token of this run (POST /api/v1/runs/{id}/events/token mints one; it lasts a minute)",
            );
        }
        req.extensions_mut()
            .insert(Caller::of_token("stream-token".into(), Role::Read));
        return next.run(req).await;
    }
    let Some(token) = bearer_of(&req) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required in the Authorization header (Authorization: Bearer <token>); tokens in the URL are refused",
        );
    };
    let agent_path = path.starts_with("/api/v1/agent/");
    // A registered agent: its credential opens the agent routes and nothing
    // else, for as long as its row exists (removal deletes it) and the token
    // that registered it is not revoked.
    if token.starts_with(hangar_store::crypto::CREDENTIAL_PREFIX) {
        let found = match app.store.verify_agent_credential(&token) {
            Ok(f) => f,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        };
        let Some(found) = found else {
            return crate::errors::error_coded(
                StatusCode::UNAUTHORIZED,
                "agent_removed",
                "this agent credential is unknown: the agent was removed, or the token that registered it revoked; register again with a new agent token",
            );
        };
        if !agent_path {
            return error(
                StatusCode::FORBIDDEN,
                &format!(
                    "agent `{}`'s credential reaches the agent protocol (/api/v1/agent/…) only, not {path}",
                    found.agent.id
                ),
            );
        }
        let (name, scope) = match found.token {
            Some(t) => (t.name, t.scope),
            None => (EMBEDDED_AGENT.to_string(), Default::default()),
        };
        req.extensions_mut().insert(Caller {
            name,
            role: Role::Agent,
            scope,
            token_id: found.agent.token_id,
            single_use: false,
            agent: Some(found.agent.id),
        });
        return next.run(req).await;
    }
    let caller = if bool::from(token.as_bytes().ct_eq(app.internal_token.as_bytes())) {
        Caller::of_token(EMBEDDED_AGENT.into(), Role::Agent)
    } else {
        match app.store.verify_token(&token) {
            Ok(Some(t)) => Caller {
                name: t.name,
                role: t.role,
                scope: t.scope,
                token_id: Some(t.id),
                single_use: !t.reusable,
                agent: None,
            },
            Ok(None) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "unknown, expired or revoked token: ask an administrator for a new one",
                );
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        }
    };
    // Agents speak the protocol with their credential only: a token there is
    // an agent of an older version (which polled with its token, and came
    // back after its removal). Answered as another protocol version, which
    // such an agent stops at, saying why.
    if agent_path && matches!(caller.role, Role::Agent | Role::Admin) {
        return crate::errors::error_coded(
            StatusCode::CONFLICT,
            hangar_agent::PROTOCOL_MISMATCH,
            &format!(
                "this agent speaks to the server with a token, as agents before protocol {} did; \
                 agents now register (POST {REGISTER_PATH}) and use the credential it hands out: \
                 run the same hangar version on the server and its agents (hangar {})",
                hangar_agent::PROTOCOL_VERSION,
                hangar_agent::HANGAR_VERSION
            ),
        );
    }
    let register = path == REGISTER_PATH && req.method() == Method::POST;
    let allowed = match caller.role {
        Role::Admin => true,
        Role::Agent => register,
        Role::Write => {
            !agent_path && !register && !admin_only(&path) && write_may(req.method(), &path)
        }
        Role::Read => {
            !agent_path && !register && !admin_only(&path) && read_may(req.method(), &path)
        }
    };
    if !allowed {
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "the {} token `{}` may not {} {path}",
                caller.role.as_str(),
                caller.name,
                req.method()
            ),
        );
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}
