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
        timeout: Duration::from_millis(400),
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
        VecDeque::from([Fault::Status(502), Fault::Stall(Duration::from_secs(2))]),
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
