//! The router's measurements in Prometheus' text exposition format (0.0.4),
//! and the small HTTP listener a scraper reads them from.
//!
//! Written by hand rather than with the `prometheus` crate: the counters
//! already live in [`crate::VersionStats`] (lock-free, one `fetch_add` per
//! request), and the format is a few lines of text; a registry crate would
//! duplicate every counter and add its own locks and dependency tree for what
//! is a `format!` per sample. The listener is a plain thread for the same
//! reason: a scrape every few seconds needs no event loop, and it keeps
//! scrapes off the threads that serve traffic.
//!
//! Every metric name exported is in [`METRICS`]: the Grafana dashboard in the
//! repository is checked against that list.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Router;
use crate::stats::CLASSES;

/// The histogram's bounds in seconds (Prometheus' default buckets, plus 1 ms
/// and 2.5 ms, since a local service often answers in under 5 ms).
pub const LATENCY_BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric family the router exports: (name, type, help).
pub const METRICS: [(&str, &str, &str); 7] = [
    (
        "hangar_router_requests_total",
        "counter",
        "Requests answered by a version, by status class (code=\"2xx\").",
    ),
    (
        "hangar_router_connect_errors_total",
        "counter",
        "Requests that never reached an instance of a version (refused or reset before an answer).",
    ),
    (
        "hangar_router_request_duration_seconds",
        "histogram",
        "Time from forwarding a request to an instance to the start of its answer.",
    ),
    (
        "hangar_router_weight",
        "gauge",
        "The relative share of new clients the router gives a version.",
    ),
    (
        "hangar_router_backends",
        "gauge",
        "Instances of a version in the routing table (healthy ones).",
    ),
    (
        "hangar_instances",
        "gauge",
        "Instances of a version the controller runs, by state (up = healthy, down = not).",
    ),
    (
        "hangar_instance_restarts_total",
        "counter",
        "Restarts of a version's instances after they exited, since the controller started them.",
    ),
];

/// What the controller knows of one version's instances; the router only
/// repeats it (the supervisor is in the controller).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceGauge {
    pub version: String,
    pub up: u32,
    pub down: u32,
    pub restarts: u64,
}

/// `"` `\` and newlines escaped, as the text format requires of label values.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as Prometheus writes one (`+Inf`, no exponent for plain bounds).
fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// One version of one service as the exposition shows it: its labels
/// (`env`, `service`, `version`, plus whatever a merging scraper adds in
/// front, such as `hangar serve`'s `source`) and its numbers at one moment.
/// It is also what the router process answers a `Series` request with, so
/// a server merging several environments renders from the same data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub snapshot: crate::Snapshot,
    pub weight: u32,
    pub backends: usize,
    #[serde(default)]
    pub instances: InstanceGauge,
}

/// The series of every service of one environment, each version once.
pub fn series(env: &str, services: &[(&str, &Router)]) -> Vec<Series> {
    let mut out = Vec::new();
    for (service, router) in services {
        let mut versions = router.versions();
        versions.sort();
        let table = router.table();
        let gauges = router.instance_gauges();
        for version in versions {
            let route = table.routes.iter().find(|r| r.version == version);
            out.push(Series {
                snapshot: router.stats(&version).snapshot(),
                weight: route.map_or(0, |r| r.weight),
                backends: route.map_or(0, |r| r.backends.len()),
                instances: gauges
                    .iter()
                    .find(|g| g.version == version)
                    .cloned()
                    .unwrap_or_default(),
                labels: vec![
                    ("env".into(), env.to_string()),
                    ("service".into(), service.to_string()),
                    ("version".into(), version),
                ],
            });
        }
    }
    out
}

/// Which text format an exposition is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus' text format 0.0.4 (the router's own `/metrics`).
    Prometheus,
    /// OpenMetrics 1.0 (`hangar serve`'s `/metrics`): a counter family is
    /// named without its samples' `_total` suffix. The caller writes `# EOF`.
    OpenMetrics,
}

/// The exposition of every service of one environment, families in the order of [`METRICS`].
pub fn render(env: &str, services: &[(&str, &Router)]) -> String {
    render_series(&series(env, services), Format::Prometheus)
}

