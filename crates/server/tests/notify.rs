//! Notifications end to end: a real server, real pushes, and a local receiver
//! standing in for Slack, Teams and a generic webhook.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const FAILING: &str = "name: ci\non: push\njobs:\n  check:\n    name: check S3CRET-VALUE-123\n    runs-on: ubuntu-latest\n    steps:\n      - run: exit 3\n";
const PASSING: &str = "name: ci\non: push\njobs:\n  check:\n    name: check S3CRET-VALUE-123\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo fine\n";

type Got = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

async fn receiver() -> (String, Got) {
    let got: Got = Default::default();
    let app = Router::new()
        .fallback(post(
            |State(g): State<Got>, uri: Uri, h: HeaderMap, b: Bytes| async move {
                g.lock().unwrap().push((uri.path().to_string(), h, b));
                "ok"
            },
        ))
        .with_state(got.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}"), got)
}

async fn wait_for(got: &Got, n: usize) -> Vec<(String, HeaderMap, Bytes)> {
    let start = Instant::now();
    loop {
        let g = got.lock().unwrap().clone();
        if g.len() >= n {
            return g;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} of {n} messages",
            g.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_failed_run_and_its_fix_reach_slack_teams_and_a_signed_webhook_without_secrets() {
    let (url, got) = receiver().await;
    let s = start().await;
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", FAILING)]);
    let id = s.register("acme/app", repo.path()).await;
    let r = s
        .http
        .put(s.url(&format!("/api/v1/repos/{id}/secrets/TOKEN")))
        .bearer_auth(&s.token)
        .json(&json!({"value": "S3CRET-VALUE-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let events = json!(["run_failed", "run_fixed"]);
    for (channel, path, secret) in [
        ("slack", "/slack/T000/B000/XXXX", None),
        ("teams", "/teams/workflows/abc", None),
        ("webhook", "/hook", Some("hmac-key")),
    ] {
        let (code, v) = s
            .post(
                "/api/v1/notifications",
                json!({"repo_id": id, "events": events, "channel": channel, "url": format!("{url}{path}"), "secret": secret}),
            )
            .await;
        assert_eq!(code, 201, "{v}");
        assert!(
            !v.to_string().contains("XXXX"),
            "the URL is write-only: {v}"
        );
    }
    let (code, v) = s
        .post(
            "/api/v1/notifications",
            json!({"events": ["run_exploded"], "channel": "slack", "url": url}),
        )
        .await;
    assert_eq!(code, 422);
    assert!(v["error"].as_str().unwrap().contains("run_failed"), "{v}");

    let (_, v) = s.push("acme/app", repo.path(), &sha, "d-1").await;
    let run = v["runs"][0].as_i64().unwrap();
    assert_eq!(
        s.wait_run(run, Duration::from_secs(30)).await["run"]["conclusion"],
        "failure"
    );
    let msgs = wait_for(&got, 3).await;
    for (path, headers, body) in &msgs {
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains("S3CRET-VALUE-123"), "{path}: {text}");
        assert!(text.contains("ci failed: acme/app"), "{path}: {text}");
        assert!(
            text.contains(&format!("/ui/#/runs/{run}")),
            "{path}: {text}"
        );
        assert_eq!(headers["x-hangar-event"], "run_failed");
        let v: Value = serde_json::from_slice(body).unwrap();
        match path.as_str() {
            p if p.starts_with("/slack") => assert!(v["text"].is_string()),
            p if p.starts_with("/teams") => assert_eq!(
                v["attachments"][0]["contentType"],
                "application/vnd.microsoft.card.adaptive"
            ),
            _ => {
                assert_eq!(v["event"], "run_failed");
                assert_eq!(v["data"]["failed_jobs"][0], "check ***");
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hmac-key").unwrap();
                mac.update(body);
                let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                assert_eq!(headers["x-hangar-signature-256"], want.as_str());
            }
        }
    }

    // The next run of the workflow on the branch passes: "fixed".
    let sha2 = commit(repo.path(), &[(".github/workflows/ci.yml", PASSING)]).unwrap();
    let (_, v) = s.push("acme/app", repo.path(), &sha2, "d-2").await;
    let run2 = v["runs"][0].as_i64().unwrap();
    assert_eq!(
        s.wait_run(run2, Duration::from_secs(30)).await["run"]["conclusion"],
        "success"
    );
    let msgs = wait_for(&got, 6).await;
    let fixed: Vec<_> = msgs[3..]
        .iter()
        .map(|(_, h, b)| {
            (
                h["x-hangar-event"].clone(),
                String::from_utf8_lossy(b).into_owned(),
            )
        })
        .collect();
    for (event, text) in &fixed {
        assert_eq!(event, "run_fixed");
        assert!(text.contains("ci fixed: acme/app"), "{text}");
    }
    let log = s.get("/api/v1/outbound?kind=notification").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 6, "{log:#?}");
    assert!(log.iter().all(|d| d["outcome"] == "delivered"));
    assert!(
        !serde_json::to_string(log).unwrap().contains("XXXX"),
        "{log:#?}"
    );
    s.server.stop().await;
}
