//! An agent's identity against a real `hangar serve` and real `hangar agent`
//! processes: an agent registers with a token and speaks with a credential of
//! its own, so removing it is final. The removed process stops with a message
//! saying how to register again, never comes back in the agents list, its
//! credential opens no agent route, and a single-use token registers once.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Banner, http_json, serve_banner};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hangar agent` with `token`, its standard error piped.
fn agent(url: &str, token: &str, name: &str, work: &std::path::Path) -> Kill {
    Kill(
        Command::new(BIN)
            .args(["agent", "--server", url, "--token", token, "--name", name])
            .args(["--capacity", "1", "--sandbox", "none", "--work-dir"])
            .arg(work)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// The exit status and standard error of an agent that ends within `within`.
fn exited(a: &mut Kill, within: Duration) -> Option<(ExitStatus, String)> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(status) = a.0.try_wait().unwrap() {
            let mut err = String::new();
            a.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return Some((status, err));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn agents(url: &str, admin: &str) -> Vec<Value> {
    let (code, v) = http_json("GET", &format!("{url}/api/v1/agents"), admin, "");
    assert_eq!(code, 200, "{v}");
    v.as_array().unwrap().clone()
}

fn token(url: &str, admin: &str, body: Value) -> (i64, String) {
    let (code, v) = http_json(
        "POST",
        &format!("{url}/api/v1/tokens"),
        admin,
        &body.to_string(),
    );
    assert_eq!(code, 201, "{v}");
    (
        v["id"].as_i64().unwrap(),
        v["token"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_removed_agent_stops_and_stays_removed_and_a_single_use_token_registers_once() {
    let data = tempfile::tempdir().unwrap();
    let mut serve = Command::new(BIN)
        .current_dir(data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--agent-capacity", "0"])
        .arg("--data")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let Banner {
        url, token: admin, ..
    } = serve_banner(&mut serve);
    let _serve = Kill(serve);
    let admin = admin.unwrap();
    let (once_id, once) = token(
        &url,
        &admin,
        json!({"name": "box-once", "role": "agent", "reusable": false}),
    );

    // A real agent registers with the single-use token and is listed.
    let mut first = agent(&url, &once, "box", &data.path().join("w1"));
    let start = Instant::now();
    let id = loop {
        if let Some(a) = agents(&url, &admin)
            .into_iter()
            .find(|a| a["name"] == "box")
        {
            break a["id"].as_str().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the agent never registered: {:?}",
            exited(&mut first, Duration::ZERO)
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // The same token cannot register a second process.
    let mut second = agent(&url, &once, "box-again", &data.path().join("w2"));
    let (status, err) =
        exited(&mut second, Duration::from_secs(30)).expect("the second agent stops");
    assert!(!status.success(), "{err}");
    assert!(err.contains("single-use"), "{err}");
    assert!(
        agents(&url, &admin)
            .iter()
            .all(|a| a["name"] != "box-again")
    );

    // Removed: the process stops, non-zero, saying what happened and what to do.
    let (code, v) = http_json("DELETE", &format!("{url}/api/v1/agents/{id}"), &admin, "");
    assert_eq!(code, 204, "{v}");
    let Some((status, err)) = exited(&mut first, Duration::from_secs(20)) else {
        let _ = first.0.kill();
        let mut err = String::new();
        let _ = first.0.stderr.take().unwrap().read_to_string(&mut err);
        panic!("the removed agent did not stop: {err}");
    };
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("removed") && err.contains("new agent token"),
        "{err}"
    );
    // It never comes back (an agent used to register again on its next poll).
    for _ in 0..30 {
        let listed = agents(&url, &admin);
        assert!(listed.iter().all(|a| a["id"] != id.as_str()), "{listed:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its single-use token was revoked with it, and the removal audited.
    let (_, tokens) = http_json("GET", &format!("{url}/api/v1/tokens"), &admin, "");
    let t = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == once_id)
        .unwrap();
    assert!(t["revoked_at"].is_i64(), "{t}");
    assert_eq!(t["reusable"], false, "{t}");
    let (_, audit) = http_json("GET", &format!("{url}/api/v1/audit"), &admin, "");
    for action in ["agent.registered", "agent.removed"] {
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == action && e["target"] == format!("agent/{id}").as_str()),
            "{action}: {audit:#}"
        );
    }

    // A credential taken from a removed agent opens no agent route.
    let (_, reusable) = token(&url, &admin, json!({"name": "fleet", "role": "agent"}));
    let (code, reg) = http_json(
        "POST",
        &format!("{url}/api/v1/agents/register"),
        &reusable,
        &json!({"protocol_version": hangar_agent::PROTOCOL_VERSION, "agent_id": "stolen",
            "name": "stolen", "labels": ["linux"], "capacity": 1})
        .to_string(),
    );
    assert_eq!(code, 201, "{reg}");
    let credential = reg["credential"].as_str().unwrap().to_string();
    let poll = json!({"protocol_version": hangar_agent::PROTOCOL_VERSION, "agent_id": "stolen",
        "name": "stolen", "labels": ["linux"], "capacity": 1, "free_slots": 1, "wait_ms": 0})
    .to_string();
    let (code, v) = http_json(
        "POST",
        &format!("{url}/api/v1/agent/poll"),
        &credential,
        &poll,
    );
    assert_eq!(code, 204, "a live credential polls: {v}");
    // It is no token: no other route takes it.
    let (code, _) = http_json("GET", &format!("{url}/api/v1/runs"), &credential, "");
    assert_eq!(code, 403);
    let (code, v) = http_json("DELETE", &format!("{url}/api/v1/agents/stolen"), &admin, "");
    assert_eq!(code, 204, "{v}");
    let fence = r#"{"fence": 1, "chunk": 0, "first_line": 0, "text": "x\n", "idx": 0, "name": "s", "status": "completed", "conclusion": "success", "outputs": {}, "protocol_version": 1}"#;
    for (method, path, body) in [
        ("POST", "/api/v1/agent/poll".to_string(), poll.as_str()),
        ("POST", "/api/v1/agent/jobs/1/heartbeat".into(), fence),
        ("POST", "/api/v1/agent/jobs/1/logs".into(), fence),
        ("POST", "/api/v1/agent/jobs/1/steps".into(), fence),
        ("POST", "/api/v1/agent/jobs/1/complete".into(), fence),
        ("POST", "/api/v1/agent/jobs/1/refuse".into(), fence),
        ("GET", "/api/v1/agent/jobs/1/artifacts".into(), ""),
        ("GET", "/api/v1/agent/jobs/1/artifacts/a".into(), ""),
        (
            "POST",
            "/api/v1/agent/jobs/1/artifacts/a?fence=1".into(),
            "x",
        ),
    ] {
        let (code, v) = http_json(method, &format!("{url}{path}"), &credential, body);
        assert_eq!(code, 401, "{method} {path}: {v}");
        assert_eq!(v["code"], "agent_removed", "{method} {path}: {v}");
    }
    assert!(agents(&url, &admin).iter().all(|a| a["id"] != "stolen"));
    // The reusable token still registers a new agent.
    let mut third = agent(&url, &reusable, "box-new", &data.path().join("w3"));
    let start = Instant::now();
    while !agents(&url, &admin).iter().any(|a| a["name"] == "box-new") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            exited(&mut third, Duration::ZERO)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `hangar agent` keeping its identity in `state`, with `extra` arguments.
fn kept(url: &str, token: &str, state: &std::path::Path, extra: &[&str]) -> Kill {
    Kill(
        Command::new(BIN)
            .args([
                "agent", "--server", url, "--token", token, "--name", "keeper",
            ])
            .args(["--capacity", "1", "--sandbox", "none", "--state-file"])
            .arg(state)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// The agents named `name` once one is listed.
fn listed(url: &str, admin: &str, name: &str, a: &mut Kill) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let found: Vec<Value> = agents(url, admin)
            .into_iter()
            .filter(|x| x["name"] == name)
            .collect();
        if !found.is_empty() {
            return found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no agent `{name}` listed: {:?}",
            exited(a, Duration::ZERO)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops an agent as a service manager would (SIGTERM) and waits for it.
fn stop(mut a: Kill) {
    let pid = a.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = exited(&mut a, Duration::from_secs(20));
}

#[test]
fn a_restarted_agent_keeps_its_identity_and_a_removed_one_does_not_come_back() {
    use std::os::unix::fs::PermissionsExt;
    let repo = hangar_testkit::empty_repo();
    hangar_testkit::commit(repo.path(), &[("README", "x")]);
    let data = tempfile::tempdir().unwrap();
    let mut serve = Command::new(BIN)
        .current_dir(data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--agent-capacity", "0"])
        .args(["--poll-ms", "100", "--repo"])
        .arg(repo.path())
        .arg("--data")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let Banner {
        url, token: admin, ..
    } = serve_banner(&mut serve);
    let _serve = Kill(serve);
    let admin = admin.unwrap();
    crate::common::wait_until_watched(&url, &admin, 1);
    let (_, once) = token(
        &url,
        &admin,
        json!({"name": "keeper-once", "role": "agent", "reusable": false}),
    );
    let state = data.path().join("agent/state.json");

    // Registered with a single-use token: the identity is kept, private.
    let mut first = kept(&url, &once, &state, &[]);
    let id = listed(&url, &admin, "keeper", &mut first)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains(&id) && text.contains("hga_"), "{text}");
    stop(first);

    // Restarted with the same (now used) single-use token: the same agent,
    // one row, and it runs a job.
    let mut again = kept(&url, &once, &state, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        exited(&mut again, Duration::ZERO).is_none(),
        "the restarted agent stopped"
    );
    let rows = listed(&url, &admin, "keeper", &mut again);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], id.as_str(), "{rows:?}");
    assert_eq!(agents(&url, &admin).len(), 1);
    hangar_testkit::commit(
        repo.path(),
        &[(
            ".github/workflows/ci.yml",
            "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: [{run: echo kept}]\n",
        )],
    );
    let start = Instant::now();
    loop {
        let (_, runs) = http_json("GET", &format!("{url}/api/v1/runs"), &admin, "");
        if runs[0]["conclusion"] == "success" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the restarted agent ran no job: {runs:#} {:?}",
            exited(&mut again, Duration::ZERO)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Removed by an operator: the running process stops, and a restart with
    // a token that would register stops too (exit 2) rather than come back.
    let (_, fleet) = token(&url, &admin, json!({"name": "fleet", "role": "agent"}));
    let (code, v) = http_json("DELETE", &format!("{url}/api/v1/agents/{id}"), &admin, "");
    assert_eq!(code, 204, "{v}");
    let (status, _) = exited(&mut again, Duration::from_secs(20)).expect("the removed agent stops");
    assert_eq!(status.code(), Some(2));
    let mut removed = kept(&url, &fleet, &state, &[]);
    let (status, err) =
        exited(&mut removed, Duration::from_secs(30)).expect("the removed agent's restart stops");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("removed")
            && err.contains(&state.display().to_string())
            && err.contains("--reregister"),
        "{err}"
    );
    assert!(agents(&url, &admin).is_empty(), "it registered again");

    // --reregister makes a new agent with the token, and keeps that one.
    let mut fresh = kept(&url, &fleet, &state, &["--reregister"]);
    let new_id = listed(&url, &admin, "keeper", &mut fresh)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_id, id);
    stop(fresh);
    assert!(std::fs::read_to_string(&state).unwrap().contains(&new_id));

    // An identity kept for another server is not used there: the agent
    // registers with this one's token and keeps the new identity.
    let other = data.path().join("other/state.json");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(
        &other,
        std::fs::read_to_string(&state)
            .unwrap()
            .replace(&url, "http://127.0.0.1:9"),
    )
    .unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, other_token) = token(&url, &admin, json!({"name": "other", "role": "agent"}));
    let mut moved = kept(&url, &other_token, &other, &[]);
    let start = Instant::now();
    let moved_id = loop {
        let ids: Vec<String> = listed(&url, &admin, "keeper", &mut moved)
            .iter()
            .filter_map(|a| a["id"].as_str().map(str::to_string))
            .filter(|i| *i != new_id)
            .collect();
        if let Some(i) = ids.first() {
            break i.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            exited(&mut moved, Duration::ZERO)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    stop(moved);
    let kept_text = std::fs::read_to_string(&other).unwrap();
    assert!(
        kept_text.contains(&moved_id) && kept_text.contains(&url),
        "{kept_text}"
    );

    // A state file others may read, or one that is not what hangar wrote,
    // is refused with a clear error naming it, and nothing registers.
    let before = agents(&url, &admin).len();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut open = kept(&url, &fleet, &state, &[]);
    let (status, err) = exited(&mut open, Duration::from_secs(30)).expect("refused");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&state.display().to_string()) && err.contains("0644"),
        "{err}"
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600)).unwrap();
    let good = std::fs::read_to_string(&state).unwrap();
    for bad in [
        "garbage".to_string(),
        good.replace("hga_", "hgr_"),
        good[..good.len() / 2].to_string(),
    ] {
        std::fs::write(&state, &bad).unwrap();
        let mut damaged = kept(&url, &fleet, &state, &[]);
        let (status, err) = exited(&mut damaged, Duration::from_secs(30)).expect("refused");
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(
            err.contains(&state.display().to_string())
                && err.contains("damaged")
                && err.contains("--reregister"),
            "{err}"
        );
    }
    assert_eq!(
        agents(&url, &admin).len(),
        before,
        "a refused file registered"
    );
}

/// In the bubblewrap jail a job cannot read the agent's state file, even
/// when it lies outside the work directory: the credential in it would let a
/// step poll as the agent and take other jobs with their secrets.
#[test]
fn a_jailed_job_cannot_read_the_agent_state_file() {
    use hangar_engine::process::{Sandbox, SandboxMode};
    if hangar_testkit::required_tool(
        "the bubblewrap jail",
        Sandbox::for_agent(SandboxMode::Bwrap, vec![]),
    )
    .is_none()
    {
        return;
    }
    let repo = hangar_testkit::empty_repo();
    hangar_testkit::commit(repo.path(), &[("README", "x")]);
    let data = tempfile::tempdir().unwrap();
    let mut serve = Command::new(BIN)
        .current_dir(data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--agent-capacity", "0"])
        .args(["--poll-ms", "100", "--repo"])
        .arg(repo.path())
        .arg("--data")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let Banner {
        url, token: admin, ..
    } = serve_banner(&mut serve);
    let _serve = Kill(serve);
    let admin = admin.unwrap();
    crate::common::wait_until_watched(&url, &admin, 1);
    let (_, fleet) = token(&url, &admin, json!({"name": "fleet", "role": "agent"}));
    // Not under /tmp, which the jail replaces whole anyway.
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let state = outside.path().join("state/agent.json");
    let work = tempfile::tempdir().unwrap();
    let mut a = Kill(
        Command::new(BIN)
            .args([
                "agent", "--server", &url, "--token", &fleet, "--name", "jailed",
            ])
            .args(["--capacity", "1", "--sandbox", "bwrap", "--state-file"])
            .arg(&state)
            .arg("--work-dir")
            .arg(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    listed(&url, &admin, "jailed", &mut a);
    assert!(std::fs::read_to_string(&state).unwrap().contains("hga_"));
    hangar_testkit::commit(
        repo.path(),
        &[(
            ".github/workflows/ci.yml",
            &format!(
                "on: push\njobs:\n  peek:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo \"seen:$(cat '{}' 2>/dev/null)\"\n          echo done-peeking\n",
                state.display()
            ),
        )],
    );
    let start = Instant::now();
    let job = loop {
        let (_, runs) = http_json("GET", &format!("{url}/api/v1/runs"), &admin, "");
        if runs[0]["status"] == "completed" {
            let (_, run) = http_json(
                "GET",
                &format!("{url}/api/v1/runs/{}", runs[0]["id"]),
                &admin,
                "",
            );
            break run["jobs"][0]["id"].as_i64().unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no run completed: {runs:#} {:?}",
            exited(&mut a, Duration::ZERO)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = crate::common::browser::http(
        "GET",
        &format!("{url}/api/v1/jobs/{job}/logs/raw"),
        &admin,
        None,
    )
    .1;
    assert!(log.contains("done-peeking"), "{log}");
    assert!(log.contains("seen:") && !log.contains("hga_"), "{log}");
}
