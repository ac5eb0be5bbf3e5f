//! Helpers shared by the CLI's process-level tests.

#![allow(dead_code)]

pub mod browser;

/// Whether python3 (the instances' web server in delivery tests) is here.
/// Missing, the test is skipped loudly, except under CI, where it fails.
pub fn have_python3() -> bool {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 is required in CI"
    );
    eprintln!("SKIPPED: python3 not found");
    false
}

pub use hangar_testkit::free_port;

/// A request to a real `hangar serve` over `HTTP/1.0` (so no chunked
/// answers): its status and JSON body (null when the body is not JSON).
pub fn http_json(method: &str, url: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// What a starting `hangar serve` says on stdout before it answers.
pub struct Banner {
    /// Its base URL (no `/ui/`; a wildcard listen address made loopback).
    pub url: String,
    /// The admin token, printed on the data directory's first start only.
    pub token: Option<String>,
    /// Every line up to the address, for tests of what the start says.
    pub lines: Vec<String>,
}

/// Reads a starting `hangar serve`'s stdout (piped) up to its address, then
/// keeps draining it on a thread so the server never blocks on a full pipe.
pub fn serve_banner(child: &mut std::process::Child) -> Banner {
    use std::io::BufRead;
    let out = child.stdout.take().expect("hangar serve's stdout is piped");
    let mut lines = std::io::BufReader::new(out).lines();
    let (mut token, mut seen) = (None, Vec::new());
    let url = loop {
        let line = lines
            .next()
            .expect("hangar serve printed its address")
            .unwrap();
        seen.push(line.clone());
        if let Some(t) = line.split("admin token (shown once; keep it): ").nth(1) {
            token = Some(t.trim().to_string());
        }
        if let Some(u) = line.split("listening on ").nth(1) {
            break u
                .trim()
                .trim_end_matches("/ui/")
                .replace("//0.0.0.0:", "//127.0.0.1:");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Banner {
        url,
        token,
        lines: seen,
    }
}

/// The delivery tests' usual project, committed on `main`: one `web` service
/// (python3 serving `site/`, whose `index.html` says "v1"), the given
/// `environments:` block (indented by two spaces, as under the key), `.hangar/`
/// ignored, and `extra` files. One place, so the service's health and stop
/// timings stay alike across the tests that only differ in environments.
pub fn site_project(environments: &str, extra: &[(&str, &str)]) -> tempfile::TempDir {
    let yml = format!(
        "services:\n  web:\n    run: python3 -m http.server $PORT --bind 127.0.0.1 --directory site\n    artifact: [site]\n    health: {{ path: /index.html, interval: 100ms, timeout: 1s, deadline: 20s }}\n    stop: {{ drain: 50ms, timeout: 2s }}\nenvironments:\n{environments}"
    );
    let repo = hangar_testkit::empty_repo();
    let mut files = vec![
        ("hangar.yml", yml.as_str()),
        ("site/index.html", "v1"),
        (".gitignore", ".hangar/\n"),
    ];
    files.extend_from_slice(extra);
    hangar_testkit::commit(repo.path(), &files);
    repo
}

/// Waits until a starting `hangar serve` has taken its first look at each of
/// the `repos` repositories it watches (one `baseline` delivery each, with
/// a fresh data directory). A commit made before that look is the baseline
/// and is never built, so a test that pushes right after start waits here.
pub fn wait_until_watched(base: &str, token: &str, repos: usize) {
    let start = std::time::Instant::now();
    loop {
        let (_, v) = http_json(
            "GET",
            &format!("{base}/api/v1/deliveries?limit=500"),
            token,
            "",
        );
        let list = v.as_array().or_else(|| v["items"].as_array());
        let watched: std::collections::BTreeSet<i64> = list
            .into_iter()
            .flatten()
            .filter(|d| d["outcome"] == "baseline")
            .filter_map(|d| d["repo_id"].as_i64())
            .collect();
        if watched.len() >= repos {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{} of {repos} repositories watched: {v:#}",
            watched.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
