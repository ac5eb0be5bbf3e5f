//! The three sources (working tree, git history, the index) and baselines,
//! against real directories and real git repositories.

use std::path::Path;
use std::process::Command;

use hangar_secrets::report::{Options, run};
use hangar_secrets::{Target, default_rules, scan};

const GH: &str = "ghp_x8Kq2mZ0rT4vW9bN3cY7dF1gH5jL6pQ0sA2e"; // hangar:allow (a fake credential for the test)
const GH2: &str = "ghp_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"; // hangar:allow (a fake credential for the test)
const NPM: &str = "npm_Zq8Xw7Cv6Bn5Mm4Ll3Kk2Jj1Hh0Gg9Ff8Ee7"; // hangar:allow (a fake credential for the test)

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.org")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.org")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    dir
}

fn write(dir: &Path, path: &str, text: &str) {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, text).unwrap();
}

#[test]
fn working_tree_honours_gitignore_and_scans_hidden_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".gitignore", "build/\n");
    write(dir.path(), ".env", &format!("GITHUB_TOKEN={GH}\n"));
    write(dir.path(), "build/out.txt", &format!("{GH}\n"));
    write(dir.path(), ".git/config", &format!("{GH}\n"));
    let mut binary = vec![0u8; 16];
    binary.extend_from_slice(GH.as_bytes());
    std::fs::write(dir.path().join("blob.bin"), binary).unwrap();
    write(
        dir.path(),
        "src/deep/a.py",
        &format!("\n\nTOKEN = \"{NPM}\"\n"),
    );

    let found = scan(&Target::Tree(dir.path().into()), &default_rules(), 2).unwrap();
    let got: Vec<(String, u32, u32)> = found
        .findings
        .iter()
        .map(|f| (f.path.clone(), f.line, f.column))
        .collect();
    assert_eq!(
        got,
        vec![(".env".into(), 1, 14), ("src/deep/a.py".into(), 3, 10)]
    );
}

#[test]
fn history_names_the_commit_author_and_line_that_added_a_secret() {
    let dir = repo();
    let d = dir.path();
    write(d, "app.py", &format!("import os\n\nTOKEN = \"{GH}\"\n"));
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "add app"]);
    let first = git(d, &["rev-parse", "HEAD"]);
    // The secret is removed from the tree but stays in history.
    write(d, "app.py", "import os\n\nTOKEN = os.environ['TOKEN']\n");
    write(
        d,
        "deploy/.npmrc",
        &format!("registry=x\n//registry.npmjs.org/:_authToken={NPM}\n"),
    );
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "move token"]);
    let second = git(d, &["rev-parse", "HEAD"]);

    let tree = scan(&Target::Tree(d.into()), &default_rules(), 2).unwrap();
    assert_eq!(
        tree.findings.len(),
        1,
        "the tree has only the npm token, reported once"
    );
    assert!(tree.findings.iter().all(|f| f.path == "deploy/.npmrc"));

    let all = scan(
        &Target::Git {
            repo: d.into(),
            range: None,
        },
        &default_rules(),
        2,
    )
    .unwrap();
    assert_eq!(all.commits, 2);
    let gh = all
        .findings
        .iter()
        .find(|f| f.rule_id == "github-pat")
        .expect("found in history");
    let c = gh.commit.as_ref().unwrap();
    assert_eq!((gh.path.as_str(), gh.line, gh.column), ("app.py", 3, 10));
    assert_eq!(c.sha, first);
    assert_eq!(c.author, "Ada Lovelace");
    assert_eq!(c.email, "ada@example.org");
    let npm = all
        .findings
        .iter()
        .find(|f| f.rule_id == "npm-access-token")
        .unwrap();
    assert_eq!(
        (npm.line, npm.commit.as_ref().unwrap().sha.as_str()),
        (2, second.as_str())
    );

    let range = scan(
        &Target::Git {
            repo: d.into(),
            range: Some("HEAD~1..HEAD".into()),
        },
        &default_rules(),
        2,
    )
    .unwrap();
    assert_eq!(range.commits, 1);
    assert!(range.findings.iter().all(|f| f.path == "deploy/.npmrc"));

    let bad = scan(
        &Target::Git {
            repo: d.into(),
            range: Some("no-such-ref..HEAD".into()),
        },
        &default_rules(),
        2,
    )
    .unwrap_err();
    assert!(bad.to_string().contains("no-such-ref"), "{bad}");
}

#[test]
fn staged_scans_only_what_the_next_commit_records() {
    let dir = repo();
    let d = dir.path();
    write(d, "README.md", "hello\n");
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "init"]);
    write(d, "staged.txt", &format!("one\n{GH}\n"));
    write(d, "unstaged.txt", &format!("{GH2}\n"));
    git(d, &["add", "staged.txt"]);
    let found = scan(&Target::Staged(d.into()), &default_rules(), 2).unwrap();
    assert_eq!(found.findings.len(), 1);
    assert_eq!(
        (found.findings[0].path.as_str(), found.findings[0].line),
        ("staged.txt", 2)
    );
}

#[test]
fn a_baseline_accepts_known_findings_and_not_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.env", &format!("T={GH}\n"));
    let opts = |baseline: Option<std::path::PathBuf>| Options {
        target: Target::Tree(d.into()),
        config: None,
        baseline,
        threads: 2,
    };
    let first = run(&opts(None)).unwrap();
    assert_eq!(first.findings.len(), 1);
    let baseline = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        baseline.path(),
        serde_json::to_string(&first.json(true)).unwrap(),
    )
    .unwrap();
    // The baseline stores no secret in clear.
    assert!(
        !std::fs::read_to_string(baseline.path())
            .unwrap()
            .contains(GH)
    );

    // Lines added above the known secret do not resurface it; a new secret is reported.
    write(d, "a.env", &format!("# rotated soon\nT={GH}\nU={GH2}\n"));
    let second = run(&opts(Some(baseline.path().into()))).unwrap();
    assert_eq!(second.accepted, 1);
    assert_eq!(second.findings.len(), 1);
    assert_eq!(second.findings[0].secret, GH2);

    // .gitleaksignore entries (path:rule:line) are honoured too.
    write(d, ".gitleaksignore", "a.env:github-pat:3\n");
    let third = run(&opts(Some(baseline.path().into()))).unwrap();
    assert!(third.findings.is_empty());

    std::fs::write(baseline.path(), "{ not json").unwrap();
    let err = run(&opts(Some(baseline.path().into())))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(":1:3:") && err.contains("--create-baseline"),
        "{err}"
    );
}
