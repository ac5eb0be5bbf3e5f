//! Persistence for the CI server, behind the [`Store`] trait.
//!
//! The server only ever talks to `dyn Store`; SQL lives in [`sqlite`] (the
//! embedded default) and [`postgres`] (several servers on one database), both
//! migrated from one list of schema versions (`migrations.rs`), both held to one
//! test suite (`tests/backends.rs`).
//!
//! ## Why `rusqlite` (bundled) and not `sqlx`
//! CI builds the whole tree on 2 cores. `rusqlite` with the bundled SQLite is one C
//! file compiled once plus a thin safe wrapper; `sqlx` (even with macros and default
//! features off) brings its async runtime glue, `sqlx-core` and a larger generic
//! surface that costs more to build. SQLite calls are sub-millisecond in WAL mode, so
//! a synchronous API behind one mutex is simpler than an async pool, and the online
//! backup API (`hangar backup`) comes with it.
//!
//! ## The queue
//! Jobs are rows. A claim sets a lease (`lease_owner`, `lease_expires_at`), bumps the
//! `attempt` counter and the `fence` (fencing token). Every later call from the agent
//! carries the fence; a call with a stale fence is refused, so an agent that lost
//! its lease (it was presumed dead and the job went to someone else) cannot overwrite
//! the newer attempt. The server's reaper finds expired leases with
//! [`Store::expired_leases`].

pub mod blobs;
pub mod copy;
pub mod crypto;
pub mod fsmode;
mod migrations;
pub mod model;
mod pgtls;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use model::*;

pub type Result<T> = anyhow::Result<T>;

/// The largest payload [`Store::announce_live`] takes: PostgreSQL's `NOTIFY`
/// refuses 8000 bytes and more.
pub const LIVE_PAYLOAD_MAX: usize = 7900;

/// What [`Store::listen_for_live`] calls with each payload heard (`None`:
/// some may have been missed).
pub type LiveListener = Box<dyn Fn(Option<&str>) + Send + Sync>;

/// What [`Store::listen_for_work`] calls with each announcement's origin
/// (`None`: some may have been missed).
pub type WorkListener = Box<dyn Fn(Option<&str>) + Send + Sync>;

/// Everything the server persists. Methods are short, synchronous and atomic.
pub trait Store: Send + Sync {
    // Repositories and deliveries.
    fn create_repo(&self, repo: &NewRepo) -> Result<Repo>;
    fn list_repos(&self) -> Result<Vec<Repo>>;
    fn get_repo(&self, id: i64) -> Result<Option<Repo>>;
    fn find_repo(&self, name: &str) -> Result<Option<Repo>>;
    fn repo_webhook_secret(&self, id: i64) -> Result<Option<String>>;
    /// Changes a repository's registration; `None` when there is no such repository.
    fn update_repo(&self, id: i64, update: &RepoUpdate) -> Result<Option<Repo>>;
    /// Removes a repository with everything kept for it (runs, jobs, logs,
    /// artifacts' rows, caches, secrets, variables, environments, forge
    /// credentials, its notification rules, deliveries and outbound log),
    /// in one transaction. `false` when there was no such repository.
    fn delete_repo(&self, id: i64) -> Result<bool>;
    /// Records a delivery and creates its runs in one transaction. Returns `None`
    /// when the delivery id was seen before (nothing is created then).
    fn record_delivery(
        &self,
        delivery_id: &str,
        repo_id: Option<i64>,
        event: &str,
        outcome: &str,
        runs: &[NewRun],
    ) -> Result<Option<Vec<i64>>>;
    fn list_deliveries(&self, limit: i64) -> Result<Vec<Delivery>>;
    /// The newest delivery id of a repository that starts with `prefix` (the
    /// local watcher's ids name the ref and commit, so this is the last commit
    /// of a ref that was seen).
    fn latest_delivery_with_prefix(&self, repo_id: i64, prefix: &str) -> Result<Option<String>>;

