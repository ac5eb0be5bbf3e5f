//! Rollouts of a real service (hangar-testsvc processes) behind the real router,
//! under continuous load from keep-alive clients on loopback (bounded in time).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hangar_deploy::state::Outcome;
use hangar_deploy::{Controller, DeployRequest};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const SVC: &str = env!("CARGO_BIN_EXE_hangar-testsvc");

fn write_project(dir: &Path, env_yaml: &str, version: &str, extra_env: &str) {
    let yml = format!(
        "services:\n  api:\n    run: {SVC}\n    env: {{ TESTSVC_VERSION: {version}{extra_env} }}\n    instances: 2\n    health: {{ path: /health, interval: 200ms, timeout: 500ms, deadline: 3s }}\n    stop: {{ drain: 300ms, timeout: 2s }}\nenvironments:\n  prod:\n{env_yaml}"
    );
    std::fs::write(dir.join("hangar.yml"), yml).unwrap();
}

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    non2xx: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
        let load = Arc::new(Load::default());
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build_http();
        let tasks = (0..clients)
            .map(|_| {
                let load = load.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let uri: hyper::Uri = format!("http://{addr}/").parse().unwrap();
                    let deadline = Instant::now() + Duration::from_secs(60); // hard bound
                    while !load.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match client.get(uri.clone()).await {
                            Ok(resp) => {
                                let ok = resp.status().is_success();
                                let _ = resp.into_body().collect().await;
                                if ok { &load.ok } else { &load.non2xx }
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                load.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        (load, tasks)
    }

    async fn finish(self: &Arc<Self>, tasks: Vec<tokio::task::JoinHandle<()>>) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.non2xx.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

async fn open(dir: &Path) -> Arc<Controller> {
    let ctl = Controller::open(dir, &dir.join(".hangar"), "prod")
        .await
        .unwrap();
    ctl.start_all(false).await.unwrap();
    ctl
}

async fn body(addr: SocketAddr) -> String {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .get(format!("http://{addr}/").parse().unwrap())
        .await
        .unwrap();
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_rolling_and_rollback_under_load_lose_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let bg = "    strategy: blue-green\n    blue_green: { scale_down_delay: 1s }\n";
    write_project(dir.path(), bg, "v1", "");
    let ctl = open(dir.path()).await;
    let addr = ctl.listen_addr("api").unwrap();
    assert_eq!(body(addr).await, "v1");

    let t0 = Instant::now();
    let (load, tasks) = Load::start(addr, 8);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // blue-green to v2
    write_project(dir.path(), bg, "v2", "");
    let recs = ctl.deploy(DeployRequest::default()).await.unwrap();
    assert_eq!(recs[0].outcome, Outcome::Succeeded, "{:?}", recs[0].events);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(body(addr).await, "v2");

    // rolling to v3
    write_project(
        dir.path(),
        "    strategy: rolling\n    rolling: { max_surge: 1, max_unavailable: 0 }\n",
        "v3",
        "",
    );
    let recs = ctl.deploy(DeployRequest::default()).await.unwrap();
    assert_eq!(recs[0].outcome, Outcome::Succeeded, "{:?}", recs[0].events);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(body(addr).await, "v3");

    // rollback to v2 (cold: its instances were stopped after the scale-down delay)
    let t_rb = Instant::now();
    let recs = ctl.rollback(None, None).await.unwrap();
    let rollback_ms = t_rb.elapsed().as_millis();
    assert_eq!(
        recs[0].version.split('-').next(),
        Some("r2"),
        "{:?}",
        recs[0]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(body(addr).await, "v2");

    let (ok, non2xx, errors) = load.finish(tasks).await;
    let rate = ok as f64 / t0.elapsed().as_secs_f64();
    eprintln!(
        "load during blue-green + rolling + rollback: {ok} ok, {non2xx} non-2xx, {errors} socket errors, {rate:.0} req/s; rollback took {rollback_ms} ms"
    );
    assert_eq!(
        (non2xx, errors),
        (0, 0),
        "zero failed requests during deployments"
    );
    assert!(
        rate >= 1000.0,
        "the load must be at least 1000 req/s to mean something (was {rate:.0})"
    );
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_healthy_version_is_rolled_back_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let bg = "    strategy: blue-green\n    blue_green: { scale_down_delay: 0s }\n";
    write_project(dir.path(), bg, "v1", "");
    let ctl = open(dir.path()).await;
    let addr = ctl.listen_addr("api").unwrap();
    let (load, tasks) = Load::start(addr, 4);
    write_project(dir.path(), bg, "v2", ", TESTSVC_NEVER_HEALTHY: 1");
    let recs = ctl.deploy(DeployRequest::default()).await.unwrap();
    let (ok, non2xx, errors) = load.finish(tasks).await;
    let rec = &recs[0];
    assert_eq!(rec.outcome, Outcome::RolledBack);
    let report = rec.events.join("\n");
    assert!(
        report.contains("never became healthy")
            && report.contains("GET /health -> 503")
            && report.contains("api#0"),
        "{report}"
    );
    assert!(
        report.contains("testsvc v2 listening"),
        "the report quotes the instance's last log lines: {report}"
    );
    assert_eq!((non2xx, errors), (0, 0), "{ok} ok");
    assert_eq!(body(addr).await, "v1");
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_canary_is_aborted_at_its_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let canary = "    strategy: canary\n    canary: { steps: [10, 50, 100], interval: 5s, max_error_rate: 5%, min_requests: 50 }\n";
    write_project(dir.path(), canary, "v1", "");
    let ctl = open(dir.path()).await;
    let addr = ctl.listen_addr("api").unwrap();
    let (load, tasks) = Load::start(addr, 8);
    tokio::time::sleep(Duration::from_millis(200)).await;
    write_project(dir.path(), canary, "v2", ", TESTSVC_FAIL_RATE: 0.3");
    let started = Instant::now();
    let recs = ctl.deploy(DeployRequest::default()).await.unwrap();
    let took = started.elapsed();
    let (ok, non2xx, errors) = load.finish(tasks).await;
    let rec = &recs[0];
    assert_eq!(rec.outcome, Outcome::RolledBack, "{:?}", rec.events);
    let log = rec.events.join("\n");
    assert!(
        log.contains("step 10%: r2")
            && log.contains("fails analysis")
            && !log.contains("canary step 50%"),
        "{log}"
    );
    let seen = non2xx as f64 / (ok + non2xx) as f64;
    eprintln!(
        "canary abort after {} ms; clients saw {non2xx} errors in {} requests ({:.3}%), {errors} socket errors",
        took.as_millis(),
        ok + non2xx,
        seen * 100.0
    );
    assert!(
        seen <= 0.10 * 0.30,
        "client-seen error rate {seen} must stay within weight x 30%"
    );
    assert_eq!(errors, 0);
    assert_eq!(body(addr).await, "v1");
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_looping_service_is_backed_off_and_router_survives() {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), "    strategy: rolling\n", "v1", "");
    let ctl = open(dir.path()).await;
    let addr = ctl.listen_addr("api").unwrap();
    // v2 comes up healthy, then crashes after 300 ms, forever.
    write_project(
        dir.path(),
        "    strategy: rolling\n",
        "v2",
        ", TESTSVC_CRASH_AFTER_MS: 300",
    );
    let _ = ctl.deploy(DeployRequest::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = ctl.status();
    let restarts: u32 = status.services[0]
        .instances
        .iter()
        .map(|i| i.restarts)
        .sum();
    assert!(
        restarts >= 2,
        "restarted with backoff: {:?}",
        status.services[0].instances
    );
    assert!(restarts < 20, "backoff keeps restarts bounded: {restarts}");
    // The router still answers (503 when nothing is healthy, never a dead listener).
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .get(format!("http://{addr}/").parse().unwrap())
        .await
        .unwrap();
    assert!(
        resp.status().is_success()
            || resp.status().as_u16() == 503
            || resp.status().as_u16() == 502
    );
    ctl.shutdown().await;
}

/// Runs `scenario` on its own runtime, bounded: a controller that deadlocks
/// blocks a worker thread for ever, which a `#[tokio::test]` would wait on.
fn bounded<F: std::future::Future<Output = ()>>(secs: u64, scenario: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async { tokio::time::timeout(Duration::from_secs(secs), scenario).await });
    rt.shutdown_background();
    r.unwrap_or_else(|_| panic!("the scenario did not finish in {secs} s"));
}

/// Waits until the service's rollout text contains `what`.
async fn rollout_reaches(ctl: &Controller, what: &str) {
    let t0 = Instant::now();
    loop {
        let text = ctl.status().services[0].rollout.clone().unwrap_or_default();
        if text.contains(what) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "rollout never reached `{what}` (now: `{text}`)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deploys in the background, waits until the rollout pauses, sends `signal`
/// and returns the deployment's outcome.
async fn deploy_then_signal(
    ctl: &Arc<Controller>,
    paused: &str,
    addr: SocketAddr,
    signal: hangar_deploy::Signal,
) -> Outcome {
    let deploying = {
        let ctl = ctl.clone();
        tokio::spawn(async move { ctl.deploy(DeployRequest::default()).await })
    };
    // A trickle of traffic from the start: too little for a verdict, so a
    // canary pauses (with none at all it would pass on health alone).
    let trickle = tokio::spawn(async move {
        loop {
            let _ = body(addr).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    rollout_reaches(ctl, paused).await;
    ctl.signal(signal).unwrap();
    trickle.abort();
    let recs = tokio::time::timeout(Duration::from_secs(15), deploying)
        .await
        .expect("the rollout ends after the human's word (no deadlock)")
        .unwrap()
        .unwrap();
    recs[0].outcome
}

#[test]
fn promote_and_abort_of_paused_blue_green_and_canary_rollouts() {
    use hangar_deploy::Signal::{Abort, Promote};
    bounded(120, async {
        let dir = tempfile::tempdir().unwrap();
        let bg = "    strategy: blue-green\n    blue_green: { auto_promote: false, scale_down_delay: 0s }\n";
        write_project(dir.path(), bg, "v1", "");
        let ctl = open(dir.path()).await;
        let addr = ctl.listen_addr("api").unwrap();

        write_project(dir.path(), bg, "v2", "");
        assert_eq!(
            deploy_then_signal(&ctl, "waiting for", addr, Promote).await,
            Outcome::Succeeded
        );
        assert_eq!(body(addr).await, "v2");
        write_project(dir.path(), bg, "v3", "");
        assert_eq!(
            deploy_then_signal(&ctl, "waiting for", addr, Abort).await,
            Outcome::Aborted
        );
        assert_eq!(body(addr).await, "v2");

        let canary = "    strategy: canary\n    canary: { steps: [50, 100], interval: 200ms, step_deadline: 1s, min_requests: 1000 }\n";
        write_project(dir.path(), canary, "v4", "");
        assert_eq!(
            deploy_then_signal(&ctl, "paused", addr, Promote).await,
            Outcome::Succeeded
        );
        assert_eq!(body(addr).await, "v4");
        write_project(dir.path(), canary, "v5", "");
        assert_eq!(
            deploy_then_signal(&ctl, "paused", addr, Abort).await,
            Outcome::Aborted
        );
        assert_eq!(body(addr).await, "v4");
        ctl.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_of_a_service_without_traffic_is_promoted_on_health_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A step deadline far beyond the test's bound: reaching it would be the bug.
    let canary = "    strategy: canary\n    canary: { steps: [25, 100], interval: 300ms, step_deadline: 10m, min_requests: 20 }\n";
    write_project(dir.path(), canary, "v1", "");
    let ctl = open(dir.path()).await;
    write_project(dir.path(), canary, "v2", "");
    let recs = tokio::time::timeout(
        Duration::from_secs(20),
        ctl.deploy(DeployRequest::default()),
    )
    .await
    .expect("a canary without traffic does not wait for its step deadline")
    .unwrap();
    assert_eq!(recs[0].outcome, Outcome::Succeeded, "{:?}", recs[0].events);
    let log = recs[0].events.join("\n");
    assert!(log.contains("health alone"), "history says why: {log}");
    ctl.shutdown().await;
}

fn releases_of(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join("releases/api"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_what_any_environment_serves_or_rolls_back_to_and_rollback_skips_failed_releases()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".hangar");
    let envs = |version: &str, extra: &str| {
        let yml = format!(
            "services:\n  api:\n    run: {SVC}\n    env: {{ TESTSVC_VERSION: {version}{extra} }}\n    instances: 1\n    health: {{ path: /health, interval: 100ms, timeout: 500ms, deadline: 2s }}\n    stop: {{ drain: 50ms, timeout: 2s }}\nenvironments:\n  prod:\n    strategy: blue-green\n    blue_green: {{ scale_down_delay: 0s }}\n    keep_releases: 2\n  staging:\n    strategy: blue-green\n    blue_green: {{ scale_down_delay: 0s }}\n    keep_releases: 2\n"
        );
        std::fs::write(dir.path().join("hangar.yml"), yml).unwrap();
    };
    // prod: r1 good, r2 fails its health checks (rolled back), r3 good.
    envs("v1", "");
    let prod = Controller::open(dir.path(), &data, "prod").await.unwrap();
    prod.start_all(false).await.unwrap();
    envs("v2", ", TESTSVC_NEVER_HEALTHY: 1");
    let recs = prod.deploy(DeployRequest::default()).await.unwrap();
    assert_eq!(recs[0].outcome, Outcome::RolledBack);
    envs("v3", "");
    let recs = prod.deploy(DeployRequest::default()).await.unwrap();
    assert_eq!(recs[0].outcome, Outcome::Succeeded);
    assert!(
        releases_of(&data).contains(&"r1".to_string()),
        "prod's rollback target r1 is kept: {:?}",
        releases_of(&data)
    );

    // staging deploys three times: prod's stable (r3) and its way back (r1) stay.
    let staging = Controller::open(dir.path(), &data, "staging")
        .await
        .unwrap();
    staging.start_all(false).await.unwrap();
    for v in ["s1", "s2", "s3"] {
        envs(v, "");
        let recs = staging
            .deploy(DeployRequest {
                service: Some("api".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(recs[0].outcome, Outcome::Succeeded);
    }
    let kept = releases_of(&data);
    for v in ["r1", "r3"] {
        assert!(kept.contains(&v.to_string()), "{v} pruned: {kept:?}");
    }
    staging.shutdown().await;

    // Without r1, prod's rollback must not land on r2, which failed.
    let aside = dir.path().join("r1-aside");
    std::fs::rename(data.join("releases/api/r1"), &aside).unwrap();
    let err = prod.rollback(None, None).await;
    assert!(
        err.is_err(),
        "rolled back to a failed release: {:?}",
        err.map(|r| r[0].version.clone())
    );
    std::fs::rename(&aside, data.join("releases/api/r1")).unwrap();
    let recs = prod.rollback(None, None).await.unwrap();
    assert_eq!(recs[0].version, "r1");
    assert_eq!(body(prod.listen_addr("api").unwrap()).await, "v1");
    prod.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_deployment_is_in_history_and_dora() {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), "    strategy: rolling\n", "v1", "");
    let ctl = open(dir.path()).await;
    let history =
        hangar_deploy::state::EnvFiles::new(&dir.path().join(".hangar"), "prod").history();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].strategy, "first");
    assert_eq!(history[0].outcome, Outcome::Succeeded);
    let d = hangar_deploy::dora::compute(
        "prod",
        &history,
        hangar_deploy::supervisor::now_unix(),
        86400,
    );
    assert_eq!(d.deployments, 1);
    // A restart of the same release is not a deployment.
    ctl.shutdown().await;
    drop(ctl);
    let ctl = open(dir.path()).await;
    let history =
        hangar_deploy::state::EnvFiles::new(&dir.path().join(".hangar"), "prod").history();
    assert_eq!(history.len(), 1, "{history:?}");
    ctl.shutdown().await;
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dirty_working_tree_is_not_recorded_as_its_head_commit() {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), "    strategy: rolling\n", "v1", "");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "hangar.yml"]);
    git(dir.path(), &["commit", "-qm", "one"]);
    write_project(dir.path(), "    strategy: rolling\n", "v1-edited", "");
    let ctl = open(dir.path()).await;
    let history =
        hangar_deploy::state::EnvFiles::new(&dir.path().join(".hangar"), "prod").history();
    let rec = &history[0];
    assert!(rec.version.ends_with("-dirty"), "{rec:?}");
    assert!(
        rec.commit.as_deref().unwrap_or("").ends_with("-dirty"),
        "{rec:?}"
    );
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_without_service_deploys_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let write = |api: &str, worker: &str| {
        let yml = format!(
            "services:\n  api:\n    run: {SVC}\n    env: {{ TESTSVC_VERSION: {api} }}\n    health: {{ path: /health, interval: 100ms, timeout: 500ms, deadline: 3s }}\n    stop: {{ drain: 50ms, timeout: 2s }}\n  worker:\n    run: {SVC}\n    env: {{ TESTSVC_VERSION: {worker} }}\n    health: {{ path: /health, interval: 100ms, timeout: 500ms, deadline: 3s }}\n    stop: {{ drain: 50ms, timeout: 2s }}\nenvironments:\n  prod:\n    strategy: rolling\n"
        );
        std::fs::write(dir.path().join("hangar.yml"), yml).unwrap();
    };
    write("a1", "w1");
    // What a service without `artifact:` runs is the project's files, as git lists them.
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join(".gitignore"), ".hangar/\n").unwrap();
    let ctl = open(dir.path()).await;
    write("a2", "w1");
    let recs = ctl.deploy(DeployRequest::default()).await.unwrap();
    let deployed: Vec<&str> = recs.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(deployed, ["api"]);
    let recs = ctl.deploy(DeployRequest::default()).await.unwrap();
    assert!(recs.is_empty(), "nothing changed: {recs:?}");
    // A file of the project changes what both services run.
    std::fs::write(dir.path().join("app.txt"), "new code").unwrap();
    let recs = ctl.deploy(DeployRequest::default()).await.unwrap();
    assert_eq!(recs.len(), 2, "{recs:?}");
    // Named explicitly, a service is deployed even when unchanged.
    let recs = ctl
        .deploy(DeployRequest {
            service: Some("worker".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recs.len(), 1);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_fails_at_once_not_at_the_health_deadline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hangar.yml"),
        "services:\n  api:\n    run: hangar-no-such-command-here --port $PORT\n    health: { path: /health, deadline: 60s }\nenvironments:\n  prod: {}\n",
    )
    .unwrap();
    let ctl = Controller::open(dir.path(), &dir.path().join(".hangar"), "prod")
        .await
        .unwrap();
    let t0 = Instant::now();
    let err = ctl.start_all(false).await.unwrap_err();
    let took = t0.elapsed();
    let text = format!("{err:#}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {text}");
    let history =
        hangar_deploy::state::EnvFiles::new(&dir.path().join(".hangar"), "prod").history();
    let report = history[0].events.join("\n");
    assert!(
        report.contains("command not found") && report.contains("hangar-no-such-command-here"),
        "{report}"
    );
    ctl.shutdown().await;
}

/// Opens a connection through the router switched to the test service's echo
/// protocol (an upgrade, as a WebSocket is one).
async fn upgraded(addr: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("no answer to the upgrade")
            .unwrap();
        assert_eq!(n, 1, "closed: {}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

async fn echo(s: &mut tokio::net::TcpStream, msg: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(msg.as_bytes()).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no echo")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// An upgraded connection (a WebSocket) open across a blue-green deployment:
/// new connections go to the new version at the switch, the open one stays on
/// the old version, whose retirement waits for it (the router counts it in
/// flight) until `stop.drain` passes; stopping the instance then ends it.
#[test]
fn an_open_upgraded_connection_holds_its_version_until_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let drain = Duration::from_secs(2);
    let yml = |v: &str| {
        format!(
            "services:\n  api:\n    run: {SVC}\n    env: {{ TESTSVC_VERSION: {v} }}\n    health: {{ path: /health, interval: 100ms, timeout: 500ms, deadline: 3s }}\n    stop: {{ drain: 2s, timeout: 2s }}\nenvironments:\n  prod:\n    strategy: blue-green\n    blue_green: {{ scale_down_delay: 0s }}\n"
        )
    };
    std::fs::write(dir.path().join("hangar.yml"), yml("v1")).unwrap();
    bounded(60, async move {
        let ctl = open(dir.path()).await;
        let addr = ctl.listen_addr("api").unwrap();
        let mut old = upgraded(addr).await;
        assert_eq!(echo(&mut old, "a").await, "v1:a");

        std::fs::write(dir.path().join("hangar.yml"), yml("v2")).unwrap();
        let deploy = tokio::spawn({
            let ctl = ctl.clone();
            async move { ctl.deploy(DeployRequest::default()).await }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while body(addr).await != "v2" {
            assert!(Instant::now() < deadline, "traffic never switched to v2");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let switched = Instant::now();
        let mut new = upgraded(addr).await;
        assert_eq!(echo(&mut new, "b").await, "v2:b");
        assert_eq!(echo(&mut old, "c").await, "v1:c", "the open one moved");

        let recs = deploy.await.unwrap().unwrap();
        assert_eq!(recs[0].outcome, Outcome::Succeeded, "{:?}", recs[0].events);
        assert!(
            switched.elapsed() >= drain - Duration::from_millis(300),
            "v1 was retired {:?} after the switch, with a connection open and a {drain:?} drain",
            switched.elapsed()
        );
        // v1 is stopped: its connection ended with it.
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = old.write_all(b"d").await;
            old.read(&mut buf).await.unwrap_or(0)
        })
        .await
        .expect("the old version's connection outlived its instance");
        assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
        assert_eq!(echo(&mut new, "e").await, "v2:e");
        ctl.shutdown().await;
    });
}
