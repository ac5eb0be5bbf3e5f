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
