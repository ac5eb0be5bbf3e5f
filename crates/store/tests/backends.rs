//! The store's behaviour, once, run against every backend: SQLite always, and
//! PostgreSQL when its programs are installed (a throwaway cluster of the test
//! process, a new database per test; missing PostgreSQL fails under `$CI` and
//! skips loudly elsewhere). A test here must pass on both: the server cannot
//! tell them apart.

use std::sync::{Arc, Barrier};

use hangar_store::*;

/// A store and what keeps it alive (its data directory).
struct Fixture {
    _dir: tempfile::TempDir,
    store: Box<dyn Store>,
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Box::new(hangar_store::sqlite::SqliteStore::open(dir.path()).unwrap());
    Fixture { _dir: dir, store }
}

fn postgres() -> Option<Fixture> {
    let cluster = hangar_testkit::postgres::cluster()?;
    let dir = tempfile::tempdir().unwrap();
    let store =
        Box::new(hangar_store::postgres::PgStore::open(&cluster.database(), dir.path()).unwrap());
    Some(Fixture { _dir: dir, store })
}

/// Each test function runs once per backend, as `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                let f = super::sqlite();
                super::$name(&*f.store);
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                let Some(f) = super::postgres() else { return };
                super::$name(&*f.store);
            })*
        }
    };
}

on_both!(
    env_deployments_are_stored_once_and_the_last_record_wins,
    delivery_operations_round_trip_by_phase,
    done_operations_are_deleted_after_the_cutoff,
    workflow_run_queue_is_first_in_first_out,
    log_chunks_know_their_step,
    results_cache_entries_are_immutable_per_slot,
    tokens_verify_by_plaintext_only,
    a_migrated_store_is_at_this_builds_schema_version,
    expired_and_revoked_tokens_verify_as_none,
    secrets_overlay_and_environment_levels,
    environment_names_compare_without_case,
    forge_credentials_and_outbound_log,
    notification_rules_round_trip,
    delivery_dedup_creates_runs_once,
    deliveries_are_found_by_prefix_literally,
    lease_fencing_rejects_stale_holders,
    concurrent_claims_lease_each_job_once,
    heartbeats_extend_and_carry_cancel,
    released_leases_fail_running_steps,
    log_chunks_are_idempotent_and_paged,
    logs_and_steps_are_kept_per_attempt,
    run_numbers_count_per_workflow,
    statuses_round_trip,
    run_filters_and_counts,
    job_counts_and_groups,
    a_failure_that_continues_on_error_is_not_counted,
    reset_jobs_starts_a_new_attempt,
    approvals_belong_to_an_attempt,
    deployments_agents_and_audit,
    retention_lists_and_deletes,
    caches_match_exact_then_prefix,
    held_runs_and_policies,
    a_jobs_evaluated_environment_is_stored,
    deleting_a_repository_leaves_nothing_of_it_and_spares_the_others,
    repositories_change_and_agents_drain,
    agents_register_with_a_credential_and_stay_removed,
);

fn repo(s: &dyn Store, name: &str) -> Repo {
    s.create_repo(&NewRepo {
        name: name.into(),
        clone_url: "x".into(),
        forge: "local".into(),
        webhook_secret: Some("hook-secret".into()),
    })
    .unwrap()
}

