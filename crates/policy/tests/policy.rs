//! `scan` end to end: user policies with conftest conventions, the seed's OPA
//! admission policy (verbatim and corrected), and the bundled set.

use std::fs;
use std::path::{Path, PathBuf};

use hangar_policy::{Level, Options, scan};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn admission(policy: &str, input: &str) -> anyhow::Result<hangar_policy::Report> {
    scan(&Options {
        files: vec![fixtures().join("seed002").join(input)],
        policy_dirs: vec![fixtures().join("seed002").join(policy)],
        namespaces: vec!["kubernetes.admission".into()],
        no_bundled: true,
        ..Options::default()
    })
}

#[test]
fn seed_policy_verbatim_names_starts_with_and_suggests_startswith() {
    let err = admission("verbatim.rego", "noncompliant.json")
        .unwrap_err()
        .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("verbatim.rego:6:"),
        "error names file:line:col: {err}"
    );
    assert!(err.contains("`starts_with`"), "{err}");
    assert!(err.contains("did you mean `startswith`?"), "{err}");
}

#[test]
fn seed_policy_corrected_denies_noncompliant_pod_with_all_three_messages() {
    let report = admission("corrected.rego", "noncompliant.json").unwrap();
    let mut msgs: Vec<&str> = report.outcomes.iter().map(|o| o.msg.as_str()).collect();
    msgs.sort();
    assert_eq!(
        msgs,
        [
            "Containers must run as non-root",
            "Only images from ghcr.io are allowed",
            "Privileged containers are not allowed"
        ]
    );
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| o.level == Level::Failure && o.namespace == "kubernetes.admission")
    );
}

#[test]
fn seed_policy_corrected_passes_compliant_pod() {
    let report = admission("corrected.rego", "compliant.yaml").unwrap();
    assert_eq!(report.outcomes, []);
    assert_eq!(report.documents, 1);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn conftest_conventions_multi_document_and_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("policy");
    write(
        &pol,
        "main.rego",
        r#"package main
import rego.v1

deny contains msg if {
  input.kind == "Service"
  msg := sprintf("no services: %s", [input.metadata.name])
}

warn_labels contains {"msg": "missing labels", "id": "LBL"} if {
  input.kind
  not input.metadata.labels
}

violation contains msg if {
  input.server.port == 80
  msg := "plain http"
}
"#,
    );
    // Tests are not policies.
    write(&pol, "main_test.rego", "package main\nthis is not rego");
    let yaml = write(
        tmp.path(),
        "k8s.yaml",
        "kind: Service\nmetadata: {name: a}\n---\n# second\nkind: ConfigMap\nmetadata: {name: b, labels: {x: y}}\n---\nkind: Service\nmetadata: {name: c, labels: {x: y}}\n",
    );
    let toml = write(tmp.path(), "conf.toml", "[server]\nport = 80\n");
    let report = scan(&Options {
        files: vec![yaml.clone(), toml],
        policy_dirs: vec![pol.clone()],
        no_bundled: true,
        ..Options::default()
    })
    .unwrap();
    let got: Vec<(String, usize, String, Level)> = report
        .outcomes
        .iter()
        .map(|o| {
            (
                o.file.file_name().unwrap().to_string_lossy().into_owned(),
                o.line,
                o.msg.clone(),
                o.level,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("conf.toml".into(), 1, "plain http".into(), Level::Failure),
            (
                "k8s.yaml".into(),
                1,
                "no services: a".into(),
                Level::Failure
            ),
            (
                "k8s.yaml".into(),
                1,
                "missing labels".into(),
                Level::Warning
            ),
            (
                "k8s.yaml".into(),
                7,
                "no services: c".into(),
                Level::Failure
            ),
        ]
    );
    assert_eq!(report.documents, 4);
    assert_eq!(report.outcomes[2].id.as_deref(), Some("LBL"));

    // A namespace that is not `main` is only evaluated when asked for.
    write(
        &pol,
        "other.rego",
        "package other\ndeny contains \"other\" if true\n",
    );
    let only_main = scan(&Options {
        files: vec![yaml.clone()],
        policy_dirs: vec![pol.clone()],
        no_bundled: true,
        ..Options::default()
    })
    .unwrap();
    assert!(only_main.outcomes.iter().all(|o| o.namespace == "main"));
    let all = scan(&Options {
        files: vec![yaml],
        policy_dirs: vec![pol],
        no_bundled: true,
        all_namespaces: true,
        ..Options::default()
    })
    .unwrap();
    assert_eq!(
        all.outcomes
            .iter()
            .filter(|o| o.namespace == "other")
            .count(),
        3
    );
}

#[test]
fn rego_syntax_errors_name_file_line_col() {
    let tmp = tempfile::tempdir().unwrap();
    let pol = write(
        tmp.path(),
        "p/bad.rego",
        "package main\n\ndeny contains msg if {\n  msg := \n}\n",
    );
    let input = write(tmp.path(), "x.json", "{}");
    let err = scan(&Options {
        files: vec![input],
        policy_dirs: vec![pol.parent().unwrap().into()],
        no_bundled: true,
        ..Options::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("bad.rego:"), "{err}");
}

#[test]
fn invalid_inputs_name_file_line_col() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = write(tmp.path(), "bad.yaml", "a: 1\nb: [unclosed\n");
    let err = scan(&Options {
        files: vec![bad],
        ..Options::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("bad.yaml:"), "{err}");
}

fn bundled_ids(name: &str, text: &str) -> Vec<(String, usize)> {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), name, text);
    let report = scan(&Options {
        files: vec![file],
        policy_dirs: vec![tmp.path().join("none")],
        ..Options::default()
    });
    let report = match report {
        Err(e) if e.to_string().contains("does not exist") => scan(&Options {
            files: vec![tmp.path().join(name)],
            ..Options::default()
        })
        .unwrap(),
        other => other.unwrap(),
    };
    report
        .outcomes
        .iter()
        .map(|o| (o.id.clone().unwrap_or_default(), o.line))
        .collect()
}

