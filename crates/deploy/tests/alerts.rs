//! Alert rules against a real service (hangar-testsvc processes) behind the
//! real router, under steady traffic on loopback, notifying a real webhook
//! receiver; and the environment's `/metrics` scraped over HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangar_deploy::Controller;
use hangar_deploy::alerts::{self, AlertPhase};

const SVC: &str = env!("CARGO_BIN_EXE_hangar-testsvc");

/// A webhook receiver: every POST's (headers in lower case, body), answered 200.
fn receiver() -> (SocketAddr, Notices) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut reader = BufReader::new(conn);
                loop {
                    let mut headers = Vec::new();
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                        }
                    }
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send((headers, serde_json::from_slice(&body).unwrap()));
                    let _ = out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (addr, rx)
}

/// Requests every 10 ms until stopped (each on a new connection: the load is
/// not what is tested, the router's counting is).
fn traffic(addr: SocketAddr) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60); // hard bound
        while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
                let _ = s.read_to_end(&mut Vec::new());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    stop
}

fn write_project(dir: &Path, hook: SocketAddr, metrics: u16, port: u16) {
    let fail = dir.join("fail");
    let yml = format!(
        "services:
  api:
    run: {SVC}
    env: {{ TESTSVC_VERSION: v1, TESTSVC_FAIL_FILE: {fail} }}
    health: {{ path: /health, interval: 200ms, timeout: 500ms, deadline: 5s }}
    stop: {{ drain: 100ms, timeout: 2s }}
environments:
  prod:
    listen: {{ api: 127.0.0.1:{port} }}
    metrics_listen: 127.0.0.1:{metrics}
    alerts:
      webhook: http://{hook}/hook
      # A variable cargo sets for every test process: the key is known to the test.
      secret: CARGO_PKG_NAME
      interval: 100ms
      rules:
        errors: {{ service: api, kind: error_rate, threshold: 20%, for: 1s, window: 1s, severity: critical }}
        muted: {{ kind: error_rate, threshold: 20%, for: 1s, window: 1s }}
        idle: {{ service: api, kind: no_traffic, for: 1s, window: 1s }}
",
        fail = fail.display()
    );
    std::fs::write(dir.join("hangar.yml"), yml).unwrap();
}

type Notices = mpsc::Receiver<(Vec<(String, String)>, serde_json::Value)>;

/// The next notice (within 15 s), waited for off the runtime's threads.
async fn wait_notice(
    rx: Notices,
    what: &'static str,
) -> ((Vec<(String, String)>, serde_json::Value), Notices) {
    tokio::task::spawn_blocking(move || {
        let n = rx
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("no {what} notice within 15 s"));
        (n, rx)
    })
    .await
    .unwrap()
}

