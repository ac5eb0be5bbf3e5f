//! Real git repositories with scripted histories; exact versions, changelogs and files.

use std::path::PathBuf;
use std::process::Command;

use hangar_release::{Options, run};

struct Repo {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    clock: std::cell::Cell<u64>,
}

impl Repo {
    fn new() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        std::fs::create_dir(&dir).unwrap();
        let r = Repo {
            _tmp: tmp,
            dir,
            clock: std::cell::Cell::new(1_700_000_000),
        };
        r.git(&["init", "-q", "-b", "main"]);
        for (k, v) in [
            ("user.name", "Dev"),
            ("user.email", "dev@example.com"),
            ("commit.gpgSign", "false"),
            ("tag.gpgSign", "false"),
        ] {
            r.git(&["config", k, v]);
        }
        r
    }

    fn git(&self, args: &[&str]) -> String {
        let t = self.clock.get();
        self.clock.set(t + 60);
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_AUTHOR_DATE", format!("@{t} +0000"))
            .env("GIT_COMMITTER_DATE", format!("@{t} +0000"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn commit(&self, msg: &str) -> String {
        let n = self.clock.get();
        self.write(&format!("f{n}.txt"), msg);
        self.commit_all(msg)
    }

    fn commit_all(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    fn release(&self, f: impl FnOnce(&mut Options)) -> Vec<hangar_release::Outcome> {
        let mut o = Options {
            dir: self.dir.clone(),
            ..Default::default()
        };
        f(&mut o);
        run(&o).unwrap()
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.dir.join(path)).unwrap()
    }
}

fn version(o: &[hangar_release::Outcome]) -> Option<String> {
    o[0].version.clone()
}

#[test]
fn first_release_without_tags_uses_the_initial_version() {
    let r = Repo::new();
    r.commit("feat(api): add users endpoint");
    r.commit("fix: handle empty body");
    r.commit("update readme"); // not conventional
    let out = r.release(|_| {});
    assert_eq!(version(&out), Some("0.1.0".into()));
    assert_eq!(out[0].tag.as_deref(), Some("v0.1.0"));
    assert_eq!(
        out[0].nonconforming.len(),
        1,
        "non-conforming commits are reported"
    );
    assert_eq!(out[0].nonconforming[0].subject, "update readme");
    assert_eq!(
        r.git(&["cat-file", "-t", "v0.1.0"]).trim(),
        "tag",
        "annotated tag"
    );
    let log = r.git(&["log", "-1", "--format=%s"]);
    assert_eq!(log.trim(), "chore(release): v0.1.0");
    let cl = r.read("CHANGELOG.md");
    assert!(cl.starts_with("# Changelog\n\n## 0.1.0 ("), "{cl}");
    let feat = cl
        .find("### Features\n\n* **api:** add users endpoint")
        .expect(&cl);
    let fix = cl.find("### Bug Fixes\n\n* handle empty body").expect(&cl);
    assert!(feat < fix);
    assert!(!cl.contains("update readme"));
}

#[test]
fn bump_rules_major_minor_patch_and_zero_x() {
    let r = Repo::new();
    r.commit("feat: one");
    r.git(&["tag", "v1.0.0"]);
    r.commit("fix: small");
    assert_eq!(
        version(&r.release(|o| o.dry_run = true)),
        Some("1.0.1".into())
    );
    r.commit("perf: faster");
    r.commit("feat(ui): new page");
    assert_eq!(
        version(&r.release(|o| o.dry_run = true)),
        Some("1.1.0".into())
    );
    r.commit("refactor!: drop the v1 API");
    assert_eq!(
        version(&r.release(|o| o.dry_run = true)),
        Some("2.0.0".into())
    );

    let z = Repo::new();
    z.commit("feat: x");
    z.git(&["tag", "v0.3.2"]);
    z.commit("fix: y\n\nBREAKING CHANGE: config key renamed");
    let out = z.release(|o| o.dry_run = true);
    // As commitizen and python-semantic-release do by default (git-cliff bumps minor).
    assert_eq!(
        version(&out),
        Some("1.0.0".into()),
        "breaking below 1.0.0 releases 1.0.0"
    );
    assert!(
        out[0]
            .explain
            .iter()
            .any(|e| e.contains("breaking_below_1: minor")),
        "{:?}",
        out[0].explain
    );
    assert!(
        out[0]
            .notes
            .contains("### ⚠ BREAKING CHANGES\n\n* config key renamed"),
        "{}",
        out[0].notes
    );
    assert!(
        out[0].notes.find("BREAKING").unwrap() < out[0].notes.find("### Bug Fixes").unwrap(),
        "breaking changes first"
    );
    z.write("hangar.yml", "release:\n  breaking_below_1: minor\n");
    z.commit_all("chore: config");
    let out = z.release(|o| o.dry_run = true);
    assert_eq!(version(&out), Some("0.4.0".into()));
    assert!(
        out[0]
            .explain
            .iter()
            .any(|e| e.contains("as git-cliff does")),
        "{:?}",
        out[0].explain
    );
}

#[test]
fn pre_release_channel_then_final() {
    let r = Repo::new();
    r.commit("feat: base");
    r.git(&["tag", "v1.3.0"]);
    r.commit("feat: search");
    assert_eq!(
        version(&r.release(|o| o.pre = Some("rc".into()))),
        Some("1.4.0-rc.1".into())
    );
    r.commit("fix: search crash");
    let rc2 = r.release(|o| o.pre = Some("rc".into()));
    assert_eq!(version(&rc2), Some("1.4.0-rc.2".into()));
    assert!(
        rc2[0].notes.contains("search crash") && !rc2[0].notes.contains("### Features"),
        "rc.2 lists what is new since rc.1: {}",
        rc2[0].notes
    );
    let fin = r.release(|_| {});
    assert_eq!(version(&fin), Some("1.4.0".into()));
    assert!(
        fin[0].notes.contains("search crash")
            && fin[0].notes.contains("### Features\n\n* search ("),
        "the final lists everything since 1.3.0"
    );
}

#[test]
fn release_candidates_before_the_first_tag_lead_to_their_release() {
    // The version file is the current version (1.0.0) and there is no tag:
    // rc.1 of 1.1.0, no empty rc.2, rc.2 after a fix, then 1.1.0 itself (it
    // went 1.1.0-rc.1 then 1.2.0: the file's 1.1.0-rc.1 was bumped again).
    let r = Repo::new();
    r.write("version.txt", "1.0.0\n");
    r.commit_all("chore: start");
    r.commit("feat: search");
    let rc = |r: &Repo| version(&r.release(|o| o.pre = Some("rc".into())));
    assert_eq!(rc(&r), Some("1.1.0-rc.1".into()));
    assert_eq!(r.read("version.txt"), "1.1.0-rc.1\n");
    assert_eq!(rc(&r), None, "no empty rc.2 right after rc.1");
    r.commit("fix: search crash");
    assert_eq!(rc(&r), Some("1.1.0-rc.2".into()));
    assert_eq!(version(&r.release(|_| {})), Some("1.1.0".into()));
    assert_eq!(r.read("version.txt"), "1.1.0\n");
    // A breaking change after a candidate of a minor release still goes up a major.
    r.commit("feat!: new api");
    assert_eq!(rc(&r), Some("2.0.0-rc.1".into()));
    assert_eq!(version(&r.release(|_| {})), Some("2.0.0".into()));
}

#[test]
fn empty_range_and_forced_version() {
    let r = Repo::new();
    r.commit("feat: a");
    r.git(&["tag", "v2.0.0"]);
    let out = r.release(|_| {});
    assert!(!out[0].released);
    assert!(
        out[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("no commits since v2.0.0")
    );
    r.commit("docs: typo");
    let out = r.release(|_| {});
    assert!(!out[0].released, "docs do not bump");
    let out = r.release(|o| o.force = Some("3.1.4".parse().unwrap()));
    assert_eq!(version(&out), Some("3.1.4".into()));
}

#[test]
fn tags_out_of_order_and_merges_and_reverts() {
    let r = Repo::new();
    r.commit("feat: a");
    r.git(&["tag", "v1.10.0"]);
    r.git(&["tag", "v1.2.0"]); // made later, lower version: the highest wins
    r.git(&["checkout", "-q", "-b", "topic"]);
    r.commit("fix: on topic");
    r.git(&["checkout", "-q", "main"]);
    r.commit("docs: on main");
    r.git(&[
        "merge",
        "-q",
        "--no-ff",
        "topic",
        "-m",
        "Merge branch 'topic'",
    ]);
    let out = r.release(|o| o.dry_run = true);
    assert_eq!(version(&out), Some("1.10.1".into()));
    assert!(
        out[0].nonconforming.is_empty(),
        "a merge commit is not a non-conforming commit: {:?}",
        out[0].nonconforming
    );

    let feat = r.commit("feat: risky");
    r.git(&["revert", "--no-edit", &feat]);
    let out = r.release(|o| o.dry_run = true);
    assert_eq!(
        version(&out),
        Some("1.10.1".into()),
        "a reverted feature in the same range does not bump minor"
    );
    assert!(!out[0].notes.contains("risky"), "{}", out[0].notes);
}

#[test]
fn dry_run_changes_nothing() {
    let r = Repo::new();
    r.write("version.txt", "0.0.0\n");
    r.commit_all("feat: a");
    let head = r.git(&["rev-parse", "HEAD"]);
    let out = r.release(|o| o.dry_run = true);
    assert_eq!(version(&out), Some("0.1.0".into()));
    assert!(out[0].notes.contains("## 0.1.0"));
    assert_eq!(r.git(&["rev-parse", "HEAD"]), head);
    assert_eq!(r.git(&["status", "--porcelain"]), "");
    assert_eq!(r.git(&["tag"]), "");
}

#[test]
fn version_files_and_changelog_prepend() {
    let r = Repo::new();
    r.write("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\n\n[workspace.package]\nversion = \"1.0.0\" # bumped by hangar\n");
    r.write(
        "crates/a/Cargo.toml",
        "[package]\nname = \"a\"\nversion.workspace = true\n",
    );
    r.write(
        "crates/b/Cargo.toml",
        "[package]\nname = \"b\"\nversion = \"1.0.0\"\n",
    );
    r.write("package.json", "{\n  \"name\": \"web\",\n  \"version\": \"1.0.0\",\n  \"dependencies\": {\"x\": {\"version\": \"9.9.9\"}}\n}\n");
    r.write(
        "pyproject.toml",
        "[project]\nname = \"p\"\nversion = \"1.0.0\"\n",
    );
    r.write("src/meta.go", "package meta\n\nconst Version = \"1.0.0\"\n");
    r.write("hangar.yml", "release:\n  version_files:\n    - { path: src/meta.go, regex: 'Version = \"([^\"]+)\"' }\n");
    r.write(
        "CHANGELOG.md",
        "# Changelog\n\n## 1.0.0 (2020-01-01)\n\n* old entry, untouched\n",
    );
    r.commit_all("feat: first");
    r.git(&["tag", "v1.0.0"]);
    r.commit("feat: second");
    let out = r.release(|_| {});
    assert_eq!(version(&out), Some("1.1.0".into()));
    assert!(
        r.read("Cargo.toml")
            .contains("version = \"1.1.0\" # bumped by hangar"),
        "{}",
        r.read("Cargo.toml")
    );
    assert!(
        r.read("crates/a/Cargo.toml")
            .contains("version.workspace = true")
    );
    assert!(
        r.read("crates/b/Cargo.toml")
            .contains("version = \"1.1.0\"")
    );
    let pkg = r.read("package.json");
    assert!(
        pkg.contains("\"version\": \"1.1.0\"") && pkg.contains("{\"version\": \"9.9.9\"}"),
        "{pkg}"
    );
    assert!(r.read("pyproject.toml").contains("version = \"1.1.0\""));
    assert!(r.read("src/meta.go").contains("Version = \"1.1.0\""));
    let cl = r.read("CHANGELOG.md");
    assert!(cl.starts_with("# Changelog\n\n## 1.1.0"), "{cl}");
    assert!(
        cl.ends_with("## 1.0.0 (2020-01-01)\n\n* old entry, untouched\n"),
        "older entries byte for byte: {cl}"
    );
    assert_eq!(
        r.git(&["status", "--porcelain"]),
        "",
        "everything committed"
    );
}

#[test]
fn commit_links_when_the_remote_is_known() {
    let r = Repo::new();
    r.git(&["remote", "add", "origin", "git@github.com:acme/shop.git"]);
    let sha = r.commit("fix: link me");
    let out = r.release(|o| o.dry_run = true);
    assert!(
        out[0].notes.contains(&format!(
            "([{}](https://github.com/acme/shop/commit/{sha}))",
            &sha[..7]
        )),
        "{}",
        out[0].notes
    );
}

#[test]
fn monorepo_packages_version_independently() {
    let r = Repo::new();
    r.write("hangar.yml", "release:\n  packages:\n    - { name: api, path: services/api }\n    - { name: web, path: apps/web }\n");
    r.write("services/api/version.txt", "0.0.0\n");
    r.write("apps/web/version.txt", "0.0.0\n");
    r.commit_all("chore: layout");
    r.git(&["tag", "api-v1.0.0"]);
    r.git(&["tag", "web-v2.0.0"]);
    r.write("services/api/main.rs", "fn main() {}");
    r.commit_all("feat(api): new endpoint");
    r.write("apps/web/app.js", "1");
    r.commit_all("fix(web): button");
    let out = r.release(|_| {});
    assert_eq!(out.len(), 2);
    assert_eq!(
        (
            out[0].package.as_deref(),
            out[0].version.as_deref(),
            out[0].tag.as_deref()
        ),
        (Some("api"), Some("1.1.0"), Some("api-v1.1.0"))
    );
    assert_eq!(
        (
            out[1].package.as_deref(),
            out[1].version.as_deref(),
            out[1].tag.as_deref()
        ),
        (Some("web"), Some("2.0.1"), Some("web-v2.0.1"))
    );
    assert!(!out[0].notes.contains("button") && !out[1].notes.contains("endpoint"));
    assert_eq!(r.read("services/api/version.txt"), "1.1.0\n");
    assert!(r.read("apps/web/CHANGELOG.md").contains("button"));
}

#[test]
fn shallow_clone_warns() {
    let r = Repo::new();
    for i in 0..5 {
        r.commit(&format!("fix: n{i}"));
    }
    let clone = r._tmp.path().join("shallow");
    let url = format!("file://{}", r.dir.display());
    let out = Command::new("git")
        .args(["clone", "-q", "--depth", "2", &url])
        .arg(&clone)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = run(&Options {
        dir: clone,
        dry_run: true,
        ..Default::default()
    })
    .unwrap();
    assert!(
        res[0].warnings.iter().any(|w| w.contains("shallow clone")),
        "{:?}",
        res[0].warnings
    );
    assert_eq!(res[0].commits, 2);
}

#[test]
fn commitlint_reports_each_bad_message() {
    let r = Repo::new();
    r.commit("feat: good one");
    r.commit("Fixed stuff.");
    let res = hangar_release::commitlint(&r.dir, "HEAD").unwrap();
    assert_eq!(res.len(), 2);
    assert!(res[0].2.is_empty());
    assert!(
        res[1].2[0].contains("not a Conventional Commit"),
        "{:?}",
        res[1]
    );
    assert!(hangar_release::lint("fix(api): trailing period.")[0].contains("period"));
    assert!(hangar_release::lint("Merge branch 'x'").is_empty());
}

#[test]
fn without_a_tag_the_version_files_are_the_current_version() {
    // Seed 003: version.txt said 1.0.0, no tag, and 0.1.0 was released over it.
    let r = Repo::new();
    r.write("version.txt", "1.0.0\n");
    r.commit_all("chore: start");
    r.commit("feat: telemetry");
    let out = r.release(|o| o.dry_run = true);
    assert_eq!(version(&out), Some("1.1.0".into()));
    assert_eq!(out[0].previous.as_deref(), Some("1.0.0"));
    assert!(
        out[0].explain[0].contains("the current version is 1.0.0, from version.txt"),
        "{:?}",
        out[0].explain
    );
    // `--as` below it is refused; `--as` the declared version tags it as it is.
    let err = run(&Options {
        dir: r.dir.clone(),
        force: Some("0.5.0".parse().unwrap()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not downgrade"), "{err}");
    let out = r.release(|o| o.force = Some("1.0.0".parse().unwrap()));
    assert_eq!(out[0].tag.as_deref(), Some("v1.0.0"));
    assert_eq!(r.read("version.txt"), "1.0.0\n");

    // Files that disagree are an error naming both.
    let d = Repo::new();
    d.write("version.txt", "1.0.0\n");
    d.write(
        "package.json",
        "{\n  \"name\": \"x\",\n  \"version\": \"1.2.0\"\n}\n",
    );
    d.commit_all("feat: start");
    let err = run(&Options {
        dir: d.dir.clone(),
        dry_run: true,
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("package.json says 1.2.0") && err.contains("version.txt says 1.0.0"),
        "{err}"
    );
}

#[test]
fn no_empty_pre_release() {
    // Seed 003: an rc.2 was offered right after rc.1 with nothing new.
    let r = Repo::new();
    r.commit("feat: base");
    r.git(&["tag", "v1.3.0"]);
    r.commit("feat: search");
    assert_eq!(
        version(&r.release(|o| o.pre = Some("rc".into()))),
        Some("1.4.0-rc.1".into())
    );
    let out = r.release(|o| {
        o.pre = Some("rc".into());
        o.dry_run = true
    });
    assert!(!out[0].released);
    assert!(
        out[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("no commits since v1.4.0-rc.1"),
        "{:?}",
        out[0].reason
    );
}

#[test]
fn a_non_conventional_past_is_named_and_can_be_skipped() {
    // Seed 000: their history is not conventional; "nothing to release" said
    // nothing of why, and --as 1.0.0 wrote empty notes.
    let r = Repo::new();
    r.commit("Update README");
    let old = r.commit("Fix login bug");
    let out = r.release(|o| o.dry_run = true);
    assert!(!out[0].released);
    let reason = out[0].reason.clone().unwrap();
    assert!(
        reason.contains("2 commit(s) since the first commit, none of them a Conventional Commit"),
        "{reason}"
    );
    let forced = r.release(|o| {
        o.force = Some("1.0.0".parse().unwrap());
        o.dry_run = true
    });
    assert!(
        forced[0].notes.contains("### Changes\n\n* Update README (")
            && forced[0].notes.contains("* Fix login bug ("),
        "{}",
        forced[0].notes
    );

    // release.since: only what follows counts.
    r.write("hangar.yml", &format!("release:\n  since: {old}\n"));
    r.commit_all("chore: adopt conventional commits");
    let out = r.release(|o| o.dry_run = true);
    assert!(!out[0].released);
    assert!(
        out[0].nonconforming.is_empty(),
        "{:?}",
        out[0].nonconforming
    );
    assert!(
        out[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("1 conventional commit(s) since release.since"),
        "{:?}",
        out[0].reason
    );
    r.commit("feat: sign-up page");
    let out = r.release(|_| {});
    assert_eq!(version(&out), Some("0.1.0".into()));
    assert!(!out[0].notes.contains("login"), "{}", out[0].notes);

    r.write("hangar.yml", "release:\n  since: no-such-ref\n");
    r.commit_all("chore: typo");
    let err = run(&Options {
        dir: r.dir.clone(),
        dry_run: true,
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("release.since: `no-such-ref` is not a commit"),
        "{err}"
    );
    // No commits at all since a tag is said as such.
    let e = Repo::new();
    e.commit("feat: a");
    e.git(&["tag", "v1.0.0"]);
    let out = e.release(|o| o.dry_run = true);
    assert_eq!(out[0].reason.as_deref(), Some("no commits since v1.0.0"));
}
