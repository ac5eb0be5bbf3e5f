//! End to end in a real browser: Debian's headless `chromium` against a real
//! `hangar serve`. A push triggers a run; the run page, opened while the job is
//! still running, shows its live log and then its final status without a reload.
//!
//! Chromium is driven over the DevTools protocol by `common::browser`, shared
//! with the admin pages' test (`server_admin_browser.rs`).

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::{Cdp, Kill, chromium};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn browser_shows_live_log_and_final_status() {
    let Some(chrome) = chromium("browser_shows_live_log_and_final_status") else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(repo.path().join("README"), "x").unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "init"]);

    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--poll-ms",
            "100",
            // Unjailed: the step waits for a file the test creates in its /tmp.
            "--sandbox",
            "none",
            "--data",
        ])
        .arg(data.path())
        .arg("--repo")
        .arg(repo.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let _server = Kill(server);
    let mut token = String::new();
    let url = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(t) = l.split("keep it): ").nth(1) {
            token = t.trim().to_string();
        }
        if let Some(u) = l.split("listening on ").nth(1) {
            break u.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    // The job prints a first line, waits for a go signal (a file), then finishes.
    let go = tmp.path().join("go");
    let wf = format!(
        "name: e2e\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - name: talk\n        run: |\n          echo first-live-line\n          while [ ! -e {go} ]; do sleep 0.1; done\n          echo second-live-line\n",
        go = go.display()
    );
    std::fs::create_dir_all(repo.path().join(".github/workflows")).unwrap();
    std::fs::write(repo.path().join(".github/workflows/e2e.yml"), wf).unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "workflow"]);

    let mut cdp = Cdp::launch(&chrome, tmp.path(), &format!("{url}#/runs/1?token={token}"));

    let probe = "JSON.stringify({status: document.querySelector('#run-status')?.dataset.status || '', \
                 conclusion: document.querySelector('#run-status')?.dataset.conclusion || '', \
                 log: document.querySelector('#log')?.innerText || '', error: document.querySelector('#error')?.innerText || ''})";
    let read = |cdp: &mut Cdp| -> Value {
        serde_json::from_str(cdp.eval(probe).as_str().unwrap_or("{}")).unwrap_or(Value::Null)
    };

    // The run does not exist until the watcher sees the commit: reload until it does.
    let start = Instant::now();
    let mut state;
    loop {
        state = read(&mut cdp);
        if state["log"]
            .as_str()
            .unwrap_or("")
            .contains("first-live-line")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the page never showed the first line: {state}"
        );
        if !state["error"].as_str().unwrap_or("").is_empty() || state["status"] == "" {
            std::thread::sleep(Duration::from_millis(300));
            cdp.eval("location.reload(); 1");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(state["status"], "running", "{state}");
    assert!(!state["log"].as_str().unwrap().contains("second-live-line"));

    // Let the job finish; the open page must update by itself (SSE), no reload.
    std::fs::write(&go, "").unwrap();
    let start = Instant::now();
    loop {
        state = read(&mut cdp);
        if state["conclusion"] == "success"
            && state["log"]
                .as_str()
                .unwrap_or("")
                .contains("second-live-line")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the page did not update live: {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(state["status"], "completed");
    // Read the page's own DOM once more for the job graph and step list.
    let graph = cdp.eval("document.querySelector('#graph').innerText");
    assert!(graph.as_str().unwrap().contains("build"), "{graph}");

    // A protected environment: the run page offers Approve, and clicking it lets
    // the deployment job run.
    std::fs::write(
        repo.path().join("hangar.yml"),
        "environments:\n  prod:\n    protection:\n      reviewers: [admin]\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join(".github/workflows/e2e.yml"),
        "name: e2e\non: push\njobs:\n  deploy:\n    environment: prod\n    runs-on: ubuntu-latest\n    steps: [{run: echo deployed-for-real}]\n",
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "deploy"]);
    let start = Instant::now();
    loop {
        cdp.eval("location.hash = '#/runs/2'; 1");
        std::thread::sleep(Duration::from_millis(300));
        if cdp.eval("!!document.querySelector('.approval button.primary')") == json!(true) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no Approve button appeared"
        );
        cdp.eval("location.hash = '#/runs'; 1");
    }
    cdp.eval("document.querySelector('.approval button.primary').click(); 1");
    let start = Instant::now();
    loop {
        state = read(&mut cdp);
        if state["conclusion"] == "success"
            && state["log"]
                .as_str()
                .unwrap_or("")
                .contains("deployed-for-real")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the approved job did not run: {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
