//! `hangar run` as users call it: a real child process, real signals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo(workflow: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".github/workflows")).unwrap();
    std::fs::write(dir.path().join(".github/workflows/w.yml"), workflow).unwrap();
    dir
}

fn hangar(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hangar"));
    // In place: these tests read what the steps wrote (the private copy has
    // its own tests in workspace_cli.rs).
    c.arg("run").arg("--bind").args(args).current_dir(dir);
    c
}

#[test]
fn ctrl_c_cancels_runs_always_steps_and_exits_130() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo started; sleep 30\n      - run: echo never > never.txt\n      - if: always()\n        run: echo cleaned > always.txt\n",
    );
    let mut child = hangar(dir.path(), &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("started") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the step never started");
    let t = Instant::now();
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = child.wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    assert!(
        dir.path().join("always.txt").exists(),
        "the always() step did not run"
    );
    assert!(!dir.path().join("never.txt").exists());
}

#[test]
fn exit_code_list_json_and_secret_files() {
    let dir = repo(
        "name: demo\non: [push, pull_request]\njobs:\n  ok:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo ${{ secrets.TOKEN }} $VAR_FROM ${{ vars.V }}'}]\n  bad:\n    runs-on: ubuntu-latest\n    needs: ok\n    steps: [{run: 'exit 4'}]\n",
    );
    std::fs::write(dir.path().join(".secrets"), "TOKEN=hunter2\n").unwrap();
    std::fs::write(dir.path().join(".vars"), "V=from-vars\n").unwrap();
    let out = hangar(dir.path(), &["--list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("bad") && text.contains("push,pull_request"),
        "{text}"
    );

    let out = hangar(dir.path(), &["--json", "-j", "ok"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\"line\":\"*** from-vars\""), "{text}");
    assert!(!text.contains("hunter2"));
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("JSON lines");
    }

    let out = hangar(dir.path(), &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("run failed"), "{text}");
}

#[test]
fn invalid_workflows_are_refused_at_their_line_before_any_step_runs() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: [nope]\n    steps:\n      - run: echo ran > ran.txt\n",
    );
    let out = hangar(dir.path(), &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(".github/workflows/w.yml:5:13: error: job `a` needs unknown job `nope`"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was run"), "{stderr}");
    assert!(!dir.path().join("ran.txt").exists());
}

/// A warning (GitHub runs the file; the reference is null) is shown at its
/// line, and the run goes on as on GitHub.
#[test]
fn warnings_are_shown_and_the_workflow_runs() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"os=${{ matrix.os }}\" > ran.txt\n",
    );
    let out = hangar(dir.path(), &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            ".github/workflows/w.yml:6:34: warning: job `a` has no matrix, so `matrix.os` is null"
        ),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ran.txt")).unwrap(),
        "os=\n"
    );
}

/// GitHub reads anchors and aliases since September 2025; `hangar validate`
/// and `hangar run` read them the same way, and refuse the `<<` merge key.
#[test]
fn anchors_and_aliases_run_and_merge_keys_are_refused() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    env: &env\n      GREETING: hello\n      COUNT: 3\n    steps:\n      - &say\n        run: echo \"$GREETING x$COUNT from $JOB\" >> out.txt\n        env: {JOB: a}\n  b:\n    runs-on: ubuntu-latest\n    needs: a\n    env: *env\n    steps:\n      - *say\n      - run: echo \"b=$JOB\" >> out.txt\n        env: {JOB: b}\n",
    );
    let out = hangar(dir.path(), &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    // An integer stays an integer (3, not 3.0) when it becomes an env value.
    assert_eq!(text, "hello x3 from a\nhello x3 from a\nb=b\n");

    let dir = repo(
        "on: push\njobs:\n  a: &a\n    runs-on: ubuntu-latest\n    steps: [{run: echo ran > ran.txt}]\n  b:\n    <<: *a\n    needs: a\n",
    );
    let out = hangar(dir.path(), &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(".github/workflows/w.yml:7:5: error:")
            && stderr.contains("merge key `<<` is not supported")
            && stderr.contains("7 |     <<: *a"),
        "{stderr}"
    );
    assert!(!dir.path().join("ran.txt").exists());
}

