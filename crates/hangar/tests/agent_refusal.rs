//! The agent's side of the version check, with real processes: a `hangar
//! agent` handed a job by a server that says it speaks another protocol
//! refuses it at once (`POST /api/v1/agent/jobs/{id}/refuse`), names both
//! versions and stops; the real `hangar serve` behind it fails the job saying
//! why (no other agent of its version is there) and audits the refusal.
//!
//! The other version is made by a loopback proxy between the two, as a
//! load balancer in front of servers of mixed versions would be: it passes
//! every request through and only raises the version in the assignment the
//! poll answers. No test hook is compiled into the binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::browser::{Kill, http, serve};
use crate::common::http_json;

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

/// One request read from `client` (head and body) and sent on to `server`
/// as HTTP/1.0, so its answer ends with the connection; a poll's assignment
/// comes back claiming protocol `ours + 1`.
fn relay(mut client: TcpStream, server: &str) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let is_poll = head.starts_with("POST /api/v1/agent/poll ");
    let head = head.replacen(" HTTP/1.1\r\n", " HTTP/1.0\r\n", 1);
    let mut upstream = TcpStream::connect(server)?;
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&body)?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (status_head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = status_head.split_whitespace().nth(1).unwrap_or("502");
    let mut payload = payload.to_string();
    if is_poll
        && status == "200"
        && let Ok(mut v) = serde_json::from_str::<Value>(&payload)
    {
        let ours = v["protocol_version"].as_u64().unwrap();
        v["protocol_version"] = Value::from(ours + 1);
        v["hangar_version"] = Value::from("99.0.0");
        payload = v.to_string();
    }
    write!(
        client,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )?;
    client.flush()
}

#[test]
fn an_agent_handed_a_job_by_a_server_of_another_version_refuses_it_and_stops() {
    let (repo, _) = hangar_testkit::repo_with(&[(
        ".github/workflows/ci.yml",
        "on: workflow_dispatch\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo ran-it}]\n",
    )]);
    let data = tempfile::tempdir().unwrap();
    let repo_arg = repo.path().to_string_lossy().into_owned();
    let (_serve, url, admin) = serve(
        BIN,
        data.path(),
        &[
            "--agent-capacity",
            "0",
            "--sandbox",
            "none",
            "--repo",
            &repo_arg,
        ],
    );
    let base = url
        .trim_end_matches('/')
        .trim_end_matches("/ui")
        .to_string();
    let upstream = base.trim_start_matches("http://").to_string();
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in proxy.incoming().flatten() {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let _ = relay(client, &upstream);
            });
        }
    });

    let (_, repos) = http_json("GET", &format!("{base}/api/v1/repos"), &admin, "");
    let repo_id = repos[0]["id"].as_i64().unwrap();
    let (code, v) = http_json(
        "POST",
        &format!("{base}/api/v1/repos/{repo_id}/dispatch"),
        &admin,
        r#"{"workflow": "ci.yml", "ref": "main"}"#,
    );
    assert_eq!(code, 201, "{v}");
    let run_id = v["run"].as_i64().unwrap();
    let (code, t) = http_json(
        "POST",
        &format!("{base}/api/v1/tokens"),
        &admin,
        r#"{"name": "runner", "role": "agent"}"#,
    );
    assert_eq!(code, 201, "{t}");
    let work = tempfile::tempdir().unwrap();
    let mut agent = Kill(
        Command::new(BIN)
            .args(["agent", "--server", &proxy_url, "--token"])
            .arg(t["token"].as_str().unwrap())
            .args(["--sandbox", "none", "--name", "old-agent"])
            .args(["--labels", "ubuntu-latest", "--work-dir"])
            .arg(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    // The agent stops by itself, saying why, having run nothing.
    let start = Instant::now();
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the agent kept going after the refusal"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    agent
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    let ours = hangar_agent::PROTOCOL_VERSION;
    let both = format!(
        "this agent speaks agent protocol {ours} (hangar {}), the server speaks protocol {} (hangar 99.0.0)",
        hangar_agent::HANGAR_VERSION,
        ours + 1
    );
    assert!(err.contains(&both), "{err}");

    // The server heard it at once (not at the lease's expiry): the job
    // failed naming the refusal, and the audit log holds it.
    let (_, run) = http_json("GET", &format!("{base}/api/v1/runs/{run_id}"), &admin, "");
    assert_eq!(run["run"]["conclusion"], "failure", "{run:#}");
    let job = &run["jobs"][0];
    assert_eq!(job["conclusion"], "failure", "{job:#}");
    let (_, log) = http(
        "GET",
        &format!("{base}/api/v1/jobs/{}/logs/raw", job["id"]),
        &admin,
        None,
    );
    assert!(log.contains("refused the job"), "{log}");
    assert!(
        log.contains(&format!(
            "no other agent of protocol {ours} offering ubuntu-latest is connected"
        )),
        "{log}"
    );
    assert!(!log.contains("ran-it"), "{log}");
    let (_, audit) = http_json("GET", &format!("{base}/api/v1/audit"), &admin, "");
    let refused = audit
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["action"] == "job.refused")
        .unwrap_or_else(|| panic!("no job.refused in {audit:#}"));
    assert_eq!(refused["detail"]["requeued"], false, "{refused:#}");
}
