//! `hangar release --pr`: the release prepared on a branch for review and
//! pushed to the remote (a bare repository here), then tagged on the merge
//! by `hangar release` with the version the branch prepared. Real git
//! repositories, the built binary.

use std::path::Path;
use std::process::{Command, Output};

use hangar_testkit::git;

fn hangar(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        // No forge is asked to open a pull request here (release_forge.rs).
        .env_remove("GITHUB_TOKEN")
        .env_remove("HANGAR_FORGE_TOKEN")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_release_prepared_on_a_branch_is_tagged_on_its_merge() {
    let repo = hangar_testkit::empty_repo();
    let dir = repo.path();
    hangar_testkit::commit(dir, &[("version.txt", "1.0.0\n")]);
    git(dir, &["tag", "-a", "v1.0.0", "-m", "v1.0.0"]);
    hangar_testkit::write(dir, "src.txt", "feature");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "feat: a feature"]);
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "-q", "--bare"]);
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            &remote.path().display().to_string(),
        ],
    );
    let main = git(dir, &["symbolic-ref", "--short", "HEAD"])
        .trim()
        .to_string();
    let head = git(dir, &["rev-parse", "HEAD"]);

    // A dry run says what it would do and does nothing.
    let o = hangar(dir, &["release", "--pr", "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("would prepare 1.1.0 on branch release/v1.1.0"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("would commit it on branch release/v1.1.0 and push that to origin"));
    assert_eq!(git(dir, &["branch", "--list", "release/*"]).trim(), "");
    assert_eq!(git(dir, &["rev-parse", "HEAD"]), head);

    let o = hangar(dir, &["release", "--pr"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("prepared 1.1.0 on branch release/v1.1.0 (tag v1.1.0 once merged"),
        "{}",
        text(&o)
    );
    // The user is back on their branch, unchanged; nothing is tagged.
    assert_eq!(git(dir, &["symbolic-ref", "--short", "HEAD"]).trim(), main);
    assert_eq!(git(dir, &["rev-parse", "HEAD"]), head);
    assert_eq!(
        std::fs::read_to_string(dir.join("version.txt")).unwrap(),
        "1.0.0\n"
    );
    assert_eq!(git(dir, &["tag", "--list", "v1.1.0"]).trim(), "");
    // The remote has the branch with the release committed on it.
    let r = remote.path();
    assert_eq!(
        git(r, &["show", "release/v1.1.0:version.txt"]).trim(),
        "1.1.0"
    );
    assert!(git(r, &["show", "release/v1.1.0:CHANGELOG.md"]).contains("a feature"));
    assert_eq!(
        git(r, &["log", "-1", "--format=%s", "release/v1.1.0"]).trim(),
        "chore(release): v1.1.0"
    );
    // Run again, the branch is refreshed (rebuilt from HEAD, pushed with a
    // lease), not refused and not doubled.
    let o = hangar(dir, &["release", "--pr"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("refreshed 1.1.0 on branch release/v1.1.0"),
        "{}",
        text(&o)
    );
    assert_eq!(
        git(r, &["rev-parse", "release/v1.1.0^"]).trim(),
        head.trim()
    );

    // Meanwhile main moves on; then the reviewed branch is merged.
    hangar_testkit::write(dir, "other.txt", "x");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "feat: another feature"]);
    git(
        dir,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge release/v1.1.0",
            "release/v1.1.0",
        ],
    );
    let merge = git(dir, &["rev-parse", "HEAD"]).trim().to_string();

    let o = hangar(dir, &["release", "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("would tag v1.1.0 on {}", &merge[..7])),
        "{}",
        text(&o)
    );
    assert_eq!(git(dir, &["tag", "--list", "v1.1.0"]).trim(), "");

    // The merge is tagged with the prepared version: no new version (the
    // feature merged beside it would have made one), no new commit.
    let o = hangar(dir, &["release"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("tagged v1.1.0 on {} (released 1.1.0", &merge[..7])),
        "{}",
        text(&o)
    );
    assert_eq!(git(dir, &["rev-parse", "HEAD"]).trim(), merge);
    assert_eq!(git(dir, &["rev-list", "-n", "1", "v1.1.0"]).trim(), merge);
    assert!(git(dir, &["tag", "-n20", "--list", "v1.1.0"]).contains("a feature"));
    // Done once: the next release starts from that tag.
    let o = hangar(dir, &["release", "--dry-run"]);
    assert!(text(&o).contains("nothing to release"), "{}", text(&o));
}

/// A squash merge names the commit after the pull request; its tag goes on
/// that commit.
#[test]
fn a_squash_merged_release_is_tagged_on_the_squashed_commit() {
    let repo = hangar_testkit::empty_repo();
    let dir = repo.path();
    hangar_testkit::commit(dir, &[("version.txt", "2.0.0\n")]);
    git(dir, &["tag", "-a", "v2.0.0", "-m", "v2.0.0"]);
    hangar_testkit::write(dir, "src.txt", "fix");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fix: a fix"]);
    let o = hangar(dir, &["release", "--pr", "--no-push"]);
    assert!(o.status.success(), "{}", text(&o));
    git(dir, &["merge", "-q", "--squash", "release/v2.0.1"]);
    git(dir, &["commit", "-q", "-m", "chore(release): v2.0.1 (#7)"]);
    let squashed = git(dir, &["rev-parse", "HEAD"]).trim().to_string();
    let o = hangar(dir, &["release"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("tagged v2.0.1"), "{}", text(&o));
    assert_eq!(
        git(dir, &["rev-list", "-n", "1", "v2.0.1"]).trim(),
        squashed
    );
}

#[test]
fn a_missing_remote_is_named_before_anything_changes() {
    let repo = hangar_testkit::empty_repo();
    let dir = repo.path();
    hangar_testkit::commit(dir, &[("version.txt", "0.1.0\n")]);
    hangar_testkit::write(dir, "a.txt", "a");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "feat: a"]);
    let o = hangar(dir, &["release", "--pr"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no git remote `origin` to push release/v0.2.0 to"),
        "{}",
        text(&o)
    );
    assert_eq!(git(dir, &["branch", "--list", "release/*"]).trim(), "");
}

/// Another tool's release commit (`chore(release): 1.3.0`, its tags named
/// otherwise) is not a prepared release: the version is computed as usual.
#[test]
fn another_tools_release_commit_is_not_a_prepared_release() {
    let repo = hangar_testkit::empty_repo();
    let dir = repo.path();
    hangar_testkit::commit(dir, &[("version.txt", "1.3.0\n")]);
    git(
        dir,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "chore(release): 1.3.0",
        ],
    );
    hangar_testkit::write(dir, "a.txt", "a");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fix: a"]);
    let o = hangar(dir, &["release", "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("would release 1.3.1"), "{}", text(&o));
}