/// `github.action` / `GITHUB_ACTION` name the step as GitHub does (`__run`,
/// then `__run_2`; an author's id as given), and an unnamed workflow is named
/// by its path in the repository, wherever hangar was started.
#[test]
fn step_and_workflow_names_follow_github() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"1 $GITHUB_ACTION ${{ github.action }}\" >> out.txt\n      - id: mine\n        run: echo \"2 $GITHUB_ACTION ${{ github.action }}\" >> out.txt\n      - run: echo \"3 $GITHUB_ACTION ${{ github.action }} ${{ github.workflow }} $GITHUB_WORKFLOW\" >> out.txt\n      - run: echo \"$GITHUB_WORKFLOW_REF\" >> out.txt\n",
    );
    let out = hangar(dir.path(), &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "1 __run __run");
    assert_eq!(lines[1], "2 mine mine");
    assert_eq!(
        lines[2],
        "3 __run_2 __run_2 .github/workflows/w.yml .github/workflows/w.yml"
    );
    assert!(
        lines[3].contains("/.github/workflows/w.yml@") && !lines[3].contains("//"),
        "{}",
        lines[3]
    );
}

/// `job.status` turns to failure after a failed step (what `always()` steps
/// report), and a dispatch's `github.event.inputs` carries every input,
/// defaults included, as strings while `inputs` keeps their types.
#[test]
fn job_status_and_dispatch_inputs_follow_github() {
    let dir = repo(
        "on:\n  workflow_dispatch:\n    inputs:\n      flag: {type: boolean, default: true}\n      name: {default: world}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo '${{ toJSON(github.event.inputs.flag) }} ${{ toJSON(inputs.flag) }} ${{ github.event.inputs.name }} ${{ job.status }}' >> out.txt\n      - run: exit 1\n      - if: always()\n        run: echo '${{ job.status }}' >> out.txt\n",
    );
    let out = hangar(dir.path(), &["workflow_dispatch", "--input", "name=you"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert_eq!(text, "\"true\" true you success\nfailure\n");
}

/// GitHub's default variables: the head and base refs only on pull request
/// events, the numeric ids from the payload, no RUNNER_DEBUG outside debug
/// runs; a missing `working-directory` fails the step with GitHub's error.
#[test]
fn default_variables_and_missing_working_directory_follow_github() {
    let dir = repo(
        "on: [push, pull_request]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"${GITHUB_HEAD_REF-unset} ${GITHUB_BASE_REF-unset} ${RUNNER_DEBUG-unset} $GITHUB_ACTOR_ID $GITHUB_REPOSITORY_ID $GITHUB_REPOSITORY_OWNER_ID ${{ github.repository_owner_id }}\" >> out.txt\n      - run: echo never >> out.txt\n        working-directory: missing\n",
    );
    let out = hangar(dir.path(), &["push"])
        .env("RUNNER_DEBUG", "1")
        .env("GITHUB_HEAD_REF", "from-host")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("An error occurred trying to start process '")
            && stdout.contains("/missing'. No such file or directory"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert_eq!(text, "unset unset unset 0 0 0 0\n");

    std::fs::remove_file(dir.path().join("out.txt")).unwrap();
    std::fs::write(
        dir.path().join("pr.json"),
        r#"{"number": 7, "pull_request": {"head": {"ref": "feature"}, "base": {"ref": "main"}}, "sender": {"login": "u", "id": 42}, "repository": {"id": 9, "full_name": "o/r", "owner": {"login": "o", "id": 5}}}"#,
    )
    .unwrap();
    let out = hangar(dir.path(), &["pull_request", "-e", "pr.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert_eq!(text, "feature main unset 42 9 5 5\n");
}

/// A problem matcher registered by one step turns later output into
/// annotations until it is removed; a matcher file that cannot be read fails
/// the step that names it.
#[test]
fn problem_matchers_annotate_output_until_removed() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo '::add-matcher::.github/lint.json'\n      - run: |\n          echo 'src/app.js:12:5: warning: unused variable x'\n          echo 'nothing to see'\n      - run: |\n          echo '::remove-matcher owner=lint::'\n          echo 'src/b.js:1:1: error: after removal'\n      - run: echo '::add-matcher::missing.json'\n",
    );
    std::fs::write(
        dir.path().join(".github/lint.json"),
        r#"{"problemMatcher": [{"owner": "lint", "pattern": [{"regexp": "^(.+):(\\d+):(\\d+): (warning|error): (.+)$", "file": 1, "line": 2, "column": 3, "severity": 4, "message": 5}]}]}"#,
    )
    .unwrap();
    let out = hangar(dir.path(), &["--json"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let annotations: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "annotation")
        .collect();
    let matched: Vec<_> = annotations
        .iter()
        .filter(|a| a["message"] == "unused variable x")
        .collect();
    assert_eq!(matched.len(), 1, "{annotations:?}");
    assert_eq!(matched[0]["level"], "warning");
    assert_eq!(matched[0]["file"], "src/app.js");
    assert_eq!(matched[0]["line"], 12);
    assert!(
        !annotations.iter().any(|a| a["message"] == "after removal"),
        "{annotations:?}"
    );
    assert!(
        annotations.iter().any(|a| a["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot read the problem matcher file"))),
        "{annotations:?}"
    );
}

/// An expression that fails while the job runs is reported where it is
/// written in the workflow (GitHub's `(Line: L, Col: C)`).
#[test]
fn runtime_expression_errors_point_at_their_line() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - if: fromJSON('{')\n        run: echo one\n      - if: always()\n        run: echo ${{ fromJSON('[') }}\n  b:\n    if: fromJSON('nope')\n    runs-on: ubuntu-latest\n    steps: [{run: echo b}]\n",
    );
    let out = hangar(dir.path(), &["--json"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let mut at: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "annotation" && e["file"] == ".github/workflows/w.yml")
        .map(|e| (e["line"].as_u64().unwrap(), e["col"].as_u64().unwrap()))
        .collect();
    at.sort();
    assert_eq!(at, [(6, 13), (9, 14), (11, 9)], "{text}");
}

/// The scheduler `hangar serve` uses: a chain after a failed job is skipped
/// and the run fails; a `needs` cycle is refused, named as validate names it,
/// even past validation.
#[test]
fn skipped_chains_complete_and_cycles_are_named() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: exit 1}]\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps: [{run: echo b > b.txt}]\n  c:\n    needs: b\n    runs-on: ubuntu-latest\n    steps: [{run: echo c > c.txt}]\n  d:\n    needs: b\n    if: failure()\n    runs-on: ubuntu-latest\n    steps: [{run: echo d > d.txt}]\n",
    );
    let out = hangar(dir.path(), &["--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let finished: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "job_finished")
        .collect();
    let result = |job: &str| {
        finished
            .iter()
            .find(|e| e["job"] == job)
            .map(|e| e["result"].clone())
            .unwrap_or_else(|| panic!("no job_finished for {job}: {text}"))
    };
    assert_eq!(result("a"), "failure");
    assert_eq!(result("b"), "skipped");
    assert_eq!(result("c"), "skipped");
    // failure() looks at every ancestor: `a` failed behind the skipped `b`.
    assert_eq!(result("d"), "success");
    assert!(!dir.path().join("c.txt").exists());
    assert!(dir.path().join("d.txt").exists());

    let dir = repo(
        "on: push\njobs:\n  a:\n    needs: b\n    runs-on: ubuntu-latest\n    steps: [{run: echo a > a.txt}]\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps: [{run: echo b > b.txt}]\n",
    );
    for args in [&[][..], &["--no-validate"][..]] {
        let out = hangar(dir.path(), args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cycle in the dependency graph: a -> b -> a"),
            "{args:?}: {stderr}"
        );
        assert!(!dir.path().join("a.txt").exists());
    }
}

/// `github.ref_name` is the whole branch name, slashes and all: the job's
/// `if:` below runs here and on the server (`crates/server/tests/features.rs`
/// holds the same workflow).
#[test]
fn a_branch_with_a_slash_is_its_whole_ref_name() {
    let dir = repo(REF_NAME_WORKFLOW);
    std::fs::write(
        dir.path().join("push.json"),
        r#"{"ref": "refs/heads/feature/x", "repository": {"full_name": "acme/app"}, "sender": {"login": "dev"}}"#,
    )
    .unwrap();
    let out = hangar(dir.path(), &["push", "-e", "push.json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let text = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert_eq!(text, "feature/x\n", "{stdout}");
}

const REF_NAME_WORKFLOW: &str = "on: push\njobs:\n  whole:\n    if: github.ref_name == 'feature/x'\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo ${{ github.ref_name }} >> out.txt'}]\n  last-segment:\n    if: github.ref_name == 'x'\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo wrong >> out.txt'}]\n";

/// An agent's own variables (its token above all) never reach a step.
#[test]
fn steps_do_not_inherit_hangar_variables() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"token=[${HANGAR_TOKEN:-}] path=[${PATH:+set}]\"\n",
    );
    let out = hangar(dir.path(), &[])
        .env("HANGAR_TOKEN", "hgr_agent_secret_token")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("token=[] path=[set]"), "{text}");
}

