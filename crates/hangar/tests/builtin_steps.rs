//! `uses: hangar/release@v1` inside a real `hangar run`, with its outputs feeding a later job's `if`.

use std::process::Command;

const HANGAR: &str = env!("CARGO_BIN_EXE_hangar");

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A committed repository holding `files`, and the combined output and
/// success of `hangar run` in it.
fn run_in_repo(message: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, bool, String) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Dev"]);
    git(dir, &["config", "user.email", "dev@example.com"]);
    for (path, text) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    let out = Command::new(HANGAR)
        .arg("run")
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (tmp, out.status.success(), text)
}

#[test]
fn release_step_outputs_drive_a_later_job() {
    let (tmp, ok, text) = run_in_repo(
        "feat: first feature",
        &[(
            ".github/workflows/release.yml",
            r#"on: push
jobs:
  release:
    runs-on: ubuntu-latest
    outputs:
      released: ${{ steps.r.outputs.released }}
      would: ${{ steps.r.outputs.would-release }}
      version: ${{ steps.r.outputs.version }}
    steps:
      - id: r
        uses: hangar/release@v1
        with: { dry-run: true }
  announce:
    needs: release
    if: needs.release.outputs.would == 'true'
    runs-on: ubuntu-latest
    steps:
      - run: echo "announcing v=${{ needs.release.outputs.version }}"
  publish:
    needs: release
    if: needs.release.outputs.released == 'true'
    runs-on: ubuntu-latest
    steps:
      - run: echo "must not run, a dry run released nothing"
"#,
        )],
    );
    let dir = tmp.path();
    assert!(ok, "{text}");
    assert!(text.contains("announcing v=0.1.0"), "{text}");
    assert!(!text.contains("must not run"), "{text}");
    // Seed 003: a dry run printed "released 2.0.0".
    assert!(text.contains("would release 0.1.0 (v0.1.0)"), "{text}");
    assert!(!text.contains("released 0.1.0"), "{text}");
    // The dry run changed nothing.
    let tags = Command::new("git")
        .args(["tag"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(tags.stdout.is_empty());
}

#[test]
fn scan_step_turns_policy_findings_into_annotations_and_fails_as_configured() {
    let (_tmp, ok, text) = run_in_repo(
        "ci: scan",
        &[
            (
                "docker/Dockerfile",
                "FROM ubuntu\nADD https://example.com/x.tgz /x\n",
            ),
            (
                ".github/workflows/scan.yml",
                r#"on: push
jobs:
  gate:
    runs-on: ubuntu-latest
    steps:
      - uses: hangar/scan@v1
        with: { kind: policy, path: docker }
  report-only:
    runs-on: ubuntu-latest
    steps:
      - id: s
        uses: hangar/scan@v1
        with: { kind: policy, path: docker, fail-on: never }
      - run: echo "found=${{ steps.s.outputs.findings }}"
"#,
            ),
        ],
    );
    assert!(!ok, "the gate job fails on findings:\n{text}");
    assert!(
        text.contains("docker/Dockerfile") && text.contains("DF002"),
        "findings are annotations with file and rule:\n{text}"
    );
    // The step's output line, not the echo of its script.
    let found = text
        .lines()
        .filter_map(|l| l.split("found=").nth(1))
        .find(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("0")
        .trim()
        .to_string();
    assert!(
        found.parse::<u32>().unwrap_or(0) >= 2,
        "report-only job saw the findings: {found}\n{text}"
    );
}

#[test]
fn scan_step_reports_secrets_redacted_with_their_place() {
    let token = "ghp_x8Kq2mZ0rT4vW9bN3cY7dF1gH5jL6pQ0sA2e"; // hangar:allow (a fake credential for the test)
    let (_tmp, ok, text) = run_in_repo(
        "ci: scan",
        &[
            ("config/app.env", &format!("# app\nGITHUB_TOKEN={token}\n")),
            (
                ".github/workflows/secrets.yml",
                r#"on: push
jobs:
  gate:
    runs-on: ubuntu-latest
    steps:
      - uses: hangar/scan@v1
        with: { kind: secrets, path: config }
  history:
    runs-on: ubuntu-latest
    steps:
      - id: h
        uses: hangar/scan@v1
        with: { kind: secrets, git: true, fail-on: never }
      - run: echo "history-findings=${{ steps.h.outputs.findings }}"
"#,
            ),
        ],
    );
    assert!(!ok, "secrets fail the gate:\n{text}");
    assert!(
        text.contains("config/app.env:2:14") && text.contains("github-pat"),
        "the finding is an annotation at its place:\n{text}"
    );
    assert!(
        !text.contains(token),
        "the secret is redacted in the log:\n{text}"
    );
    assert!(text.contains("history-findings=1"), "{text}");
}

#[test]
fn scan_step_gates_on_coverage_with_a_summary_table() {
    let (_tmp, ok, text) = run_in_repo(
        "ci: coverage",
        &[
            (
                "lcov.info",
                "SF:src/a.rs\nDA:1,1\nDA:2,1\nDA:3,0\nDA:4,1\nend_of_record\n",
            ),
            (
                ".github/workflows/cov.yml",
                r#"on: push
jobs:
  enough:
    runs-on: ubuntu-latest
    steps:
      - uses: hangar/scan@v1
        with: { kind: coverage, files: lcov.info, min: 70 }
      - run: echo "enough passed"
  too-low:
    runs-on: ubuntu-latest
    steps:
      - uses: hangar/scan@v1
        with: { kind: coverage, files: lcov.info, min: "90%" }
"#,
            ),
        ],
    );
    assert!(!ok, "the too-low job fails:\n{text}");
    assert!(text.contains("| total | 4 | 3 | 75.00% |"), "{text}");
    assert!(text.contains("enough passed"), "{text}");
    assert!(
        text.contains("total coverage 75.00% is below --min 90%"),
        "{text}"
    );
}

/// `hangar run` without `--bind` runs the steps in a private copy that is
/// removed when the run ends; a `hangar/deploy` step still deploys the user's
/// project, so the environment keeps serving after the run, and `hangar
/// status` and `hangar down` in the checkout find it. Before, the controller
/// ran in the vanished copy: the address answered 404, `status` said "not
/// running", and `down` could not stop it.
#[test]
fn a_deploy_step_under_a_private_copy_deploys_the_users_checkout() {
    if !crate::common::have_python3() {
        return;
    }
    let port = crate::common::free_port();
    let repo = crate::common::site_project(
        &format!("  staging:\n    listen: {{ web: 127.0.0.1:{port} }}\n"),
        &[(
            ".github/workflows/deploy.yml",
            "on: push\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    environment: staging\n    steps:\n      - uses: hangar/deploy@v1\n",
        )],
    );
    let dir = repo.path();
    let hangar = |args: &[&str]| {
        let out = Command::new(HANGAR)
            .args(args)
            .current_dir(dir)
            .env_remove("HANGAR_SERVER")
            .env_remove("HANGAR_TOKEN")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    struct Down<'a>(&'a std::path::Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = Command::new(HANGAR)
                .args(["down", "staging", "--dir"])
                .arg(self.0)
                .output();
        }
    }
    let _down = Down(dir);
    let (ok, text) = hangar(&["run"]);
    assert!(ok, "{text}");
    assert!(text.contains("deploying the project in"), "{text}");
    let get = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(s, "GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    };
    // The run is over and its copy gone; the environment still serves.
    assert_eq!(get().as_deref(), Some("v1"));
    assert!(dir.join(".hangar/envs/staging").is_dir());
    let (ok, status) = hangar(&["status", "staging"]);
    assert!(ok && !status.contains("not running"), "{status}");
    let (ok, text) = hangar(&["down", "staging"]);
    assert!(ok, "{text}");
    assert!(get().is_none(), "still served after `hangar down`");
}
