//! `hangar deploy|rollback|promote` honour an environment's `protection:`:
//! with reviewers or a wait timer and no server, they refuse and say both
//! ways on; `--override-protection --reason` proceeds and the override is in
//! the environment's history. A real service, the built binary.

use crate::common::{self, http_json as http};

use std::path::Path;
use std::process::{Command, Output};

use common::free_port;

fn hangar(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hangar"));
    c.args(args).arg("--dir").arg(dir);
    // No server from the caller's environment.
    c.env_remove("HANGAR_SERVER").env_remove("HANGAR_TOKEN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = hangar(self.0, &["down", "prod"], &[]);
    }
}

#[test]
fn a_protected_environment_is_refused_unless_overridden_on_the_record() {
    if !common::have_python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            r#"services:
  web:
    run: python3 -m http.server $PORT --bind 127.0.0.1
    health: {{ path: /, interval: 100ms, timeout: 1s, deadline: 20s }}
    stop: {{ drain: 50ms, timeout: 2s }}
environments:
  prod:
    listen: {{ web: 127.0.0.1:{port} }}
    protection: {{ reviewers: [sre], wait: 1m }}
"#
        ),
    )
    .unwrap();
    let _down = Down(dir);
    for cmd in [
        &["deploy", "prod", "--no-build"][..],
        &["rollback", "prod"],
        &["promote", "prod"],
    ] {
        let o = hangar(dir, cmd, &[]);
        let t = text(&o);
        assert!(!o.status.success(), "{cmd:?}: {t}");
        assert!(
            t.contains("environment `prod` is protected (reviewers: sre; wait: 60s)"),
            "{cmd:?}: {t}"
        );
        assert!(t.contains("--server URL"), "{t}");
        assert!(t.contains("--override-protection --reason"), "{t}");
    }
    // Nothing was started or recorded.
    assert!(!dir.join(".hangar/envs/prod/history.jsonl").exists());
    assert!(!dir.join(".hangar/envs/prod/control.sock").exists());

    // An override needs its reason.
    let o = hangar(dir, &["deploy", "prod", "--override-protection"], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--reason"), "{}", text(&o));

    let o = hangar(
        dir,
        &[
            "deploy",
            "prod",
            "--no-build",
            "--override-protection",
            "--reason",
            "incident 42: the server is down",
        ],
        &[("HANGAR_ACTOR", "ops-oncall")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("overridden by ops-oncall"),
        "{}",
        text(&o)
    );
    let o = hangar(dir, &["history", "prod"], &[]);
    let t = text(&o);
    assert!(
        t.contains("protection overridden by ops-oncall for `deploy` (reviewers: sre; wait: 60s): incident 42: the server is down"),
        "{t}"
    );
    assert!(
        t.contains("succeeded"),
        "the deployment itself is there too: {t}"
    );
}

struct Serve(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real `hangar serve` watching the project in `dir`: the server, its URL
/// and its administrator's token.
fn serve(dir: &Path) -> (Serve, String, String) {
    use std::process::Stdio;
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .current_dir(data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .arg("--repo")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let banner = crate::common::serve_banner(&mut child);
    let serve = Serve(child, data);
    (serve, banner.url, banner.token.unwrap_or_default())
}

/// A read token named `name` (a reviewer).
fn reviewer(url: &str, admin: &str, name: &str) -> String {
    let (code, v) = http(
        "POST",
        &format!("{url}/api/v1/tokens"),
        admin,
        &format!(r#"{{"name": "{name}", "role": "read"}}"#),
    );
    assert_eq!(code, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// Waits for delivery operation `id` to wait for its reviewers, then
/// approves it as `token`.
fn approve_when_pending(url: &str, admin: &str, id: u64, token: &str) {
    use std::time::{Duration, Instant};
    let op_url = format!("{url}/api/v1/delivery/operations/{id}");
    let start = Instant::now();
    while http("GET", &op_url, admin, "").1["approval"]["state"] != "pending" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "operation {id} never waited for a reviewer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, v) = http(
        "POST",
        &format!("{op_url}/approve"),
        token,
        r#"{"approve": true, "comment": "go"}"#,
    );
    assert_eq!(code, 200, "{v}");
}

#[test]
fn through_the_server_a_protected_deployment_waits_for_another_reviewer() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    if !common::have_python3() {
        return;
    }
    let port = free_port();
    let repo = common::site_project(
        &format!(
            "  prod:\n    listen: {{ web: 127.0.0.1:{port} }}\n    protection: {{ reviewers: [sre], prevent_self_review: true }}\n"
        ),
        &[],
    );
    let dir = repo.path();
    let (_serve, url, admin) = serve(dir);
    let _down = Down(dir);
    let (code, sre) = http(
        "POST",
        &format!("{url}/api/v1/tokens"),
        &admin,
        r#"{"name": "sre", "role": "read"}"#,
    );
    assert_eq!(code, 201, "{sre}");
    let sre = sre["token"].as_str().unwrap().to_string();

    // The administrator asks; the CLI waits for the reviewers.
    let cli = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["deploy", "prod", "--dir"])
        .arg(dir)
        .args(["--server", &url])
        .env("HANGAR_TOKEN", &admin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let op_url = format!("{url}/api/v1/delivery/operations/1");
    let start = Instant::now();
    loop {
        let (code, op) = http("GET", &op_url, &admin, "");
        if code == 200 && op["approval"]["state"] == "pending" {
            assert_eq!(op["approval"]["requested_by"], "admin", "{op}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{code} {op}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing is deployed before an approval"
    );
    // Its own trigger may not approve it, the administrator included.
    let (code, v) = http(
        "POST",
        &format!("{op_url}/approve"),
        &admin,
        r#"{"approve": true}"#,
    );
    assert_eq!(
        (code, v["code"].as_str()),
        (403, Some("self_review")),
        "{v}"
    );
    let (code, v) = http(
        "POST",
        &format!("{op_url}/approve"),
        &sre,
        r#"{"approve": true, "comment": "go"}"#,
    );
    assert_eq!(code, 200, "{v}");
    let out = cli.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("waiting for approval by a reviewer of environment `prod` (sre)"),
        "{stderr}"
    );
    assert!(stderr.contains("approved by sre: go"), "{stderr}");
    let (_, audit) = http("GET", &format!("{url}/api/v1/audit"), &admin, "");
    assert!(audit.to_string().contains("delivery.approve"), "{audit}");

    // A rejection ends the request: the CLI fails with who decided.
    let cli = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["rollback", "prod", "--dir"])
        .arg(dir)
        .args(["--server", &url])
        .env("HANGAR_TOKEN", &admin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let op_url = format!("{url}/api/v1/delivery/operations/2");
    let start = Instant::now();
    while http("GET", &op_url, &admin, "").1["approval"]["state"] != "pending" {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, v) = http(
        "POST",
        &format!("{op_url}/approve"),
        &sre,
        r#"{"approve": false}"#,
    );
    assert_eq!(code, 200, "{v}");
    // Decided once.
    let (code, _) = http(
        "POST",
        &format!("{op_url}/approve"),
        &sre,
        r#"{"approve": true}"#,
    );
    assert_eq!(code, 409);
    let out = cli.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("was rejected by sre"), "{stderr}");
}

/// A committed project with an open `staging` and a `prod` protected by
/// `sre`, a static site as the service, and `deploy.yml`: a dispatch whose
/// job's `environment:` is an input, deploying with `hangar/deploy` to the
/// job's environment (no `environment` input), through a server or on the
/// record when the inputs say so.
fn deploying_project() -> (tempfile::TempDir, u16, u16) {
    let (staging, prod) = (free_port(), free_port());
    let environments = format!(
        "  staging:\n    listen: {{ web: 127.0.0.1:{staging} }}\n  prod:\n    listen: {{ web: 127.0.0.1:{prod} }}\n    protection: {{ reviewers: [sre] }}\n"
    );
    let repo = common::site_project(
        &environments,
        &[(
            ".github/workflows/deploy.yml",
            r#"name: Deploy
on:
  workflow_dispatch:
    inputs:
      environment: { type: string, default: staging }
      override: { type: string, default: 'false' }
      server: { type: string, default: '' }
jobs:
  deploy:
    runs-on: ubuntu-latest
    environment: ${{ inputs.environment }}
    steps:
      - uses: hangar/deploy@v1
        with:
          server: ${{ inputs.server }}
          token: ${{ secrets.HANGAR_TOKEN }}
          override-protection: ${{ inputs.override }}
          reason: incident 7, the server is down
"#,
        )],
    );
    (repo, staging, prod)
}

/// `hangar run workflow_dispatch` of deploy.yml in `dir` (in place: the
/// deployment outlives the run) with these inputs.
fn run_deploy(dir: &Path, inputs: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hangar"));
    c.args(["run", "workflow_dispatch", "--bind", "-C"])
        .arg(dir);
    for i in inputs {
        // `--flag` and the value after `--secret` as they are; the rest are inputs.
        if i.starts_with("--") || c.get_args().last().is_some_and(|a| a == "--secret") {
            c.arg(i);
        } else {
            c.args(["--input", i]);
        }
    }
    c.env_remove("HANGAR_SERVER").env_remove("HANGAR_TOKEN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

struct DownAll<'a>(&'a Path);

impl Drop for DownAll<'_> {
    fn drop(&mut self) {
        for env in ["staging", "prod"] {
            let _ = hangar(self.0, &["down", env], &[]);
        }
    }
}

/// `environment: ${{ inputs.environment }}` is evaluated before the job's
/// first step: `hangar/deploy` deploys to the environment it names (and
/// labels the deployment with it), and a name hangar.yml does not define, or
/// an empty one, fails the job at the key's line and column.
#[test]
fn hangar_run_evaluates_the_jobs_environment_expression() {
    if !common::have_python3() {
        return;
    }
    let (repo, staging, _) = deploying_project();
    let dir = repo.path();
    let _down = DownAll(dir);
    let o = run_deploy(dir, &["environment=staging"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(get(staging).as_deref(), Some("v1"));
    let h = text(&hangar(dir, &["history", "staging"], &[]));
    assert!(h.contains("#1 web - ->") && h.contains("succeeded"), "{h}");
    // The DORA label is the evaluated name, never the expression.
    assert!(!dir.join(".hangar/envs/${{ inputs.environment }}").exists());
    let d = text(&hangar(dir, &["dora", "staging"], &[]));
    assert!(d.contains("(1 deployments)"), "{d}");

    let o = run_deploy(dir, &["environment=stagin"], &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("`environment: ${{ inputs.environment }}` evaluated to `stagin`, which is not an environment of hangar.yml (hangar.yml defines: staging, prod)"),
        "{t}"
    );
    assert!(t.contains("deploy.yml:11:18"), "positioned at the key: {t}");

    let o = run_deploy(dir, &["environment="], &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("`environment: ${{ inputs.environment }}` evaluated to an empty name"),
        "{t}"
    );
    assert!(t.contains("deploy.yml:11:18"), "{t}");
    // Neither reached a step: still the one deployment.
    let h = text(&hangar(dir, &["history", "staging"], &[]));
    assert_eq!(h.matches("succeeded").count(), 1, "{h}");
}

/// `uses: hangar/deploy@v1` to a protected environment follows the rule of
/// `hangar deploy`: refused with both ways on, or overridden on the same
/// record (`hangar history`), or approved by a reviewer through a real
/// `hangar serve`.
#[test]
fn hangar_deploy_step_honours_protection() {
    if !common::have_python3() {
        return;
    }
    let (repo, _, prod) = deploying_project();
    let dir = repo.path();
    let _down = DownAll(dir);

    let o = run_deploy(dir, &["environment=prod"], &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("environment `prod` is protected (reviewers: sre): hangar/deploy does not deploy to it directly"),
        "{t}"
    );
    assert!(t.contains("override-protection: true, reason:"), "{t}");
    assert!(t.contains("server: URL"), "{t}");
    assert!(get(prod).is_none(), "nothing deployed");
    assert!(!dir.join(".hangar/envs/prod/history.jsonl").exists());

    let o = run_deploy(
        dir,
        &["environment=prod", "override=true"],
        &[("HANGAR_ACTOR", "ops-oncall")],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("protection of `prod` (reviewers: sre) overridden by ops-oncall: incident 7, the server is down"),
        "{t}"
    );
    assert_eq!(get(prod).as_deref(), Some("v1"));
    let h = text(&hangar(dir, &["history", "prod"], &[]));
    assert!(
        h.contains("protection overridden by ops-oncall for `hangar/deploy` (reviewers: sre): incident 7, the server is down"),
        "{h}"
    );
    let _ = hangar(dir, &["down", "prod"], &[]);

    // Through the server: the step waits for a reviewer's approval, and the
    // server's controller deploys.
    let (_serve, url, admin) = serve(dir);
    let sre = reviewer(&url, &admin, "sre");
    hangar_testkit::commit(dir, &[("site/index.html", "v2")]);
    let (u, a) = (url.clone(), admin.clone());
    let approver = std::thread::spawn(move || approve_when_pending(&u, &a, 1, &sre));
    let o = run_deploy(
        dir,
        &[
            "environment=prod",
            &format!("server={url}"),
            "--secret",
            "HANGAR_TOKEN",
        ],
        &[("HANGAR_TOKEN", &admin)],
    );
    let t = text(&o);
    approver.join().unwrap();
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("waiting for approval by a reviewer of environment `prod` (sre)"),
        "{t}"
    );
    assert!(t.contains("approved by sre: go"), "{t}");
    assert_eq!(get(prod).as_deref(), Some("v2"));
}

/// `hangar up` of a protected environment: refused with both ways on; on
/// the record with `--override-protection --reason`; through a real
/// `hangar serve` it waits for a reviewer and the server brings it up.
#[test]
fn hangar_up_of_a_protected_environment() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    if !common::have_python3() {
        return;
    }
    let (repo, _, prod) = deploying_project();
    let dir = repo.path();
    let _down = DownAll(dir);
    let o = hangar(dir, &["up", "prod"], &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("environment `prod` is protected (reviewers: sre): `hangar up prod` does not act on it directly"),
        "{t}"
    );
    assert!(
        t.contains("hangar up prod --override-protection --reason"),
        "{t}"
    );
    assert!(get(prod).is_none());

    // On the record: up runs in the foreground until stopped.
    let mut up = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args([
            "up",
            "prod",
            "--override-protection",
            "--reason",
            "first bring-up",
            "--dir",
        ])
        .arg(dir)
        .env_remove("HANGAR_SERVER")
        .env("HANGAR_ACTOR", "ops-oncall")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while get(prod).as_deref() != Some("v1") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "prod never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = hangar(dir, &["down", "prod"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let _ = up.wait();
    let h = text(&hangar(dir, &["history", "prod"], &[]));
    assert!(
        h.contains("protection overridden by ops-oncall for `up` (reviewers: sre): first bring-up"),
        "{h}"
    );

    // Through the server: a reviewer approves, the server's controller runs it.
    let (_serve, url, admin) = serve(dir);
    let sre = reviewer(&url, &admin, "sre");
    hangar_testkit::commit(dir, &[("site/index.html", "v2")]);
    let (u, a) = (url.clone(), admin.clone());
    let approver = std::thread::spawn(move || approve_when_pending(&u, &a, 1, &sre));
    let o = hangar(
        dir,
        &["up", "prod", "--server", &url],
        &[("HANGAR_TOKEN", &admin)],
    );
    approver.join().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("approved by sre: go"), "{t}");
    assert_eq!(get(prod).as_deref(), Some("v2"));
}
