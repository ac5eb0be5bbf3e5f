//! conftest's behaviour, case by case. The fixtures are our own small
//! reproductions; each test names the conftest acceptance test
//! (`acceptance.bats` in open-policy-agent/conftest) or example it mirrors,
//! and expects the counts conftest prints there.

use std::fs;
use std::path::{Path, PathBuf};

use hangar_policy::verify::{TestStatus, verify};
use hangar_policy::{Level, Options, Report, scan};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn counts(r: &Report) -> (usize, usize, usize, usize, usize) {
    (
        r.tests(),
        r.passed(),
        r.warnings(),
        r.failures(),
        r.exceptions(),
    )
}

/// Shaped as conftest's examples/kubernetes/policy: several modules share
/// `package main`, each declaring the same `name :=` helper, and ask a
/// `kubernetes` package for the kind.
fn kubernetes_policies(dir: &Path) -> PathBuf {
    let pol = dir.join("policy");
    write(
        &pol,
        "kinds.rego",
        "package kinds\nimport rego.v1\n\nis_service if input.kind == \"Service\"\nis_deployment if input.kind == \"Deployment\"\n",
    );
    write(
        &pol,
        "root.rego",
        r#"package main
import rego.v1
import data.kinds

name := input.metadata.name

deny contains msg if {
	kinds.is_deployment
	not input.spec.template.spec.securityContext.runAsNonRoot
	msg := sprintf("%s runs as root", [name])
}

selectors if {
	input.spec.selector.matchLabels.app
	input.spec.selector.matchLabels.release
}

deny contains msg if {
	kinds.is_deployment
	not selectors
	msg := sprintf("%s lacks app/release selectors", [name])
}
"#,
    );
    write(
        &pol,
        "labels.rego",
        r#"package main
import rego.v1
import data.kinds

name := input.metadata.name

deny contains msg if {
	kinds.is_deployment
	not input.metadata.labels.team
	msg := sprintf("%s has no team label", [name])
}
"#,
    );
    write(
        &pol,
        "violation.rego",
        r#"package main
import rego.v1
import data.kinds

name := input.metadata.name

violation := [{"msg": msg, "details": {}}] if {
	kinds.is_deployment
	msg := sprintf("no deployments (%s)", [name])
}
"#,
    );
    write(
        &pol,
        "warn.rego",
        r#"package main
import rego.v1
import data.kinds

name := input.metadata.name

warn contains msg if {
	kinds.is_service
	msg := sprintf("no services (%s)", [name])
}
"#,
    );
    pol
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    spec:\n      containers: [{name: web, image: nginx}]\n";
const SERVICE: &str =
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n";

fn run(files: Vec<PathBuf>, pol: &Path, f: impl FnOnce(&mut Options)) -> Report {
    let mut opts = Options {
        files,
        policy_dirs: vec![pol.to_path_buf()],
        no_bundled: true,
        ..Options::default()
    };
    f(&mut opts);
    scan(&opts).unwrap()
}

#[test]
fn every_rule_of_a_shared_package_is_queried() {
    // acceptance.bats "Should show output because of failure" (5 tests, 1 passed,
    // 4 failures on the deployment) and "The number of tests run is accurate"
    // (5 tests, 4 passed, 1 warning on the service).
    let tmp = tempfile::tempdir().unwrap();
    let pol = kubernetes_policies(tmp.path());
    let deploy = write(tmp.path(), "deployment.yaml", DEPLOYMENT);
    let service = write(tmp.path(), "service.yaml", SERVICE);
    let r = run(vec![deploy.clone()], &pol, |_| {});
    let mut msgs: Vec<&str> = r.outcomes.iter().map(|o| o.msg.as_str()).collect();
    msgs.sort();
    assert_eq!(
        msgs,
        [
            "no deployments (web)",
            "web has no team label",
            "web lacks app/release selectors",
            "web runs as root"
        ]
    );
    assert_eq!(counts(&r), (5, 1, 0, 4, 0));
    let r = run(vec![service], &pol, |_| {});
    assert_eq!(counts(&r), (5, 4, 1, 0, 0));
    assert_eq!(r.outcomes[0].msg, "no services (web)");

    // "Output results only once": --all-namespaces and a namespace named
    // twice query each package once.
    let r = run(vec![deploy.clone()], &pol, |o| o.all_namespaces = true);
    assert_eq!(counts(&r), (5, 1, 0, 4, 0));
    let r = run(vec![deploy], &pol, |o| {
        o.namespaces = vec!["main".into(), "main".into(), "m*".into()]
    });
    assert_eq!(counts(&r), (5, 1, 0, 4, 0));
}

#[test]
fn exceptions_switch_off_a_rule_per_document() {
    // acceptance.bats "Exceptions reported correctly": 2 tests, 0 passed,
    // 1 failure, 1 exception; the exception names its query.
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("policy");
    write(
        &pol,
        "policy.rego",
        "package main\nimport rego.v1\n\ndeny_run_as_root contains msg if {\n\tinput.kind == \"Deployment\"\n\tnot input.spec.template.spec.securityContext.runAsNonRoot\n\tmsg := sprintf(\"%s runs as root\", [input.metadata.name])\n}\n",
    );
    write(
        &pol,
        "exception.rego",
        "package main\nimport rego.v1\n\nexception contains rules if {\n\tinput.metadata.name == \"allowed\"\n\trules := [\"run_as_root\"]\n}\n",
    );
    let file = write(
        tmp.path(),
        "deployments.yaml",
        "kind: Deployment\nmetadata: {name: denied}\n---\nkind: Deployment\nmetadata: {name: allowed}\n",
    );
    let r = run(vec![file], &pol, |_| {});
    assert_eq!(counts(&r), (2, 0, 0, 1, 1));
    let excp = r
        .outcomes
        .iter()
        .find(|o| o.level == Level::Exception)
        .unwrap();
    assert_eq!(excp.msg, r#"data.main.exception[_][_] == "run_as_root""#);
    assert_eq!(excp.document, 1);
}

#[test]
fn namespace_wildcards_match_as_conftest_matches_them() {
    // acceptance.bats "Test command matches a single namespace literally",
    // "... every namespace with a wildcard", "... with a wildcard prefix".
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("policy");
    write(
        &pol,
        "images.rego",
        "package main\nimport rego.v1\ndeny contains \"image\" if input[_].Cmd == \"from\"\n",
    );
    write(
        &pol,
        "commands.rego",
        "package commands\nimport rego.v1\ndeny contains \"command\" if input[_].Cmd == \"run\"\n",
    );
    let file = write(tmp.path(), "Dockerfile", "FROM alpine\nRUN apk add x\n");
    let msgs = |ns: &[&str]| -> Vec<String> {
        let r = run(vec![file.clone()], &pol, |o| {
            o.namespaces = ns.iter().map(|s| s.to_string()).collect()
        });
        let mut m: Vec<String> = r.outcomes.iter().map(|o| o.msg.clone()).collect();
        m.sort();
        m
    };
    assert_eq!(msgs(&["main"]), ["image"]);
    assert_eq!(msgs(&["*"]), ["command", "image"]);
    assert_eq!(msgs(&["c*"]), ["command"]);
    // A pattern that matches nothing checks nothing (conftest passes); a
    // literal name nobody declares stays an error (a typo is not a pass).
    assert_eq!(msgs(&["x*"]), Vec::<String>::new());
    assert!(
        scan(&Options {
            files: vec![file],
            policy_dirs: vec![pol],
            namespaces: vec!["comands".into()],
            no_bundled: true,
            ..Options::default()
        })
        .is_err()
    );
}

#[test]
fn data_directories_stdin_and_parser() {
    // acceptance.bats "Can load data along with rego policies" (-d DIR) and
    // "Can parse stdin with parser flag".
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("policy");
    write(
        &pol,
        "ports.rego",
        "package main\nimport rego.v1\ndeny contains msg if {\n\tsome p in input.spec.ports\n\tnot p.port in data.exclusions.ports\n\tmsg := sprintf(\"Cannot expose port %v\", [p.port])\n}\n",
    );
    let data = tmp.path().join("data");
    write(
        &data,
        "nested/services.yaml",
        "exclusions:\n  ports: [22]\n",
    );
    let svc = write(tmp.path(), "svc.yaml", SERVICE);
    let r = run(vec![svc], &pol, |o| o.data = vec![data.clone()]);
    assert_eq!(r.outcomes[0].msg, "Cannot expose port 80");

    write(
        &pol,
        "ini.rego",
        "package ini\nimport rego.v1\ndeny contains \"verify e-mail\" if not input.users.verify_email_enabled == true\n",
    );
    let r = run(vec![PathBuf::from("-")], &pol, |o| {
        o.namespaces = vec!["ini".into()];
        o.parser = Some(hangar_policy::input::Kind::Ini);
        o.stdin = Some("[users]\nverify_email_enabled = false\n".into());
    });
    assert_eq!(r.outcomes[0].msg, "verify e-mail");
    assert_eq!(r.outcomes[0].file, PathBuf::from("-"));
    // Standard input without --parser is YAML, as in conftest.
    let r = run(vec![PathBuf::from("-")], &pol, |o| {
        o.data = vec![data.clone()];
        o.stdin = Some(SERVICE.into());
    });
    assert_eq!(r.failures(), 1);
}

#[test]
fn combine_and_file_info() {
    // acceptance.bats "Can combine yaml files" (2 tests, 1 passed, 1 failure)
    // and conftest's data.conftest.file (name and dir of the input).
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("policy");
    write(
        &pol,
        "users.rego",
        r#"package main
import rego.v1

users := {u.contents.metadata.email | some u in input; u.contents.kind == "user"}

deny contains msg if {
	some t in input
	t.contents.kind == "team"
	some m in t.contents.spec.member
	not m in users
	msg := sprintf("unknown member %s", [m])
}

deny contains msg if {
	some a in input
	some b in input
	a.path != b.path
	a.contents.metadata.name == b.contents.metadata.name
	msg := "duplicate name"
}
"#,
    );
    let team = write(
        tmp.path(),
        "team.yaml",
        "kind: team\nmetadata: {name: one}\nspec: {member: [a@x, b@x]}\n",
    );
    let users = write(
        tmp.path(),
        "users.yaml",
        "kind: user\nmetadata: {name: a, email: a@x}\n---\nkind: user\nmetadata: {name: b, email: c@x}\n",
    );
    let r = run(vec![team.clone(), users], &pol, |o| o.combine = true);
    assert_eq!(counts(&r), (2, 1, 0, 1, 0));
    assert_eq!(r.outcomes[0].msg, "unknown member b@x");

    write(
        &pol,
        "file.rego",
        "package file\nimport rego.v1\nwarn contains msg if msg := sprintf(\"%s in %s\", [data.conftest.file.name, data.conftest.file.dir])\n",
    );
    let r = run(vec![team], &pol, |o| o.namespaces = vec!["file".into()]);
    let dir = std::path::absolute(tmp.path()).unwrap();
    assert_eq!(r.outcomes[0].msg, format!("team.yaml in {}", dir.display()));
}

#[test]
fn a_directory_without_inputs_is_an_error_and_rego_is_never_an_input() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "app.cue", "x: 1\n");
    write(tmp.path(), "README.md", "# x\n");
    let err = scan(&Options {
        files: vec![tmp.path().to_path_buf()],
        ..Options::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("no input hangar reads"), "{err}");
    assert!(err.contains("app.cue (cue)"), "{err}");

    // Seed 003: `scan policy .` parsed policy/dockerfile.rego as a Dockerfile.
    let pol = tmp.path().join("policy");
    write(
        &pol,
        "dockerfile.rego",
        "package main\nimport rego.v1\ndeny contains \"latest\" if { some i in input; i.Cmd == \"from\"; endswith(i.Value[0], \":latest\") }\n",
    );
    write(tmp.path(), "Dockerfile", "FROM alpine:latest\n");
    let r = run(vec![tmp.path().to_path_buf()], &pol, |_| {});
    assert_eq!(r.files, 1);
    assert_eq!(r.failures(), 1);
}

#[test]
fn an_input_no_rule_applies_to_is_reported() {
    // Seed 002: an admission policy (input.request.object...) run against a
    // bare Pod passed with 0 failures while checking nothing.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed002");
    let tmp = tempfile::tempdir().unwrap();
    let pod = write(
        tmp.path(),
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: web, image: nginx, securityContext: {privileged: true}}]\n",
    );
    let opts = |file: PathBuf| Options {
        files: vec![file],
        policy_dirs: vec![fixtures.join("corrected.rego")],
        namespaces: vec!["kubernetes.admission".into()],
        no_bundled: true,
        ..Options::default()
    };
    let r = scan(&opts(pod)).unwrap();
    assert_eq!(r.failures(), 0);
    let unapplied: Vec<_> = r.unapplied().collect();
    assert_eq!(unapplied.len(), 1);
    assert_eq!(unapplied[0].user_rules, 3);
    assert!(
        unapplied[0]
            .missing_paths
            .contains(&"input.request.kind.kind".to_string()),
        "{:?}",
        unapplied[0].missing_paths
    );
    // The same policy on an AdmissionReview applies (compliant or not).
    let r = scan(&opts(fixtures.join("compliant.yaml"))).unwrap();
    assert_eq!(r.unapplied().count(), 0);
    assert_eq!(r.inputs[0].applied, 3);
}

