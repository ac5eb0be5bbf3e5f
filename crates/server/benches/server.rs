//! Server benchmarks against the targets, all in one run on loopback:
//!
//! 1. webhook accepted → first step started, p50 with an idle embedded agent (< 50 ms);
//! 2. 1,000 queued one-step jobs drained by the embedded agent at 4 slots (≥ 50 jobs/s);
//! 3. log ingestion into the store, directly and through the agent HTTP API (≥ 50 MB/s);
//! 4. the run page of a job with 100,000 log lines, opened in headless Chromium (< 1 s).
//!
//! No peer CI server can be installed from the package registries this project
//! uses, so each figure is printed with its ratio to the target.
//! Run: `benches/server-bench.sh` (or `cargo bench -p hangar-server --bench server`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "bench-secret";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@example.com")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@example.com")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn repo(files: &[(&str, String)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    for (p, t) in files {
        let p = dir.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    }
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "bench"]);
    let sha = git(dir.path(), &["rev-parse", "HEAD"]);
    (dir, sha)
}

struct Bench {
    server: hangar_server::Server,
    token: String,
    http: reqwest::Client,
    _data: tempfile::TempDir,
}

async fn start(capacity: usize) -> Bench {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = hangar_server::ServeConfig::new(
        data.path().to_path_buf(),
        Arc::new(hangar_agent::EngineRunner::default()),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.cron = false;
    cfg.embedded_capacity = capacity;
    let server = hangar_server::start(cfg).await.unwrap();
    let token = server.admin_token.clone().unwrap();
    Bench {
        server,
        token,
        http: reqwest::Client::new(),
        _data: data,
    }
}

impl Bench {
    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.server.url())
    }
    async fn get(&self, p: &str) -> Value {
        self.http
            .get(self.url(p))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    async fn register(&self, name: &str, path: &Path) -> i64 {
        let v: Value = self
            .http
            .post(self.url("/api/v1/repos"))
            .bearer_auth(&self.token)
            .json(&json!({"name": name, "clone_url": path.to_string_lossy(), "webhook_secret": SECRET}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["id"].as_i64().unwrap()
    }
    async fn push(&self, name: &str, sha: &str, delivery: &str) -> Value {
        let body = serde_json::to_vec(
            &json!({"ref": "refs/heads/main", "after": sha, "repository": {"full_name": name}}),
        )
        .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.http
            .post(self.url("/hooks/github"))
            .header("x-github-event", "push")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sig)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    async fn wait_run(&self, id: i64) -> Value {
        loop {
            let v = self.get(&format!("/api/v1/runs/{id}")).await;
            if v["run"]["status"] == "completed" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn report(name: &str, value: f64, unit: &str, target: f64, higher_is_better: bool) {
    let ratio = if higher_is_better {
        value / target
    } else {
        target / value
    };
    let verdict = if ratio >= 1.0 { "meets" } else { "MISSES" };
    println!(
        "{name:<55} {value:>10.1} {unit:<7} target {target} {unit} -> {ratio:.2}x ({verdict})"
    );
}

async fn latency() {
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{name: first, run: 'true'}]\n".to_string();
    let (dir, sha) = repo(&[(".github/workflows/ci.yml", wf)]);
    let b = start(4).await;
    b.register("bench/latency", dir.path()).await;
    let mut to_step = Vec::new();
    let mut to_job = Vec::new();
    for i in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await; // the agent is idle, parked in its long poll
        let t0 = hangar_store::now_ms();
        let v = b.push("bench/latency", &sha, &format!("lat-{i}")).await;
        let run = b.wait_run(v["runs"][0].as_i64().unwrap()).await;
        let job = &run["jobs"][0];
        to_job.push((job["started_at"].as_i64().unwrap() - t0) as f64);
        to_step.push((job["steps"][0]["started_at"].as_i64().unwrap() - t0) as f64);
    }
    for v in [&mut to_step, &mut to_job] {
        v.drain(..10); // warm-up
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    let p = |v: &Vec<f64>, q: f64| v[((v.len() - 1) as f64 * q) as usize];
    report(
        "webhook -> job leased to the agent, p50",
        p(&to_job, 0.5),
        "ms",
        50.0,
        false,
    );
    report(
        "webhook -> first step started (after checkout), p50",
        p(&to_step, 0.5),
        "ms",
        50.0,
        false,
    );
    println!(
        "{:<55} {:>10.1} ms",
        "webhook -> first step started, p90",
        p(&to_step, 0.9)
    );
    b.server.stop().await;
}

/// A line printed by a step → the same line delivered to a browser over SSE.
async fn live_log_latency() {
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 0.3; for i in $(seq 1 40); do date +%s%3N; sleep 0.05; done\n".to_string();
    let (dir, sha) = repo(&[(".github/workflows/ci.yml", wf)]);
    let b = start(4).await;
    b.register("bench/live", dir.path()).await;
    let v = b.push("bench/live", &sha, "live").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let mut resp = b
        .http
        .get(b.url(&format!("/api/v1/runs/{run_id}/events")))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let mut deltas = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while deltas.len() < 40 && Instant::now() < deadline {
        let Ok(Ok(Some(bytes))) = tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await
        else {
            break;
        };
        let now = hangar_store::now_ms();
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if v["type"] == "log" {
                for l in v["text"].as_str().unwrap_or("").lines() {
                    if let Ok(t) = l.trim().parse::<i64>() {
                        deltas.push((now - t) as f64);
                    }
                }
            }
        }
    }
    deltas.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if deltas.is_empty() {
        println!("live log latency: no lines received");
    } else {
        report(
            "log line printed -> delivered over SSE, p50",
            deltas[deltas.len() / 2],
            "ms",
            250.0,
            false,
        );
        report(
            "log line printed -> delivered over SSE, max",
            *deltas.last().unwrap(),
            "ms",
            250.0,
            false,
        );
    }
    b.server.stop().await;
}

async fn throughput() {
    // 1,000 queued jobs: 1,000 runs of a one-job workflow (as 1,000 pushes would
    // queue), inserted straight into the store so only the drain is timed.
    let wf = "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n"
        .to_string();
    let (dir, sha) = repo(&[(".github/workflows/one.yml", wf.clone())]);
    let b = start(0).await;
    let repo_id = b.register("bench/many", dir.path()).await;
    let app = b.server.app.clone();
    let repo = app.store.get_repo(repo_id).unwrap().unwrap();
    let workflow = hangar_server::workflows::parse(".github/workflows/one.yml", &wf).unwrap();
    let ev = hangar_server::workflows::Event {
        name: "push".into(),
        git_ref: "refs/heads/main".into(),
        sha: sha.clone(),
        payload: json!({"ref": "refs/heads/main", "after": sha}),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for _ in 0..1000 {
        let run = app.new_run(&repo, &workflow, &ev, json!({})).unwrap();
        ids.push(app.store.create_run(&run).unwrap());
    }
    app.start_runs(&ids).await;
    assert_eq!(app.store.queue_depth().unwrap(), 1000);
    let t0 = Instant::now();
    let agent = hangar_agent::AgentConfig {
        server: b.server.url(),
        token: b.server.app.internal_token.clone(),
        id: b.server.app.embedded_agent_id.clone(),
        name: "embedded".into(),
        labels: hangar_server::default_labels(),
        capacity: 4,
        work_dir: b._data.path().join("work"),
        poll_wait: Duration::from_secs(30),
    };
    let stop = hangar_agent::CancellationToken::new();
    let task = tokio::spawn(hangar_agent::run_agent(
        agent,
        Arc::new(hangar_agent::EngineRunner::default()),
        stop.clone(),
    ));
    while app.store.queue_depth().unwrap() > 0 || !app.store.active_runs().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let failed = app
        .store
        .list_runs(&hangar_store::RunFilter {
            status: Some(hangar_store::Status::Completed),
            limit: Some(2000),
            ..Default::default()
        })
        .unwrap()
        .iter()
        .filter(|r| r.conclusion != Some(hangar_store::Conclusion::Success))
        .count();
    assert_eq!(failed, 0, "every job succeeded");
    report(
        "1,000 queued jobs drained, 4 slots",
        1000.0 / secs,
        "jobs/s",
        50.0,
        true,
    );
    stop.cancel();
    let _ = task.await;
    b.server.stop().await;
}

async fn ingestion() {
    let b = start(0).await;
    let store = b.server.app.store.clone();
    let line = "2026-01-01T00:00:00.000Z  Compiling some-crate v1.2.3 (registry) with a typical log line length ....\n";
    let chunk: String = line.repeat(256 * 1024 / line.len());
    let total_chunks = 800; // ~200 MB
    let t0 = Instant::now();
    for i in 0..total_chunks {
        store.append_log_chunk(1, 1, i, 0, &chunk).unwrap();
    }
    let mb = (chunk.len() * total_chunks as usize) as f64 / 1e6;
    report(
        "log ingestion into the store (append_log_chunk)",
        mb / t0.elapsed().as_secs_f64(),
        "MB/s",
        50.0,
        true,
    );

    // Through HTTP as an agent sends it: auth, fence check, masking, compression, insert.
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n"
        .to_string();
    let (dir, sha) = repo(&[(".github/workflows/ci.yml", wf)]);
    b.register("bench/logs", dir.path()).await;
    b.server
        .app
        .store
        .set_secret(None, "TOKEN", "a-secret-value-to-mask")
        .unwrap();
    b.push("bench/logs", &sha, "logs").await;
    let job = b
        .server
        .app
        .store
        .runnable_jobs(&hangar_server::default_labels(), 1)
        .unwrap()
        .remove(0);
    let lease = b
        .server
        .app
        .store
        .claim_job(job.id, "bench", 600_000)
        .unwrap()
        .unwrap();
    let client = hangar_agent::Client::new(&b.server.url(), &b.server.app.internal_token).unwrap();
    let n = 400;
    let t0 = Instant::now();
    let mut first_line = 0;
    for i in 0..n {
        let up = hangar_agent::LogUpload {
            fence: lease.fence,
            chunk: i,
            first_line,
            step: Some(0),
            text: chunk.clone(),
        };
        first_line += chunk.lines().count() as i64;
        client.upload_logs(job.id, &up).await.unwrap();
    }
    let mb = (chunk.len() * n as usize) as f64 / 1e6;
    report(
        "log ingestion through the agent HTTP API (masked)",
        mb / t0.elapsed().as_secs_f64(),
        "MB/s",
        50.0,
        true,
    );
    b.server.stop().await;
}

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

async fn run_page() {
    let Some(chrome) = chromium() else {
        println!("run page with 100,000 log lines: SKIPPED (install chromium)");
        return;
    };
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n"
        .to_string();
    let (dir, sha) = repo(&[(".github/workflows/ci.yml", wf)]);
    let b = start(0).await;
    b.register("bench/page", dir.path()).await;
    let v = b.push("bench/page", &sha, "page").await;
    let run_id = v["runs"][0].as_i64().unwrap();
    let store = b.server.app.store.clone();
    let job = store.jobs_of_run(run_id).unwrap().remove(0);
    let mut line_no = 0i64;
    for c in 0..100 {
        let mut text = String::new();
        for _ in 0..1000 {
            text.push_str(&format!(
                "line {line_no}: building target/debug/deps/something-{c}.rlib with some detail\n"
            ));
            line_no += 1;
        }
        store
            .append_log_chunk(job.id, 1, c, c * 1000, &text)
            .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let (to_fifo, from_fifo) = (tmp.path().join("in"), tmp.path().join("out"));
    for f in [&to_fifo, &from_fifo] {
        assert!(Command::new("mkfifo").arg(f).status().unwrap().success());
    }
    let script = format!(
        "exec '{chrome}' --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
         --disable-component-update --disable-sync --user-data-dir='{}' --remote-debugging-pipe about:blank 3<'{}' 4>'{}'",
        tmp.path().join("profile").display(),
        to_fifo.display(),
        from_fifo.display()
    );
    let mut browser = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .open(&to_fifo)
        .unwrap();
    let mut from = BufReader::new(std::fs::File::open(&from_fifo).unwrap());
    let mut next = 0u64;
    let mut call = |method: &str, params: Value, session: Option<&str>| -> Value {
        next += 1;
        let mut msg = json!({"id": next, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        to.write_all(msg.to_string().as_bytes()).unwrap();
        to.write_all(b"\0").unwrap();
        loop {
            let mut buf = Vec::new();
            from.read_until(0, &mut buf).unwrap();
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == next {
                return v["result"].clone();
            }
        }
    };
    let ready = "(() => { const c = document.querySelector('#log-count'); const rows = document.querySelectorAll('#log .row').length; \
                 return c && c.textContent === '100000 lines' && rows > 10 ? performance.now() : 0; })()";
    let mut samples = Vec::new();
    for i in 0..6 {
        // Set the token first (it lives in localStorage), then open the run page fresh.
        // A fresh browser context and tab each time: a cold cache, no connections
        // left over from the previous load.
        let page = format!(
            "{}/ui/#/runs/{run_id}?token={}&n={i}",
            b.server.url(),
            b.token
        );
        let ctx = call("Target.createBrowserContext", json!({}), None)["browserContextId"].clone();
        let target = call(
            "Target.createTarget",
            json!({"url": "about:blank", "browserContextId": ctx}),
            None,
        )["targetId"]
            .clone();
        let session = call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
            None,
        )["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        call("Page.navigate", json!({"url": page}), Some(&session));
        let t0 = Instant::now();
        loop {
            let r = call(
                "Runtime.evaluate",
                json!({"expression": ready, "returnByValue": true}),
                Some(&session),
            );
            let at = r["result"]["value"].as_f64().unwrap_or(0.0);
            if at > 0.0 {
                samples.push(at);
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let r = call(
                    "Runtime.evaluate",
                    json!({"expression": "location.href + ' | ' + document.body.innerText.slice(0, 400)", "returnByValue": true}),
                    Some(&session),
                );
                panic!("the run page never showed 100,000 lines: {r}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        call("Target.closeTarget", json!({"targetId": target}), None);
        call(
            "Target.disposeBrowserContext",
            json!({"browserContextId": ctx}),
            None,
        );
    }
    let _ = browser.kill();
    let _ = browser.wait();
    samples.remove(0); // first load also compiles the page's script
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    report(
        "run page with 100,000 log lines: navigation -> rendered, median",
        samples[samples.len() / 2],
        "ms",
        1000.0,
        false,
    );
    b.server.stop().await;
}

#[tokio::main]
async fn main() {
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let want = |n: &str| only.as_deref().is_none_or(|o| o == n);
    println!(
        "hangar server benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    if want("latency") {
        latency().await;
    }
    if want("live") {
        live_log_latency().await;
    }
    if want("throughput") {
        throughput().await;
    }
    if want("ingestion") {
        ingestion().await;
    }
    if want("page") {
        run_page().await;
    }
}
