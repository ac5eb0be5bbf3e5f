//! Webhooks end to end: real server on a loopback port, real HTTP, real git.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const WORKFLOW: &str = "name: ci\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - name: greet\n        run: echo hello from $GITHUB_SHA\n  test:\n    needs: build\n    runs-on: ubuntu-latest\n    steps:\n      - run: test -f .github/workflows/ci.yml && echo checked out\n";

#[tokio::test]
async fn signed_push_runs_to_completion() {
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (status, v) = s.push("acme/app", repo.path(), &sha, "d-1").await;
    assert_eq!(status, 202, "{v}");
    let run_id = v["runs"][0].as_i64().unwrap();
    let run = s.wait_run(run_id, Duration::from_secs(30)).await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let jobs = run["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let log = s
        .get_text(&format!("/api/v1/jobs/{}/logs/raw", jobs[0]["id"]))
        .await;
    assert!(log.contains(&format!("hello from {sha}")), "{log}");
    let log2 = s
        .get_text(&format!("/api/v1/jobs/{}/logs/raw", jobs[1]["id"]))
        .await;
    assert!(
        log2.contains("checked out"),
        "the workspace holds the commit: {log2}"
    );
    // A redelivery of the same id queues nothing new.
    let (status, v) = s.push("acme/app", repo.path(), &sha, "d-1").await;
    assert_eq!(status, 200);
    assert_eq!(v["duplicate"], true);
    assert_eq!(s.runs().await.len(), 1);
    s.server.stop().await;
}

#[tokio::test]
async fn bad_signature_is_401_and_queues_nothing() {
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let body = push_body("acme/app", repo.path(), &sha);
    let (status, _) = s.hook("github", &body, "sha256=00", "d-bad", "push").await;
    assert_eq!(status, 401);
    let (status, _) = s
        .hook("github", &body, &sign(b"another body"), "d-bad2", "push")
        .await;
    assert_eq!(status, 401);
    let (status, _) = s.hook("github", &body, "", "d-bad3", "push").await;
    assert_eq!(status, 401);
    assert!(s.runs().await.is_empty());
    assert!(
        s.get("/api/v1/deliveries")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let metrics = s.get_text("/metrics").await;
    assert!(
        metrics.contains("hangar_webhook_deliveries_total{outcome=\"bad_signature\"} 3"),
        "{metrics}"
    );
    s.server.stop().await;
}

#[tokio::test]
async fn malformed_payload_is_400_with_a_message() {
    let (repo, _sha) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let body = br#"{"repository": {"full_name": "acme/app"}, "after": "x"}"#;
    let (status, v) = s.hook("github", body, &sign(body), "d-m", "push").await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("ref"), "{v}");
    let (status, v) = s
        .hook("github", b"not json", &sign(b"not json"), "d-m2", "push")
        .await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("not JSON"), "{v}");
    assert!(s.runs().await.is_empty());
    s.server.stop().await;
}