fn run_with_jobs(repo_id: i64, n: usize) -> NewRun {
    NewRun {
        repo_id,
        workflow_path: ".github/workflows/ci.yml".into(),
        workflow_name: "ci".into(),
        event: "push".into(),
        git_ref: "refs/heads/main".into(),
        sha: "abc".into(),
        actor: "test".into(),
        payload: serde_json::json!({}),
        context: serde_json::json!({"k": 1}),
        jobs: (0..n)
            .map(|i| NewJob {
                key: format!("j{i}"),
                name: format!("j{i}"),
                labels: vec![],
                spec: serde_json::json!({"steps": i}),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn queue(s: &dyn Store, job: i64) {
    s.update_job(
        job,
        &JobUpdate {
            status: Some(Status::Queued),
            ..Default::default()
        },
    )
    .unwrap();
}

fn results_cache_entries_are_immutable_per_slot(s: &dyn Store) {
    let row = |id: i64, key: &str| ResultsCacheRow {
        id,
        repository: "o/r".into(),
        scope: "refs/heads/main".into(),
        key: key.into(),
        version: "v".into(),
        size: 3,
        parts: serde_json::json!([{"size": 3, "sha256": "ab"}]),
        created_at: 1,
        last_used_at: 1,
    };
    assert!(s.insert_results_cache(&row(10, "k")).unwrap());
    assert!(!s.insert_results_cache(&row(11, "k")).unwrap(), "same slot");
    assert!(s.insert_results_cache(&row(12, "k2")).unwrap());
    s.touch_results_cache(10, 50).unwrap();
    let all = s.results_caches(Some("o/r")).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().find(|r| r.id == 10).unwrap().last_used_at, 50);
    assert_eq!(all[0].parts[0]["sha256"], "ab");
    assert!(s.results_caches(Some("o/other")).unwrap().is_empty());
    s.delete_results_cache(10).unwrap();
    assert_eq!(s.results_caches(None).unwrap().len(), 1);
}

fn a_migrated_store_is_at_this_builds_schema_version(s: &dyn Store) {
    assert_eq!(s.schema_version().unwrap(), hangar_store::SCHEMA_VERSION);
}

fn tokens_verify_by_plaintext_only(s: &dyn Store) {
    let t = s.create_token("admin", Role::Admin).unwrap();
    assert_eq!(s.verify_token(&t).unwrap().unwrap().role, Role::Admin);
    assert!(s.verify_token("hgr_nope").unwrap().is_none());
    let scope = TokenScope {
        repos: vec!["a/b".into()],
        labels: vec!["linux".into()],
    };
    let (_, agent) = s
        .create_token_scoped("agent", Role::Agent, None, &scope)
        .unwrap();
    assert_eq!(s.verify_token(&agent).unwrap().unwrap().scope, scope);
    assert_eq!(s.token_count().unwrap(), 2);
}

fn expired_and_revoked_tokens_verify_as_none(s: &dyn Store) {
    let (_, past) = s
        .create_token_expiring("old", Role::Read, Some(now_ms() - 1))
        .unwrap();
    assert!(s.verify_token(&past).unwrap().is_none());
    let (id, live) = s
        .create_token_expiring("live", Role::Write, Some(now_ms() + 60_000))
        .unwrap();
    assert_eq!(s.verify_token(&live).unwrap().unwrap().role, Role::Write);
    assert!(s.revoke_token(id).unwrap());
    assert!(!s.revoke_token(id).unwrap());
    assert!(s.verify_token(&live).unwrap().is_none());
    let listed = s.list_tokens().unwrap();
    assert!(listed.iter().any(|t| t.id == id && t.revoked_at.is_some()));
}

fn secrets_overlay_and_environment_levels(s: &dyn Store) {
    let r = repo(s, "a/b");
    assert_eq!(s.repo_webhook_secret(r.id).unwrap().unwrap(), "hook-secret");
    s.set_secret(Some(r.id), "TOKEN", "repo-value").unwrap();
    s.set_secret(None, "TOKEN", "server-value").unwrap();
    s.set_secret(None, "GLOBAL", "g").unwrap();
    s.set_secret(Some(r.id), "b_lower", "x").unwrap();
    s.set_secret(Some(r.id), "A_UPPER", "y").unwrap();
    let m = s.secrets_for_repo(r.id).unwrap();
    assert_eq!(m["TOKEN"], "repo-value", "the repository's level wins");
    assert_eq!(m["GLOBAL"], "g");
    // Byte order (upper case first), whatever the database's locale.
    assert_eq!(
        s.secret_names(Some(r.id)).unwrap(),
        ["A_UPPER", "TOKEN", "b_lower"]
    );
    s.set_env_secret(r.id, "prod", "TOKEN", "env-value")
        .unwrap();
    assert_eq!(s.secrets_for_repo(r.id).unwrap()["TOKEN"], "repo-value");
    assert_eq!(
        s.env_secrets(r.id, Some("prod")).unwrap()["TOKEN"],
        "env-value"
    );
    assert_eq!(
        s.env_secrets(r.id, None).unwrap()["prod/TOKEN"],
        "env-value"
    );
    assert!(s.delete_env_secret(r.id, "prod", "TOKEN").unwrap());
    assert!(!s.delete_env_secret(r.id, "prod", "TOKEN").unwrap());
    assert!(s.delete_secret(Some(r.id), "TOKEN").unwrap());
    assert_eq!(s.secrets_for_repo(r.id).unwrap()["TOKEN"], "server-value");
    s.set_variable(Some(r.id), "REGION", "eu").unwrap();
    s.set_variable(None, "REGION", "us").unwrap();
    s.set_variable(None, "ONLY_SERVER", "1").unwrap();
    let v = s.variables_for_repo(r.id).unwrap();
    assert_eq!(
        (v["REGION"].as_str(), v["ONLY_SERVER"].as_str()),
        ("eu", "1")
    );
    s.set_env_variable(r.id, "prod", "REGION", "ap").unwrap();
    assert_eq!(s.env_variables(r.id, "prod").unwrap()["REGION"], "ap");
    assert_eq!(s.variables_for_repo(r.id).unwrap()["REGION"], "eu");
}

/// GitHub compares environment names without case; so do both backends.
fn environment_names_compare_without_case(s: &dyn Store) {
    let r = repo(s, "a/b");
    let p = |who: &str| Protection {
        reviewers: vec![who.into()],
        wait_seconds: 0,
        branches: vec![],
        prevent_self_review: who == "new",
    };
    s.set_environment(r.id, "Prod", &p("old")).unwrap();
    s.set_environment(r.id, "prod", &p("new")).unwrap();
    let read = s.get_environment(r.id, "PROD").unwrap().unwrap();
    assert_eq!(read.reviewers, ["new"]);
    assert!(read.prevent_self_review);
    assert!(s.get_environment(r.id, "staging").unwrap().is_none());
    s.set_env_secret(r.id, "Prod", "K", "1").unwrap();
    s.set_env_secret(r.id, "PROD", "K", "2").unwrap();
    assert_eq!(s.env_secret_names(r.id, "prod").unwrap(), ["K"]);
    assert_eq!(s.env_secrets(r.id, Some("pRoD")).unwrap()["K"], "2");
    s.set_env_variable(r.id, "Prod", "V", "1").unwrap();
    assert_eq!(s.env_variables(r.id, "PROD").unwrap()["V"], "1");
}

fn forge_credentials_and_outbound_log(s: &dyn Store) {
    let cred = ForgeCredential {
        kind: "github".into(),
        api_url: "https://api.github.com".into(),
        project: "acme/app".into(),
        token: "ghp_forge-token-value-789".into(), // hangar:allow (a fake credential for the test)
    };
    s.set_forge_credential(7, &cred).unwrap();
    assert_eq!(s.forge_credential(7).unwrap(), Some(cred));
    assert!(s.delete_forge_credential(7).unwrap());
    assert_eq!(s.forge_credential(7).unwrap(), None);
    s.record_outbound(&NewOutbound {
        kind: "status".into(),
        target: "https://api.github.com/repos/acme/app/statuses/abc".into(),
        state: "pending".into(),
        attempts: 3,
        outcome: "delivered".into(),
        http_status: Some(201),
        ..Default::default()
    })
    .unwrap();
    let log = s.list_outbound(Some("status"), 10).unwrap();
    assert_eq!(
        (log.len(), log[0].attempts, log[0].http_status),
        (1, 3, Some(201))
    );
    assert!(
        s.list_outbound(Some("notification"), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.list_outbound(None, 10).unwrap().len(), 1);
}

fn notification_rules_round_trip(s: &dyn Store) {
    let id = s
        .create_notification_rule(&NotificationRule {
            repo_id: Some(3),
            events: vec!["run.failed".into()],
            channel: "webhook".into(),
            target: "https://hooks.example/x".into(),
            secret: Some("sign".into()),
            ..Default::default()
        })
        .unwrap();
    let rules = s.notification_rules().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        (
            rules[0].id,
            rules[0].target.as_str(),
            rules[0].secret.as_deref()
        ),
        (id, "https://hooks.example/x", Some("sign"))
    );
    assert!(s.delete_notification_rule(id).unwrap());
    assert!(!s.delete_notification_rule(id).unwrap());
}

fn delivery_dedup_creates_runs_once(s: &dyn Store) {
    let runs = vec![run_with_jobs(1, 2), run_with_jobs(1, 1)];
    let ids = s
        .record_delivery("d1", Some(1), "push", "queued", &runs)
        .unwrap()
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(
        s.record_delivery("d1", Some(1), "push", "queued", &runs)
            .unwrap()
            .is_none()
    );
    assert_eq!(s.list_runs(&RunFilter::default()).unwrap().len(), 2);
    let d = s.list_deliveries(10).unwrap();
    assert_eq!((d.len(), d[0].run_ids.clone()), (1, ids.clone()));
    assert_eq!(s.jobs_of_run(ids[0]).unwrap().len(), 2);
    assert_eq!(s.run_context(ids[0]).unwrap()["k"], 1);
}

/// A ref name may hold `%` or `_`: the prefix is matched literally.
fn deliveries_are_found_by_prefix_literally(s: &dyn Store) {
    s.record_delivery("watch:refs/heads/a_b:1", Some(1), "push", "ok", &[])
        .unwrap();
    s.record_delivery("watch:refs/heads/axb:2", Some(1), "push", "ok", &[])
        .unwrap();
    assert_eq!(
        s.latest_delivery_with_prefix(1, "watch:refs/heads/a_b:")
            .unwrap()
            .as_deref(),
        Some("watch:refs/heads/a_b:1")
    );
    assert!(
        s.latest_delivery_with_prefix(1, "watch:refs/heads/a%")
            .unwrap()
            .is_none()
    );
    assert!(
        s.latest_delivery_with_prefix(2, "watch:")
            .unwrap()
            .is_none()
    );
}

fn lease_fencing_rejects_stale_holders(s: &dyn Store) {
    let run = s.create_run(&run_with_jobs(1, 1)).unwrap();
    let job = s.jobs_of_run(run).unwrap().remove(0);
    assert_eq!(job.spec, serde_json::json!({}), "listed without the spec");
    queue(s, job.id);
    assert_eq!(s.queue_depth().unwrap(), 1);
    assert_eq!(s.runnable_jobs(&[], 10).unwrap().len(), 1);
    let lease = s.claim_job(job.id, "a1", 1000).unwrap().unwrap();
    assert_eq!(lease.job.spec["steps"], 0, "a claim hands the spec");
    assert_eq!(lease.job.lease_owner.as_deref(), Some("a1"));
    assert!(
        s.claim_job(job.id, "a2", 1000).unwrap().is_none(),
        "double claim"
    );
    assert_eq!(s.expired_leases(now_ms() + 5000).unwrap().len(), 1);
    assert!(s.expired_leases(now_ms() - 5000).unwrap().is_empty());
    assert_eq!(s.jobs_leased_by_prefix("a").unwrap().len(), 1);
    // The reaper requeues; a new holder claims with a newer fence.
    assert!(
        s.release_lease(job.id, lease.fence, true, "agent lost")
            .unwrap()
    );
    let lease2 = s.claim_job(job.id, "a2", 1000).unwrap().unwrap();
    assert!(lease2.fence > lease.fence);
    assert_eq!(lease2.job.attempt, 2);
    assert_eq!(
        s.heartbeat(job.id, lease.fence, 1000).unwrap(),
        LeaseCheck::Lost
    );
    let done = |fence| {
        s.complete_job(
            job.id,
            fence,
            Conclusion::Success,
            &serde_json::json!({"o": "1"}),
        )
        .unwrap()
    };
    assert!(!done(lease.fence));
    assert!(done(lease2.fence));
    let j = s.get_job(job.id).unwrap().unwrap();
    assert_eq!(
        (j.status, j.conclusion),
        (Status::Completed, Some(Conclusion::Success))
    );
    assert_eq!(j.outputs["o"], "1");
    assert!(j.lease_owner.is_none());
}

/// Agents of several servers claim the same jobs at once: every job is leased
/// exactly once (PostgreSQL: `FOR UPDATE SKIP LOCKED`, no waiting on each other).
fn concurrent_claims_lease_each_job_once(s: &dyn Store) {
    let run = s.create_run(&run_with_jobs(1, 40)).unwrap();
    let jobs: Vec<i64> = s.jobs_of_run(run).unwrap().iter().map(|j| j.id).collect();
    for j in &jobs {
        queue(s, *j);
    }
    let barrier = Arc::new(Barrier::new(4));
    let claimed: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let barrier = barrier.clone();
                let jobs = &jobs;
                scope.spawn(move || {
                    barrier.wait();
                    let mut mine = Vec::new();
                    for j in jobs {
                        if s.claim_job(*j, &format!("agent-{t}"), 60_000)
                            .unwrap()
                            .is_some()
                        {
                            mine.push(*j);
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<i64> = claimed.concat();
    all.sort();
    assert_eq!(all, jobs, "each job leased exactly once");
    assert_eq!(s.queue_depth().unwrap(), 0);
}

fn heartbeats_extend_and_carry_cancel(s: &dyn Store) {
    let run = s.create_run(&run_with_jobs(1, 1)).unwrap();
    let job = s.jobs_of_run(run).unwrap()[0].id;
    queue(s, job);
    let lease = s.claim_job(job, "a", 10).unwrap().unwrap();
    assert_eq!(
        s.heartbeat(job, lease.fence, 60_000).unwrap(),
        LeaseCheck::Held {
            cancel_requested: false
        }
    );
    let extended = s.get_job(job).unwrap().unwrap().lease_expires_at.unwrap();
    assert!(
        extended > lease.expires_at + 30_000,
        "the lease was extended"
    );
    s.request_cancel(job).unwrap();
    assert_eq!(
        s.heartbeat(job, lease.fence, 60_000).unwrap(),
        LeaseCheck::Held {
            cancel_requested: true
        }
    );
    assert_eq!(
        s.heartbeat(job + 1000, 1, 60_000).unwrap(),
        LeaseCheck::Lost
    );
}

fn released_leases_fail_running_steps(s: &dyn Store) {
    let run = s.create_run(&run_with_jobs(1, 1)).unwrap();
    let job = s.jobs_of_run(run).unwrap()[0].id;
    queue(s, job);
    let lease = s.claim_job(job, "a", 60_000).unwrap().unwrap();
    s.upsert_step(&Step {
        job_id: job,
        attempt: 1,
        idx: 0,
        name: "build".into(),
        status: Status::Running,
        conclusion: None,
        started_at: Some(5),
        finished_at: None,
    })
    .unwrap();
    assert!(
        !s.release_lease(job, lease.fence + 1, false, "x").unwrap(),
        "stale fence"
    );
    assert!(
        s.release_lease(job, lease.fence, false, "agent lost")
            .unwrap()
    );
    let j = s.get_job(job).unwrap().unwrap();
    assert_eq!(
        (j.status, j.conclusion),
        (Status::Completed, Some(Conclusion::Failure))
    );
    assert_eq!(j.waiting_reason.as_deref(), Some("agent lost"));
    let step = &s.steps_of_job(job, None).unwrap()[0];
    assert_eq!(
        (step.status, step.conclusion),
        (Status::Completed, Some(Conclusion::Failure))
    );
    assert_eq!(step.started_at, Some(5));
}

fn log_chunks_are_idempotent_and_paged(s: &dyn Store) {
    assert!(s.append_log_chunk(7, 1, 0, 0, "a\nb\n").unwrap());
    assert!(!s.append_log_chunk(7, 1, 0, 0, "a\nb\n").unwrap());
    assert!(s.append_log_chunk(7, 1, 1, 2, "c\n").unwrap());
    assert_eq!(s.log_stats(7, Some(1)).unwrap(), (2, 3));
    let page = s.log_chunks_for_lines(7, Some(1), 2, 3).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].data, b"c\n");
    assert_eq!(s.log_chunks(7, Some(1), 0).unwrap().len(), 2);
    assert_eq!(s.log_chunks(7, Some(1), 1).unwrap()[0].first_line, 2);
    assert_eq!(s.log_bytes(7, 1).unwrap(), 6);
    assert_eq!(s.log_bytes(7, 2).unwrap(), 0);
}

/// Chunks carry their step: two steps writing at once (their chunks
/// interleaved) read back apart, each in order; lines of no step (the job's
/// own, or an agent that sends none) are their own group.
fn log_chunks_know_their_step(s: &dyn Store) {
    assert!(s.append_log_chunk(9, 1, 0, 0, "set up\n").unwrap());
    assert!(
        s.append_step_log_chunk(9, 1, 1, 1, Some(0), "a1\na2\n")
            .unwrap()
    );
    assert!(
        s.append_step_log_chunk(9, 1, 2, 3, Some(1), "b1\n")
            .unwrap()
    );
    assert!(
        s.append_step_log_chunk(9, 1, 3, 4, Some(0), "a3\n")
            .unwrap()
    );
    assert!(
        s.append_step_log_chunk(9, 1, 4, 5, Some(1), "b2\nb3\n")
            .unwrap()
    );
    // A retried upload of a chunk is still one chunk, whatever step it names.
    assert!(
        !s.append_step_log_chunk(9, 1, 4, 5, Some(0), "b2\nb3\n")
            .unwrap()
    );
    let text = |step| -> String {
        s.log_chunks_of_step(9, Some(1), step)
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c.step, step);
                String::from_utf8_lossy(&c.data).into_owned()
            })
            .collect()
    };
    assert_eq!(text(Some(0)), "a1\na2\na3\n");
    assert_eq!(text(Some(1)), "b1\nb2\nb3\n");
    assert_eq!(text(None), "set up\n");
    assert_eq!(text(Some(7)), "");
    assert_eq!(
        s.log_lines_by_step(9, Some(1)).unwrap(),
        [(None, 1), (Some(0), 3), (Some(1), 3)]
    );
    let all = s.log_chunks(9, Some(1), 0).unwrap();
    let steps: Vec<Option<i64>> = all.iter().map(|c| c.step).collect();
    assert_eq!(steps, [None, Some(0), Some(1), Some(0), Some(1)]);
    assert_eq!(
        s.log_chunks_for_lines(9, Some(1), 3, 4).unwrap()[0].step,
        Some(1)
    );
    // Another attempt's steps are its own.
    assert!(s.log_lines_by_step(9, Some(2)).unwrap().is_empty());
}

/// A retried job's second attempt writes its own chunk 0 and step 0; reads
/// default to the job's latest attempt, the first stays readable.
fn logs_and_steps_are_kept_per_attempt(s: &dyn Store) {
    let r = repo(s, "a/b");
    let run = s.create_run(&run_with_jobs(r.id, 1)).unwrap();
    let job = s.jobs_of_run(run).unwrap()[0].id;
    let step = |attempt, name: &str| Step {
        job_id: job,
        attempt,
        idx: 0,
        name: name.into(),
        status: Status::Completed,
        conclusion: Some(Conclusion::Success),
        started_at: Some(attempt),
        finished_at: Some(attempt),
    };
    let claim = || {
        queue(s, job);
        s.claim_job(job, "agent", 60_000).unwrap().unwrap()
    };
    assert_eq!(claim().job.attempt, 1);
    assert!(s.append_log_chunk(job, 1, 0, 0, "first\n").unwrap());
    s.upsert_step(&step(1, "one")).unwrap();
    assert_eq!(claim().job.attempt, 2);
    assert!(s.append_log_chunk(job, 2, 0, 0, "second\n").unwrap());
    s.upsert_step(&step(2, "two")).unwrap();
    assert_eq!(s.log_chunks(job, None, 0).unwrap()[0].data, b"second\n");
    assert_eq!(s.log_chunks(job, Some(1), 0).unwrap()[0].data, b"first\n");
    assert_eq!(s.steps_of_job(job, None).unwrap()[0].name, "two");
    assert_eq!(s.steps_of_job(job, Some(1)).unwrap()[0].name, "one");
    assert_eq!(s.log_attempts(job).unwrap(), [1, 2]);
}

/// `github.run_number` counts per workflow of a repository, not per server.
fn run_numbers_count_per_workflow(s: &dyn Store) {
    let mut numbers = Vec::new();
    for (repo, path) in [(1, "ci.yml"), (1, "cd.yml"), (1, "ci.yml"), (2, "ci.yml")] {
        let mut run = run_with_jobs(repo, 1);
        run.workflow_path = path.into();
        let id = s.create_run(&run).unwrap();
        numbers.push(s.get_run(id).unwrap().unwrap().run_number);
    }
    assert_eq!(numbers, [1, 1, 2, 1]);
}

fn statuses_round_trip(s: &dyn Store) {
    let r = repo(s, "a/b");
    let run = s.create_run(&run_with_jobs(r.id, 1)).unwrap();
    s.set_run_status(run, Status::Running, None, Some("because"))
        .unwrap();
    let started = s.get_run(run).unwrap().unwrap();
    assert!(started.started_at.is_some() && started.finished_at.is_none());
    assert_eq!(started.waiting_reason.as_deref(), Some("because"));
    s.set_run_status(run, Status::Completed, Some(Conclusion::Cancelled), None)
        .unwrap();
    let r = s.get_run(run).unwrap().unwrap();
    assert_eq!(
        (r.status, r.conclusion),
        (Status::Completed, Some(Conclusion::Cancelled))
    );
    assert!(r.finished_at.is_some());
    assert_eq!(r.started_at, started.started_at, "started once");
    assert!(s.active_runs().unwrap().is_empty());
}

fn run_filters_and_counts(s: &dyn Store) {
    let a = repo(s, "o/a");
    let mut push = run_with_jobs(a.id, 1);
    push.sha = "abc123".into();
    let push = s.create_run(&push).unwrap();
    let mut pr = run_with_jobs(a.id, 1);
    pr.event = "pull_request".into();
    pr.git_ref = "refs/pull/12/merge".into();
    pr.sha = "a_c999".into();
    pr.actor = "mona".into();
    pr.workflow_name = "Checks".into();
    pr.workflow_path = ".github/workflows/checks.yml".into();
    pr.payload = serde_json::json!({"pull_request": {"number": 12, "head": {"ref": "feature/x"}}});
    let pr = s.create_run(&pr).unwrap();
    let other = s.create_run(&run_with_jobs(a.id + 1, 1)).unwrap();
    s.set_run_status(other, Status::Completed, Some(Conclusion::Failure), None)
        .unwrap();
    let ids = |f: RunFilter| -> Vec<i64> {
        let runs = s.list_runs(&f).unwrap();
        if f.limit.is_none() && f.before.is_none() {
            // The count matches what a page without limits lists.
            assert_eq!(s.count_runs(&f).unwrap() as usize, runs.len());
        }
        runs.iter().map(|r| r.id).collect()
    };
    assert_eq!(ids(RunFilter::default()), [other, pr, push]);
    assert_eq!(
        ids(RunFilter {
            repo_id: Some(a.id),
            ..Default::default()
        }),
        [pr, push]
    );
    assert_eq!(
        ids(RunFilter {
            branch: Some("main".into()),
            ..Default::default()
        }),
        [other, push]
    );
    assert_eq!(
        ids(RunFilter {
            branch: Some("feature/x".into()),
            ..Default::default()
        }),
        [pr]
    );
    assert_eq!(
        ids(RunFilter {
            pull_request: Some(12),
            ..Default::default()
        }),
        [pr]
    );
    assert_eq!(
        ids(RunFilter {
            pull_request: Some(13),
            ..Default::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(RunFilter {
            workflow: Some("checks.yml".into()),
            ..Default::default()
        }),
        [pr]
    );
    assert_eq!(
        ids(RunFilter {
            workflow: Some("ci".into()),
            ..Default::default()
        }),
        [other, push]
    );
    assert_eq!(
        ids(RunFilter {
            commit: Some("abc1".into()),
            ..Default::default()
        }),
        [push]
    );
    // `_` in a commit prefix is a character, not a wildcard.
    assert_eq!(
        ids(RunFilter {
            commit: Some("a_c".into()),
            ..Default::default()
        }),
        [pr]
    );
    assert_eq!(
        ids(RunFilter {
            actor: Some("mona".into()),
            ..Default::default()
        }),
        [pr]
    );
    assert_eq!(
        ids(RunFilter {
            event: Some("push".into()),
            ..Default::default()
        }),
        [other, push]
    );
    assert_eq!(
        ids(RunFilter {
            status: Some(Status::Completed),
            ..Default::default()
        }),
        [other]
    );
    assert_eq!(
        ids(RunFilter {
            conclusion: Some(Conclusion::Failure),
            ..Default::default()
        }),
        [other]
    );
    assert_eq!(
        ids(RunFilter {
            before: Some(pr),
            ..Default::default()
        }),
        [push]
    );
    assert_eq!(
        ids(RunFilter {
            limit: Some(1),
            ..Default::default()
        }),
        [other]
    );
    assert_eq!(
        s.count_runs(&RunFilter {
            repo_id: Some(a.id),
            ..Default::default()
        })
        .unwrap(),
        2
    );
    assert_eq!(
        s.active_runs()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [push, pr]
    );
    // A run whose job waits for a reviewer is `waiting`, whatever its stored
    // status, as the runs list shows it; once decided it is what it was.
    let stored = s.get_run(pr).unwrap().unwrap().status;
    let job = s.jobs_of_run(pr).unwrap()[0].id;
    let approval = s.create_approval(job, pr, "prod").unwrap();
    let with_status = |status| RunFilter {
        status: Some(status),
        ..Default::default()
    };
    assert_eq!(ids(with_status(Status::Waiting)), [pr]);
    assert!(!ids(with_status(stored)).contains(&pr), "{stored}");
    s.decide_approval(approval, true, "mona", "ok").unwrap();
    assert!(ids(with_status(Status::Waiting)).is_empty());
    assert!(ids(with_status(stored)).contains(&pr), "{stored}");
}

fn job_counts_and_groups(s: &dyn Store) {
    let run = s.create_run(&run_with_jobs(1, 3)).unwrap();
    let jobs = s.jobs_of_run(run).unwrap();
    queue(s, jobs[0].id);
    let lease = s.claim_job(jobs[0].id, "a", 60_000).unwrap().unwrap();
    s.complete_job(
        jobs[0].id,
        lease.fence,
        Conclusion::Failure,
        &serde_json::json!({}),
    )
    .unwrap();
    queue(s, jobs[1].id);
    s.claim_job(jobs[1].id, "a", 60_000).unwrap().unwrap();
    let c = s.job_counts(run).unwrap();
    assert_eq!(
        (c.total, c.completed, c.running, c.failed, c.cancelled),
        (3, 1, 1, 1, 0)
    );
    assert_eq!(s.jobs_of_run_in(run, Status::Waiting).unwrap().len(), 1);
    s.set_job_group(jobs[2].id, Some("deploy")).unwrap();
    assert_eq!(s.job_group(jobs[2].id).unwrap().as_deref(), Some("deploy"));
    assert_eq!(s.job_group(jobs[1].id).unwrap(), None);
    assert_eq!(s.jobs_in_group("deploy").unwrap()[0].id, jobs[2].id);
    s.set_job_spec(jobs[2].id, "renamed", &serde_json::json!({"x": 1}))
        .unwrap();
    let j = s.get_job(jobs[2].id).unwrap().unwrap();
    assert_eq!(
        (j.name.as_str(), j.spec["x"].as_i64()),
        ("renamed", Some(1))
    );
    let added = s
        .add_jobs(
            run,
            &[NewJob {
                key: "m".into(),
                name: "m (1)".into(),
                ..Default::default()
            }],
        )
        .unwrap();
    assert_eq!(s.job_counts(run).unwrap().total, 4);
    assert_eq!(s.get_job(added[0]).unwrap().unwrap().max_attempts, 1);
    s.update_job(
        added[0],
        &JobUpdate {
            status: Some(Status::Completed),
            conclusion: Some(Some(Conclusion::Skipped)),
            waiting_reason: Some(None),
            approved: Some(true),
            not_before: Some(Some(42)),
            finished_at: Some(43),
            environment: None,
            outputs: None,
            labels: None,
            continue_on_error: None,
        },
    )
    .unwrap();
    let j = s.get_job(added[0]).unwrap().unwrap();
    assert_eq!(
        (
            j.conclusion,
            j.waiting_reason,
            j.approved,
            j.not_before,
            j.finished_at
        ),
        (Some(Conclusion::Skipped), None, true, Some(42), Some(43))
    );
}

/// A failure under `continue-on-error` is kept as a failure, but the run's
/// counts do not take it for one; a re-run evaluates the key again.
fn a_failure_that_continues_on_error_is_not_counted(s: &dyn Store) {
    let run = s.create_run(&run_with_jobs(1, 2)).unwrap();
    let jobs = s.jobs_of_run(run).unwrap();
    assert!(!jobs[0].continue_on_error);
    for (j, coe) in jobs.iter().zip([true, false]) {
        s.update_job(
            j.id,
            &JobUpdate {
                status: Some(Status::Completed),
                conclusion: Some(Some(Conclusion::Failure)),
                continue_on_error: Some(coe),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let c = s.job_counts(run).unwrap();
    assert_eq!((c.completed, c.failed), (2, 1));
    let light = s.jobs_of_run(run).unwrap();
    assert!(light[0].continue_on_error && !light[1].continue_on_error);
    assert_eq!(light[0].conclusion, Some(Conclusion::Failure));
    s.reset_jobs(run, &[jobs[0].id], 1).unwrap();
    assert!(!s.get_job(jobs[0].id).unwrap().unwrap().continue_on_error);
}

fn reset_jobs_starts_a_new_attempt(s: &dyn Store) {
    let run = s.create_run(&run_with_jobs(1, 1)).unwrap();
    let job = s.jobs_of_run(run).unwrap()[0].id;
    queue(s, job);
    let lease = s.claim_job(job, "a", 60_000).unwrap().unwrap();
    s.complete_job(
        job,
        lease.fence,
        Conclusion::Failure,
        &serde_json::json!({"a": 1}),
    )
    .unwrap();
    s.set_run_status(run, Status::Completed, Some(Conclusion::Failure), None)
        .unwrap();
    s.reset_jobs(run, &[job], 2).unwrap();
    let j = s.get_job(job).unwrap().unwrap();
    assert_eq!(
        (j.status, j.conclusion, j.max_attempts),
        (Status::Waiting, None, 3)
    );
    assert_eq!(j.outputs, serde_json::json!({}));
    let r = s.get_run(run).unwrap().unwrap();
    assert_eq!(
        (r.status, r.attempt, r.finished_at),
        (Status::Queued, 2, None)
    );
}

fn approvals_belong_to_an_attempt(s: &dyn Store) {
    let run = s.create_run(&run_with_jobs(1, 1)).unwrap();
    let job = s.jobs_of_run(run).unwrap()[0].id;
    let a = s.create_approval(job, run, "prod").unwrap();
    assert_eq!(s.list_approvals(true).unwrap().len(), 1);
    let decided = s.decide_approval(a, true, "mona", "ok").unwrap().unwrap();
    assert_eq!(
        (decided.state, decided.reviewer.as_deref()),
        (ApprovalState::Approved, Some("mona"))
    );
    assert!(
        s.decide_approval(a, false, "x", "late").unwrap().is_none(),
        "decided once"
    );
    assert!(s.list_approvals(true).unwrap().is_empty());
    assert_eq!(s.list_approvals(false).unwrap().len(), 1);
    assert_eq!(s.approvals_of_job(job).unwrap().len(), 1);
    s.reset_jobs(run, &[job], 1).unwrap();
    assert!(
        s.approvals_of_job(job).unwrap().is_empty(),
        "a re-run asks again"
    );
    s.create_approval(job, run, "prod").unwrap();
    assert_eq!(s.expire_approvals(run, "run cancelled").unwrap(), 1);
    assert_eq!(
        s.approvals_of_job(job).unwrap()[0].state,
        ApprovalState::Cancelled
    );
}

fn deployments_agents_and_audit(s: &dyn Store) {
    s.record_deployment(1, 2, "prod", "abc", Conclusion::Success)
        .unwrap();
    s.record_deployment(1, 3, "staging", "abc", Conclusion::Failure)
        .unwrap();
    assert_eq!(s.list_deployments(None).unwrap().len(), 2);
    let prod = s.list_deployments(Some("prod")).unwrap();
    assert_eq!((prod.len(), prod[0].status), (1, Conclusion::Success));
    let agent = |seen| Agent {
        id: "a1".into(),
        name: "box".into(),
        labels: vec!["linux".into()],
        capacity: 2,
        last_seen: seen,
        created_at: 1,
        drained: false,
        token_id: None,
    };
    s.upsert_agent(&agent(5)).unwrap();
    s.upsert_agent(&agent(9)).unwrap();
    let agents = s.list_agents().unwrap();
    assert_eq!(
        (agents.len(), agents[0].last_seen, agents[0].labels.clone()),
        (1, 9, vec!["linux".to_string()])
    );
    s.audit(
        "mona",
        "token.create",
        "t1",
        &serde_json::json!({"role": "read"}),
    )
    .unwrap();
    s.audit("mona", "token.revoke", "t1", &serde_json::json!({}))
        .unwrap();
    let log = s.list_audit(1).unwrap();
    assert_eq!((log.len(), log[0].action.as_str()), (1, "token.revoke"));
    assert_eq!(s.list_audit(10).unwrap()[1].detail["role"], "read");
}

fn retention_lists_and_deletes(s: &dyn Store) {
    let run = s.create_run(&run_with_jobs(1, 1)).unwrap();
    let job = s.jobs_of_run(run).unwrap()[0].id;
    s.append_log_chunk(job, 1, 0, 0, "some log line\n").unwrap();
    assert!(
        !s.retention_items()
            .unwrap()
            .iter()
            .any(|i| i.kind == RetentionKind::Logs),
        "a running run's logs do not expire"
    );
    s.set_run_status(run, Status::Completed, Some(Conclusion::Success), None)
        .unwrap();
    let digest = s.put_blob(b"artifact bytes").unwrap();
    assert_eq!(s.get_blob(&digest).unwrap().unwrap(), b"artifact bytes");
    let a1 = s.create_artifact(run, "one", &digest, 14).unwrap();
    let a2 = s.create_artifact(run, "two", &digest, 14).unwrap();
    assert_eq!(s.list_artifacts(run).unwrap().len(), 2);
    let items = s.retention_items().unwrap();
    let logs = items
        .iter()
        .find(|i| i.kind == RetentionKind::Logs)
        .unwrap();
    assert_eq!((logs.id, logs.repo_id), (run, Some(1)));
    assert!(logs.bytes > 0);
    assert_eq!(
        items
            .iter()
            .filter(|i| i.kind == RetentionKind::Artifact)
            .count(),
        2
    );
    assert_eq!(s.delete_run_logs(run).unwrap(), logs.bytes);
    assert_eq!(s.log_stats(job, Some(1)).unwrap(), (0, 0));
    s.delete_artifact(a1).unwrap();
    assert!(s.get_blob(&digest).unwrap().is_some(), "still shared");
    s.delete_artifact(a2).unwrap();
    assert!(
        s.get_blob(&digest).unwrap().is_none(),
        "the last one takes its blob"
    );
    assert!(s.list_artifacts(run).unwrap().is_empty());
}

fn caches_match_exact_then_prefix(s: &dyn Store) {
    s.put_cache(1, "npm-linux-aaa", "d1", 10).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    s.put_cache(1, "npm-linux-bbb", "d2", 20).unwrap();
    s.put_cache(1, "npm-linux-bbb", "d3", 30).unwrap();
    let exact = s
        .find_cache(1, "npm-linux-aaa", &["npm-".into()])
        .unwrap()
        .unwrap();
    assert_eq!(exact.digest, "d1");
    let newest = s
        .find_cache(1, "npm-linux-ccc", &["npm-linux-".into()])
        .unwrap()
        .unwrap();
    assert_eq!(
        newest.digest, "d2",
        "the newest prefix match; entries are immutable"
    );
    assert!(
        s.find_cache(2, "npm-linux-aaa", &["npm".into()])
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_cache(1, "x", &["npm_".into(), "%".into()])
            .unwrap()
            .is_none()
    );
}

fn held_runs_and_policies(s: &dyn Store) {
    let r = repo(s, "o/r");
    assert_eq!(s.find_repo("o/r").unwrap().unwrap().id, r.id);
    assert!(s.get_repo(r.id).unwrap().unwrap().has_webhook_secret);
    assert_eq!(s.list_repos().unwrap().len(), 1);
    // Registering again keeps the id and the secret when none is given.
    let again = s
        .create_repo(&NewRepo {
            name: "o/r".into(),
            clone_url: "y".into(),
            forge: "github".into(),
            webhook_secret: None,
        })
        .unwrap();
    assert_eq!(
        (again.id, again.clone_url.as_str(), again.has_webhook_secret),
        (r.id, "y", true)
    );
    assert_eq!(s.approval_policy(r.id).unwrap(), "none");
    assert!(s.set_approval_policy(r.id, "untrusted").unwrap());
    assert_eq!(s.approval_policy(r.id).unwrap(), "untrusted");
    assert!(!s.set_approval_policy(r.id + 100, "untrusted").unwrap());
    assert!(!s.environments_loaded(r.id).unwrap());
    s.set_environments_loaded(r.id).unwrap();
    assert!(s.environments_loaded(r.id).unwrap());
    let run = s.create_run(&run_with_jobs(r.id, 1)).unwrap();
    assert!(!s.run_held(run).unwrap());
    s.set_run_held(run, true).unwrap();
    assert!(s.run_held(run).unwrap());
    assert!(!s.run_held(run + 100).unwrap());
    assert_eq!(s.run_payload(run).unwrap(), serde_json::json!({}));
}

/// The scheduler stores the name `environment: ${{ ... }}` evaluated to (or
/// none for an empty name) so leases, approvals and deployments use it.
fn a_jobs_evaluated_environment_is_stored(s: &dyn Store) {
    let r = repo(s, "a/env");
    let mut run = run_with_jobs(r.id, 2);
    for j in &mut run.jobs {
        j.environment = Some("${{ inputs.environment }}".into());
    }
    let id = s.create_run(&run).unwrap();
    let jobs = s.jobs_of_run(id).unwrap();
    for (job, name) in jobs.iter().zip([Some("production"), None]) {
        s.update_job(
            job.id,
            &JobUpdate {
                environment: Some(name.map(String::from)),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let jobs = s.jobs_of_run(id).unwrap();
    assert_eq!(jobs[0].environment.as_deref(), Some("production"));
    assert_eq!(jobs[1].environment, None);
    // The server sets a caller's outputs (a called workflow's) itself.
    s.update_job(
        jobs[1].id,
        &JobUpdate {
            outputs: Some(serde_json::json!({"greeting": "hi"})),
            ..Default::default()
        },
    )
    .unwrap();
    let job = s.get_job(jobs[1].id).unwrap().unwrap();
    assert_eq!(job.outputs, serde_json::json!({"greeting": "hi"}));
    // And a job's `runs-on` once evaluated.
    s.update_job(
        jobs[1].id,
        &JobUpdate {
            labels: Some(vec!["self-hosted".into(), "linux".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        s.get_job(jobs[1].id).unwrap().unwrap().labels,
        ["self-hosted", "linux"]
    );
}

fn deleting_a_repository_leaves_nothing_of_it_and_spares_the_others(s: &dyn Store) {
    let gone = repo(s, "gone");
    let kept = repo(s, "kept");
    let mut jobs = Vec::new();
    for r in [&gone, &kept] {
        let runs = s
            .record_delivery(
                &format!("local:{}:refs/heads/main:abc", r.id),
                Some(r.id),
                "push",
                "queued",
                &[run_with_jobs(r.id, 2)],
            )
            .unwrap()
            .unwrap();
        let job = s.jobs_of_run(runs[0]).unwrap()[0].id;
        s.append_log_chunk(job, 1, 0, 0, "line\n").unwrap();
        s.create_approval(job, runs[0], "prod").unwrap();
        s.set_secret(Some(r.id), "TOKEN", "v").unwrap();
        s.set_variable(Some(r.id), "V", "v").unwrap();
        s.set_env_variable(r.id, "prod", "V", "v").unwrap();
        jobs.push((runs[0], job));
    }
    assert!(s.delete_repo(gone.id).unwrap());
    assert!(
        !s.delete_repo(gone.id).unwrap(),
        "a second delete finds nothing"
    );
    assert!(s.get_repo(gone.id).unwrap().is_none());
    let (run, job) = jobs[0];
    assert!(s.get_run(run).unwrap().is_none());
    assert!(s.get_job(job).unwrap().is_none());
    assert!(s.log_chunks(job, None, 0).unwrap().is_empty());
    assert!(s.approvals_of_job(job).unwrap().is_empty());
    assert!(s.secret_names(Some(gone.id)).unwrap().is_empty());
    assert!(s.variable_names(Some(gone.id), "").unwrap().is_empty());
    assert!(s.variable_names(Some(gone.id), "prod").unwrap().is_empty());
    assert!(
        s.list_deliveries(100)
            .unwrap()
            .iter()
            .all(|d| d.repo_id != Some(gone.id)),
        "a reused id must not find the old deliveries"
    );
    // The other repository keeps everything.
    let (run, job) = jobs[1];
    assert!(s.get_run(run).unwrap().is_some());
    assert_eq!(s.log_chunks(job, None, 0).unwrap().len(), 1);
    assert_eq!(s.approvals_of_job(job).unwrap().len(), 1);
    assert_eq!(s.secret_names(Some(kept.id)).unwrap(), vec!["TOKEN"]);
    assert_eq!(s.variable_names(Some(kept.id), "").unwrap(), vec!["V"]);
    assert_eq!(s.variable_names(Some(kept.id), "PROD").unwrap(), vec!["V"]);
    assert!(s.delete_variable(Some(kept.id), "Prod", "V").unwrap());
    assert!(!s.delete_variable(Some(kept.id), "prod", "V").unwrap());
}

fn repositories_change_and_agents_drain(s: &dyn Store) {
    let r = repo(s, "r");
    assert!(!r.public && r.has_webhook_secret);
    let u = s
        .update_repo(
            r.id,
            &RepoUpdate {
                public: Some(true),
                webhook_secret: Some(None),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
    assert!(u.public && !u.has_webhook_secret);
    assert_eq!(
        u.clone_url, r.clone_url,
        "an absent field is left as it was"
    );
    let u = s
        .update_repo(
            r.id,
            &RepoUpdate {
                clone_url: Some("y".into()),
                webhook_secret: Some(Some("another-hook-secret".into())),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
    assert!(u.public && u.has_webhook_secret && u.clone_url == "y");
    assert_eq!(
        s.repo_webhook_secret(r.id).unwrap().as_deref(),
        Some("another-hook-secret")
    );
    assert!(
        s.update_repo(999, &RepoUpdate::default())
            .unwrap()
            .is_none()
    );

    let agent = Agent {
        id: "a1".into(),
        name: "a".into(),
        labels: vec![],
        capacity: 1,
        last_seen: 1,
        created_at: 1,
        drained: false,
        token_id: None,
    };
    s.upsert_agent(&agent).unwrap();
    assert!(s.set_agent_drained("a1", true).unwrap());
    // The agent's next poll registers it again: it stays drained.
    s.upsert_agent(&agent).unwrap();
    assert!(s.agent_drained("a1").unwrap());
    assert!(s.list_agents().unwrap()[0].drained);
    assert!(!s.set_agent_drained("nobody", true).unwrap());
    assert!(s.delete_agent("a1").unwrap());
    assert!(s.list_agents().unwrap().is_empty());
    // A removed agent is given nothing, as a drained one.
    assert!(s.agent_drained("a1").unwrap());
}

/// An agent registered by a token authenticates with its credential alone
/// (kept hashed), a poll cannot bring a removed one back, revoking the token
/// shuts its agents out, and a single-use token registers once.
fn agents_register_with_a_credential_and_stay_removed(s: &dyn Store) {
    let (tid, token) = s
        .create_token_with("ci-box", Role::Agent, None, &TokenScope::default(), false)
        .unwrap();
    let t = s.verify_token(&token).unwrap().unwrap();
    assert!(!t.reusable && t.used_at.is_none());
    assert!(s.use_token_once(tid).unwrap());
    assert!(
        !s.use_token_once(tid).unwrap(),
        "a single-use token is used once"
    );
    assert!(s.list_tokens().unwrap()[0].used_at.is_some());
    let agent = Agent {
        id: "box-1".into(),
        name: "box".into(),
        labels: vec!["linux".into()],
        capacity: 2,
        last_seen: 1,
        created_at: 1,
        drained: false,
        token_id: Some(tid),
    };
    let cred = s.register_agent(&agent).unwrap().unwrap();
    assert!(cred.starts_with("hga_"), "{cred}");
    assert!(
        s.register_agent(&agent).unwrap().is_none(),
        "an id is registered once"
    );
    let found = s.verify_agent_credential(&cred).unwrap().unwrap();
    assert_eq!(found.agent.id, "box-1");
    assert_eq!(found.agent.token_id, Some(tid));
    assert_eq!(
        found.token.as_ref().map(|t| t.name.as_str()),
        Some("ci-box")
    );
    assert!(s.verify_agent_credential("hga_0000").unwrap().is_none());
    // The credential is no token, and the token no credential.
    assert!(s.verify_token(&cred).unwrap().is_none());
    assert!(s.verify_agent_credential(&token).unwrap().is_none());
    assert!(
        s.touch_agent(&Agent {
            last_seen: 9,
            ..agent.clone()
        })
        .unwrap()
    );
    assert_eq!(s.list_agents().unwrap()[0].last_seen, 9);
    // Removed: the credential opens nothing and a poll's touch creates nothing.
    let gone = s.remove_agent("box-1").unwrap().unwrap();
    assert_eq!(gone.token_id, Some(tid));
    assert!(s.remove_agent("box-1").unwrap().is_none());
    assert!(s.verify_agent_credential(&cred).unwrap().is_none());
    assert!(!s.touch_agent(&agent).unwrap());
    assert!(s.list_agents().unwrap().is_empty());
    // A reusable token's agents go when the token is revoked.
    let (rid, _) = s
        .create_token_with("fleet", Role::Agent, None, &TokenScope::default(), true)
        .unwrap();
    let other = Agent {
        id: "fleet-1".into(),
        token_id: Some(rid),
        ..agent.clone()
    };
    let cred = s.register_agent(&other).unwrap().unwrap();
    assert!(s.verify_agent_credential(&cred).unwrap().is_some());
    assert!(s.revoke_token(rid).unwrap());
    assert!(s.verify_agent_credential(&cred).unwrap().is_none());
    // The embedded agent has no token.
    let embedded = Agent {
        id: "embedded-1".into(),
        token_id: None,
        ..agent
    };
    let cred = s.register_agent(&embedded).unwrap().unwrap();
    assert!(
        s.verify_agent_credential(&cred)
            .unwrap()
            .unwrap()
            .token
            .is_none()
    );
}

fn delivery_operations_round_trip_by_phase(s: &dyn Store) {
    let req = serde_json::json!({"deploy": {"no_build": true}});
    let a = s
        .create_operation(
            "app",
            "prod",
            &req,
            &serde_json::json!({"events": ["waiting"]}),
            OperationPhase::Waiting,
        )
        .unwrap();
    let b = s
        .create_operation(
            "app",
            "staging",
            &req,
            &serde_json::json!({}),
            OperationPhase::Running,
        )
        .unwrap();
    assert_eq!(a, 1, "ids start at 1 (the API's first operation is 1)");
    assert!(b > a);
    let op = s.get_operation(a).unwrap().unwrap();
    assert_eq!(
        (op.project.as_str(), op.environment.as_str()),
        ("app", "prod")
    );
    assert_eq!(op.request, req);
    assert_eq!(op.state["events"][0], "waiting");
    assert_eq!(op.phase, OperationPhase::Waiting);
    let waiting: Vec<i64> = s
        .operations_in(OperationPhase::Waiting)
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(waiting, vec![a]);
    assert!(
        s.update_operation(
            a,
            op.version,
            &serde_json::json!({"done": true}),
            OperationPhase::Done
        )
        .unwrap()
    );
    // A writer that read the version before that write loses.
    assert!(
        !s.update_operation(
            a,
            op.version,
            &serde_json::json!({"stale": true}),
            OperationPhase::Waiting
        )
        .unwrap(),
        "a stale version is refused"
    );
    assert!(s.operations_in(OperationPhase::Waiting).unwrap().is_empty());
    let op2 = s.get_operation(a).unwrap().unwrap();
    assert_eq!(
        (op2.phase, op2.state["done"].as_bool()),
        (OperationPhase::Done, Some(true))
    );
    assert_eq!(op2.version, op.version + 1);
    assert!(
        !s.update_operation(99, 0, &serde_json::json!({}), OperationPhase::Done)
            .unwrap()
    );
    assert!(s.get_operation(99).unwrap().is_none());
}

/// A history ingested twice is stored once; a record written again (a
/// controller recorded how an interrupted deployment ended) replaces the
/// stored one; two services sharing a record id stay two; filters and the
/// newest-N window list oldest first.
fn env_deployments_are_stored_once_and_the_last_record_wins(s: &dyn Store) {
    let row = |project: &str, env: &str, id: i64, service: &str, started: i64, outcome: &str| {
        EnvDeployment {
            project: project.into(),
            project_name: "web".into(),
            environment: env.into(),
            service: service.into(),
            record_id: id,
            started,
            record: serde_json::json!({"id": id, "service": service, "outcome": outcome}),
        }
    };
    let history = vec![
        row("aaa", "prod", 1, "api", 100, "succeeded"),
        row("aaa", "prod", 2, "api", 200, "succeeded"),
        row("aaa", "prod", 2, "worker", 200, "succeeded"),
        row("aaa", "staging", 1, "api", 150, "failed"),
        row("bbb", "prod", 1, "api", 300, "succeeded"),
    ];
    assert_eq!(s.put_env_deployments(&history).unwrap(), 5);
    assert_eq!(
        s.put_env_deployments(&history).unwrap(),
        0,
        "the same history again writes nothing"
    );
    let all = s.env_deployments(&EnvDeploymentFilter::default()).unwrap();
    assert_eq!(all.len(), 5);
    // Record 2 of `api` ended otherwise: its last record wins, once.
    assert_eq!(
        s.put_env_deployments(&[row("aaa", "prod", 2, "api", 200, "aborted")])
            .unwrap(),
        1
    );
    let prod = s
        .env_deployments(&EnvDeploymentFilter {
            project: Some("aaa"),
            environment: Some("prod"),
            ..Default::default()
        })
        .unwrap();
    let seen: Vec<(i64, &str, &str)> = prod
        .iter()
        .map(|d| {
            (
                d.record_id,
                d.service.as_str(),
                d.record["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "api", "succeeded"),
            (2, "api", "aborted"),
            (2, "worker", "succeeded")
        ]
    );
    assert_eq!(prod[0].project_name, "web");
    assert_eq!(prod[0].started, 100);
    let newest = s
        .env_deployments(&EnvDeploymentFilter {
            project: Some("aaa"),
            environment: Some("prod"),
            last: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        newest
            .iter()
            .map(|d| (d.record_id, d.service.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, "api"), (2, "worker")]
    );
    let recent = s
        .env_deployments(&EnvDeploymentFilter {
            started_since: Some(150),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(recent.len(), 4);
    assert_eq!(
        s.env_deployment_environments("aaa").unwrap(),
        vec!["prod".to_string(), "staging".to_string()]
    );
    assert!(s.env_deployment_environments("ccc").unwrap().is_empty());
}

/// Done operations last changed before the cut-off are deleted; newer ones,
/// and those still waiting or running however old, stay.
fn done_operations_are_deleted_after_the_cutoff(s: &dyn Store) {
    let req = serde_json::json!({"op": "deploy"});
    let mk = |phase| {
        s.create_operation("app", "prod", &req, &serde_json::json!({}), phase)
            .unwrap()
    };
    let (waiting, running, done) = (
        mk(OperationPhase::Waiting),
        mk(OperationPhase::Running),
        mk(OperationPhase::Waiting),
    );
    let v = s.get_operation(done).unwrap().unwrap().version;
    assert!(
        s.update_operation(
            done,
            v,
            &serde_json::json!({"done": true}),
            OperationPhase::Done
        )
        .unwrap()
    );
    let old = s.get_operation(done).unwrap().unwrap().updated_at;
    // Nothing is older than a cut-off at its own last change.
    assert_eq!(s.delete_operations_done_before(old).unwrap(), 0);
    assert_eq!(s.delete_operations_done_before(old + 1).unwrap(), 1);
    assert!(s.get_operation(done).unwrap().is_none());
    for id in [waiting, running] {
        assert!(s.get_operation(id).unwrap().is_some(), "{id} stays");
    }
    assert_eq!(
        s.delete_operations_done_before(hangar_store::now_ms() + 60_000)
            .unwrap(),
        0,
        "only done operations go"
    );
}

/// Two servers on one PostgreSQL database (two stores, two pools) race to
/// take the same operation: each reads it, then both write with the version
/// they read, released together. Exactly one wins each round, and writers
/// that retry on a lost race lose no write.
#[test]
fn two_servers_on_one_postgres_take_an_operation_once() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let url = cluster.database();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a: Box<dyn Store> =
        Box::new(hangar_store::postgres::PgStore::open(&url, d1.path()).unwrap());
    let b: Box<dyn Store> =
        Box::new(hangar_store::postgres::PgStore::open(&url, d2.path()).unwrap());
    let servers = [&*a, &*b];
    let req = serde_json::json!({"op": "deploy"});
    for round in 0..20 {
        let id = a
            .create_operation(
                "app",
                "prod",
                &req,
                &serde_json::json!({"round": round}),
                OperationPhase::Waiting,
            )
            .unwrap();
        let barrier = Barrier::new(2);
        let won: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = servers
                .iter()
                .enumerate()
                .map(|(n, s)| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let op = s.get_operation(id).unwrap().unwrap();
                        barrier.wait();
                        s.update_operation(
                            id,
                            op.version,
                            &serde_json::json!({"taken_by": n}),
                            OperationPhase::Running,
                        )
                        .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: exactly one server takes the operation: {won:?}"
        );
        let op = b.get_operation(id).unwrap().unwrap();
        let winner = won.iter().position(|w| *w).unwrap();
        assert_eq!(op.state["taken_by"], winner, "the winner's write is kept");
        assert_eq!(op.phase, OperationPhase::Running);
    }
    // Read-modify-write with a retry on a lost race: 2 × 25 appended lines,
    // none lost.
    let id = a
        .create_operation(
            "app",
            "prod",
            &req,
            &serde_json::json!({"events": []}),
            OperationPhase::Running,
        )
        .unwrap();
    std::thread::scope(|scope| {
        for (n, s) in servers.iter().enumerate() {
            scope.spawn(move || {
                for i in 0..25 {
                    loop {
                        let mut op = s.get_operation(id).unwrap().unwrap();
                        op.state["events"]
                            .as_array_mut()
                            .unwrap()
                            .push(serde_json::json!(format!("{n}-{i}")));
                        if s.update_operation(id, op.version, &op.state, op.phase)
                            .unwrap()
                        {
                            break;
                        }
                    }
                }
            });
        }
    });
    let op = a.get_operation(id).unwrap().unwrap();
    assert_eq!(op.state["events"].as_array().unwrap().len(), 50, "{op:?}");
    assert_eq!(op.version, 50);
}

fn workflow_run_queue_is_first_in_first_out(s: &dyn Store) {
    let a = s.queue_workflow_run(7, "requested").unwrap();
    let b = s.queue_workflow_run(7, "completed").unwrap();
    s.queue_workflow_run(8, "requested").unwrap();
    let now = 1_000;
    let q = s.queued_workflow_runs(now, 2).unwrap();
    assert_eq!(
        q.iter()
            .map(|q| (q.id, q.run_id, q.action.as_str(), q.attempts))
            .collect::<Vec<_>>(),
        vec![(a, 7, "requested", 0), (b, 7, "completed", 0)]
    );
    s.dequeue_workflow_run(a).unwrap();
    // A failed attempt puts it off, and counts.
    s.retry_workflow_run(b, now + 500).unwrap();
    let q = s.queued_workflow_runs(now, 10).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].run_id, 8);
    let q = s.queued_workflow_runs(now + 500, 10).unwrap();
    assert_eq!((q[0].id, q[0].attempts), (b, 1));
}
