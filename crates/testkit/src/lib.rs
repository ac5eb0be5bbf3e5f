//! What tests across the workspace share, written once: where the shared
//! conformance data and action bundles are (and what happens when they are
//! missing), a free loopback port, and real git repositories in temporary
//! directories. Only ever a dev-dependency.

pub mod exposition;
pub mod git_https;
pub mod postgres;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `shared` folder beside the checkout (or `$HANGAR_SHARED`), when it
/// holds `required` (a path inside it, e.g. `conformance/expressions`).
///
/// Missing data never passes a test silently: under CI (`$CI` set) it fails
/// the test, elsewhere it prints a loud SKIPPED line and returns `None`.
pub fn shared(required: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("HANGAR_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.join(required).exists() {
        return Some(dir);
    }
    let missing = dir.join(required);
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing in CI (set HANGAR_SHARED to the shared folder)",
        missing.display()
    );
    eprintln!(
        "\n!!! SKIPPED: {} not found (set HANGAR_SHARED to the shared folder) !!!\n",
        missing.display()
    );
    None
}

/// What a tool the test needs answered when probed (`Ok` when it works here).
///
/// Like missing shared data, a tool that does not work never passes a test
/// silently: under CI (`$CI` set, where `.ci/run` installs it) the test fails
/// with `why`; elsewhere it prints a loud SKIPPED line and returns `None`.
pub fn required_tool<T>(what: &str, probe: Result<T, String>) -> Option<T> {
    match probe {
        Ok(t) => Some(t),
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{what} does not work in CI: {why}"
            );
            eprintln!("\n!!! SKIPPED (NOT TESTED): {what} cannot run here: {why} !!!\n");
            None
        }
    }
}

/// A port that was free on loopback a moment ago, and never one this process
/// handed out before: the tests of one binary run side by side, and the
/// kernel may give a port just released to the next caller, so two tests
/// could otherwise be given one port before either binds it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a loopback port")
            .port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Runs git in `dir` with a fixed identity and no user or system
/// configuration, fails the test when git fails, and returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes `text` at `path` under `dir`, creating its folders.
pub fn write(dir: &Path, path: &str, text: &str) {
    let full = dir.join(path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent).expect("folders for a test file");
    }
    std::fs::write(full, text).expect("a test file");
}

/// An empty repository on branch `main` in a temporary directory.
pub fn empty_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    dir
}

/// Copies the tree at `from` to `to` (created), files and folders only:
/// test data read from `../shared` is copied into a temporary place, never
/// changed where it lies.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a directory to copy into");
    for e in std::fs::read_dir(from)
        .expect("a directory to copy")
        .flatten()
    {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("a file copied");
        }
    }
}

/// Writes `files` into the repository at `dir` and commits them (an empty
/// commit when there are none); returns the new commit id.
pub fn commit(dir: &Path, files: &[(&str, &str)]) -> String {
    for (path, text) in files {
        write(dir, path, text);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "change", "--allow-empty"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// A repository with `files` committed on `main`: the directory and the commit id.
pub fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = empty_repo();
    let sha = commit(dir.path(), files);
    (dir, sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drawn many times in one process, no port comes twice (the kernel
    /// alone hands a just-released port out again: about 1 in 16 draws here).
    #[test]
    fn free_port_never_gives_a_port_twice() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            assert!(seen.insert(free_port()), "a port given twice");
        }
    }

    #[test]
    fn a_repository_has_its_files_committed() {
        let (dir, sha) = repo_with(&[("a/b.txt", "hi\n")]);
        assert_eq!(sha.len(), 40);
        assert_eq!(git(dir.path(), &["show", "HEAD:a/b.txt"]), "hi");
        let next = commit(dir.path(), &[]);
        assert_ne!(next, sha);
    }

    #[test]
    fn ports_are_bindable() {
        let port = free_port();
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