#[test]
fn bundled_kubernetes() {
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      hostNetwork: true\n      volumes:\n        - name: docker\n          hostPath: {path: /var/run/docker.sock}\n      containers:\n        - name: web\n          image: nginx\n          securityContext: {privileged: true}\n        - name: side\n          image: ghcr.io/x/side:latest\n          securityContext: {runAsNonRoot: true}\n          resources: {limits: {cpu: 1, memory: 1Gi}}\n";
    let mut ids: Vec<String> = bundled_ids("deploy.yaml", bad)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "K8S001", "K8S002", "K8S003", "K8S003", "K8S004", "K8S004", "K8S005", "K8S006"
        ]
    );
    let good = "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec:\n  securityContext: {runAsNonRoot: true}\n  containers:\n    - name: app\n      image: ghcr.io/x/app@sha256:abc\n      resources: {limits: {cpu: 1, memory: 1Gi}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n";
    assert_eq!(bundled_ids("pod.yaml", good), []);
}

#[test]
fn bundled_dockerfile() {
    let bad = "FROM ubuntu\nADD https://example.com/x.tgz /x\nFROM python:latest AS b\nUSER root\n";
    let got = bundled_ids("Dockerfile", bad);
    let mut ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["DF001", "DF002", "DF003", "DF003"]);
    assert!(got.contains(&("DF002".into(), 2)), "{got:?}");
    let good = "FROM rust:1.80 AS build\nRUN cargo build\nFROM gcr.io/distroless/cc@sha256:0123\nCOPY --from=build /a /a\nUSER 65532\n";
    assert_eq!(bundled_ids("Dockerfile", good), []);
    let no_user = "FROM debian:12\nRUN true\n";
    assert_eq!(
        bundled_ids("app.dockerfile", no_user),
        [("DF001".into(), 1)]
    );
}

#[test]
fn bundled_workflows() {
    let bad = r#"name: pr
on:
  pull_request_target:
    types: [opened]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - uses: codecov/codecov-action@v3
      - uses: docker/login-action@0123456789abcdef0123456789abcdef01234567
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo "${{ github.sha }}"
  call:
    uses: org/repo/.github/workflows/x.yml@main
"#;
    let mut got = bundled_ids("ci.yml", bad);
    got.sort();
    assert_eq!(
        got,
        [
            ("GHA001".into(), 12),
            ("GHA001".into(), 17),
            ("GHA002".into(), 11),
            ("GHA003".into(), 14),
        ]
    );
    // workflow_run is privileged too, and a checkout of the pull request's
    // repository is as untrusted as one of its head; `pull_request` runs
    // without secrets, so the same checkout is fine there.
    let checkout = |on: &str, with: &str| {
        format!(
            "on: {on}\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n        with:\n          {with}\n"
        )
    };
    for (on, with) in [
        (
            "{workflow_run: {workflows: [ci]}}",
            "ref: ${{ github.event.workflow_run.head_sha }}",
        ),
        (
            "[push, workflow_run]",
            "ref: ${{ github.event.workflow_run.head_branch }}",
        ),
        (
            "pull_request_target",
            "repository: ${{ github.event.pull_request.head.repo.full_name }}",
        ),
        (
            "[pull_request_target, workflow_run]",
            "ref: ${{ github.head_ref }}",
        ),
    ] {
        assert_eq!(
            bundled_ids("ci.yml", &checkout(on, with)),
            [("GHA002".into(), 8)],
            "on: {on}, {with}"
        );
    }
    assert_eq!(
        bundled_ids(
            "ci.yml",
            &checkout(
                "pull_request",
                "ref: ${{ github.event.pull_request.head.sha }}"
            )
        ),
        []
    );
    assert_eq!(
        bundled_ids("ci.yml", &checkout("workflow_run", "fetch-depth: 0")),
        []
    );
    // Seed 003: hangar's own steps (`hangar/scan@v1`) are not third-party actions.
    let good = "on: [push]\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n      - uses: hangar/scan@v1\n      - uses: hangar/release@v1\n      - run: echo hi\n        env:\n          T: ${{ github.event.issue.title }}\n";
    assert_eq!(bundled_ids("ok.yaml", good), []);
}

#[test]
fn unknown_namespace_is_an_error_with_suggestion() {
    let err = scan(&Options {
        files: vec![fixtures().join("seed002/compliant.yaml")],
        policy_dirs: vec![fixtures().join("seed002/corrected.rego")],
        namespaces: vec!["kubernetes.admision".into()],
        no_bundled: true,
        ..Options::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("did you mean `--namespace kubernetes.admission`?"),
        "{err}"
    );
}

#[test]
fn v0_syntax_errors_are_reported_in_v0_terms() {
    let tmp = tempfile::tempdir().unwrap();
    let pol = write(
        tmp.path(),
        "p/old.rego",
        "package main\n\ndeny[msg] {\n  msg := \"x\"\n  input.a ==\n}\n",
    );
    let input = write(tmp.path(), "x.json", "{}");
    let err = scan(&Options {
        files: vec![input],
        policy_dirs: vec![pol.parent().unwrap().into()],
        no_bundled: true,
        ..Options::default()
    })
    .unwrap_err()
    .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("old.rego:5:") || err.contains("old.rego:6:"),
        "{err}"
    );
}