#[tokio::test]
async fn concurrent_deliveries_queue_exactly_once_each() {
    let (repo, sha) = repo_with(&[(
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n",
    )]);
    let s = start_with(|c| c.embedded_capacity = 0).await;
    s.register("acme/app", repo.path()).await;
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    // 50 copies of one delivery and 50 distinct deliveries, all at once.
    for i in 0..100 {
        let s = s.clone();
        let path = repo.path().to_path_buf();
        let sha = sha.clone();
        tasks.push(tokio::spawn(async move {
            let id = if i % 2 == 0 {
                "same".to_string()
            } else {
                format!("distinct-{i}")
            };
            s.push("acme/app", &path, &sha, &id).await.0
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 202).count(), 51, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 49, "{codes:?}");
    assert_eq!(s.runs().await.len(), 51);
    let deliveries = s.get("/api/v1/deliveries").await;
    assert_eq!(deliveries.as_array().unwrap().len(), 51);
    let runs = s.get("/api/v1/runs?limit=500").await;
    let mut ids: Vec<i64> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 51);
    let _ = json!({});
}

#[tokio::test]
async fn an_unfetchable_commit_does_not_block_its_redelivery() {
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let body = push_body("acme/app", repo.path(), missing);
    let (status, v) = s.hook("github", &body, &sign(&body), "d-r", "push").await;
    assert_eq!(status, 422, "{v}");
    // The forge redelivers the same id with a fetchable commit.
    let (status, v) = s.push("acme/app", repo.path(), &sha, "d-r").await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_branch_deletion_answers_200_and_queues_nothing() {
    let (repo, _) = repo_with(&[(".github/workflows/ci.yml", WORKFLOW)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/feature",
        "before": "1111111111111111111111111111111111111111",
        "after": "0000000000000000000000000000000000000000",
        "deleted": true,
        "repository": {"full_name": "acme/app", "clone_url": repo.path().to_string_lossy()},
        "pusher": {"name": "tester"},
        "commits": []
    }))
    .unwrap();
    let (status, v) = s.hook("github", &body, &sign(&body), "d-del", "push").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ref_deleted"], true, "{v}");
    assert!(s.runs().await.is_empty());
    s.server.stop().await;
}

#[tokio::test]
async fn two_watched_repositories_with_the_same_folder_name_stay_two() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for root in [&a, &b] {
        let dir = root.path().join("app");
        std::fs::create_dir(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        paths.push(dir);
    }
    let watch = paths.clone();
    let s = start_with(move |c| c.watch = watch).await;
    let repos = s.get("/api/v1/repos").await;
    let repos = repos.as_array().unwrap();
    assert_eq!(repos.len(), 2, "{repos:#?}");
    assert_ne!(repos[0]["name"], repos[1]["name"]);
    assert_ne!(repos[0]["clone_url"], repos[1]["clone_url"]);
    s.server.stop().await;
}

/// A server on `data` watching `repo`; the admin token is made on the first start only.
async fn watching(data: &std::path::Path, repo: &std::path::Path) -> hangar_server::Server {
    let mut cfg = hangar_server::ServeConfig::new(
        data.to_path_buf(),
        std::sync::Arc::new(hangar_agent::EngineRunner::default()),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.cron = false;
    cfg.watch = vec![repo.to_path_buf()];
    cfg.watch_every = Duration::from_millis(100);
    hangar_server::start(cfg).await.unwrap()
}

async fn runs_of(server: &hangar_server::Server, token: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/runs", server.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["git_ref"].as_str().unwrap().to_string(),
                r["sha"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn wait_runs(server: &hangar_server::Server, token: &str, n: usize) -> Vec<(String, String)> {
    let start = std::time::Instant::now();
    loop {
        let runs = runs_of(server, token).await;
        if runs.len() >= n {
            return runs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} of {n} runs: {runs:?}",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn commits_pushed_while_the_server_was_down_are_built_when_it_starts_again() {
    let wf = "name: ci\non: push\njobs:\n  show:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"before=${{ github.event.before }}\"\n";
    let (repo, first) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let data = tempfile::tempdir().unwrap();
    // The first watch takes the repository as it is: nothing is built.
    let server = watching(data.path(), repo.path()).await;
    let token = server.admin_token.clone().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(runs_of(&server, &token).await.is_empty());
    // A commit while it runs is built, as before.
    let second = commit(repo.path(), &[("a.txt", "a")]).unwrap();
    let runs = wait_runs(&server, &token, 1).await;
    assert_eq!(runs, [("refs/heads/main".to_string(), second.clone())]);
    server.stop().await;

    // Down: main moves on and a branch is created.
    let third = commit(repo.path(), &[("b.txt", "b")]).unwrap();
    git(repo.path(), &["checkout", "-q", "-b", "feature"]);
    let fourth = commit(repo.path(), &[("c.txt", "c")]).unwrap();
    git(repo.path(), &["checkout", "-q", "main"]);

    let server = watching(data.path(), repo.path()).await;
    let runs = wait_runs(&server, &token, 3).await;
    let mut want = vec![
        ("refs/heads/feature".to_string(), fourth.clone()),
        ("refs/heads/main".to_string(), second.clone()),
        ("refs/heads/main".to_string(), third.clone()),
    ];
    want.sort();
    assert_eq!(runs, want);
    // `before` of the catch-up push is the last commit built, not the start-up state.
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/runs", server.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let main_run = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["sha"] == third.as_str())
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let http = reqwest::Client::new();
    let start = std::time::Instant::now();
    let log = loop {
        let detail: serde_json::Value = http
            .get(format!("{}/api/v1/runs/{main_run}", server.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if detail["run"]["status"] == "completed" {
            let job = detail["jobs"][0]["id"].as_i64().unwrap();
            break http
                .get(format!("{}/api/v1/jobs/{job}/logs/raw", server.url()))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{detail:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        log.contains(&format!("before={second}")),
        "before is the last commit built, not the start-up state: {log}"
    );
    server.stop().await;

    // Up again with nothing new: nothing more is built.
    let server = watching(data.path(), repo.path()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs_of(&server, &token).await.len(), 3);
    assert!(
        !runs_of(&server, &token)
            .await
            .iter()
            .any(|(_, s)| s == &first)
    );
    server.stop().await;
}

/// A fork's pull request whose head commit the registered repository cannot
/// serve (force-pushed away, the fork deleted): the base branch's
/// `pull_request_target` workflow, which never needs the head, runs all the
/// same; the head's `pull_request` workflows are one failed run saying why,
/// on the audit log; and the forge gets a 2xx, so it does not retry (GitLab
/// disables a hook that keeps failing).
#[tokio::test]
async fn an_unfetchable_pull_request_head_still_runs_the_bases_pull_request_target() {
    let target = "on: pull_request_target\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo target ran on $GITHUB_REF'}]\n";
    let ci = "on: pull_request\njobs:\n  ci:\n    runs-on: ubuntu-latest\n    steps: [{run: echo head ran}]\n";
    let (repo, base) = repo_with(&[
        (".github/workflows/target.yml", target),
        (".github/workflows/ci.yml", ci),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let body = serde_json::to_vec(&json!({
        "action": "opened", "number": 7,
        "pull_request": {"number": 7,
            "head": {"sha": missing, "ref": "feature",
                     "repo": {"full_name": "mallory/app", "fork": true,
                              "clone_url": "https://forge.invalid/mallory/app.git"}},
            "base": {"sha": base, "ref": "main", "repo": {"full_name": "acme/app"}}},
        "repository": {"full_name": "acme/app"},
        "sender": {"login": "mallory"}
    }))
    .unwrap();
    let (status, v) = s
        .hook("github", &body, &sign(&body), "pr-gone", "pull_request")
        .await;
    assert_eq!(status, 202, "{v}");
    let queued = v["runs"].as_array().unwrap();
    assert_eq!(queued.len(), 1, "the base's pull_request_target run: {v}");
    let run = s
        .wait_run(queued[0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(run["run"]["event"], "pull_request_target", "{run:#}");
    assert_eq!(run["run"]["sha"], base.as_str(), "{run:#}");
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let log = s
        .get_text(&format!("/api/v1/jobs/{}/logs/raw", run["jobs"][0]["id"]))
        .await;
    assert!(log.contains("target ran on refs/heads/main"), "{log}");

    // The head's side: one failed run that says what could not be read.
    let failed = v["head_unreadable"]["run"]
        .as_i64()
        .expect("the head's run");
    let head = s.wait_run(failed, Duration::from_secs(10)).await;
    assert_eq!(head["run"]["event"], "pull_request", "{head:#}");
    assert_eq!(head["run"]["sha"], missing, "{head:#}");
    assert_eq!(head["run"]["conclusion"], "failure", "{head:#}");
    assert_eq!(head["jobs"], json!([]), "nothing ran: {head:#}");
    let why = head["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        why.contains(missing) && why.contains("could not be read") && why.contains("Push"),
        "{head:#}"
    );
    // Re-running it would read the same missing commit.
    let (code, v) = s
        .post(&format!("/api/v1/runs/{failed}/rerun"), json!({}))
        .await;
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("push to the pull request"),
        "{v}"
    );
    let audit = s.get_text("/api/v1/audit").await;
    assert!(
        audit.contains("pull_request.head_unreadable") && audit.contains(&format!("run/{failed}")),
        "{audit}"
    );
    let deliveries = s.get("/api/v1/deliveries").await;
    assert_eq!(
        deliveries[0]["outcome"], "head_unreadable",
        "{deliveries:#}"
    );
    // Only those two: nothing ran the head's workflow.
    assert_eq!(s.runs().await.len(), 2);
    // The forge's redelivery of the same id is a duplicate, not a second pair.
    let (status, v) = s
        .hook("github", &body, &sign(&body), "pr-gone", "pull_request")
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.runs().await.len(), 2);
    s.server.stop().await;
}

/// GitHub's "Invalid workflow file": a push whose commit holds workflow files
/// the validator refuses shows, for each one the push would have triggered
/// (or whose `on:` cannot be read), one failed run named after the file,
/// with no jobs and its errors at their lines; the valid file of the same
/// commit runs. A redelivery doubles nothing, a re-run is refused, and a
/// manual dispatch of an invalid file is a 422 that starts nothing.
#[tokio::test]
async fn invalid_workflow_files_are_one_failed_run_each_and_valid_ones_still_run() {
    let ok = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo fine}]\n";
    // act's `uses-github-noref`: an action with no version.
    let noref = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout\n";
    let syntax = "on: push\njobs:\n  a:\n    runs-on: [ubuntu-latest\n    steps: {run: x\n";
    let unknown = "on: [push]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    '<img src=x onerror=alert(1)>': 1\n    steps: [{run: echo}]\n";
    // Invalid, but the push would not have triggered them.
    let manual = "on: workflow_dispatch\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout\n";
    let dev = "on:\n  push:\n    branches: [dev]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    bogus: 1\n    steps: [{run: x}]\n";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ok.yml", ok),
        (".github/workflows/noref.yml", noref),
        (".github/workflows/syntax.yml", syntax),
        (".github/workflows/unknown.yml", unknown),
        (".github/workflows/manual.yml", manual),
        (".github/workflows/dev.yml", dev),
    ]);
    let s = start().await;
    let repo_id = s.register("acme/app", repo.path()).await;
    let (code, v) = s.push("acme/app", repo.path(), &sha, "d-invalid").await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["runs"].as_array().unwrap().len(), 1, "ok.yml runs: {v:#}");
    assert_eq!(
        v["workflow_errors"].as_array().unwrap().len(),
        5,
        "the webhook's answer still names every invalid file: {v:#}"
    );
    let invalid: Vec<i64> = v["invalid_workflow_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_i64().unwrap())
        .collect();
    assert_eq!(invalid.len(), 3, "{v:#}");
    let good = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(good["run"]["conclusion"], "success", "{good:#}");

    let mut seen = std::collections::BTreeMap::new();
    for id in &invalid {
        let r = s.wait_run(*id, Duration::from_secs(10)).await;
        let path = r["run"]["workflow_path"].as_str().unwrap().to_string();
        assert_eq!(r["run"]["workflow_name"], path.as_str(), "{r:#}");
        assert_eq!(r["run"]["event"], "push");
        assert_eq!(r["run"]["sha"], sha.as_str());
        assert_eq!(r["run"]["conclusion"], "failure");
        assert_eq!(r["jobs"], json!([]), "{r:#}");
        let first = &r["errors"][0];
        assert_eq!(first["file"], path.as_str(), "{r:#}");
        let line = first["line"].as_i64().expect("a line");
        assert!(first["column"].as_i64().is_some(), "{r:#}");
        assert_eq!(
            r["refused"]["title"],
            format!("Invalid workflow file: {path}#L{line}"),
            "{r:#}"
        );
        seen.insert(path, (line, first["message"].as_str().unwrap().to_string()));
    }
    let keys: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            ".github/workflows/noref.yml",
            ".github/workflows/syntax.yml",
            ".github/workflows/unknown.yml"
        ]
    );
    assert_eq!(seen[".github/workflows/noref.yml"].0, 6, "{seen:#?}");
    assert!(
        seen[".github/workflows/unknown.yml"]
            .1
            .contains("<img src=x onerror=alert(1)>"),
        "stored as written (the UI escapes it): {seen:#?}"
    );

    // The forge's redelivery of the same id is a duplicate: nothing doubled.
    let (code, v) = s.push("acme/app", repo.path(), &sha, "d-invalid").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["duplicate"], true, "{v}");
    assert_eq!(s.runs().await.len(), 4);

    // A re-run reads the same file: refused, saying what to do.
    let (code, v) = s
        .post(&format!("/api/v1/runs/{}/rerun", invalid[0]), json!({}))
        .await;
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("new commit"), "{v}");

    // A manual dispatch of an invalid file: 422 with its errors, no run.
    let (code, v) = s
        .post(
            &format!("/api/v1/repos/{repo_id}/dispatch"),
            json!({"workflow": "manual.yml", "ref": "main"}),
        )
        .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["code"], "invalid_workflow", "{v}");
    assert_eq!(v["errors"][0]["line"], 6, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid workflow file: .github/workflows/manual.yml#L6\nThe workflow is not valid. .github/workflows/manual.yml (Line: 6, Col: "),
        "{v}"
    );
    assert_eq!(s.runs().await.len(), 4);

    let audit = s.get_text("/api/v1/audit").await;
    assert_eq!(audit.matches("workflow.invalid").count(), 3, "{audit}");
    s.server.stop().await;
}

/// A pull request whose head holds an invalid workflow file on
/// `pull_request`: its failed run carries the event as delivered.
#[tokio::test]
async fn an_invalid_workflow_file_of_a_pull_request_is_a_failed_pull_request_run() {
    let bad = "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", bad)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let body = serde_json::to_vec(&json!({
        "action": "opened", "number": 3,
        "pull_request": {"number": 3,
            "head": {"sha": sha, "ref": "feature", "repo": {"full_name": "acme/app"}},
            "base": {"sha": sha, "ref": "main", "repo": {"full_name": "acme/app"}}},
        "repository": {"full_name": "acme/app"},
        "sender": {"login": "alice"}
    }))
    .unwrap();
    let (code, v) = s
        .hook("github", &body, &sign(&body), "pr-invalid", "pull_request")
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["runs"], json!([]), "{v:#}");
    let failed = v["invalid_workflow_runs"][0].as_i64().expect("its run");
    let r = s.wait_run(failed, Duration::from_secs(10)).await;
    assert_eq!(r["run"]["event"], "pull_request", "{r:#}");
    assert_eq!(r["run"]["workflow_name"], ".github/workflows/ci.yml");
    assert_eq!(r["run"]["conclusion"], "failure");
    assert_eq!(r["errors"][0]["line"], 6, "{r:#}");
    s.server.stop().await;
}