    // Runs, jobs and steps.
    fn create_run(&self, run: &NewRun) -> Result<i64>;
    fn get_run(&self, id: i64) -> Result<Option<Run>>;
    fn run_context(&self, id: i64) -> Result<serde_json::Value>;
    fn run_payload(&self, id: i64) -> Result<serde_json::Value>;
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    /// How many runs the filter matches (its `before` and `limit` aside).
    fn count_runs(&self, filter: &RunFilter) -> Result<i64>;
    /// Runs that are not completed, oldest first.
    fn active_runs(&self) -> Result<Vec<Run>>;
    fn set_run_status(
        &self,
        id: i64,
        status: Status,
        conclusion: Option<Conclusion>,
        waiting_reason: Option<&str>,
    ) -> Result<()>;
    fn jobs_of_run(&self, run_id: i64) -> Result<Vec<Job>>;
    /// Jobs of a run in one status (without their spec).
    fn jobs_of_run_in(&self, run_id: i64, status: Status) -> Result<Vec<Job>>;
    /// Adds jobs to a run (matrix legs known only once the needed jobs finished).
    fn add_jobs(&self, run_id: i64, jobs: &[NewJob]) -> Result<Vec<i64>>;
    fn set_job_spec(&self, job_id: i64, name: &str, spec: &serde_json::Value) -> Result<()>;
    /// A job's evaluated job-level `concurrency` group.
    fn set_job_group(&self, job_id: i64, group: Option<&str>) -> Result<()>;
    /// Jobs of any run in a concurrency group that have not completed.
    fn jobs_in_group(&self, group: &str) -> Result<Vec<Job>>;
    fn job_group(&self, job_id: i64) -> Result<Option<String>>;
    /// How many of a run's jobs are in each state, for concluding the run cheaply.
    fn job_counts(&self, run_id: i64) -> Result<JobCounts>;
    fn get_job(&self, id: i64) -> Result<Option<Job>>;
    fn update_job(&self, id: i64, update: &JobUpdate) -> Result<()>;
    fn request_cancel(&self, job_id: i64) -> Result<()>;
    /// Puts the given jobs of a run back to `waiting` for a re-run, the run's
    /// attempt counter up: each job gets `max_attempts` more claims, and its
    /// next claim is a new attempt whose steps and logs are kept apart from
    /// the earlier ones (which stay readable). Approvals of earlier attempts
    /// no longer count: a protected job asks its reviewers again.
    fn reset_jobs(&self, run_id: i64, job_ids: &[i64], max_attempts: i64) -> Result<()>;
    fn upsert_step(&self, step: &Step) -> Result<()>;
    /// Steps of one attempt of a job (`None`: its latest).
    fn steps_of_job(&self, job_id: i64, attempt: Option<i64>) -> Result<Vec<Step>>;

    // The queue.
    /// Queued jobs whose labels are all in `labels`, oldest first (read only: idle
    /// polls do not write).
    fn runnable_jobs(&self, labels: &[String], limit: i64) -> Result<Vec<Job>>;
    /// Leases one queued job to `agent` if it is still queued.
    fn claim_job(&self, job_id: i64, agent: &str, lease_ms: i64) -> Result<Option<Lease>>;
    fn heartbeat(&self, job_id: i64, fence: i64, lease_ms: i64) -> Result<LeaseCheck>;
    /// Finishes a leased job; `false` when the fence is stale.
    fn complete_job(
        &self,
        job_id: i64,
        fence: i64,
        conclusion: Conclusion,
        outputs: &serde_json::Value,
    ) -> Result<bool>;
    fn expired_leases(&self, now: Millis) -> Result<Vec<Job>>;
    /// Jobs leased to an agent id (to fail the embedded agent's jobs after a crash).
    fn jobs_leased_by_prefix(&self, owner_prefix: &str) -> Result<Vec<Job>>;
    /// Takes the lease away: back to `queued` (retry) or to `completed` with the
    /// given conclusion and reason.
    fn release_lease(&self, job_id: i64, fence: i64, requeue: bool, reason: &str) -> Result<bool>;
    fn queue_depth(&self) -> Result<i64>;

