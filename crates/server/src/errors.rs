//! Every error the server answers is JSON, `{"error": <what happened and what
//! to do>, "code": <stable word>}`, so a script can branch on `code` without
//! parsing prose. Handlers build theirs with [`error`]; the [`json_errors`]
//! layer rewrites whatever else answers an error (axum's extractor rejections
//! — bad query strings, bad JSON, a body over the limit —, its 404 and 405).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The stable code of a status, for errors that have no more precise one.
pub(crate) fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        409 => "conflict",
        410 => "gone",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "too_many_requests",
        500 => "internal",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "timeout",
        s if s >= 500 => "server_error",
        _ => "client_error",
    }
}

/// A JSON error with the status's stable code.
pub fn error(status: StatusCode, msg: &str) -> Response {
    error_coded(status, code_of(status), msg)
}

/// A JSON error with a code more precise than the status's.
pub fn error_coded(status: StatusCode, code: &str, msg: &str) -> Response {
    (status, axum::Json(json!({"error": msg, "code": code}))).into_response()
}

/// axum's rejections say what went wrong in plain text; the code names which
/// part of the request was wrong (their messages are stable across axum 0.8).
fn rejection_code(status: StatusCode, text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    if status == StatusCode::PAYLOAD_TOO_LARGE || t.contains("length limit exceeded") {
        "payload_too_large"
    } else if t.contains("stopped arriving") {
        "body_timeout"
    } else if t.starts_with("failed to deserialize query string") {
        "invalid_query"
    } else if t.starts_with("failed to parse the request body as json")
        || t.starts_with("failed to buffer the request body")
    {
        "invalid_json"
    } else if t.starts_with("failed to deserialize the json body") {
        "invalid_body"
    } else if t.starts_with("expected request with `content-type: application/json`") {
        "unsupported_media_type"
    } else if t.starts_with("invalid url") || t.starts_with("cannot parse") || t.contains("path") {
        "invalid_path"
    } else {
        code_of(status)
    }
}

/// What a client is told when an error came with no text.
fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "no such route: see GET /api/v1/openapi.json for the API's routes",
        405 => "this route does not take that method: see the `Allow` header",
        _ => status.canonical_reason().unwrap_or("error"),
    }
}

/// The largest error body read to rewrite it (errors are a line of text).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Rewrites an error response that is not JSON yet (or JSON without a
/// `code`) into `{"error", "code"}`; success responses pass untouched, so
/// streams and downloads are never read here.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let value = if is_json {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(mut m)) => {
                if !m.contains_key("code") {
                    m.insert("code".into(), json!(code_of(status)));
                }
                if !m.contains_key("error") {
                    m.insert("error".into(), json!(default_message(status)));
                }
                Value::Object(m)
            }
            _ => json!({"error": default_message(status), "code": code_of(status)}),
        }
    } else {
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        let code = rejection_code(status, &text);
        let msg = if text.is_empty() {
            default_message(status).to_string()
        } else {
            text
        };
        json!({"error": msg, "code": code})
    };
    let body = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// How long a client is asked to wait before retrying a server that cannot
/// reach its database (about one reconnection attempt's worth).
const DATABASE_RETRY_AFTER: &str = "5";

/// A server that cannot reach its database (PostgreSQL behind a network that
/// dropped) answers at once with 503 `database_unavailable` and a
/// `Retry-After`, instead of holding requests on a dead connection: a load
/// balancer sends the request to another server (`proxy_next_upstream
/// http_503`), an agent backs off and polls again. Liveness (`/healthz`)
/// still answers: the process is alive and recovers by itself when the
/// network is back. A request that found the database gone on its way (an
/// error the handler turned into 500) is answered the same way.
pub(crate) async fn database_gate(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<crate::app::App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Liveness answers whatever the database does; readiness says why not itself.
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    if let Some(why) = app.store.unavailable() {
        return database_unavailable(&why);
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::INTERNAL_SERVER_ERROR
        && let Some(why) = app.store.unavailable()
    {
        return database_unavailable(&why);
    }
    resp
}

pub(crate) fn database_unavailable(why: &str) -> Response {
    let mut resp = error_coded(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", why);
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(DATABASE_RETRY_AFTER),
    );
    resp
}

/// Unknown routes.
pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        default_message(StatusCode::NOT_FOUND),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_named_by_the_part_that_was_wrong() {
        let q = "Failed to deserialize query string: limit: invalid digit found in string";
        assert_eq!(rejection_code(StatusCode::BAD_REQUEST, q), "invalid_query");
        let j = "Failed to parse the request body as JSON: expected value at line 1 column 1";
        assert_eq!(rejection_code(StatusCode::BAD_REQUEST, j), "invalid_json");
        let d = "Failed to deserialize the JSON body into the target type: missing field `name`";
        assert_eq!(
            rejection_code(StatusCode::UNPROCESSABLE_ENTITY, d),
            "invalid_body"
        );
        assert_eq!(
            rejection_code(StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded"),
            "payload_too_large"
        );
        assert_eq!(rejection_code(StatusCode::IM_A_TEAPOT, ""), "client_error");
    }
}
