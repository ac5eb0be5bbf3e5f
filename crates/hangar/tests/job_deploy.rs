//! `uses: hangar/deploy@v1` in a job of a real `hangar serve` (embedded
//! agent) watching a real repository: each push deploys through the server
//! into its watched checkout, so the environment outlives the job's
//! workspace, the next push's deployment replaces it, and the server's
//! delivery API and `hangar down --server` see it. Before, the first job's
//! controller kept running in its deleted workspace, the second failed with
//! "Address already in use", and `down` said "not running".

use crate::common::{self, http_json as http};

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

struct Serve {
    child: Child,
    url: String,
    token: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops the environment however the test ends (directly: the server may
/// be gone by then).
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["down", "staging", "--dir"])
            .arg(self.0)
            .env_remove("HANGAR_SERVER")
            .env_remove("HANGAR_TOKEN")
            .output();
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

#[test]
fn two_pushes_deploy_v1_then_v2_through_the_server_that_runs_the_jobs() {
    if !common::have_python3() {
        return;
    }
    let port = common::free_port();
    let repo = common::site_project(
        &format!("  staging:\n    listen: {{ web: 127.0.0.1:{port} }}\n"),
        &[(
            ".github/workflows/deploy.yml",
            "on: push\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    environment: staging\n    steps:\n      - uses: hangar/deploy@v1\n",
        )],
    );
    let dir = repo.path();
    let project = dir.file_name().unwrap().to_str().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .current_dir(data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--sandbox", "none"])
        .args(["--poll-ms", "100", "--data"])
        .arg(data.path())
        .arg("--repo")
        .arg(dir)
        .env_remove("HANGAR_SERVER")
        .env_remove("HANGAR_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let banner = common::serve_banner(&mut child);
    let s = Serve {
        child,
        url: banner.url,
        token: banner.token.unwrap(),
    };
    let _down = Down(dir);
    let runs = || -> Vec<Value> {
        let (code, v) = http("GET", &format!("{}/api/v1/runs", s.url), &s.token, "");
        assert_eq!(code, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    };
    let log_of = |run: &Value| -> String {
        let (_, detail) = http(
            "GET",
            &format!("{}/api/v1/runs/{}", s.url, run["id"]),
            &s.token,
            "",
        );
        let job = detail["jobs"][0]["id"].as_i64().unwrap();
        let (_, lines) = http(
            "GET",
            &format!("{}/api/v1/jobs/{job}/logs", s.url),
            &s.token,
            "",
        );
        lines.to_string()
    };
    let finished = |n: usize| {
        wait_for(
            &format!("{n} finished run(s)"),
            Duration::from_secs(90),
            || {
                let all = runs();
                let done: Vec<Value> = all
                    .into_iter()
                    .filter(|r| r["status"] == "completed")
                    .collect();
                (done.len() >= n).then_some(done)
            },
        )
    };
    // The server's first look at the repository takes its refs as they are
    // (a baseline, no build); the pushes come after it.
    common::wait_until_watched(&s.url, &s.token, 1);
    // First push: v1.
    hangar_testkit::commit(dir, &[("README.md", "the site\n")]);
    let first = finished(1);
    assert_eq!(first[0]["conclusion"], "success", "{}", log_of(&first[0]));
    assert!(
        log_of(&first[0]).contains("through the server that runs this job"),
        "{}",
        log_of(&first[0])
    );
    assert_eq!(get(port).as_deref(), Some("v1"));
    // Second push: v2 replaces it on the same address.
    let head = hangar_testkit::commit(dir, &[("site/index.html", "v2")]);
    let both = finished(2);
    for r in &both {
        assert_eq!(r["conclusion"], "success", "{}", log_of(r));
    }
    assert_eq!(get(port).as_deref(), Some("v2"));
    // The deployments live in the server's view of the project: its
    // watched checkout, which its delivery API reads.
    assert!(dir.join(".hangar/envs/staging/history.jsonl").is_file());
    let (code, env) = http(
        "GET",
        &format!("{}/api/v1/delivery/{project}/staging", s.url),
        &s.token,
        "",
    );
    assert_eq!(code, 200, "{env}");
    assert_eq!(env["running"], true, "{env}");
    let history = env["history"].as_array().cloned().unwrap_or_default();
    let ok: Vec<&Value> = history
        .iter()
        .filter(|d| d["outcome"] == "succeeded")
        .collect();
    assert_eq!(ok.len(), 2, "two deployments: {env:#}");
    assert_eq!(ok[0]["commit"].as_str(), Some(head.trim()), "{env:#}");
    // `hangar down` through the server stops it: nothing keeps serving.
    let out = Command::new(BIN)
        .args([
            "down", "staging", "--server", &s.url, "--token", &s.token, "--dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the address to close", Duration::from_secs(10), || {
        get(port).is_none().then_some(())
    });
}
