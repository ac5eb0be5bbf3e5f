//! A job's own keys read alike by `hangar run` and by a real `hangar serve`
//! whose jobs a real `hangar agent` process runs: `name:` evaluated per leg,
//! `env:` as a step sees it, `timeout-minutes` from an input ending the job,
//! `continue-on-error` from an input and per matrix leg (the failure shown,
//! the run and the jobs that need it going on), and a key that cannot be
//! read failing its job at its line and column. The server once showed
//! `name:` unevaluated and ignored `continue-on-error`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::browser::{Kill, http, serve};
use crate::common::http_json;

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

const CI: &str = r#"on:
  workflow_dispatch:
    inputs:
      exp: {type: boolean, default: true}
jobs:
  named:
    name: build (${{ github.ref_name }})
    runs-on: ubuntu-latest
    env:
      X: ${{ github.ref_name }}-${{ inputs.exp }}-${{ github.job }}
    steps:
      - run: echo "X=$X"
  legs:
    name: leg ${{ matrix.os }}
    runs-on: ubuntu-latest
    continue-on-error: ${{ matrix.experimental }}
    strategy:
      fail-fast: false
      matrix:
        os: [a, b]
        include: [{os: b, experimental: true}]
    steps: [{run: "test ${{ matrix.os }} = a"}]
  flaky:
    runs-on: ubuntu-latest
    continue-on-error: ${{ inputs.exp }}
    steps: [{run: exit 1}]
  after:
    needs: [flaky, legs]
    runs-on: ubuntu-latest
    steps: [{run: "echo after flaky=${{ needs.flaky.result }} legs=${{ needs.legs.result }}"}]
"#;

const LIMITS: &str = r#"on:
  workflow_dispatch:
    inputs:
      t: {type: number, default: 0.05}
      mode: {type: string, default: maybe}
jobs:
  slow:
    runs-on: ubuntu-latest
    timeout-minutes: ${{ inputs.t }}
    steps: [{run: sleep 60}]
  unreadable:
    runs-on: ubuntu-latest
    continue-on-error: ${{ inputs.mode }}
    steps: [{run: echo never}]
"#;

/// What one side did: each job (leg) that ran, by the name it was shown
/// under, with its conclusion; and every log line.
#[derive(Debug, Default)]
struct Seen {
    jobs: BTreeMap<String, String>,
    lines: Vec<String>,
}

/// `hangar run --json` of one workflow's dispatch: what it showed, and
/// whether it passed.
fn hangar_run(repo: &Path, workflow: &str) -> (Seen, bool, Vec<Value>) {
    let out = Command::new(BIN)
        .current_dir(repo)
        .args(["run", "--json", "--no-validate", "-W"])
        .arg(format!(".github/workflows/{workflow}"))
        .arg("workflow_dispatch")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut names = BTreeMap::new();
    let mut seen = Seen::default();
    let mut annotations = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let job = e["job"].as_str().unwrap_or_default().to_string();
        match e["event"].as_str() {
            Some("job_started") => {
                names.insert(job, e["name"].as_str().unwrap().to_string());
            }
            Some("job_finished") if e["result"] != "skipped" => {
                let name = names.get(&job).cloned().unwrap_or(job);
                seen.jobs
                    .insert(name, e["result"].as_str().unwrap().to_string());
            }
            Some("log") => seen
                .lines
                .push(e["line"].as_str().unwrap_or_default().to_string()),
            Some("annotation") => {
                seen.lines
                    .push(e["message"].as_str().unwrap_or_default().to_string());
                annotations.push(e);
            }
            _ => {}
        }
    }
    (seen, out.status.success(), annotations)
}