    // Logs.
    /// Stores one chunk of log lines of an attempt of a job; idempotent on
    /// (job, attempt, chunk index). Returns `false` when the chunk was already
    /// stored. Reads take the attempt too; `None` is the job's latest.
    fn append_log_chunk(
        &self,
        job_id: i64,
        attempt: i64,
        idx: i64,
        first_line: i64,
        lines: &str,
    ) -> Result<bool> {
        self.append_step_log_chunk(job_id, attempt, idx, first_line, None, lines)
    }
    /// [`Store::append_log_chunk`] for the lines of one step (`None`: lines of
    /// no step). `first_line` numbers the line in the job's whole log.
    fn append_step_log_chunk(
        &self,
        job_id: i64,
        attempt: i64,
        idx: i64,
        first_line: i64,
        step: Option<i64>,
        lines: &str,
    ) -> Result<bool>;
    /// The chunks of one step (`None`: the lines of no step), in order.
    fn log_chunks_of_step(
        &self,
        job_id: i64,
        attempt: Option<i64>,
        step: Option<i64>,
    ) -> Result<Vec<LogChunk>>;
    /// How many lines each step wrote (`None`: lines of no step), by step.
    fn log_lines_by_step(
        &self,
        job_id: i64,
        attempt: Option<i64>,
    ) -> Result<Vec<(Option<i64>, i64)>>;
    /// Chunks with index >= `from_idx`, decompressed.
    fn log_chunks(&self, job_id: i64, attempt: Option<i64>, from_idx: i64)
    -> Result<Vec<LogChunk>>;
    /// Chunks that hold any of lines `[from, to)`.
    fn log_chunks_for_lines(
        &self,
        job_id: i64,
        attempt: Option<i64>,
        from: i64,
        to: i64,
    ) -> Result<Vec<LogChunk>>;
    /// The attempts of a job that wrote logs or steps, in order.
    fn log_attempts(&self, job_id: i64) -> Result<Vec<i64>>;
    /// (number of chunks, number of lines).
    fn log_stats(&self, job_id: i64, attempt: Option<i64>) -> Result<(i64, i64)>;
    /// Bytes of log stored for one attempt of a job (before compression).
    fn log_bytes(&self, job_id: i64, attempt: i64) -> Result<i64>;

    // Secrets, variables, environments.
    fn set_secret(&self, repo_id: Option<i64>, name: &str, value: &str) -> Result<()>;
    fn delete_secret(&self, repo_id: Option<i64>, name: &str) -> Result<bool>;
    fn secret_names(&self, repo_id: Option<i64>) -> Result<Vec<String>>;
    /// Global secrets overlaid with the repository's, decrypted.
    fn secrets_for_repo(&self, repo_id: i64) -> Result<BTreeMap<String, String>>;
    fn set_variable(&self, repo_id: Option<i64>, name: &str, value: &str) -> Result<()>;
    fn variables_for_repo(&self, repo_id: i64) -> Result<BTreeMap<String, String>>;
    /// Names of the variables of a repository (`None`: the server's) at an
    /// environment (`""`: the repository's own level).
    fn variable_names(&self, repo_id: Option<i64>, env: &str) -> Result<Vec<String>>;
    fn delete_variable(&self, repo_id: Option<i64>, env: &str, name: &str) -> Result<bool>;
    /// Environment names are compared without case, as GitHub compares them.
    fn set_environment(&self, repo_id: i64, name: &str, protection: &Protection) -> Result<()>;
    fn get_environment(&self, repo_id: i64, name: &str) -> Result<Option<Protection>>;
    /// Secrets of one environment of a repository (GitHub's third level).
    fn set_env_secret(&self, repo_id: i64, env: &str, name: &str, value: &str) -> Result<()>;
    fn delete_env_secret(&self, repo_id: i64, env: &str, name: &str) -> Result<bool>;
    fn env_secret_names(&self, repo_id: i64, env: &str) -> Result<Vec<String>>;
    /// One environment's secrets, decrypted; with `None`, every environment's,
    /// keyed `environment/NAME` (what the log masker must know).
    fn env_secrets(&self, repo_id: i64, env: Option<&str>) -> Result<BTreeMap<String, String>>;
    fn set_env_variable(&self, repo_id: i64, env: &str, name: &str, value: &str) -> Result<()>;
    fn env_variables(&self, repo_id: i64, env: &str) -> Result<BTreeMap<String, String>>;
    /// Records that the repository's protection rules were read (from its hangar.yml).
    fn set_environments_loaded(&self, repo_id: i64) -> Result<()>;
    fn environments_loaded(&self, repo_id: i64) -> Result<bool>;
    /// "Approve and run": `none`, `first-time` or `untrusted`. `false` for an unknown repository.
    fn set_approval_policy(&self, repo_id: i64, policy: &str) -> Result<bool>;
    fn approval_policy(&self, repo_id: i64) -> Result<String>;
    /// A held run leases no job until someone approves it.
    fn set_run_held(&self, run_id: i64, held: bool) -> Result<()>;
    fn run_held(&self, run_id: i64) -> Result<bool>;

