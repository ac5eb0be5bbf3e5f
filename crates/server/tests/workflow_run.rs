//! `on: workflow_run` against a real `hangar serve`, real git repositories
//! and the embedded agent: a CD workflow starts after CI (not beside it) with
//! GitHub's `github.event.workflow_run`, its `if:` reads the conclusion,
//! branch filters hold, and a chain stops after three levels.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const CI: &str = "name: CI\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: [{run: 'sleep 1; echo built'}]\n";

/// Waits until the server has a run of `workflow` (by name) and it completed.
async fn completed_run_of(s: &TestServer, workflow: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        if let Some(r) = s
            .runs()
            .await
            .into_iter()
            .find(|r| r["workflow_name"] == workflow)
        {
            return s.wait_run(r["id"].as_i64().unwrap(), timeout).await;
        }
        assert!(
            start.elapsed() < timeout,
            "no run of `{workflow}`: {:#}",
            json!(s.runs().await)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn log_of(s: &TestServer, run: &Value) -> String {
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    s.get_text(&format!("/api/v1/jobs/{job}/logs/raw")).await
}

#[tokio::test]
async fn cd_starts_after_ci_completes_with_the_workflow_run_event() {
    let cd = "name: CD\non:\n  workflow_run:\n    workflows: [CI]\n    types: [completed]\n    branches: [main]\njobs:\n  deploy:\n    if: github.event.workflow_run.conclusion == 'success'\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"conclusion=${{ github.event.workflow_run.conclusion }} branch=${{ github.event.workflow_run.head_branch }} action=${{ github.event.action }} ref=${{ github.ref }} event=${{ github.event_name }}\"\n";
    let announce = "name: Announce\non:\n  workflow_run:\n    workflows: [CI]\n    types: [requested]\njobs:\n  say:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo status=${{ github.event.workflow_run.status }}'}]\n";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", CI),
        (".github/workflows/cd.yml", cd),
        (".github/workflows/announce.yml", announce),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    // Only CI answers the push.
    assert_eq!(v["runs"].as_array().unwrap().len(), 1, "{v}");
    let ci = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(ci["run"]["conclusion"], "success", "{ci:#}");
    let cd = completed_run_of(&s, "CD", Duration::from_secs(30)).await;
    assert_eq!(cd["run"]["event"], "workflow_run");
    assert_eq!(cd["run"]["conclusion"], "success", "{cd:#}");
    assert_eq!(cd["jobs"][0]["conclusion"], "success", "{cd:#}");
    // After, not beside: CD was created once CI had finished.
    let ci_done = ci["run"]["finished_at"].as_i64().unwrap();
    let cd_created = cd["run"]["created_at"].as_i64().unwrap();
    assert!(
        cd_created >= ci_done,
        "CD {cd_created} before CI ended {ci_done}"
    );
    let log = log_of(&s, &cd).await;
    assert!(
        log.contains(
            "conclusion=success branch=main action=completed ref=refs/heads/main event=workflow_run"
        ),
        "{log}"
    );
    // `requested` followers start when CI is requested.
    let announce = completed_run_of(&s, "Announce", Duration::from_secs(30)).await;
    assert!(
        announce["run"]["created_at"].as_i64().unwrap() <= ci_done,
        "Announce follows CI's request, not its end"
    );
    assert!(log_of(&s, &announce).await.contains("status=queued"));
    // Nothing else was started: one CD, one Announce.
    let runs = s.runs().await;
    assert_eq!(runs.len(), 3, "{:#}", json!(runs));
}

#[tokio::test]
async fn a_failing_ci_skips_cd_when_its_if_asks_for_success() {
    let ci = "name: CI\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: [{run: 'exit 3'}]\n";
    let cd = "name: CD\non:\n  workflow_run:\n    workflows: [CI]\n    types: [completed]\njobs:\n  deploy:\n    if: github.event.workflow_run.conclusion == 'success'\n    runs-on: ubuntu-latest\n    steps: [{run: echo deployed}]\n";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", ci),
        (".github/workflows/cd.yml", cd),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let ci = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(ci["run"]["conclusion"], "failure");
    let cd = completed_run_of(&s, "CD", Duration::from_secs(30)).await;
    assert_eq!(cd["jobs"][0]["conclusion"], "skipped", "{cd:#}");
}

#[tokio::test]
async fn branch_filters_match_the_triggering_runs_branch() {
    let ci = "name: CI\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: [{run: echo built}]\n";
    let cd = "name: CD\non:\n  workflow_run:\n    workflows: [CI]\n    branches: [main]\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    steps: [{run: echo deployed}]\n";
    let other = "name: Other\non:\n  workflow_run:\n    workflows: [CI]\n    types: [completed]\n    branches-ignore: ['feature/*']\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [{run: echo x}]\n";
    let feature = "name: Feature\non:\n  workflow_run:\n    workflows: [CI]\n    types: [completed]\n    branches: ['feature/**']\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo head=${{ github.event.workflow_run.head_branch }} sha=${{ github.sha }}'}]\n";
    let (repo, main_sha) = repo_with(&[
        (".github/workflows/ci.yml", ci),
        (".github/workflows/cd.yml", cd),
        (".github/workflows/other.yml", other),
        (".github/workflows/feature.yml", feature),
    ]);
    git(repo.path(), &["checkout", "-q", "-b", "feature/x"]);
    let sha = hangar_testkit::commit(repo.path(), &[("src.txt", "change")]);
    // HEAD (the default branch for a local repository) is main again.
    git(repo.path(), &["checkout", "-q", "main"]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let mut body: Value =
        serde_json::from_slice(&push_body("acme/app", repo.path(), &sha)).unwrap();
    body["ref"] = json!("refs/heads/feature/x");
    let body = serde_json::to_vec(&body).unwrap();
    let (status, v) = s.hook("github", &body, &sign(&body), "d1", "push").await;
    assert_eq!(status, 202, "{v}");
    s.wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    let run = completed_run_of(&s, "Feature", Duration::from_secs(30)).await;
    // The follower runs the default branch's commit, told of the feature branch.
    let log = log_of(&s, &run).await;
    assert!(
        log.contains(&format!("head=feature/x sha={main_sha}")),
        "{log}"
    );
    // The other two filter the branch out (both `requested` and `completed`
    // were looked at by now: CI's completion came after its request).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names: Vec<String> = s
        .runs()
        .await
        .iter()
        .map(|r| r["workflow_name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!names.contains(&"CD".to_string()), "{names:?}");
    assert!(!names.contains(&"Other".to_string()), "{names:?}");
}

#[tokio::test]
async fn a_chain_of_workflow_runs_stops_after_three_levels() {
    let follower = |name: &str, after: &str| {
        format!(
            "name: {name}\non:\n  workflow_run:\n    workflows: [{after}]\n    types: [completed]\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [{{run: echo {name}}}]\n"
        )
    };
    let a =
        "name: A\non: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [{run: echo A}]\n";
    let (b, c, d, e) = (
        follower("B", "A"),
        follower("C", "B"),
        follower("D", "C"),
        follower("E", "D"),
    );
    let (repo, sha) = repo_with(&[
        (".github/workflows/a.yml", a),
        (".github/workflows/b.yml", &b),
        (".github/workflows/c.yml", &c),
        (".github/workflows/d.yml", &d),
        (".github/workflows/e.yml", &e),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    s.push("acme/app", repo.path(), &sha, "d1").await;
    for name in ["B", "C", "D"] {
        let r = completed_run_of(&s, name, Duration::from_secs(30)).await;
        assert_eq!(r["run"]["conclusion"], "success", "{name}: {r:#}");
    }
    // D's completion is looked at, and E refused with the reason in the audit log.
    let start = Instant::now();
    loop {
        let audit = s.get("/api/v1/audit").await;
        if let Some(entry) = audit
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "workflow_run.chain_limit")
        {
            assert!(entry.to_string().contains("e.yml"), "{entry}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{audit:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<String> = s
        .runs()
        .await
        .iter()
        .map(|r| r["workflow_name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(!names.contains(&"E".to_string()), "{names:?}");
}