fn phase(env_dir: &Path, rule: &str) -> Option<AlertPhase> {
    alerts::list(env_dir)
        .0
        .into_iter()
        .find(|r| r.rule == rule)
        .map(|r| r.phase)
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The first value of a sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_service_fires_after_for_and_resolves_and_a_silenced_rule_notifies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, notices) = receiver();
    let metrics_port = hangar_testkit::free_port();
    write_project(dir.path(), hook, metrics_port, hangar_testkit::free_port());
    let data = dir.path().join(".hangar");
    let env_dir = data.join("envs").join("prod");
    // Silenced before the controller even runs: `hangar alerts silence` needs none.
    alerts::silence(&env_dir, "muted", Duration::from_secs(3600)).unwrap();
    let ctl = Controller::open(dir.path(), &data, "prod").await.unwrap();
    ctl.start_all(false).await.unwrap();
    let addr = ctl.listen_addr("api").unwrap();
    let stop = traffic(addr);

    // Healthy traffic for longer than the window and `for:`: nothing fires.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        notices.try_recv().is_err(),
        "a healthy service notified something"
    );
    assert_eq!(phase(&env_dir, "errors"), Some(AlertPhase::Inactive));
    assert_eq!(phase(&env_dir, "idle"), Some(AlertPhase::Inactive));

    // The service starts answering 500.
    std::fs::write(dir.path().join("fail"), "").unwrap();
    let failing_since = Instant::now();
    let ((headers, firing), notices) = wait_notice(notices, "firing").await;
    let fired_after = failing_since.elapsed();
    assert_eq!(firing["status"], "firing", "{firing}");
    assert_eq!(firing["rule"], "errors", "{firing}");
    assert_eq!(firing["service"], "api");
    assert_eq!(firing["env"], "prod");
    assert_eq!(firing["severity"], "critical");
    assert_eq!(firing["kind"], "error_rate");
    assert_eq!(firing["threshold"], "20%");
    // Not before the condition held for `for: 1s` (plus some of the window to cross 20%).
    assert!(
        fired_after >= Duration::from_secs(1),
        "fired after {fired_after:?}"
    );
    let value: f64 = firing["value"]
        .as_str()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(value > 20.0, "{firing}");
    // Signed with the key the `secret:` variable holds, over the exact body.
    let body = serde_json::to_vec(&firing).unwrap();
    let sig = headers
        .iter()
        .find(|(k, _)| k == "x-hangar-signature-256")
        .map(|(_, v)| v.clone())
        .expect("no signature header");
    let key = std::env::var("CARGO_PKG_NAME").unwrap();
    assert_eq!(sig, alerts::signature(&key, &body));
    assert_eq!(phase(&env_dir, "errors"), Some(AlertPhase::Firing));
    // The silenced rule fires too, but says nothing.
    assert_eq!(phase(&env_dir, "muted"), Some(AlertPhase::Firing));

    // The router's own numbers on /metrics agree: 5xx answers were counted.
    let text = scrape(format!("127.0.0.1:{metrics_port}").parse().unwrap());
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let five = text
        .lines()
        .find(|l| l.starts_with("hangar_router_requests_total") && l.contains("code=\"5xx\""))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .unwrap();
    assert!(five >= 10.0, "{five} 5xx answers on /metrics");
    assert_eq!(
        sample(&text, "hangar_instances{env=\"prod\",service=\"api\""),
        1.0,
        "one instance up"
    );

    // The controller restarts while the service still fails: the alert is
    // still firing and is not announced a second time.
    drop(ctl);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ctl = Controller::open(dir.path(), &data, "prod").await.unwrap();
    ctl.start_all(false).await.unwrap();
    assert_eq!(ctl.listen_addr("api"), Some(addr));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(phase(&env_dir, "errors"), Some(AlertPhase::Firing));
    let again: Vec<serde_json::Value> = notices.try_iter().map(|(_, b)| b).collect();
    assert!(
        again.is_empty(),
        "announced again after a restart: {again:?}"
    );

    // Fixed: the error rate falls under the threshold and the alert resolves.
    std::fs::remove_file(dir.path().join("fail")).unwrap();
    let ((_, resolved), notices) = wait_notice(notices, "resolved").await;
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["rule"], "errors", "{resolved}");
    assert!(resolved["resolved_at_ms"].as_u64().is_some());
    assert_eq!(phase(&env_dir, "errors"), Some(AlertPhase::Resolved));

    // No traffic: `idle` fires (it is not silenced) and nothing of `muted` ever came.
    stop.store(true, Ordering::Relaxed);
    let (idle, notices) = wait_notice(notices, "no traffic").await;
    assert_eq!(idle.1["rule"], "idle", "{}", idle.1);
    assert_eq!(idle.1["status"], "firing");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every announcement is in the environment's event log too (what a
    // server watching the project relays), in order, the same bodies.
    let (logged, end) = alerts::events_since(&env_dir, 0);
    let statuses: Vec<(String, String)> = logged
        .iter()
        .map(|e| {
            (
                e["rule"].as_str().unwrap().into(),
                e["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("errors".to_string(), "firing".to_string()),
            ("errors".into(), "resolved".into()),
            ("idle".into(), "firing".into())
        ],
        "{logged:?}"
    );
    assert_eq!(logged[0], firing);
    assert_eq!(alerts::events_since(&env_dir, end).0.len(), 0);
    assert_eq!(end, alerts::events_end(&env_dir));
    let rest: Vec<serde_json::Value> = notices.try_iter().map(|(_, b)| b).collect();
    assert!(
        rest.iter().all(|n| n["rule"] != "muted"),
        "the silenced rule notified: {rest:?}"
    );
    ctl.shutdown().await;
}
