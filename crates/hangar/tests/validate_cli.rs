//! `hangar validate` as users call it: a child process in a repository.

use std::path::Path;
use std::process::Command;

fn hangar(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hangar"))
        .arg("validate")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn template_prints_generated_ids_defaulted_ifs_and_inlined_callees() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    if: github.ref == 'refs/heads/main'\n    steps:\n      - uses: actions/checkout@v4\n      - run: make\n      - run: make test\n  deploy:\n    needs: build\n    uses: ./.github/workflows/deploy.yml\n",
    );
    write(
        dir.path(),
        ".github/workflows/deploy.yml",
        "on:\n  workflow_call:\njobs:\n  ship:\n    runs-on: ubuntu-latest\n    steps:\n      - run: ./ship\n",
    );
    let out = hangar(dir.path(), &["--template", ".github/workflows/ci.yml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let build = &t["jobs"][0];
    assert_eq!(build["name"], "build");
    assert_eq!(
        build["if"],
        serde_json::json!({"type": 3, "expr": "success() && (github.ref == 'refs/heads/main')"})
    );
    let ids: Vec<&str> = build["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["__actions_checkout", "__run", "__run_2"]);
    let deploy = &t["jobs"][1];
    assert_eq!(deploy["type"], "reusableWorkflowJob");
    assert_eq!(deploy["needs"], serde_json::json!(["build"]));
    assert_eq!(deploy["jobs"][0]["id"], "ship");
    assert_eq!(deploy["jobs"][0]["steps"][0]["run"], "./ship");
}

#[test]
fn template_of_an_invalid_workflow_shows_the_errors_instead() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "w.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    needs: nowhere\n    steps:\n      - run: echo\n",
    );
    let out = hangar(dir.path(), &["--template", "w.yml"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no template for an invalid workflow");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere"), "{err}");
    assert!(
        err.contains("fix them to see the converted template"),
        "{err}"
    );
}

/// Limits GitHub's reader enforces reach users with the file, line and column
/// of the value: a tag GitHub does not read, and a `run:` whose compiled
/// expression is past 21000 characters, reported at its `|`.
#[test]
fn unsupported_tags_and_overlong_expressions_are_shown_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("echo ${{{{ github.sha }}}} {}", "x".repeat(21_000));
    write(
        dir.path(),
        ".github/workflows/ci.yml",
        &format!(
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          {script}\n"
        ),
    );
    write(
        dir.path(),
        ".github/workflows/tag.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    timeout-minutes: !!timestamp 2022-10-26\n    steps: [{run: x}]\n",
    );
    let out = hangar(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains(".github/workflows/ci.yml:6:14: error: Exceeded max expression length 21000"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            ".github/workflows/tag.yml:5:22: error: YAML: Unexpected tag 'tag:yaml.org,2002:timestamp'"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}

/// A warning (GitHub accepts the file; the reference is null at run time) is
/// shown as cargo shows one and fails nothing unless warnings are denied.
#[test]
fn warnings_are_shown_counted_apart_and_fail_only_when_denied() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ matrix.os }}\n",
    );
    let out = hangar(dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            ".github/workflows/ci.yml:6:30: warning: job `a` has no matrix, so `matrix.os` is null"
        ),
        "{err}"
    );
    assert!(
        err.contains("1 file(s) checked, 0 error(s), 1 warning(s)"),
        "{err}"
    );
    for deny in [&["-D", "warnings"][..], &["--deny-warnings"]] {
        let out = hangar(dir.path(), deny);
        assert!(!out.status.success(), "{deny:?} fails on a warning");
    }
    let out = hangar(dir.path(), &["--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["severity"], "warning");
    assert_eq!(
        (v[0]["line"].as_u64(), v[0]["column"].as_u64()),
        (Some(6), Some(30))
    );
    // An error still fails, and is counted apart from the warning.
    write(
        dir.path(),
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    continue-on-error: maybe\n    steps:\n      - run: echo ${{ matrix.os }}\n",
    );
    let out = hangar(dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("ci.yml:5:24: error: `continue-on-error` must be `true`, `false` or an expression, found `maybe`"),
        "{err}"
    );
    assert!(
        err.contains("1 file(s) checked, 1 error(s), 1 warning(s)"),
        "{err}"
    );
}

/// Local composite actions under `.github/actions` are checked with the
/// workflows: a `steps.X` that no step before defines is shown at its place.
#[test]
fn local_composite_actions_are_found_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: ./.github/actions/setup\n",
    );
    write(
        dir.path(),
        ".github/actions/setup/action.yml",
        "name: setup\nruns:\n  using: composite\n  steps:\n    - run: echo ${{ steps.tool.outputs.path }}\n      shell: bash\n    - id: tool\n      run: echo path=x >> $GITHUB_OUTPUT\n      shell: bash\n",
    );
    let out = hangar(dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(".github/actions/setup/action.yml:5:27: warning: step `tool` runs after this point, so `steps.tool` is null here"),
        "{err}"
    );
    assert!(
        err.contains("2 file(s) checked, 0 error(s), 1 warning(s)"),
        "{err}"
    );
}

/// The `release:` section is checked as `hangar release` and `hangar serve`
/// read it: `tag_on_merge` must be a boolean, and an unknown key is named.
#[test]
fn the_release_section_is_validated_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hangar.yml",
        "release:\n  tag_format: \"v{version}\"\n  tag_on_merge: yes please\n",
    );
    let out = hangar(dir.path(), &["hangar.yml"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("hangar.yml:3:"), "{text}");
    assert!(text.contains("release:"), "{text}");
    write(dir.path(), "hangar.yml", "release:\n  tag_on_merge: true\n");
    let out = hangar(dir.path(), &["hangar.yml"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    write(
        dir.path(),
        "hangar.yml",
        "release:\n  tag_on_merge: true\n  tags_on_merge: true\n",
    );
    let out = hangar(dir.path(), &["hangar.yml"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("tags_on_merge"), "{text}");
}

/// A schedule entry's `timezone:` (the IANA zone GitHub reads its cron in)
/// is accepted by `hangar validate`, kept in the converted template and run
/// by `hangar run`; a misspelt zone is refused at its place, naming the zone
/// meant.
#[test]
fn schedule_timezones_are_accepted_and_misspellings_named_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let nightly = |zone: &str| {
        format!(
            "on:\n  schedule:\n    - cron: '30 5 * * 1-5'\n      timezone: {zone}\njobs:\n  nightly:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo nightly-ran\n"
        )
    };
    write(
        dir.path(),
        ".github/workflows/nightly.yml",
        &nightly("America/New_York"),
    );
    let out = hangar(dir.path(), &[".github/workflows/nightly.yml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hangar(dir.path(), &["--template", ".github/workflows/nightly.yml"]);
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        t["events"]["schedule"],
        serde_json::json!([{"cron": "30 5 * * 1-5", "timezone": "America/New_York"}])
    );
    let run = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["run", "--bind", "schedule"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        run.status.success() && String::from_utf8_lossy(&run.stdout).contains("nightly-ran"),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    write(dir.path(), "typo.yml", &nightly("America/New_Yrok"));
    let out = hangar(dir.path(), &["typo.yml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "typo.yml:4:17",
        "unknown time zone `America/New_Yrok`",
        "did you mean `America/New_York`?",
    ] {
        assert!(err.contains(expected), "`{expected}` in:\n{err}");
    }
}
