//! An agent cut off from its server by the network: agents run in network
//! namespaces of their own (`ip netns`, a veth pair each, addresses of the
//! test's own), the server and PostgreSQL on the host. While the agent that
//! holds a job is cut off, its lease expires, the job is retried by the rule
//! on another agent, and when the network is back the cut-off agent's late
//! writes (log lines, heartbeat, result) are refused by the fence.
//! Needs root (CAP_NET_ADMIN): fails under `$CI`, skips loudly elsewhere.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server_postgres::{get_json, serve_on};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

/// A network namespace joined to the host by a veth pair: the host side is
/// `10.213.N.1`, the namespace side `10.213.N.2`. Removed when dropped.
struct Netns {
    name: String,
    host_if: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    fn new(n: u8) -> Result<Netns, String> {
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let ns = Netns {
            name: format!("hgp{tag}"),
            host_if: format!("hgh{tag}"),
        };
        let peer = format!("hgn{tag}");
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("10.213.{n}.1/30"),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("10.213.{n}.2/30"), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Cuts the namespace off (its link down on the host side), or joins it again.
    fn link(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]).unwrap();
    }

    /// A `hangar agent` inside the namespace, its standard error to `log`.
    fn agent(&self, server: &str, token: &str, name: &str, log: &std::path::Path) -> Child {
        Command::new("ip")
            .args([
                "netns", "exec", &self.name, BIN, "agent", "--server", server,
            ])
            .args(["--token", token, "--name", name, "--capacity", "1"])
            .args(["--sandbox", "none"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so the pair.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait(what: &str, secs: u64, f: &mut dyn FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cut_off_agent_loses_its_job_to_another_and_its_late_writes_are_refused() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let Some(ns1) =
        hangar_testkit::required_tool("network namespaces (ip netns, veth)", Netns::new(1))
    else {
        return;
    };
    let ns2 = Netns::new(2).expect("a second namespace once the first worked");
    let db = cluster.database();
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("first");
    let started = work.path().join("started");
    // The first attempt prints a line, then more while it is cut off; a
    // later attempt finishes at once.
    let workflow = format!(
        "on: push\njobs:\n  j:\n    runs-on: [self-hosted]\n    steps:\n      - run: |\n          if mkdir '{first}' 2>/dev/null; then\n            echo first-attempt; touch '{started}'; sleep 1\n            for i in $(seq 1 100); do echo cut-off-line-$i; sleep 0.1; done\n          else\n            echo later-attempt\n          fi\n",
        first = first.display(),
        started = started.display()
    );
    let (repo, _) = hangar_testkit::repo_with(&[("README", "x")]);
    let data = tempfile::tempdir().unwrap();
    let repo_arg = repo.path().to_str().unwrap().to_string();
    let server = serve_on(
        "0.0.0.0:0",
        data.path(),
        &[
            "--repo",
            &repo_arg,
            "--poll-ms",
            "100",
            "--agent-capacity",
            "0",
            "--lease-timeout",
            "3",
            "--max-attempts",
            "2",
        ],
        &db,
    );
    let token = server.token.clone().unwrap();
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let log1 = work.path().join("agent1.log");
    let log2 = work.path().join("agent2.log");
    let _a1 = Kill(ns1.agent(&format!("http://10.213.1.1:{port}"), &token, "ns1", &log1));
    hangar_testkit::commit(repo.path(), &[(".github/workflows/ci.yml", &workflow)]);
    wait(
        "the first attempt to start on the agent in ns1",
        60,
        &mut || started.exists(),
    );
    ns1.link(false);
    // Only now may another agent take the job: the one in ns2.
    let _a2 = Kill(ns2.agent(&format!("http://10.213.2.1:{port}"), &token, "ns2", &log2));
    let runs_url = format!("{}/api/v1/runs", server.url);
    let mut run = Value::Null;
    wait(
        "the job to be retried and finish elsewhere",
        60,
        &mut || {
            run = get_json(&runs_url, &token)[0].clone();
            run["status"] == "completed"
        },
    );
    assert_eq!(run["conclusion"], "success", "{run}");
    // The network comes back while the first attempt still prints.
    ns1.link(true);
    let detail_url = format!("{}/api/v1/runs/{}", server.url, run["id"]);
    let job = get_json(&detail_url, &token)["jobs"][0].clone();
    assert_eq!(job["attempt"], 2, "retried by the rule: {job}");
    let start = Instant::now();
    while !std::fs::read_to_string(&log1)
        .unwrap_or_default()
        .contains("lost the lease")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the cut-off agent did not hear that its lease is gone: {}",
            std::fs::read_to_string(&log1).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log_of = |attempt: i64| {
        let (code, body) = super::server_postgres::get(
            &format!(
                "{}/api/v1/jobs/{}/logs/raw?attempt={attempt}",
                server.url, job["id"]
            ),
            &token,
        );
        assert_eq!(code, 200, "{body}");
        body
    };
    let second = log_of(2);
    assert!(second.contains("later-attempt"), "{second}");
    let first_log = log_of(1);
    // Lines the cut-off attempt printed once it was cut off (a second after
    // it began; the link goes down within 100 ms) never reached the store:
    // they were sent when the network was back, and the fence refused them.
    assert!(!first_log.contains("cut-off-line-"), "{first_log}");
    // The job stays attempt 2's: its result was not overwritten.
    let after = get_json(&detail_url, &token);
    assert_eq!(after["jobs"][0]["attempt"], 2, "{after}");
    assert_eq!(after["run"]["conclusion"], "success", "{after}");
}
