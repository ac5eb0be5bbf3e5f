//! Commit statuses end to end: a real server runs real pushes, and a contract
//! server on loopback plays GitHub, Gitea and GitLab: it implements each forge's
//! documented status endpoint, refuses what the forge would refuse (wrong auth
//! header, unknown state, a description over 140 characters, GitLab's transition
//! to the state a status already has) and can answer 5xx, 4xx or stall on cue.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};

const WORKFLOW: &str = "name: ci\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo built\n  test:\n    needs: build\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo tested\n";

#[derive(Debug, Clone)]
enum Fault {
    Status(u16),
    Stall(Duration),
}

#[derive(Debug, Clone)]
struct Received {
    forge: &'static str,
    project: String,
    sha: String,
    context: String,
    state: String,
    target_url: String,
}

#[derive(Default)]
struct Contract {
    received: Vec<Received>,
    /// Requests per project, answered or not.
    requests: HashMap<String, usize>,
    violations: Vec<String>,
    faults: HashMap<String, VecDeque<Fault>>,
    /// Projects that always answer with this status.
    always: HashMap<String, u16>,
    /// GitLab: the current state of each (project, sha, name).
    gitlab_state: HashMap<(String, String, String), String>,
}

type Shared = Arc<Mutex<Contract>>;

async fn handle(
    State(c): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let path = uri.path().to_string();
    let (forge, project, sha) = if let Some(rest) = path.strip_prefix("/github/repos/") {
        let (p, sha) = rest.rsplit_once("/statuses/").unwrap_or((rest, ""));
        ("github", p.to_string(), sha.to_string())
    } else if let Some(rest) = path.strip_prefix("/gitea/api/v1/repos/") {
        let (p, sha) = rest.rsplit_once("/statuses/").unwrap_or((rest, ""));
        ("gitea", p.to_string(), sha.to_string())
    } else if let Some(rest) = path.strip_prefix("/gitlab/api/v4/projects/") {
        let (p, sha) = rest.rsplit_once("/statuses/").unwrap_or((rest, ""));
        // GitLab takes the project's path URL-encoded in one segment.
        if p.contains('/') {
            return (
                StatusCode::NOT_FOUND,
                "project path not encoded".to_string(),
            );
        }
        ("gitlab", p.replace("%2F", "/"), sha.to_string())
    } else {
        return (StatusCode::NOT_FOUND, format!("no route {path}"));
    };
    let fault = {
        let mut g = c.lock().unwrap();
        *g.requests.entry(project.clone()).or_default() += 1;
        if let Some(code) = g.always.get(&project) {
            return (StatusCode::from_u16(*code).unwrap(), "{}".into());
        }
        g.faults.get_mut(&project).and_then(|q| q.pop_front())
    };
    match fault {
        Some(Fault::Status(code)) => {
            return (
                StatusCode::from_u16(code).unwrap(),
                "{\"message\":\"injected\"}".into(),
            );
        }
        Some(Fault::Stall(d)) => {
            // The client has given up by now; what it sent is not recorded.
            tokio::time::sleep(d).await;
            return (StatusCode::GATEWAY_TIMEOUT, "{}".into());
        }
        None => {}
    }
    let mut g = c.lock().unwrap();
    let bad = |g: &mut Contract, why: String| {
        g.violations.push(format!("{forge} {path}: {why}"));
        (StatusCode::UNPROCESSABLE_ENTITY, why)
    };
    let hdr = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if hdr("user-agent").is_empty() {
        return bad(
            &mut g,
            "GitHub refuses requests without a User-Agent".into(),
        );
    }
    match forge {
        "github" => {
            if hdr("authorization") != "Bearer gh-token" {
                return bad(&mut g, format!("authorization `{}`", hdr("authorization")));
            }
            if hdr("accept") != "application/vnd.github+json" {
                return bad(&mut g, "accept header".into());
            }
        }
        "gitea" => {
            if hdr("authorization") != "token gt-token" {
                return bad(&mut g, format!("authorization `{}`", hdr("authorization")));
            }
        }
        _ => {
            if hdr("private-token") != "gl-token" {
                return bad(&mut g, format!("private-token `{}`", hdr("private-token")));
            }
        }
    }
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad(&mut g, format!("sha `{sha}`"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad(&mut g, "body is not JSON".into());
    };
    let state = v["state"].as_str().unwrap_or("").to_string();
    let allowed: &[&str] = match forge {
        "github" => &["pending", "success", "failure", "error"],
        "gitea" => &["pending", "success", "failure", "error", "warning"],
        _ => &[
            "pending", "running", "success", "failed", "canceled", "skipped",
        ],
    };
    if !allowed.contains(&state.as_str()) {
        return bad(&mut g, format!("state `{state}`"));
    }
    let context_key = if forge == "gitlab" { "name" } else { "context" };
    let Some(context) = v[context_key].as_str().map(String::from) else {
        return bad(&mut g, format!("no `{context_key}`"));
    };
    if v["description"]
        .as_str()
        .is_some_and(|d| d.chars().count() > 140)
    {
        return bad(&mut g, "description over 140 characters".into());
    }
    let target_url = v["target_url"].as_str().unwrap_or("").to_string();
    if forge == "gitlab" {
        let key = (project.clone(), sha.clone(), context.clone());
        let same = g.gitlab_state.get(&key) == Some(&state);
        if same {
            return bad(
                &mut g,
                format!("Cannot transition status via :{state} from :{state}"),
            );
        }
        g.gitlab_state.insert(key, state.clone());
    }
    g.received.push(Received {
        forge,
        project,
        sha,
        context,
        state,
        target_url,
    });
    (
        StatusCode::CREATED,
        json!({"id": g.received.len()}).to_string(),
    )
}

async fn contract() -> (String, Shared) {
    let shared: Shared = Default::default();
    let app = Router::new()
        .fallback(post(handle))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), shared)
}

async fn put_forge(s: &TestServer, repo: i64, body: Value) -> (u16, Value) {
    let r = s
        .http
        .put(s.url(&format!("/api/v1/repos/{repo}/forge")))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn fast_retries(cfg: &mut hangar_server::ServeConfig) {
    cfg.status_retry = hangar_server::forge_status::RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        // Well above what a loopback answer takes on a loaded 2-core machine
        // (at 400 ms a slow but successful request was sent twice, and the
        // contract saw its status twice), well below the stall below.
        timeout: Duration::from_millis(1500),
    };
}