/// A dispatch of `workflow` on the server, run to its end: what it showed,
/// and the run as the API gives it.
fn server_run(base: &str, token: &str, repo_id: i64, workflow: &str) -> (Seen, Value) {
    let (code, v) = http_json(
        "POST",
        &format!("{base}/api/v1/repos/{repo_id}/dispatch"),
        token,
        &format!(r#"{{"workflow": "{workflow}", "ref": "main"}}"#),
    );
    assert_eq!(code, 201, "{v}");
    let id = v["run"].as_i64().unwrap();
    let start = Instant::now();
    let run = loop {
        let (_, r) = http_json("GET", &format!("{base}/api/v1/runs/{id}"), token, "");
        if r["run"]["status"] == "completed" {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "run {id} did not end: {r:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut seen = Seen::default();
    for j in run["jobs"].as_array().unwrap() {
        let conclusion = j["conclusion"].as_str().unwrap_or("none");
        if conclusion != "skipped" {
            seen.jobs
                .insert(j["name"].as_str().unwrap().to_string(), conclusion.into());
        }
        let (_, log) = http(
            "GET",
            &format!("{base}/api/v1/jobs/{}/logs/raw", j["id"]),
            token,
            None,
        );
        seen.lines.extend(log.lines().map(String::from));
        if let Some(r) = j["waiting_reason"].as_str() {
            seen.lines.push(r.to_string());
        }
    }
    (seen, run)
}

fn has(lines: &[String], text: &str) -> bool {
    lines.iter().any(|l| l.contains(text))
}

#[test]
fn job_level_keys_read_alike_on_hangar_run_and_on_serve_with_an_agent() {
    let (repo, _) = hangar_testkit::repo_with(&[
        (".github/workflows/ci.yml", CI),
        (".github/workflows/limits.yml", LIMITS),
    ]);

    let (local, local_ok, _) = hangar_run(repo.path(), "ci.yml");
    let began = Instant::now();
    let (local_limits, _, annotations) = hangar_run(repo.path(), "limits.yml");
    assert!(
        began.elapsed() < Duration::from_secs(40),
        "the timeout did not end the job"
    );

    // The server runs nothing itself: a `hangar agent` process does.
    let data = tempfile::tempdir().unwrap();
    let repo_arg = repo.path().to_string_lossy().into_owned();
    let (_serve, url, admin) = serve(
        BIN,
        data.path(),
        &[
            "--agent-capacity",
            "0",
            "--sandbox",
            "none",
            "--repo",
            &repo_arg,
        ],
    );
    let base = url.trim_end_matches('/').trim_end_matches("/ui");
    let (code, t) = http_json(
        "POST",
        &format!("{base}/api/v1/tokens"),
        &admin,
        r#"{"name": "runner", "role": "agent"}"#,
    );
    assert_eq!(code, 201, "{t}");
    let work = tempfile::tempdir().unwrap();
    let _agent = Kill(
        Command::new(BIN)
            .args(["agent", "--server", base, "--token"])
            .arg(t["token"].as_str().unwrap())
            .args(["--sandbox", "none", "--capacity", "4", "--name", "remote"])
            .args(["--labels", "ubuntu-latest", "--work-dir"])
            .arg(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (_, repos) = http_json("GET", &format!("{base}/api/v1/repos"), &admin, "");
    let repo_id = repos[0]["id"].as_i64().unwrap();
    let (server, run) = server_run(base, &admin, repo_id, "ci.yml");
    let (server_limits, limits_run) = server_run(base, &admin, repo_id, "limits.yml");

    // The same jobs under the same names with the same conclusions: the
    // evaluated `name:` of a job and of each leg, and the failures under
    // `continue-on-error` shown as failures on both.
    let expected: BTreeMap<String, String> = [
        ("build (main)", "success"),
        ("leg a", "success"),
        ("leg b", "failure"),
        ("flaky", "failure"),
        ("after", "success"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(local.jobs, expected, "hangar run: {local:#?}");
    assert_eq!(server.jobs, expected, "serve: {run:#}");
    // The job's env as its step sees it.
    for seen in [&local, &server] {
        assert!(has(&seen.lines, "X=main-true-named"), "{:#?}", seen.lines);
        // Those failures did not fail what needs them, nor the run.
        assert!(
            has(&seen.lines, "after flaky=success legs=success"),
            "{:#?}",
            seen.lines
        );
    }
    assert!(local_ok, "hangar run failed: {local:#?}");
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}");
    let flaky = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "flaky")
        .unwrap();
    assert_eq!(flaky["continue_on_error"], true, "{flaky:#}");

    // `timeout-minutes` from an input ended the job, on both; an unreadable
    // `continue-on-error` failed its job, at its line and column.
    let expected: BTreeMap<String, String> = [("slow", "failure"), ("unreadable", "failure")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(local_limits.jobs, expected, "{local_limits:#?}");
    assert_eq!(server_limits.jobs, expected, "{limits_run:#}");
    for seen in [&local_limits, &server_limits] {
        assert!(
            has(&seen.lines, "maximum execution time of 0.05 minutes"),
            "{:#?}",
            seen.lines
        );
        assert!(
            has(
                &seen.lines,
                "job 'unreadable': `continue-on-error`: expected true or false, got `maybe`"
            ),
            "{:#?}",
            seen.lines
        );
    }
    let at = annotations
        .iter()
        .find(|a| a["job"] == "unreadable")
        .expect("an annotation for the unreadable key");
    assert_eq!(
        (&at["file"], &at["line"], &at["col"]),
        (
            &Value::from(".github/workflows/limits.yml"),
            &Value::from(13),
            &Value::from(24)
        ),
        "{at:#}"
    );
    assert!(
        has(
            &server_limits.lines,
            ".github/workflows/limits.yml:13:24: job 'unreadable'"
        ),
        "{:#?}",
        server_limits.lines
    );
    let slow = limits_run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "slow")
        .unwrap();
    let took = slow["finished_at"].as_i64().unwrap() - slow["started_at"].as_i64().unwrap();
    assert!(took < 40_000, "the timeout did not end the job: {slow:#}");
}
