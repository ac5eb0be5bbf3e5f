//! `hangar serve` and `hangar agent` as real processes: crash recovery, lost
//! agents, the end-to-end browser test. Plain std HTTP keeps the CLI crate's
//! dependencies untouched.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn new_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("README"), "x").unwrap();
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "init"]);
    dir
}

fn commit(dir: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "change"]);
}

struct Serve {
    child: Child,
    url: String,
    token: Option<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, args: &[&str]) -> Serve {
    let mut child = Command::new(BIN)
        // Not inside a git repository: `hangar serve` would register it.
        .current_dir(data)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let crate::common::Banner { url, token, .. } = crate::common::serve_banner(&mut child);
    Serve { child, url, token }
}

fn http(method: &str, url: &str, token: &str, body: Option<&str>) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn get_json(url: &str, token: &str) -> Value {
    let (s, b) = http("GET", url, token, None);
    assert_eq!(s, 200, "GET {url}: {b}");
    serde_json::from_str(&b).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill_pid_file(path: &Path) {
    if let Ok(pid) = std::fs::read_to_string(path) {
        let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).status();
    }
}

const SLOW: &str = "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo slow-started; echo $$ > PIDFILE; sleep 60\n";
const FAST: &str = "on: push\njobs:\n  fast:\n    runs-on: ubuntu-latest\n    steps:\n      - run: for i in $(seq 1 500); do echo finished-log-line-$i; done\n";

#[test]
fn kill_9_mid_run_then_restart_leaves_nothing_running() {
    let repo = new_repo();
    let data = tempfile::tempdir().unwrap();
    let pidfile = data.path().join("step.pid");
    let repo_arg = repo.path().to_str().unwrap().to_string();
    // Unjailed: the step writes its pid where the test reads it.
    let mut s = serve(
        data.path(),
        &["--repo", &repo_arg, "--poll-ms", "100", "--sandbox", "none"],
    );
    let token = s.token.clone().unwrap();
    commit(
        repo.path(),
        &[
            (
                ".github/workflows/slow.yml",
                &SLOW.replace("PIDFILE", pidfile.to_str().unwrap()),
            ),
            (".github/workflows/fast.yml", FAST),
        ],
    );
    let runs_url = format!("{}/api/v1/runs", s.url);
    wait_for(
        "the fast run to finish and the slow job to start",
        Duration::from_secs(30),
        || {
            let runs = get_json(&runs_url, &token);
            let runs = runs.as_array().unwrap();
            runs.len() == 2
                && runs.iter().any(|r| {
                    r["workflow_path"].as_str().unwrap().ends_with("fast.yml")
                        && r["status"] == "completed"
                })
                && pidfile.exists()
        },
    );
    // kill -9: no shutdown code runs.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    kill_pid_file(&pidfile);

    let s2 = serve(data.path(), &["--repo", &repo_arg]);
    assert!(
        s2.token.is_none(),
        "the admin token is printed only on the first start"
    );
    let runs_url = format!("{}/api/v1/runs", s2.url);
    let runs = get_json(&runs_url, &token);
    for r in runs.as_array().unwrap() {
        assert_eq!(
            r["status"], "completed",
            "a run stayed {}: {r}",
            r["status"]
        );
    }
    let slow = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["workflow_path"].as_str().unwrap().ends_with("slow.yml"))
        .unwrap();
    assert_eq!(slow["conclusion"], "failure");
    let detail = get_json(&format!("{}/api/v1/runs/{}", s2.url, slow["id"]), &token);
    assert!(
        detail["jobs"][0]["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("restarted"),
        "{detail}"
    );
    let fast = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["workflow_path"].as_str().unwrap().ends_with("fast.yml"))
        .unwrap();
    assert_eq!(fast["conclusion"], "success");
    let detail = get_json(&format!("{}/api/v1/runs/{}", s2.url, fast["id"]), &token);
    let (_, log) = http(
        "GET",
        &format!(
            "{}/api/v1/jobs/{}/logs/raw",
            s2.url, detail["jobs"][0]["id"]
        ),
        &token,
        None,
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 500, "finished logs are intact");
    assert_eq!(lines[499], "finished-log-line-500");
}