/// Waits until `done` holds for the contract's state.
async fn until(c: &Shared, what: &str, done: impl Fn(&Contract) -> bool) {
    let start = Instant::now();
    loop {
        if done(&c.lock().unwrap()) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: {:#?}",
            c.lock().unwrap().received
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn every_job_reaches_each_forge_as_its_documented_status() {
    let (forge, c) = contract().await;
    // GitHub answers the first request with 502 and stalls the second past the
    // client's timeout: both are retried.
    c.lock().unwrap().faults.insert(
        "acme/gh".into(),
        VecDeque::from([Fault::Status(502), Fault::Stall(Duration::from_secs(4))]),
    );
    let s = start_with(fast_retries).await;
    let mut runs = Vec::new();
    for (name, kind, api, token) in [
        ("acme/gh", "github", format!("{forge}/github"), "gh-token"),
        (
            "acme/gt",
            "forgejo",
            format!("{forge}/gitea/api/v1/"),
            "gt-token",
        ),
        (
            "acme/gl",
            "gitlab",
            format!("{forge}/gitlab/api/v4"),
            "gl-token",
        ),
    ] {
        let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
        let id = s.register(name, repo.path()).await;
        let (code, v) = put_forge(
            &s,
            id,
            json!({"kind": kind, "api_url": api, "token": token}),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["has_token"], true);
        assert!(v.get("token").is_none(), "the token is write-only: {v}");
        assert_eq!(v["project"], name, "defaults to the registered name");
        let (code, v) = s.push(name, repo.path(), &sha, &format!("d-{name}")).await;
        assert_eq!(code, 202, "{v}");
        runs.push((name, sha, v["runs"][0].as_i64().unwrap(), repo));
    }
    for (_, _, run, _) in &runs {
        let v = s.wait_run(*run, Duration::from_secs(30)).await;
        assert_eq!(v["run"]["conclusion"], "success", "{v:#}");
    }
    let finals = |g: &Contract| g.received.iter().filter(|r| r.state == "success").count() == 6;
    until(&c, "every job's conclusion on its forge", finals).await;
    {
        let g = c.lock().unwrap();
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
        for (name, sha, run, _) in &runs {
            for job in ["build", "test"] {
                let context = format!("ci / {job} (push)");
                let seen: Vec<&Received> = g
                    .received
                    .iter()
                    .filter(|r| r.project == *name && r.context == context)
                    .collect();
                let states: Vec<&str> = seen.iter().map(|r| r.state.as_str()).collect();
                let forge = seen[0].forge;
                if forge == "gitlab" {
                    assert!(
                        matches!(states.first(), Some(&"pending") | Some(&"running"))
                            && states.last() == Some(&"success"),
                        "{name} {context}: {states:?}"
                    );
                } else {
                    assert_eq!(states, ["pending", "success"], "{name} {context}");
                }
                for r in &seen {
                    assert_eq!(r.sha, *sha);
                    assert_eq!(r.target_url, s.url(&format!("/ui/#/runs/{run}")));
                }
            }
        }
    }
    // The delivery log shows the retries: the 502 and the stall each cost one
    // more attempt of whichever GitHub status met them.
    let log = s.get("/api/v1/outbound?kind=status").await;
    let log = log.as_array().unwrap();
    assert!(log.iter().all(|d| d["outcome"] == "delivered"), "{log:#?}");
    let retries: i64 = log
        .iter()
        .filter(|d| {
            d["target"]
                .as_str()
                .unwrap()
                .contains("/github/repos/acme/gh/")
        })
        .map(|d| d["attempts"].as_i64().unwrap() - 1)
        .sum();
    assert_eq!(retries, 2, "{log:#?}");
    assert!(
        !serde_json::to_string(log).unwrap().contains("gh-token"),
        "no token in the log"
    );
    s.server.stop().await;
}

#[tokio::test]
async fn a_refusing_forge_gets_one_try_and_a_broken_one_a_bounded_few() {
    let (forge, c) = contract().await;
    c.lock().unwrap().always.insert("acme/denied".into(), 401);
    c.lock().unwrap().always.insert("acme/down".into(), 503);
    let s = start_with(fast_retries).await;
    let mut runs = Vec::new();
    for name in ["acme/denied", "acme/down"] {
        let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
        let id = s.register(name, repo.path()).await;
        let (code, v) = put_forge(
            &s,
            id,
            json!({"api_url": format!("{forge}/github"), "token": "gh-token"}),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let (_, v) = s.push(name, repo.path(), &sha, &format!("d-{name}")).await;
        runs.push((v["runs"][0].as_i64().unwrap(), repo));
    }
    for (run, _) in &runs {
        let v = s.wait_run(*run, Duration::from_secs(30)).await;
        assert_eq!(
            v["run"]["conclusion"], "success",
            "a forge's refusal fails no run"
        );
    }
    // Both contexts of both repositories end with a final outcome in the log.
    let start = Instant::now();
    let log = loop {
        let log = s.get("/api/v1/outbound?kind=status").await;
        let finals = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["state"] == "success")
            .count();
        if finals == 4 {
            break log;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{log:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = log.as_array().unwrap();
    let of = |p: &str| -> Vec<&Value> {
        log.iter()
            .filter(|d| d["target"].as_str().unwrap().contains(p))
            .collect()
    };
    let denied = of("/acme/denied/");
    assert!(
        denied
            .iter()
            .all(|d| d["attempts"] == 1 && d["outcome"] == "refused" && d["http_status"] == 401),
        "{denied:#?}"
    );
    let down = of("/acme/down/");
    assert!(
        down.iter()
            .all(|d| d["attempts"] == 3 && d["outcome"] == "failed" && d["http_status"] == 503),
        "{down:#?}"
    );
    {
        let g = c.lock().unwrap();
        assert_eq!(g.requests["acme/denied"], denied.len(), "no retry on a 4xx");
        assert_eq!(
            g.requests["acme/down"],
            3 * down.len(),
            "bounded retries on a 5xx"
        );
    }
    s.server.stop().await;
}

#[tokio::test]
async fn forge_settings_are_checked_and_can_be_removed() {
    let s = start().await;
    let (repo, _) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    let id = s.register("acme/app", repo.path()).await;
    for (body, needle) in [
        (json!({"kind": "gitea", "token": "x"}), "api_url"),
        (json!({"token": "x", "project": "../../x"}), "project"),
        (json!({"token": "x", "api_url": "file:///etc"}), "https://"),
        (json!({"token": " "}), "token"),
    ] {
        let (code, v) = put_forge(&s, id, body.clone()).await;
        assert_eq!(code, 422, "{body}: {v}");
        assert!(v.to_string().contains(needle), "{body}: {v}");
    }
    let (code, v) = put_forge(&s, id, json!({"token": "ghp_x"})).await;
    assert_eq!(
        (code, &v["api_url"]),
        (200, &json!("https://api.github.com"))
    );
    let del = |path: String| {
        let s = &s;
        async move {
            s.http
                .delete(s.url(&path))
                .bearer_auth(&s.token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(del(format!("/api/v1/repos/{id}/forge")).await, 204);
    assert_eq!(del(format!("/api/v1/repos/{id}/forge")).await, 404);
    s.server.stop().await;
}

// ---------------------------------------------------------------------------
// GitHub's Checks API with a GitHub App.
// ---------------------------------------------------------------------------

/// A GitHub App key made by openssl, PKCS#1 PEM as GitHub hands it out, and
/// its public key (PKCS#1 DER) for the contract server to verify JWTs with.
fn app_key(dir: &std::path::Path, name: &str) -> (String, Vec<u8>) {
    let pem = dir.join(format!("{name}.pem"));
    let der = dir.join(format!("{name}.der"));
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&pem)
        .arg("2048")
        .output()
        .expect("openssl is needed to make a GitHub App key")
        .status
        .success();
    assert!(ok, "openssl genrsa");
    let ok = std::process::Command::new("openssl")
        .args(["rsa", "-RSAPublicKey_out", "-outform", "DER", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&der)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl rsa -RSAPublicKey_out");
    (
        std::fs::read_to_string(&pem).unwrap(),
        std::fs::read(&der).unwrap(),
    )
}

#[derive(Debug, Clone)]
struct CheckCall {
    method: String,
    /// The check run's id (assigned on create).
    id: u64,
    body: Value,
    /// `owner/name` of the path.
    repo: String,
    /// The bearer token it came with.
    token: String,
}

#[derive(Default)]
struct GitHubApp {
    public_key: Vec<u8>,
    app_id: String,
    /// Token exchanges, accepted or not.
    exchanges: usize,
    calls: Vec<CheckCall>,
    /// Requests to the check-runs endpoints, answered or not.
    check_requests: usize,
    violations: Vec<String>,
    faults: VecDeque<u16>,
    next_id: u64,
    /// Where the App is installed: repository → installation id.
    installed: HashMap<String, u64>,
    /// `GET /repos/{o}/{r}/installation` requests.
    lookups: usize,
    /// Tokens that are not the App's (a repository's own), accepted anywhere.
    static_tokens: Vec<String>,
}

/// The installation token the contract hands out for an installation.
fn installation_token(id: u64) -> String {
    if id == 77 {
        "ghs_installation".into()
    } else {
        format!("ghs_inst{id}")
    }
}

type App = Arc<Mutex<GitHubApp>>;

fn b64url(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Verifies an App JWT as GitHub does: RS256 with the App's public key, `iss`
/// the App's id, issued in the past, valid at most ten minutes.
fn verify_jwt(app: &GitHubApp, jwt: &str) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err("not a JWT".into());
    };
    let header: Value =
        serde_json::from_slice(&b64url(h).ok_or("header")?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &app.public_key,
    );
    key.verify(
        format!("{h}.{c}").as_bytes(),
        &b64url(s).ok_or("signature")?,
    )
    .map_err(|_| "signature does not verify with the App's public key".to_string())?;
    let claims: Value =
        serde_json::from_slice(&b64url(c).ok_or("claims")?).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    if claims["iss"] != json!(app.app_id) {
        return Err(format!("iss {}", claims["iss"]));
    }
    if iat > now || exp <= now || exp - iat > 600 {
        return Err(format!("iat {iat} exp {exp} now {now}"));
    }
    Ok(())
}

/// The shape GitHub's create/update check run endpoints accept.
fn check_violations(method: &str, b: &Value) -> Vec<String> {
    let mut v = Vec::new();
    if method == "POST" {
        if !b["name"].is_string() {
            v.push("no name".into());
        }
        let sha = b["head_sha"].as_str().unwrap_or("");
        if sha.len() != 40 || !sha.bytes().all(|c| c.is_ascii_hexdigit()) {
            v.push(format!("head_sha `{sha}`"));
        }
    }
    if let Some(s) = b.get("status") {
        if !["queued", "in_progress", "completed"].contains(&s.as_str().unwrap_or("")) {
            v.push(format!("status {s}"));
        }
        if s == "completed"
            && ![
                "success",
                "failure",
                "neutral",
                "cancelled",
                "skipped",
                "timed_out",
                "action_required",
            ]
            .contains(&b["conclusion"].as_str().unwrap_or(""))
        {
            v.push("completed without a conclusion".into());
        }
    }
    for k in ["started_at", "completed_at"] {
        if let Some(t) = b.get(k)
            && chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap_or("")).is_err()
        {
            v.push(format!("{k} {t}"));
        }
    }
    if let Some(o) = b.get("output") {
        if !o["title"].is_string() || !o["summary"].is_string() {
            v.push("output needs title and summary".into());
        }
        let anns = o["annotations"].as_array().cloned().unwrap_or_default();
        if anns.len() > 50 {
            v.push(format!("{} annotations in one request", anns.len()));
        }
        for a in anns {
            let ok = a["path"].as_str().is_some_and(|p| !p.starts_with('/'))
                && a["start_line"].as_u64().is_some()
                && a["end_line"].as_u64() >= a["start_line"].as_u64()
                && ["notice", "warning", "failure"]
                    .contains(&a["annotation_level"].as_str().unwrap_or(""))
                && a["message"].is_string();
            if !ok {
                v.push(format!("annotation {a}"));
            }
        }
    }
    v
}

async fn github_app(
    State(c): State<App>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let path = uri.path().to_string();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut g = c.lock().unwrap();
    if headers.get("accept").and_then(|v| v.to_str().ok()) != Some("application/vnd.github+json") {
        g.violations.push(format!("{path}: accept header"));
    }
    // GitHub's App endpoints take the App's JWT only.
    let jwt_checked = |g: &GitHubApp| -> Result<(), (StatusCode, String)> {
        let Some(jwt) = auth.strip_prefix("Bearer ") else {
            return Err((StatusCode::UNAUTHORIZED, "{}".into()));
        };
        verify_jwt(g, jwt)
            .map_err(|e| (StatusCode::UNAUTHORIZED, json!({"message": e}).to_string()))
    };
    if let Some(id) = path
        .strip_prefix("/app/installations/")
        .and_then(|r| r.strip_suffix("/access_tokens"))
    {
        g.exchanges += 1;
        let id = id
            .parse::<u64>()
            .ok()
            .filter(|id| g.installed.values().any(|i| i == id));
        let (Some(id), "POST") = (id, method.as_str()) else {
            return (
                StatusCode::NOT_FOUND,
                json!({"message": "Not Found"}).to_string(),
            );
        };
        if let Err(e) = jwt_checked(&g) {
            return e;
        }
        let expires = chrono::Utc::now() + chrono::Duration::hours(1);
        return (
            StatusCode::CREATED,
            json!({"token": installation_token(id), "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}).to_string(),
        );
    }
    let Some((repo, rest)) = path.strip_prefix("/repos/").and_then(|r| {
        let mut p = r.splitn(3, '/');
        let (o, n, rest) = (p.next()?, p.next()?, p.next()?);
        Some((format!("{o}/{n}"), rest.to_string()))
    }) else {
        return (StatusCode::NOT_FOUND, format!("no route {path}"));
    };
    if rest == "installation" {
        g.lookups += 1;
        if method != "GET" {
            return (StatusCode::NOT_FOUND, "{}".into());
        }
        if let Err(e) = jwt_checked(&g) {
            return e;
        }
        return match g.installed.get(&repo) {
            Some(id) => (
                StatusCode::OK,
                json!({"id": id, "account": {"login": repo.split('/').next()}, "app_id": g.app_id})
                    .to_string(),
            ),
            None => (
                StatusCode::NOT_FOUND,
                json!({"message": "Not Found"}).to_string(),
            ),
        };
    }
    let Some(rest) = rest.strip_prefix("check-runs") else {
        return (StatusCode::NOT_FOUND, format!("no route {path}"));
    };
    g.check_requests += 1;
    if let Some(code) = g.faults.pop_front() {
        return (
            StatusCode::from_u16(code).unwrap(),
            "{\"message\":\"injected\"}".into(),
        );
    }
    let token = auth.strip_prefix("Bearer ").unwrap_or("").to_string();
    let installation_may = g
        .installed
        .get(&repo)
        .is_some_and(|id| installation_token(*id) == token);
    if !installation_may && !g.static_tokens.contains(&token) {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials"}).to_string(),
        );
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
        g.violations.push(format!("{path}: not JSON"));
        return (StatusCode::BAD_REQUEST, "{}".into());
    };
    let bad = check_violations(method.as_str(), &b);
    if !bad.is_empty() {
        g.violations.extend(bad.clone());
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": bad}).to_string(),
        );
    }
    let id = match (method.as_str(), rest) {
        ("POST", "") => {
            g.next_id += 1;
            g.next_id
        }
        ("PATCH", id) => match id.trim_start_matches('/').parse::<u64>() {
            Ok(id) if id >= 1 && id <= g.next_id => id,
            _ => return (StatusCode::NOT_FOUND, "{}".into()),
        },
        _ => return (StatusCode::NOT_FOUND, "{}".into()),
    };
    g.calls.push(CheckCall {
        method: method.to_string(),
        id,
        body: b,
        repo,
        token,
    });
    (StatusCode::OK, json!({"id": id}).to_string())
}

async fn github_app_server(app: App) -> String {
    let router = Router::new().fallback(github_app).with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// The server-wide App's installation token pushes a merged release's tag
/// over https: minted for the push (the contract checks the App's JWT),
/// given to git in its environment, taken by the forge as Basic
/// `x-access-token`, as GitHub takes it.
#[tokio::test]
async fn a_github_apps_installation_token_pushes_the_release_tag() {
    let Some(forge) = hangar_testkit::git_https::git_https(&installation_token(91)) else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let (pem, public_key) = app_key(keys.path(), "app");
    let app: App = Arc::new(Mutex::new(GitHubApp {
        public_key,
        app_id: "4242".into(),
        installed: HashMap::from([("acme/tagged".to_string(), 91)]),
        ..Default::default()
    }));
    let api = github_app_server(app.clone()).await;
    let ca = forge.ca().to_path_buf();
    let s = start_with(|cfg| cfg.git_ca_file = Some(ca)).await;
    let (code, v) = put_app(
        &s,
        json!({"app_id": 4242, "private_key": pem, "webhook_secret": APP_SECRET, "api_url": api}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let bare = forge.bare("acme/tagged.git");
    let (_work, merge) = merged_release_into(&bare, "release:\n  tag_on_merge: true\n", None);
    let url = forge.url("acme/tagged.git");
    register_url(&s, "acme/tagged", &url).await;
    let (code, v) = s
        .push("acme/tagged", std::path::Path::new(&url), &merge, "app-1")
        .await;
    assert!(code == 202 || code == 200, "{code} {v}");
    eventually("v1.1.0 pushed with the installation token", || async {
        tag_of(&bare, "v1.1.0").is_some()
    })
    .await;
    assert_eq!(git(&bare, &["rev-list", "-n", "1", "v1.1.0"]).trim(), merge);
    {
        let g = app.lock().unwrap();
        assert_eq!(
            (g.lookups, g.exchanges),
            (1, 1),
            "one lookup, one token minted"
        );
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
    }
    // The test forge records a request once git's backend has finished it,
    // which is a moment after the tag is visible in the repository.
    eventually("the push recorded by the forge", || async {
        !forge.seen().pushes().is_empty()
    })
    .await;
    let seen = forge.seen();
    let pushes = seen.pushes();
    assert_eq!(pushes.len(), 1, "{seen:#?}");
    assert!(
        pushes[0].authenticated && pushes[0].status == 200,
        "{seen:#?}"
    );
    assert_eq!(pushes[0].user.as_deref(), Some("x-access-token"));
    assert!(seen.token_on_argv.is_empty(), "{:#?}", seen.token_on_argv);
    // Audited once the push returned (the tag can be seen a moment before).
    eventually("the tag audited", || async {
        audits(&s, "release.tag").await.len() == 1
    })
    .await;
    // The exchange is in the outbound log, as the check runs' are.
    let out = s.get("/api/v1/outbound?limit=50").await;
    assert!(out.to_string().contains("access_tokens"), "{out:#}");
    s.server.stop().await;
}

const LINT: &str = "name: ci\non: push\njobs:\n  lint:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          for i in $(seq 1 119); do echo \"::error file=src/f$i.rs,line=$i,endLine=$((i+1)),title=E$i::problem $i\"; done\n          echo '::warning::no file'\n  build:\n    needs: lint\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo built\n";

#[tokio::test]
async fn a_github_app_reports_each_job_as_a_check_run_with_its_annotations() {
    let keys = tempfile::tempdir().unwrap();
    let (pem, public_key) = app_key(keys.path(), "app");
    let (other_pem, _) = app_key(keys.path(), "other");
    let app: App = Arc::new(Mutex::new(GitHubApp {
        public_key,
        app_id: "4242".into(),
        // The first create answers 502: retried.
        faults: VecDeque::from([502]),
        installed: HashMap::from([("acme/checks".to_string(), 77)]),
        ..Default::default()
    }));
    let api = github_app_server(app.clone()).await;
    let s = start_with(fast_retries).await;

    // The credential is checked before it is stored, and stays write-only.
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", LINT)]);
    let id = s.register("acme/checks", repo.path()).await;
    for (body, needle) in [
        (json!({"app_id": 4242, "private_key": "not a key"}), "PEM"),
        (json!({"app_id": 4242}), "private_key"),
        (
            json!({"app_id": 4242, "private_key": pem, "token": "x"}),
            "not both",
        ),
        (
            json!({"kind": "gitlab", "api_url": api, "report": "checks", "token": "x"}),
            "GitHub",
        ),
    ] {
        let (code, v) = put_forge(&s, id, body.clone()).await;
        assert_eq!(code, 422, "{v}");
        assert!(v.to_string().contains(needle), "{needle}: {v}");
    }
    let (code, v) = put_forge(
        &s,
        id,
        json!({"api_url": api, "project": "acme/checks", "app_id": 4242, "installation_id": 77, "private_key": pem}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (&v["report"], &v["app_id"], &v["has_private_key"]),
        (&json!("checks"), &json!("4242"), &json!(true))
    );
    assert!(
        !v.to_string().contains("PRIVATE KEY"),
        "the key is write-only: {v}"
    );

    let (code, v) = s.push("acme/checks", repo.path(), &sha, "d-checks").await;
    assert_eq!(code, 202, "{v}");
    let run = v["runs"][0].as_i64().unwrap();
    let v = s.wait_run(run, Duration::from_secs(60)).await;
    assert_eq!(v["run"]["conclusion"], "success", "{v:#}");

    // Both check runs complete, and the annotations of lint are all sent.
    let start = Instant::now();
    loop {
        let done = {
            let g = app.lock().unwrap();
            let completed = g
                .calls
                .iter()
                .filter(|c| c.body["status"] == "completed")
                .count();
            let anns: usize = g
                .calls
                .iter()
                .map(|c| {
                    c.body["output"]["annotations"]
                        .as_array()
                        .map_or(0, Vec::len)
                })
                .sum();
            completed == 2 && anns == 120
        };
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:#?}",
            app.lock().unwrap().calls
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let g = app.lock().unwrap();
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
        assert_eq!(
            g.exchanges, 1,
            "one installation token, cached for every update"
        );
        let details = s.url(&format!("/ui/#/runs/{run}"));
        for (job, ids) in [("lint", 1), ("build", 1)] {
            let name = format!("ci / {job}");
            let mine: Vec<&CheckCall> = g
                .calls
                .iter()
                .filter(|c| {
                    g.calls
                        .iter()
                        .any(|p| p.method == "POST" && p.id == c.id && p.body["name"] == name)
                })
                .collect();
            let distinct: std::collections::BTreeSet<u64> = mine.iter().map(|c| c.id).collect();
            assert_eq!(distinct.len(), ids, "{name}: one check run");
            assert_eq!(mine[0].method, "POST", "{name}");
            assert_eq!(mine[0].body["head_sha"], sha.as_str());
            assert_eq!(mine[0].body["details_url"], details.as_str());
            let states: Vec<&str> = mine
                .iter()
                .filter_map(|c| c.body["status"].as_str())
                .collect();
            if job == "build" {
                // It waits for lint, so it is seen queued first.
                assert_eq!(states, ["queued", "in_progress", "completed"], "{name}");
            } else {
                assert!(
                    states.ends_with(&["in_progress", "completed"]),
                    "{name}: {states:?}"
                );
            }
            let done = mine
                .iter()
                .find(|c| c.body["status"] == "completed")
                .unwrap();
            assert_eq!(done.body["conclusion"], "success");
            assert!(done.body["started_at"].is_string() && done.body["completed_at"].is_string());
        }
        // 120 annotations: 50 with the completion, then two updates of 50 and 20.
        let batches: Vec<usize> = g
            .calls
            .iter()
            .filter_map(|c| c.body["output"]["annotations"].as_array().map(Vec::len))
            .collect();
        assert_eq!(batches, [50, 50, 20]);
        let all: Vec<&Value> = g
            .calls
            .iter()
            .filter_map(|c| c.body["output"]["annotations"].as_array())
            .flatten()
            .collect();
        assert_eq!(
            *all[0],
            json!({"path": "src/f1.rs", "start_line": 1, "end_line": 2, "annotation_level": "failure", "message": "problem 1", "title": "E1"})
        );
        let warning = all
            .iter()
            .find(|a| a["annotation_level"] == "warning")
            .unwrap();
        assert_eq!(
            warning["path"], ".github/workflows/ci.yml",
            "no file: on the workflow"
        );
    }

    // The 502 cost one more attempt; nothing was refused.
    let log = s.get("/api/v1/outbound?kind=check").await;
    let log = log.as_array().unwrap().clone();
    assert!(log.iter().all(|d| d["outcome"] == "delivered"), "{log:#?}");
    let retries: i64 = log
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap() - 1)
        .sum();
    assert_eq!(retries, 1, "{log:#?}");
    assert!(
        !serde_json::to_string(&log)
            .unwrap()
            .contains("ghs_installation")
    );

    // An App whose key GitHub does not know: the exchange is refused (401) once,
    // and no check run is attempted.
    let (repo2, sha2) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    let id2 = s.register("acme/wrongkey", repo2.path()).await;
    let (code, v) = put_forge(
        &s,
        id2,
        json!({"api_url": api, "project": "acme/checks", "app_id": "4242", "installation_id": 77, "private_key": other_pem}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (before_ex, before_checks) = {
        let g = app.lock().unwrap();
        (g.exchanges, g.check_requests)
    };
    let (_, v) = s
        .push("acme/wrongkey", repo2.path(), &sha2, "d-wrongkey")
        .await;
    let run2 = v["runs"][0].as_i64().unwrap();
    let v = s.wait_run(run2, Duration::from_secs(60)).await;
    assert_eq!(
        v["run"]["conclusion"], "success",
        "a forge's refusal fails no run"
    );
    // Until both jobs' completions were tried and nothing more comes.
    let start = Instant::now();
    let mut seen = 0;
    let refused = loop {
        let log = s.get("/api/v1/outbound?kind=check").await;
        let refused: Vec<Value> = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["run_id"] == run2)
            .cloned()
            .collect();
        if refused.len() >= 2 && refused.len() == seen {
            break refused;
        }
        seen = refused.len();
        assert!(start.elapsed() < Duration::from_secs(20), "{log:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        refused
            .iter()
            .all(|d| d["outcome"] == "refused" && d["http_status"] == 401 && d["attempts"] == 1),
        "{refused:#?}"
    );
    {
        let g = app.lock().unwrap();
        assert_eq!(g.exchanges - before_ex, refused.len(), "no retry on a 4xx");
        assert_eq!(
            g.check_requests, before_checks,
            "no check run without a token"
        );
    }
    s.server.stop().await;
}

const APP_SECRET: &str = "the-apps-own-webhook-secret";

fn sign_with(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn put_app(s: &TestServer, body: Value) -> (u16, Value) {
    let r = s
        .http
        .put(s.url("/api/v1/github-app"))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// Waits until `repo`'s check runs with `token` include `completed` ones for
/// every job of `WORKFLOW` (build and test) since call `from`.
async fn until_checks(app: &App, repo: &str, token: &str, from: usize) {
    let start = Instant::now();
    loop {
        {
            let g = app.lock().unwrap();
            let done = g.calls[from.min(g.calls.len())..]
                .iter()
                .filter(|c| c.repo == repo && c.token == token && c.body["status"] == "completed")
                .count();
            if done == 2 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{repo}: {:#?}",
                g.calls
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A push signed with `secret`, for `sha` of the repository at `clone`.
async fn push_signed(
    s: &TestServer,
    secret: &str,
    repo: &str,
    clone: &std::path::Path,
    sha: &str,
    delivery: &str,
) -> i64 {
    let mut body: Value = serde_json::from_slice(&push_body(repo, clone, sha)).unwrap();
    body["head_commit"] = json!({"id": sha, "message": delivery});
    let body = serde_json::to_vec(&body).unwrap();
    let (code, v) = s
        .hook("github", &body, &sign_with(secret, &body), delivery, "push")
        .await;
    assert_eq!(code, 202, "{v}");
    let run = v["runs"][0].as_i64().unwrap();
    let v = s.wait_run(run, Duration::from_secs(60)).await;
    assert_eq!(v["run"]["conclusion"], "success", "{v:#}");
    run
}

#[tokio::test]
async fn a_server_wide_github_app_reports_for_every_repository_it_is_installed_on() {
    let keys = tempfile::tempdir().unwrap();
    let (pem, public_key) = app_key(keys.path(), "app");
    let app: App = Arc::new(Mutex::new(GitHubApp {
        public_key,
        app_id: "4242".into(),
        installed: HashMap::from([("acme/one".to_string(), 77), ("acme/own".to_string(), 77)]),
        static_tokens: vec!["ghs_own".into()],
        ..Default::default()
    }));
    let api = github_app_server(app.clone()).await;
    let s = start_with(fast_retries).await;

    // The settings are checked before they are stored.
    for (body, needle) in [
        (json!({"app_id": 4242}), "private_key"),
        (json!({"app_id": 4242, "private_key": "nope"}), "PEM"),
        (
            json!({"app_id": 4242, "private_key": pem, "webhook_secret": "short"}),
            "webhook_secret",
        ),
        (
            json!({"app_id": 4242, "private_key": pem, "api_url": "api.github.com"}),
            "api_url",
        ),
    ] {
        let (code, v) = put_app(&s, body).await;
        assert_eq!(code, 422, "{needle}: {v}");
        assert!(v.to_string().contains(needle), "{needle}: {v}");
    }
    let r = s
        .http
        .get(s.url("/api/v1/github-app"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "none registered yet");
    let (code, v) = put_app(
        &s,
        json!({"app_id": 4242, "private_key": pem, "webhook_secret": APP_SECRET, "api_url": api}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (
            &v["app_id"],
            &v["has_private_key"],
            &v["has_webhook_secret"]
        ),
        (&json!("4242"), &json!(true), &json!(true))
    );
    assert_eq!(v["webhook_url"], s.url("/hooks/github").as_str());

    // A repository with no credential of its own, where the App is installed:
    // its installation is looked up once, one token is minted, every job's
    // check run goes through it.
    let (one, sha1) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    s.register("acme/one", one.path()).await;
    push_signed(&s, SECRET, "acme/one", one.path(), &sha1, "d-one").await;
    until_checks(&app, "acme/one", "ghs_installation", 0).await;
    {
        let g = app.lock().unwrap();
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
        assert_eq!((g.lookups, g.exchanges), (1, 1), "found once, minted once");
        let names: std::collections::BTreeSet<&str> = g
            .calls
            .iter()
            .filter(|c| c.method == "POST")
            .filter_map(|c| c.body["name"].as_str())
            .collect();
        assert_eq!(names, ["ci / build", "ci / test"].into());
    }
    let v = s.get("/api/v1/github-app").await;
    assert_eq!(
        v["installations"],
        json!([{"repository": "acme/one", "installation_id": 77}])
    );

    // Where the App is not installed: one lookup (404), remembered, and no
    // check run.
    let (two, sha2) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    s.register("acme/two", two.path()).await;
    let run2 = push_signed(&s, SECRET, "acme/two", two.path(), &sha2, "d-two").await;
    let start = Instant::now();
    while app.lock().unwrap().lookups < 2 {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let g = app.lock().unwrap();
        assert_eq!(g.lookups, 2, "six job updates, one lookup");
        assert!(g.calls.iter().all(|c| c.repo != "acme/two"));
    }
    let log = s.get("/api/v1/outbound?kind=check").await;
    let lookups: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["run_id"] == run2)
        .collect();
    assert_eq!(lookups.len(), 1, "{log:#}");
    assert_eq!(
        (&lookups[0]["state"], &lookups[0]["http_status"]),
        (&json!("installation"), &json!(404))
    );

    // The owner adds the repository to an installation: GitHub's
    // installation_repositories webhook says so. A forged one is refused.
    app.lock().unwrap().installed.insert("acme/two".into(), 78);
    let added = serde_json::to_vec(&json!({
        "action": "added", "installation": {"id": 78, "account": {"login": "acme"}},
        "repository_selection": "selected",
        "repositories_added": [{"id": 2, "name": "two", "full_name": "acme/two", "private": true}],
        "repositories_removed": [],
    }))
    .unwrap();
    for (sig, code) in [(sign(&added), 401), (sign_with(APP_SECRET, &added), 200)] {
        let (got, v) = s
            .hook(
                "github",
                &added,
                &sig,
                "d-added",
                "installation_repositories",
            )
            .await;
        assert_eq!(got, code, "{v}");
    }
    // The App's delivery of a push is signed with the App's secret.
    let sha2b = commit(two.path(), &[("b.txt", "b")]).unwrap();
    let from = app.lock().unwrap().calls.len();
    push_signed(&s, APP_SECRET, "acme/two", two.path(), &sha2b, "d-two-b").await;
    until_checks(&app, "acme/two", "ghs_inst78", from).await;
    assert_eq!(app.lock().unwrap().lookups, 2, "the webhook told where");

    // The installation is deleted: nothing more is sent for its repositories.
    let deleted = serde_json::to_vec(&json!({
        "action": "deleted", "installation": {"id": 77, "account": {"login": "acme"}},
        "repositories": [{"full_name": "acme/one"}],
    }))
    .unwrap();
    let (code, v) = s
        .hook(
            "github",
            &deleted,
            &sign_with(APP_SECRET, &deleted),
            "d-deleted",
            "installation",
        )
        .await;
    assert_eq!(code, 200, "{v}");
    app.lock().unwrap().installed.remove("acme/one");
    let (before_lookups, before_checks, before_ex) = {
        let g = app.lock().unwrap();
        (g.lookups, g.check_requests, g.exchanges)
    };
    let sha1b = commit(one.path(), &[("b.txt", "b")]).unwrap();
    push_signed(&s, SECRET, "acme/one", one.path(), &sha1b, "d-one-b").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    {
        let g = app.lock().unwrap();
        assert_eq!(
            (g.lookups, g.check_requests, g.exchanges),
            (before_lookups, before_checks, before_ex),
            "uninstalled: nothing asked, nothing sent"
        );
    }
    let v = s.get("/api/v1/github-app").await;
    assert_eq!(
        v["installations"],
        json!([{"repository": "acme/two", "installation_id": 78}])
    );

    // A repository's own credential wins over the App.
    let (own, sha3) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    let own_id = s.register("acme/own", own.path()).await;
    let (code, v) = put_forge(
        &s,
        own_id,
        json!({"api_url": api, "report": "checks", "token": "ghs_own"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let from = app.lock().unwrap().calls.len();
    push_signed(&s, SECRET, "acme/own", own.path(), &sha3, "d-own").await;
    until_checks(&app, "acme/own", "ghs_own", from).await;
    assert!(
        app.lock().unwrap().calls[from..]
            .iter()
            .all(|c| c.token == "ghs_own"),
        "the App is not used where the repository has its own credential"
    );

    // The key and the webhook secret are write-only: in no answer, in no
    // audit entry, and sealed on disk.
    let key_line = pem.lines().nth(1).unwrap().to_string();
    for path in [
        "/api/v1/github-app",
        "/api/v1/audit",
        "/api/v1/outbound",
        "/api/v1/deliveries",
        "/api/v1/repos/0/forge",
    ] {
        let text = s.get_text(path).await;
        for secret in [key_line.as_str(), APP_SECRET, "PRIVATE KEY"] {
            assert!(!text.contains(secret), "{path} shows `{secret}`: {text}");
        }
    }
    let audit = s.get("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "github_app.set"),
        "{audit:#}"
    );
    for entry in walk(s.data.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        for secret in [key_line.as_bytes(), APP_SECRET.as_bytes()] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} holds a secret in the clear",
                entry.display()
            );
        }
    }

    // Removed: repositories without a credential report nothing any more.
    let r = s
        .http
        .delete(s.url("/api/v1/github-app"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .http
        .get(s.url("/api/v1/github-app"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    s.server.stop().await;
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Pull requests build the merge commit, and report on their head.
// ---------------------------------------------------------------------------

const PR_WORKFLOW: &str = "name: pr\non: pull_request\njobs:\n  check:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo \"sha=$GITHUB_SHA ref=$GITHUB_REF head=${{ github.event.pull_request.head.sha }}\"\n          if test -f from-base.txt; then echo 'base file present'; else echo 'base file absent'; fi\n";

async fn open_pull_request(s: &TestServer, number: i64, head: &str) -> i64 {
    open_pull_request_with(s, number, head, json!(true)).await
}

async fn open_pull_request_with(s: &TestServer, number: i64, head: &str, mergeable: Value) -> i64 {
    let body = serde_json::to_vec(&json!({
        "action": "opened", "number": number,
        "pull_request": {"number": number, "author_association": "MEMBER", "user": {"login": "octo"}, "mergeable": mergeable,
                         "head": {"sha": head, "ref": "feature", "repo": {"full_name": "acme/pr", "fork": false}},
                         "base": {"ref": "main"}},
        "repository": {"full_name": "acme/pr", "default_branch": "main"}, "sender": {"login": "octo"}
    }))
    .unwrap();
    let (code, v) = s
        .hook(
            "github",
            &body,
            &sign(&body),
            &format!("pr-{number}"),
            "pull_request",
        )
        .await;
    assert_eq!(code, 202, "{v}");
    v["runs"][0].as_i64().unwrap()
}

async fn job_log(s: &TestServer, run: i64) -> String {
    let v = s.get(&format!("/api/v1/runs/{run}")).await;
    let job = v["jobs"][0]["id"].as_i64().unwrap();
    s.get_text(&format!("/api/v1/jobs/{job}/logs/raw")).await
}

#[tokio::test]
async fn a_pull_request_builds_githubs_merge_commit_and_reports_on_its_head() {
    // main gets a file after the pull request branched off it; GitHub's merge
    // ref joins the two.
    let (repo, _) = repo_with(&[(".github/workflows/pr.yml", PR_WORKFLOW), ("a.txt", "a")]);
    let dir = repo.path();
    git(dir, &["checkout", "-q", "-b", "feature"]);
    let head = commit(dir, &[("feature.txt", "f")]).unwrap();
    git(dir, &["checkout", "-q", "main"]);
    commit(dir, &[("from-base.txt", "moved on")]);
    git(dir, &["checkout", "-q", "--detach", "main"]);
    git(dir, &["merge", "-q", "--no-ff", "--no-edit", "feature"]);
    let merge = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["update-ref", "refs/pull/5/merge", &merge]);
    // Pull request 6 has the same head but no merge ref (a Gitea, or a
    // merge GitHub has not computed).
    git(dir, &["checkout", "-q", "main"]);

    let (forge, c) = contract().await;
    let s = start_with(fast_retries).await;
    let id = s.register("acme/pr", dir).await;
    let (code, v) = put_forge(
        &s,
        id,
        json!({"api_url": format!("{forge}/github"), "token": "gh-token"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");

    let run = open_pull_request(&s, 5, &head).await;
    let v = s.wait_run(run, Duration::from_secs(60)).await;
    assert_eq!(v["run"]["conclusion"], "success", "{v:#}");
    assert_eq!(v["run"]["sha"], merge.as_str(), "{v:#}");
    assert_eq!(v["run"]["git_ref"], "refs/pull/5/merge");
    let log = job_log(&s, run).await;
    assert!(
        log.contains(&format!("sha={merge} ref=refs/pull/5/merge head={head}")),
        "{log}"
    );
    assert!(log.contains("base file present"), "{log}");

    let fallback = open_pull_request(&s, 6, &head).await;
    let v = s.wait_run(fallback, Duration::from_secs(60)).await;
    assert_eq!(v["run"]["conclusion"], "success", "{v:#}");
    assert_eq!(v["run"]["sha"], head.as_str());
    let log = job_log(&s, fallback).await;
    assert!(
        log.contains("##[notice]This run builds the pull request's head commit")
            && log.contains("refs/pull/6/merge does not exist"),
        "{log}"
    );
    assert!(log.contains(&format!("sha={head} ")), "{log}");
    assert!(log.contains("base file absent"), "{log}");

    // GitHub still computing the merge (`mergeable: null`): the ref appears a
    // moment after the webhook, and the run still builds it.
    let late = {
        let dir = dir.to_path_buf();
        let merge = merge.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1200));
            git(&dir, &["update-ref", "refs/pull/7/merge", &merge]);
        })
    };
    let waited = open_pull_request_with(&s, 7, &head, Value::Null).await;
    late.join().unwrap();
    let v = s.wait_run(waited, Duration::from_secs(60)).await;
    assert_eq!(v["run"]["sha"], merge.as_str(), "{v:#}");
    assert!(job_log(&s, waited).await.contains("base file present"));

    // All three runs' statuses are on the head commit, as GitHub puts them.
    until(&c, "the runs' conclusions", |g| {
        g.received.iter().filter(|r| r.state == "success").count() == 3
    })
    .await;
    {
        let g = c.lock().unwrap();
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
        assert!(
            g.received.iter().all(|r| r.sha == head),
            "{:#?}",
            g.received
        );
    }
    s.server.stop().await;
}

/// An invalid workflow file's run, which has no jobs, reaches the forge as
/// one failed status named after the file, saying "Invalid workflow file"
/// at the error's line, as GitHub shows it.
#[tokio::test]
async fn an_invalid_workflow_files_run_is_one_failed_status() {
    let (forge, c) = contract().await;
    let s = start_with(fast_retries).await;
    let bad = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout\n";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", WORKFLOW),
        (".github/workflows/bad.yml", bad),
    ]);
    let id = s.register("acme/gh", repo.path()).await;
    let (code, v) = put_forge(
        &s,
        id,
        json!({"kind": "github", "api_url": format!("{forge}/github"), "token": "gh-token"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = s.push("acme/gh", repo.path(), &sha, "d-bad").await;
    assert_eq!(code, 202, "{v}");
    let failed = v["invalid_workflow_runs"][0].as_i64().unwrap();
    let context = ".github/workflows/bad.yml (push)";
    until(&c, "the invalid file's status", |g| {
        g.received.iter().any(|r| r.context == context)
    })
    .await;
    // The valid workflow of the same commit reports as always.
    until(&c, "ci's jobs", |g| {
        g.received.iter().filter(|r| r.state == "success").count() == 2
    })
    .await;
    {
        let g = c.lock().unwrap();
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
        let mine: Vec<&Received> = g.received.iter().filter(|r| r.context == context).collect();
        assert_eq!(mine.len(), 1, "{mine:#?}");
        assert_eq!(mine[0].state, "failure");
        assert_eq!(mine[0].sha, sha);
        assert_eq!(mine[0].target_url, s.url(&format!("/ui/#/runs/{failed}")));
    }
    let log = s.get("/api/v1/outbound?kind=status").await;
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|d| d["subject"] == context
                && d["outcome"] == "delivered"
                && d["run_id"] == failed),
        "{log:#}"
    );
    s.server.stop().await;
}

/// Through a GitHub App, an invalid workflow file's run is one completed,
/// failed check run named after the file, whose one annotation sits at the
/// error's line of that file, titled "Invalid workflow file: PATH#L6" and
/// saying "The workflow is not valid. PATH (Line: 6, Col: …): …", as GitHub
/// shows it.
#[tokio::test]
async fn a_github_app_reports_an_invalid_workflow_file_as_one_failed_check_run() {
    let keys = tempfile::tempdir().unwrap();
    let (pem, public_key) = app_key(keys.path(), "app");
    let app: App = Arc::new(Mutex::new(GitHubApp {
        public_key,
        app_id: "4242".into(),
        installed: HashMap::from([("acme/checks".to_string(), 77)]),
        ..Default::default()
    }));
    let api = github_app_server(app.clone()).await;
    let s = start_with(fast_retries).await;
    let bad = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout\n";
    let (repo, sha) = repo_with(&[(".github/workflows/bad.yml", bad)]);
    let id = s.register("acme/checks", repo.path()).await;
    let (code, v) = put_forge(
        &s,
        id,
        json!({"api_url": api, "project": "acme/checks", "app_id": 4242, "installation_id": 77, "private_key": pem}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = s
        .push("acme/checks", repo.path(), &sha, "d-bad-check")
        .await;
    assert_eq!(code, 202, "{v}");
    let run = v["invalid_workflow_runs"][0].as_i64().unwrap();
    let start = Instant::now();
    while app.lock().unwrap().calls.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "no check run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let g = app.lock().unwrap();
        assert!(g.violations.is_empty(), "{:#?}", g.violations);
        assert_eq!(g.calls.len(), 1, "one request: {:#?}", g.calls);
        let b = &g.calls[0].body;
        assert_eq!(g.calls[0].method, "POST");
        assert_eq!(b["name"], ".github/workflows/bad.yml", "{b:#}");
        assert_eq!(b["head_sha"], sha.as_str());
        assert_eq!(
            (&b["status"], &b["conclusion"]),
            (&json!("completed"), &json!("failure"))
        );
        assert_eq!(b["details_url"], s.url(&format!("/ui/#/runs/{run}")));
        let title = "Invalid workflow file: .github/workflows/bad.yml#L6";
        assert_eq!(b["output"]["title"], title, "{b:#}");
        let anns = b["output"]["annotations"].as_array().unwrap();
        assert_eq!(anns.len(), 1, "{b:#}");
        assert_eq!(anns[0]["path"], ".github/workflows/bad.yml");
        assert_eq!(anns[0]["start_line"], 6);
        assert_eq!(anns[0]["annotation_level"], "failure");
        assert_eq!(anns[0]["title"], title);
        assert!(
            anns[0]["message"].as_str().unwrap().starts_with(
                "The workflow is not valid. .github/workflows/bad.yml (Line: 6, Col: "
            ),
            "{b:#}"
        );
    }
    s.server.stop().await;
}
