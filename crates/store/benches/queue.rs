//! Queue drain through the store alone: 10,000 queued one-step jobs taken by
//! 20 simulated agents (threads), each doing what an agent's job costs the
//! database: find runnable jobs, claim one, store a log chunk and a step,
//! complete it. Once on SQLite (one file, one connection behind a mutex),
//! once on PostgreSQL (a throwaway local cluster, fsync off as in the tests:
//! the figure is the store's, not the disk's). Prints jobs per second, the
//! ratio PostgreSQL/SQLite, claim attempts per job (agents racing for the
//! same job) and, for PostgreSQL, round trips per job.
//! Run: `benches/queue-drain.sh` (or `cargo bench -p hangar-store --bench queue`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hangar_store::*;

const JOBS: usize = 10_000;
const AGENTS: usize = 20;
const PER_RUN: usize = 100;

fn fill(s: &dyn Store) {
    for r in 0..JOBS / PER_RUN {
        let run = s
            .create_run(&NewRun {
                repo_id: 1,
                workflow_path: ".github/workflows/ci.yml".into(),
                workflow_name: "ci".into(),
                event: "push".into(),
                git_ref: "refs/heads/main".into(),
                sha: format!("{r:040}"),
                actor: "bench".into(),
                payload: serde_json::json!({}),
                context: serde_json::json!({}),
                jobs: (0..PER_RUN)
                    .map(|i| NewJob {
                        key: format!("j{i}"),
                        name: format!("j{i}"),
                        labels: vec!["linux".into()],
                        spec: serde_json::json!({"steps": [{"run": "true"}]}),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .unwrap();
        for j in s.jobs_of_run(run).unwrap() {
            s.update_job(
                j.id,
                &JobUpdate {
                    status: Some(Status::Queued),
                    ..Default::default()
                },
            )
            .unwrap();
        }
    }
}

/// Drains the queue with `AGENTS` threads, agent `a` through `stores[a % n]`
/// (several stores on one database: the servers agents talk to, each with
/// its own pool); (seconds, claim attempts).
fn drain(stores: &[&dyn Store]) -> (f64, u64) {
    let s = stores[0];
    let attempts = AtomicU64::new(0);
    let labels = vec!["linux".to_string()];
    let start = Instant::now();
    std::thread::scope(|scope| {
        for a in 0..AGENTS {
            let (attempts, labels) = (&attempts, &labels);
            let s = stores[a % stores.len()];
            scope.spawn(move || {
                let agent = format!("agent-{a}");
                loop {
                    let offered = s.runnable_jobs(labels, 4).unwrap();
                    if offered.is_empty() {
                        break;
                    }
                    // Start at a different offer per agent, as agents polling
                    // at different moments would.
                    let n = offered.len();
                    let lease = (0..n).find_map(|i| {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        s.claim_job(offered[(a + i) % n].id, &agent, 60_000)
                            .unwrap()
                    });
                    let Some(lease) = lease else { continue };
                    let job = lease.job.id;
                    s.append_log_chunk(job, lease.job.attempt, 0, 0, "ok\n")
                        .unwrap();
                    s.upsert_step(&Step {
                        job_id: job,
                        attempt: lease.job.attempt,
                        idx: 0,
                        name: "run".into(),
                        status: Status::Completed,
                        conclusion: Some(Conclusion::Success),
                        started_at: Some(now_ms()),
                        finished_at: Some(now_ms()),
                    })
                    .unwrap();
                    assert!(
                        s.complete_job(
                            job,
                            lease.fence,
                            Conclusion::Success,
                            &serde_json::json!({})
                        )
                        .unwrap()
                    );
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(s.queue_depth().unwrap(), 0);
    let c = s.job_counts(1).unwrap();
    assert_eq!((c.total, c.completed), (PER_RUN as i64, PER_RUN as i64));
    (secs, attempts.into_inner())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite::SqliteStore::open(dir.path()).unwrap();
    fill(&sqlite);
    let (secs, attempts) = drain(&[&sqlite]);
    let sqlite_rate = JOBS as f64 / secs;
    println!(
        "sqlite      {JOBS} jobs, {AGENTS} agents: {secs:>6.2} s = {sqlite_rate:>7.0} jobs/s, {:.2} claim attempts per job",
        attempts as f64 / JOBS as f64
    );
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let pg_dir = tempfile::tempdir().unwrap();
    let pg = postgres::PgStore::open(&cluster.database(), pg_dir.path()).unwrap();
    fill(&pg);
    let before = postgres::round_trips();
    let (secs, attempts) = drain(&[&pg]);
    let trips = postgres::round_trips() - before;
    let pg_rate = JOBS as f64 / secs;
    println!(
        "postgresql  {JOBS} jobs, {AGENTS} agents: {secs:>6.2} s = {pg_rate:>7.0} jobs/s, {:.2} claim attempts per job, \
         {:.2} round trips per job (x{:.2} SQLite's rate)",
        attempts as f64 / JOBS as f64,
        trips as f64 / JOBS as f64,
        pg_rate / sqlite_rate
    );
    // Three servers on one database: three stores (three pools of
    // connections, as three `hangar serve` processes have), the 20 agents
    // spread over them.
    let url = cluster.database();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let three: Vec<postgres::PgStore> = dirs
        .iter()
        .map(|d| postgres::PgStore::open(&url, d.path()).unwrap())
        .collect();
    fill(&three[0]);
    let refs: Vec<&dyn Store> = three.iter().map(|s| s as &dyn Store).collect();
    let before = postgres::round_trips();
    let (secs, attempts) = drain(&refs);
    let trips = postgres::round_trips() - before;
    let rate = JOBS as f64 / secs;
    println!(
        "postgresql  {JOBS} jobs, {AGENTS} agents over 3 servers: {secs:>6.2} s = {rate:>7.0} jobs/s, \
         {:.2} claim attempts per job, {:.2} round trips per job (x{:.2} SQLite's rate)",
        attempts as f64 / JOBS as f64,
        trips as f64 / JOBS as f64,
        rate / sqlite_rate
    );
}