#[test]
fn max_parallel_runs_legs_in_matrix_order() {
    // Seed 004: `max-parallel: 1` over [storage, auth, api, notifications]
    // ran them one at a time, in a different order each time.
    let out_dir = tempfile::tempdir().unwrap();
    let order_file = out_dir.path().join("order.txt");
    let dir = repo(&format!(
        "on: push\njobs:\n  up:\n    runs-on: ubuntu-latest\n    strategy:\n      max-parallel: 1\n      matrix:\n        svc: [storage, auth, api, notifications, billing, search, mail]\n    steps:\n      - run: echo ${{{{ matrix.svc }}}} >> '{}'\n",
        order_file.display()
    ));
    for _ in 0..3 {
        let _ = std::fs::remove_file(&order_file);
        let out = hangar(dir.path(), &[]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let order = std::fs::read_to_string(&order_file).unwrap();
        assert_eq!(
            order.split_whitespace().collect::<Vec<_>>(),
            [
                "storage",
                "auth",
                "api",
                "notifications",
                "billing",
                "search",
                "mail"
            ]
        );
    }
}

const CI: &str = "name: CI\non: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ci ${{ github.ref_name }} >> log.txt\n      - run: test -z '${{ vars.FAIL }}'\n";
const CD: &str = "name: CD\non:\n  workflow_run:\n    workflows: [CI]\n    types: [completed]\n    branches: [main]\njobs:\n  deploy:\n    if: github.event.workflow_run.conclusion == 'success'\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo cd ${{ github.event.action }} ${{ github.event.workflow_run.head_branch }} ${{ github.ref }} >> log.txt\n";
// No name: GitHub knows it by its path; no branch filter; no `types:` means
// requested and completed.
const REPORT: &str = "on:\n  workflow_run:\n    workflows: [CI]\njobs:\n  report:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo report ${{ github.event.action }} ${{ github.event.workflow_run.status }} ${{ github.event.workflow_run.conclusion }} ${{ github.event.workflow_run.head_sha }} ${{ github.sha }} ${{ github.event_name }} >> log.txt\n";

fn log_of(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("log.txt")).unwrap_or_default();
    let _ = std::fs::remove_file(dir.join("log.txt"));
    text
}

