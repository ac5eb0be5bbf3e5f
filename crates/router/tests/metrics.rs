//! The router's Prometheus exposition, scraped over real HTTP from the router
//! process's own code path (the daemon, driven over its control socket) after
//! a known number of requests to real backends, and read by a strict parser.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hangar_router::daemon::{Link, Request, RouteSpec, ServiceSpec};
use hangar_router::metrics::{InstanceGauge, METRICS};

/// A backend answering every request with `status` after `delay`.
fn backend(status: u16, delay: Duration) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut acc = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    acc.extend_from_slice(&buf[..n]);
                    while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                        acc.drain(..end + 4);
                        std::thread::sleep(delay);
                        let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                        if s.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// One request on a fresh connection; the status.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        head.to_string(),
        body.to_string(),
    )
}

use hangar_testkit::exposition::{Sample, check_histograms, name_ok, parse_sample};

/// Prometheus' text format 0.0.4, read strictly: every sample's family has
/// `# HELP` and `# TYPE` before it, a family's samples are together, names
/// and label names are valid, label values are properly escaped, no series
/// twice, histograms cumulative with `+Inf` equal to `_count`.
fn parse(text: &str) -> Result<(BTreeMap<String, String>, Vec<Sample>), String> {
    let mut types = BTreeMap::new();
    let mut helped = HashSet::new();
    let mut done_families = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let mut seen = HashSet::new();
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut p = rest.splitn(3, ' ');
            let (kw, name) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
            if !name_ok(name) {
                return Err(at(format!("bad metric name `{name}`")));
            }
            match kw {
                "HELP" if !helped.insert(name.to_string()) => {
                    return Err(at("second HELP".into()));
                }
                "TYPE" => {
                    let ty = p.next().unwrap_or("");
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty) {
                        return Err(at(format!("bad type `{ty}`")));
                    }
                    if types.insert(name.to_string(), ty.to_string()).is_some() {
                        return Err(at("second TYPE".into()));
                    }
                }
                _ => {}
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let (name, labels, value) = parse_sample(line).map_err(at)?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&name)
            .to_string();
        if !types.contains_key(&family) || !helped.contains(&family) {
            return Err(at(format!("sample of `{family}` before its HELP and TYPE")));
        }
        if current.as_deref() != Some(&family) {
            if let Some(prev) = current.replace(family.clone()) {
                done_families.insert(prev);
            }
            if done_families.contains(&family) {
                return Err(at(format!("samples of `{family}` are not together")));
            }
        }
        if !seen.insert(format!("{name}{labels:?}")) {
            return Err(at("the same series twice".into()));
        }
        samples.push((name, labels, value));
    }
    check_histograms(&types, &samples)?;
    Ok((types, samples))
}

fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    found[0]
}

#[test]
fn the_strict_parser_refuses_what_prometheus_refuses() {
    let ok = "# HELP a x\n# TYPE a counter\na{b=\"c\\\"d\"} 1\n";
    assert!(parse(ok).is_ok());
    for bad in [
        "a 1\n",                                                      // no TYPE
        "# HELP a x\n# TYPE a counter\na{b=\"c\"d\"} 1\n",            // unescaped quote
        "# HELP a x\n# TYPE a counter\na{b=\"c\"} 1\na{b=\"c\"} 2\n", // twice
        "# HELP a x\n# TYPE a counter\na 1",                          // no final newline
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad}");
    }
}