    // Approvals and deployments.
    fn create_approval(&self, job_id: i64, run_id: i64, environment: &str) -> Result<i64>;
    /// Settles a run's pending approvals as `cancelled` (the run was cancelled:
    /// nothing is left to approve). Returns how many were pending.
    fn expire_approvals(&self, run_id: i64, reason: &str) -> Result<usize>;
    fn decide_approval(
        &self,
        id: i64,
        approve: bool,
        reviewer: &str,
        comment: &str,
    ) -> Result<Option<Approval>>;
    fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>>;
    /// Approvals of a job in its run's current attempt.
    fn approvals_of_job(&self, job_id: i64) -> Result<Vec<Approval>>;
    fn record_deployment(
        &self,
        run_id: i64,
        job_id: i64,
        environment: &str,
        sha: &str,
        status: Conclusion,
    ) -> Result<i64>;
    fn list_deployments(&self, environment: Option<&str>) -> Result<Vec<Deployment>>;

    // Agents and tokens.
    fn upsert_agent(&self, agent: &Agent) -> Result<()>;
    fn list_agents(&self) -> Result<Vec<Agent>>;
    /// Drains an agent (no new jobs) or puts it back in service; `false` when unknown.
    fn set_agent_drained(&self, id: &str, drained: bool) -> Result<bool>;
    /// Whether the agent is given no new job: drained, or unknown (removed).
    fn agent_drained(&self, id: &str) -> Result<bool>;
    /// Forgets an agent; `false` when unknown.
    fn delete_agent(&self, id: &str) -> Result<bool>;
    /// Registers an agent (its row, `agent.token_id` naming the token that
    /// registered it) with a new credential of which only the hash is kept;
    /// returns the credential's plaintext, the only time it exists. `None`
    /// when the id is taken.
    fn register_agent(&self, agent: &Agent) -> Result<Option<String>>;
    /// The registered agent a credential belongs to, with the token that
    /// registered it (`None` for a server's embedded agent). `None` when the
    /// credential is unknown (its agent was removed) or its token was revoked.
    fn verify_agent_credential(&self, plaintext: &str) -> Result<Option<AgentCredential>>;
    /// Records what a registered agent's poll says (name, labels, capacity,
    /// `last_seen`); `false` when it is not registered (removed): a poll never
    /// creates an agent.
    fn touch_agent(&self, agent: &Agent) -> Result<bool>;
    /// Removes an agent and its credential; the row as it was, `None` when unknown.
    fn remove_agent(&self, id: &str) -> Result<Option<Agent>>;
    /// Marks a single-use token used; `true` the first time only, so two
    /// registrations racing with one token get one agent.
    fn use_token_once(&self, id: i64) -> Result<bool>;
    /// Creates a token and returns its plaintext, the only time it exists.
    fn create_token(&self, name: &str, role: Role) -> Result<String>;
    /// Creates a token that stops authenticating at `expires_at`; returns its id and plaintext.
    fn create_token_expiring(
        &self,
        name: &str,
        role: Role,
        expires_at: Option<Millis>,
    ) -> Result<(i64, String)> {
        self.create_token_scoped(name, role, expires_at, &TokenScope::default())
    }
    /// As [`Store::create_token_expiring`], limited to `scope` (agent tokens).
    fn create_token_scoped(
        &self,
        name: &str,
        role: Role,
        expires_at: Option<Millis>,
        scope: &TokenScope,
    ) -> Result<(i64, String)> {
        self.create_token_with(name, role, expires_at, scope, true)
    }
    /// As [`Store::create_token_scoped`]; `reusable: false` makes a
    /// registration token that registers one agent ([`Store::use_token_once`]).
    fn create_token_with(
        &self,
        name: &str,
        role: Role,
        expires_at: Option<Millis>,
        scope: &TokenScope,
        reusable: bool,
    ) -> Result<(i64, String)>;
    /// `false` when there is no such token or it was already revoked.
    fn revoke_token(&self, id: i64) -> Result<bool>;
    /// Only tokens that are neither expired nor revoked.
    fn verify_token(&self, plaintext: &str) -> Result<Option<TokenInfo>>;
    fn list_tokens(&self) -> Result<Vec<TokenInfo>>;
    fn token_count(&self) -> Result<i64>;
    /// The schema version the database is at (the last migration applied),
    /// read from the database in one round trip: whether it answers, and
    /// whether another build migrated it past [`SCHEMA_VERSION`] since.
    fn schema_version(&self) -> Result<i64>;