/// CD waits for CI and starts after it completes, only for CI runs of the
/// branches it names, on the default branch's ref and commit, with GitHub's
/// `github.event.workflow_run`; its `if:` on the conclusion holds it back
/// when CI failed.
#[test]
fn workflow_run_follows_ci_on_matching_branches() {
    let (dir, main_sha) = hangar_testkit::repo_with(&[
        (".github/workflows/ci.yml", CI),
        (".github/workflows/cd.yml", CD),
        (".github/workflows/report.yml", REPORT),
        (".gitignore", "log.txt\n"),
    ]);
    let dir = dir.path();

    // Without the flag only CI runs.
    let out = hangar(dir, &["push"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(log_of(dir), "ci main\n");

    let out = hangar(dir, &["push", "--follow-workflow-run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        log_of(dir),
        format!(
            "ci main\nreport requested queued {main_sha} {main_sha} workflow_run\ncd completed main refs/heads/main\nreport completed completed success {main_sha} {main_sha} workflow_run\n"
        ),
        "{stderr}"
    );

    // A branch CD does not name: only the report, which runs on main's
    // commit while the payload tells the feature's.
    hangar_testkit::git(dir, &["checkout", "-q", "-b", "feature"]);
    let feature_sha = hangar_testkit::commit(dir, &[]);
    let out = hangar(dir, &["push", "--follow-workflow-run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        log_of(dir),
        format!(
            "ci feature\nreport requested queued {feature_sha} {main_sha} workflow_run\nreport completed completed success {feature_sha} {main_sha} workflow_run\n"
        ),
        "{stderr}"
    );

    // CI fails on main: CD starts but its `if:` skips the deployment.
    hangar_testkit::git(dir, &["checkout", "-q", "main"]);
    let out = hangar(dir, &["push", "--follow-workflow-run", "--var", "FAIL=1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        log_of(dir),
        format!(
            "ci main\nreport requested queued {main_sha} {main_sha} workflow_run\nreport completed completed failure {main_sha} {main_sha} workflow_run\n"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("starting `CD`"), "{stderr}");
}

/// A → B → C → D → E: B, C and D run, E does not (GitHub's three levels).
#[test]
fn workflow_run_chains_stop_after_three_levels() {
    let next = |name: &str, after: &str| {
        format!(
            "name: {name}\non:\n  workflow_run:\n    workflows: [{after}]\n    types: [completed]\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps: [{{run: 'echo {name} >> log.txt'}}]\n"
        )
    };
    let (b, c, d, e) = (
        next("B", "A"),
        next("C", "B"),
        next("D", "C"),
        next("E", "D"),
    );
    let (dir, _) = hangar_testkit::repo_with(&[
        (
            ".github/workflows/a.yml",
            "name: A\non: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo A >> log.txt'}]\n",
        ),
        (".github/workflows/b.yml", &b),
        (".github/workflows/c.yml", &c),
        (".github/workflows/d.yml", &d),
        (".github/workflows/e.yml", &e),
    ]);
    let out = hangar(dir.path(), &["push", "--follow-workflow-run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(log_of(dir.path()), "A\nB\nC\nD\n", "{stderr}");
    assert!(
        stderr.contains("`E` waits for `D` but is not started"),
        "{stderr}"
    );
}

/// A job with `environment:` sees that environment's secrets and variables
/// over the repository's (as on GitHub), from `.secrets.ENV`/`.vars.ENV` and
/// from `--environment-secret`/`--environment-var`, in its `env:` too, and
/// masked; a job without one sees the repository's.
#[test]
fn environment_secrets_and_vars_win_over_the_repository_s_for_its_jobs_only() {
    let dir = repo(concat!(
        "on: push\njobs:\n",
        "  build:\n    runs-on: ubuntu-latest\n",
        "    steps: [{run: 'echo \"build=${{ secrets.DB_PASSWORD }} ${{ vars.TARGET }}\"; echo \"${{ secrets.DB_PASSWORD }}\" > build.txt'}]\n",
        "  deploy:\n    runs-on: ubuntu-latest\n    environment: prod\n",
        "    env: { FROM_ENV: '${{ secrets.DB_PASSWORD }}' }\n",
        "    steps: [{run: 'echo \"deploy=${{ vars.TARGET }} $FROM_ENV\"; echo \"$FROM_ENV\" > deploy.txt'}]\n",
        "  staging:\n    runs-on: ubuntu-latest\n    environment: { name: Staging }\n",
        "    steps: [{run: 'echo \"staging=${{ vars.TARGET }} ${{ vars.ONLY_REPO }}\"; echo \"${{ secrets.DB_PASSWORD }}\" > staging.txt'}]\n",
    ));
    let d = dir.path();
    std::fs::write(d.join(".secrets"), "DB_PASSWORD=repo-pass-000\n").unwrap();
    std::fs::write(d.join(".vars"), "TARGET=repo-target\nONLY_REPO=kept\n").unwrap();
    std::fs::write(d.join(".secrets.prod"), "DB_PASSWORD=prod-pass-123\n").unwrap();
    std::fs::write(d.join(".vars.prod"), "TARGET=prod-target\n").unwrap();
    let out = hangar(
        d,
        &[
            "--json",
            "--environment-secret",
            "staging:DB_PASSWORD=staging-pass-456",
            "--environment-var",
            "STAGING:TARGET=staging-target",
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("build=*** repo-target"), "{text}");
    assert!(text.contains("deploy=prod-target ***"), "{text}");
    assert!(text.contains("staging=staging-target kept"), "{text}");
    for secret in ["repo-pass-000", "prod-pass-123", "staging-pass-456"] {
        assert!(!text.contains(secret), "{secret} unmasked: {text}");
    }
    let read = |f: &str| {
        std::fs::read_to_string(d.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("build.txt"), "repo-pass-000");
    assert_eq!(read("deploy.txt"), "prod-pass-123", "in the job's env: too");
    assert_eq!(read("staging.txt"), "staging-pass-456");

    let out = hangar(d, &["--environment-secret", "DB_PASSWORD=x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected ENV:NAME=VALUE"),
        "{out:?}"
    );
}