#[test]
fn verify_runs_rego_unit_tests() {
    // acceptance.bats "Can verify rego tests" (4 tests, 4 passed) and "Fail when
    // unit test rego"; tests see --data as "Can load data in unit tests" does.
    let tmp = tempfile::tempdir().unwrap();
    let pol = kubernetes_policies(tmp.path());
    write(
        &pol,
        "main_test.rego",
        r#"package main
import rego.v1

test_deployment_denied if {
	deny["x runs as root"] with input as {"kind": "Deployment", "metadata": {"name": "x"}}
}

test_service_warned if {
	warn["no services (s)"] with input as {"kind": "Service", "metadata": {"name": "s"}}
}

test_wrong if {
	count(deny) == 7 with input as {"kind": "Service", "metadata": {"name": "s"}}
}

test_data if data.limits.max == 3

todo_test_later if false
"#,
    );
    let data = write(tmp.path(), "limits.json", "{\"limits\": {\"max\": 3}}");
    let results = verify(&[pol], &[data], &[]).unwrap();
    let got: Vec<(&str, bool)> = results
        .iter()
        .map(|r| (r.name.as_str(), r.status == TestStatus::Pass))
        .collect();
    assert_eq!(
        got,
        [
            ("data.main.test_deployment_denied", true),
            ("data.main.test_service_warned", true),
            ("data.main.test_wrong", false),
            ("data.main.test_data", true),
            ("data.main.todo_test_later", false),
        ]
    );
    assert_eq!(results[4].status, TestStatus::Skip);
}

