//! `hangar scan coverage` on a real git change: the total, the added lines,
//! annotations and the exit code.

use std::path::Path;
use std::process::Command;

const HANGAR: &str = env!("CARGO_BIN_EXE_hangar");

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn total_and_added_lines_gate_with_annotations() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["config", "user.name", "Dev"]);
    git(repo, &["config", "user.email", "dev@example.com"]);
    std::fs::write(repo.join("app.go"), "package app\n\nfunc A() {}\n").unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "base"]);
    git(repo, &["checkout", "-q", "-b", "change"]);
    std::fs::write(
        repo.join("app.go"),
        "package app\n\nfunc A() {}\n\nfunc B() {\n\tx()\n\ty()\n}\n",
    )
    .unwrap();
    git(repo, &["commit", "-q", "-am", "feat: B"]);
    std::fs::write(
        repo.join("cover.out"),
        "mode: set\nexample.com/app/app.go:3.1,3.12 1 1\nexample.com/app/app.go:5.1,6.5 2 1\nexample.com/app/app.go:7.1,8.2 2 0\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(HANGAR)
            .args(["scan", "coverage", "cover.out"])
            .args(args)
            .current_dir(repo)
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .unwrap()
    };
    let out = run(&["--min", "60"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("| total | 5 | 3 | 60.00% |"), "{stdout}");
    let out = run(&["--diff-min", "90", "--base", "main", "--annotate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("| added lines (since main) | 4 | 2 | 50.00% |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("::warning file=app.go,line=7,endLine=8,title=not covered::lines 7-8 are added and not covered by tests"),
        "{stdout}"
    );
    assert!(stderr.contains("below --diff-min 90%"), "{stderr}");
}