    // Audit.
    fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<()>;
    fn list_audit(&self, limit: i64) -> Result<Vec<AuditEntry>>;

    // Forge credentials (the token sealed like a secret) and outbound deliveries
    // (commit statuses, notifications): what was sent where, and how it went.
    fn set_forge_credential(&self, repo_id: i64, cred: &ForgeCredential) -> Result<()>;
    fn forge_credential(&self, repo_id: i64) -> Result<Option<ForgeCredential>>;
    fn delete_forge_credential(&self, repo_id: i64) -> Result<bool>;
    /// Stores a rule with its URL and signing secret sealed; returns its id.
    fn create_notification_rule(&self, rule: &NotificationRule) -> Result<i64>;
    fn notification_rules(&self) -> Result<Vec<NotificationRule>>;
    fn delete_notification_rule(&self, id: i64) -> Result<bool>;
    fn record_outbound(&self, delivery: &NewOutbound) -> Result<i64>;
    /// Newest first; `kind` `None` lists every kind.
    fn list_outbound(&self, kind: Option<&str>, limit: i64) -> Result<Vec<Outbound>>;

    // Delivery operations (deployments the server runs for clients) and the
    // `on: workflow_run` queue: what a server waits for survives its restart.
    /// Stores a new operation; returns its id (ids start at 1 and are never reused).
    fn create_operation(
        &self,
        project: &str,
        environment: &str,
        request: &serde_json::Value,
        state: &serde_json::Value,
        phase: OperationPhase,
    ) -> Result<i64>;
    fn get_operation(&self, id: i64) -> Result<Option<DeliveryOperation>>;
    /// Replaces an operation's state and phase if it is still at `version`
    /// (the one its writer read), and moves its version on: one conditional
    /// update, so of two writers (two servers on one database) that read the
    /// same version only one succeeds. False when another write came first,
    /// or there is no such operation.
    fn update_operation(
        &self,
        id: i64,
        version: i64,
        state: &serde_json::Value,
        phase: OperationPhase,
    ) -> Result<bool>;
    /// Deletes the operations that are done (carried out, failed, rejected)
    /// and last changed before `before`; how many.
    fn delete_operations_done_before(&self, before: Millis) -> Result<i64>;
    /// The operations in `phase`, oldest first.
    fn operations_in(&self, phase: OperationPhase) -> Result<Vec<DeliveryOperation>>;
    /// Queues a run's `workflow_run` action (`requested`, `completed`).
    fn queue_workflow_run(&self, run_id: i64, action: &str) -> Result<i64>;
    /// The oldest queued actions due at `now` (not put off past it), at most `limit`.
    fn queued_workflow_runs(&self, now: Millis, limit: i64) -> Result<Vec<QueuedWorkflowRun>>;
    /// Counts a failed attempt and puts the action off until `not_before`.
    fn retry_workflow_run(&self, id: i64, not_before: Millis) -> Result<()>;
    /// Removes a queued action once its followers were looked for.
    fn dequeue_workflow_run(&self, id: i64) -> Result<()>;

