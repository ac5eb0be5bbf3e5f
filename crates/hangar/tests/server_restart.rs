//! What `hangar serve` waits for survives a `kill -9` and a restart on the
//! same data directory: a protected environment's deployment still waits for
//! its reviewer and is carried out once approved; runs whose `on:
//! workflow_run` followers were still to be queued start them. Real server
//! processes, real git repositories, a real service.

use crate::common::{self, http_json as http};

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hangar_store::Store;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

struct Serve {
    child: Child,
    url: String,
    token: Option<String>,
}

impl Serve {
    /// `kill -9`: no shutdown path runs.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, args: &[&str]) -> Serve {
    let mut child = Command::new(BIN)
        // Not inside a git repository: `hangar serve` would register it.
        .current_dir(data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sandbox",
            "none",
            "--data",
        ])
        .arg(data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let crate::common::Banner { url, token, .. } = crate::common::serve_banner(&mut child);
    Serve { child, url, token }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["down", "prod", "--dir"])
            .arg(self.0)
            .env_remove("HANGAR_SERVER")
            .output();
    }
}

#[test]
fn a_pending_deployment_approval_survives_kill_9_and_is_carried_out_after_restart() {
    if !common::have_python3() {
        return;
    }
    let port = common::free_port();
    let repo = common::site_project(
        &format!(
            "  prod:\n    listen: {{ web: 127.0.0.1:{port} }}\n    protection: {{ reviewers: [sre] }}\n"
        ),
        &[],
    );
    let dir = repo.path();
    let project = dir.file_name().unwrap().to_str().unwrap().to_string();
    let repo_arg = dir.to_str().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let args = ["--repo", repo_arg.as_str(), "--agent-capacity", "0"];
    let s = serve(data.path(), &args);
    let _down = Down(dir);
    let admin = s.token.clone().unwrap();
    let (code, sre) = http(
        "POST",
        &format!("{}/api/v1/tokens", s.url),
        &admin,
        r#"{"name": "sre", "role": "read"}"#,
    );
    assert_eq!(code, 201, "{sre}");
    let sre = sre["token"].as_str().unwrap().to_string();
    let (code, v) = http(
        "POST",
        &format!("{}/api/v1/delivery/{project}/prod", s.url),
        &admin,
        r#"{"op": "deploy", "service": null, "artifact": null, "commit": null, "commit_time": null, "no_build": false}"#,
    );
    assert_eq!(code, 202, "{v}");
    let id = v["id"].as_u64().unwrap();
    let op_path = format!("/api/v1/delivery/operations/{id}");
    wait_for(
        "the operation to wait for its reviewer",
        Duration::from_secs(20),
        || {
            let (code, op) = http("GET", &format!("{}{op_path}", s.url), &admin, "");
            (code == 200 && op["approval"]["state"] == "pending").then_some(())
        },
    );

    s.kill_9();
    let s = serve(data.path(), &args);
    // Still there, still pending, still waiting: nothing was deployed.
    let (code, op) = http("GET", &format!("{}{op_path}", s.url), &admin, "");
    assert_eq!(code, 200, "the operation is kept across the restart: {op}");
    assert_eq!(op["approval"]["state"], "pending", "{op}");
    assert_eq!(op["done"], false, "{op}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing is deployed before an approval"
    );
    // The reviewer approves on the restarted server, and it is carried out.
    let (code, v) = http(
        "POST",
        &format!("{}{op_path}/approve", s.url),
        &sre,
        r#"{"approve": true, "comment": "after the restart"}"#,
    );
    assert_eq!(code, 200, "{v}");
    let op = wait_for("the deployment to finish", Duration::from_secs(60), || {
        let (_, op) = http("GET", &format!("{}{op_path}", s.url), &admin, "");
        (op["done"] == true).then_some(op)
    });
    assert!(op["error"].is_null(), "{op}");
    let events = op["events"].to_string();
    assert!(
        events.contains("approved by sre: after the restart"),
        "{events}"
    );
    let mut body = String::new();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(c, "GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    c.read_to_string(&mut body).unwrap();
    assert!(body.ends_with("v1"), "{body}");
    // Decided once, across restarts too.
    let (code, _) = http(
        "POST",
        &format!("{}{op_path}/approve", s.url),
        &sre,
        r#"{"approve": false}"#,
    );
    assert_eq!(code, 409);
}

#[test]
fn a_queued_workflow_run_follower_starts_after_kill_9_and_restart() {
    let repo = hangar_testkit::empty_repo();
    let dir = repo.path();
    let repo_arg = dir.to_str().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let marker = data.path().join("ci-started");
    let args = ["--repo", repo_arg.as_str(), "--poll-ms", "100"];
    let s = serve(data.path(), &args);
    let token = s.token.clone().unwrap();
    hangar_testkit::commit(
        dir,
        &[
            (
                ".github/workflows/ci.yml",
                &format!(
                    "name: CI\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: [{{run: 'touch {}; sleep 2'}}]\n",
                    marker.display()
                ),
            ),
            (
                ".github/workflows/cd.yml",
                "name: CD\non:\n  workflow_run:\n    workflows: [CI]\n    types: [completed]\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    steps: [{run: 'echo after ${{ github.event.workflow_run.name }} ${{ github.event.workflow_run.conclusion }}'}]\n",
            ),
        ],
    );
    let runs = |s: &Serve| -> Vec<Value> {
        let (code, v) = http("GET", &format!("{}/api/v1/runs", s.url), &token, "");
        assert_eq!(code, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    };
    wait_for("CI's step to start", Duration::from_secs(30), || {
        marker.exists().then_some(())
    });
    // While CI runs, its repository becomes unreadable (as a forge that is
    // down): when CI completes, the server cannot read the default branch's
    // workflows, and its `completed` action stays queued.
    let away = dir.with_extension("away");
    std::fs::rename(dir.join(".git"), &away).unwrap();
    wait_for("CI to complete", Duration::from_secs(30), || {
        runs(&s)
            .iter()
            .any(|r| r["workflow_name"] == "CI" && r["status"] == "completed")
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !runs(&s).iter().any(|r| r["workflow_name"] == "CD"),
        "CD cannot start before its workflow can be read"
    );
    s.kill_9();
    {
        let store = hangar_store::open(data.path()).unwrap();
        let left = store.queued_workflow_runs(i64::MAX, 10).unwrap();
        assert_eq!(
            left.iter().map(|q| q.action.as_str()).collect::<Vec<_>>(),
            ["completed"],
            "CI's completion is kept in the store"
        );
    }
    std::fs::rename(&away, dir.join(".git")).unwrap();

    let s = serve(data.path(), &args);
    let cd = wait_for(
        "CD to run after the restart",
        Duration::from_secs(60),
        || {
            runs(&s)
                .into_iter()
                .find(|r| r["workflow_name"] == "CD" && r["status"] == "completed")
        },
    );
    assert_eq!(cd["event"], "workflow_run", "{cd}");
    assert_eq!(cd["conclusion"], "success", "{cd}");
    let (_, detail) = http(
        "GET",
        &format!("{}/api/v1/runs/{}", s.url, cd["id"]),
        &token,
        "",
    );
    let job = detail["jobs"][0]["id"].as_i64().unwrap();
    let rest = s.url.strip_prefix("http://").unwrap().to_string();
    let mut c = std::net::TcpStream::connect(&rest).unwrap();
    write!(
        c,
        "GET /api/v1/jobs/{job}/logs/raw HTTP/1.0\r\nHost: {rest}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut log = String::new();
    c.read_to_string(&mut log).unwrap();
    assert!(log.contains("after CI success"), "{log}");
    // Once: the queue is empty and no second CD starts.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        runs(&s)
            .iter()
            .filter(|r| r["workflow_name"] == "CD")
            .count(),
        1
    );
}

/// Deployments made through `hangar serve` and with the CLI directly are in
/// the server's store once each, across a `kill -9` of the server in the
/// middle of a deployment and a restart on the same store: the environment's
/// controller finishes the deployment on its own, the restarted server reads
/// it in, and nothing read in before is lost or counted twice.
#[test]
fn deployments_are_in_the_store_once_each_across_kill_9_of_the_server() {
    if !common::have_python3() {
        return;
    }
    let port = common::free_port();
    let repo = common::site_project(
        &format!("  prod:\n    listen: {{ web: 127.0.0.1:{port} }}\n"),
        &[],
    );
    let dir = std::fs::canonicalize(repo.path()).unwrap();
    let id = hangar_deploy::client::project_id(&dir);
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    let repo_arg = dir.to_str().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let args = ["--repo", repo_arg.as_str(), "--agent-capacity", "0"];
    let s = serve(data.path(), &args);
    let _down = Down(&dir);
    let admin = s.token.clone().unwrap();
    let files = hangar_deploy::state::EnvFiles::new(&dir.join(".hangar"), "prod");
    let recorded = || -> Vec<u64> { files.history().iter().map(|r| r.id).collect() };
    let listed = |s: &Serve| -> Vec<u64> {
        let (code, v) = http(
            "GET",
            &format!("{}/api/v1/delivery/{id}/prod", s.url),
            &admin,
            "",
        );
        assert_eq!(code, 200, "{v}");
        let mut ids: Vec<u64> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        ids.reverse();
        ids
    };
    let deploy = |s: &Serve| -> String {
        let (code, v) = http(
            "POST",
            &format!("{}/api/v1/delivery/{id}/prod", s.url),
            &admin,
            r#"{"op": "deploy", "service": null, "artifact": null, "commit": null, "commit_time": null, "no_build": false}"#,
        );
        assert_eq!(code, 202, "{v}");
        format!("{}/api/v1/delivery/operations/{}", s.url, v["id"])
    };

    // Through the server: in the store when the operation is done.
    let op = deploy(&s);
    let done = wait_for("the first deployment", Duration::from_secs(60), || {
        let (_, v) = http("GET", &op, &admin, "");
        (v["done"] == true).then_some(v)
    });
    assert!(done["error"].is_null(), "{done}");
    assert_eq!(listed(&s), recorded());
    assert_eq!(recorded().len(), 1);

    // With the CLI directly (no server): read in by the periodic check.
    hangar_testkit::commit(&dir, &[("site/index.html", "v2")]);
    let out = Command::new(BIN)
        .args(["deploy", "prod", "--dir"])
        .arg(&dir)
        .env_remove("HANGAR_SERVER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(recorded().len(), 2);
    wait_for(
        "the CLI's deployment in the store",
        Duration::from_secs(10),
        || (listed(&s) == recorded()).then_some(()),
    );

    // Through the server again, killed while the controller deploys.
    hangar_testkit::commit(&dir, &[("site/index.html", "v3")]);
    let op = deploy(&s);
    wait_for(
        "the deployment to be under way",
        Duration::from_secs(30),
        || {
            let (_, v) = http("GET", &op, &admin, "");
            (!v["events"].as_array().unwrap().is_empty()).then_some(())
        },
    );
    s.kill_9();
    wait_for(
        "the controller to record the deployment it was running",
        Duration::from_secs(60),
        || (recorded().len() == 3).then_some(()),
    );

    let s = serve(data.path(), &args);
    assert_eq!(
        listed(&s),
        recorded(),
        "read in at the restart, each deployment once"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let want = hangar_deploy::dora::compute("prod", &files.history(), now, 30 * 86_400);
    let text = {
        let rest = s.url.strip_prefix("http://").unwrap().to_string();
        let mut c = std::net::TcpStream::connect(&rest).unwrap();
        write!(
            c,
            "GET /metrics HTTP/1.0\r\nHost: {rest}\r\nAuthorization: Bearer {admin}\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        text
    };
    let line = format!(
        "hangar_dora_deployments{{source=\"{name}\",env=\"prod\",window_days=\"30\"}} {}\n",
        want.deployments
    );
    assert!(text.contains(&line), "missing {line} in\n{text}");
    s.kill_9();
    let store = hangar_store::open(data.path()).unwrap();
    let rows = store
        .env_deployments(&hangar_store::EnvDeploymentFilter::default())
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.record_id as u64).collect::<Vec<_>>(),
        recorded(),
        "nothing lost, nothing doubled"
    );
    assert!(rows.iter().all(|r| r.project == id), "{rows:?}");
}
