//! `hangar scan secrets` as a user runs it: exit codes, formats, redaction,
//! baselines and configuration errors.

use std::process::{Command, Output};

const HANGAR: &str = env!("CARGO_BIN_EXE_hangar");
const TOKEN: &str = "ghp_x8Kq2mZ0rT4vW9bN3cY7dF1gH5jL6pQ0sA2e"; // hangar:allow (a fake credential for the test)

fn hangar(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(HANGAR)
        .args(["scan", "secrets"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.env"), format!("A=1\nTOKEN={TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("clean.py"), "x = 1\n").unwrap();
    dir
}

#[test]
fn findings_exit_1_with_redacted_positions() {
    let dir = tree();
    let out = hangar(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("app.env:2:7: github-pat"), "{stdout}");
    assert!(!stdout.contains(TOKEN), "redacted by default: {stdout}");
    assert!(stderr.contains("1 secret found"), "{stderr}");

    let shown = hangar(dir.path(), &["--no-redact"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains(TOKEN));

    std::fs::remove_file(dir.path().join("app.env")).unwrap();
    let clean = hangar(dir.path(), &[]);
    assert_eq!(clean.status.code(), Some(0));
}

#[test]
fn json_and_sarif_reports() {
    let dir = tree();
    let out = hangar(dir.path(), &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["findings"][0]["rule"], "github-pat");
    assert_eq!(v["findings"][0]["line"], 2);
    assert_eq!(v["summary"]["findings"], 1);

    let out = hangar(dir.path(), &["--format", "sarif", "-o", "report.sarif"]);
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(dir.path().join("report.sarif")).unwrap();
    assert!(!text.contains(TOKEN));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let result = &v["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "github-pat");
    assert_eq!(result["level"], "error");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "app.env"
    );
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
}

#[test]
fn baseline_round_trip() {
    let dir = tree();
    let out = hangar(dir.path(), &["--create-baseline", "baseline.json"]);
    assert_eq!(out.status.code(), Some(0));
    let out = hangar(dir.path(), &["--baseline", "baseline.json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 accepted by the baseline"));
}

#[test]
fn a_broken_config_is_exit_2_with_its_position() {
    let dir = tree();
    std::fs::write(
        dir.path().join("rules.toml"),
        "[[rules]]\nid = \"x\"\nregex = '''(oops'''\n",
    )
    .unwrap();
    let out = hangar(dir.path(), &["--config", "rules.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("rules.toml:3:9:"), "{stderr}");

    let out = hangar(dir.path(), &["--git", "HEAD~3..HEAD"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "not a repository is an error, not 'no findings'"
    );
}

/// This repository's own gate, as the README's first command runs it (the
/// `secrets` job of its CI): a new test fixture that looks like a credential
/// needs a `hangar:allow` comment or a baseline entry, or that command fails.
#[test]
fn this_repository_passes_its_own_secrets_gate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = hangar(&root, &["--baseline", ".ci/secrets-baseline.json"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
