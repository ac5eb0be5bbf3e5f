//! Every `git` hangar spawns goes through `hangar_git::Git`, which keeps user
//! values behind `--end-of-options`. This walks the crates' sources so a direct
//! spawn cannot creep back in (tests and benches build fixtures and are exempt).

use std::path::{Path, PathBuf};

/// Files allowed to spawn git themselves: the wrapper, and the test kit that
/// writes tests' fixture repositories (only tests link it).
const ALLOWED: &[&str] = &["crates/git/src/lib.rs", "crates/testkit/src/lib.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_git_spawn_outside_the_wrapper() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        rust_files(&krate.path().join("src"), &mut files);
    }
    assert!(files.len() > 50, "the walk found the sources");
    let mut offenders = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if ALLOWED.contains(&rel.as_str()) {
            continue;
        }
        let text: String = std::fs::read_to_string(&f)
            .unwrap()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if text.contains("Command::new(\"git\"") {
            offenders.push(rel);
        }
    }
    assert!(
        offenders.is_empty(),
        "these files spawn git directly; use hangar_git::Git so user values stay behind --end-of-options: {offenders:?}"
    );
}
