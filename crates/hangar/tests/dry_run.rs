//! `hangar run --dry-run`: every `uses:` a run would need, and whether it is
//! here to run; a job that could not be planned is never "success", and its
//! dependents are planned all the same. Real git forge over `file://`.

use std::path::Path;

use hangar_testkit::git;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

fn run(dir: &Path, data: &Path, forge: &str, args: &[&str]) -> (Output, String) {
    let out = Command::new(BIN)
        .arg("run")
        .args(args)
        .args(["--actions-url", forge])
        .current_dir(dir)
        .env("HANGAR_DATA_DIR", data)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out, text)
}

#[test]
fn a_dry_run_lists_what_each_uses_needs_and_never_calls_an_unplanned_job_a_success() {
    let tmp = tempfile::tempdir().unwrap();
    // A forge with one composite action, acme/greet@v1.
    let forge = tmp.path().join("forge");
    let src = tmp.path().join("greet");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("action.yml"),
        "name: greet\nruns:\n  using: composite\n  steps:\n    - run: echo hello from greet\n      shell: bash\n",
    )
    .unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-qm", "greet"]);
    git(&src, &["tag", "v1"]);
    std::fs::create_dir_all(forge.join("acme")).unwrap();
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            src.to_str().unwrap(),
            forge.join("acme/greet.git").to_str().unwrap(),
        ],
    );
    let forge_url = format!("file://{}", forge.display());

    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(dir.join(".github/workflows")).unwrap();
    std::fs::create_dir_all(dir.join("tools/lint")).unwrap();
    std::fs::write(
        dir.join("tools/lint/action.yml"),
        "name: lint\nruns:\n  using: composite\n  steps:\n    - run: echo lint\n      shell: bash\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(".github/workflows/ci.yml"),
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - uses: acme/greet@v1\n      - uses: ./tools/lint\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./tools/missing\n      - uses: docker://alpine:3\n",
    )
    .unwrap();
    let data = tmp.path().join("data");

    let (out, text) = run(&dir, &data, &forge_url, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("`actions/checkout@v4`: built into hangar"),
        "{text}"
    );
    assert!(
        text.contains("`acme/greet@v1` is not in the action cache"),
        "{text}"
    );
    assert!(text.contains("`./tools/lint`: local, present"), "{text}");
    assert!(text.contains("`./tools/missing`: no such file"), "{text}");
    assert!(
        text.contains("`docker://alpine:3` needs a container engine"),
        "{text}"
    );
    assert!(
        text.contains("b    failure"),
        "b was planned though a was not: {text}"
    );
    assert!(!text.contains("run succeeded"), "{text}");

    // A real run fetches the action; the dry run then finds it in the cache.
    std::fs::write(
        dir.join(".github/workflows/ci.yml"),
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - uses: acme/greet@v1\n      - uses: ./tools/lint\n",
    )
    .unwrap();
    let (out, text) = run(&dir, &data, &forge_url, &[]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hello from greet"), "{text}");
    let (out, text) = run(&dir, &data, &forge_url, &["--dry-run"]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("`acme/greet@v1`: in the action cache at "),
        "{text}"
    );
    assert!(text.contains("run succeeded"), "{text}");
}