    // Deployments of the watched projects' environments: their controllers'
    // histories (files, so the CLI works with no server) read into the store,
    // which is what the server's metrics, API and page read.
    /// Stores each record once per (project, environment, record id,
    /// service): a record seen again unchanged writes nothing; changed (a
    /// controller recorded how an interrupted deployment ended) it replaces
    /// the stored one. Returns how many rows were added or changed.
    fn put_env_deployments(&self, rows: &[EnvDeployment]) -> Result<usize>;
    /// Oldest first (by record id, then service).
    fn env_deployments(&self, filter: &EnvDeploymentFilter) -> Result<Vec<EnvDeployment>>;
    /// The environments a project has deployments in, sorted.
    fn env_deployment_environments(&self, project: &str) -> Result<Vec<String>>;

    // Retention: what may expire, and deleting it.
    /// Every completed run's logs, every artifact and every cache entry with its size.
    fn retention_items(&self) -> Result<Vec<RetentionItem>>;
    /// Deletes a run's logs (every attempt of every job); the bytes freed.
    fn delete_run_logs(&self, run_id: i64) -> Result<i64>;
    /// Deletes an artifact, and its blob when no other artifact shares it.
    fn delete_artifact(&self, id: i64) -> Result<()>;

    // Artifacts and caches (blobs on disk, content-addressed).
    fn put_blob(&self, bytes: &[u8]) -> Result<String>;
    fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>>;
    fn create_artifact(&self, run_id: i64, name: &str, digest: &str, size: i64) -> Result<i64>;
    fn list_artifacts(&self, run_id: i64) -> Result<Vec<Artifact>>;
    fn put_cache(&self, repo_id: i64, key: &str, digest: &str, size: i64) -> Result<()>;
    /// Exact key first, then the newest entry whose key starts with `prefix`.
    fn find_cache(
        &self,
        repo_id: i64,
        key: &str,
        prefixes: &[String],
    ) -> Result<Option<CacheEntry>>;

    // GitHub's cache service entries (their bytes are files under `blob_root`).
    /// `false` when an entry with the same (repository, scope, version, key) exists.
    fn insert_results_cache(&self, entry: &ResultsCacheRow) -> Result<bool>;
    /// Every entry, or those of one repository.
    fn results_caches(&self, repository: Option<&str>) -> Result<Vec<ResultsCacheRow>>;
    fn touch_results_cache(&self, id: i64, at: Millis) -> Result<()>;
    fn delete_results_cache(&self, id: i64) -> Result<()>;
    /// The directory of the store's blob files.
    fn blob_root(&self) -> &Path;

    /// Consistent online copy of the database to `dest` (a new file).
    fn backup_to(&self, dest: &Path) -> Result<()>;

