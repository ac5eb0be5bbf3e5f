//! Three `hangar serve` on one PostgreSQL database under a stream of webhooks,
//! each server killed with -9 in turn and started again while jobs run: no
//! delivery is lost or queued twice (each is sent to a second server as well,
//! as a load balancer's retry or GitHub's redelivery would), no run is lost,
//! and no job's work is done twice (a job whose server died is retried by the
//! rule, its killed attempt having done nothing that counts).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hmac::Mac;
use serde_json::json;

use super::server_postgres::{Serve, get_json, serve};

pub(crate) const SECRET: &str = "kill-test-secret";

/// POSTs `body` as JSON; `None` when the server did not answer.
pub(crate) fn post(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let host = base.strip_prefix("http://")?;
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out))
}

/// POSTs a signed GitHub push delivery; `None` when the server did not answer.
pub(crate) fn deliver(base: &str, body: &[u8], delivery: &str) -> Option<u16> {
    deliver_answer(base, body, delivery).map(|(code, _)| code)
}

/// [`deliver`], with the whole answer (status line, headers, body).
pub(crate) fn deliver_answer(base: &str, body: &[u8], delivery: &str) -> Option<(u16, String)> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
        ("X-Hub-Signature-256", sig.as_str()),
    ];
    post(base, "/hooks/github", &headers, body)
}

/// Sends to the servers in turn from `first` until one answers 2xx, as
/// GitHub redelivers a delivery that got no answer.
fn deliver_somewhere(urls: &[String], first: usize, body: &[u8], delivery: &str) -> u16 {
    let start = Instant::now();
    let mut i = first;
    loop {
        if let Some(code) = deliver(&urls[i % urls.len()], body, delivery)
            && (200..300).contains(&code)
        {
            return code;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no server took delivery {delivery}"
        );
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill(s: &mut Serve) {
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

#[test]
fn three_servers_lose_nothing_and_never_run_a_job_twice_at_once_when_killed_in_turn() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let db = cluster.database();
    let work = tempfile::tempdir().unwrap();
    let ledger = work.path().join("ledger");
    // Each job says when it starts and, a second later, that its work is done.
    let workflow = format!(
        "on: push\njobs:\n  work:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo \"$GITHUB_RUN_ID start\" >> '{l}'\n          sleep 1.5\n          echo \"$GITHUB_RUN_ID done\" >> '{l}'\n",
        l = ledger.display()
    );
    let (repo, sha) = hangar_testkit::repo_with(&[(".github/workflows/ci.yml", &workflow)]);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = [
        "--max-attempts",
        "5",
        "--lease-timeout",
        "3",
        "--agent-capacity",
        "2",
        "--sandbox",
        "none",
    ];
    let mut servers = vec![serve(dirs[0].path(), &args, &db)];
    let token = servers[0].token.clone().unwrap();
    // One key for sealing, one for lease keys: every server the same.
    for d in &dirs[1..] {
        for key in ["secret.key", "lease.key"] {
            std::fs::copy(dirs[0].path().join(key), d.path().join(key)).unwrap();
        }
    }
    for d in &dirs[1..] {
        servers.push(serve(d.path(), &args, &db));
    }
    let repo_json = json!({"name": "acme/app", "clone_url": repo.path().to_string_lossy(),
                           "forge": "github", "webhook_secret": SECRET})
    .to_string();
    let (code, answer) = post(
        &servers[0].url,
        "/api/v1/repos",
        &[("Authorization", &format!("Bearer {token}"))],
        repo_json.as_bytes(),
    )
    .expect("the server answers");
    assert_eq!(code, 201, "registering the repository: {answer}");

    const DELIVERIES: usize = 24;
    let mut killed = 0;
    for i in 0..DELIVERIES {
        let id = format!("delivery-{i}");
        let body = serde_json::to_vec(&json!({
            "ref": "refs/heads/main",
            "before": "0000000000000000000000000000000000000000",
            "after": sha,
            "repository": {"full_name": "acme/app", "clone_url": repo.path().to_string_lossy()},
            "pusher": {"name": "tester"},
            "head_commit": {"id": sha, "message": id},
            "commits": [{"added": [".github/workflows/ci.yml"], "modified": [], "removed": []}]
        }))
        .unwrap();
        let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        deliver_somewhere(&urls, i, &body, &id);
        // The same delivery again through another server: deduplicated by its id.
        deliver_somewhere(&urls, i + 1, &body, &id);
        // Every 6 deliveries a server dies with its embedded agent and jobs,
        // and comes back a second later on its data directory.
        if i % 6 == 5 {
            let k = killed % 3;
            kill(&mut servers[k]);
            killed += 1;
            std::thread::sleep(Duration::from_secs(1));
            servers[k] = serve(dirs[k].path(), &args, &db);
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(killed, 4);

    let runs_url = format!("{}/api/v1/runs?limit=500", servers[2].url);
    let start = Instant::now();
    let runs = loop {
        let runs = get_json(&runs_url, &token);
        let all = runs.as_array().unwrap();
        if all.len() >= DELIVERIES && all.iter().all(|r| r["status"] == "completed") {
            break runs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "runs not completed within 120 s: {runs}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let runs = runs.as_array().unwrap();
    // No delivery lost, none queued twice.
    assert_eq!(runs.len(), DELIVERIES, "one run per delivery: {runs:?}");
    let deliveries = get_json(
        &format!("{}/api/v1/deliveries?limit=500", servers[1].url),
        &token,
    );
    assert_eq!(deliveries.as_array().unwrap().len(), DELIVERIES);
    // No run lost: each succeeded, retried where its server died.
    for r in runs {
        assert_eq!(r["conclusion"], "success", "{r}");
    }
    // No job run twice at once: an attempt starts only once the one before
    // it is dead. Delivery is at least once, as for any queue: a server
    // killed after a step's work but before the agent's report lands loses
    // that report, and the retried attempt does the work again. So a job's
    // work is repeated only by a later attempt, never by two attempts side
    // by side (which would show as two `done` lines with no `start` between).
    let text = std::fs::read_to_string(&ledger).unwrap();
    let mut retried = 0;
    for r in runs {
        let id = r["id"].as_i64().unwrap();
        let (start, done) = (format!("{id} start"), format!("{id} done"));
        let mine: Vec<&str> = text.lines().filter(|l| *l == start || *l == done).collect();
        let dones = mine.iter().filter(|l| **l == done).count();
        assert!(dones >= 1, "run {id}'s job never did its work:\n{text}");
        assert!(
            !mine.windows(2).any(|w| w[0] == done && w[1] == done),
            "run {id}'s job ran twice at the same time:\n{text}"
        );
        let detail = get_json(&format!("{}/api/v1/runs/{id}", servers[0].url), &token);
        let attempt = detail["jobs"][0]["attempt"].as_i64().unwrap();
        assert!(
            dones as i64 <= attempt,
            "run {id}'s job did its work {dones} times in {attempt} attempt(s):\n{text}"
        );
        if attempt > 1 {
            retried += 1;
        }
    }
    // The kills hit running jobs: some were retried (else this proved nothing).
    assert!(
        retried > 0,
        "no job was running when its server died:\n{text}"
    );
    eprintln!("{DELIVERIES} deliveries, 4 kills: {retried} jobs retried, none twice at once");
}