#[test]
fn a_scrape_of_the_router_process_counts_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().to_path_buf();
    // The router process's own loop, on a thread of the test (it never returns).
    std::thread::spawn(move || hangar_router::daemon::run(&env_dir));
    let link = Link::new(dir.path());
    for _ in 0..200 {
        if link.ping().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let ok = backend(200, Duration::from_millis(2));
    let failing = backend(500, Duration::ZERO);
    let missing = backend(404, Duration::ZERO);
    // A version name that needs escaping in a label value.
    let odd = "v2\"b\\".to_string();
    let answer = link
        .call(&Request::Set {
            service: "web".into(),
            spec: ServiceSpec {
                protocol: Default::default(),
                listen: "127.0.0.1:0".parse().unwrap(),
                routes: vec![RouteSpec {
                    version: "v1".into(),
                    weight: 100,
                    backends: vec![ok],
                }],
                retry_on_stable: None,
            },
        })
        .unwrap();
    let web: SocketAddr = answer["addr"].as_str().unwrap().parse().unwrap();
    let answer = link
        .call(&Request::Metrics {
            env: "prod".into(),
            listen: Some("127.0.0.1:0".parse().unwrap()),
        })
        .unwrap();
    let metrics: SocketAddr = answer["addr"].as_str().unwrap().parse().unwrap();
    link.call(&Request::Instances {
        service: "web".into(),
        instances: vec![InstanceGauge {
            version: "v1".into(),
            up: 2,
            down: 1,
            restarts: 3,
        }],
    })
    .unwrap();

    for _ in 0..30 {
        assert_eq!(get(web, "/").0, 200);
    }
    let table = |version: &str, to: SocketAddr| {
        link.call(&Request::Set {
            service: "web".into(),
            spec: ServiceSpec {
                protocol: Default::default(),
                listen: web,
                routes: vec![RouteSpec {
                    version: version.into(),
                    weight: 100,
                    backends: vec![to],
                }],
                retry_on_stable: None,
            },
        })
        .unwrap();
    };
    table(&odd, failing);
    for _ in 0..7 {
        assert_eq!(get(web, "/").0, 500);
    }
    table(&odd, missing);
    for _ in 0..4 {
        assert_eq!(get(web, "/").0, 404);
    }

    let (status, head, text) = get(metrics, "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let (types, samples) = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, kind, _) in METRICS {
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    let v1 = [("env", "prod"), ("service", "web"), ("version", "v1")];
    let v2 = [
        ("env", "prod"),
        ("service", "web"),
        ("version", odd.as_str()),
    ];
    fn with<'a>(base: &[(&'a str, &'a str)], extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
        let mut v = base.to_vec();
        v.push(extra);
        v
    }
    let count = |base: &[(&str, &str)], class| {
        value(
            &samples,
            "hangar_router_requests_total",
            &with(base, ("code", class)),
        )
    };
    assert_eq!(count(&v1, "2xx"), 30.0);
    assert_eq!(count(&v1, "5xx"), 0.0);
    assert_eq!(count(&v2, "5xx"), 7.0);
    assert_eq!(count(&v2, "4xx"), 4.0);
    assert_eq!(count(&v2, "2xx"), 0.0);
    let hist = "hangar_router_request_duration_seconds";
    assert_eq!(value(&samples, &format!("{hist}_count"), &v1), 30.0);
    assert_eq!(value(&samples, &format!("{hist}_count"), &v2), 11.0);
    // Every answer of v1 took at least the backend's 2 ms, and (on loopback) under 10 s.
    assert_eq!(
        value(
            &samples,
            &format!("{hist}_bucket"),
            &with(&v1, ("le", "0.001"))
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("{hist}_bucket"),
            &with(&v1, ("le", "10"))
        ),
        30.0
    );
    let sum = value(&samples, &format!("{hist}_sum"), &v1);
    assert!((0.06..10.0).contains(&sum), "sum {sum}");
    assert_eq!(value(&samples, "hangar_router_weight", &v2), 100.0);
    assert_eq!(value(&samples, "hangar_router_weight", &v1), 0.0);
    assert_eq!(value(&samples, "hangar_router_backends", &v2), 1.0);
    assert_eq!(
        value(&samples, "hangar_instances", &with(&v1, ("state", "up"))),
        2.0
    );
    assert_eq!(
        value(&samples, "hangar_instances", &with(&v1, ("state", "down"))),
        1.0
    );
    assert_eq!(value(&samples, "hangar_instance_restarts_total", &v1), 3.0);

    // Anything but GET /metrics is refused, and the listener can be turned off.
    assert_eq!(get(metrics, "/").0, 404);
    link.call(&Request::Metrics {
        env: "prod".into(),
        listen: None,
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(TcpStream::connect(metrics).is_err(), "metrics still served");
}
