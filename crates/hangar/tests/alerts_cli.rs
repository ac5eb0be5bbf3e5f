//! Alerts as a user meets them: `hangar deploy` starts the environment (its
//! controller and router processes), a service starts answering 500s, the
//! webhook in hangar.yml (a real HTTP receiver here) gets `firing` after
//! `for:` and `resolved` once it is fixed, `hangar alerts` lists it, a
//! silenced rule notifies nothing, and the router process serves `/metrics`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common;

use common::free_port;

const HANGAR: &str = env!("CARGO_BIN_EXE_hangar");

const SERVICE: &str = r#"import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        failing = self.path != "/health" and os.path.exists(os.environ["FAIL_FILE"])
        body = b"failing\n" if failing else b"ok\n"
        self.send_response(500 if failing else 200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn project(dir: &Path, port: u16, metrics: u16, hook: SocketAddr) {
    std::fs::write(dir.join("server.py"), SERVICE).unwrap();
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            "services:
  api:
    run: python3 {server}
    env: {{ FAIL_FILE: {fail} }}
    health: {{ path: /health, interval: 200ms, timeout: 1s, deadline: 20s }}
    stop: {{ drain: 100ms, timeout: 2s }}
environments:
  prod:
    listen: {{ api: 127.0.0.1:{port} }}
    metrics_listen: 127.0.0.1:{metrics}
    alerts:
      webhook: http://{hook}/alerts
      interval: 200ms
      rules:
        api-errors: {{ service: api, kind: error_rate, threshold: 10%, for: 1s, window: 1s, severity: critical }}
        api-errors-muted: {{ service: api, kind: error_rate, threshold: 10%, for: 1s, window: 1s }}
",
            server = dir.join("server.py").display(),
            fail = dir.join("fail").display(),
        ),
    )
    .unwrap();
}

fn hangar(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(HANGAR)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every POST's JSON body, answered 200.
fn receiver() -> (SocketAddr, mpsc::Receiver<serde_json::Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send(serde_json::from_slice(&body).unwrap());
                    let _ = out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (addr, rx)
}

fn traffic(port: u16) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(90); // hard bound
        while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
                let _ = s.read_to_end(&mut Vec::new());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    stop
}

/// Stops the environment when the test ends, passed or failed.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = hangar(self.0, &["down", "prod"]);
    }
}

#[test]
fn a_service_that_starts_failing_fires_its_alert_and_resolves_when_fixed() {
    if !common::have_python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (port, metrics) = (free_port(), free_port());
    let (hook, notices) = receiver();
    project(dir, port, metrics, hook);

    // Rules are checked by name, with a suggestion.
    let (code, _, err) = hangar(
        dir,
        &["alerts", "silence", "prod", "api-erors", "--for", "1h"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `api-errors`?"), "{err}");
    let (code, out, err) = hangar(
        dir,
        &[
            "alerts",
            "silence",
            "prod",
            "api-errors-muted",
            "--for",
            "1h",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("silenced for 1h"), "{out}");

    let _down = Down(dir);
    let (code, _, err) = hangar(dir, &["deploy", "prod"]);
    assert_eq!(code, 0, "{err}");
    let stop = traffic(port);
    std::thread::sleep(Duration::from_millis(2000));
    assert!(notices.try_recv().is_err(), "a healthy service notified");
    let (code, out, _) = hangar(dir, &["alerts", "prod"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("api-errors"), "{out}");

    std::fs::write(dir.join("fail"), "").unwrap();
    let t0 = Instant::now();
    let firing = notices
        .recv_timeout(Duration::from_secs(20))
        .expect("no firing notice");
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "fired before `for:`"
    );
    assert_eq!(firing["status"], "firing", "{firing}");
    assert_eq!(firing["rule"], "api-errors", "{firing}");
    assert_eq!(firing["severity"], "critical");
    let (code, out, _) = hangar(dir, &["alerts", "prod"]);
    assert_eq!(code, 1, "something fires: exit 1\n{out}");
    let line = |rule: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(rule))
            .unwrap_or_else(|| panic!("no {rule} in\n{out}"))
            .to_string()
    };
    assert!(line("api-errors").contains("FIRING"), "{out}");
    assert!(line("api-errors-muted").contains("FIRING"), "{out}");
    assert!(
        line("api-errors-muted").contains("(silenced, 60m left)"),
        "{out}"
    );

    // The router process serves the environment's numbers.
    let mut s = TcpStream::connect(("127.0.0.1", metrics)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let five: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("hangar_router_requests_total{env=\"prod\",service=\"api\"")
                && l.contains("code=\"5xx\"")
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no 5xx count in\n{text}"));
    assert!(five >= 10.0, "{five}");

    std::fs::remove_file(dir.join("fail")).unwrap();
    let resolved = notices
        .recv_timeout(Duration::from_secs(20))
        .expect("no resolved notice");
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["rule"], "api-errors", "{resolved}");
    let (code, out, _) = hangar(dir, &["alerts", "prod"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("resolved"), "{out}");
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(600));
    let rest: Vec<serde_json::Value> = notices.try_iter().collect();
    assert!(
        rest.iter().all(|n| n["rule"] != "api-errors-muted"),
        "the silenced rule notified: {rest:?}"
    );
}
