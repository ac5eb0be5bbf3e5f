//! `hangar scan policy` as a user runs it: conftest.toml, standard input,
//! the output formats, `--fail-on-empty` and `verify`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const HANGAR: &str = env!("CARGO_BIN_EXE_hangar");

fn hangar(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(HANGAR)
        .args(["scan", "policy"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules/deny.rego",
        "package conftest\nimport rego.v1\n\ndeny contains msg if {\n\tinput.kind == \"Deployment\"\n\tnot input.spec.template.spec.securityContext.runAsNonRoot\n\tmsg := \"Containers must not run as root\"\n}\n\nwarn contains \"services are discouraged\" if input.kind == \"Service\"\n",
    );
    write(
        dir.path(),
        "rules/deny_test.rego",
        "package conftest\nimport rego.v1\n\ntest_root if deny[\"Containers must not run as root\"] with input as {\"kind\": \"Deployment\"}\n",
    );
    write(
        dir.path(),
        "deployment.yaml",
        "kind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec: {}\n",
    );
    dir
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn conftest_toml_is_read_and_flags_win() {
    // acceptance.bats "Fail due to picking up settings from configuration file".
    let dir = project();
    write(
        dir.path(),
        "conftest.toml",
        "policy = \"rules\"\nnamespace = \"conftest\"\n",
    );
    let out = hangar(dir.path(), &["--no-bundled", "deployment.yaml"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("Containers must not run as root"));
    // A namespace flag replaces the file's.
    let out = hangar(
        dir.path(),
        &["--no-bundled", "-n", "nothing*", "deployment.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    write(dir.path(), "conftest.toml", "policies = \"rules\"\n");
    let out = hangar(dir.path(), &["deployment.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("conftest.toml:1:1"));
}

#[test]
fn standard_input_and_every_output_format() {
    let dir = project();
    let yaml = "kind: Deployment\nmetadata: {name: web}\n";
    let args = |o: &'static str| {
        vec![
            "--no-bundled",
            "-p",
            "rules",
            "-n",
            "conftest",
            "-o",
            o,
            "-",
        ]
    };
    let text = hangar(dir.path(), &args("text"), Some(yaml));
    assert_eq!(text.status.code(), Some(1));
    assert!(
        stdout(&text).contains("2 tests, 1 passed, 0 warnings, 1 failure, 0 exceptions"),
        "{}",
        stdout(&text)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&hangar(dir.path(), &args("json"), Some(yaml)).stdout).unwrap();
    assert_eq!(json["failures"], 1);
    assert_eq!(json["inputs"][0]["applied"], 2);
    let junit = stdout(&hangar(dir.path(), &args("junit"), Some(yaml)));
    assert!(
        junit.contains("<failure message=\"Containers must not run as root\""),
        "{junit}"
    );
    let tap = stdout(&hangar(dir.path(), &args("tap"), Some(yaml)));
    assert!(
        tap.starts_with("1..1\nnot ok 1 - - - conftest - Containers"),
        "{tap}"
    );
    let table = stdout(&hangar(dir.path(), &args("table"), Some(yaml)));
    assert!(table.contains("| failure | -:1"), "{table}");
    let github = stdout(&hangar(dir.path(), &args("github"), Some(yaml)));
    assert!(
        github.starts_with("::error file=-,line=1,title=conftest.deny::Containers"),
        "{github}"
    );
    let sarif: serde_json::Value =
        serde_json::from_slice(&hangar(dir.path(), &args("sarif"), Some(yaml)).stdout).unwrap();
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "conftest.deny");
}

#[test]
fn an_input_no_rule_applies_to_warns_or_fails() {
    let dir = project();
    write(
        dir.path(),
        "rules/admission.rego",
        "package admission\nimport rego.v1\ndeny contains \"privileged\" if input.request.object.spec.containers[_].securityContext.privileged\n",
    );
    write(
        dir.path(),
        "pod.yaml",
        "kind: Pod\nspec: {containers: [{name: a}]}\n",
    );
    let args = ["--no-bundled", "-p", "rules", "-n", "admission", "pod.yaml"];
    let out = hangar(dir.path(), &args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr.contains("pod.yaml: no rule applied"), "{stderr}");
    assert!(
        stderr.contains("input.request.object.spec.containers[_]"),
        "{stderr}"
    );
    assert!(stdout(&out).contains("pod.yaml: 0 of 1 rules applied"));
    let mut strict = args.to_vec();
    strict.push("--fail-on-empty");
    assert_eq!(hangar(dir.path(), &strict, None).status.code(), Some(1));
}

#[test]
fn verify_runs_the_unit_tests() {
    let dir = project();
    let out = hangar(dir.path(), &["verify", "-p", "rules"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("1 test, 1 passed, 0 failures"),
        "{}",
        stdout(&out)
    );
    write(
        dir.path(),
        "rules/more_test.rego",
        "package conftest\nimport rego.v1\ntest_wrong if count(deny) == 2 with input as {}\n",
    );
    let out = hangar(dir.path(), &["verify", "-p", "rules"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("FAIL - rules/more_test.rego:3 - data.conftest.test_wrong"),
        "{}",
        stdout(&out)
    );
}
