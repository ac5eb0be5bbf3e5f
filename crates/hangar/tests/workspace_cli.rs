//! `hangar run` works on a private copy of the working tree: a real git
//! repository, a real `hangar run`, steps that commit, tag, delete and clean.

use std::path::Path;
use std::process::Command;

use hangar_testkit::{commit, git, write};

fn hangar(dir: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hangar"))
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env("HANGAR_DATA_DIR", data)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap()
}

/// Everything a step could change: refs, tags, HEAD, index, status and the
/// bytes of every file outside `.git` (ignored ones included).
fn snapshot(dir: &Path) -> String {
    let mut s = String::new();
    for args in [
        &["rev-parse", "HEAD"][..],
        &["show-ref"],
        &["status", "--porcelain", "--ignored", "-uall"],
        &["ls-files", "-s"],
        &["stash", "list"],
    ] {
        s += &git(dir, args);
        s.push('\n');
    }
    fn walk(root: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().unwrap() == ".git" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut files = vec![];
    walk(dir, dir, &mut files);
    files.sort();
    for (p, b) in files {
        s += &format!("{p}: {:?}\n", String::from_utf8_lossy(&b));
    }
    s
}

const WORKFLOW: &str = r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - name: the uncommitted state is there
        run: |
          grep -q edited tracked.txt
          test -f untracked.txt
          test ! -e deleted.txt
          test ! -e target/build.o
          git status --porcelain | grep -q '^ M tracked.txt'
      - name: change everything
        run: |
          echo appended >> tracked.txt
          echo more >> committed.txt
          git add -A
          git -c user.name=s -c user.email=s@example.com commit -q -m "from a step"
          git tag v9.9.9
          git branch -D other
          git checkout -q -b step-branch
          rm -f kept.txt
          git clean -fdx
          echo new > made-by-step.txt
"#;

fn user_repo() -> tempfile::TempDir {
    let dir = hangar_testkit::empty_repo();
    write(dir.path(), ".github/workflows/w.yml", WORKFLOW);
    commit(
        dir.path(),
        &[
            (".gitignore", "target/\n"),
            ("tracked.txt", "original\n"),
            ("committed.txt", "c\n"),
            ("kept.txt", "k\n"),
            ("deleted.txt", "d\n"),
        ],
    );
    git(dir.path(), &["branch", "other"]);
    git(dir.path(), &["tag", "v1"]);
    write(dir.path(), "tracked.txt", "edited\n");
    write(dir.path(), "untracked.txt", "u\n");
    write(dir.path(), "target/build.o", "object\n");
    std::fs::remove_file(dir.path().join("deleted.txt")).unwrap();
    dir
}

#[test]
fn steps_that_commit_tag_delete_and_clean_leave_the_repository_byte_identical() {
    let dir = user_repo();
    let data = tempfile::tempdir().unwrap();
    let before = snapshot(dir.path());
    let out = hangar(dir.path(), data.path(), &[]);
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(snapshot(dir.path()), before, "{log}");
    // The copy went with the run.
    let left: Vec<_> = std::fs::read_dir(data.path().join("workspaces"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn keep_workspace_leaves_the_copy_with_the_steps_commit() {
    let dir = user_repo();
    let data = tempfile::tempdir().unwrap();
    let head = git(dir.path(), &["rev-parse", "HEAD"]);
    let out = hangar(dir.path(), data.path(), &["--keep-workspace"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    let kept = err
        .lines()
        .find_map(|l| l.strip_prefix("hangar: the run's workspace is kept in "))
        .unwrap_or_else(|| panic!("no path printed: {err}"));
    let kept = Path::new(kept.trim());
    assert_eq!(
        kept.file_name(),
        dir.path().file_name(),
        "named like the repository"
    );
    assert_eq!(git(kept, &["rev-parse", "HEAD~1"]), head);
    assert_eq!(git(kept, &["log", "-1", "--format=%s"]), "from a step");
    assert!(git(kept, &["tag"]).contains("v9.9.9"));
    assert!(kept.join("made-by-step.txt").exists());
}

#[test]
fn bind_runs_in_the_repository_itself() {
    let dir = hangar_testkit::empty_repo();
    write(
        dir.path(),
        ".github/workflows/w.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo here > made.txt && git tag from-step\n",
    );
    commit(dir.path(), &[]);
    let data = tempfile::tempdir().unwrap();
    let out = hangar(dir.path(), data.path(), &["--bind"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("made.txt").exists());
    assert_eq!(git(dir.path(), &["tag"]), "from-step");
}

#[test]
fn copy_ignored_brings_build_folders() {
    let dir = hangar_testkit::empty_repo();
    write(
        dir.path(),
        ".github/workflows/w.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: test -f target/build.o && echo more >> target/build.o\n",
    );
    commit(dir.path(), &[(".gitignore", "target/\n")]);
    write(dir.path(), "target/build.o", "object\n");
    let data = tempfile::tempdir().unwrap();
    let out = hangar(dir.path(), data.path(), &[]);
    assert!(
        !out.status.success(),
        "target/ was copied without --copy-ignored"
    );
    let out = hangar(dir.path(), data.path(), &["--copy-ignored"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("target/build.o")).unwrap(),
        "object\n",
        "a write in the copy reached the user's file"
    );
}