/// An invalid file's run stored by a server that stopped before failing it
/// (it has no jobs, so nothing else would ever settle it) is failed,
/// reported and audited by the next server's start-up, never concluded a
/// success for having no failed job.
#[tokio::test]
async fn a_refused_run_left_queued_by_a_stopped_server_is_failed_at_start_up() {
    let (repo, sha) = repo_with(&[("README", "x\n")]);
    let s = start().await;
    let repo_id = s.register("acme/app", repo.path()).await;
    let (data, token) = (s.data, s.token);
    s.server.stop().await;
    let store = hangar_store::open(data.path()).unwrap();
    let run = hangar_store::NewRun {
        repo_id,
        workflow_path: ".github/workflows/ci.yml".into(),
        workflow_name: ".github/workflows/ci.yml".into(),
        event: "push".into(),
        git_ref: "refs/heads/main".into(),
        sha: sha.clone(),
        payload: json!({}),
        actor: "tester".into(),
        context: json!({
            "refused": {"action": "workflow.invalid",
                "title": "Invalid workflow file: .github/workflows/ci.yml#L6",
                "rerun": "fix it in a new commit"},
            "errors": [{"file": ".github/workflows/ci.yml", "line": 6, "column": 15,
                "message": "the action has no version"}],
        }),
        ..Default::default()
    };
    let id = hangar_store::Store::create_run(&store, &run).unwrap();
    drop(store);
    let mut cfg = hangar_server::ServeConfig::new(
        data.path().to_path_buf(),
        std::sync::Arc::new(hangar_agent::EngineRunner::default()),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.cron = false;
    let server = hangar_server::start(cfg).await.unwrap();
    let http = reqwest::Client::new();
    let get = async |path: &str| -> serde_json::Value {
        let r = http
            .get(format!("{}{path}", server.url()))
            .bearer_auth(&token);
        r.send().await.unwrap().json().await.unwrap_or_default()
    };
    let start = std::time::Instant::now();
    let r = loop {
        let r = get(&format!("/api/v1/runs/{id}")).await;
        if r["run"]["status"] == "completed" {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{r:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r["run"]["conclusion"], "failure", "{r:#}");
    assert_eq!(r["errors"][0]["line"], 6, "{r:#}");
    let audit = get("/api/v1/audit").await.to_string();
    assert!(
        audit.contains("workflow.invalid") && audit.contains(&format!("run/{id}")),
        "{audit}"
    );
    server.stop().await;
}
