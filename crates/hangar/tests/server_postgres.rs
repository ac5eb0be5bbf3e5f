//! `hangar serve --database postgres://…` as a real process on a throwaway
//! PostgreSQL cluster: a pushed commit runs its workflow to success on the
//! embedded agent, the state is in PostgreSQL (no SQLite file), and a server
//! killed with -9 and started again finds the run, its logs and its token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    lines: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(data: &Path, args: &[&str], env_url: &str) -> Serve {
    serve_on("127.0.0.1:0", data, args, env_url)
}

/// [`serve`] on another address (`0.0.0.0:0`: reachable from the test's
/// network namespaces; its `url` is then on 127.0.0.1).
pub(crate) fn serve_on(listen: &str, data: &Path, args: &[&str], env_url: &str) -> Serve {
    serve_in(&[], listen, data, args, env_url)
}

/// [`serve_on`] run under `wrapper` (`ip netns exec NAME`: in a network
/// namespace; it execs hangar, so the child is the server itself).
pub(crate) fn serve_in(
    wrapper: &[&str],
    listen: &str,
    data: &Path,
    args: &[&str],
    env_url: &str,
) -> Serve {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = cmd
        .current_dir(data)
        .arg("serve")
        .args(["--listen", listen, "--data"])
        .arg(data)
        .args(args)
        .env("HANGAR_DATABASE_URL", env_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let crate::common::Banner {
        url,
        token,
        lines: seen,
    } = crate::common::serve_banner(&mut child);
    Serve {
        child,
        url,
        token,
        lines: seen,
    }
}

pub(crate) fn get(url: &str, token: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut s = body;
        while let Some((len, rest)) = s.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 || rest.len() < n {
                break;
            }
            out.push_str(&rest[..n]);
            s = rest[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    (status, body)
}

pub(crate) fn get_json(url: &str, token: &str) -> Value {
    let (s, b) = get(url, token);
    assert_eq!(s, 200, "GET {url}: {b}");
    serde_json::from_str(&b).unwrap()
}

const WORKFLOW: &str = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: for i in $(seq 1 200); do echo pg-log-line-$i; done\n      - run: echo second-step\n";

#[test]
fn a_push_runs_to_success_with_the_state_in_postgres() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let url = cluster.database();
    let db = url.rsplit('/').next().unwrap().to_string();
    let (repo, _) = hangar_testkit::repo_with(&[("README", "x")]);
    let data = tempfile::tempdir().unwrap();
    let repo_arg = repo.path().to_str().unwrap().to_string();
    let args = ["--repo", &repo_arg, "--poll-ms", "100", "--sandbox", "none"];
    let s = serve(data.path(), &args, &url);
    assert!(
        s.lines
            .iter()
            .any(|l| l.contains("database postgres://hangar@")),
        "{:?}",
        s.lines
    );
    let token = s.token.clone().expect("a new database: a new admin token");
    hangar_testkit::commit(repo.path(), &[(".github/workflows/ci.yml", WORKFLOW)]);
    let runs_url = format!("{}/api/v1/runs", s.url);
    let start = Instant::now();
    let run = loop {
        let runs = get_json(&runs_url, &token);
        if let Some(r) = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "completed")
        {
            break r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no run completed: {runs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(run["conclusion"], "success", "{run}");
    assert_eq!(run["event"], "push");
    // The state is in PostgreSQL: its rows are there, and no SQLite file was made.
    assert_eq!(
        cluster.psql(&db, "SELECT status || '/' || conclusion FROM runs"),
        "completed/success"
    );
    assert!(
        cluster
            .psql(&db, "SELECT count(*) FROM log_chunks")
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert!(!data.path().join("hangar.db").exists());

    // kill -9, then start again on the same database: the run, its logs and
    // the admin token are all still there.
    drop(s);
    let s2 = serve(data.path(), &args, &url);
    assert!(s2.token.is_none(), "the admin token was kept in PostgreSQL");
    let detail = get_json(&format!("{}/api/v1/runs/{}", s2.url, run["id"]), &token);
    assert_eq!(detail["run"]["conclusion"], "success");
    let (_, log) = get(
        &format!(
            "{}/api/v1/jobs/{}/logs/raw",
            s2.url, detail["jobs"][0]["id"]
        ),
        &token,
    );
    assert!(log.contains("pg-log-line-200"), "{log}");
    assert!(log.contains("second-step"), "{log}");
}

#[test]
fn an_unreachable_database_stops_the_server_with_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let port = hangar_testkit::free_port();
    let out = Command::new(BIN)
        .current_dir(data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .args([
            "--database",
            &format!("postgres://ci:hunter2@127.0.0.1:{port}/hangar?connect_timeout=5"), // hangar:allow (a fake credential for the test)
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("opening the database postgres://ci@127.0.0.1")
            && err.contains("connecting to PostgreSQL"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password was printed: {err}");
}

/// `hangar migrate` copies a SQLite store into PostgreSQL, prints each table's
/// count and hash, and refuses a database that already holds rows.
#[test]
fn migrate_copies_a_sqlite_store_once() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    use hangar_store::Store;
    let url = cluster.database();
    let data = tempfile::tempdir().unwrap();
    {
        let s = hangar_store::open(data.path()).unwrap();
        s.create_token("admin", hangar_store::Role::Admin).unwrap();
        s.audit("t", "a", "b", &serde_json::json!({})).unwrap();
    }
    let migrate = || {
        Command::new(BIN)
            .arg("migrate")
            .arg("--from")
            .arg(format!(
                "sqlite://{}",
                data.path().join("hangar.db").display()
            ))
            .args(["--to", &url])
            .output()
            .unwrap()
    };
    let out = migrate();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every table of the store is copied (their number grows with migrations).
    let tables: usize = stdout
        .split("2 rows in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row and table count: {stdout}"));
    assert!(tables >= 23, "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("api_tokens") && l.contains(" 1 rows")),
        "{stdout}"
    );
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(cluster.psql(db, "SELECT name FROM api_tokens"), "admin");
    let again = migrate();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds"), "{err}");
}

/// Two servers on one database: the one watching the repository has no agent,
/// the other's embedded agent takes the job. Its long poll is woken by the
/// first server's announcement (LISTEN/NOTIFY), not by its 5-second backstop:
/// each of three jobs starts within 2 s of being created.
#[test]
fn a_job_queued_on_one_server_wakes_an_agent_of_another() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let url = cluster.database();
    let (repo, _) = hangar_testkit::repo_with(&[("README", "x")]);
    let repo_arg = repo.path().to_str().unwrap().to_string();
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(
        data_a.path(),
        &[
            "--repo",
            &repo_arg,
            "--poll-ms",
            "100",
            "--agent-capacity",
            "0",
        ],
        &url,
    );
    let token = a.token.clone().unwrap();
    // Both servers seal with one key: the second gets the first's key file.
    std::fs::copy(
        data_a.path().join("secret.key"),
        data_b.path().join("secret.key"),
    )
    .unwrap();
    let b = serve(data_b.path(), &["--sandbox", "none"], &url);
    assert!(b.token.is_none(), "one database, one admin token");
    let runs_url = format!("{}/api/v1/runs", a.url);
    for i in 1..=3 {
        hangar_testkit::commit(
            repo.path(),
            &[(
                ".github/workflows/ci.yml",
                &format!(
                    "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo run-{i}\n"
                ),
            )],
        );
        let start = Instant::now();
        let run = loop {
            let runs = get_json(&runs_url, &token);
            let done: Vec<&Value> = runs
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["status"] == "completed")
                .collect();
            if done.len() == i {
                break done[0].clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "run {i} did not complete: {runs}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(run["conclusion"], "success", "{run}");
        let detail = get_json(&format!("{}/api/v1/runs/{}", b.url, run["id"]), &token);
        let job = &detail["jobs"][0];
        let waited = job["started_at"].as_i64().unwrap() - job["created_at"].as_i64().unwrap();
        assert!(
            waited < 2000,
            "job {i} waited {waited} ms for an agent: {job}"
        );
    }
}

/// A server starting on a database another live server uses leaves that
/// server's running job alone (it settles only the jobs of embedded agents
/// whose process is gone): the job finishes with success. Once that server is
/// killed with -9, a server starting on the database settles its job at once.
#[test]
fn a_starting_server_settles_only_dead_servers_jobs() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let url = cluster.database();
    let (repo, _) = hangar_testkit::repo_with(&[("README", "x")]);
    let repo_arg = repo.path().to_str().unwrap().to_string();
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = serve(
        data_a.path(),
        &["--repo", &repo_arg, "--poll-ms", "100", "--sandbox", "none"],
        &url,
    );
    let token = a.token.clone().unwrap();
    std::fs::copy(
        data_a.path().join("secret.key"),
        data_b.path().join("secret.key"),
    )
    .unwrap();
    let runs_url = format!("{}/api/v1/runs", a.url);
    let marker = data_a.path().join("started");
    let pidfile = data_a.path().join("step.pid");
    let workflow = |secs: u32| {
        format!(
            "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo $$ > '{}'; touch '{}'; sleep {secs}\n",
            pidfile.display(),
            marker.display()
        )
    };
    let wait = |what: &str, f: &mut dyn FnMut() -> bool| {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    hangar_testkit::commit(repo.path(), &[(".github/workflows/slow.yml", &workflow(4))]);
    wait("the first job to start", &mut || marker.exists());
    // A second server starts while the first one's job runs.
    let b = serve(data_b.path(), &["--agent-capacity", "0"], &url);
    wait("the first run to finish", &mut || {
        get_json(&runs_url, &token)
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "completed")
    });
    let runs = get_json(&runs_url, &token);
    assert_eq!(
        runs[0]["conclusion"], "success",
        "the live server's job was left alone: {runs}"
    );
    drop(b);

    std::fs::remove_file(&marker).unwrap();
    hangar_testkit::commit(
        repo.path(),
        &[(".github/workflows/slow.yml", &workflow(60))],
    );
    wait("the second job to start", &mut || marker.exists());
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
        let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).status();
    }
    let c = serve(data_b.path(), &["--agent-capacity", "0"], &url);
    let runs_url = format!("{}/api/v1/runs", c.url);
    wait("the dead server's run to be settled", &mut || {
        get_json(&runs_url, &token)
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "completed")
    });
    let runs = get_json(&runs_url, &token);
    assert_eq!(runs[0]["conclusion"], "failure", "{runs}");
}

/// The periodic work fails over: the first server leads it; once that server
/// is killed with -9 (its embedded agent with it), the second server takes the
/// lead and reaps the job whose lease then expires.
#[test]
fn the_periodic_work_fails_over_to_a_surviving_server() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let url = cluster.database();
    let (repo, _) = hangar_testkit::repo_with(&[("README", "x")]);
    let repo_arg = repo.path().to_str().unwrap().to_string();
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = serve(
        data_a.path(),
        &[
            "--repo",
            &repo_arg,
            "--poll-ms",
            "100",
            "--sandbox",
            "none",
            "--lease-timeout",
            "2",
        ],
        &url,
    );
    let token = a.token.clone().unwrap();
    std::fs::copy(
        data_a.path().join("secret.key"),
        data_b.path().join("secret.key"),
    )
    .unwrap();
    let b = serve(
        data_b.path(),
        &["--agent-capacity", "0", "--lease-timeout", "2"],
        &url,
    );
    let marker = data_a.path().join("started");
    let pidfile = data_a.path().join("step.pid");
    hangar_testkit::commit(
        repo.path(),
        &[(
            ".github/workflows/slow.yml",
            &format!(
                "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo $$ > '{}'; touch '{}'; sleep 60\n",
                pidfile.display(),
                marker.display()
            ),
        )],
    );
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
        let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).status();
    }
    let runs_url = format!("{}/api/v1/runs", b.url);
    let start = Instant::now();
    let run = loop {
        let runs = get_json(&runs_url, &token);
        if runs[0]["status"] == "completed" {
            break runs[0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the surviving server did not reap the dead server's job: {runs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["conclusion"], "failure", "{run}");
    let detail = get_json(&format!("{}/api/v1/runs/{}", b.url, run["id"]), &token);
    let reason = detail["jobs"][0]["waiting_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("lease expired"), "{detail}");
}

/// Reads a server-sent event stream until `done` says enough, or `secs` pass;
/// returns the `data:` lines read.
fn read_events(url: &str, token: &str, secs: u64, done: &dyn Fn(&[Value]) -> bool) -> Vec<Value> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let start = Instant::now();
    let mut raw = Vec::new();
    let mut events = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let mut buf = [0u8; 65536];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        events = String::from_utf8_lossy(&raw)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect();
        if done(&events) {
            break;
        }
    }
    events
}

/// A browser's live stream on one server shows the log lines an agent uploads
/// to another server on the same database, while the job runs: server A runs
/// the job on its embedded agent, server B (no agent) streams its lines.
#[test]
fn live_logs_reach_a_browser_on_another_server() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let url = cluster.database();
    let (repo, _) = hangar_testkit::repo_with(&[("README", "x")]);
    let repo_arg = repo.path().to_str().unwrap().to_string();
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(
        data_a.path(),
        &["--repo", &repo_arg, "--poll-ms", "100", "--sandbox", "none"],
        &url,
    );
    let token = a.token.clone().unwrap();
    std::fs::copy(
        data_a.path().join("secret.key"),
        data_b.path().join("secret.key"),
    )
    .unwrap();
    let b = serve(data_b.path(), &["--agent-capacity", "0"], &url);
    let gate = data_a.path().join("go");
    // The job prints a line, then waits for the test to have its stream open,
    // then prints 30 more over about three seconds.
    hangar_testkit::commit(
        repo.path(),
        &[(
            ".github/workflows/ci.yml",
            &format!(
                "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo live-line-0\n          while [ ! -e '{}' ]; do sleep 0.1; done\n          for i in $(seq 1 30); do echo live-line-$i; sleep 0.1; done\n",
                gate.display()
            ),
        )],
    );
    let runs_url = format!("{}/api/v1/runs", b.url);
    let start = Instant::now();
    let run_id = loop {
        let runs = get_json(&runs_url, &token);
        if let Some(r) = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "running")
        {
            break r["id"].as_i64().unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no run started: {runs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let events_url = format!("{}/api/v1/runs/{run_id}/events", b.url);
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            std::fs::write(gate, "").unwrap();
        })
    };
    let has = |events: &[Value], needle: &str| {
        events
            .iter()
            .any(|e| e["type"] == "log" && e["text"].as_str().unwrap_or("").contains(needle))
    };
    let events = read_events(&events_url, &token, 30, &|evs: &[Value]| {
        has(evs, "live-line-30\n")
    });
    opener.join().unwrap();
    assert_eq!(
        events.first().map(|e| e["type"].clone()),
        Some("hello".into())
    );
    for i in [1, 15, 30] {
        assert!(
            has(&events, &format!("live-line-{i}\n")),
            "line {i} did not reach server B's stream: {events:?}"
        );
    }
    // The lines came as the job ran, in several chunks.
    let logs = events.iter().filter(|e| e["type"] == "log").count();
    assert!(logs >= 2, "{events:?}");
    let start = Instant::now();
    loop {
        let detail = get_json(&format!("{}/api/v1/runs/{run_id}", a.url), &token);
        if detail["run"]["status"] == "completed" {
            assert_eq!(detail["run"]["conclusion"], "success", "{detail}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{detail}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(b);
}

/// `hangar backup --database postgres://…` copies the whole store as of one
/// moment into a new directory; `hangar restore` brings it back as a SQLite
/// server's data, and `hangar migrate` into an empty PostgreSQL database.
#[test]
fn a_postgres_store_backs_up_and_restores_on_both_backends() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    use hangar_store::Store;
    let (url, again) = (cluster.database(), cluster.database());
    let data = tempfile::tempdir().unwrap();
    let token = {
        let s = hangar_store::postgres::PgStore::open(&url, data.path()).unwrap();
        s.audit("t", "a", "b", &serde_json::json!({})).unwrap();
        s.create_token("admin", hangar_store::Role::Admin).unwrap()
    };
    let out = tempfile::tempdir().unwrap();
    let backup = out.path().join("b");
    let run = |args: &[&str]| {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let d = data.path().to_str().unwrap();
    let b = backup.to_str().unwrap();
    run(&["backup", "--data", d, "--database", &url, b]);
    // SQLite: restored as a server's data directory.
    let restored = out.path().join("r");
    let r = restored.to_str().unwrap();
    run(&["restore", "--data", r, b]);
    let s = hangar_store::open(&restored).unwrap();
    assert_eq!(
        s.verify_token(&token).unwrap().unwrap().role,
        hangar_store::Role::Admin
    );
    // PostgreSQL: into an empty database, every table's count and hash checked.
    let moved = run(&[
        "migrate",
        "--from",
        &format!("sqlite://{b}"),
        "--to",
        &again,
    ]);
    assert!(moved.contains("2 rows in "), "{moved}");
    let db = again.rsplit('/').next().unwrap();
    assert_eq!(cluster.psql(db, "SELECT name FROM api_tokens"), "admin");
}

/// `/readyz` says whether to send this server work, `/healthz` only that it
/// lives: 200 with the schema version on a database at this build's version;
/// 503 `schema_mismatch` once another build migrated the shared database past
/// it (and 200 again when it is back); from SIGTERM until the stop
/// (`--drain-seconds`) 503 `draining` while the API is still served; a second
/// signal stops at once.
#[test]
fn readiness_follows_the_schema_version_and_the_drain() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let db_url = cluster.database();
    let db = db_url.rsplit('/').next().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let mut s = serve(
        data.path(),
        &["--agent-capacity", "0", "--drain-seconds", "120"],
        &db_url,
    );
    let token = s.token.clone().unwrap();
    let ready = format!("{}/readyz", s.url);
    let healthy = format!("{}/healthz", s.url);
    let (code, body) = get(&ready, "");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let version = v["schema_version"].as_i64().expect("a version");
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(
        cluster.psql(&db, "SELECT version FROM hangar_schema"),
        version.to_string()
    );

    // A newer build migrated the database this server shares.
    cluster.psql(&db, "UPDATE hangar_schema SET version = version + 1");
    let (code, body) = get(&ready, "");
    assert_eq!(code, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "schema_mismatch", "{v}");
    let why = v["error"].as_str().unwrap();
    assert!(
        why.contains(&(version + 1).to_string()) && why.contains(&version.to_string()),
        "{why}"
    );
    assert_eq!(get(&healthy, "").0, 200);
    cluster.psql(
        &db,
        &format!("UPDATE hangar_schema SET version = {version}"),
    );
    assert_eq!(get(&ready, "").0, 200);

    // SIGTERM: not ready, still serving.
    let pid = s.child.id().to_string();
    let term = || {
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
    };
    term();
    let start = Instant::now();
    loop {
        let (code, body) = get(&ready, "");
        if code == 503 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["code"], "draining", "{v}");
            break;
        }
        assert_eq!(code, 200, "{body}");
        assert!(start.elapsed() < Duration::from_secs(10), "never draining");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&healthy, "").0, 200);
    let (code, body) = get(&format!("{}/api/v1/runs", s.url), &token);
    assert_eq!(code, 200, "the API is still served while draining: {body}");
    // A second signal ends the drain at once.
    term();
    let start = Instant::now();
    while s.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "a second SIGTERM did not stop the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
