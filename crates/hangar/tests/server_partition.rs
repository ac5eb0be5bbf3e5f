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

use super::server_postgres::{Serve, get_json, serve, serve_on};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

/// A network namespace joined to the host by a veth pair: the host side is
/// `10.213.N.1`, the namespace side `10.213.N.2`. Removed when dropped.
struct Netns {
    name: String,
    host_if: String,
    /// The host's end of a second pair (`10.214.N.0/30`), when there is one.
    db_if: Option<String>,
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
            db_if: None,
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

    /// A second veth pair: the host side `10.214.N.1`, the namespace side
    /// `10.214.N.2`, so one path (to the database) can be cut while the
    /// other (clients to the server) stays.
    fn add_db_link(&mut self, n: u8) -> Result<(), String> {
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let host_if = format!("hgd{tag}");
        let peer = format!("hge{tag}");
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer,
        ])?;
        self.db_if = Some(host_if.clone());
        ip(&["link", "set", &peer, "netns", &self.name])?;
        ip(&["addr", "add", &format!("10.214.{n}.1/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "addr",
            "add",
            &format!("10.214.{n}.2/30"),
            "dev",
            &peer,
        ])?;
        ip(&[
            "netns", "exec", &self.name, "ip", "link", "set", &peer, "up",
        ])
    }

    /// Cuts the second pair (its host side down), or joins it again.
    fn db_link(&self, up: bool) {
        let dev = self.db_if.as_deref().expect("add_db_link first");
        ip(&["link", "set", dev, if up { "up" } else { "down" }]).unwrap();
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
            .args(["--sandbox", "none", "--state-file"])
            // Beside its log, never in the user's state directory.
            .arg(log.with_extension("state.json"))
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
        if let Some(dev) = &self.db_if {
            let _ = ip(&["link", "del", dev]);
        }
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

/// The advisory lock key under which one server leads the periodic work
/// (as the store derives it: the first 8 bytes of SHA-256, little-endian).
fn leader_key() -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"hangar.leader:periodic");
    i64::from_le_bytes(digest[..8].try_into().unwrap())
}

/// The address the leading server's lock connection comes from, if any.
fn leader_addr(cluster: &hangar_testkit::postgres::Cluster, db: &str) -> String {
    cluster.psql(
        db,
        &format!(
            "SELECT host(s.client_addr) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
             AND ((l.classid::bigint << 32) | l.objid::bigint) = {}",
            leader_key()
        ),
    )
}

/// A push for delivery `id` of `sha` to the test's repository.
fn push_body(repo: &std::path::Path, sha: &str, id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": sha,
        "repository": {"full_name": "acme/app", "clone_url": repo.to_string_lossy()},
        "pusher": {"name": "tester"},
        "head_commit": {"id": sha, "message": id},
        "commits": [{"added": [".github/workflows/ci.yml"], "modified": [], "removed": []}]
    }))
    .unwrap()
}

