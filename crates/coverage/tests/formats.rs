//! Every report format read into the same totals, and the lines a real git
//! change adds measured as diff-cover measures them.

use std::path::Path;
use std::process::Command;

use hangar_coverage::{Coverage, Tally, added_lines, diff_coverage, read, read_all};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// The same four lines of `src/app.py` (lines 1, 2, 4 hit; 5 not) in each format.
#[test]
fn every_format_gives_the_same_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let lcov = write(
        d,
        "lcov.info",
        "TN:\nSF:src/app.py\nDA:1,1\nDA:2,3\nDA:4,1\nDA:5,0\nLF:4\nLH:3\nend_of_record\n",
    );
    let cobertura = write(
        d,
        "coverage.xml",
        r#"<?xml version="1.0" ?>
<coverage version="7.4" line-rate="0.75">
  <sources><source>/work/proj</source></sources>
  <packages><package name="src"><classes>
    <class name="app.py" filename="src/app.py" line-rate="0.75">
      <methods><method name="f"><lines><line number="2" hits="3"/></lines></method></methods>
      <lines>
        <line number="1" hits="1"/><line number="2" hits="3"/>
        <line number="4" hits="1"/><line number="5" hits="0"/>
      </lines>
    </class>
  </classes></package></packages>
</coverage>
"#,
    );
    let jacoco = write(
        d,
        "jacoco.xml",
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<report name="x"><package name="src"><sourcefile name="app.py">
  <line nr="1" mi="0" ci="2" mb="0" cb="0"/><line nr="2" mi="0" ci="1" mb="0" cb="0"/>
  <line nr="4" mi="1" ci="1" mb="0" cb="0"/><line nr="5" mi="3" ci="0" mb="0" cb="0"/>
</sourcefile></package></report>
"#,
    );
    let go = write(
        d,
        "cover.out",
        "mode: set\nsrc/app.py:1.1,2.10 2 1\nsrc/app.py:4.1,4.5 1 1\nsrc/app.py:5.1,5.9 1 0\n",
    );
    for file in [&lcov, &cobertura, &jacoco, &go] {
        let mut cov = Coverage::default();
        read(file, &mut cov).unwrap();
        assert_eq!(
            cov.total(),
            Tally {
                covered: 3,
                lines: 4
            },
            "{}",
            file.display()
        );
        assert_eq!(cov.total().percent(), 75.0);
    }
    // Two reports of the same file merge: a line hit in either is covered.
    let other = write(d, "more.info", "SF:src/app.py\nDA:5,2\nend_of_record\n");
    let merged = read_all(&[lcov, other]).unwrap();
    assert_eq!(merged.total().covered, 4);
    let bad = write(d, "notes.txt", "hello\n");
    let err = read_all(&[bad]).unwrap_err().to_string();
    assert!(err.contains("not a coverage report"), "{err}");
    let bad = write(d, "bad.info", "SF:a\nDA:x,1\n");
    let err = read_all(&[bad]).unwrap_err().to_string();
    assert!(err.contains("bad.info:2:"), "{err}");
}

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
fn lines_a_change_adds_are_measured_as_diff_cover_does() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["config", "user.name", "Dev"]);
    git(repo, &["config", "user.email", "dev@example.com"]);
    write(repo, "src/app.py", "a = 1\nb = 2\nc = 3\n");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "base"]);
    git(repo, &["checkout", "-q", "-b", "feature"]);
    write(
        repo,
        "src/app.py",
        "a = 1\nb = 2\nc = 3\nif x:\n    d = 4\n# comment\n",
    );
    git(repo, &["commit", "-q", "-am", "add"]);
    // An uncommitted line counts too; a file the report does not know is left out.
    write(repo, "README.md", "hi\n");
    let added = added_lines(repo, "main").unwrap();
    assert_eq!(added["src/app.py"], [4, 5, 6]);
    // Absolute paths in the report match repository paths by suffix.
    let mut cov = Coverage::default();
    let report = write(
        tmp.path(),
        "lcov.info",
        &format!(
            "SF:{}/src/app.py\nDA:1,1\nDA:2,1\nDA:3,1\nDA:4,1\nDA:5,0\nend_of_record\n",
            repo.display()
        ),
    );
    read(&report, &mut cov).unwrap();
    let diff = diff_coverage(&cov, &added);
    assert_eq!(
        diff.total(),
        Tally {
            covered: 1,
            lines: 2
        }
    );
    assert_eq!(diff.files[0].uncovered, [5]);
    assert!(added_lines(repo, "--output=x").is_err());
    assert!(added_lines(repo, "no-such-branch").is_err());
}
