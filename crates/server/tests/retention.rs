//! Retention against a real server with small budgets: past the size budget
//! the oldest logs and artifacts go first, past the age everything goes, the
//! bytes leave the disk, and `GET /api/v1/usage` shows what each repository keeps.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hangar_server::retention::Retention;
use serde_json::Value;

const WF: &str =
    "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo retained}]\n";

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A completed run with a log, in a registered repository.
async fn completed_run(s: &TestServer) -> (tempfile::TempDir, i64, i64, Value) {
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", WF)]);
    let repo_id = s.register("acme/app", repo.path()).await;
    let (c, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    assert_eq!(c, 202, "{v}");
    let run = v["runs"][0].as_i64().unwrap();
    let done = s.wait_run(run, Duration::from_secs(60)).await;
    (repo, repo_id, run, done)
}

async fn upload(s: &TestServer, run: i64, name: &str, fill: u8, len: usize) -> String {
    let r = s
        .http
        .post(s.url(&format!("/api/v1/runs/{run}/artifacts/{name}")))
        .bearer_auth(&s.token)
        .body(vec![fill; len])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn blob(s: &TestServer, digest: &str) -> std::path::PathBuf {
    s.data
        .path()
        .join("blobs/sha256")
        .join(&digest[..2])
        .join(digest)
}

async fn log_total(s: &TestServer, job: i64) -> i64 {
    s.get(&format!("/api/v1/jobs/{job}/logs")).await["total"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn over_the_budget_the_oldest_go_first() {
    let s = start_with(|c| {
        c.retention = Retention {
            max_age: None,
            max_bytes: Some(2500),
            every: Duration::from_millis(100),
        }
    })
    .await;
    let (_repo, repo_id, run, done) = completed_run(&s).await;
    let job = done["jobs"][0]["id"].as_i64().unwrap();
    // The log alone fits the budget: it stays.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(log_total(&s, job).await > 0);
    let first = upload(&s, run, "a1", 1, 1000).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    upload(&s, run, "a2", 2, 1000).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    upload(&s, run, "a3", 3, 1000).await;
    // 3000 bytes of artifacts and the log: the log (the oldest) and a1 go.
    eventually("the oldest artifact expires", async || {
        let names: Vec<Value> = s
            .get(&format!("/api/v1/runs/{run}/artifacts"))
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].clone())
            .collect();
        names == ["a2", "a3"]
    })
    .await;
    assert_eq!(log_total(&s, job).await, 0, "the run's log went first");
    assert!(!blob(&s, &first).exists(), "a1's bytes left the disk");
    let r = s
        .http
        .get(s.url(&format!("/api/v1/runs/{run}/artifacts/a1")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let usage = s.get("/api/v1/usage").await;
    let mine = usage["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo_id"] == repo_id)
        .unwrap()
        .clone();
    assert_eq!(mine["artifacts_bytes"], 2000, "{usage}");
    assert_eq!(mine["logs_bytes"], 0, "{usage}");
    assert_eq!(mine["total_bytes"], 2000);
    assert_eq!(usage["retention"]["max_bytes"], 2500);
    let audit = s.get("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "retention.sweep"),
        "{audit}"
    );
    s.server.stop().await;
}

#[tokio::test]
async fn past_the_age_logs_and_artifacts_expire() {
    let s = start_with(|c| {
        c.retention = Retention {
            max_age: Some(Duration::from_millis(1500)),
            max_bytes: None,
            every: Duration::from_millis(100),
        }
    })
    .await;
    let (_repo, repo_id, run, done) = completed_run(&s).await;
    let job = done["jobs"][0]["id"].as_i64().unwrap();
    let digest = upload(&s, run, "out", 7, 4000).await;
    let usage = s.get("/api/v1/usage").await;
    let mine = &usage["repos"][0];
    assert_eq!(mine["repo_id"], repo_id);
    assert_eq!(mine["artifacts_bytes"], 4000, "kept while young: {usage}");
    assert!(mine["logs_bytes"].as_i64().unwrap() > 0, "{usage}");
    eventually("both expire", async || {
        s.get(&format!("/api/v1/runs/{run}/artifacts"))
            .await
            .as_array()
            .unwrap()
            .is_empty()
            && log_total(&s, job).await == 0
    })
    .await;
    assert!(!blob(&s, &digest).exists());
    assert_eq!(s.get("/api/v1/usage").await["total_bytes"], 0);
    // The run itself stays: only its logs and artifacts expire.
    assert_eq!(
        s.get(&format!("/api/v1/runs/{run}")).await["run"]["status"],
        "completed"
    );
    s.server.stop().await;
}

#[tokio::test]
async fn a_deleted_repository_takes_its_files_but_not_a_blob_another_still_names() {
    let s = start().await;
    let (_repo, repo_id, run, _) = completed_run(&s).await;
    let (other, sha) = repo_with(&[(".github/workflows/ci.yml", WF)]);
    s.register("acme/other", other.path()).await;
    let (c, v) = s.push("acme/other", other.path(), &sha, "o1").await;
    assert_eq!(c, 202, "{v}");
    let other_run = v["runs"][0].as_i64().unwrap();
    s.wait_run(other_run, Duration::from_secs(60)).await;

    let own = upload(&s, run, "own", 7, 500).await;
    let shared = upload(&s, run, "shared", 9, 500).await;
    assert_eq!(upload(&s, other_run, "same-bytes", 9, 500).await, shared);
    assert!(blob(&s, &own).exists() && blob(&s, &shared).exists());

    let r = s
        .http
        .delete(s.url(&format!("/api/v1/repos/{repo_id}")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        !blob(&s, &own).exists(),
        "its own artifact's bytes left the disk"
    );
    assert!(
        blob(&s, &shared).exists(),
        "a blob the other repository names stays"
    );
    let r = s
        .http
        .get(s.url(&format!("/api/v1/runs/{other_run}/artifacts/same-bytes")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 500);
    let usage = s.get("/api/v1/usage").await;
    assert!(
        !usage["repos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["repo_id"] == repo_id),
        "{usage}"
    );
    let audit = s.get("/api/v1/audit").await;
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "repo.delete")
        .unwrap_or_else(|| panic!("{audit}"))
        .clone();
    assert_eq!(entry["detail"]["files"], 2, "{entry}");
    s.server.stop().await;
}

/// Delivery operations that are over (here one carried out and one
/// rejected) are deleted by the sweep once past the age; one waiting for
/// its reviewers and one under way stay, however old.
#[tokio::test]
async fn finished_delivery_operations_expire_and_pending_ones_stay() {
    use hangar_store::OperationPhase;
    let s = start_with(|c| {
        c.retention = Retention {
            max_age: Some(Duration::from_millis(1500)),
            max_bytes: None,
            every: Duration::from_millis(100),
        }
    })
    .await;
    let store = s.server.app.store.clone();
    let req = serde_json::json!({"op": "deploy"});
    let op = |phase| {
        store
            .create_operation("app", "prod", &req, &serde_json::json!({}), phase)
            .unwrap()
    };
    let (waiting, running) = (op(OperationPhase::Waiting), op(OperationPhase::Running));
    let mut finished = vec![];
    for state in [
        serde_json::json!({"done": true, "result": []}),
        serde_json::json!({"done": true, "error": "rejected"}),
    ] {
        let id = op(OperationPhase::Waiting);
        let v = store.get_operation(id).unwrap().unwrap().version;
        assert!(
            store
                .update_operation(id, v, &state, OperationPhase::Done)
                .unwrap()
        );
        finished.push(id);
    }
    eventually("finished operations are deleted", async || {
        finished
            .iter()
            .all(|id| store.get_operation(*id).unwrap().is_none())
    })
    .await;
    for id in [waiting, running] {
        assert!(store.get_operation(id).unwrap().is_some(), "{id} stays");
    }
    let audit = s.get("/api/v1/audit").await;
    let swept: i64 = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "retention.sweep")
        .filter_map(|e| e["detail"]["delivery_operations"].as_i64())
        .sum();
    assert_eq!(swept, 2, "{audit}");
    s.server.stop().await;
}
