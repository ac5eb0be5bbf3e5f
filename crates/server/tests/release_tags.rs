//! The server tags a release when the push to the default branch merges it:
//! a real server, real repositories (the registered clone URL is a bare
//! repository, pushed to as a forge's would be), the release prepared by
//! `hangar release --pr`'s own code and merged with git.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A project released as 1.0.0 whose `feat:` commit is prepared as 1.1.0 on
/// `release/v1.1.0` and merged into `main` with a merge commit, everything
/// pushed to a bare repository. Returns (work tree, bare, merge commit).
/// `later_yml` replaces hangar.yml on main while the release is reviewed.
fn merged_release(
    hangar_yml: &str,
    later_yml: Option<&str>,
) -> (tempfile::TempDir, tempfile::TempDir, String) {
    let work = hangar_testkit::empty_repo();
    let dir = work.path();
    hangar_testkit::commit(
        dir,
        &[("version.txt", "1.0.0\n"), ("hangar.yml", hangar_yml)],
    );
    git(dir, &["tag", "-a", "v1.0.0", "-m", "v1.0.0"]);
    hangar_testkit::write(dir, "src.txt", "feature");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "feat: a feature"]);
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["init", "-q", "--bare", "-b", "main"]);
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            &bare.path().display().to_string(),
        ],
    );
    git(dir, &["push", "-q", "origin", "main", "--tags"]);
    let opts = hangar_release::Options {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let prepared = hangar_release::pr::prepare(&opts, "origin", true).unwrap();
    assert_eq!(prepared[0].branch.as_deref(), Some("release/v1.1.0"));
    // Main moves on while the release is reviewed, then it is merged.
    hangar_testkit::write(dir, "other.txt", "x");
    if let Some(text) = later_yml {
        hangar_testkit::write(dir, "hangar.yml", text);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fix: another change"]);
    git(
        dir,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge pull request #3 from acme/release/v1.1.0",
            "release/v1.1.0",
        ],
    );
    git(dir, &["push", "-q", "origin", "main"]);
    let merge = git(dir, &["rev-parse", "HEAD"]).trim().to_string();
    (work, bare, merge)
}

fn tag_of(bare: &Path, tag: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["rev-parse", "--verify", "-q"])
        .arg(format!("refs/tags/{tag}"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn release_audits(s: &TestServer) -> Vec<serde_json::Value> {
    s.get("/api/v1/audit?limit=100")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "release.tag")
        .cloned()
        .collect()
}

const OPT_IN: &str = "release:\n  tag_on_merge: true\n";

#[tokio::test]
async fn the_push_that_merges_a_release_tags_it_once() {
    let s = start().await;

    // Not opted in: the merge is left for `hangar release` to tag.
    let (_w0, plain, merge0) = merged_release("release:\n  changelog: CHANGELOG.md\n", None);
    s.register("acme/plain", plain.path()).await;
    let (code, v) = s.push("acme/plain", plain.path(), &merge0, "p-1").await;
    assert!(code == 202 || code == 200, "{code} {v}");

    let (_work, bare, merge) = merged_release(OPT_IN, None);
    let id = s.register("acme/app", bare.path()).await;
    let (code, v) = s.push("acme/app", bare.path(), &merge, "d-1").await;
    assert_eq!(code, 202, "{v}");
    let start = Instant::now();
    let tag = loop {
        if let Some(t) = tag_of(bare.path(), "v1.1.0") {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "v1.1.0 was not tagged: {:#}",
            s.get("/api/v1/audit").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let b = bare.path();
    // An annotated tag on the merge commit, by hangar, with the notes.
    assert_eq!(git(b, &["cat-file", "-t", "v1.1.0"]).trim(), "tag");
    assert_eq!(git(b, &["rev-list", "-n", "1", "v1.1.0"]).trim(), merge);
    let body = git(b, &["cat-file", "tag", "v1.1.0"]);
    assert!(body.contains("tagger hangar <hangar@localhost>"), "{body}");
    assert!(body.contains("a feature"), "{body}");
    assert!(
        !body.contains("another change"),
        "only the prepared notes: {body}"
    );
    let audits = release_audits(&s).await;
    assert_eq!(audits.len(), 1, "{audits:#?}");
    assert_eq!(audits[0]["target"], format!("repo/{id}"));
    assert_eq!(audits[0]["detail"]["tag"], "v1.1.0");
    assert_eq!(audits[0]["detail"]["commit"], merge);

    // The forge redelivers the webhook, and another delivery of the same
    // push comes in (a second hook, the watcher): no second tag.
    let (code, v) = s.push("acme/app", b, &merge, "d-1").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["duplicate"], true, "{v}");
    let (code, v) = s.push("acme/app", b, &merge, "d-2").await;
    assert_eq!(code, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tag_of(b, "v1.1.0").as_deref(), Some(tag.as_str()));
    assert_eq!(release_audits(&s).await.len(), 1);

    // The repository that did not opt in has no tag.
    assert_eq!(tag_of(plain.path(), "v1.1.0"), None);
    s.server.stop().await;
}

#[tokio::test]
async fn an_invalid_release_setting_tags_nothing() {
    let s = start().await;
    // Valid when the release was prepared, then broken on main.
    let (_work, bare, merge) =
        merged_release(OPT_IN, Some("release:\n  tag_on_merge: yes please\n"));
    s.register("acme/typo", bare.path()).await;
    let (code, v) = s.push("acme/typo", bare.path(), &merge, "t-1").await;
    assert_eq!(code, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tag_of(bare.path(), "v1.1.0"), None);
    assert!(release_audits(&s).await.is_empty());
    s.server.stop().await;
}