/// Writes `series`, families in the order of [`METRICS`], each family's
/// samples together; a series whose labels were already written is skipped
/// (two sources must not make one series twice).
pub fn render_series(series: &[Series], format: Format) -> String {
    let mut seen = std::collections::HashSet::new();
    let series: Vec<(String, &Series)> = series
        .iter()
        .filter_map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect::<Vec<_>>()
                .join(",");
            seen.insert(labels.clone()).then_some((labels, s))
        })
        .collect();
    let mut out = String::new();
    for (name, kind, help) in METRICS {
        let family = match format {
            Format::OpenMetrics if kind == "counter" => name.trim_end_matches("_total"),
            _ => name,
        };
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for (l, s) in &series {
            let snap = &s.snapshot;
            match name {
                "hangar_router_requests_total" => {
                    let at = created(format, snap);
                    for (class, count) in CLASSES.iter().zip(snap.classes) {
                        let _ = writeln!(out, "{name}{{{l},code=\"{class}\"}} {count}");
                        if let Some(at) = &at {
                            // A series' samples together, as OpenMetrics asks.
                            let _ = writeln!(out, "{family}_created{{{l},code=\"{class}\"}} {at}");
                        }
                    }
                }
                "hangar_router_connect_errors_total" => {
                    let _ = writeln!(out, "{name}{{{l}}} {}", snap.connect_errors);
                    if let Some(at) = created(format, snap) {
                        let _ = writeln!(out, "{family}_created{{{l}}} {at}");
                    }
                }
                "hangar_router_request_duration_seconds" => {
                    for bound in LATENCY_BOUNDS {
                        let within = snap.answered_within((bound * 1e6) as u64);
                        let _ =
                            writeln!(out, "{name}_bucket{{{l},le=\"{}\"}} {within}", float(bound));
                    }
                    let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", snap.requests);
                    let _ = writeln!(
                        out,
                        "{name}_sum{{{l}}} {}",
                        float(snap.sum_micros as f64 / 1e6)
                    );
                    let _ = writeln!(out, "{name}_count{{{l}}} {}", snap.requests);
                    if let Some(at) = created(format, snap) {
                        let _ = writeln!(out, "{name}_created{{{l}}} {at}");
                    }
                }
                "hangar_router_weight" => {
                    let _ = writeln!(out, "{name}{{{l}}} {}", s.weight);
                }
                "hangar_router_backends" => {
                    let _ = writeln!(out, "{name}{{{l}}} {}", s.backends);
                }
                "hangar_instances" => {
                    let _ = writeln!(out, "{name}{{{l},state=\"up\"}} {}", s.instances.up);
                    let _ = writeln!(out, "{name}{{{l},state=\"down\"}} {}", s.instances.down);
                }
                "hangar_instance_restarts_total" => {
                    let _ = writeln!(out, "{name}{{{l}}} {}", s.instances.restarts);
                }
                _ => {}
            }
        }
    }
    out
}

/// The `_created` sample's value of a series' counters (OpenMetrics only:
/// the 0.0.4 text format has no such sample, a reader would take it for a
/// metric of its own): the Unix time, in seconds, its router started
/// counting. A restarted router's counters start again from zero with a
/// later `_created`, so a reader tells a restart from a drop, and Prometheus
/// (with `created-timestamp-zero-ingestion`) records the zero at the
/// restart. Counters are not carried over a restart instead: what a killed
/// router counted since it last saved them would be lost anyway, and a
/// counter that resets with its process is what every Prometheus client
/// library does. `hangar_instance_restarts_total` has none: the controller
/// sums it over instances that come and go.
fn created(format: Format, snap: &crate::Snapshot) -> Option<String> {
    (format == Format::OpenMetrics && snap.created_ms > 0)
        .then(|| float(snap.created_ms as f64 / 1000.0))
}

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scrapes answered at once; more connections are closed unanswered (a
/// scraper that holds connections open cannot pile up threads).
const MAX_SCRAPES: usize = 8;

/// A running metrics listener; stops when dropped.
pub struct MetricsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// What a metrics listener serves at `GET /metrics`.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` on `addr` from a thread of its own.
pub fn serve(addr: SocketAddr, render: Render) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("router-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                if busy.fetch_add(1, Ordering::AcqRel) >= MAX_SCRAPES {
                    busy.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let render = render.clone();
                let busy = busy.clone();
                let spawned = std::thread::Builder::new()
                    .name("router-scrape".into())
                    .spawn(move || {
                        answer(conn, &render);
                        busy.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    // The closure (and its decrement) was dropped unrun.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })?;
    Ok(MetricsServer { addr, stop })
}

/// One request, one answer, then the connection is closed.
fn answer(mut conn: TcpStream, render: &Render) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // Only the request head matters; 8 KiB is more than any scraper sends.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body, kind) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", render(), CONTENT_TYPE),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "the router's metrics are at /metrics\n".to_string(),
            "text/plain",
        ),
        _ => (
            "405 Method Not Allowed",
            "GET /metrics\n".to_string(),
            "text/plain",
        ),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        resp.extend_from_slice(body.as_bytes());
    }
    let _ = conn.write_all(&resp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let router = Router::new("web");
        router.stats("v1").record(Duration::from_millis(3), 200);
        let text = render("prod", &[("web", &router)]);
        for (name, kind, _) in METRICS {
            let help = text.find(&format!("# HELP {name} ")).unwrap();
            let ty = text.find(&format!("# TYPE {name} {kind}\n")).unwrap();
            let sample = text.find(&format!("\n{name}")).unwrap();
            assert!(help < ty && ty < sample, "{name}");
        }
        assert!(text.contains(
            "hangar_router_request_duration_seconds_bucket{env=\"prod\",service=\"web\",version=\"v1\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "hangar_router_request_duration_seconds_bucket{env=\"prod\",service=\"web\",version=\"v1\",le=\"0.0025\"} 0\n"
        ));
    }
}