#[test]
fn terraform_hcl2_as_conftest_reads_it() {
    // conftest's examples/hcl2 as of its hcl2json v0.6.7 parser (acceptance.bats
    // "Can parse hcl2 files" and "Can parse files from a symlinked directory"):
    // every block body is a list, so its policies iterate with `some x in`.
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("policy");
    write(
        &pol,
        "deny.rego",
        r#"package main
import rego.v1

has_field(obj, field) if {
	obj[field]
}

deny contains msg if {
	some name
	some lb in input.resource.aws_alb_listener[name]
	lb.protocol == "HTTP"
	msg = sprintf("ALB `%v` is using HTTP rather than HTTPS", [name])
}

deny contains msg if {
	some name
	some rule in input.resource.aws_security_group_rule[name]
	rule.type == "ingress"
	contains(rule.cidr_blocks[_], "0.0.0.0/0")
	msg = sprintf("ASG `%v` defines a fully open ingress", [name])
}

deny contains msg if {
	some name
	some disk in input.resource.azurerm_managed_disk[name]
	has_field(disk, "encryption_settings")
	not disk.encryption_settings.enabled
	msg = sprintf("Azure disk `%v` is not encrypted", [name])
}

required_tags := {"environment", "owner"}
missing_tags(resource) := {tag | tag := required_tags[_]; not resource.tags[tag]}

deny contains msg if {
	some aws_resource, name
	some resource in input.resource[aws_resource][name]
	startswith(aws_resource, "aws_")
	missing := missing_tags(resource)
	count(missing) > 0
	msg = sprintf("AWS resource: %q named %q is missing required tags: %v", [aws_resource, name, missing])
}

warn contains msg if {
	count(input.locals) == 2
	msg := sprintf("locals: %v", [input.locals])
}
"#,
    );
    let tf = write(
        tmp.path(),
        "terraform.tf",
        r#"resource "aws_security_group_rule" "my-rule" {
  type        = "ingress"
  cidr_blocks = ["0.0.0.0/0"]
}

resource "aws_alb_listener" "my-alb-listener" {
  port     = "80"
  protocol = "HTTP"
}

resource "aws_db_security_group" "my-group" {

}

resource "azurerm_managed_disk" "source" {
  encryption_settings {
    enabled = false
  }
}

resource "aws_s3_bucket" "valid" {
  bucket = "validBucket"
  acl    = "private"

  tags = {
    environment = "prod"
    owner = "devops"
  }
}

locals {
  a = -1
}

locals {
  b = "${var.region}-x"
  c = var.region
}
"#,
    );
    let r = run(vec![tf], &pol, |_| {});
    let mut msgs: Vec<&str> = r.outcomes.iter().map(|o| o.msg.as_str()).collect();
    msgs.sort();
    assert_eq!(
        msgs,
        [
            "ALB `my-alb-listener` is using HTTP rather than HTTPS",
            "ASG `my-rule` defines a fully open ingress",
            "AWS resource: \"aws_alb_listener\" named \"my-alb-listener\" is missing required tags: {\"environment\", \"owner\"}",
            "AWS resource: \"aws_db_security_group\" named \"my-group\" is missing required tags: {\"environment\", \"owner\"}",
            "AWS resource: \"aws_security_group_rule\" named \"my-rule\" is missing required tags: {\"environment\", \"owner\"}",
            "Azure disk `source` is not encrypted",
            "locals: [{\"a\": -1}, {\"b\": \"${var.region}-x\", \"c\": \"${var.region}\"}]",
        ]
    );
    assert_eq!(r.failures(), 6);
    assert_eq!(r.warnings(), 1);

    // A syntax error is positioned; `--parser hcl2` reads any file name.
    let bad = write(tmp.path(), "bad.tf", "resource \"a\" \"b\" {\n  x = \n}\n");
    let err = scan(&Options {
        files: vec![bad],
        policy_dirs: vec![pol.clone()],
        no_bundled: true,
        ..Options::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("bad.tf:2:7: invalid HCL"), "{err}");
    let other = write(
        tmp.path(),
        "listener.conf",
        "resource \"aws_alb_listener\" \"x\" {\n  protocol = \"HTTP\"\n  tags = { environment = \"a\", owner = \"b\" }\n}\n",
    );
    let r = run(vec![other], &pol, |o| {
        o.parser = Some(hangar_policy::input::Kind::from_parser("hcl2").unwrap())
    });
    assert_eq!(r.failures(), 1);
}
