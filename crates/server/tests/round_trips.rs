//! What one webhook and its job cost the database, counted by the store's own
//! round-trip counter (`hangar_store::postgres::round_trips`, every request
//! sent to PostgreSQL by this process) against a real server on a throwaway
//! PostgreSQL cluster, with the embedded agent and three more agents waiting
//! on long polls, as a team's server has them. Alone in its test binary: the
//! counter is the process's, so no other test may run beside it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

const JOBS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_and_its_job_cost_few_round_trips() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let db = cluster.database();
    let s = start_with(|c| {
        c.database = Some(db);
        // Periodic work would be counted too: out of the window.
        c.reap_every = Duration::from_secs(3600);
        c.embedded_capacity = 1;
    })
    .await;
    let wf = "on: push\njobs:\n  one:\n    runs-on: ubuntu-latest\n    steps: [{run: echo ok}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    s.register("acme/app", repo.path()).await;
    let (code, v) = s
        .post("/api/v1/tokens", json!({"name": "agents", "role": "agent"}))
        .await;
    assert_eq!(code, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let stop = hangar_agent::CancellationToken::new();
    let mut work = vec![];
    for i in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let config = hangar_agent::AgentConfig {
            server: s.server.url(),
            token: token.clone(),
            id: format!("remote-{i}"),
            name: format!("remote-{i}"),
            labels: hangar_server::default_labels(),
            capacity: 1,
            work_dir: dir.path().join("work"),
            poll_wait: Duration::from_secs(30),
        };
        work.push(dir);
        tokio::spawn(hangar_agent::run_agent(
            config,
            Arc::new(hangar_agent::EngineRunner::default()),
            stop.clone(),
        ));
    }
    // A first job warms every connection's prepared statements.
    let (_, v) = s.push("acme/app", repo.path(), &sha, "warm").await;
    s.wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    // Every agent is back on its long poll.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The webhooks, then a look at the runs once a second: the test's own
    // reads are few, and their cost is measured and taken off below.
    let before = hangar_store::postgres::round_trips();
    for i in 0..JOBS {
        let (code, v) = s
            .push("acme/app", repo.path(), &sha, &format!("d{i}"))
            .await;
        assert_eq!(code, 202, "{v}");
    }
    let mut looks: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        looks += 1;
        let runs = s.runs().await;
        if runs.iter().all(|r| r["status"] == "completed") {
            assert!(
                runs.iter().all(|r| r["conclusion"] == "success"),
                "{runs:#?}"
            );
            break;
        }
        assert!(looks < 120, "the runs did not complete: {runs:#?}");
    }
    let end = hangar_store::postgres::round_trips();
    let one_look = {
        let b = hangar_store::postgres::round_trips();
        s.runs().await;
        hangar_store::postgres::round_trips() - b
    };
    let trips = end - before - looks * one_look;
    let per_job = trips as f64 / JOBS as f64;
    eprintln!("{trips} round trips for {JOBS} webhooks and their jobs: {per_job:.1} per job");
    stop.cancel();
    s.server.stop().await;
    assert!(
        per_job < 1000.0,
        "{per_job:.1} round trips per webhook and its job"
    );
}