    // Wake-ups across servers sharing one database.
    /// Tells every server listening on this database that jobs were queued
    /// by `origin` (PostgreSQL: `NOTIFY` with `origin` as its payload, so
    /// the announcing server can tell its own announcement from the others').
    /// A store only one server uses has no one to tell.
    fn announce_work(&self, origin: &str) -> Result<()> {
        let _ = origin;
        Ok(())
    }
    /// Calls `wake` whenever any server announces work, with its `origin`
    /// (`None` after a lost listening connection is back, as announcements
    /// may have been missed).
    /// `false`: this store has no other servers to hear from (SQLite).
    fn listen_for_work(&self, wake: WorkListener) -> Result<bool> {
        drop(wake);
        Ok(false)
    }
    /// Hands `payload` (at most [`LIVE_PAYLOAD_MAX`] bytes) to every server
    /// listening for live events on this database (PostgreSQL: `NOTIFY` on
    /// `hangar_live`, delivered when the statement commits). A store only one
    /// server uses has no one to tell.
    fn announce_live(&self, payload: &str) -> Result<()> {
        let _ = payload;
        Ok(())
    }
    /// Calls `heard` with each payload another server (or this one) announced
    /// with [`Store::announce_live`], and with `None` after a lost listening
    /// connection is back (announcements may have been missed).
    /// `false`: this store has no other servers to hear from (SQLite).
    fn listen_for_live(&self, heard: LiveListener) -> Result<bool> {
        drop(heard);
        Ok(false)
    }
    /// Marks `id` (a server's embedded agent) as alive for as long as this
    /// process runs (PostgreSQL: an advisory lock held by a connection of its
    /// own, taken again if that connection is lost).
    fn hold_presence(&self, id: &str) -> Result<()> {
        let _ = id;
        Ok(())
    }
    /// Whether another process holds `id`'s presence. A store only one server
    /// uses answers `false`: any other embedded agent died with its process.
    fn present(&self, id: &str) -> Result<bool> {
        let _ = id;
        Ok(false)
    }
    /// Whether this process leads `role` now (the periodic work: one of the
    /// servers on a database does it). PostgreSQL: an advisory lock that a
    /// task of this process waits for and holds; another server takes over
    /// when the leader's connection is gone. The first call starts waiting
    /// and answers `false`. A store only one server uses always leads.
    fn leads(&self, role: &str) -> Result<bool> {
        let _ = role;
        Ok(true)
    }
    /// Why the database cannot be reached now, while it cannot (PostgreSQL:
    /// a connection could not be opened, or one was lost, and no new one has
    /// been opened since). Calls made meanwhile fail at once with
    /// [`Unavailable`] instead of waiting on a dead network. A store in a file
    /// of this machine is always reachable: `None`.
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// The schema version this build migrates a database to (its last migration).
pub const SCHEMA_VERSION: i64 = migrations::MIGRATIONS.len() as i64;

/// The error of a call made while the database cannot be reached (see
/// [`Store::unavailable`]): the server answers it with 503, not 500.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Opens (creating when needed) the default store under `data_dir`.
pub fn open(data_dir: &Path) -> Result<sqlite::SqliteStore> {
    sqlite::SqliteStore::open(data_dir)
}

/// Opens the store a server is configured with: PostgreSQL for a
/// `postgres://` (or `postgresql://`) URL, else SQLite in `data_dir`. Either
/// way the key file and the blobs are in `data_dir`.
pub fn open_database(data_dir: &Path, database: Option<&str>) -> Result<Arc<dyn Store>> {
    match database.map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(Arc::new(open(data_dir)?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = postgres::PgStore::open(url, data_dir).map_err(|e| {
                anyhow::anyhow!("opening the database {}: {e:#}", database_label(url))
            })?;
            Ok(Arc::new(store))
        }
        Some(other) => anyhow::bail!(
            "unsupported database `{}`: give a postgres://USER@HOST:PORT/DATABASE URL, \
             or leave --database and HANGAR_DATABASE_URL unset for SQLite in the data directory",
            database_label(other)
        ),
    }
}

/// A database URL fit for logs and errors: the password left out.
pub fn database_label(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, host) = match rest.rsplit_once('@') {
                Some((auth, host)) => (Some(auth), host),
                None => (None, rest),
            };
            let user = auth.map(|a| a.split(':').next().unwrap_or(""));
            match user {
                Some(u) => format!("{scheme}://{u}@{host}"),
                None => format!("{scheme}://{host}"),
            }
        }
        None => "(not a URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_logged_without_their_password() {
        assert_eq!(
            database_label("postgres://ci:s3cret@db.internal:5432/hangar"), // hangar:allow (a fake credential for the test)
            "postgres://ci@db.internal:5432/hangar"
        );
        assert_eq!(
            database_label("postgres://db/hangar"),
            "postgres://db/hangar"
        );
        assert_eq!(database_label("hangar.db"), "(not a URL)");
    }

    #[test]
    fn an_unknown_database_scheme_is_refused_with_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            open_database(dir.path(), Some("mysql://u:pw@h/db"))
                .err()
                .unwrap()
        );
        assert!(
            err.contains("mysql://u@h/db") && err.contains("postgres://"),
            "{err}"
        );
        assert!(!err.contains("pw"), "{err}");
        // Unset or empty: SQLite in the data directory.
        open_database(dir.path(), Some(" ")).unwrap();
        assert!(dir.path().join("hangar.db").exists());
    }
}
