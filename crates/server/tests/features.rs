//! Server behaviours end to end over loopback HTTP: masking, approvals,
//! concurrency groups, cancel, re-run, dispatch inputs, waiting reasons.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn wait_until(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
}

#[tokio::test]
async fn secrets_never_reach_logs_api_or_disk() {
    let secret = "sup3r:s3cret/value-42";
    let wf = "on: push\njobs:\n  leak:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo plain=${{ secrets.TOKEN }}\n          echo b64=$(printf %s \"${{ secrets.TOKEN }}\" | base64)\n          python3 -c 'import sys, urllib.parse; print(\"url=\" + urllib.parse.quote(sys.argv[1], safe=\"\"))' \"${{ secrets.TOKEN }}\"\n          echo short=${{ secrets.SHORT }}\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    let id = s.register("acme/app", repo.path()).await;
    let r = s
        .http
        .put(s.url(&format!("/api/v1/repos/{id}/secrets/TOKEN")))
        .bearer_auth(&s.token)
        .json(&json!({"value": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.http
        .put(s.url(&format!("/api/v1/repos/{id}/secrets/SHORT")))
        .bearer_auth(&s.token)
        .json(&json!({"value": "ab"}))
        .send()
        .await
        .unwrap();
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let log = s.get_text(&format!("/api/v1/jobs/{job}/logs/raw")).await;
    assert!(log.contains("plain=***"), "{log}");
    assert!(log.contains("b64=***"), "base64 form is masked: {log}");
    assert!(log.contains("url=***"), "URL-encoded form is masked: {log}");
    // Whether a 2-character secret is masked is the engine's policy; the server's own
    // masker leaves values under its minimum length alone (see mask.rs).
    let b64 = "c3VwM3I6czNjcmV0L3ZhbHVlLTQy";
    let mut everything = log.clone();
    for path in [
        format!("/api/v1/runs/{}", run["run"]["id"]),
        "/api/v1/runs".into(),
        format!("/api/v1/repos/{id}/secrets"),
        "/api/v1/repos".into(),
        format!("/api/v1/jobs/{job}/logs?from=0&to=100"),
        "/api/v1/audit".into(),
        "/api/v1/deliveries".into(),
    ] {
        everything.push_str(&s.get_text(&path).await);
    }
    assert!(!everything.contains(secret) && !everything.contains(b64));
    assert!(everything.contains("TOKEN"), "secret names are listed");
    for f in ["hangar.db", "hangar.db-wal"] {
        let bytes = std::fs::read(s.data.path().join(f)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret in {f}"
        );
    }
}

#[tokio::test]
async fn protected_environment_waits_for_a_reviewer() {
    let hangar_yml = "environments:\n  prod:\n    protection:\n      reviewers: [alice]\n      branches: [main]\n";
    let wf = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: [{run: echo built}]\n  deploy:\n    needs: build\n    environment: prod\n    runs-on: ubuntu-latest\n    steps: [{run: echo deployed}]\n";
    let (repo, sha) = repo_with(&[("hangar.yml", hangar_yml), (".github/workflows/cd.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let run_url = format!("/api/v1/runs/{run_id}");
    wait_until(
        "the deploy job to wait for approval",
        Duration::from_secs(20),
        async || {
            let r = s.get(&run_url).await;
            r["jobs"][1]["waiting_reason"]
                .as_str()
                .unwrap_or("")
                .contains("approval")
        },
    )
    .await;
    let r = s.get(&run_url).await;
    assert_eq!(r["jobs"][1]["status"], "waiting");
    assert!(
        r["jobs"][1]["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("alice")
    );
    let pending = s.get("/api/v1/approvals").await;
    let approval = pending[0]["id"].as_i64().unwrap();
    // A read token that is not a reviewer may not decide.
    let (_, bob) = s
        .post("/api/v1/tokens", json!({"name": "bob", "role": "read"}))
        .await;
    let r = s
        .http
        .post(s.url(&format!("/api/v1/approvals/{approval}")))
        .bearer_auth(bob["token"].as_str().unwrap())
        .json(&json!({"approve": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, alice) = s
        .post("/api/v1/tokens", json!({"name": "alice", "role": "read"}))
        .await;
    let r = s
        .http
        .post(s.url(&format!("/api/v1/approvals/{approval}")))
        .bearer_auth(alice["token"].as_str().unwrap())
        .json(&json!({"approve": true, "comment": "ship it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done = s.wait_run(run_id, Duration::from_secs(20)).await;
    assert_eq!(done["run"]["conclusion"], "success", "{done:#}");
    let audit = s.get("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "approval.approve" && e["actor"] == "alice")
    );
    let deployments = s.get("/api/v1/deployments").await;
    assert_eq!(deployments[0]["environment"], "prod");
    assert_eq!(deployments[0]["status"], "success");
}

#[tokio::test]
async fn cancel_in_progress_kills_the_older_run() {
    let pids = tempfile::tempdir().unwrap();
    let wf = format!(
        "on: push\nconcurrency:\n  group: deploy-${{{{ github.ref }}}}\n  cancel-in-progress: true\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo $$ > {}/$GITHUB_RUN_ID; sleep 60\n",
        pids.path().display()
    );
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", &wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "first").await;
    let first = v["runs"][0].as_i64().unwrap();
    let pid_file = pids.path().join(first.to_string());
    wait_until(
        "the first run's step to start",
        Duration::from_secs(20),
        async || pid_file.exists(),
    )
    .await;
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(alive(&pid));
    let (_, v) = s.push("acme/app", repo.path(), &sha, "second").await;
    let second = v["runs"][0].as_i64().unwrap();
    let r = s.wait_run(first, Duration::from_secs(20)).await;
    assert_eq!(r["run"]["conclusion"], "cancelled", "{r:#}");
    wait_until(
        "the cancelled step's process to die",
        Duration::from_secs(10),
        async || !alive(&pid),
    )
    .await;
    // The newer run goes ahead; cancelling it through the API reaches its process too.
    let pid2_file = pids.path().join(second.to_string());
    wait_until(
        "the second run to start",
        Duration::from_secs(20),
        async || pid2_file.exists(),
    )
    .await;
    let pid2 = std::fs::read_to_string(&pid2_file).unwrap();
    let (code, _) = s
        .post(&format!("/api/v1/runs/{second}/cancel"), json!({}))
        .await;
    assert_eq!(code, 202);
    let r = s.wait_run(second, Duration::from_secs(20)).await;
    assert_eq!(r["run"]["conclusion"], "cancelled");
    wait_until(
        "the second step's process to die",
        Duration::from_secs(10),
        async || !alive(&pid2),
    )
    .await;
}

#[tokio::test]
async fn rerun_failed_jobs_only_and_single_jobs() {
    let flag = tempfile::tempdir().unwrap();
    let wf = format!(
        "on: push\njobs:\n  ok:\n    runs-on: ubuntu-latest\n    steps: [{{run: echo fine}}]\n  flaky:\n    runs-on: ubuntu-latest\n    steps: [{{run: 'test -e {}/pass'}}]\n  after:\n    needs: flaky\n    runs-on: ubuntu-latest\n    steps: [{{run: echo after}}]\n",
        flag.path().display()
    );
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", &wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let r = s.wait_run(run_id, Duration::from_secs(30)).await;
    assert_eq!(r["run"]["conclusion"], "failure");
    let job = |r: &Value, key: &str| {
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(job(&r, "after")["conclusion"], "skipped");
    let ok_finished = job(&r, "ok")["finished_at"].clone();
    std::fs::write(flag.path().join("pass"), "").unwrap();
    let (code, v) = s
        .post(
            &format!("/api/v1/runs/{run_id}/rerun"),
            json!({"jobs": "failed"}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(
        v["jobs"].as_array().unwrap().len(),
        2,
        "flaky and the job that needs it: {v}"
    );
    let r = s.wait_run(run_id, Duration::from_secs(30)).await;
    assert_eq!(r["run"]["conclusion"], "success", "{r:#}");
    assert_eq!(r["run"]["attempt"], 2);
    assert_eq!(
        job(&r, "ok")["finished_at"],
        ok_finished,
        "the successful job was not re-run"
    );
    // A single job.
    let ok_id = job(&r, "ok")["id"].as_i64().unwrap();
    let (code, v) = s
        .post(
            &format!("/api/v1/runs/{run_id}/rerun"),
            json!({"jobs": ok_id}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["jobs"], json!([ok_id]));
    let r = s.wait_run(run_id, Duration::from_secs(30)).await;
    assert_eq!(r["run"]["attempt"], 3);
    assert_ne!(job(&r, "ok")["finished_at"], ok_finished);
}

#[tokio::test]
async fn dispatch_checks_typed_inputs() {
    let wf = "on:\n  workflow_dispatch:\n    inputs:\n      count: {type: number, required: true}\n      level: {type: choice, options: [low, high], default: low}\njobs:\n  show:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo count=${{ inputs.count }} level=${{ inputs.level }}'}]\n";
    let (repo, _sha) = repo_with(&[(".github/workflows/manual.yml", wf)]);
    let s = start().await;
    let id = s.register("acme/app", repo.path()).await;
    let listed = s.get(&format!("/api/v1/repos/{id}/workflows")).await;
    assert_eq!(
        listed["workflows"][0]["path"],
        ".github/workflows/manual.yml"
    );
    assert_eq!(
        listed["workflows"][0]["dispatch_inputs"]["level"]["options"],
        json!(["low", "high"])
    );
    let (code, v) = s
        .post(
            &format!("/api/v1/repos/{id}/dispatch"),
            json!({"workflow": "manual.yml", "inputs": {"count": "many"}}),
        )
        .await;
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("number"), "{v}");
    let (code, v) = s
        .post(
            &format!("/api/v1/repos/{id}/dispatch"),
            json!({"workflow": "manual.yml", "inputs": {}}),
        )
        .await;
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("required"), "{v}");
    let (code, v) = s.post(&format!("/api/v1/repos/{id}/dispatch"), json!({"workflow": "manual.yml", "ref": "main", "inputs": {"count": 3, "level": "high"}})).await;
    assert_eq!(code, 201, "{v}");
    let r = s
        .wait_run(v["run"].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(r["run"]["event"], "workflow_dispatch");
    let log = s
        .get_text(&format!("/api/v1/jobs/{}/logs/raw", r["jobs"][0]["id"]))
        .await;
    assert!(log.contains("count=3 level=high"), "{log}");
}

#[tokio::test]
async fn a_waiting_job_says_why() {
    let wf = "on: push\njobs:\n  gpu:\n    runs-on: [self-hosted, gpu]\n    steps: [{run: 'true'}]\n  later:\n    needs: gpu\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    // Give the embedded agent a poll so it is known.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(r["jobs"][0]["status"], "queued");
    assert_eq!(
        r["jobs"][0]["waiting_reason"],
        "no connected agent has the labels [self-hosted, gpu]"
    );
    assert_eq!(
        r["jobs"][1]["waiting_reason"],
        "waiting for needed jobs: gpu"
    );
    let metrics = s.get_text("/metrics").await;
    assert!(metrics.contains("hangar_queue_depth 1"), "{metrics}");
    assert!(metrics.contains("hangar_agents_connected 1"), "{metrics}");
}

#[tokio::test]
async fn gitlab_and_gitea_webhooks() {
    let wf = "on:\n  push:\n    branches: [main]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo ok}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("group/app", repo.path()).await;
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/main", "before": "0", "after": sha, "checkout_sha": sha,
        "project": {"path_with_namespace": "group/app", "git_http_url": repo.path().to_string_lossy()}
    }))
    .unwrap();
    let send = |token: &'static str, id: &'static str| {
        s.http
            .post(s.url("/hooks/gitlab"))
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-token", token)
            .header("x-gitlab-event-uuid", id)
            .body(body.clone())
            .send()
    };
    assert_eq!(send("wrong", "g1").await.unwrap().status(), 401);
    assert_eq!(send(SECRET, "g1").await.unwrap().status(), 202);
    // Gitea signs the hex HMAC without a prefix.
    let gbody = push_body("group/app", repo.path(), &sha);
    let sig = sign(&gbody);
    let r = s
        .http
        .post(s.url("/hooks/gitea"))
        .header("x-gitea-event", "push")
        .header("x-gitea-delivery", "t1")
        .header("x-gitea-signature", sig.trim_start_matches("sha256="))
        .body(gbody)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // A push to another branch is filtered out: recorded, nothing queued.
    let other = serde_json::to_vec(
        &json!({"ref": "refs/heads/dev", "after": sha, "repository": {"full_name": "group/app"}}),
    )
    .unwrap();
    let (code, v) = s
        .hook("github", &other, &sign(&other), "dev-1", "push")
        .await;
    assert_eq!(code, 202);
    assert_eq!(v["runs"], json!([]));
    assert_eq!(s.runs().await.len(), 2);
}

#[tokio::test]
async fn schedule_ticks_queue_once_per_minute() {
    let wf = "on:\n  schedule:\n    - cron: '*/5 * * * *'\njobs:\n  nightly:\n    runs-on: ubuntu-latest\n    steps: [{run: echo tick}]\n";
    let (repo, _sha) = repo_with(&[(".github/workflows/nightly.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let app = &s.server.app;
    // 2024-01-01T00:05:00Z matches, 00:06 does not.
    assert_eq!(
        hangar_server::triggers::tick(app, 1_704_067_500)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        hangar_server::triggers::tick(app, 1_704_067_500)
            .await
            .unwrap(),
        0,
        "a tick is never run twice"
    );
    assert_eq!(
        hangar_server::triggers::tick(app, 1_704_067_560)
            .await
            .unwrap(),
        0
    );
    let runs = s.runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["event"], "schedule");
    let r = s
        .wait_run(runs[0]["id"].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(r["run"]["conclusion"], "success");
}

/// A schedule entry's `timezone:` is read on that zone's wall clock, through
/// the tick the server's minute timer drives: New York's 05:30 is 10:30Z in
/// winter and 09:30Z in summer, Kolkata's is the previous day's 00:00Z, and
/// a time the spring-forward skips fires at the change. Two zones with the
/// same offset are two entries, so both run; `github.event.schedule` stays
/// the cron as written, as in GitHub's payload.
#[tokio::test]
async fn schedules_fire_on_the_wall_clock_of_their_time_zone() {
    let weekdays = concat!(
        "on:\n",
        "  schedule:\n",
        "    - cron: '30 5 * * 1-5'\n",
        "      timezone: America/New_York\n",
        "    - cron: '30 5 * * 1-5'\n",
        "      timezone: America/Toronto\n",
        "    - cron: '30 5 * * 1-5'\n",
        "      timezone: Asia/Kolkata\n",
        "    - cron: '30 5 * * 1-5'\n",
        "jobs:\n",
        "  nightly:\n",
        "    runs-on: ubuntu-latest\n",
        "    steps: [{run: 'echo \"schedule=${{ github.event.schedule }}\"'}]\n",
    );
    let gap = "on:\n  schedule:\n    - cron: '30 2 * * *'\n      timezone: America/New_York\njobs:\n  gap:\n    runs-on: ubuntu-latest\n    steps: [{run: echo gap}]\n";
    let (repo, _sha) = repo_with(&[
        (".github/workflows/weekdays.yml", weekdays),
        (".github/workflows/gap.yml", gap),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let app = &s.server.app;
    let at = |rfc3339: &str| {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp()
    };
    for (minute, queued, what) in [
        ("2024-01-08T10:30:00Z", 2, "05:30 EST: New York and Toronto"),
        (
            "2024-01-08T05:30:00Z",
            1,
            "05:30 UTC: the entry without a zone",
        ),
        ("2024-01-08T00:00:00Z", 1, "05:30 IST: Kolkata"),
        ("2024-07-08T09:30:00Z", 2, "05:30 EDT"),
        ("2024-07-08T10:30:00Z", 0, "06:30 EDT"),
        (
            "2024-03-10T07:00:00Z",
            1,
            "02:30 skipped: fired at 03:00 EDT",
        ),
        ("2024-03-10T07:30:00Z", 0, "03:30 EDT"),
        ("2024-03-11T06:30:00Z", 1, "02:30 EDT the next night"),
    ] {
        assert_eq!(
            hangar_server::triggers::tick(app, at(minute))
                .await
                .unwrap(),
            queued,
            "{minute}: {what}"
        );
    }
    assert_eq!(
        hangar_server::triggers::tick(app, at("2024-01-08T10:30:00Z"))
            .await
            .unwrap(),
        0,
        "a tick is never run twice"
    );
    let runs = s.runs().await;
    assert_eq!(runs.len(), 8);
    assert!(runs.iter().all(|r| r["event"] == "schedule"));
    let nightly = runs
        .iter()
        .find(|r| r["workflow_path"] == ".github/workflows/weekdays.yml")
        .unwrap();
    let r = s
        .wait_run(nightly["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(r["run"]["conclusion"], "success");
    let job = r["jobs"][0]["id"].as_i64().unwrap();
    let log = s.get_text(&format!("/api/v1/jobs/{job}/logs/raw")).await;
    assert!(log.contains("schedule=30 5 * * 1-5"), "{log}");
}

#[tokio::test]
async fn idle_agents_do_not_write_to_the_store() {
    let s = start_with(|c| c.embedded_capacity = 0).await;
    // An agent that re-polls every 50 ms with nothing to do.
    let agent = hangar_agent::AgentConfig {
        server: s.server.url(),
        token: s.server.app.internal_token.clone(),
        id: "agent-idle".into(),
        name: "idle".into(),
        labels: vec!["linux".into()],
        capacity: 2,
        work_dir: s.data.path().join("idle-work"),
        poll_wait: Duration::from_millis(50),
    };
    let stop = hangar_agent::CancellationToken::new();
    let task = tokio::spawn(hangar_agent::run_agent(
        agent,
        std::sync::Arc::new(hangar_agent::EngineRunner::default()),
        stop.clone(),
    ));
    // The first poll registers the agent (one write); after that, polls only read.
    wait_until(
        "the agent to register",
        Duration::from_secs(10),
        async || {
            s.get("/api/v1/agents")
                .await
                .as_array()
                .map(|a| !a.is_empty())
                .unwrap_or(false)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let wal = s.data.path().join("hangar.db-wal");
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let (db_before, wal_before) = (size(&s.data.path().join("hangar.db")), size(&wal));
    tokio::time::sleep(Duration::from_millis(1500)).await; // ~30 polls
    assert_eq!(size(&wal), wal_before, "idle polls wrote to the WAL");
    assert_eq!(size(&s.data.path().join("hangar.db")), db_before);
    stop.cancel();
    let _ = task.await;
}

#[tokio::test]
async fn artifacts_pass_between_jobs_through_the_server() {
    let wf = "on: push\njobs:\n  make:\n    runs-on: ubuntu-latest\n    steps:\n      - run: mkdir -p out && echo artifact-body-42 > out/report.txt\n      - uses: actions/upload-artifact@v4\n        with: {name: report, path: out}\n  use:\n    needs: make\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/download-artifact@v4\n        with: {name: report, path: got}\n      - run: cat got/report.txt\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let r = s.wait_run(run_id, Duration::from_secs(30)).await;
    let use_job = r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "use")
        .unwrap()["id"]
        .clone();
    let log = s
        .get_text(&format!("/api/v1/jobs/{use_job}/logs/raw"))
        .await;
    assert_eq!(r["run"]["conclusion"], "success", "{r:#}\n{log}");
    assert!(log.contains("artifact-body-42"), "{log}");
    assert_eq!(r["artifacts"][0]["name"], "report");
    let tar = s
        .http
        .get(s.url(&format!("/api/v1/runs/{run_id}/artifacts/report")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        tar.windows(10).any(|w| w == b"report.txt"),
        "the download is a tar of the artifact"
    );
}

#[tokio::test]
async fn job_if_conditions_use_needs_results() {
    let wf = "on: push\njobs:\n  bad:\n    runs-on: ubuntu-latest\n    steps: [{run: 'exit 1'}]\n  cleanup:\n    needs: bad\n    if: always()\n    runs-on: ubuntu-latest\n    steps: [{run: echo cleaning}]\n  on-failure:\n    needs: bad\n    if: failure()\n    runs-on: ubuntu-latest\n    steps: [{run: echo reporting}]\n  next:\n    needs: bad\n    runs-on: ubuntu-latest\n    steps: [{run: echo never}]\n  only-tags:\n    if: startsWith(github.ref, 'refs/tags/')\n    runs-on: ubuntu-latest\n    steps: [{run: echo tag}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let r = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    let c = |key: &str| {
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .unwrap()["conclusion"]
            .clone()
    };
    assert_eq!(c("bad"), "failure");
    assert_eq!(c("cleanup"), "success", "{r:#}");
    assert_eq!(c("on-failure"), "success");
    assert_eq!(c("next"), "skipped");
    assert_eq!(c("only-tags"), "skipped");
    assert_eq!(r["run"]["conclusion"], "failure");
}

#[tokio::test]
async fn pull_request_types_and_branches() {
    let wf = "on:\n  pull_request:\n    types: [opened, synchronize]\n    branches: [main]\njobs:\n  check:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo pr ${{ github.event.pull_request.number }} $GITHUB_REF'}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/pr.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let pr = |action: &str, base: &str| {
        serde_json::to_vec(&json!({
            "action": action, "number": 7,
            "pull_request": {"number": 7, "head": {"sha": sha, "ref": "feature", "repo": {"full_name": "acme/app"}}, "base": {"ref": base}},
            "repository": {"full_name": "acme/app", "clone_url": repo.path().to_string_lossy()},
            "sender": {"login": "dev"}
        }))
        .unwrap()
    };
    let body = pr("opened", "main");
    let (code, v) = s
        .hook("github", &body, &sign(&body), "pr-1", "pull_request")
        .await;
    assert_eq!(code, 202);
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(run["run"]["event"], "pull_request");
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let log = s
        .get_text(&format!("/api/v1/jobs/{}/logs/raw", run["jobs"][0]["id"]))
        .await;
    assert!(log.contains("pr 7"), "{log}");
    for (id, action, base) in [("pr-2", "closed", "main"), ("pr-3", "opened", "release")] {
        let body = pr(action, base);
        let (code, v) = s
            .hook("github", &body, &sign(&body), id, "pull_request")
            .await;
        assert_eq!(code, 202);
        assert_eq!(v["runs"], json!([]), "{action} into {base} is filtered out");
    }
    // A ping is recorded and ignored.
    let ping = br#"{"zen": "hi", "repository": {"full_name": "acme/app"}}"#;
    let (code, v) = s.hook("github", ping, &sign(ping), "ping-1", "ping").await;
    assert_eq!(code, 202);
    assert_eq!(v["ignored"], "ping");
}

/// `pull_request_target` is chosen as GitHub chooses it: its `types` (here
/// `closed` and `labeled`, none of the defaults), its `branches` matched
/// against the pull request's BASE branch, and its `paths` against the files
/// the pull request changes (its head since it left the base). A run's ref is
/// the base branch.
#[tokio::test]
async fn pull_request_target_types_base_branches_and_paths() {
    let wf = "on:\n  pull_request_target:\n    types: [closed, labeled]\n    branches: [main]\n    paths: ['src/**']\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo target $GITHUB_REF'}]\n";
    let (repo, base) = repo_with(&[
        (".github/workflows/target.yml", wf),
        ("src/a.txt", "1\n"),
        ("docs/a.md", "1\n"),
    ]);
    git(repo.path(), &["branch", "release"]);
    git(repo.path(), &["checkout", "-q", "-b", "feature"]);
    let src = commit(repo.path(), &[("src/a.txt", "2\n")]).unwrap();
    git(repo.path(), &["checkout", "-q", "-b", "docs", "main"]);
    let docs = commit(repo.path(), &[("docs/a.md", "2\n")]).unwrap();
    git(repo.path(), &["checkout", "-q", "main"]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let pr = |action: &str, base_ref: &str, head: &str| {
        serde_json::to_vec(&json!({
            "action": action, "number": 9,
            "pull_request": {"number": 9, "head": {"sha": head, "ref": "feature", "repo": {"full_name": "acme/app"}},
                             "base": {"sha": base, "ref": base_ref}},
            "repository": {"full_name": "acme/app"},
            "sender": {"login": "dev"}
        }))
        .unwrap()
    };
    let mut runs = vec![];
    for (n, (action, base_ref, head, expected)) in [
        ("closed", "main", &src, 1),
        ("labeled", "main", &src, 1),
        ("opened", "main", &src, 0),
        ("synchronize", "main", &src, 0),
        ("closed", "release", &src, 0),
        ("closed", "main", &docs, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let body = pr(action, base_ref, head);
        let (code, v) = s
            .hook(
                "github",
                &body,
                &sign(&body),
                &format!("t-{n}"),
                "pull_request",
            )
            .await;
        assert_eq!(code, 202, "{v}");
        let got = v["runs"].as_array().unwrap();
        assert_eq!(
            got.len(),
            expected,
            "{action} into {base_ref} changing {}: {v}",
            if head == &src { "src" } else { "docs" }
        );
        runs.extend(got.iter().map(|r| r.as_i64().unwrap()));
    }
    for id in runs {
        let run = s.wait_run(id, Duration::from_secs(30)).await;
        assert_eq!(run["run"]["event"], "pull_request_target", "{run:#}");
        assert_eq!(run["run"]["git_ref"], "refs/heads/main", "{run:#}");
        assert_eq!(run["run"]["sha"], base.as_str(), "{run:#}");
        assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
        let log = s
            .get_text(&format!("/api/v1/jobs/{}/logs/raw", run["jobs"][0]["id"]))
            .await;
        assert!(log.contains("target refs/heads/main"), "{log}");
    }
}

#[tokio::test]
async fn job_level_concurrency_serialises_jobs_across_runs() {
    let gate = tempfile::tempdir().unwrap();
    let wf = format!(
        "on: push\njobs:\n  deploy:\n    concurrency: deploy-${{{{ github.ref }}}}\n    runs-on: ubuntu-latest\n    steps:\n      - run: while [ ! -e {}/go-$GITHUB_RUN_ID ]; do sleep 0.05; done\n",
        gate.path().display()
    );
    let (repo, sha) = repo_with(&[(".github/workflows/cd.yml", &wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v1) = s.push("acme/app", repo.path(), &sha, "c1").await;
    let first = v1["runs"][0].as_i64().unwrap();
    wait_until(
        "the first deploy to run",
        Duration::from_secs(20),
        async || s.get(&format!("/api/v1/runs/{first}")).await["jobs"][0]["status"] == "running",
    )
    .await;
    let (_, v2) = s.push("acme/app", repo.path(), &sha, "c2").await;
    let second = v2["runs"][0].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r2 = s.get(&format!("/api/v1/runs/{second}")).await;
    assert_eq!(r2["jobs"][0]["status"], "waiting", "{r2:#}");
    assert!(
        r2["jobs"][0]["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("deploy-refs/heads/main"),
        "{r2:#}"
    );
    // The first finishes; the second takes the group.
    std::fs::write(gate.path().join(format!("go-{first}")), "").unwrap();
    std::fs::write(gate.path().join(format!("go-{second}")), "").unwrap();
    assert_eq!(
        s.wait_run(first, Duration::from_secs(20)).await["run"]["conclusion"],
        "success"
    );
    assert_eq!(
        s.wait_run(second, Duration::from_secs(20)).await["run"]["conclusion"],
        "success"
    );
}

#[tokio::test]
async fn matrix_from_needed_outputs_expands_when_ready() {
    let wf = "on: push\njobs:\n  setup:\n    runs-on: ubuntu-latest\n    outputs:\n      list: ${{ steps.s.outputs.list }}\n    steps:\n      - id: s\n        run: echo 'list=[\"a\",\"b\",\"c\"]' >> $GITHUB_OUTPUT\n  build:\n    needs: setup\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        x: ${{ fromJSON(needs.setup.outputs.list) }}\n    steps:\n      - run: echo leg=${{ matrix.x }}\n  after:\n    needs: build\n    runs-on: ubuntu-latest\n    steps: [{run: echo all legs done}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let r = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(r["run"]["conclusion"], "success", "{r:#}");
    let jobs = r["jobs"].as_array().unwrap();
    let mut legs: Vec<String> = jobs
        .iter()
        .filter(|j| j["key"] == "build")
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    legs.sort();
    assert_eq!(legs, vec!["build (a)", "build (b)", "build (c)"]);
    for j in jobs.iter().filter(|j| j["key"] == "build") {
        let log = s
            .get_text(&format!("/api/v1/jobs/{}/logs/raw", j["id"]))
            .await;
        let leg = j["name"]
            .as_str()
            .unwrap()
            .trim_start_matches("build (")
            .trim_end_matches(')');
        assert!(log.contains(&format!("leg={leg}")), "{log}");
    }
    let after = jobs.iter().find(|j| j["key"] == "after").unwrap();
    assert_eq!(after["conclusion"], "success");
}

#[tokio::test]
async fn environment_wait_timer_and_branch_rules() {
    let hangar_yml = "environments:\n  staging:\n    protection:\n      wait: 1\n  prod:\n    protection:\n      branches: [release/*]\n";
    let wf = "on: push\njobs:\n  stage:\n    environment: staging\n    runs-on: ubuntu-latest\n    steps: [{run: echo staged}]\n  ship:\n    environment: {name: prod}\n    runs-on: ubuntu-latest\n    steps: [{run: echo shipped}]\n";
    let (repo, sha) = repo_with(&[("hangar.yml", hangar_yml), (".github/workflows/cd.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let started = Instant::now();
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let r = s.get(&format!("/api/v1/runs/{run_id}")).await;
    let job = |r: &Value, key: &str| {
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .unwrap()
            .clone()
    };
    assert!(
        job(&r, "stage")["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("wait timer"),
        "{r:#}"
    );
    let r = s.wait_run(run_id, Duration::from_secs(30)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the wait timer held the job"
    );
    assert_eq!(job(&r, "stage")["conclusion"], "success");
    assert_eq!(job(&r, "ship")["conclusion"], "failure");
    assert!(
        job(&r, "ship")["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("may not deploy"),
        "{r:#}"
    );
}

#[tokio::test]
async fn dora_keys_on_metrics_for_workflow_and_delivery_environments() {
    let wf = "on: push\njobs:\n  ship:\n    runs-on: ubuntu-latest\n    environment: prod\n    steps: [{run: 'test \"$(cat STATE)\" = ok'}]\n";
    let (repo, sha1) = repo_with(&[(".github/workflows/cd.yml", wf), ("STATE", "bad")]);
    // A project `hangar deploy` manages, watched by the server, with a history:
    // one good deployment, one rolled back by itself after 40 s.
    let (project, _) = repo_with(&[("README", "shop")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let env_dir = project.path().join(".hangar/envs/staging");
    std::fs::create_dir_all(&env_dir).unwrap();
    let record = |id: u64, outcome: &str, started: u64| {
        json!({
            "id": id, "env": "staging", "service": "web", "version": format!("v{id}"),
            "previous": null, "strategy": "canary", "commit": "abc", "commit_time": started - 600,
            "started": started, "finished": started + 40, "outcome": outcome,
            "rollback_from": null, "events": []
        })
        .to_string()
    };
    std::fs::write(
        env_dir.join("history.jsonl"),
        format!(
            "{}\n{}\n",
            record(1, "succeeded", now - 7200),
            record(2, "rolled-back", now - 3600)
        ),
    )
    .unwrap();
    let s = start_with(|cfg| cfg.watch = vec![project.path().to_path_buf()]).await;
    s.register("acme/app", repo.path()).await;

    let (_, v) = s.push("acme/app", repo.path(), &sha1, "d1").await;
    let r = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(r["run"]["conclusion"], "failure", "{r}");
    let sha2 = commit(repo.path(), &[("STATE", "ok")]).unwrap();
    let (_, v) = s.push("acme/app", repo.path(), &sha2, "d2").await;
    let r = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(r["run"]["conclusion"], "success", "{r}");

    let metrics = s.get_text("/metrics").await;
    let name = project
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    for expected in [
        "hangar_dora_deployments{source=\"workflow\",env=\"prod\",window_days=\"30\"} 2\n".to_string(),
        "hangar_dora_change_failure_ratio{source=\"workflow\",env=\"prod\",window_days=\"30\"} 0.5\n".to_string(),
        "hangar_dora_recovery_time_seconds{source=\"workflow\",env=\"prod\"".to_string(),
        format!("hangar_dora_deployments{{source=\"{name}\",env=\"staging\",window_days=\"30\"}} 2\n"),
        format!("hangar_dora_change_failure_ratio{{source=\"{name}\",env=\"staging\",window_days=\"30\"}} 0.5\n"),
        format!("hangar_dora_recovery_time_seconds{{source=\"{name}\",env=\"staging\",window_days=\"30\"}} 40\n"),
        format!("hangar_dora_lead_time_seconds{{source=\"{name}\",env=\"staging\",window_days=\"30\"}} 640\n"),
    ] {
        assert!(metrics.contains(&expected), "missing {expected} in\n{metrics}");
    }
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
}

/// A deployment record as an environment's controller writes it.
fn history_line(env: &str, id: u64, outcome: &str, started: u64) -> String {
    json!({
        "id": id, "env": env, "service": "web", "version": format!("v{id}"),
        "previous": null, "strategy": "canary", "commit": "abc", "commit_time": started - 600,
        "started": started, "finished": started + 40, "outcome": outcome,
        "rollback_from": null, "events": [format!("deployment {id}")]
    })
    .to_string()
        + "\n"
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `/metrics` and the delivery API read deployments from the store: the
/// history a controller journals is read in at start-up, a deployment the
/// CLI appends later shows up after the periodic check, and once the
/// project's folder is deleted (a workspace cleanup) every deployment still
/// counts and is still listed. Reading the files per scrape would show
/// nothing after the deletion.
#[tokio::test]
async fn delivery_metrics_and_history_read_the_store_not_the_history_files() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("shop");
    std::fs::create_dir(&project).unwrap();
    hangar_testkit::git(&project, &["init", "-q", "-b", "main"]);
    hangar_testkit::commit(&project, &[("README", "shop")]);
    let project = std::fs::canonicalize(&project).unwrap();
    let env_dir = project.join(".hangar/envs/staging");
    std::fs::create_dir_all(&env_dir).unwrap();
    let now = unix_now();
    let history = env_dir.join("history.jsonl");
    std::fs::write(
        &history,
        history_line("staging", 1, "succeeded", now - 7200)
            + &history_line("staging", 2, "rolled-back", now - 3600),
    )
    .unwrap();
    let watch = vec![project.clone()];
    let s = start_with(move |cfg| cfg.watch = watch).await;
    let deployments = async |s: &TestServer| -> Option<u64> {
        let metrics = s.get_text("/metrics").await;
        metrics
            .lines()
            .find(|l| {
                l.starts_with(
                    "hangar_dora_deployments{source=\"shop\",env=\"staging\",window_days=\"30\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(deployments(&s).await, Some(2), "read in at start-up");

    // A deployment made with the CLI directly (no server): the controller
    // appends it to the history; the periodic check reads it in.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&history)
        .unwrap()
        .write_all(history_line("staging", 3, "succeeded", now - 60).as_bytes())
        .unwrap();
    wait_until(
        "the CLI's deployment to be read in",
        Duration::from_secs(10),
        async || deployments(&s).await == Some(3),
    )
    .await;
    let id = hangar_deploy::client::project_id(&project);
    let env = s.get(&format!("/api/v1/delivery/{id}/staging")).await;
    assert_eq!(env["project"], "shop");
    assert_eq!(env["project_id"], id.as_str());
    let ids: Vec<u64> = env["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 2, 1], "newest first: {env:#}");

    // The workspace is cleaned up: nothing of the project is left on disk.
    std::fs::remove_dir_all(&project).unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            deployments(&s).await,
            Some(3),
            "no history file is read per scrape, and a deleted folder's deployments still count"
        );
    }
    let metrics = s.get_text("/metrics").await;
    assert!(
        metrics.contains(
            "hangar_dora_change_failure_ratio{source=\"shop\",env=\"staging\",window_days=\"30\"} 0.3333333333333333\n"
        ),
        "{metrics}"
    );
    let env = s.get("/api/v1/delivery/shop/staging").await;
    assert_eq!(env["history"].as_array().unwrap().len(), 3, "{env:#}");
    s.server.stop().await;
}

/// Two watched projects that share a folder name are addressed by their
/// ids; the folder name alone answers 409 naming both (it used to reach
/// whichever was watched first), and each keeps its own history and DORA
/// series.
#[tokio::test]
async fn two_watched_projects_of_one_folder_name_are_addressed_by_id() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let now = unix_now();
    let mut dirs = Vec::new();
    for (root, records) in [(&a, 1), (&b, 2)] {
        let dir = root.path().join("web");
        std::fs::create_dir(&dir).unwrap();
        hangar_testkit::git(&dir, &["init", "-q", "-b", "main"]);
        hangar_testkit::commit(&dir, &[("README", "web")]);
        let dir = std::fs::canonicalize(&dir).unwrap();
        let env_dir = dir.join(".hangar/envs/prod");
        std::fs::create_dir_all(&env_dir).unwrap();
        let lines: String = (1..=records)
            .map(|id| history_line("prod", id, "succeeded", now - 100 * id))
            .collect();
        std::fs::write(env_dir.join("history.jsonl"), lines).unwrap();
        dirs.push(dir);
    }
    let watch = dirs.clone();
    let s = start_with(move |cfg| cfg.watch = watch).await;
    let ids: Vec<String> = dirs
        .iter()
        .map(|d| hangar_deploy::client::project_id(d))
        .collect();
    assert_ne!(ids[0], ids[1]);

    for (method, body) in [("GET", None), ("POST", Some(json!({"op": "status"})))] {
        let mut req = s
            .http
            .request(method.parse().unwrap(), s.url("/api/v1/delivery/web/prod"))
            .bearer_auth(&s.token);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 409, "{method}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "ambiguous_project", "{v:#}");
        let candidates: Vec<&str> = v["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(candidates.len(), 2, "{v:#}");
        for id in &ids {
            assert!(candidates.contains(&id.as_str()), "{v:#}");
            assert!(v["error"].as_str().unwrap().contains(id.as_str()), "{v:#}");
        }
    }
    for (id, n) in ids.iter().zip([1, 2]) {
        let env = s.get(&format!("/api/v1/delivery/{id}/prod")).await;
        assert_eq!(env["project_id"], id.as_str());
        assert_eq!(env["history"].as_array().unwrap().len(), n, "{env:#}");
    }
    let all = s.get("/api/v1/delivery").await;
    let mut seen: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["project_id"].as_str().unwrap())
        .collect();
    seen.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want);
    let metrics = s.get_text("/metrics").await;
    for (id, n) in ids.iter().zip([1, 2]) {
        let line = format!(
            "hangar_dora_deployments{{source=\"web-{}\",env=\"prod\",window_days=\"30\"}} {n}\n",
            &id[..8]
        );
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
    s.server.stop().await;
}

/// A job after a skipped job is skipped too, at once: the run completes.
#[tokio::test]
async fn a_chain_after_a_failed_job_is_skipped_and_the_run_completes() {
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: exit 1}]\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps: [{run: echo b}]\n  c:\n    needs: b\n    runs-on: ubuntu-latest\n    steps: [{run: echo c}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(run["run"]["conclusion"], "failure", "{run:#}");
    let result = |key: &str| {
        run["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .map(|j| (j["conclusion"].clone(), j["waiting_reason"].clone()))
            .unwrap()
    };
    assert_eq!(result("a").0, "failure");
    assert_eq!(result("b").0, "skipped");
    assert_eq!(result("c").0, "skipped");
    assert!(
        result("c").1.as_str().unwrap().contains("`b`"),
        "{:?}",
        result("c")
    );
}

/// A `needs` cycle is refused when the event arrives, named as validate
/// names it: no job runs, and the file's failed run says why.
#[tokio::test]
async fn a_needs_cycle_is_refused_when_the_run_would_be_created() {
    let cyclic = "on: push\njobs:\n  a:\n    needs: b\n    runs-on: ubuntu-latest\n    steps: [{run: echo a}]\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps: [{run: echo b}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/loop.yml", cyclic)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    assert_eq!(v["runs"], json!([]), "{v:#}");
    let errors = v["workflow_errors"].to_string();
    assert!(
        errors.contains("loop.yml") && errors.contains("a -> b -> a"),
        "{v:#}"
    );
    let runs = s.runs().await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = s
        .wait_run(runs[0]["id"].as_i64().unwrap(), Duration::from_secs(10))
        .await;
    assert_eq!(run["run"]["workflow_name"], ".github/workflows/loop.yml");
    assert_eq!(run["run"]["conclusion"], "failure");
    assert_eq!(run["jobs"], json!([]));
    assert!(run["errors"].to_string().contains("a -> b -> a"), "{run:#}");
}

/// Cancelling a run settles its pending approval; deciding it later is a 409.
#[tokio::test]
async fn cancelling_a_run_settles_its_pending_approval() {
    let hangar_yml = "environments:\n  prod:\n    protection:\n      reviewers: [alice]\n";
    let wf = "on: push\njobs:\n  deploy:\n    environment: prod\n    runs-on: ubuntu-latest\n    steps: [{run: echo deployed}]\n";
    let (repo, sha) = repo_with(&[("hangar.yml", hangar_yml), (".github/workflows/cd.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    wait_until(
        "the approval to be asked",
        Duration::from_secs(20),
        async || !s.get("/api/v1/approvals").await[0]["id"].is_null(),
    )
    .await;
    let approval = s.get("/api/v1/approvals").await[0]["id"].as_i64().unwrap();
    let (code, _) = s
        .post(&format!("/api/v1/runs/{run_id}/cancel"), json!({}))
        .await;
    assert_eq!(code, 202);
    let run = s.wait_run(run_id, Duration::from_secs(20)).await;
    assert_eq!(run["run"]["conclusion"], "cancelled", "{run:#}");
    assert_eq!(s.get("/api/v1/approvals").await, json!([]), "none pending");
    let all = s.get("/api/v1/approvals?pending=false").await;
    assert_eq!(all[0]["state"], "cancelled", "{all:#}");
    let (code, body) = s
        .post(
            &format!("/api/v1/approvals/{approval}"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(code, 409, "{body:#}");
    assert!(
        body["error"].as_str().unwrap().contains("cancelled"),
        "{body:#}"
    );
    let after = s.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(after["jobs"][0]["conclusion"], "cancelled", "{after:#}");
}

/// POSTs as an agent with `token` and the lease's key (`""` before a lease);
/// returns status and JSON body.
async fn as_agent(s: &TestServer, token: &str, key: &str, path: &str, body: Value) -> (u16, Value) {
    let r = s
        .http
        .post(s.url(path))
        .bearer_auth(token)
        .header("x-hangar-lease", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// A job retried after its agent was lost keeps each attempt's logs and
/// steps: the second attempt's chunk 0 is stored, not dropped as a duplicate.
#[tokio::test]
async fn a_retried_job_keeps_each_attempts_logs_and_steps() {
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo hi}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start_with(|c| {
        c.embedded_capacity = 0;
        c.lease = Duration::from_millis(400);
        c.reap_every = Duration::from_millis(100);
        c.max_attempts = 2;
    })
    .await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let (_, t) = s
        .post("/api/v1/tokens", json!({"name": "runner", "role": "agent"}))
        .await;
    let agent = s.agent_credential(t["token"].as_str().unwrap(), "a1").await;
    let poll = json!({"protocol_version": hangar_agent::PROTOCOL_VERSION, "agent_id": "a1", "name": "a1", "labels": ["ubuntu-latest"],
        "capacity": 1, "free_slots": 1, "wait_ms": 0});
    let mut leases = Vec::new();
    for text in ["attempt one\n", "attempt two\n"] {
        let start = Instant::now();
        let lease = loop {
            let (code, a) = as_agent(&s, &agent, "", "/api/v1/agent/poll", poll.clone()).await;
            if code == 200 {
                break a;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no job leased");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (job, fence) = (lease["job_id"].as_i64().unwrap(), lease["fence"].clone());
        let base = format!("/api/v1/agent/jobs/{job}");
        let key = lease["lease_key"].as_str().unwrap_or_default();
        let (code, ack) = as_agent(
            &s,
            &agent,
            key,
            &format!("{base}/logs"),
            json!({"fence": fence, "chunk": 0, "first_line": 0, "text": text}),
        )
        .await;
        assert_eq!((code, &ack["stored"]), (200, &json!(true)), "{text}: {ack}");
        let (code, _) = as_agent(
            &s,
            &agent,
            key,
            &format!("{base}/steps"),
            json!({"fence": fence, "idx": 0, "name": text.trim(), "status": "completed", "conclusion": "success"}),
        )
        .await;
        assert_eq!(code, 204);
        leases.push(lease);
        // The first attempt's agent goes silent: its lease expires and the job
        // is queued again for its second attempt.
    }
    assert_eq!(leases[1]["attempt"], 2, "{:#}", leases[1]);
    let job = leases[1]["job_id"].as_i64().unwrap();
    let (code, _) = as_agent(
        &s,
        &agent,
        leases[1]["lease_key"].as_str().unwrap_or_default(),
        &format!("/api/v1/agent/jobs/{job}/complete"),
        json!({"fence": leases[1]["fence"], "conclusion": "success", "outputs": {}}),
    )
    .await;
    assert_eq!(code, 204);
    let run = s.wait_run(run_id, Duration::from_secs(10)).await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    assert_eq!(run["jobs"][0]["steps"][0]["name"], "attempt two", "{run:#}");
    let raw = format!("/api/v1/jobs/{job}/logs/raw");
    assert_eq!(s.get_text(&raw).await, "attempt two\n");
    assert_eq!(
        s.get_text(&format!("{raw}?attempt=1")).await,
        "attempt one\n"
    );
    let lines = s
        .get(&format!("/api/v1/jobs/{job}/logs?from=0&attempt=1"))
        .await;
    assert_eq!(lines["lines"][0][1], "attempt one", "{lines:#}");
    assert_eq!(run["jobs"][0]["attempts"], json!([1, 2]), "{run:#}");
}

/// A re-run is a new attempt: `github.run_attempt` counts it, a protected job
/// asks its reviewers again, and the earlier attempt's log stays readable.
#[tokio::test]
async fn a_rerun_is_a_new_attempt_that_asks_reviewers_again() {
    let hangar_yml = "environments:\n  prod:\n    protection:\n      reviewers: [alice]\n";
    let wf = "on: push\njobs:\n  deploy:\n    environment: prod\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo attempt=${{ github.run_attempt }} number=${{ github.run_number }}'}]\n";
    // A second workflow's run takes the next run id, but its own run number.
    let other = "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [{run: echo x}]\n";
    let (repo, sha) = repo_with(&[
        ("hangar.yml", hangar_yml),
        (".github/workflows/a-other.yml", other),
        (".github/workflows/cd.yml", wf),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][1].as_i64().unwrap();
    let approve = async || {
        wait_until(
            "an approval to be asked",
            Duration::from_secs(20),
            async || !s.get("/api/v1/approvals").await[0]["id"].is_null(),
        )
        .await;
        let id = s.get("/api/v1/approvals").await[0]["id"].as_i64().unwrap();
        let (code, body) = s
            .post(&format!("/api/v1/approvals/{id}"), json!({"approve": true}))
            .await;
        assert_eq!(code, 200, "{body:#}");
    };
    approve().await;
    let first = s.wait_run(run_id, Duration::from_secs(30)).await;
    assert_eq!(first["run"]["conclusion"], "success", "{first:#}");
    let job = first["jobs"][0]["id"].as_i64().unwrap();
    let log = s.get_text(&format!("/api/v1/jobs/{job}/logs/raw")).await;
    assert!(log.contains("attempt=1 number=1"), "{log}");
    assert!(run_id > 1 && first["run"]["run_number"] == 1, "{first:#}");

    let (code, body) = s
        .post(&format!("/api/v1/runs/{run_id}/rerun"), json!({}))
        .await;
    assert!(code < 300, "{code} {body:#}");
    // The approval of the first attempt does not carry over.
    wait_until(
        "the re-run to wait for a reviewer",
        Duration::from_secs(20),
        async || {
            let r = s.get(&format!("/api/v1/runs/{run_id}")).await;
            r["jobs"][0]["waiting_reason"]
                .as_str()
                .unwrap_or("")
                .contains("approval")
        },
    )
    .await;
    approve().await;
    let second = s.wait_run(run_id, Duration::from_secs(30)).await;
    assert_eq!(second["run"]["conclusion"], "success", "{second:#}");
    assert_eq!(second["run"]["attempt"], 2);
    let log = s.get_text(&format!("/api/v1/jobs/{job}/logs/raw")).await;
    assert!(log.contains("attempt=2 number=1"), "{log}");
    let earlier = s
        .get_text(&format!("/api/v1/jobs/{job}/logs/raw?attempt=1"))
        .await;
    assert!(earlier.contains("attempt=1"), "{earlier}");
    let all = s.get("/api/v1/approvals?pending=false").await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all:#}");
}

/// A job after a matrix sees the matrix's result as the scheduler decided it:
/// one failed leg fails the job, whichever leg finished last.
#[tokio::test]
async fn needs_result_of_a_matrix_is_its_legs_aggregate() {
    let wf = "on: push\njobs:\n  m:\n    strategy:\n      fail-fast: false\n      matrix:\n        code: [1, 0]\n    runs-on: ubuntu-latest\n    steps: [{run: 'exit ${{ matrix.code }}'}]\n  after:\n    needs: m\n    if: always()\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo m=${{ needs.m.result }}'}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(run["run"]["conclusion"], "failure", "{run:#}");
    let after = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "after")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let log = s.get_text(&format!("/api/v1/jobs/{after}/logs/raw")).await;
    assert!(log.contains("m=failure"), "{log}");
}

/// `github.ref_name` is the whole branch name, slashes and all, for a job's
/// `if:` on the server as under `hangar run` (the server once kept only the
/// last segment, so `feature/x` was `x`). The same workflow runs locally in
/// `crates/hangar/tests/run_cli.rs`.
#[tokio::test]
async fn a_branch_with_a_slash_is_its_whole_ref_name() {
    let wf = "on: push\njobs:\n  whole:\n    if: github.ref_name == 'feature/x'\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo ${{ github.ref_name }}'}]\n  last-segment:\n    if: github.ref_name == 'x'\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo wrong'}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let mut body: Value =
        serde_json::from_slice(&push_body("acme/app", repo.path(), &sha)).unwrap();
    body["ref"] = json!("refs/heads/feature/x");
    let body = serde_json::to_vec(&body).unwrap();
    let (code, v) = s
        .hook("github", &body, &sign(&body), "slash-1", "push")
        .await;
    assert_eq!(code, 202, "{v}");
    let r = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    let job = |key: &str| {
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(job("whole")["conclusion"], "success", "{r:#}");
    assert_eq!(job("last-segment")["conclusion"], "skipped", "{r:#}");
    let log = s
        .get_text(&format!("/api/v1/jobs/{}/logs/raw", job("whole")["id"]))
        .await;
    assert!(log.contains("feature/x"), "{log}");
}

/// An expression that fails while an agent runs the job is reported at its
/// place in the workflow file: the compiled job the agent receives carries
/// the position of every step's keys, though the agent reads no YAML.
#[tokio::test]
async fn a_run_time_expression_error_on_an_agent_names_file_line_and_column() {
    let wf = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    env:\n      BAD: '{not json'\n    steps:\n      - run: echo first\n      - name: broken\n        run: echo ${{ fromJSON(env.BAD) }}\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(run["jobs"][0]["conclusion"], "failure", "{run:#}");
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let log = s.get_text(&format!("/api/v1/jobs/{job}/logs/raw")).await;
    assert!(log.contains("first"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("::error "))
        .unwrap_or_else(|| panic!("no error annotation in {log}"));
    assert!(
        line.contains("file=.github/workflows/ci.yml,line=10,col=14"),
        "{line}"
    );
    assert!(line.contains("fromJSON"), "{line}");
}

/// Server and agent are one binary version: a poll of another protocol
/// version is refused with a 409 naming both versions, the agent's client
/// turns it into an error that stops the agent, and a poll of this version
/// gets a compiled job, not the workflow's text.
#[tokio::test]
async fn an_agent_of_another_protocol_version_is_refused_naming_both() {
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    strategy: {matrix: {n: [1]}}\n    steps: [{run: 'echo ${{ matrix.n }}'}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start_with(|c| c.embedded_capacity = 0).await;
    s.register("acme/app", repo.path()).await;
    let (_, t) = s
        .post("/api/v1/tokens", json!({"name": "runner", "role": "agent"}))
        .await;
    let agent = s.agent_credential(t["token"].as_str().unwrap(), "a1").await;
    let ours = hangar_agent::PROTOCOL_VERSION;
    let theirs = ours + 1;
    let poll = |v: Value| {
        let mut p = json!({"agent_id": "a1", "name": "a1", "labels": ["ubuntu-latest"],
            "capacity": 1, "free_slots": 1, "wait_ms": 0});
        if let Value::Object(m) = v {
            p.as_object_mut().unwrap().extend(m);
        }
        p
    };
    let (code, e) = as_agent(
        &s,
        &agent,
        "",
        "/api/v1/agent/poll",
        poll(json!({"protocol_version": theirs, "hangar_version": "9.9.9"})),
    )
    .await;
    assert_eq!(code, 409, "{e}");
    assert_eq!(e["code"], "protocol_mismatch");
    let msg = e["error"].as_str().unwrap();
    for part in [
        format!("agent protocol {theirs} (hangar 9.9.9)"),
        format!("protocol {ours} (hangar {})", hangar_agent::HANGAR_VERSION),
    ] {
        assert!(msg.contains(&part), "{msg} lacks {part}");
    }
    // An agent from before the version existed says none.
    let (code, e) = as_agent(&s, &agent, "", "/api/v1/agent/poll", poll(json!({}))).await;
    assert_eq!(code, 409, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("agent protocol 0 (an older hangar)"),
        "{e}"
    );
    // The agent's own client: a refusal is an error retrying cannot fix.
    let client = hangar_agent::Client::new(&s.server.url(), &agent).unwrap();
    let err = client
        .poll(&hangar_agent::PollRequest {
            protocol_version: theirs,
            hangar_version: "9.9.9".into(),
            agent_id: "a1".into(),
            name: "a1".into(),
            labels: vec!["ubuntu-latest".into()],
            capacity: 1,
            free_slots: 1,
            wait_ms: 0,
        })
        .await
        .unwrap_err();
    let refused = err.downcast_ref::<hangar_agent::client::Refused>();
    assert!(refused.is_some_and(|r| r.0 == msg), "{err:#}");

    // This version is leased the compiled job, and no workflow text.
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    assert!(v["runs"][0].is_i64(), "{v}");
    let start = Instant::now();
    let a = loop {
        let (code, a) = as_agent(
            &s,
            &agent,
            "",
            "/api/v1/agent/poll",
            poll(json!({"protocol_version": ours})),
        )
        .await;
        if code == 200 {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no job leased");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(a["protocol_version"], ours);
    assert!(a.get("workflow").is_none(), "{a:#}");
    let job = &a["job"];
    assert_eq!(job["workflow"]["path"], ".github/workflows/ci.yml");
    assert_eq!(job["job_id"], "a");
    assert_eq!(job["matrix"], json!({"n": 1}));
    assert_eq!(job["positions"]["steps"][0]["keys"]["run"]["line"], 6);
    let sent = serde_json::to_string(&a).unwrap();
    assert!(
        !sent.contains("jobs:"),
        "YAML text in the assignment: {sent}"
    );
}

/// The contexts a job's steps see (`strategy`, `matrix`, `needs`, `inputs`,
/// `job`, `runner`) come from one builder each: `hangar run` and an agent of
/// a real `hangar serve` give the same values, field by field, for the same
/// workflow and dispatch. (The server once sent no `strategy` at all.)
#[tokio::test]
async fn local_and_server_runs_build_the_same_contexts() {
    let wf = "on:
  workflow_dispatch:
    inputs:
      level: {type: choice, options: [low, high], default: low}
      flag: {type: boolean, default: true}
      count: {type: number, default: 3}
jobs:
  first:
    runs-on: ubuntu-latest
    outputs: {v: '${{ steps.s.outputs.v }}'}
    steps: [{id: s, run: echo v=one >> \"$GITHUB_OUTPUT\"}]
  legs:
    needs: first
    runs-on: ubuntu-latest
    strategy: {max-parallel: 1, matrix: {n: [1, 2]}}
    steps:
      - env:
          S: ${{ toJSON(strategy) }}
          M: ${{ toJSON(matrix) }}
          N: ${{ toJSON(needs) }}
          I: ${{ toJSON(inputs) }}
          J: ${{ toJSON(job) }}
          R: ${{ toJSON(runner) }}
        run: python3 cx.py
";
    // Paths of this machine's runner differ between the two runs by design.
    let script = "import json, os
r = json.loads(os.environ['R'])
for k in ('temp', 'tool_cache', 'workspace'):
    r.pop(k, None)
out = {k: json.loads(os.environ[v]) for k, v in (('strategy', 'S'), ('matrix', 'M'), ('needs', 'N'), ('inputs', 'I'), ('job', 'J'))}
out['runner'] = r
print('CX ' + json.dumps(out, sort_keys=True))
";
    let (repo, _sha) = repo_with(&[(".github/workflows/ci.yml", wf), ("cx.py", script)]);
    let contexts = |text: &str| -> Vec<Value> {
        let mut found: Vec<Value> = text
            .lines()
            .filter_map(|l| l.split_once("CX {").map(|(_, rest)| format!("{{{rest}")))
            .map(|j| serde_json::from_str(&j).unwrap())
            .collect();
        found.sort_by_key(|v| v["matrix"]["n"].as_i64());
        found
    };

    // `hangar run` of the dispatch.
    let dirs = tempfile::tempdir().unwrap();
    let mut run = hangar_engine::RunContext::new(
        repo.path(),
        "workflow_dispatch",
        Some(json!({"inputs": {"level": "high"}, "ref": "refs/heads/main"})),
    );
    run.inputs.insert("level".into(), json!("high"));
    run.data_dir = dirs.path().join("data");
    run.run_dir = dirs.path().join("run");
    let local_wf =
        hangar_engine::Workflow::load(&repo.path().join(".github/workflows/ci.yml")).unwrap();
    let reporter = std::sync::Arc::new(hangar_engine::report::MemoryReporter::default());
    let summary = hangar_engine::Engine::new()
        .run_workflows(
            std::sync::Arc::new(run),
            vec![std::sync::Arc::new(local_wf)],
            Default::default(),
            reporter.clone(),
            hangar_engine::CancellationToken::new(),
        )
        .await
        .unwrap();
    let local = contexts(&reporter.lines().join("\n"));

    // The same dispatch on the server, run by its agent.
    let s = start().await;
    let id = s.register("acme/app", repo.path()).await;
    let (code, v) = s
        .post(
            &format!("/api/v1/repos/{id}/dispatch"),
            json!({"workflow": "ci.yml", "ref": "main", "inputs": {"level": "high"}}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let r = s
        .wait_run(v["run"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    let mut logs = String::new();
    for j in r["jobs"].as_array().unwrap() {
        logs.push_str(
            &s.get_text(&format!("/api/v1/jobs/{}/logs/raw", j["id"]))
                .await,
        );
        logs.push('\n');
    }
    let server = contexts(&logs);

    assert_eq!(local.len(), 2, "{summary:?}: {:?}", reporter.lines());
    assert_eq!(server.len(), 2, "{r:#}\n{logs}");
    let mut differing = Vec::new();
    for (a, b) in local.iter().zip(&server) {
        for (cx, fields) in a.as_object().unwrap() {
            let other = &b[cx];
            let keys: std::collections::BTreeSet<&String> = fields
                .as_object()
                .unwrap()
                .keys()
                .chain(other.as_object().into_iter().flat_map(|o| o.keys()))
                .collect();
            for k in keys {
                if fields.get(k) != other.get(k) {
                    differing.push(format!(
                        "{cx}.{k}: local {:?}, server {:?}",
                        fields.get(k),
                        other.get(k)
                    ));
                }
            }
        }
    }
    assert!(differing.is_empty(), "{}", differing.join("\n"));
    // And the values are GitHub's.
    assert_eq!(
        local[1]["strategy"],
        json!({"fail-fast": true, "job-index": 1, "job-total": 2, "max-parallel": 1})
    );
    assert_eq!(
        local[0]["needs"],
        json!({"first": {"result": "success", "outputs": {"v": "one"}}})
    );
    assert_eq!(
        local[0]["inputs"],
        json!({"level": "high", "flag": true, "count": 3})
    );
}

/// An agent's conclusion is one of the four the store knows: another word is
/// refused when its JSON is read (it once became `failure`), and the job
/// stays the agent's to complete properly.
#[tokio::test]
async fn an_unknown_conclusion_from_an_agent_is_refused() {
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo hi}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start_with(|c| c.embedded_capacity = 0).await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let (_, t) = s
        .post("/api/v1/tokens", json!({"name": "runner", "role": "agent"}))
        .await;
    let agent = s.agent_credential(t["token"].as_str().unwrap(), "a1").await;
    let poll = json!({"protocol_version": hangar_agent::PROTOCOL_VERSION, "agent_id": "a1",
        "name": "a1", "labels": ["ubuntu-latest"], "capacity": 1, "free_slots": 1, "wait_ms": 0});
    let start = Instant::now();
    let lease = loop {
        let (code, a) = as_agent(&s, &agent, "", "/api/v1/agent/poll", poll.clone()).await;
        if code == 200 {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no job leased");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let job = lease["job_id"].as_i64().unwrap();
    let key = lease["lease_key"].as_str().unwrap_or_default();
    let complete = format!("/api/v1/agent/jobs/{job}/complete");
    let (code, e) = as_agent(
        &s,
        &agent,
        key,
        &complete,
        json!({"fence": lease["fence"], "conclusion": "succeeded", "outputs": {}}),
    )
    .await;
    assert!((400..500).contains(&code), "{code}: {e}");
    assert!(
        e["error"].as_str().unwrap_or("").contains("succeeded"),
        "{e}"
    );
    let run = s.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["jobs"][0]["status"], "running", "{run:#}");
    let (code, _) = as_agent(
        &s,
        &agent,
        key,
        &complete,
        json!({"fence": lease["fence"], "conclusion": "success", "outputs": {}}),
    )
    .await;
    assert_eq!(code, 204);
    let run = s.wait_run(run_id, Duration::from_secs(10)).await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
}

/// The key and conclusion of every job a run reports, callers that ran left
/// out (`hangar run` reports their called jobs, not them).
fn leaf_jobs(run: &Value) -> std::collections::BTreeMap<String, String> {
    let jobs = run["jobs"].as_array().unwrap();
    let keys: Vec<String> = jobs
        .iter()
        .map(|j| j["key"].as_str().unwrap().to_string())
        .collect();
    jobs.iter()
        .filter(|j| {
            let name = j["name"].as_str().unwrap();
            !keys.iter().any(|k| {
                k.starts_with(&format!("{name} / "))
                    || k.starts_with(&format!("{} / ", j["key"].as_str().unwrap()))
            })
        })
        .map(|j| {
            (
                j["name"].as_str().unwrap().to_string(),
                j["conclusion"].as_str().unwrap_or("none").to_string(),
            )
        })
        .collect()
}

async fn logs_of(s: &TestServer, run: &Value, name: &str) -> String {
    let job = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {run:#}"));
    s.get_text(&format!("/api/v1/jobs/{}/logs/raw", job["id"]))
        .await
}

const CALLED: &str = "on:
  workflow_call:
    inputs:
      who: {type: string, required: true}
      n: {type: number, default: 1}
    outputs:
      greeting:
        value: ${{ jobs.hello.outputs.g }}
jobs:
  hello:
    runs-on: ubuntu-latest
    outputs:
      g: ${{ steps.s.outputs.g }}
    steps:
      - id: s
        run: |
          echo \"g=hello-${{ inputs.who }}-${{ inputs.n }}\" >> \"$GITHUB_OUTPUT\"
          echo \"passed=${{ secrets.passed }} other=${{ secrets.OTHER }} end\"
  later:
    needs: hello
    runs-on: ubuntu-latest
    steps: [{run: 'echo later n=${{ inputs.n }}'}]
";

/// A job that calls a reusable workflow runs on `hangar serve` as on
/// GitHub: the called jobs are jobs of the run named `caller / callee`,
/// with the caller's `with:` as typed `inputs` (defaults filled), only the
/// secrets its `secrets:` passes (`inherit`: all of the caller's), their
/// own `needs`, and the called workflow's `outputs` read by a later job
/// through `needs.<caller>.outputs`.
#[tokio::test]
async fn a_called_workflow_runs_with_inputs_secrets_and_outputs() {
    let wf = "on: push
jobs:
  call:
    uses: ./.github/workflows/called.yml
    with:
      who: world
      n: 3
    secrets:
      passed: ${{ secrets.TOKEN }}
  inherit:
    uses: ./.github/workflows/called.yml
    with: {who: all}
    secrets: inherit
  after:
    needs: call
    runs-on: ubuntu-latest
    steps:
      - run: echo \"got=${{ needs.call.outputs.greeting }} result=${{ needs.call.result }}\"
";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", wf),
        (".github/workflows/called.yml", CALLED),
    ]);
    let s = start().await;
    let id = s.register("acme/app", repo.path()).await;
    for (name, value) in [("TOKEN", "tok-value-1"), ("OTHER", "other-value-2")] {
        let r = s
            .http
            .put(s.url(&format!("/api/v1/repos/{id}/secrets/{name}")))
            .bearer_auth(&s.token)
            .json(&json!({"value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let leaves = leaf_jobs(&run);
    let names: Vec<&str> = leaves.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "after",
            "call / hello",
            "call / later",
            "inherit / hello",
            "inherit / later"
        ],
        "{run:#}"
    );
    let log = logs_of(&s, &run, "after").await;
    assert!(log.contains("got=hello-world-3 result=success"), "{log}");
    let log = logs_of(&s, &run, "call / hello").await;
    assert!(log.contains("passed=*** other= end"), "{log}");
    let log = logs_of(&s, &run, "inherit / hello").await;
    assert!(log.contains("passed= other=*** end"), "{log}");
    let log = logs_of(&s, &run, "inherit / later").await;
    assert!(log.contains("later n=1"), "the declared default: {log}");
}

/// The same caller/callee pair gives the same jobs and conclusions under
/// `hangar run` and on `hangar serve`: an `if:` on the caller reading a
/// needed job's output, called jobs' `if:` reading the call's `inputs`
/// (the server's job-level contexts, built as `hangar run` builds them), a
/// caller skipped by its `if:`, a called job that
/// fails (the caller fails, its dependents are skipped, an `always()` one
/// runs), and outputs mapped back.
#[tokio::test]
async fn local_and_server_runs_of_a_called_workflow_agree() {
    let wf = "on: push
jobs:
  first:
    runs-on: ubuntu-latest
    outputs: {go: yes}
    steps: [{run: echo first}]
  call:
    needs: first
    if: needs.first.outputs.go == 'yes'
    uses: ./.github/workflows/r.yml
    with: {v: one}
  skipped-call:
    if: github.ref_name == 'nope'
    uses: ./.github/workflows/r.yml
    with: {v: two}
  failing:
    uses: ./.github/workflows/fail.yml
  after:
    needs: call
    runs-on: ubuntu-latest
    steps: [{run: 'echo \"out=${{ needs.call.outputs.o }}\"'}]
  after-failing:
    needs: failing
    runs-on: ubuntu-latest
    steps: [{run: echo never}]
  always:
    needs: failing
    if: always()
    runs-on: ubuntu-latest
    steps: [{run: 'echo \"failing=${{ needs.failing.result }}\"'}]
";
    let r = "on:
  workflow_call:
    inputs: {v: {type: string}}
    outputs:
      o: {value: '${{ jobs.a.outputs.x }}-${{ inputs.v }}'}
jobs:
  a:
    runs-on: ubuntu-latest
    outputs: {x: '${{ steps.s.outputs.x }}'}
    steps: [{id: s, run: 'echo x=ex >> \"$GITHUB_OUTPUT\"'}]
  b:
    needs: a
    if: inputs.v == 'one'
    runs-on: ubuntu-latest
    steps: [{run: echo b}]
  c:
    needs: a
    if: inputs.v != 'one'
    runs-on: ubuntu-latest
    steps: [{run: echo c}]
";
    let fail = "on: workflow_call
jobs:
  bad:
    runs-on: ubuntu-latest
    steps: [{run: exit 3}]
  next:
    needs: bad
    runs-on: ubuntu-latest
    steps: [{run: echo next}]
";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", wf),
        (".github/workflows/r.yml", r),
        (".github/workflows/fail.yml", fail),
    ]);

    // `hangar run` of the push.
    let dirs = tempfile::tempdir().unwrap();
    let mut run = hangar_engine::RunContext::new(
        repo.path(),
        "push",
        Some(json!({"ref": "refs/heads/main", "after": sha})),
    );
    run.data_dir = dirs.path().join("data");
    run.run_dir = dirs.path().join("run");
    let local_wf =
        hangar_engine::Workflow::load(&repo.path().join(".github/workflows/ci.yml")).unwrap();
    let reporter = std::sync::Arc::new(hangar_engine::report::MemoryReporter::default());
    let summary = hangar_engine::Engine::new()
        .run_workflows(
            std::sync::Arc::new(run),
            vec![std::sync::Arc::new(local_wf)],
            Default::default(),
            reporter.clone(),
            hangar_engine::CancellationToken::new(),
        )
        .await
        .unwrap();
    let local: std::collections::BTreeMap<String, String> = summary
        .jobs
        .iter()
        .map(|j| (j.key.clone(), j.result.as_str().to_string()))
        .collect();
    let local_lines = reporter.lines().join("\n");

    // The same push on the server.
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let server_run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    let server = leaf_jobs(&server_run);
    assert_eq!(local, server, "local {local:#?}\nserver {server_run:#}");
    assert_eq!(server["call / a"], "success");
    // A called job's `if:` reads the call's inputs, on both sides.
    assert_eq!(server["call / b"], "success");
    assert_eq!(server["call / c"], "skipped");
    assert_eq!(server["skipped-call"], "skipped");
    assert_eq!(server["failing / bad"], "failure");
    assert_eq!(server["failing / next"], "skipped");
    assert_eq!(server["after-failing"], "skipped");
    assert_eq!(server["always"], "success");
    assert!(!summary.success);
    assert_eq!(server_run["run"]["conclusion"], "failure");
    for (name, line) in [("after", "out=ex-one"), ("always", "failing=failure")] {
        let log = logs_of(&s, &server_run, name).await;
        assert!(log.contains(line), "server {name}: {log}");
        assert!(local_lines.contains(line), "local: {local_lines}");
    }
}

/// Re-running one called job reopens its caller, whose conclusion and
/// outputs are its called workflow's, and the jobs that need the caller;
/// the other called jobs keep their results. (The caller once stayed
/// concluded and `after` kept what it had read.) `github.job` in a called
/// job's `if:` is the callee's id, as on GitHub.
#[tokio::test]
async fn rerunning_a_called_job_reopens_its_caller_and_what_needs_it() {
    let wf = "on: push
jobs:
  call:
    uses: ./.github/workflows/r.yml
  after:
    needs: call
    runs-on: ubuntu-latest
    steps: [{run: 'echo after-ran'}]
";
    let r = "on: workflow_call
jobs:
  a:
    if: github.job == 'a'
    runs-on: ubuntu-latest
    steps: [{run: echo a}]
  b:
    runs-on: ubuntu-latest
    steps: [{run: echo b}]
";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", wf),
        (".github/workflows/r.yml", r),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let run = s.wait_run(run_id, Duration::from_secs(60)).await;
    let job = |r: &Value, key: &str| {
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {r:#}"))
            .clone()
    };
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    assert_eq!(job(&run, "call / a")["conclusion"], "success", "{run:#}");
    let b = job(&run, "call / b")["id"].as_i64().unwrap();
    let (code, v) = s
        .post(&format!("/api/v1/runs/{run_id}/rerun"), json!({"jobs": b}))
        .await;
    assert_eq!(code, 202, "{v}");
    let mut rerun: Vec<i64> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_i64().unwrap())
        .collect();
    rerun.sort();
    // The caller is not listed as a job (its called jobs are), as on GitHub.
    let keys: Vec<&str> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["after", "call / a", "call / b"], "{run:#}");
    let after = job(&run, "after")["id"].as_i64().unwrap();
    assert_eq!(rerun.len(), 3, "b, its caller and after: {v}");
    assert!(rerun.contains(&b) && rerun.contains(&after), "{v}");
    let again = s.wait_run(run_id, Duration::from_secs(60)).await;
    assert_eq!(again["run"]["conclusion"], "success", "{again:#}");
    assert_eq!(again["run"]["attempt"], 2);
    for key in ["after", "call / b"] {
        let j = job(&again, key);
        assert_eq!(j["conclusion"], "success", "{again:#}");
        assert_ne!(
            j["finished_at"],
            job(&run, key)["finished_at"],
            "{key} ran again"
        );
    }
    assert_eq!(
        job(&again, "call / a")["finished_at"],
        job(&run, "call / a")["finished_at"],
        "the other called job keeps its result"
    );
}

/// A job of a run's report by key.
fn job_by_key(run: &Value, key: &str) -> Value {
    run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {run:#}"))
        .clone()
}

/// Re-running a caller by its id (it is not listed, but the API takes it)
/// re-runs every job it called, through a nested call, as GitHub re-runs
/// a reusable workflow's caller: each gets a new attempt, in the called
/// workflows' order (the nested one's job only after the job its caller
/// needs), and what needs the caller runs again; the jobs around keep
/// their results. (The caller once settled at once on its called jobs'
/// old results.) The run graph's data draws the lines the hidden callers
/// stood in: from the called workflow's last job to what needs the
/// caller, and from what the caller needs to the called workflow's first.
#[tokio::test]
async fn rerunning_a_caller_reruns_every_job_it_called() {
    let wf = "on: push
jobs:
  first:
    runs-on: ubuntu-latest
    steps: [{run: echo first}]
  call:
    needs: first
    uses: ./.github/workflows/outer.yml
  after:
    needs: call
    runs-on: ubuntu-latest
    steps: [{run: 'echo \"after out=${{ needs.call.outputs.o }}\"'}]
  other:
    runs-on: ubuntu-latest
    steps: [{run: echo other}]
";
    let outer = "on:
  workflow_call:
    outputs:
      o: {value: '${{ jobs.inner.outputs.x }}'}
jobs:
  a:
    runs-on: ubuntu-latest
    steps: [{run: echo a}]
  inner:
    needs: a
    uses: ./.github/workflows/inner.yml
";
    let inner = "on:
  workflow_call:
    outputs:
      x: {value: '${{ jobs.x.outputs.n }}'}
jobs:
  x:
    runs-on: ubuntu-latest
    outputs: {n: '${{ steps.s.outputs.n }}'}
    steps: [{id: s, run: 'echo \"n=attempt-${{ github.run_attempt }}\" >> \"$GITHUB_OUTPUT\"'}]
";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", wf),
        (".github/workflows/outer.yml", outer),
        (".github/workflows/inner.yml", inner),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let run = s.wait_run(run_id, Duration::from_secs(60)).await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let keys: Vec<&str> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["first", "after", "other", "call / a", "call / inner / x"],
        "callers are not listed: {run:#}"
    );
    // The graph's lines, through both hidden callers.
    let graph = |key: &str| job_by_key(&run, key)["graph_needs"].clone();
    assert_eq!(graph("after"), json!(["call / inner / x"]), "{run:#}");
    assert_eq!(graph("call / a"), json!(["first"]), "{run:#}");
    assert_eq!(graph("call / inner / x"), json!(["call / a"]), "{run:#}");
    assert_eq!(graph("other"), json!([]), "{run:#}");
    assert_eq!(job_by_key(&run, "after")["needs"], json!(["call"]));

    let rows = s.server.app.store.jobs_of_run(run_id).unwrap();
    let id_of = |key: &str| rows.iter().find(|j| j.key == key).unwrap().id;
    let (code, v) = s
        .post(
            &format!("/api/v1/runs/{run_id}/rerun"),
            json!({"jobs": id_of("call")}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let mut rerun: Vec<i64> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_i64().unwrap())
        .collect();
    rerun.sort();
    let mut expected: Vec<i64> = [
        "call",
        "call / a",
        "call / inner",
        "call / inner / x",
        "after",
    ]
    .iter()
    .map(|k| id_of(k))
    .collect();
    expected.sort();
    assert_eq!(rerun, expected, "{v}");
    let again = s.wait_run(run_id, Duration::from_secs(60)).await;
    assert_eq!(again["run"]["conclusion"], "success", "{again:#}");
    assert_eq!(again["run"]["attempt"], 2);
    for key in ["call / a", "call / inner / x", "after"] {
        let j = job_by_key(&again, key);
        assert_eq!(j["conclusion"], "success", "{key}: {again:#}");
        assert_eq!(j["attempt"], 2, "{key} ran again: {again:#}");
    }
    for key in ["first", "other"] {
        assert_eq!(
            job_by_key(&again, key)["attempt"],
            1,
            "{key} keeps its result: {again:#}"
        );
    }
    // The nested call's job waited for the job its caller needs.
    let (a, x) = (
        job_by_key(&again, "call / a"),
        job_by_key(&again, "call / inner / x"),
    );
    assert!(
        x["started_at"].as_i64().unwrap() >= a["finished_at"].as_i64().unwrap(),
        "call / inner / x started before call / a finished: {again:#}"
    );
    // The outputs come up from the new attempt.
    let log = logs_of(&s, &again, "after").await;
    assert!(log.contains("after out=attempt-2"), "{log}");
}

/// A re-run whose caller is skipped this time (its `if:` reads the run's
/// attempt) skips the jobs it called the first time, saying why; they do
/// not run without their caller. (They once ran at once, their caller
/// not started.)
#[tokio::test]
async fn a_caller_skipped_on_a_rerun_skips_the_jobs_it_called() {
    let wf = "on: push
jobs:
  call:
    if: github.run_attempt == '1'
    uses: ./.github/workflows/r.yml
";
    let r = "on: workflow_call
jobs:
  a:
    runs-on: ubuntu-latest
    steps: [{run: echo a}]
";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", wf),
        (".github/workflows/r.yml", r),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let run = s.wait_run(run_id, Duration::from_secs(60)).await;
    assert_eq!(job_by_key(&run, "call / a")["conclusion"], "success");
    let (code, v) = s
        .post(
            &format!("/api/v1/runs/{run_id}/rerun"),
            json!({"jobs": "all"}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let again = s.wait_run(run_id, Duration::from_secs(60)).await;
    let a = job_by_key(&again, "call / a");
    assert_eq!(a["conclusion"], "skipped", "{again:#}");
    assert_eq!(a["attempt"], 1, "it did not run again: {again:#}");
    let why = a["waiting_reason"].as_str().unwrap_or("");
    assert!(why.contains("its caller `call` ended skipped"), "{why}");
}

/// "Re-run failed jobs" on a run that failed inside a called workflow
/// (nested) re-runs the failed called job and what needs it there, and
/// reopens its callers and what needs them; the called job that passed
/// and the jobs outside keep their results.
#[tokio::test]
async fn rerunning_failed_jobs_reopens_the_failed_called_jobs_and_their_callers() {
    let wf = "on: push
jobs:
  call:
    uses: ./.github/workflows/outer.yml
  after:
    needs: call
    runs-on: ubuntu-latest
    steps: [{run: 'echo \"after result=${{ needs.call.result }}\"'}]
  other:
    runs-on: ubuntu-latest
    steps: [{run: echo other}]
";
    let outer = "on: workflow_call
jobs:
  ok:
    runs-on: ubuntu-latest
    steps: [{run: echo ok}]
  inner:
    uses: ./.github/workflows/flaky.yml
  next:
    needs: inner
    runs-on: ubuntu-latest
    steps: [{run: echo next}]
";
    // Fails on the run's first attempt only.
    let flaky = "on: workflow_call
jobs:
  flaky:
    runs-on: ubuntu-latest
    steps: [{run: 'test \"${{ github.run_attempt }}\" -gt 1'}]
";
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", wf),
        (".github/workflows/outer.yml", outer),
        (".github/workflows/flaky.yml", flaky),
    ]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let run = s.wait_run(run_id, Duration::from_secs(60)).await;
    assert_eq!(run["run"]["conclusion"], "failure", "{run:#}");
    let first = leaf_jobs(&run);
    assert_eq!(first["call / inner / flaky"], "failure", "{run:#}");
    assert_eq!(first["call / next"], "skipped", "{run:#}");
    assert_eq!(first["after"], "skipped", "{run:#}");

    let (code, v) = s
        .post(
            &format!("/api/v1/runs/{run_id}/rerun"),
            json!({"jobs": "failed"}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let rows = s.server.app.store.jobs_of_run(run_id).unwrap();
    let mut rerun: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            let id = id.as_i64().unwrap();
            rows.iter().find(|j| j.id == id).unwrap().key.as_str()
        })
        .collect();
    rerun.sort();
    assert_eq!(
        rerun,
        [
            "after",
            "call",
            "call / inner",
            "call / inner / flaky",
            "call / next"
        ],
        "{v}"
    );
    let again = s.wait_run(run_id, Duration::from_secs(60)).await;
    assert_eq!(again["run"]["conclusion"], "success", "{again:#}");
    // Skipped before, `call / next` and `after` run for the first time.
    let ended = run["run"]["finished_at"].as_i64().unwrap();
    for key in ["call / inner / flaky", "call / next", "after"] {
        let j = job_by_key(&again, key);
        assert_eq!(j["conclusion"], "success", "{key}: {again:#}");
        assert!(
            j["started_at"].as_i64().unwrap() >= ended,
            "{key} ran again: {again:#}"
        );
    }
    for key in ["call / ok", "other"] {
        assert_eq!(
            job_by_key(&again, key)["finished_at"],
            job_by_key(&run, key)["finished_at"],
            "{key} keeps its result: {again:#}"
        );
    }
    let log = logs_of(&s, &again, "after").await;
    assert!(log.contains("after result=success"), "{log}");
}

/// A remote reusable workflow (`OWNER/REPO/.github/workflows/F.yml@REF`)
/// is fetched by the server, from its action source (here a `file://`
/// forge), through the action cache `hangar run` uses; its jobs run on the
/// agent like a local callee's.
#[tokio::test]
async fn a_remote_called_workflow_comes_from_the_servers_action_source() {
    let forge = tempfile::tempdir().unwrap();
    let shared = forge.path().join("acme").join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    git(&shared, &["init", "-q", "-b", "main"]);
    commit(&shared, &[(".github/workflows/called.yml", CALLED)]);
    git(&shared, &["tag", "v1"]);
    let wf = "on: push
jobs:
  remote:
    uses: acme/shared/.github/workflows/called.yml@v1
    with: {who: remote}
  after:
    needs: remote
    runs-on: ubuntu-latest
    steps: [{run: 'echo \"got=${{ needs.remote.outputs.greeting }}\"'}]
";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let url = format!("file://{}", forge.path().display());
    let s = start_with(|c| {
        c.actions = hangar_engine::actions::ActionSource::new(&url, false).unwrap();
    })
    .await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let log = logs_of(&s, &run, "after").await;
    assert!(log.contains("got=hello-remote-1"), "{log}");
    assert!(leaf_jobs(&run).contains_key("remote / later"), "{run:#}");
}

/// A workflow that calls itself, and calls nested deeper than GitHub's ten
/// levels of workflows, are refused at the `uses:` line that would go too
/// far, naming the chain; nothing of them runs for ever.
#[tokio::test]
async fn a_call_cycle_and_too_deep_nesting_are_refused_at_their_line() {
    let cyc = "on: workflow_call
jobs:
  again:
    uses: ./.github/workflows/cyc.yml
";
    let mut files: Vec<(String, String)> = vec![
        (
            ".github/workflows/ci.yml".into(),
            "on: push\njobs:\n  loop:\n    uses: ./.github/workflows/cyc.yml\n  deep:\n    uses: ./.github/workflows/d1.yml\n".into(),
        ),
        (".github/workflows/cyc.yml".into(), cyc.into()),
    ];
    for i in 1..=10 {
        files.push((
            format!(".github/workflows/d{i}.yml"),
            format!(
                "on: workflow_call\njobs:\n  down:\n    uses: ./.github/workflows/d{}.yml\n",
                i + 1
            ),
        ));
    }
    files.push((
        ".github/workflows/d11.yml".into(),
        "on: workflow_call\njobs:\n  leaf:\n    runs-on: ubuntu-latest\n    steps: [{run: echo leaf}]\n".into(),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let (repo, sha) = repo_with(&refs);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(run["run"]["conclusion"], "failure", "{run:#}");
    let jobs = run["jobs"].as_array().unwrap();
    let reason = |key: &str| {
        jobs.iter()
            .find(|j| j["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {run:#}"))["waiting_reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let again = reason("loop / again");
    assert!(
        again.starts_with(".github/workflows/cyc.yml:4:11: ") && again.contains("cycle"),
        "{again}"
    );
    let deepest = "deep / down / down / down / down / down / down / down / down / down";
    let why = reason(deepest);
    assert!(
        why.starts_with(".github/workflows/d9.yml:4:11: ")
            && why.contains("Nested reusable workflow depth exceeded 9"),
        "{why}"
    );
    assert!(
        !jobs
            .iter()
            .any(|j| j["key"].as_str().unwrap().contains("leaf"))
    );
    assert!(jobs.iter().all(|j| j["status"] == "completed"), "{run:#}");
}

/// The version check goes both ways: an agent handed a job by a server of
/// another protocol version refuses it at once (`refuse`), and the job is
/// not left leased until the lease expires. With another agent of the
/// server's version connected it goes back to the queue and that agent
/// runs it; with none it fails at once, naming both versions.
#[tokio::test]
async fn an_agent_refusing_another_versions_job_gives_it_back_at_once() {
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo hi}]\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    // A long lease: anything that happens below happens because of the
    // refusal, not because a lease expired.
    let s = start_with(|c| {
        c.embedded_capacity = 0;
        c.lease = Duration::from_secs(600);
    })
    .await;
    s.register("acme/app", repo.path()).await;
    let (_, t) = s
        .post("/api/v1/tokens", json!({"name": "runner", "role": "agent"}))
        .await;
    let token = t["token"].as_str().unwrap().to_string();
    let b1 = s.agent_credential(&token, "b1").await;
    let b2 = s.agent_credential(&token, "b2").await;
    let cred = |id: &str| if id == "b1" { b1.clone() } else { b2.clone() };
    let ours = hangar_agent::PROTOCOL_VERSION;
    let poll = |id: &str| {
        json!({"protocol_version": ours, "agent_id": id, "name": id, "labels": ["ubuntu-latest"],
            "capacity": 1, "free_slots": 1, "wait_ms": 0})
    };
    let lease = async |id: &str| {
        let start = Instant::now();
        loop {
            let (code, a) = as_agent(&s, &cred(id), "", "/api/v1/agent/poll", poll(id)).await;
            if code == 200 {
                return a;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no job leased");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let refuse = async |id: &str, a: &Value| {
        let job = a["job_id"].as_i64().unwrap();
        as_agent(
            &s,
            &cred(id),
            a["lease_key"].as_str().unwrap(),
            &format!("/api/v1/agent/jobs/{job}/refuse"),
            json!({"fence": a["fence"], "protocol_version": ours + 1, "hangar_version": "9.9.9",
                "reason": "another version"}),
        )
        .await
    };

    // Another agent of this version is connected (it polled, found nothing).
    let (code, _) = as_agent(&s, &b2, "", "/api/v1/agent/poll", poll("b2")).await;
    assert_eq!(code, 204);
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let first = lease("b1").await;
    // A refusal without the lease's key is not the holder's.
    let job = first["job_id"].as_i64().unwrap();
    let (code, _) = as_agent(
        &s,
        &b1,
        "",
        &format!("/api/v1/agent/jobs/{job}/refuse"),
        json!({"fence": first["fence"], "protocol_version": ours + 1}),
    )
    .await;
    assert_eq!(code, 403);
    let (code, e) = refuse("b1", &first).await;
    assert_eq!(code, 204, "{e}");
    let run = s.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["jobs"][0]["status"], "queued", "{run:#}");
    let audit = s.get("/api/v1/audit").await;
    let refused: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "job.refused")
        .collect();
    assert_eq!(refused.len(), 1, "{audit:#}");
    assert!(
        refused[0].to_string().contains("\"requeued\":true"),
        "{audit:#}"
    );
    let second = lease("b2").await;
    assert_eq!(second["job_id"], first["job_id"]);

    // No other agent of this version: the job fails at once, saying why.
    let (code, e) = refuse("b2", &second).await;
    assert_eq!(code, 204, "{e}");
    let run = s.wait_run(run_id, Duration::from_secs(10)).await;
    assert_eq!(run["run"]["conclusion"], "failure", "{run:#}");
    let why = run["jobs"][0]["waiting_reason"].as_str().unwrap_or("");
    for part in [
        "agent b2 refused".to_string(),
        format!("agent protocol {} (hangar 9.9.9)", ours + 1),
        format!("no other agent of protocol {ours}"),
    ] {
        assert!(why.contains(&part), "{why} lacks {part}");
    }
}

/// `runs-on` with expressions names the agents that may take the job once
/// evaluated over the job's contexts (`inputs` through the engine's one
/// builder, with the declared default; `matrix`): the server once queued the
/// labels as written, which no agent offers, and the job waited for ever.
#[tokio::test]
async fn runs_on_with_expressions_is_evaluated_before_the_job_is_queued() {
    let wf = "on:
  workflow_dispatch:
    inputs:
      os: {type: string, default: ubuntu-latest}
jobs:
  by-input:
    runs-on: ${{ inputs.os }}
    steps: [{run: echo by-input}]
  by-matrix:
    strategy: {matrix: {os: [ubuntu-latest]}}
    runs-on: ${{ matrix.os }}
    steps: [{run: echo by-matrix}]
";
    let (repo, _sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    let id = s.register("acme/app", repo.path()).await;
    let (code, v) = s
        .post(
            &format!("/api/v1/repos/{id}/dispatch"),
            json!({"workflow": "ci.yml", "ref": "main"}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let run = s
        .wait_run(v["run"].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    for j in run["jobs"].as_array().unwrap() {
        assert_eq!(j["labels"], json!(["ubuntu-latest"]), "{run:#}");
    }
}

/// What a job says once its steps are done (here: the orphan a step left
/// running, ended) is its "Complete job", as on GitHub: `?step=complete`
/// (also -1) has it, the set-up lines (`?step=none`) do not, and the job
/// lists it among the steps that wrote.
#[tokio::test]
async fn the_end_of_a_job_is_its_complete_job_section() {
    let wf = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo first\n      - name: leaves a daemon\n        run: sleep 300 > /dev/null 2>&1 &\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let job = &run["jobs"][0];
    let id = job["id"].as_i64().unwrap();
    let texts = async |step: &str| -> Vec<String> {
        let v = s.get(&format!("/api/v1/jobs/{id}/logs?step={step}")).await;
        v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l[1].as_str().unwrap().to_string())
            .collect()
    };
    let complete = texts("complete").await;
    assert!(
        complete
            .iter()
            .any(|l| l.starts_with("Cleaning up orphan processes: terminated 1")),
        "{complete:?}"
    );
    assert_eq!(complete, texts("-1").await);
    let setup = texts("none").await;
    assert!(
        !setup.iter().any(|l| l.contains("orphan")),
        "not in the set-up lines: {setup:?}"
    );
    let wrote: Vec<&Value> = job["log_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["step"])
        .collect();
    assert!(wrote.contains(&&json!(-1)), "{job:#}");
}

/// Two background steps writing at the same time, their lines interleaved
/// in time (each waits for the other's marker file before its next line):
/// every line is filed under its step, `?step=N` gives that step's lines
/// alone and in order, numbered within the step, and the job's own log
/// still has them all.
#[tokio::test]
async fn lines_of_parallel_steps_are_kept_by_step() {
    let wf = "on: push\njobs:\n  par:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo before\n      - name: left\n        background: true\n        run: |\n          for i in 1 2 3; do echo left-$i; touch \"$RUNNER_TEMP/left-$i\"; while [ ! -e \"$RUNNER_TEMP/right-$i\" ]; do sleep 0.01; done; done\n      - name: right\n        background: true\n        run: |\n          for i in 1 2 3; do while [ ! -e \"$RUNNER_TEMP/left-$i\" ]; do sleep 0.01; done; echo right-$i; touch \"$RUNNER_TEMP/right-$i\"; done\n      - wait-all:\n      - run: echo after\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf)]);
    let s = start().await;
    s.register("acme/app", repo.path()).await;
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let run = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let job = &run["jobs"][0];
    let id = job["id"].as_i64().unwrap();
    let step_of = |name: &str| {
        job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {job:#}"))["idx"]
            .as_i64()
            .unwrap()
    };
    let lines = async |step: &str| -> Vec<(i64, String)> {
        let v = s.get(&format!("/api/v1/jobs/{id}/logs?step={step}")).await;
        v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l[0].as_i64().unwrap(), l[1].as_str().unwrap().to_string()))
            .filter(|(_, t)| !t.starts_with("::") && !t.starts_with("##["))
            .collect()
    };
    let texts = |v: &[(i64, String)]| v.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
    let left = lines(&step_of("left").to_string()).await;
    let right = lines(&step_of("right").to_string()).await;
    assert_eq!(texts(&left), ["left-1", "left-2", "left-3"], "{left:?}");
    assert_eq!(
        texts(&right),
        ["right-1", "right-2", "right-3"],
        "{right:?}"
    );
    assert_eq!(left[0].0, 0, "numbered within the step");
    let after = lines(&step_of("Run echo after").to_string()).await;
    assert_eq!(texts(&after), ["after"]);
    // Every step that wrote is listed with its count on the run's job.
    let counted: Vec<i64> = job["log_steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_i64())
        .collect();
    assert!(counted.contains(&step_of("left")), "{job:#}");
    // The whole log has every line, each with its step.
    let all = s.get(&format!("/api/v1/jobs/{id}/logs?from=0")).await;
    let left_idx = step_of("left");
    let tagged: Vec<&Value> = all["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l[1].as_str().unwrap().starts_with("left-"))
        .collect();
    assert_eq!(tagged.len(), 3, "{all:#}");
    assert!(tagged.iter().all(|l| l[2] == left_idx), "{all:#}");
    // A step index that is not one is refused, saying what it takes.
    let r = s
        .http
        .get(s.url(&format!("/api/v1/jobs/{id}/logs?step=-2")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`none`"));
}

/// GitLab's `Merge Request Hook`, as GitLab's webhook documentation shows it
/// (its example payload, with the project, branch and commit of this test's
/// repository), reaches workflows in GitHub's `pull_request` shape, and a
/// merge request from another project takes the fork rule: its
/// `pull_request` run gets no secret, its `pull_request_target` run (the
/// base's workflow) does; one from the same project gets it in both. An edit
/// of the title (`update` without `oldrev`) is GitHub's `edited`, which does
/// not start the default types.
#[tokio::test]
async fn gitlab_merge_requests_look_like_github_pull_requests_and_forks_take_the_fork_rule() {
    let show = "steps:\n      - run: |\n          echo \"event=${{ github.event_name }} action=${{ github.event.action }} number=${{ github.event.number }}\"\n          echo \"head=${{ github.event.pull_request.head.ref }} base=${{ github.event.pull_request.base.ref }} head_ref=${{ github.head_ref }} base_ref=${{ github.base_ref }}\"\n          echo \"sha=${{ github.event.pull_request.head.sha }} fork=${{ github.event.pull_request.head.repo.fork }} from=${{ github.event.pull_request.head.repo.full_name }} repo=${{ github.event.repository.full_name }}\"\n          echo \"title=${{ github.event.pull_request.title }} sender=${{ github.event.sender.login }} kept=${{ github.event.object_attributes.iid }}\"\n          echo \"has-secret=${{ secrets.TOKEN != '' }}\"\n";
    let ci = format!("on: pull_request\njobs:\n  ci:\n    runs-on: ubuntu-latest\n    {show}");
    let target = format!(
        "on: pull_request_target\njobs:\n  target:\n    runs-on: ubuntu-latest\n    {show}"
    );
    let (repo, _base) = repo_with(&[
        (".github/workflows/ci.yml", &ci),
        (".github/workflows/target.yml", &target),
    ]);
    git(repo.path(), &["checkout", "-q", "-b", "ms-viewport"]);
    let head = commit(repo.path(), &[("README.md", "viewport\n")]).unwrap();
    git(repo.path(), &["checkout", "-q", "main"]);
    let s = start_with(|c| c.untrusted_on_embedded = true).await;
    let id = s.register("gitlabhq/gitlab-test", repo.path()).await;
    let r = s
        .http
        .put(s.url(&format!("/api/v1/repos/{id}/secrets/TOKEN")))
        .bearer_auth(&s.token)
        .json(&json!({"value": "a-secret-value-42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // GitLab's documented example ("Merge request events"), trimmed of the
    // fields hangar does not read only where they are long (avatars, labels'
    // colours); the project, branches and commit are this test's.
    // GitLab's project objects (`project`, `object_attributes.source` and
    // `.target`) have one shape.
    let project = |name: &str, path: &str| {
        json!({
          "id": 14, "name": name, "description": "Aut reprehenderit ut est.",
          "web_url": format!("http://example.com/{path}"), "avatar_url": null,
          "git_ssh_url": format!("git@example.com:{path}.git"),
          "git_http_url": format!("http://example.com/{path}.git"),
          "namespace": "GitlabHQ", "visibility_level": 20,
          "path_with_namespace": path, "default_branch": "main",
          "ci_config_path": "", "homepage": format!("http://example.com/{path}"),
          "url": format!("http://example.com/{path}.git"),
          "ssh_url": format!("git@example.com:{path}.git"),
          "http_url": format!("http://example.com/{path}.git")
        })
    };
    let mr = |iid: i64,
              source_project_id: i64,
              source_path: &str,
              action: &str,
              oldrev: Option<&str>| {
        let mut attributes = json!({
            "id": 99, "iid": iid, "target_branch": "main", "source_branch": "ms-viewport",
            "source_project_id": source_project_id, "author_id": 51, "assignee_ids": [6],
            "assignee_id": 6, "reviewer_ids": [6], "title": "MS-Viewport",
            "created_at": "2013-12-03T17:23:34Z", "updated_at": "2013-12-03T17:23:34Z",
            "last_edited_at": "2013-12-03T17:23:34Z", "last_edited_by_id": 1,
            "milestone_id": null, "state_id": 1, "state": "opened",
            "blocking_discussions_resolved": true, "work_in_progress": false, "draft": false,
            "first_contribution": true, "merge_status": "unchecked", "target_project_id": 14,
            "description": "", "total_time_spent": 1800, "time_change": 30,
            "human_total_time_spent": "30m", "human_time_change": "30s",
            "human_time_estimate": "30m",
            "url": format!("http://example.com/gitlabhq/gitlab-test/-/merge_requests/{iid}"),
            "action": action,
            "detailed_merge_status": "mergeable"
        });
        attributes["source"] = project("Awesome Project", source_path);
        attributes["target"] = project("Gitlab Test", "gitlabhq/gitlab-test");
        attributes["last_commit"] = json!({
            "id": head, "message": "fixed readme", "title": "Update file README.md",
            "timestamp": "2012-01-03T23:36:29+02:00",
            "url": format!("http://example.com/awesome_space/awesome_project/commits/{head}"),
            "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"}
        });
        attributes["labels"] = json!([{"id": 206, "title": "API", "color": "#ffffff",
            "project_id": 14, "created_at": "2013-12-03T17:15:43Z",
            "updated_at": "2013-12-03T17:15:43Z", "template": false,
            "description": "API related issues", "type": "ProjectLabel", "group_id": 41}]);
        if let Some(old) = oldrev {
            attributes["oldrev"] = json!(old);
        }
        let mut p = json!({
          "object_kind": "merge_request",
          "event_type": "merge_request",
          "user": {"id": 1, "name": "Administrator", "username": "root",
                   "avatar_url": "http://www.gravatar.com/avatar/e64c7d89f26bd1972efa854d13d7dd61?s=40&d=identicon",
                   "email": "admin@example.com"},
          "repository": {"name": "Gitlab Test", "url": "http://example.com/gitlabhq/gitlab-test.git",
                         "description": "Aut reprehenderit ut est.",
                         "homepage": "http://example.com/gitlabhq/gitlab-test"},
          "labels": [{"id": 206, "title": "API"}],
          "changes": {},
          "assignees": [{"id": 6, "name": "User1", "username": "user1"}],
          "reviewers": [{"id": 6, "name": "User1", "username": "user1"}]
        });
        p["project"] = project("Gitlab Test", "gitlabhq/gitlab-test");
        p["object_attributes"] = attributes;
        serde_json::to_vec(&p).unwrap()
    };
    let send = |body: Vec<u8>, uuid: &'static str| {
        s.http
            .post(s.url("/hooks/gitlab"))
            .header("x-gitlab-event", "Merge Request Hook")
            .header("x-gitlab-token", SECRET)
            .header("x-gitlab-event-uuid", uuid)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let runs_of = async |body: Vec<u8>, uuid: &'static str| -> Vec<Value> {
        let r = send(body, uuid).await.unwrap();
        assert_eq!(r.status(), 202, "{uuid}");
        let v: Value = r.json().await.unwrap();
        let mut out = vec![];
        for id in v["runs"].as_array().unwrap() {
            out.push(
                s.wait_run(id.as_i64().unwrap(), Duration::from_secs(60))
                    .await,
            );
        }
        out
    };
    let log_of = async |run: &Value| -> String {
        assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
        s.get_text(&format!("/api/v1/jobs/{}/logs/raw", run["jobs"][0]["id"]))
            .await
    };

    // From a fork (another project): two runs, only the base's has the secret.
    let fork = runs_of(
        mr(1, 15, "contributor/gitlab-test", "open", None),
        "mr-fork",
    )
    .await;
    assert_eq!(fork.len(), 2, "{fork:#?}");
    for run in &fork {
        let log = log_of(run).await;
        let event = run["run"]["event"].as_str().unwrap();
        assert!(
            log.contains(&format!("event={event} action=opened number=1")),
            "{log}"
        );
        assert!(
            log.contains("head=ms-viewport base=main head_ref=ms-viewport base_ref=main"),
            "{log}"
        );
        assert!(
            log.contains(&format!(
                "sha={head} fork=true from=contributor/gitlab-test repo=gitlabhq/gitlab-test"
            )),
            "{log}"
        );
        assert!(
            log.contains("title=MS-Viewport sender=root kept=1"),
            "{log}"
        );
        let trusted = event == "pull_request_target";
        assert!(
            log.contains(&format!("has-secret={trusted}")),
            "{event} from a fork: {log}"
        );
        if trusted {
            assert_eq!(run["run"]["git_ref"], "refs/heads/main", "{run:#}");
        } else {
            assert_eq!(
                run["run"]["git_ref"], "refs/merge-requests/1/head",
                "{run:#}"
            );
            assert_eq!(run["run"]["sha"], head.as_str(), "{run:#}");
        }
    }

    // Within the project: both runs have it.
    let own = runs_of(mr(2, 14, "gitlabhq/gitlab-test", "open", None), "mr-own").await;
    assert_eq!(own.len(), 2, "{own:#?}");
    for run in &own {
        let log = log_of(run).await;
        assert!(
            log.contains("fork=false from=gitlabhq/gitlab-test"),
            "{log}"
        );
        assert!(log.contains("has-secret=true"), "{log}");
    }

    // A title edit starts nothing; new commits are `synchronize`.
    assert!(
        runs_of(mr(2, 14, "gitlabhq/gitlab-test", "update", None), "mr-edit")
            .await
            .is_empty()
    );
    let pushed = runs_of(
        mr(
            2,
            14,
            "gitlabhq/gitlab-test",
            "update",
            Some("0123456789abcdef0123456789abcdef01234567"),
        ),
        "mr-push",
    )
    .await;
    assert_eq!(pushed.len(), 2, "{pushed:#?}");
    assert!(log_of(&pushed[0]).await.contains("action=synchronize"));
}
