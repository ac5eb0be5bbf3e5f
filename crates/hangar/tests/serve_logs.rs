//! What a real `hangar serve` process writes to its own standard output and
//! error, at its most verbose (`HANGAR_LOG=trace`, `RUST_LOG=trace`), while
//! it reports a run's check runs through a server-wide GitHub App: never a
//! line of the App's private key, its webhook secret, the installation token
//! it buys, the JWT it signs, nor any token or agent credential beyond the
//! admin token it prints once at its first start.
//!
//! GitHub is a contract server on loopback with the App's endpoints
//! (installation lookup, token exchange, check runs); the key is made by the
//! `openssl` tool at test time.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::json;

use crate::common::http_json;

const BIN: &str = env!("CARGO_BIN_EXE_hangar");
const INSTALLATION_TOKEN: &str = "ghs_installationtokenthatmustnotbelogged0"; // hangar:allow (a fake credential for the test)
const WEBHOOK_SECRET: &str = "app-webhook-secret-that-must-not-be-logged";

/// What the contract saw: JWTs presented and check-run requests answered.
#[derive(Default)]
struct Seen {
    jwts: Vec<String>,
    checks: usize,
}

async fn github(
    State(seen): State<Arc<Mutex<Seen>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> (StatusCode, String) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let path = uri.path();
    let mut seen = seen.lock().unwrap();
    if path == "/repos/acme/app/installation" && method == Method::GET {
        seen.jwts.push(auth);
        return (StatusCode::OK, json!({"id": 7, "app_id": 4242}).to_string());
    }
    if path == "/app/installations/7/access_tokens" && method == Method::POST {
        seen.jwts.push(auth);
        return (
            StatusCode::CREATED,
            json!({"token": INSTALLATION_TOKEN, "expires_at": "2099-01-01T00:00:00Z"}).to_string(),
        );
    }
    if path.starts_with("/repos/acme/app/check-runs") && auth == INSTALLATION_TOKEN {
        seen.checks += 1;
        return (StatusCode::OK, json!({"id": seen.checks}).to_string());
    }
    (
        StatusCode::NOT_FOUND,
        json!({"message": "Not Found"}).to_string(),
    )
}

/// The contract server on a thread of its own; its base URL.
fn contract(seen: Arc<Mutex<Seen>>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = Router::new().fallback(github).with_state(seen);
            let _ = axum::serve(listener, app).await;
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

fn app_key(dir: &Path) -> String {
    let pem = dir.join("app.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&pem)
        .arg("2048")
        .output()
        .expect("openssl is needed to make a GitHub App key")
        .status
        .success();
    assert!(ok, "openssl genrsa");
    std::fs::read_to_string(pem).unwrap()
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn the_servers_own_log_never_shows_the_app_key_its_secret_or_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let key = app_key(tmp.path());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let api = contract(seen.clone());
    let repo = tmp.path().join("app");
    std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    std::fs::write(
        repo.join(".github/workflows/ci.yml"),
        "on: workflow_dispatch\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: [{run: echo built}]\n",
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "ci"]);

    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (out_path, err_path) = (tmp.path().join("out.log"), tmp.path().join("err.log"));
    let mut serve = Command::new(BIN)
        .current_dir(&data)
        .args(["serve", "--listen", "127.0.0.1:0", "--sandbox", "none"])
        .arg("--data")
        .arg(&data)
        .env("HANGAR_LOG", "trace")
        .env("RUST_LOG", "trace")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let (url, admin) = loop {
        let out = std::fs::read_to_string(&out_path).unwrap();
        let find = |p: &str| {
            out.lines()
                .find_map(|l| l.split(p).nth(1))
                .map(|s| s.trim().to_string())
        };
        if let (Some(u), Some(t)) = (
            find("listening on "),
            find("admin token (shown once; keep it): "),
        ) {
            break (u.trim_end_matches("/ui/").to_string(), t);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "hangar serve did not start: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let (code, v) = http_json(
        "PUT",
        &format!("{url}/api/v1/github-app"),
        &admin,
        &json!({"app_id": 4242, "private_key": key, "webhook_secret": WEBHOOK_SECRET, "api_url": api})
            .to_string(),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = http_json(
        "POST",
        &format!("{url}/api/v1/repos"),
        &admin,
        &json!({"name": "acme/app", "clone_url": repo.to_string_lossy(), "forge": "github",
            "webhook_secret": "repo-webhook-secret-not-logged"})
        .to_string(),
    );
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (_, agent) = http_json(
        "POST",
        &format!("{url}/api/v1/tokens"),
        &admin,
        r#"{"name": "logged-nowhere", "role": "agent"}"#,
    );
    let agent_token = agent["token"].as_str().unwrap().to_string();
    let (code, v) = http_json(
        "POST",
        &format!("{url}/api/v1/repos/{id}/dispatch"),
        &admin,
        r#"{"workflow": "ci.yml", "ref": "main"}"#,
    );
    assert_eq!(code, 201, "{v}");
    // The run's job is reported: created (queued, in progress) and completed.
    let start = Instant::now();
    loop {
        let (_, runs) = http_json("GET", &format!("{url}/api/v1/runs"), &admin, "");
        let done = runs[0]["status"] == "completed";
        if done && seen.lock().unwrap().checks >= 2 {
            assert_eq!(runs[0]["conclusion"], "success", "{runs}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no check runs reported: {runs} ({} check calls)",
            seen.lock().unwrap().checks
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = serve.kill();
    let _ = serve.wait();

    let mut out = String::new();
    std::fs::File::open(&out_path)
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    // The most verbose level was on: the log is not simply empty.
    assert!(
        err.lines().count() > 10,
        "HANGAR_LOG=trace wrote little: {err}"
    );
    let jwts = seen.lock().unwrap().jwts.clone();
    assert!(!jwts.is_empty(), "the App's JWT was used");
    let mut secrets: Vec<(String, String)> = key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(|l| ("a line of the App's private key".to_string(), l.to_string()))
        .collect();
    secrets.extend([
        ("the App's webhook secret".into(), WEBHOOK_SECRET.into()),
        (
            "the repository's webhook secret".into(),
            "repo-webhook-secret-not-logged".into(),
        ),
        ("the installation token".into(), INSTALLATION_TOKEN.into()),
        ("an agent token".into(), agent_token),
        // The JWT's signature (its header and claims are not secret).
        (
            "a JWT signature".into(),
            jwts[0].rsplit('.').next().unwrap().into(),
        ),
    ]);
    for (what, value) in &secrets {
        for (name, text) in [("stdout", &out), ("stderr", &err)] {
            assert!(
                !text.contains(value.as_str()),
                "{what} is in the server's {name}"
            );
        }
    }
    // Tokens and agent credentials by their prefixes: only the admin token's
    // one line at the first start shows one.
    for (name, text) in [("stdout", &out), ("stderr", &err)] {
        for line in text.lines() {
            if line.contains("admin token (shown once; keep it): ") {
                continue;
            }
            for prefix in ["hgr_", "hga_", "ghs_"] {
                assert!(
                    !line.contains(prefix),
                    "{prefix}… in the server's {name}: {line}"
                );
            }
        }
    }
}