/// Three servers on one PostgreSQL database; one of them, in a network
/// namespace of its own, leads the periodic work and runs two jobs on its
/// embedded agent when its path to PostgreSQL is cut (its clients' path
/// stays). Its leadership passes to another server, its jobs stop there and
/// finish on agents of the other servers, each job's work done once; while
/// cut it answers the API and webhooks at once with 503
/// `database_unavailable` (the webhook then goes to another server, as a
/// load balancer sends it); when the link is back it answers and takes
/// webhooks again. Needs root (CAP_NET_ADMIN): fails under `$CI`, skips
/// loudly elsewhere.
#[test]
fn a_server_cut_off_from_the_database_hands_its_work_over_and_answers_503_until_back() {
    use super::server_kill::{deliver, deliver_answer, post};
    let Some(mut ns) =
        hangar_testkit::required_tool("network namespaces (ip netns, veth)", Netns::new(3))
    else {
        return;
    };
    ns.add_db_link(3).expect("a second veth pair");
    let Some(cluster) = hangar_testkit::postgres::cluster_also_on("10.214.3.1", "10.214.3.0/30")
    else {
        return;
    };
    let db_url = cluster.database();
    let db = db_url.rsplit('/').next().unwrap().to_string();
    let cut_db_url = db_url.replace("127.0.0.1", "10.214.3.1");
    let work = tempfile::tempdir().unwrap();
    let ledger = work.path().join("ledger");
    // Long enough that a job the cut server runs cannot finish before its
    // agent stops it (two thirds of the 3 s lease without a renewal).
    let workflow = format!(
        "on: push\njobs:\n  work:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo \"$GITHUB_RUN_ID start\" >> '{l}'\n          sleep 6\n          echo \"$GITHUB_RUN_ID done\" >> '{l}'\n",
        l = ledger.display()
    );
    let (repo, sha) = hangar_testkit::repo_with(&[(".github/workflows/ci.yml", &workflow)]);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let common = [
        "--max-attempts",
        "3",
        "--lease-timeout",
        "3",
        "--sandbox",
        "none",
    ];
    // The server to be cut starts first, so it leads, and is the only one
    // with an agent until the cut: the jobs before it run there.
    let ns_wrap = ["ip", "netns", "exec", ns.name.as_str()];
    let mut cut_args = common.to_vec();
    cut_args.extend(["--agent-capacity", "2"]);
    let mut cut = super::server_postgres::serve_in(
        &ns_wrap,
        "0.0.0.0:0",
        dirs[0].path(),
        &cut_args,
        &cut_db_url,
    );
    let port = cut.url.rsplit(':').next().unwrap().to_string();
    cut.url = format!("http://10.213.3.2:{port}");
    let token = cut.token.clone().unwrap();
    wait("the first server to lead", 30, &mut || {
        leader_addr(&cluster, &db) == "10.214.3.2"
    });
    for d in &dirs[1..] {
        for key in ["secret.key", "lease.key"] {
            std::fs::copy(dirs[0].path().join(key), d.path().join(key)).unwrap();
        }
    }
    let mut others_args = common.to_vec();
    others_args.extend(["--agent-capacity", "0"]);
    let others: Vec<Serve> = dirs[1..]
        .iter()
        .map(|d| serve(d.path(), &others_args, &db_url))
        .collect();
    let auth = format!("Bearer {token}");
    let repo_json = serde_json::json!({"name": "acme/app",
        "clone_url": repo.path().to_string_lossy(), "forge": "github",
        "webhook_secret": super::server_kill::SECRET})
    .to_string();
    let (code, answer) = post(
        &others[0].url,
        "/api/v1/repos",
        &[("Authorization", &auth)],
        repo_json.as_bytes(),
    )
    .expect("the server answers");
    assert_eq!(code, 201, "{answer}");

    // Two jobs start on the server to be cut.
    for (i, other) in others.iter().enumerate() {
        let id = format!("before-{i}");
        let code = deliver(&other.url, &push_body(repo.path(), &sha, &id), &id);
        assert_eq!(code, Some(202), "{id}");
    }
    wait("both jobs to start on the first server", 60, &mut || {
        std::fs::read_to_string(&ledger)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(" start"))
            .count()
            == 2
    });
    let started_on_cut: Vec<String> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();

    let probe = |path: &str| super::server_postgres::get(&format!("{}{path}", cut.url), "");
    assert_eq!(probe("/readyz").0, 200, "ready before the cut");
    ns.db_link(false);
    let cut_at = Instant::now();
    // Agents for the other servers (the cut server's jobs need somewhere to go).
    let agents: Vec<Kill> = others
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Kill(
                Command::new(BIN)
                    .args(["agent", "--server", &s.url, "--token", &token])
                    .args(["--name", &format!("host-{i}"), "--capacity", "1"])
                    .args(["--sandbox", "none", "--state-file"])
                    .arg(work.path().join(format!("host-{i}.json")))
                    .current_dir(work.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();

    // The cut server answers 503 `database_unavailable` with a Retry-After,
    // never hangs: each answer within the connection's 8 s bound on
    // unacknowledged data, and the first 503 soon after the cut.
    let runs_path = "/api/v1/runs";
    let get_runs = |base: &str| {
        let started = Instant::now();
        let answer = super::server_postgres::get(&format!("{base}{runs_path}"), &token);
        (answer, started.elapsed())
    };
    let mut unavailable = None;
    while unavailable.is_none() {
        let ((code, body), took) = get_runs(&cut.url);
        assert!(took < Duration::from_secs(12), "an answer took {took:?}");
        match code {
            200 => {}
            503 => unavailable = Some(body),
            _ => panic!("a cut server answered {code}: {body}"),
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(20),
            "no 503 within 20 s of the cut"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let body: Value = serde_json::from_str(&unavailable.unwrap()).unwrap();
    assert_eq!(body["code"], "database_unavailable", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    eprintln!("first 503 {:?} after the cut", cut_at.elapsed());
    // Once it knows, it answers at once.
    let ((code, _), took) = get_runs(&cut.url);
    assert_eq!(code, 503);
    assert!(
        took < Duration::from_secs(2),
        "a known outage took {took:?}"
    );
    // Readiness says so too, so a load balancer passes it over; liveness
    // does not, so nothing restarts a process that recovers by itself.
    let (code, body) = probe("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("database_unavailable"), "{body}");
    assert_eq!(probe("/healthz").0, 200);
    let during = push_body(repo.path(), &sha, "during");
    let (code, answer) = deliver_answer(&cut.url, &during, "during").expect("an answer");
    assert_eq!(code, 503, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );
    assert!(answer.contains("database_unavailable"), "{answer}");
    // The load balancer's next server takes the same delivery.
    assert_eq!(deliver(&others[1].url, &during, "during"), Some(202));

    // Another server leads the periodic work: the cut server's session ended
    // on PostgreSQL's side (its keepalives went unanswered).
    wait("another server to lead", 30, &mut || {
        leader_addr(&cluster, &db) == "127.0.0.1"
    });
    eprintln!("leadership moved {:?} after the cut", cut_at.elapsed());

    // Every run completes, the cut server's two on the others' agents.
    let runs_url = format!("{}/api/v1/runs?limit=100", others[0].url);
    let mut runs = Value::Null;
    wait("the three runs to complete", 90, &mut || {
        runs = get_json(&runs_url, &token);
        let all = runs.as_array().unwrap();
        all.len() == 3 && all.iter().all(|r| r["status"] == "completed")
    });
    for r in runs.as_array().unwrap() {
        assert_eq!(r["conclusion"], "success", "{r}");
    }
    for id in &started_on_cut {
        let detail = get_json(&format!("{}/api/v1/runs/{id}", others[1].url), &token);
        assert!(
            detail["jobs"][0]["attempt"].as_i64().unwrap() >= 2,
            "run {id} was not retried elsewhere: {detail}"
        );
    }

    // The link comes back: the cut server answers again, and takes webhooks.
    ns.db_link(true);
    let back_at = Instant::now();
    wait("the cut server to answer again", 30, &mut || {
        get_runs(&cut.url).0.0 == 200
    });
    eprintln!(
        "answering again {:?} after the link returned",
        back_at.elapsed()
    );
    wait("the cut server to be ready again", 30, &mut || {
        probe("/readyz").0 == 200
    });
    let after = push_body(repo.path(), &sha, "after");
    assert_eq!(deliver(&cut.url, &after, "after"), Some(202));
    wait("the fourth run to complete", 60, &mut || {
        runs = get_json(&runs_url, &token);
        let all = runs.as_array().unwrap();
        all.len() == 4 && all.iter().all(|r| r["status"] == "completed")
    });
    let deliveries = get_json(&format!("{}/api/v1/deliveries?limit=100", cut.url), &token);
    assert_eq!(deliveries.as_array().unwrap().len(), 4, "{deliveries}");
    // No job's work done twice: the cut server's agent stopped its two
    // jobs before their end, and every run's work finished exactly once.
    let text = std::fs::read_to_string(&ledger).unwrap();
    for r in runs.as_array().unwrap() {
        assert_eq!(r["conclusion"], "success", "{r}");
        let done = format!("{} done", r["id"]);
        let n = text.lines().filter(|l| *l == done).count();
        assert_eq!(n, 1, "run {}'s work was done {n} times:\n{text}", r["id"]);
    }
    drop(agents);
}
