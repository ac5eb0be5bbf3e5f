//! Environment protection against a real `hangar serve`: `environment:`
//! expressions are evaluated before protection is decided, and "prevent
//! self-review" keeps a run's own trigger from approving it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const HANGAR_YML: &str = "environments:\n  production:\n    protection:\n      reviewers: [alice]\n      prevent_self_review: true\n  staging: {}\n";

const DEPLOY: &str = "on:\n  workflow_dispatch:\n    inputs:\n      environment: {type: choice, options: [staging, production], required: true}\njobs:\n  deploy:\n    environment: ${{ inputs.environment }}\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo deploying'}]\n  mapped:\n    environment: {name: '${{ inputs.environment }}'}\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo mapped'}]\n";

async fn wait_until(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn token(s: &TestServer, name: &str, role: &str) -> String {
    let (code, v) = s
        .post("/api/v1/tokens", json!({"name": name, "role": role}))
        .await;
    assert_eq!(code, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

async fn decide(s: &TestServer, token: &str, approval: i64) -> (u16, Value) {
    let r = s
        .http
        .post(s.url(&format!("/api/v1/approvals/{approval}")))
        .bearer_auth(token)
        .json(&json!({"approve": true}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn dispatch(s: &TestServer, repo: i64, token: &str, environment: &str) -> i64 {
    let r = s
        .http
        .post(s.url(&format!("/api/v1/repos/{repo}/dispatch")))
        .bearer_auth(token)
        .json(&json!({"workflow": "deploy.yml", "inputs": {"environment": environment}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["run"].as_i64().unwrap()
}

#[tokio::test]
async fn an_environment_from_an_input_waits_for_its_reviewers() {
    let (repo, _) = repo_with(&[
        ("hangar.yml", HANGAR_YML),
        (".github/workflows/deploy.yml", DEPLOY),
    ]);
    let s = start().await;
    let id = s.register("acme/app", repo.path()).await;
    let ci = token(&s, "ci-bot", "write").await;
    let run = dispatch(&s, id, &ci, "production").await;
    let url = format!("/api/v1/runs/{run}");
    wait_until(
        "both jobs to wait for approval",
        Duration::from_secs(20),
        async || {
            let r = s.get(&url).await;
            r["jobs"].as_array().unwrap().iter().all(|j| {
                j["waiting_reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("approval by a reviewer of environment `production` (alice)")
            })
        },
    )
    .await;
    let pending = s.get("/api/v1/approvals").await;
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert!(pending.iter().all(|a| a["environment"] == "production"));
    let alice = token(&s, "alice", "read").await;
    for a in pending {
        let (code, v) = decide(&s, &alice, a["id"].as_i64().unwrap()).await;
        assert_eq!(code, 200, "{v}");
    }
    let done = s.wait_run(run, Duration::from_secs(30)).await;
    assert_eq!(done["run"]["conclusion"], "success", "{done:#}");
    // The evaluated name is the deployment's label, never the expression.
    let deployments = s.get("/api/v1/deployments").await;
    let envs: Vec<&str> = deployments
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["environment"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["production", "production"], "{deployments:#}");
    assert!(done["jobs"][0]["environment"] == "production", "{done:#}");

    // The same workflow to an unprotected environment runs at once.
    let run = dispatch(&s, id, &ci, "staging").await;
    let done = s.wait_run(run, Duration::from_secs(30)).await;
    assert_eq!(done["run"]["conclusion"], "success", "{done:#}");
    assert_eq!(s.get("/api/v1/approvals").await, json!([]));
}

#[tokio::test]
async fn the_runs_own_trigger_cannot_approve_it_when_self_review_is_prevented() {
    let (repo, _) = repo_with(&[
        ("hangar.yml", HANGAR_YML),
        (".github/workflows/deploy.yml", DEPLOY),
    ]);
    let s = start().await;
    let id = s.register("acme/app", repo.path()).await;
    // alice is a reviewer and dispatches the run herself.
    let alice = token(&s, "alice", "write").await;
    let run = dispatch(&s, id, &alice, "production").await;
    wait_until("the approvals", Duration::from_secs(20), async || {
        s.get("/api/v1/approvals").await.as_array().unwrap().len() == 2
    })
    .await;
    let pending = s.get("/api/v1/approvals").await;
    let first = pending[0]["id"].as_i64().unwrap();
    let (code, v) = decide(&s, &alice, first).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["code"], "self_review", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("prevents self-review"),
        "{v}"
    );
    // Still pending; an administrator who did not trigger the run decides.
    assert_eq!(
        s.get("/api/v1/approvals").await.as_array().unwrap().len(),
        2
    );
    for a in pending.as_array().unwrap() {
        let (code, v) = decide(&s, &s.token, a["id"].as_i64().unwrap()).await;
        assert_eq!(code, 200, "{v}");
    }
    let done = s.wait_run(run, Duration::from_secs(30)).await;
    assert_eq!(done["run"]["conclusion"], "success", "{done:#}");

    // The administrator's own run: its token is refused too.
    let run = dispatch(&s, id, &s.token, "production").await;
    wait_until("the approvals", Duration::from_secs(20), async || {
        s.get("/api/v1/approvals").await.as_array().unwrap().len() == 2
    })
    .await;
    let pending = s.get("/api/v1/approvals").await;
    let (code, v) = decide(&s, &s.token, pending[0]["id"].as_i64().unwrap()).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (403, Some("self_review")),
        "{v}"
    );
    s.post(&format!("/api/v1/runs/{run}/cancel"), json!({}))
        .await;
}
