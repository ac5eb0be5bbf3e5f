//! End to end in a real browser: Debian's headless `chromium` against a real
//! `hangar serve`. A push triggers a run; the run page, opened while the job is
//! still running, shows its live log and then its final status without a reload.
//!
//! Chromium is driven over the DevTools protocol on `--remote-debugging-pipe`
//! (NUL-separated JSON on fds 3 and 4), connected through two FIFOs by `sh`, so
//! no WebSocket client and no browser download are needed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

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

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cdp {
    to: std::fs::File,
    from: BufReader<std::fs::File>,
    next: u64,
    session: Option<String>,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.to.write_all(msg.to_string().as_bytes()).unwrap();
        self.to.write_all(b"\0").unwrap();
        self.to.flush().unwrap();
        loop {
            let mut buf = Vec::new();
            self.from.read_until(0, &mut buf).unwrap();
            assert!(!buf.is_empty(), "chromium closed the DevTools pipe");
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        )["result"]["value"]
            .clone()
    }
}

#[test]
fn browser_shows_live_log_and_final_status() {
    let Some(chrome) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed; .ci/packages.txt lists it");
        }
        eprintln!(
            "SKIPPED browser_shows_live_log_and_final_status: chromium is not installed (apt-get install chromium)"
        );
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

    let to_fifo = tmp.path().join("to-chrome");
    let from_fifo = tmp.path().join("from-chrome");
    for f in [&to_fifo, &from_fifo] {
        assert!(Command::new("mkfifo").arg(f).status().unwrap().success());
    }
    let profile = tmp.path().join("profile");
    let page = format!("{url}#/runs/1?token={token}");
    let script = format!(
        "exec '{}' --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
         --disable-component-update --disable-sync --user-data-dir='{}' --remote-debugging-pipe '{}' 3<'{}' 4>'{}'",
        chrome.display(),
        profile.display(),
        page,
        to_fifo.display(),
        from_fifo.display()
    );
    let browser = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _browser = Kill(browser);
    // Opening order matters: chromium opens fd 3 (read) first, then fd 4.
    let to = std::fs::OpenOptions::new()
        .write(true)
        .open(&to_fifo)
        .unwrap();
    let from = BufReader::new(std::fs::File::open(&from_fifo).unwrap());
    let mut cdp = Cdp {
        to,
        from,
        next: 0,
        session: None,
    };
    let targets = cdp.call("Target.getTargets", json!({}));
    let target = targets["targetInfos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .expect("a page target")["targetId"]
        .clone();
    let attached = cdp.call(
        "Target.attachToTarget",
        json!({"targetId": target, "flatten": true}),
    );
    cdp.session = Some(attached["sessionId"].as_str().unwrap().to_string());

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
