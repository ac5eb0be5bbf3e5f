//! Bearer-token authentication and roles. Tokens are looked up by their SHA-256;
//! the embedded agent's token lives only in memory.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use hangar_store::Role;

use crate::app::App;

#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

fn token_of(req: &Request) -> Option<String> {
    if let Some(h) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        return h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(|t| t.trim().to_string());
    }
    // EventSource cannot send headers, so the UI passes the token in the query.
    req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("access_token=").map(|t| t.to_string()))
    })
}

/// The caller name of the embedded agent's in-memory token.
pub(crate) const EMBEDDED_AGENT: &str = "embedded-agent";

pub fn error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": msg}))).into_response()
}

pub async fn require_token(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path == "/metrics" && app.metrics_public {
        return next.run(req).await;
    }
    let Some(token) = token_of(&req) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (Authorization: Bearer <token>)",
        );
    };
    let caller = if bool::from(token.as_bytes().ct_eq(app.internal_token.as_bytes())) {
        Caller {
            name: EMBEDDED_AGENT.into(),
            role: Role::Agent,
        }
    } else {
        match app.store.verify_token(&token) {
            Ok(Some(t)) => Caller {
                name: t.name,
                role: t.role,
            },
            Ok(None) => return error(StatusCode::UNAUTHORIZED, "unknown token"),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        }
    };
    let agent_path = path.starts_with("/api/v1/agent/");
    let allowed = match caller.role {
        Role::Admin => true,
        Role::Agent => agent_path,
        Role::Read => {
            !agent_path && (req.method() == Method::GET || path.starts_with("/api/v1/approvals/"))
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
