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
        // A step that passed is shown closed, as on GitHub: open them all
        // (each then reads its lines) to see the log.
        cdp.eval("document.querySelectorAll('details.step').forEach((d) => { d.open = true; }); 1");
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

/// The job page by step: two background steps write at the same time (each
/// waits for the other's marker file before its next line, and both wait
/// for the test's go signal halfway), and each step's section holds only
/// its own lines, in order, the first of them live; the failing step's
/// section is open, the job's end (a daemon ended) is its last section,
/// "Complete job", and `#step-N:L` opens step N at line L.
#[test]
fn job_page_groups_lines_by_step() {
    let Some(chrome) = chromium("job_page_groups_lines_by_step") else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(repo.path().join("README"), "x").unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "init"]);
    // The server watches for new commits: it starts before the workflow's.
    let (_server, url, token) = common::browser::serve(
        BIN,
        data.path(),
        &[
            "--poll-ms",
            "100",
            "--sandbox",
            "none",
            "--repo",
            repo.path().to_str().unwrap(),
        ],
    );
    let go = tmp.path().join("go");
    // Each side prints line i only after the other printed line i - 1 (its
    // marker file), so the two steps' lines reach the server interleaved.
    let side = |me: &str, other: &str| {
        format!(
            "        run: |\n          for i in 1 2 3 4; do\n            if [ $i -gt 1 ]; then while [ ! -e \"$RUNNER_TEMP/{other}-$((i-1))\" ]; do sleep 0.01; done; fi\n            if [ $i -eq 3 ]; then while [ ! -e {go} ]; do sleep 0.05; done; fi\n            echo {me}-$i\n            touch \"$RUNNER_TEMP/{me}-$i\"\n          done\n",
            go = go.display()
        )
    };
    let wf = format!(
        "name: steps\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - name: quiet\n        run: |\n          echo quiet-line\n          sleep 300 > /dev/null 2>&1 &\n      - name: left\n        background: true\n{}      - name: right\n        background: true\n{}      - wait-all:\n      - name: broken\n        run: |\n          echo broken-line\n          exit 3\n",
        side("left", "right"),
        side("right", "left"),
    );
    std::fs::create_dir_all(repo.path().join(".github/workflows")).unwrap();
    std::fs::write(repo.path().join(".github/workflows/steps.yml"), wf).unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "workflow"]);
    let mut cdp = Cdp::launch(&chrome, tmp.path(), &format!("{url}#/runs/1?token={token}"));
    // The texts of a step's section, by the step's name, in the order shown.
    let texts = |cdp: &mut Cdp, name: &str| -> Vec<String> {
        let v = cdp.eval(&format!(
            "(() => {{ const d = [...document.querySelectorAll('details.step')].find((d) => d.querySelector('summary .name')?.textContent === {}); \
             if (!d) return null; return [...d.querySelectorAll('.row')].map((r) => r.lastChild.textContent); }})()",
            json!(name)
        ));
        serde_json::from_value(v).unwrap_or_default()
    };
    // The run appears when the watcher sees the commit: reload until it does.
    let start = Instant::now();
    loop {
        let (l, r) = (texts(&mut cdp, "left"), texts(&mut cdp, "right"));
        if l.contains(&"left-2".to_string()) && r.contains(&"right-2".to_string()) {
            // Live, halfway: the steps wait for the go signal.
            assert_eq!(l, ["left-1", "left-2"], "{r:?}");
            assert_eq!(r, ["right-1", "right-2"], "{l:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the running steps' sections never showed their lines: {l:?} {r:?}"
        );
        if cdp.eval("!!document.querySelector('#error') || !document.querySelector('#run-status')")
            == json!(true)
        {
            std::thread::sleep(Duration::from_millis(300));
            cdp.eval("location.reload(); 1");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(&go, "").unwrap();
    cdp.wait(
        "the run to fail at its broken step",
        60,
        "document.querySelector('#run-status')?.dataset.conclusion === 'failure'",
    );
    cdp.wait(
        "the rest of the lines, live",
        20,
        "[...document.querySelectorAll('details.step .row')].some((r) => r.lastChild.textContent === 'broken-line')",
    );
    assert_eq!(
        texts(&mut cdp, "left"),
        ["left-1", "left-2", "left-3", "left-4"]
    );
    assert_eq!(
        texts(&mut cdp, "right"),
        ["right-1", "right-2", "right-3", "right-4"]
    );
    let open = |cdp: &mut Cdp, name: &str| {
        cdp.eval(&format!(
            "[...document.querySelectorAll('details.step')].find((d) => d.querySelector('summary .name')?.textContent === {}).open",
            json!(name)
        ))
    };
    assert_eq!(
        open(&mut cdp, "broken"),
        json!(true),
        "the failing step is open"
    );
    // One section per step, in the job's order.
    let names = cdp.eval(
        "[...document.querySelectorAll('details.step summary .name')].map((n) => n.textContent)",
    );
    let names: Vec<String> = serde_json::from_value(names).unwrap();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap_or(usize::MAX);
    assert!(
        at("quiet") < at("left") && at("left") < at("right") && at("right") < at("broken"),
        "{names:?}"
    );
    assert!(at("broken") < names.len(), "{names:?}");
    // What the job said once its steps were done (the daemon `quiet` left,
    // ended) is its last section, "Complete job", as on GitHub.
    assert_eq!(
        names.last().map(String::as_str),
        Some("Complete job"),
        "{names:?}"
    );
    cdp.eval("[...document.querySelectorAll('details.step')].at(-1).open = true; 1");
    cdp.wait(
        "the Complete job section's lines",
        20,
        "[...document.querySelectorAll('details.step')].at(-1).querySelectorAll('.row').length > 0",
    );
    let complete = texts(&mut cdp, "Complete job");
    assert!(
        complete
            .iter()
            .any(|l| l.starts_with("Cleaning up orphan processes: terminated 1")),
        "{complete:?}"
    );
    let setup = cdp.eval(
        "[...(document.getElementById('step-none')?.querySelectorAll('.row') || [])].map((r) => r.lastChild.textContent).join('\\n')",
    );
    assert!(
        !setup.as_str().unwrap_or("").contains("orphan"),
        "not in Set up job: {setup}"
    );
    // Each section's header says how its step ended.
    let conclusion = cdp.eval(
        "[...document.querySelectorAll('details.step')].find((d) => d.querySelector('summary .name')?.textContent === 'broken').dataset.conclusion",
    );
    assert_eq!(conclusion, "failure");
    // A link to a line of a closed step opens it there, the line marked.
    let (job, quiet) = (
        cdp.eval("document.querySelector('.jobbox').dataset.job"),
        cdp.eval(
            "[...document.querySelectorAll('details.step')].find((d) => d.querySelector('summary .name')?.textContent === 'quiet').dataset.step",
        ),
    );
    let (job, quiet) = (job.as_str().unwrap(), quiet.as_str().unwrap());
    cdp.eval(&format!(
        "document.getElementById('step-{quiet}').open = false; 1"
    ));
    cdp.eval(&format!(
        "location.hash = '#/runs/1/jobs/{job}#step-{quiet}:1'; 1"
    ));
    cdp.wait(
        "the linked line",
        20,
        &format!(
            "document.getElementById('step-{quiet}:1')?.classList.contains('hl') && document.getElementById('step-{quiet}').open"
        ),
    );
    let line = cdp.eval(&format!(
        "document.getElementById('step-{quiet}:1').lastChild.textContent"
    ));
    assert_eq!(line, "quiet-line");
}

/// The run graph draws `needs` through a called workflow, whose caller is
/// not a box of its own (as on GitHub): a line from the job the caller
/// needs to the called workflow's first job, and from its last job to the
/// job that needs the caller, which stands in a column after it. (The line
/// into `after` once went to the hidden caller, so it was not drawn, and
/// `after` stood beside `call / b`.)
#[test]
fn run_graph_draws_needs_through_a_called_workflow() {
    let Some(chrome) = chromium("run_graph_draws_needs_through_a_called_workflow") else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(repo.path().join("README"), "x").unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "init"]);
    let (_server, url, token) = common::browser::serve(
        BIN,
        data.path(),
        &["--poll-ms", "100", "--repo", repo.path().to_str().unwrap()],
    );
    let wf = "name: calls\non: push\njobs:\n  first:\n    runs-on: ubuntu-latest\n    steps: [{run: echo first}]\n  call:\n    needs: first\n    uses: ./.github/workflows/r.yml\n  after:\n    needs: call\n    runs-on: ubuntu-latest\n    steps: [{run: echo after}]\n";
    let called = "on: workflow_call\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo a}]\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps: [{run: echo b}]\n";
    std::fs::create_dir_all(repo.path().join(".github/workflows")).unwrap();
    std::fs::write(repo.path().join(".github/workflows/ci.yml"), wf).unwrap();
    std::fs::write(repo.path().join(".github/workflows/r.yml"), called).unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "workflow"]);
    let mut cdp = Cdp::launch(&chrome, tmp.path(), &format!("{url}#/runs/1?token={token}"));
    // The run appears when the watcher sees the commit: reload until it does.
    let start = Instant::now();
    while cdp.eval("document.querySelector('#run-status')?.dataset.conclusion || ''") != "success" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never succeeded on the page"
        );
        if cdp.eval("!!document.querySelector('#error') || !document.querySelector('#run-status')")
            == json!(true)
        {
            std::thread::sleep(Duration::from_millis(300));
            cdp.eval("location.reload(); 1");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cdp.wait(
        "the graph's lines",
        20,
        "document.querySelectorAll('#graph svg path').length >= 3",
    );
    let lines = cdp.eval(
        "[...document.querySelectorAll('#graph svg path')].map((p) => p.dataset.from + ' -> ' + p.dataset.to).sort()",
    );
    assert_eq!(
        lines,
        json!([
            "call / a -> call / b",
            "call / b -> after",
            "first -> call / a"
        ]),
    );
    // Boxes left to right in `needs` order; no box for the caller.
    let left = cdp.eval(
        "Object.fromEntries([...document.querySelectorAll('#graph .jobbox')].map((b) => [b.dataset.key, b.getBoundingClientRect().left]))",
    );
    let at = |k: &str| {
        left[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no box {k}: {left}"))
    };
    assert!(
        at("first") < at("call / a")
            && at("call / a") < at("call / b")
            && at("call / b") < at("after"),
        "{left}"
    );
    assert!(left.get("call").is_none(), "{left}");
}