#[test]
fn a_killed_agent_loses_its_lease_within_the_bound() {
    let repo = new_repo();
    let data = tempfile::tempdir().unwrap();
    let pidfile = data.path().join("step.pid");
    let repo_arg = repo.path().to_str().unwrap().to_string();
    // No embedded agent; a 2 s lease.
    let s = serve(
        data.path(),
        &[
            "--repo",
            &repo_arg,
            "--poll-ms",
            "100",
            "--agent-capacity",
            "0",
            "--lease-timeout",
            "2",
        ],
    );
    let token = s.token.clone().unwrap();
    let (st, body) = http(
        "POST",
        &format!("{}/api/v1/tokens", s.url),
        &token,
        Some(r#"{"name":"runner-1","role":"agent"}"#),
    );
    assert_eq!(st, 201, "{body}");
    let agent_token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut agent = Command::new(BIN)
        .args([
            "agent",
            "--server",
            &s.url,
            "--token",
            &agent_token,
            "--capacity",
            "1",
            "--name",
            "doomed",
            // Unjailed: the step writes its pid where the test reads it.
            "--sandbox",
            "none",
        ])
        .arg("--work-dir")
        .arg(data.path().join("agent-work"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    commit(
        repo.path(),
        &[(
            ".github/workflows/slow.yml",
            &SLOW.replace("PIDFILE", pidfile.to_str().unwrap()),
        )],
    );
    let runs_url = format!("{}/api/v1/runs", s.url);
    wait_for(
        "the agent to start the job",
        Duration::from_secs(30),
        || pidfile.exists(),
    );
    let run_id = get_json(&runs_url, &token)[0]["id"].as_i64().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    let killed_at = Instant::now();
    kill_pid_file(&pidfile);
    let run_url = format!("{}/api/v1/runs/{run_id}", s.url);
    wait_for("the lost job to be marked", Duration::from_secs(15), || {
        get_json(&run_url, &token)["run"]["status"] == "completed"
    });
    let took = killed_at.elapsed();
    // Bound: lease (2 s) + reaper period (0.2 s) + slack for a loaded machine.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let detail = get_json(&run_url, &token);
    let job = &detail["jobs"][0];
    assert_eq!(job["conclusion"], "failure");
    assert!(
        job["waiting_reason"]
            .as_str()
            .unwrap()
            .contains("lease expired"),
        "{job}"
    );
    let agents = get_json(&format!("{}/api/v1/agents", s.url), &token);
    assert_eq!(agents[0]["name"], "doomed");
}

#[test]
fn everything_but_healthz_needs_a_token() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--agent-capacity", "0"]);
    let token = s.token.clone().unwrap();
    assert_eq!(http("GET", &format!("{}/healthz", s.url), "", None).0, 200);
    for path in [
        "/metrics",
        "/api/v1/runs",
        "/api/v1/repos",
        "/api/v1/agents",
        "/api/v1/openapi.json",
        "/api/v1/runs/1/events",
    ] {
        assert_eq!(
            http("GET", &format!("{}{path}", s.url), "", None).0,
            401,
            "{path}"
        );
        assert_eq!(
            http("GET", &format!("{}{path}", s.url), "hgr_wrong", None).0,
            401,
            "{path}"
        );
    }
    let (st, body) = http(
        "POST",
        &format!("{}/api/v1/tokens", s.url),
        &token,
        Some(r#"{"name":"viewer","role":"read"}"#),
    );
    assert_eq!(st, 201);
    let read = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        http("GET", &format!("{}/api/v1/runs", s.url), &read, None).0,
        200
    );
    assert_eq!(
        http(
            "POST",
            &format!("{}/api/v1/repos", s.url),
            &read,
            Some(r#"{"name":"x","clone_url":"y"}"#)
        )
        .0,
        403
    );
    assert_eq!(
        http(
            "POST",
            &format!("{}/api/v1/agent/poll", s.url),
            &read,
            Some("{}")
        )
        .0,
        403
    );
    let doc = get_json(&format!("{}/api/v1/openapi.json", s.url), &token);
    assert_eq!(doc["openapi"], "3.1.0");
    // Tokens are hashed at rest: the plaintext is nowhere in the data directory.
    drop(s);
    for entry in std::fs::read_dir(data.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            for t in [&token, &read] {
                assert!(
                    !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                    "token found in {}",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn backup_and_restore_round_trip() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &["--agent-capacity", "0"]);
    let token = s.token.clone().unwrap();
    let (st, _) = http(
        "POST",
        &format!("{}/api/v1/repos", s.url),
        &token,
        Some(
            r#"{"name":"acme/app","clone_url":"https://example.invalid/acme/app.git","webhook_secret":"whs-1234567890abcdef"}"#,
        ),
    );
    assert_eq!(st, 201);
    let (st, _) = http(
        "PUT",
        &format!("{}/api/v1/repos/1/secrets/TOKEN", s.url),
        &token,
        Some(r#"{"value":"v-123456"}"#),
    );
    assert_eq!(st, 204);
    // Online: the server keeps running while the backup is taken.
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy");
    let ok = Command::new(BIN)
        .args(["backup", "--data"])
        .arg(data.path())
        .arg(&copy)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    drop(s);
    let fresh = tempfile::tempdir().unwrap();
    let target = fresh.path().join("restored");
    let ok = Command::new(BIN)
        .args(["restore", "--data"])
        .arg(&target)
        .arg(&copy)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let again = Command::new(BIN)
        .args(["restore", "--data"])
        .arg(&target)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "restore refuses to overwrite without --force"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let s2 = serve(&target, &["--agent-capacity", "0"]);
    let repos = get_json(&format!("{}/api/v1/repos", s2.url), &token);
    assert_eq!(repos[0]["name"], "acme/app");
    let names = get_json(&format!("{}/api/v1/repos/1/secrets", s2.url), &token);
    assert_eq!(names["names"][0], "TOKEN");
}

#[test]
fn serve_with_no_flags_registers_the_current_repository() {
    let repo = new_repo();
    let sub = repo.path().join("src");
    std::fs::create_dir_all(&sub).unwrap();
    let home = tempfile::tempdir().unwrap();
    // No --data: the data directory defaults under $XDG_DATA_HOME.
    let mut child = Command::new(BIN)
        .current_dir(&sub)
        .env("XDG_DATA_HOME", home.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = String::new();
    let url = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(t) = l.split("keep it): ").nth(1) {
            token = t.trim().to_string();
        }
        if let Some(u) = l.split("listening on ").nth(1) {
            break u.trim().trim_end_matches("/ui/").to_string();
        }
    };
    let s = Serve {
        child,
        url,
        token: Some(token.clone()),
    };
    assert!(s.url.starts_with("http://127.0.0.1:"));
    assert!(home.path().join("hangar/hangar.db").exists());
    assert!(home.path().join("hangar/secret.key").exists());
    let repos = get_json(&format!("{}/api/v1/repos", s.url), &token);
    let top = std::fs::canonicalize(repo.path()).unwrap();
    assert_eq!(repos[0]["clone_url"], top.to_str().unwrap(), "{repos}");
    let (st, html) = http("GET", &format!("{}/ui/", s.url), "", None);
    assert_eq!(st, 200);
    assert!(html.contains("hangar"));
}

#[test]
fn deployments_go_through_the_server_and_outlive_the_cli() {
    if !common::have_python3() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let repo = common::site_project(
        &format!("  prod:\n    strategy: blue-green\n    listen: {{ web: 127.0.0.1:{port} }}\n"),
        &[],
    );
    commit(repo.path(), &[("site/index.html", "v2")]);
    let repo_arg = repo.path().display().to_string();
    let s = serve(data.path(), &["--repo", &repo_arg]);
    let token = s.token.clone().unwrap();
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--dir", &repo_arg, "--server", &s.url])
            .env("HANGAR_TOKEN", &token)
            .output()
            .unwrap()
    };
    struct Down<'a>(&'a str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = Command::new(BIN)
                .args(["down", "--env", "prod", "--dir", self.0])
                .output();
        }
    }
    let _down = Down(&repo_arg);
    let page = || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
        c.write_all(b"GET /index.html HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        Some(out.split("\r\n\r\n").nth(1)?.trim().to_string())
    };

    let out = cli(&["deploy", "prod", "--ref", "HEAD~1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(page().as_deref(), Some("v1"));
    let out = cli(&["deploy", "prod", "--ref", "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.trim().is_empty(),
        "progress is shown while the server deploys"
    );
    assert_eq!(page().as_deref(), Some("v2"));

    let out = cli(&["status", "prod", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v[0]["services"][0]["stable"]
            .as_str()
            .unwrap()
            .starts_with("r2"),
        "{v}"
    );

    // Without a token the server refuses; an unknown project is named.
    let out = Command::new(BIN)
        .args(["status", "prod", "--dir", &repo_arg, "--server", &s.url])
        .env_remove("HANGAR_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = cli(&["status", "prod", "--project", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no watched project `nope`"));
}

use hangar_testkit::exposition::{Sample, check_histograms, name_ok, parse_sample};

/// OpenMetrics 1.0 text, read strictly: it ends with `# EOF`; every sample's
/// family has its `# TYPE` (and `# HELP`) once, before its samples, and its
/// samples are together; sample names are the family's (`_total` of a
/// counter, `_bucket`/`_sum`/`_count` of a histogram); names, label names
/// and escapes are valid; no series twice; histogram buckets cumulative with
/// `+Inf` equal to `_count`.
fn parse_openmetrics(text: &str) -> Result<Vec<Sample>, String> {
    use std::collections::{BTreeMap, HashSet};
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("the exposition does not end with `# EOF`")?;
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = HashSet::new();
    let mut done = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen = HashSet::new();
    let mut samples = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line}", n + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut p = rest.splitn(3, ' ');
            let (kw, name) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
            if !name_ok(name) {
                return Err(at(format!("bad family name `{name}`")));
            }
            if done.contains(name) || current.as_deref() == Some(name) {
                return Err(at("metadata after the family's samples".into()));
            }
            match kw {
                "HELP" => {
                    if !helped.insert(name.to_string()) {
                        return Err(at("second HELP".into()));
                    }
                }
                "TYPE" => {
                    let ty = p.next().unwrap_or("");
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "stateset",
                        "info",
                        "summary",
                        "unknown",
                    ];
                    if !known.contains(&ty) {
                        return Err(at(format!("bad type `{ty}`")));
                    }
                    if ty == "counter" && name.ends_with("_total") {
                        return Err(at("a counter family named with `_total`".into()));
                    }
                    if types.insert(name.to_string(), ty.to_string()).is_some() {
                        return Err(at("second TYPE".into()));
                    }
                }
                "UNIT" => {}
                _ => return Err(at(format!("unknown `# {kw}`"))),
            }
            continue;
        }
        let (name, labels, value) = parse_sample(line).map_err(at)?;
        let family = types
            .iter()
            .find(|(f, ty)| {
                let suffixes: &[&str] = match ty.as_str() {
                    "counter" => &["_total", "_created"],
                    "histogram" | "gaugehistogram" => {
                        &["_bucket", "_sum", "_count", "_created", "_gcount", "_gsum"]
                    }
                    "summary" => &["", "_sum", "_count", "_created"],
                    "info" => &["_info"],
                    _ => &[""],
                };
                suffixes.iter().any(|s| name == format!("{f}{s}"))
            })
            .map(|(f, _)| f.clone())
            .ok_or_else(|| at(format!("sample `{name}` of no declared family")))?;
        if current.as_deref() != Some(family.as_str()) {
            if let Some(prev) = current.replace(family.clone()) {
                done.insert(prev);
            }
            if done.contains(&family) {
                return Err(at(format!("samples of `{family}` are not together")));
            }
        }
        if !seen.insert(format!("{name}{labels:?}")) {
            return Err(at("the same series twice".into()));
        }
        samples.push((name, labels, value));
    }
    check_histograms(&types, &samples)?;
    Ok(samples)
}

/// `hangar serve --repo DIR` merges into its `/metrics` the router
/// measurements of the project's environments (two here), each series
/// labelled with the project (`source`), `env`, `service` and `version`,
/// in OpenMetrics as the rest of the exposition, read by a strict parser.
#[test]
fn serve_metrics_merge_the_routers_of_the_watched_environments() {
    if !common::have_python3() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (prod, staging) = (common::free_port(), common::free_port());
    let repo = common::site_project(
        &format!(
            "  prod:\n    listen: {{ web: 127.0.0.1:{prod} }}\n  staging:\n    listen: {{ web: 127.0.0.1:{staging} }}\n"
        ),
        &[],
    );
    let repo_arg = repo.path().display().to_string();
    struct Down<'a>(&'a str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            for env in ["prod", "staging"] {
                let _ = Command::new(BIN)
                    .args(["down", env, "--dir", self.0])
                    .output();
            }
        }
    }
    let _down = Down(&repo_arg);
    for env in ["prod", "staging"] {
        let out = Command::new(BIN)
            .args(["deploy", env, "--dir", &repo_arg])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let get = |port: u16| {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"GET /index.html HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    };
    for _ in 0..7 {
        get(prod);
    }
    for _ in 0..3 {
        get(staging);
    }
    let s = serve(data.path(), &["--repo", &repo_arg]);
    let token = s.token.clone().unwrap();
    let source = std::fs::canonicalize(repo.path())
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let value = |samples: &[Sample], name: &str, env: &str, extra: &[(&str, &str)]| {
        samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && l.get("source").map(String::as_str) == Some(source.as_str())
                    && l.get("env").map(String::as_str) == Some(env)
                    && l.get("service").map(String::as_str) == Some("web")
                    && extra
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect::<Vec<f64>>()
    };
    let mut samples = Vec::new();
    // The instance counts reach the router within a second of the deploy.
    wait_for(
        "the routers' instance gauges",
        Duration::from_secs(20),
        || {
            let (status, text) = http("GET", &format!("{}/metrics", s.url), &token, None);
            assert_eq!(status, 200, "{text}");
            samples = parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            value(&samples, "hangar_instances", "staging", &[("state", "up")]) == [1.0]
        },
    );
    for (env, requests) in [("prod", 7.0), ("staging", 3.0)] {
        assert_eq!(
            value(
                &samples,
                "hangar_router_requests_total",
                env,
                &[("code", "2xx")]
            ),
            [requests],
            "{env}"
        );
        assert_eq!(
            value(
                &samples,
                "hangar_router_request_duration_seconds_count",
                env,
                &[]
            ),
            [requests],
            "{env}"
        );
        assert_eq!(value(&samples, "hangar_router_weight", env, &[]), [100.0]);
        assert_eq!(value(&samples, "hangar_router_backends", env, &[]), [1.0]);
        assert_eq!(
            value(&samples, "hangar_instances", env, &[("state", "up")]),
            [1.0]
        );
    }
    // The server's own families are still there, in the same exposition.
    assert!(
        samples
            .iter()
            .any(|(n, _, _)| n.starts_with("hangar_dora_")),
        "the DORA gauges are kept"
    );
}

/// An environment's router process, started as its controller starts it
/// (`hangar __router --dir ENVDIR`), serving `web` with one version and no
/// instance: enough for its series to be on `/metrics`. Stopped (and let go
/// of a SIGSTOP first) when dropped.
struct RouterProcess(Child);

impl RouterProcess {
    fn start(project: &Path, env: &str) -> RouterProcess {
        let dir = project.join(".hangar/envs").join(env);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(BIN)
            .args(["__router", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let router = RouterProcess(child);
        let socket = dir.join("router.sock");
        let set = r#"{"op":"set","service":"web","spec":{"listen":"127.0.0.1:0","routes":[{"version":"v1","weight":100,"backends":[]}]}}"#;
        wait_for("the router's socket", Duration::from_secs(10), || {
            let Ok(mut c) = std::os::unix::net::UnixStream::connect(&socket) else {
                return false;
            };
            writeln!(c, "{set}").unwrap();
            let mut answer = String::new();
            BufReader::new(c).read_line(&mut answer).unwrap();
            assert!(answer.contains("\"addr\""), "{answer}");
            true
        });
        router
    }

    fn signal(&self, sig: &str) {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two watched projects in directories of the same name (`shop`) keep a
/// `source` each on the merged `/metrics` (the folder name and 8 hex digits
/// of the SHA-256 of its absolute path, the same at every start; before, the
/// second's series were dropped as duplicates), while a project whose name
/// is its own keeps it plain. A router that does not answer (stopped with
/// SIGSTOP) costs the scrape at most about a second instead of ten, and is
/// reported with `hangar_router_up 0` and no series, the others with 1.
#[test]
fn serve_metrics_name_projects_apart_and_do_not_wait_for_a_hung_router() {
    use sha2::Digest;
    let data = tempfile::tempdir().unwrap();
    let (one, two, three) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut projects = Vec::new();
    for (parent, name) in [(&one, "shop"), (&two, "shop"), (&three, "books")] {
        let dir = parent.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        commit(&dir, &[("README", "x")]);
        projects.push(std::fs::canonicalize(dir).unwrap());
    }
    let routers: Vec<RouterProcess> = projects
        .iter()
        .map(|p| RouterProcess::start(p, "prod"))
        .collect();
    let mut args = Vec::new();
    for p in &projects {
        args.extend(["--repo".to_string(), p.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = serve(data.path(), &args);
    let token = s.token.clone().unwrap();
    let hashed = |p: &Path| {
        let digest = sha2::Sha256::digest(p.as_os_str().as_encoded_bytes());
        format!("shop-{}", &hex::encode(digest)[..8])
    };
    let sources = [
        hashed(&projects[0]),
        hashed(&projects[1]),
        "books".to_string(),
    ];
    assert_ne!(sources[0], sources[1]);
    let scrape = || {
        let started = Instant::now();
        let (status, text) = http("GET", &format!("{}/metrics", s.url), &token, None);
        assert_eq!(status, 200, "{text}");
        let samples = parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        (samples, started.elapsed())
    };
    let of = |samples: &[Sample], name: &str, source: &str| {
        samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && l.get("source").map(String::as_str) == Some(source)
                    && l.get("env").map(String::as_str) == Some("prod")
            })
            .map(|(_, _, v)| *v)
            .collect::<Vec<f64>>()
    };
    let (samples, _) = scrape();
    for source in &sources {
        assert_eq!(
            of(&samples, "hangar_router_weight", source),
            [100.0],
            "{source}"
        );
        assert_eq!(of(&samples, "hangar_router_up", source), [1.0], "{source}");
    }

    routers[1].signal("-STOP");
    let (samples, took) = scrape();
    assert!(
        took < Duration::from_secs(5),
        "a stopped router held the scrape for {took:?}"
    );
    assert_eq!(of(&samples, "hangar_router_up", &sources[1]), [0.0]);
    assert!(
        of(&samples, "hangar_router_weight", &sources[1]).is_empty(),
        "a router that did not answer has no series"
    );
    for source in [&sources[0], &sources[2]] {
        assert_eq!(of(&samples, "hangar_router_up", source), [1.0], "{source}");
        assert_eq!(
            of(&samples, "hangar_router_weight", source),
            [100.0],
            "{source}"
        );
    }
    // Back when it answers again.
    routers[1].signal("-CONT");
    let (samples, _) = scrape();
    assert_eq!(of(&samples, "hangar_router_up", &sources[1]), [1.0]);

    // Each counter says when its router started counting (`_created`), so a
    // restarted router's counters, back at zero, read as a reset, not a drop.
    let created = |samples: &[Sample]| {
        let c = of(samples, "hangar_router_connect_errors_created", &sources[2]);
        assert_eq!(c.len(), 1, "one `_created` per series");
        assert_eq!(
            of(
                samples,
                "hangar_router_request_duration_seconds_created",
                &sources[2]
            ),
            c
        );
        assert_eq!(
            of(samples, "hangar_router_requests_created", &sources[2]),
            [c[0]; 5]
        );
        c[0]
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let first = created(&samples);
    assert!(first > now() - 120.0 && first <= now(), "{first}");
    let mut routers = routers;
    let books = routers.pop().unwrap();
    drop(books);
    std::thread::sleep(Duration::from_millis(50));
    let _books = RouterProcess::start(&projects[2], "prod");
    let (samples, _) = scrape();
    let again = created(&samples);
    assert!(
        again > first,
        "a restarted router's counters: created {again} after {first}"
    );
}

/// Two projects named `web` watched by one server: `--project web` is
/// refused naming both ids, `--project ID` reaches that one, and without
/// `--project` the command reaches the one at `--dir`'s path (here: its
/// environment does not run, which only a resolved project can answer).
#[test]
fn the_cli_reaches_the_watched_project_at_its_dir_when_names_collide() {
    let data = tempfile::tempdir().unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dirs: Vec<std::path::PathBuf> = [&a, &b]
        .iter()
        .map(|root| {
            let dir = root.path().join("web");
            std::fs::create_dir(&dir).unwrap();
            git(&dir, &["init", "-q", "-b", "main"]);
            commit(&dir, &[("README", "web")]);
            std::fs::canonicalize(&dir).unwrap()
        })
        .collect();
    let args: Vec<&str> = dirs
        .iter()
        .flat_map(|d| ["--repo", d.to_str().unwrap()])
        .chain(["--agent-capacity", "0"])
        .collect();
    let s = serve(data.path(), &args);
    let token = s.token.clone().unwrap();
    let ids: Vec<String> = dirs
        .iter()
        .map(|d| hangar_deploy::client::project_id(d))
        .collect();
    let status = |dir: &Path, project: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["status", "prod", "--dir"])
            .arg(dir)
            .args(["--server", &s.url])
            .env("HANGAR_TOKEN", &token);
        if let Some(p) = project {
            cmd.args(["--project", p]);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = status(&dirs[0], Some("web"));
    assert!(
        err.contains("names 2 watched projects") && ids.iter().all(|id| err.contains(id.as_str())),
        "{err}"
    );
    for (dir, id) in dirs.iter().zip(&ids) {
        for project in [None, Some(id.as_str())] {
            let err = status(dir, project);
            assert!(
                err.contains("environment `prod` of `web` is not running")
                    && !err.contains("names 2"),
                "{project:?}: {err}"
            );
        }
    }
}
