//! The PostgreSQL implementation of [`Store`], for a team whose server state
//! outgrows one machine: several `hangar serve` processes can share one database.
//!
//! ## Why `tokio-postgres` driven from a blocking call, and not the `postgres` crate
//! The [`Store`] trait is synchronous and the server calls it from inside its
//! async handlers (as it does with SQLite behind a mutex). The synchronous
//! `postgres` crate runs a tokio runtime per connection and `block_on`s it, which
//! panics on a thread that already drives a runtime. So the connections' I/O runs
//! on one small runtime of this module's own (a thread), and a call waits for its
//! answer by parking the calling thread ([`block_on`]), which is legal anywhere.
//! TLS is rustls's, with libpq's `sslmode` and `sslrootcert` (`pgtls.rs`).
//!
//! ## What lives where
//! Rows (runs, jobs, steps, log chunks LZ4-compressed as in SQLite, secrets sealed
//! with the same key file) are in PostgreSQL. Blobs (artifacts, caches) stay files
//! under `DATA/blobs`, content-addressed: several servers share them through one
//! shared directory (NFS or a volume), which keeps large bytes out of the database
//! and its backups. Every server needs the same `secret.key` in its data directory.
//!
//! ## The queue
//! A claim is one statement: the row is locked with `FOR UPDATE SKIP LOCKED`, so
//! two servers claiming the same job never wait on each other (one wins, the other
//! sees nothing to claim), and the claimed job comes back with `RETURNING`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::blobs::BlobDir;
use crate::crypto::{SecretBox, random_credential, random_token, sha256_hex};
use crate::migrations::MIGRATIONS;
use crate::model::*;
use crate::pgtls::Target;
use crate::{Result, Store};

/// Connections kept per store. Each call holds one for its few statements only.
const POOL_SIZE: usize = 8;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection idle this long is probed by TCP keepalives...
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// ...every this often...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// ...and this many unanswered probes end it: a dead peer is found in 8 s.
const KEEPALIVE_RETRIES: u32 = 3;

/// The channel on which servers announce queued jobs to each other.
const WORK_CHANNEL: &str = "hangar_work";

/// The channel on which servers relay live events (job, step and log changes)
/// to the browsers connected to the other servers.
const LIVE_CHANNEL: &str = "hangar_live";

/// The advisory lock key under which servers starting at once migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6861_6e67_6172; // "hangar"

type Param<'a> = &'a (dyn ToSql + Sync);

/// Waits for `f` on the calling thread. The connection's socket is served by the
/// module's runtime; the futures polled here only exchange messages with it.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The runtime that serves every PostgreSQL connection of the process.
fn runtime() -> Result<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the PostgreSQL connections' runtime")?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("hangar-postgres".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))
        .context("starting the PostgreSQL connections' thread")?;
    Ok(HANDLE.get_or_init(|| handle))
}

/// Requests sent to PostgreSQL by this process (each a round trip), for the
/// queue benchmark's "round trips per job".
static ROUND_TRIPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Round trips to PostgreSQL made by this process so far.
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed)
}

fn trip() {
    ROUND_TRIPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// One connection and its prepared statements (a statement is prepared once per
/// connection: each later call is one round trip).
pub(crate) struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

fn db_err(sql: &str) -> impl FnOnce(tokio_postgres::Error) -> anyhow::Error + '_ {
    move |e| {
        let detail = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        let head: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let head: String = head.chars().take(80).collect();
        anyhow!("PostgreSQL: {detail} (in `{head}`)")
    }
}

impl PgConn {
    pub(crate) fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        trip();
        let s = block_on(self.client.prepare(sql)).map_err(db_err(sql))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        let s = self.statement(sql)?;
        trip();
        block_on(self.client.query(&s, params)).map_err(db_err(sql))
    }

    pub(crate) fn query_opt(&mut self, sql: &str, params: &[Param]) -> Result<Option<Row>> {
        let s = self.statement(sql)?;
        trip();
        block_on(self.client.query_opt(&s, params)).map_err(db_err(sql))
    }

    pub(crate) fn query_one(&mut self, sql: &str, params: &[Param]) -> Result<Row> {
        let s = self.statement(sql)?;
        trip();
        block_on(self.client.query_one(&s, params)).map_err(db_err(sql))
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        let s = self.statement(sql)?;
        trip();
        block_on(self.client.execute(&s, params)).map_err(db_err(sql))
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        trip();
        block_on(self.client.batch_execute(sql)).map_err(db_err(sql))
    }
}

struct PoolState {
    idle: Vec<PgConn>,
    open: usize,
    /// While the database cannot be reached: since when and why. Every
    /// idle connection was dropped then; a new one is tried at most once per
    /// [`PROBE_EVERY`], by one caller, and the others are refused at once.
    down: Option<Down>,
}

struct Down {
    since: Instant,
    why: String,
    next_probe: Instant,
    probing: bool,
}

/// How often a store that lost its database tries to connect again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long a caller waits for one of the pool's connections to be free
/// before it is told the database is too slow or unreachable.
const POOL_WAIT: Duration = Duration::from_secs(15);

/// A small pool written here rather than `r2d2`: a vector of idle connections,
/// a count of open ones and a condition variable to wait for one.
struct Pool {
    target: Target,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<PgConn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn
            .as_ref()
            .expect("a pooled connection until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn
            .as_mut()
            .expect("a pooled connection until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.put_back(c);
        }
    }
}

impl Pool {
    fn connect(&self) -> Result<PgConn> {
        let target = self.target.clone();
        let handle = runtime()?;
        let client = block_on(handle.spawn(async move {
            let (client, connection) = target.connect().await?;
            // The connection ends when its client is dropped or the server goes away;
            // the client then reports `is_closed` and the pool drops it.
            tokio::spawn(connection);
            Ok::<_, anyhow::Error>(client)
        }))
        .context("the PostgreSQL connection task stopped")??;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Takes back a connection after use. One that ended (the server closed
    /// it, or the network dropped it and its keepalive or write timeout
    /// noticed) is forgotten, and the pool counts the database as lost until
    /// a new connection opens: the others were opened the same way and are
    /// likely as dead, so waiting on each in turn would cost every caller a
    /// timeout.
    fn put_back(&self, c: PgConn) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if c.client.is_closed() {
            state.open -= 1;
            Self::mark_down(
                &mut state,
                "the connection to PostgreSQL was lost",
                Instant::now(),
            );
            self.freed.notify_all();
        } else {
            state.idle.push(c);
            self.freed.notify_one();
        }
    }

    /// Forgets a connection in an unknown state (a transaction that could
    /// not be rolled back).
    fn forget(&self, c: PgConn) {
        let closed = c.client.is_closed();
        drop(c);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.open -= 1;
        if closed {
            Self::mark_down(
                &mut state,
                "the connection to PostgreSQL was lost",
                Instant::now(),
            );
        }
        self.freed.notify_all();
    }

    /// Counts the database as lost (keeping the first loss's time), drops the
    /// idle connections, and lets the next caller after `next_probe` try a
    /// new one.
    fn mark_down(state: &mut PoolState, why: &str, next_probe: Instant) {
        state.open -= state.idle.len();
        state.idle.clear();
        match &mut state.down {
            Some(d) => {
                d.why = why.to_string();
                d.next_probe = d.next_probe.max(next_probe);
            }
            None => {
                state.down = Some(Down {
                    since: Instant::now(),
                    why: why.to_string(),
                    next_probe,
                    probing: false,
                })
            }
        }
    }

    fn unavailable(state: &PoolState) -> Option<String> {
        state.down.as_ref().map(|d| {
            format!(
                "the database has been unreachable for {} s ({}); this server \
                 answers again as soon as it can connect: retry, or send the \
                 request to another server",
                d.since.elapsed().as_secs(),
                d.why
            )
        })
    }

    fn get(&self) -> Result<Pooled<'_>> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(d) = &mut state.down {
                // One caller at a time tries a new connection, at most once
                // per PROBE_EVERY; the others are refused at once.
                if d.probing || Instant::now() < d.next_probe {
                    let why = Self::unavailable(&state).unwrap_or_default();
                    return Err(crate::Unavailable(why).into());
                }
                d.probing = true;
                state.open += 1;
                drop(state);
                let tried = self.connect();
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                return match tried {
                    Ok(c) => {
                        state.down = None;
                        Ok(Pooled {
                            pool: self,
                            conn: Some(c),
                        })
                    }
                    Err(e) => {
                        state.open -= 1;
                        let why = format!("{e:#}");
                        Self::mark_down(&mut state, &why, Instant::now() + PROBE_EVERY);
                        if let Some(d) = &mut state.down {
                            d.probing = false;
                        }
                        let why = Self::unavailable(&state).unwrap_or_default();
                        Err(crate::Unavailable(why).into())
                    }
                };
            }
            if let Some(c) = state.idle.pop() {
                if c.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    conn: Some(c),
                });
            }
            if state.open < POOL_SIZE {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(c) => Ok(Pooled {
                        pool: self,
                        conn: Some(c),
                    }),
                    Err(e) => {
                        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        state.open -= 1;
                        let why = format!("{e:#}");
                        Self::mark_down(&mut state, &why, Instant::now() + PROBE_EVERY);
                        self.freed.notify_all();
                        Err(crate::Unavailable(Self::unavailable(&state).unwrap_or(why)).into())
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(crate::Unavailable(format!(
                    "all {POOL_SIZE} connections to PostgreSQL stayed busy for {} s; \
                     the database is overloaded or unreachable",
                    POOL_WAIT.as_secs()
                ))
                .into());
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

pub struct PgStore {
    pool: Pool,
    /// Roles this process asked to lead, and whether it leads each now.
    leaders: Mutex<HashMap<String, Arc<std::sync::atomic::AtomicBool>>>,
    secrets: SecretBox,
    blobs: BlobDir,
}

const JOB_COLS: &str = "id, run_id, key, name, needs, labels, status, conclusion, waiting_reason, \
    environment, outputs, lease_owner, lease_expires_at, fence, attempt, max_attempts, \
    cancel_requested, approved, not_before, created_at, started_at, finished_at, continue_on_error, spec";

const RUN_COLS: &str = "id, repo_id, workflow_path, workflow_name, event, git_ref, sha, status, \
    conclusion, waiting_reason, concurrency_group, cancel_in_progress, attempt, created_at, \
    started_at, finished_at, actor, run_number";

const REPO_COLS: &str = "id, name, clone_url, forge, webhook_secret, created_at, public";

const APPROVAL_COLS: &str =
    "id, job_id, run_id, environment, state, reviewer, comment, created_at, decided_at";

/// A column by name, with the column named in the error.
/// The columns of a token as [`token_row`] reads them: from `api_tokens`, and
/// as `verify_agent_credential` names them in its join.
const TOKEN_COLUMNS: [&str; 9] = [
    "id",
    "name",
    "role",
    "created_at",
    "expires_at",
    "revoked_at",
    "scope",
    "reusable",
    "used_at",
];
const JOINED_TOKEN_COLUMNS: [&str; 9] = [
    "t_id",
    "t_name",
    "t_role",
    "t_created_at",
    "t_expires_at",
    "t_revoked_at",
    "t_scope",
    "t_reusable",
    "t_used_at",
];

/// A token's `id, name, role, created_at, expires_at, revoked_at, scope,
/// reusable, used_at`, read from the columns `names` gives them.
fn token_row(r: &Row, names: &[&str; 9]) -> Result<TokenRow> {
    Ok(TokenRow {
        id: col(r, names[0])?,
        name: col(r, names[1])?,
        role: col(r, names[2])?,
        created_at: col(r, names[3])?,
        expires_at: col(r, names[4])?,
        revoked_at: col(r, names[5])?,
        scope: col(r, names[6])?,
        reusable: col(r, names[7])?,
        used_at: col(r, names[8])?,
    })
}

fn col<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, name: &str) -> Result<T> {
    r.try_get(name)
        .map_err(|e| anyhow!("reading column `{name}`: {}", error_chain(&e)))
}

/// A status, conclusion or approval state read from its column: an unknown name
/// is an error (a corrupt row, or a database written by a newer hangar).
fn named<T: std::str::FromStr<Err = UnknownName>>(r: &Row, name: &str) -> Result<T> {
    let text: String = col(r, name)?;
    text.parse()
        .map_err(|e: UnknownName| anyhow!("column `{name}`: {e}"))
}

fn named_opt<T: std::str::FromStr<Err = UnknownName>>(r: &Row, name: &str) -> Result<Option<T>> {
    let text: Option<String> = col(r, name)?;
    text.map(|t| {
        t.parse()
            .map_err(|e: UnknownName| anyhow!("column `{name}`: {e}"))
    })
    .transpose()
}

fn json_list(r: &Row, name: &str) -> Result<Vec<String>> {
    Ok(serde_json::from_str(&col::<String>(r, name)?).unwrap_or_default())
}

fn json_value(r: &Row, name: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&col::<String>(r, name)?).unwrap_or_default())
}

fn job_from_row(r: &Row) -> Result<Job> {
    Ok(Job {
        id: col(r, "id")?,
        run_id: col(r, "run_id")?,
        key: col(r, "key")?,
        name: col(r, "name")?,
        needs: json_list(r, "needs")?,
        labels: json_list(r, "labels")?,
        status: named(r, "status")?,
        conclusion: named_opt(r, "conclusion")?,
        waiting_reason: col(r, "waiting_reason")?,
        environment: col(r, "environment")?,
        outputs: json_value(r, "outputs")?,
        lease_owner: col(r, "lease_owner")?,
        lease_expires_at: col(r, "lease_expires_at")?,
        fence: col(r, "fence")?,
        attempt: col(r, "attempt")?,
        max_attempts: col(r, "max_attempts")?,
        cancel_requested: col(r, "cancel_requested")?,
        approved: col(r, "approved")?,
        not_before: col(r, "not_before")?,
        created_at: col(r, "created_at")?,
        started_at: col(r, "started_at")?,
        finished_at: col(r, "finished_at")?,
        continue_on_error: col(r, "continue_on_error")?,
        spec: json_value(r, "spec")?,
    })
}

fn run_from_row(r: &Row) -> Result<Run> {
    Ok(Run {
        id: col(r, "id")?,
        repo_id: col(r, "repo_id")?,
        workflow_path: col(r, "workflow_path")?,
        workflow_name: col(r, "workflow_name")?,
        event: col(r, "event")?,
        git_ref: col(r, "git_ref")?,
        sha: col(r, "sha")?,
        status: named(r, "status")?,
        conclusion: named_opt(r, "conclusion")?,
        waiting_reason: col(r, "waiting_reason")?,
        concurrency_group: col(r, "concurrency_group")?,
        cancel_in_progress: col(r, "cancel_in_progress")?,
        attempt: col(r, "attempt")?,
        created_at: col(r, "created_at")?,
        started_at: col(r, "started_at")?,
        finished_at: col(r, "finished_at")?,
        actor: col(r, "actor")?,
        run_number: col(r, "run_number")?,
    })
}

fn repo_from_row(r: &Row) -> Result<Repo> {
    Ok(Repo {
        id: col(r, "id")?,
        name: col(r, "name")?,
        clone_url: col(r, "clone_url")?,
        forge: col(r, "forge")?,
        has_webhook_secret: col::<Option<Vec<u8>>>(r, "webhook_secret")?.is_some(),
        created_at: col(r, "created_at")?,
        public: col(r, "public")?,
    })
}

fn approval_from_row(r: &Row) -> Result<Approval> {
    Ok(Approval {
        id: col(r, "id")?,
        job_id: col(r, "job_id")?,
        run_id: col(r, "run_id")?,
        environment: col(r, "environment")?,
        state: named(r, "state")?,
        reviewer: col(r, "reviewer")?,
        comment: col(r, "comment")?,
        created_at: col(r, "created_at")?,
        decided_at: col(r, "decided_at")?,
    })
}

fn chunk_from_row(r: &Row) -> Result<LogChunk> {
    Ok(LogChunk {
        idx: col(r, "idx")?,
        first_line: col(r, "first_line")?,
        line_count: col(r, "line_count")?,
        step: col(r, "step")?,
        data: decompress(&col::<Vec<u8>>(r, "data")?),
    })
}

fn rows<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

fn compress(lines: &str) -> Vec<u8> {
    lz4_flex::compress_prepend_size(lines.as_bytes())
}

fn decompress(data: &[u8]) -> Vec<u8> {
    lz4_flex::decompress_size_prepended(data).unwrap_or_else(|_| b"<corrupt log chunk>\n".to_vec())
}

const INSERT_JOB: &str = "INSERT INTO jobs (run_id, key, name, needs, labels, status, waiting_reason, \
    environment, spec, max_attempts, created_at) VALUES ($1, $2, $3, $4, $5, 'waiting', \
    'waiting for the scheduler', $6, $7, $8, $9) RETURNING id";

fn insert_jobs(c: &mut PgConn, run_id: i64, jobs: &[NewJob]) -> Result<Vec<i64>> {
    let now = now_ms();
    let mut ids = Vec::with_capacity(jobs.len());
    for job in jobs {
        let needs = serde_json::to_string(&job.needs)?;
        let labels = serde_json::to_string(&job.labels)?;
        let spec = job.spec.to_string();
        let max = job.max_attempts.max(1);
        let row = c.query_one(
            INSERT_JOB,
            &[
                &run_id,
                &job.key,
                &job.name,
                &needs,
                &labels,
                &job.environment,
                &spec,
                &max,
                &now,
            ],
        )?;
        ids.push(col(&row, "id")?);
    }
    Ok(ids)
}

/// Inserts a run and its jobs; the caller holds a transaction.
fn insert_run(c: &mut PgConn, run: &NewRun) -> Result<i64> {
    // `run_number` is the workflow's count so far: servers inserting runs of one
    // repository at once take turns (SQLite has one writer; PostgreSQL needs this).
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtext('hangar.run_number'), $1::bigint::int4)",
        &[&(run.repo_id % i64::from(i32::MAX))],
    )?;
    let now = now_ms();
    let payload = run.payload.to_string();
    let context = run.context.to_string();
    let row = c.query_one(
        "INSERT INTO runs (repo_id, workflow_path, workflow_name, event, git_ref, sha, status, \
         concurrency_group, cancel_in_progress, payload, context, actor, created_at, run_number) \
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9, $10, $11, $12, \
         (SELECT COALESCE(max(run_number), 0) + 1 FROM runs WHERE repo_id = $1 AND workflow_path = $2)) \
         RETURNING id",
        &[
            &run.repo_id,
            &run.workflow_path,
            &run.workflow_name,
            &run.event,
            &run.git_ref,
            &run.sha,
            &run.concurrency_group,
            &run.cancel_in_progress,
            &payload,
            &context,
            &run.actor,
            &now,
        ],
    )?;
    let run_id: i64 = col(&row, "id")?;
    insert_jobs(c, run_id, &run.jobs)?;
    Ok(run_id)
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or a unix
    /// socket directory as `host=/path` in the query), applies the migrations this
    /// database lacks, and keeps blobs and the sealing key in `data_dir`.
    pub fn open(url: &str, data_dir: &Path) -> Result<PgStore> {
        let mut target = Target::parse(url)?;
        let config = &mut target.config;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A server cut off from the database by the network must find out in
        // seconds, not after TCP's defaults (two hours idle, fifteen minutes
        // of retransmissions): keepalives on idle connections, and a bound
        // on data left unacknowledged. Both are answered by the peer's
        // kernel, so a slow query never trips them. A URL's own settings win.
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES);
        }
        // The same on PostgreSQL's side, so the sessions of a server that
        // vanished end there too, and the advisory locks they hold (which
        // server leads the periodic work, which embedded agents are alive)
        // and their row locks pass to the other servers.
        if config.get_options().is_none() {
            config.options(format!(
                "-c tcp_keepalives_idle={} -c tcp_keepalives_interval={} \
                 -c tcp_keepalives_count={} -c tcp_user_timeout={}",
                KEEPALIVE_IDLE.as_secs(),
                KEEPALIVE_INTERVAL.as_secs(),
                KEEPALIVE_RETRIES,
                (KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES).as_millis()
            ));
        }
        if config.get_application_name().is_none() {
            config.application_name("hangar");
        }
        crate::fsmode::create_private_dir(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let pool = Pool {
            target,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                down: None,
            }),
            freed: Condvar::new(),
        };
        // The first connection is opened directly: failing here is a
        // configuration error to report as it is, not an outage to wait out.
        let mut first = pool.connect()?;
        migrate(&mut first)?;
        {
            let mut state = pool.state.lock().unwrap_or_else(|e| e.into_inner());
            state.open = 1;
            state.idle.push(first);
        }
        let secrets = SecretBox::load_or_create(&data_dir.join("secret.key"))?;
        Ok(PgStore {
            pool,
            leaders: Mutex::new(HashMap::new()),
            secrets,
            blobs: BlobDir::new(data_dir.join("blobs")),
        })
    }

    fn c(&self) -> Result<Pooled<'_>> {
        self.pool.get()
    }

    /// Listens on `channel` on a connection of its own, outside the pool. When
    /// it is lost it is opened again (after a second), and `heard(None)` is
    /// called then: what was announced meanwhile was not heard.
    fn listen(&self, channel: &'static str, heard: crate::LiveListener) -> Result<bool> {
        let target = self.pool.target.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        runtime()?.spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                // Failing before the first `LISTEN` is the caller's error; later
                // failures (the database restarting) are retried.
                if let Err(e) = listen_once(&target, channel, &*heard, &mut ready).await
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(Err(e));
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                heard(None);
            }
        });
        ready_rx
            .recv()
            .context("the PostgreSQL listener stopped before it started")??;
        Ok(true)
    }

    /// Runs `f` on one connection of the pool (the store copy's own statements).
    pub(crate) fn with_conn<T>(&self, f: impl FnOnce(&mut PgConn) -> Result<T>) -> Result<T> {
        f(&mut *self.c()?)
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    fn tx<T>(&self, f: impl FnOnce(&mut PgConn) -> Result<T>) -> Result<T> {
        let mut c = self.c()?;
        c.batch("BEGIN")?;
        match f(&mut c) {
            Ok(v) => {
                c.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                if c.batch("ROLLBACK").is_err() {
                    // A connection in an unknown state does not go back to the pool.
                    if let Some(conn) = c.conn.take() {
                        self.pool.forget(conn);
                    }
                }
                Err(e)
            }
        }
    }

    fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        self.c()?.query(sql, params)
    }

    fn query_opt(&self, sql: &str, params: &[Param]) -> Result<Option<Row>> {
        self.c()?.query_opt(sql, params)
    }

    fn query_one(&self, sql: &str, params: &[Param]) -> Result<Row> {
        self.c()?.query_one(sql, params)
    }

    fn execute(&self, sql: &str, params: &[Param]) -> Result<u64> {
        self.c()?.execute(sql, params)
    }

    fn query_jobs(&self, sql_where: &str, params: &[Param]) -> Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs {sql_where}");
        rows(self.query(&sql, params)?, job_from_row)
    }

    /// Jobs without their spec (only `get_job` hands a spec to an agent).
    fn query_jobs_light(&self, sql_where: &str, params: &[Param]) -> Result<Vec<Job>> {
        let cols = JOB_COLS.replace(", spec", ", '{}' AS spec");
        let sql = format!("SELECT {cols} FROM jobs {sql_where}");
        rows(self.query(&sql, params)?, job_from_row)
    }

    fn query_runs(&self, sql_where: &str, params: &[Param]) -> Result<Vec<Run>> {
        let sql = format!("SELECT {RUN_COLS} FROM runs {sql_where}");
        rows(self.query(&sql, params)?, run_from_row)
    }

    fn open_sealed(&self, sealed: &[u8]) -> Result<String> {
        Ok(String::from_utf8(self.secrets.open(sealed)?)?)
    }
}

/// Rows in `table` (one of the schema's, named by the caller, never by a user).
pub(crate) fn count(c: &mut PgConn, table: &str) -> Result<i64> {
    col(
        &c.query_one(&format!("SELECT count(*) AS n FROM {table}"), &[])?,
        "n",
    )
}

/// A table's columns and their types, in the table's order.
pub(crate) fn columns(c: &mut PgConn, table: &str) -> Result<Vec<(String, crate::copy::PgType)>> {
    let found = c.query(
        "SELECT column_name::text AS name, data_type::text AS ty FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )?;
    if found.is_empty() {
        anyhow::bail!("the PostgreSQL schema has no table `{table}`");
    }
    found
        .iter()
        .map(|r| {
            let name: String = col(r, "name")?;
            let ty = crate::copy::pg_type(&col::<String>(r, "ty")?)
                .with_context(|| format!("{table}.{name}"))?;
            Ok((name, ty))
        })
        .collect()
}

/// After rows were inserted with their ids, the table's identity continues past them.
pub(crate) fn advance_identity(c: &mut PgConn, table: &str) -> Result<()> {
    // Asked only where an `id` column exists: an error would abort the copy's transaction.
    let row = c.query_opt(
        "SELECT pg_get_serial_sequence($1, 'id') AS seq FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'id'",
        &[&table],
    )?;
    // No `id`, or one that is not an identity (agents, results_caches): nothing to advance.
    let Some(seq) = row
        .map(|r| col::<Option<String>>(&r, "seq"))
        .transpose()?
        .flatten()
    else {
        return Ok(());
    };
    c.batch(&format!(
        "SELECT setval('{seq}', COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
    ))
}

/// Connects, `LISTEN`s, and calls `wake` on each notification until the
/// connection ends. The first successful `LISTEN` is reported through `ready`.
async fn listen_once(
    target: &Target,
    channel: &str,
    heard: &(dyn Fn(Option<&str>) + Send + Sync),
    ready: &mut Option<std::sync::mpsc::Sender<Result<()>>>,
) -> Result<()> {
    let (client, mut connection) = target
        .connect()
        .await
        .context("opening the connection that listens for work")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection must be driven for `LISTEN` to be answered: its messages
    // are read by a task of their own, notifications passed on.
    let reader = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .map_err(|e| anyhow!("LISTEN {channel}: {}", error_chain(&e)))?;
    if let Some(tx) = ready.take() {
        let _ = tx.send(Ok(()));
    }
    while let Some(payload) = rx.recv().await {
        heard(Some(&payload));
    }
    // The reader ended: the connection is gone (the client is dropped here).
    let _ = reader.await;
    drop(client);
    Ok(())
}

/// The advisory lock key of a name (an embedded agent's presence, a role).
fn lock_key(name: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("hangar.{name}").as_bytes());
    i64::from_le_bytes(digest[..8].try_into().expect("8 bytes of a SHA-256"))
}

/// Connects, takes the advisory lock `key` (waiting for it while another
/// session holds it), calls `held`, and keeps it until the connection ends.
async fn hold_lock_once(
    target: &Target,
    key: i64,
    held: &mut (dyn FnMut(Result<()>) + Send),
) -> Result<()> {
    let (client, mut connection) = target.connect().await?;
    let reader = tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if m.is_err() {
                break;
            }
        }
    });
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .map_err(|e| anyhow!("taking an advisory lock: {}", error_chain(&e)))?;
    held(Ok(()));
    let _ = reader.await;
    drop(client);
    Ok(())
}

fn migrate(c: &mut PgConn) -> Result<()> {
    // Several servers may start at once on one database: one migrates, the
    // others wait for the lock and then find nothing left to do.
    c.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    let result = (|| -> Result<()> {
        c.batch(
            "CREATE TABLE IF NOT EXISTS hangar_schema (version BIGINT NOT NULL); \
             INSERT INTO hangar_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM hangar_schema)",
        )?;
        let version: i64 = col(
            &c.query_one("SELECT version FROM hangar_schema", &[])?,
            "version",
        )?;
        if version as usize > MIGRATIONS.len() {
            anyhow::bail!(
                "the database schema is version {version}, newer than this hangar understands ({}); upgrade hangar",
                MIGRATIONS.len()
            );
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let v = (i + 1) as i64;
            c.batch("BEGIN")?;
            let applied = (|| -> Result<()> {
                if let Some(sql) = m.postgres {
                    c.batch(sql)
                        .with_context(|| format!("applying migration {v}"))?;
                }
                c.execute("UPDATE hangar_schema SET version = $1", &[&v])?;
                Ok(())
            })();
            match applied {
                Ok(()) => c.batch("COMMIT")?,
                Err(e) => {
                    let _ = c.batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
        Ok(())
    })();
    c.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
    // Prepared statements may name tables a migration just changed.
    c.statements.clear();
    result
}

/// The `WHERE` condition of a run filter (without paging) and its values, `$1`…
/// Every parameter carries its type: PostgreSQL cannot infer one from `$n IS NULL`.
/// A run with a pending approval is `waiting` whatever its stored status (see
/// the SQLite store's filter).
fn run_filter_sql(f: &RunFilter) -> (String, Vec<Box<dyn ToSql + Sync>>) {
    let text = |o: &Option<String>| -> Option<String> {
        o.as_deref().filter(|s| !s.is_empty()).map(str::to_string)
    };
    let branch = f.branch.as_deref().filter(|b| !b.is_empty());
    let full_ref = branch.map(|b| {
        if b.starts_with("refs/") {
            b.to_string()
        } else {
            format!("refs/heads/{b}")
        }
    });
    let workflow_file = f
        .workflow
        .as_deref()
        .filter(|w| !w.is_empty() && !w.contains('/'))
        .map(|w| format!(".github/workflows/{w}"));
    // A commit prefix is matched with LIKE: its wildcards are escaped.
    let commit = f.commit.as_deref().filter(|c| !c.is_empty()).map(|c| {
        let esc = c
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{esc}%")
    });
    let values: Vec<Box<dyn ToSql + Sync>> = vec![
        Box::new(f.repo_id),
        Box::new(f.status.map(|s| s.as_str().to_string())),
        Box::new(text(&f.event)),
        Box::new(full_ref),
        Box::new(branch.map(|b| b.trim_start_matches("refs/heads/").to_string())),
        Box::new(text(&f.workflow)),
        Box::new(workflow_file),
        Box::new(f.conclusion.map(|c| c.as_str().to_string())),
        Box::new(commit),
        Box::new(text(&f.actor)),
        Box::new(f.pull_request),
    ];
    let cond = "($1::bigint IS NULL OR repo_id = $1) \
         AND ($2::text IS NULL OR ($2 = 'waiting' AND (status = 'waiting' OR (status != 'completed' \
              AND id IN (SELECT run_id FROM approvals WHERE state = 'pending')))) \
              OR ($2 != 'waiting' AND status = $2 AND NOT (status != 'completed' \
              AND id IN (SELECT run_id FROM approvals WHERE state = 'pending')))) \
         AND ($3::text IS NULL OR event = $3) \
         AND ($4::text IS NULL OR git_ref = $4 OR (payload::jsonb #>> '{pull_request,head,ref}') = $5::text) \
         AND ($6::text IS NULL OR workflow_name = $6 OR workflow_path = $6 OR workflow_path = $7::text) \
         AND ($8::text IS NULL OR conclusion = $8) AND ($9::text IS NULL OR sha LIKE $9 ESCAPE '\\') \
         AND ($10::text IS NULL OR actor = $10) \
         AND ($11::bigint IS NULL OR (payload::jsonb #>> '{pull_request,number}') = $11::text \
              OR git_ref IN ('refs/pull/' || $11::text || '/merge', 'refs/pull/' || $11::text || '/head'))"
        .to_string();
    (cond, values)
}

/// The attempt a read without one means: the job's latest (at least 1).
const LATEST_ATTEMPT: &str =
    "COALESCE($2::bigint, (SELECT GREATEST(attempt, 1) FROM jobs WHERE id = $1))";

impl Store for PgStore {
    fn create_repo(&self, repo: &NewRepo) -> Result<Repo> {
        let sealed = match &repo.webhook_secret {
            Some(s) => Some(self.secrets.seal(s.as_bytes())?),
            None => None,
        };
        let row = self.query_one(
            &format!(
                "INSERT INTO repos (name, clone_url, forge, webhook_secret, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT(name) DO UPDATE SET clone_url = excluded.clone_url, forge = excluded.forge, \
                 webhook_secret = COALESCE(excluded.webhook_secret, repos.webhook_secret) RETURNING {REPO_COLS}"
            ),
            &[&repo.name, &repo.clone_url, &repo.forge, &sealed, &now_ms()],
        )?;
        repo_from_row(&row)
    }

    fn list_repos(&self) -> Result<Vec<Repo>> {
        rows(
            self.query(&format!("SELECT {REPO_COLS} FROM repos ORDER BY id"), &[])?,
            repo_from_row,
        )
    }

    fn get_repo(&self, id: i64) -> Result<Option<Repo>> {
        self.query_opt(
            &format!("SELECT {REPO_COLS} FROM repos WHERE id = $1"),
            &[&id],
        )?
        .as_ref()
        .map(repo_from_row)
        .transpose()
    }

    fn find_repo(&self, name: &str) -> Result<Option<Repo>> {
        self.query_opt(
            &format!("SELECT {REPO_COLS} FROM repos WHERE name = $1"),
            &[&name],
        )?
        .as_ref()
        .map(repo_from_row)
        .transpose()
    }

    fn repo_webhook_secret(&self, id: i64) -> Result<Option<String>> {
        let row = self.query_opt("SELECT webhook_secret FROM repos WHERE id = $1", &[&id])?;
        match row.map(|r| col::<Option<Vec<u8>>>(&r, "webhook_secret")) {
            Some(sealed) => sealed?.map(|s| self.open_sealed(&s)).transpose(),
            None => Ok(None),
        }
    }

    fn update_repo(&self, id: i64, u: &RepoUpdate) -> Result<Option<Repo>> {
        let sealed = match &u.webhook_secret {
            Some(Some(s)) => Some(Some(self.secrets.seal(s.as_bytes())?)),
            Some(None) => Some(None),
            None => None,
        };
        // One statement: each field is kept unless given (`$6` says whether
        // the secret is being set, since NULL is a value it can be set to).
        let row = self.query_opt(
            &format!(
                "UPDATE repos SET clone_url = COALESCE($2, clone_url), forge = COALESCE($3, forge), \
                 webhook_secret = CASE WHEN $6 THEN $4 ELSE webhook_secret END, public = COALESCE($5, public) \
                 WHERE id = $1 RETURNING {REPO_COLS}"
            ),
            &[
                &id,
                &u.clone_url,
                &u.forge,
                &sealed.clone().flatten(),
                &u.public,
                &sealed.is_some(),
            ],
        )?;
        row.as_ref().map(repo_from_row).transpose()
    }

    fn delete_repo(&self, id: i64) -> Result<bool> {
        self.tx(|c| {
            let Some(row) = c.query_opt("SELECT name FROM repos WHERE id = $1", &[&id])? else {
                return Ok(false);
            };
            let name: String = col(&row, "name")?;
            // As in SQLite: children first, and nothing left for a reused id.
            let runs = "SELECT id FROM runs WHERE repo_id = $1";
            let jobs =
                "SELECT id FROM jobs WHERE run_id IN (SELECT id FROM runs WHERE repo_id = $1)";
            for sql in [
                format!("DELETE FROM steps WHERE job_id IN ({jobs})"),
                format!("DELETE FROM log_chunks WHERE job_id IN ({jobs})"),
                format!("DELETE FROM approvals WHERE run_id IN ({runs})"),
                format!("DELETE FROM deployments WHERE run_id IN ({runs})"),
                format!("DELETE FROM artifacts WHERE run_id IN ({runs})"),
                format!("DELETE FROM jobs WHERE run_id IN ({runs})"),
                "DELETE FROM runs WHERE repo_id = $1".to_string(),
                "DELETE FROM secrets WHERE repo_id = $1".to_string(),
                "DELETE FROM variables WHERE repo_id = $1".to_string(),
                "DELETE FROM environments WHERE repo_id = $1".to_string(),
                "DELETE FROM caches WHERE repo_id = $1".to_string(),
                "DELETE FROM forge_credentials WHERE repo_id = $1".to_string(),
                "DELETE FROM notification_rules WHERE repo_id = $1".to_string(),
                "DELETE FROM outbound_deliveries WHERE repo_id = $1".to_string(),
                "DELETE FROM deliveries WHERE repo_id = $1".to_string(),
                "DELETE FROM repos WHERE id = $1".to_string(),
            ] {
                c.execute(&sql, &[&id])?;
            }
            c.execute("DELETE FROM results_caches WHERE repository = $1", &[&name])?;
            Ok(true)
        })
    }

    fn record_delivery(
        &self,
        delivery_id: &str,
        repo_id: Option<i64>,
        event: &str,
        outcome: &str,
        runs: &[NewRun],
    ) -> Result<Option<Vec<i64>>> {
        self.tx(|c| {
            // Two servers handed the same delivery: the second waits on the unique
            // index until the first commits, then inserts nothing.
            let row = c.query_opt(
                "INSERT INTO deliveries (delivery_id, repo_id, event, outcome, run_ids, received_at) \
                 VALUES ($1, $2, $3, $4, '[]', $5) ON CONFLICT(delivery_id) DO NOTHING RETURNING id",
                &[&delivery_id, &repo_id, &event, &outcome, &now_ms()],
            )?;
            let Some(row) = row else {
                return Ok(None);
            };
            let id: i64 = col(&row, "id")?;
            let mut run_ids = Vec::new();
            for run in runs {
                run_ids.push(insert_run(c, run)?);
            }
            c.execute(
                "UPDATE deliveries SET run_ids = $1 WHERE id = $2",
                &[&serde_json::to_string(&run_ids)?, &id],
            )?;
            Ok(Some(run_ids))
        })
    }

    fn list_deliveries(&self, limit: i64) -> Result<Vec<Delivery>> {
        rows(
            self.query(
                "SELECT id, delivery_id, repo_id, event, outcome, run_ids, received_at FROM deliveries \
                 ORDER BY id DESC LIMIT $1",
                &[&limit],
            )?,
            |r| {
                Ok(Delivery {
                    id: col(r, "id")?,
                    delivery_id: col(r, "delivery_id")?,
                    repo_id: col(r, "repo_id")?,
                    event: col(r, "event")?,
                    outcome: col(r, "outcome")?,
                    run_ids: serde_json::from_str(&col::<String>(r, "run_ids")?)
                        .unwrap_or_default(),
                    received_at: col(r, "received_at")?,
                })
            },
        )
    }

    fn latest_delivery_with_prefix(&self, repo_id: i64, prefix: &str) -> Result<Option<String>> {
        // substr, not LIKE: a ref name may hold `%` or `_`.
        self.query_opt(
            "SELECT delivery_id FROM deliveries WHERE repo_id = $1 \
             AND substr(delivery_id, 1, length($2::text)) = $2::text ORDER BY id DESC LIMIT 1",
            &[&repo_id, &prefix],
        )?
        .map(|r| col(&r, "delivery_id"))
        .transpose()
    }

    fn create_run(&self, run: &NewRun) -> Result<i64> {
        self.tx(|c| insert_run(c, run))
    }

    fn get_run(&self, id: i64) -> Result<Option<Run>> {
        Ok(self.query_runs("WHERE id = $1", &[&id])?.pop())
    }

    fn run_context(&self, id: i64) -> Result<serde_json::Value> {
        let s: String = col(
            &self.query_one("SELECT context FROM runs WHERE id = $1", &[&id])?,
            "context",
        )?;
        Ok(serde_json::from_str(&s)?)
    }

    fn run_payload(&self, id: i64) -> Result<serde_json::Value> {
        let s: String = col(
            &self.query_one("SELECT payload FROM runs WHERE id = $1", &[&id])?,
            "payload",
        )?;
        Ok(serde_json::from_str(&s)?)
    }

    fn list_runs(&self, f: &RunFilter) -> Result<Vec<Run>> {
        let (cond, mut values) = run_filter_sql(f);
        values.push(Box::new(f.before));
        values.push(Box::new(f.limit.unwrap_or(100)));
        let n = values.len();
        let params: Vec<Param> = values.iter().map(|v| &**v as Param).collect();
        self.query_runs(
            &format!(
                "WHERE {cond} AND (${b}::bigint IS NULL OR id < ${b}) ORDER BY id DESC LIMIT ${n}",
                b = n - 1
            ),
            &params,
        )
    }

    fn count_runs(&self, f: &RunFilter) -> Result<i64> {
        let (cond, values) = run_filter_sql(f);
        let params: Vec<Param> = values.iter().map(|v| &**v as Param).collect();
        col(
            &self.query_one(
                &format!("SELECT COUNT(*) AS n FROM runs WHERE {cond}"),
                &params,
            )?,
            "n",
        )
    }

    fn active_runs(&self) -> Result<Vec<Run>> {
        self.query_runs("WHERE status != 'completed' ORDER BY id", &[])
    }

    fn set_run_status(
        &self,
        id: i64,
        status: Status,
        conclusion: Option<Conclusion>,
        waiting: Option<&str>,
    ) -> Result<()> {
        self.execute(
            "UPDATE runs SET status = $2::text, conclusion = $3, waiting_reason = $4, \
             started_at = CASE WHEN $2::text = 'running' AND started_at IS NULL THEN $5 ELSE started_at END, \
             finished_at = CASE WHEN $2::text = 'completed' THEN $5 ELSE NULL END WHERE id = $1",
            &[
                &id,
                &status.as_str(),
                &conclusion.map(Conclusion::as_str),
                &waiting,
                &now_ms(),
            ],
        )?;
        Ok(())
    }

    fn jobs_of_run(&self, run_id: i64) -> Result<Vec<Job>> {
        self.query_jobs_light("WHERE run_id = $1 ORDER BY id", &[&run_id])
    }

    fn jobs_of_run_in(&self, run_id: i64, status: Status) -> Result<Vec<Job>> {
        self.query_jobs_light(
            "WHERE run_id = $1 AND status = $2 ORDER BY id",
            &[&run_id, &status.as_str()],
        )
    }

    fn add_jobs(&self, run_id: i64, jobs: &[NewJob]) -> Result<Vec<i64>> {
        self.tx(|c| insert_jobs(c, run_id, jobs))
    }

    fn set_job_spec(&self, job_id: i64, name: &str, spec: &serde_json::Value) -> Result<()> {
        self.execute(
            "UPDATE jobs SET name = $2, spec = $3 WHERE id = $1",
            &[&job_id, &name, &spec.to_string()],
        )?;
        Ok(())
    }

    fn set_job_group(&self, job_id: i64, group: Option<&str>) -> Result<()> {
        self.execute(
            "UPDATE jobs SET concurrency_group = $2 WHERE id = $1",
            &[&job_id, &group],
        )?;
        Ok(())
    }

    fn jobs_in_group(&self, group: &str) -> Result<Vec<Job>> {
        self.query_jobs_light(
            "WHERE concurrency_group = $1 AND status != 'completed' ORDER BY id",
            &[&group],
        )
    }

    fn job_group(&self, job_id: i64) -> Result<Option<String>> {
        Ok(self
            .query_opt(
                "SELECT concurrency_group FROM jobs WHERE id = $1",
                &[&job_id],
            )?
            .map(|r| col::<Option<String>>(&r, "concurrency_group"))
            .transpose()?
            .flatten())
    }

    fn job_counts(&self, run_id: i64) -> Result<JobCounts> {
        let r = self.query_one(
            "SELECT count(*) AS total, \
             count(*) FILTER (WHERE status = 'completed') AS completed, \
             count(*) FILTER (WHERE status = 'running') AS running, \
             count(*) FILTER (WHERE status = 'completed' AND conclusion = 'failure' AND NOT continue_on_error) AS failed, \
             count(*) FILTER (WHERE status = 'completed' AND conclusion = 'cancelled') AS cancelled \
             FROM jobs WHERE run_id = $1",
            &[&run_id],
        )?;
        Ok(JobCounts {
            total: col(&r, "total")?,
            completed: col(&r, "completed")?,
            running: col(&r, "running")?,
            failed: col(&r, "failed")?,
            cancelled: col(&r, "cancelled")?,
        })
    }

    fn get_job(&self, id: i64) -> Result<Option<Job>> {
        Ok(self.query_jobs("WHERE id = $1", &[&id])?.pop())
    }

    fn update_job(&self, id: i64, u: &JobUpdate) -> Result<()> {
        let mut c = self.c()?;
        if let Some(s) = &u.status {
            c.execute(
                "UPDATE jobs SET status = $2 WHERE id = $1",
                &[&id, &s.as_str()],
            )?;
        }
        if let Some(v) = &u.conclusion {
            c.execute(
                "UPDATE jobs SET conclusion = $2 WHERE id = $1",
                &[&id, &v.map(Conclusion::as_str)],
            )?;
        }
        if let Some(v) = &u.waiting_reason {
            c.execute(
                "UPDATE jobs SET waiting_reason = $2 WHERE id = $1",
                &[&id, v],
            )?;
        }
        if let Some(v) = u.approved {
            c.execute("UPDATE jobs SET approved = $2 WHERE id = $1", &[&id, &v])?;
        }
        if let Some(v) = u.not_before {
            c.execute("UPDATE jobs SET not_before = $2 WHERE id = $1", &[&id, &v])?;
        }
        if let Some(v) = u.continue_on_error {
            c.execute(
                "UPDATE jobs SET continue_on_error = $2 WHERE id = $1",
                &[&id, &v],
            )?;
        }
        if let Some(v) = u.finished_at {
            c.execute(
                "UPDATE jobs SET finished_at = $2, lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
                &[&id, &v],
            )?;
        }
        if let Some(v) = &u.environment {
            c.execute("UPDATE jobs SET environment = $2 WHERE id = $1", &[&id, v])?;
        }
        if let Some(v) = &u.outputs {
            c.execute(
                "UPDATE jobs SET outputs = $2 WHERE id = $1",
                &[&id, &v.to_string()],
            )?;
        }
        if let Some(v) = &u.labels {
            c.execute(
                "UPDATE jobs SET labels = $2 WHERE id = $1",
                &[&id, &serde_json::to_string(v)?],
            )?;
        }
        Ok(())
    }

    fn request_cancel(&self, job_id: i64) -> Result<()> {
        self.execute(
            "UPDATE jobs SET cancel_requested = TRUE WHERE id = $1",
            &[&job_id],
        )?;
        Ok(())
    }

    fn reset_jobs(&self, run_id: i64, job_ids: &[i64], max_attempts: i64) -> Result<()> {
        let more = max_attempts.max(1);
        self.tx(|c| {
            for id in job_ids {
                c.execute(
                    "UPDATE jobs SET status = 'waiting', conclusion = NULL, waiting_reason = 'waiting for the scheduler', \
                     outputs = '{}', lease_owner = NULL, lease_expires_at = NULL, cancel_requested = FALSE, \
                     approved = FALSE, continue_on_error = FALSE, not_before = NULL, started_at = NULL, finished_at = NULL, \
                     max_attempts = attempt + $3 WHERE id = $1 AND run_id = $2",
                    &[id, &run_id, &more],
                )?;
            }
            c.execute(
                "UPDATE runs SET status = 'queued', conclusion = NULL, finished_at = NULL, attempt = attempt + 1 WHERE id = $1",
                &[&run_id],
            )?;
            Ok(())
        })
    }

    fn upsert_step(&self, s: &Step) -> Result<()> {
        self.execute(
            "INSERT INTO steps (job_id, attempt, idx, name, status, conclusion, started_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT(job_id, attempt, idx) DO UPDATE SET name = excluded.name, \
             status = excluded.status, conclusion = excluded.conclusion, \
             started_at = COALESCE(steps.started_at, excluded.started_at), finished_at = excluded.finished_at",
            &[
                &s.job_id,
                &s.attempt,
                &s.idx,
                &s.name,
                &s.status.as_str(),
                &s.conclusion.map(Conclusion::as_str),
                &s.started_at,
                &s.finished_at,
            ],
        )?;
        Ok(())
    }

    fn steps_of_job(&self, job_id: i64, attempt: Option<i64>) -> Result<Vec<Step>> {
        rows(
            self.query(
                &format!(
                    "SELECT job_id, attempt, idx, name, status, conclusion, started_at, finished_at FROM steps \
                     WHERE job_id = $1 AND attempt = {LATEST_ATTEMPT} ORDER BY idx"
                ),
                &[&job_id, &attempt],
            )?,
            |r| {
                Ok(Step {
                    job_id: col(r, "job_id")?,
                    attempt: col(r, "attempt")?,
                    idx: col(r, "idx")?,
                    name: col(r, "name")?,
                    status: named(r, "status")?,
                    conclusion: named_opt(r, "conclusion")?,
                    started_at: col(r, "started_at")?,
                    finished_at: col(r, "finished_at")?,
                })
            },
        )
    }

    fn runnable_jobs(&self, labels: &[String], limit: i64) -> Result<Vec<Job>> {
        // Label matching happens in Rust, as in SQLite: a job's labels must all be offered.
        let jobs = self.query_jobs(
            "WHERE status = 'queued' ORDER BY id LIMIT $1",
            &[&(limit.max(1) * 8)],
        )?;
        Ok(jobs
            .into_iter()
            .filter(|j| {
                j.labels
                    .iter()
                    .all(|l| labels.iter().any(|o| o.eq_ignore_ascii_case(l)))
            })
            .take(limit as usize)
            .collect())
    }

    fn claim_job(&self, job_id: i64, agent: &str, lease_ms: i64) -> Result<Option<Lease>> {
        let now = now_ms();
        let expires = now + lease_ms;
        // One round trip: lock the row if nobody else holds it, lease it, return it.
        let row = self.query_opt(
            &format!(
                "UPDATE jobs SET status = 'running', lease_owner = $2, lease_expires_at = $3, \
                 fence = fence + 1, attempt = attempt + 1, waiting_reason = NULL, started_at = $4 \
                 WHERE id = (SELECT id FROM jobs WHERE id = $1 AND status = 'queued' FOR UPDATE SKIP LOCKED) \
                 RETURNING {JOB_COLS}"
            ),
            &[&job_id, &agent, &expires, &now],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let job = job_from_row(&row)?;
        Ok(Some(Lease {
            fence: job.fence,
            expires_at: expires,
            job,
        }))
    }

    fn heartbeat(&self, job_id: i64, fence: i64, lease_ms: i64) -> Result<LeaseCheck> {
        // As in SQLite: the lease row is rewritten only once a third of it was used.
        let mut c = self.c()?;
        let Some(r) = c.query_opt(
            "SELECT fence, status, cancel_requested, lease_expires_at FROM jobs WHERE id = $1",
            &[&job_id],
        )?
        else {
            return Ok(LeaseCheck::Lost);
        };
        let current: i64 = col(&r, "fence")?;
        let status: Status = named(&r, "status")?;
        let cancel: bool = col(&r, "cancel_requested")?;
        let expires: Option<i64> = col(&r, "lease_expires_at")?;
        if current != fence || status != Status::Running {
            return Ok(LeaseCheck::Lost);
        }
        let now = now_ms();
        if expires.unwrap_or(0) < now + lease_ms * 2 / 3 {
            let changed = c.execute(
                "UPDATE jobs SET lease_expires_at = $3 WHERE id = $1 AND fence = $2 AND status = 'running'",
                &[&job_id, &fence, &(now + lease_ms)],
            )?;
            if changed == 0 {
                return Ok(LeaseCheck::Lost);
            }
        }
        Ok(LeaseCheck::Held {
            cancel_requested: cancel,
        })
    }

    fn complete_job(
        &self,
        job_id: i64,
        fence: i64,
        conclusion: Conclusion,
        outputs: &serde_json::Value,
    ) -> Result<bool> {
        let changed = self.execute(
            "UPDATE jobs SET status = 'completed', conclusion = $3, outputs = $4, finished_at = $5, \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND fence = $2 AND status = 'running'",
            &[
                &job_id,
                &fence,
                &conclusion.as_str(),
                &outputs.to_string(),
                &now_ms(),
            ],
        )?;
        Ok(changed == 1)
    }

    fn expired_leases(&self, now: Millis) -> Result<Vec<Job>> {
        self.query_jobs(
            "WHERE status = 'running' AND lease_expires_at < $1 ORDER BY id",
            &[&now],
        )
    }

    fn jobs_leased_by_prefix(&self, owner_prefix: &str) -> Result<Vec<Job>> {
        self.query_jobs(
            "WHERE status = 'running' AND substr(lease_owner, 1, length($1::text)) = $1::text ORDER BY id",
            &[&owner_prefix],
        )
    }

    fn release_lease(&self, job_id: i64, fence: i64, requeue: bool, reason: &str) -> Result<bool> {
        self.tx(|c| {
            let changed = if requeue {
                c.execute(
                    "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, waiting_reason = $3 \
                     WHERE id = $1 AND fence = $2 AND status = 'running'",
                    &[&job_id, &fence, &reason],
                )?
            } else {
                c.execute(
                    "UPDATE jobs SET status = 'completed', conclusion = 'failure', lease_owner = NULL, \
                     lease_expires_at = NULL, waiting_reason = $3, finished_at = $4 \
                     WHERE id = $1 AND fence = $2 AND status = 'running'",
                    &[&job_id, &fence, &reason, &now_ms()],
                )?
            };
            if changed == 1 && !requeue {
                // Steps that were running when the agent vanished did not finish.
                c.execute(
                    "UPDATE steps SET status = 'completed', conclusion = 'failure', finished_at = $2 \
                     WHERE job_id = $1 AND status != 'completed'",
                    &[&job_id, &now_ms()],
                )?;
            }
            Ok(changed == 1)
        })
    }

    fn queue_depth(&self) -> Result<i64> {
        col(
            &self.query_one(
                "SELECT count(*) AS n FROM jobs WHERE status = 'queued'",
                &[],
            )?,
            "n",
        )
    }

    fn append_step_log_chunk(
        &self,
        job_id: i64,
        attempt: i64,
        idx: i64,
        first_line: i64,
        step: Option<i64>,
        lines: &str,
    ) -> Result<bool> {
        let line_count = lines.lines().count() as i64;
        let data = compress(lines);
        let changed = self.execute(
            "INSERT INTO log_chunks (job_id, attempt, idx, first_line, line_count, raw_len, data, step) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT(job_id, attempt, idx) DO NOTHING",
            &[
                &job_id,
                &attempt,
                &idx,
                &first_line,
                &line_count,
                &(lines.len() as i64),
                &data,
                &step,
            ],
        )?;
        Ok(changed == 1)
    }

    fn log_chunks(
        &self,
        job_id: i64,
        attempt: Option<i64>,
        from_idx: i64,
    ) -> Result<Vec<LogChunk>> {
        rows(
            self.query(
                &format!(
                    "SELECT idx, first_line, line_count, step, data FROM log_chunks WHERE job_id = $1 \
                     AND idx >= $3 AND attempt = {LATEST_ATTEMPT} ORDER BY idx"
                ),
                &[&job_id, &attempt, &from_idx],
            )?,
            chunk_from_row,
        )
    }

    fn log_chunks_for_lines(
        &self,
        job_id: i64,
        attempt: Option<i64>,
        from: i64,
        to: i64,
    ) -> Result<Vec<LogChunk>> {
        rows(
            self.query(
                &format!(
                    "SELECT idx, first_line, line_count, step, data FROM log_chunks WHERE job_id = $1 \
                     AND first_line < $4 AND first_line + line_count > $3 \
                     AND attempt = {LATEST_ATTEMPT} ORDER BY idx"
                ),
                &[&job_id, &attempt, &from, &to],
            )?,
            chunk_from_row,
        )
    }

    fn log_chunks_of_step(
        &self,
        job_id: i64,
        attempt: Option<i64>,
        step: Option<i64>,
    ) -> Result<Vec<LogChunk>> {
        // `IS NOT DISTINCT FROM`: NULL matches the chunks of no step.
        rows(
            self.query(
                &format!(
                    "SELECT idx, first_line, line_count, step, data FROM log_chunks WHERE job_id = $1 \
                     AND step IS NOT DISTINCT FROM $3::bigint \
                     AND attempt = {LATEST_ATTEMPT} ORDER BY idx"
                ),
                &[&job_id, &attempt, &step],
            )?,
            chunk_from_row,
        )
    }

    fn log_lines_by_step(
        &self,
        job_id: i64,
        attempt: Option<i64>,
    ) -> Result<Vec<(Option<i64>, i64)>> {
        rows(
            self.query(
                &format!(
                    "SELECT step, sum(line_count)::bigint AS lines FROM log_chunks WHERE job_id = $1 \
                     AND attempt = {LATEST_ATTEMPT} GROUP BY step ORDER BY step NULLS FIRST"
                ),
                &[&job_id, &attempt],
            )?,
            |r| Ok((col(r, "step")?, col(r, "lines")?)),
        )
    }

    fn log_attempts(&self, job_id: i64) -> Result<Vec<i64>> {
        rows(
            self.query(
                "SELECT attempt FROM log_chunks WHERE job_id = $1 \
                 UNION SELECT attempt FROM steps WHERE job_id = $1 ORDER BY 1",
                &[&job_id],
            )?,
            |r| col(r, "attempt"),
        )
    }

    fn log_stats(&self, job_id: i64, attempt: Option<i64>) -> Result<(i64, i64)> {
        let r = self.query_one(
            &format!(
                "SELECT count(*) AS chunks, COALESCE(max(first_line + line_count), 0) AS lines \
                 FROM log_chunks WHERE job_id = $1 AND attempt = {LATEST_ATTEMPT}"
            ),
            &[&job_id, &attempt],
        )?;
        Ok((col(&r, "chunks")?, col(&r, "lines")?))
    }

    fn log_bytes(&self, job_id: i64, attempt: i64) -> Result<i64> {
        col(
            &self.query_one(
                "SELECT COALESCE(sum(raw_len), 0)::bigint AS n FROM log_chunks WHERE job_id = $1 AND attempt = $2",
                &[&job_id, &attempt],
            )?,
            "n",
        )
    }

    fn set_secret(&self, repo_id: Option<i64>, name: &str, value: &str) -> Result<()> {
        let sealed = self.secrets.seal(value.as_bytes())?;
        self.execute(
            "INSERT INTO secrets (repo_id, environment, name, sealed, updated_at) VALUES ($1, '', $2, $3, $4) \
             ON CONFLICT(repo_id, environment, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            &[&repo_id.unwrap_or(0), &name, &sealed, &now_ms()],
        )?;
        Ok(())
    }

    fn delete_secret(&self, repo_id: Option<i64>, name: &str) -> Result<bool> {
        Ok(self.execute(
            "DELETE FROM secrets WHERE repo_id = $1 AND environment = '' AND name = $2",
            &[&repo_id.unwrap_or(0), &name],
        )? == 1)
    }

    fn secret_names(&self, repo_id: Option<i64>) -> Result<Vec<String>> {
        // Byte order, as SQLite sorts: the database's locale must not reorder names.
        rows(
            self.query(
                "SELECT name FROM secrets WHERE repo_id = $1 AND environment = '' ORDER BY name COLLATE \"C\"",
                &[&repo_id.unwrap_or(0)],
            )?,
            |r| col(r, "name"),
        )
    }

    fn secrets_for_repo(&self, repo_id: i64) -> Result<BTreeMap<String, String>> {
        let found = self.query(
            "SELECT name, sealed FROM secrets WHERE repo_id IN (0, $1) AND environment = '' ORDER BY repo_id",
            &[&repo_id],
        )?;
        let mut out = BTreeMap::new();
        for r in found {
            let sealed: Vec<u8> = col(&r, "sealed")?;
            out.insert(col(&r, "name")?, self.open_sealed(&sealed)?);
        }
        Ok(out)
    }

    fn set_variable(&self, repo_id: Option<i64>, name: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO variables (repo_id, environment, name, value) VALUES ($1, '', $2, $3) \
             ON CONFLICT(repo_id, environment, name) DO UPDATE SET value = excluded.value",
            &[&repo_id.unwrap_or(0), &name, &value],
        )?;
        Ok(())
    }

    fn variable_names(&self, repo_id: Option<i64>, env: &str) -> Result<Vec<String>> {
        rows(
            self.query(
                "SELECT name FROM variables WHERE repo_id = $1 AND environment = $2 ORDER BY name COLLATE \"C\"",
                &[&repo_id.unwrap_or(0), &env],
            )?,
            |r| col(r, "name"),
        )
    }

    fn delete_variable(&self, repo_id: Option<i64>, env: &str, name: &str) -> Result<bool> {
        Ok(self.execute(
            "DELETE FROM variables WHERE repo_id = $1 AND environment = $2 AND name = $3",
            &[&repo_id.unwrap_or(0), &env, &name],
        )? == 1)
    }

    fn variables_for_repo(&self, repo_id: i64) -> Result<BTreeMap<String, String>> {
        let found = self.query(
            "SELECT name, value FROM variables WHERE repo_id IN (0, $1) AND environment = '' ORDER BY repo_id",
            &[&repo_id],
        )?;
        found
            .iter()
            .map(|r| Ok((col(r, "name")?, col(r, "value")?)))
            .collect()
    }

    fn set_environment(&self, repo_id: i64, name: &str, p: &Protection) -> Result<()> {
        self.execute(
            "INSERT INTO environments (repo_id, name, protection) VALUES ($1, $2, $3) \
             ON CONFLICT(repo_id, name) DO UPDATE SET protection = excluded.protection",
            &[&repo_id, &name, &serde_json::to_string(p)?],
        )?;
        Ok(())
    }

    fn get_environment(&self, repo_id: i64, name: &str) -> Result<Option<Protection>> {
        let row = self.query_opt(
            "SELECT protection FROM environments WHERE repo_id = $1 AND name = $2",
            &[&repo_id, &name],
        )?;
        match row {
            Some(r) => Ok(Some(serde_json::from_str(&col::<String>(
                &r,
                "protection",
            )?)?)),
            None => Ok(None),
        }
    }

    fn set_env_secret(&self, repo_id: i64, env: &str, name: &str, value: &str) -> Result<()> {
        let sealed = self.secrets.seal(value.as_bytes())?;
        self.execute(
            "INSERT INTO secrets (repo_id, environment, name, sealed, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT(repo_id, environment, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            &[&repo_id, &env, &name, &sealed, &now_ms()],
        )?;
        Ok(())
    }

    fn delete_env_secret(&self, repo_id: i64, env: &str, name: &str) -> Result<bool> {
        Ok(self.execute(
            "DELETE FROM secrets WHERE repo_id = $1 AND environment = $2 AND name = $3",
            &[&repo_id, &env, &name],
        )? == 1)
    }

    fn env_secret_names(&self, repo_id: i64, env: &str) -> Result<Vec<String>> {
        rows(
            self.query(
                "SELECT name FROM secrets WHERE repo_id = $1 AND environment = $2 ORDER BY name COLLATE \"C\"",
                &[&repo_id, &env],
            )?,
            |r| col(r, "name"),
        )
    }

    fn env_secrets(&self, repo_id: i64, env: Option<&str>) -> Result<BTreeMap<String, String>> {
        let found = self.query(
            "SELECT environment, name, sealed FROM secrets WHERE repo_id = $1 AND environment <> '' \
             AND ($2::text IS NULL OR environment = $2::text) ORDER BY environment, name COLLATE \"C\"",
            &[&repo_id, &env],
        )?;
        let mut out = BTreeMap::new();
        for r in found {
            let environment: String = col(&r, "environment")?;
            let name: String = col(&r, "name")?;
            let sealed: Vec<u8> = col(&r, "sealed")?;
            let key = if env.is_some() {
                name
            } else {
                format!("{environment}/{name}")
            };
            out.insert(key, self.open_sealed(&sealed)?);
        }
        Ok(out)
    }

    fn set_env_variable(&self, repo_id: i64, env: &str, name: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO variables (repo_id, environment, name, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT(repo_id, environment, name) DO UPDATE SET value = excluded.value",
            &[&repo_id, &env, &name, &value],
        )?;
        Ok(())
    }

    fn env_variables(&self, repo_id: i64, env: &str) -> Result<BTreeMap<String, String>> {
        let found = self.query(
            "SELECT name, value FROM variables WHERE repo_id = $1 AND environment = $2 AND environment <> ''",
            &[&repo_id, &env],
        )?;
        found
            .iter()
            .map(|r| Ok((col(r, "name")?, col(r, "value")?)))
            .collect()
    }

    fn set_environments_loaded(&self, repo_id: i64) -> Result<()> {
        self.execute(
            "UPDATE repos SET environments_loaded_at = $2 WHERE id = $1",
            &[&repo_id, &now_ms()],
        )?;
        Ok(())
    }

    fn environments_loaded(&self, repo_id: i64) -> Result<bool> {
        let row = self.query_opt(
            "SELECT environments_loaded_at FROM repos WHERE id = $1",
            &[&repo_id],
        )?;
        Ok(match row {
            Some(r) => col::<Option<i64>>(&r, "environments_loaded_at")?.is_some(),
            None => false,
        })
    }

    fn set_approval_policy(&self, repo_id: i64, policy: &str) -> Result<bool> {
        Ok(self.execute(
            "UPDATE repos SET approval_policy = $2 WHERE id = $1",
            &[&repo_id, &policy],
        )? == 1)
    }

    fn approval_policy(&self, repo_id: i64) -> Result<String> {
        let row = self.query_opt(
            "SELECT approval_policy FROM repos WHERE id = $1",
            &[&repo_id],
        )?;
        match row {
            Some(r) => col(&r, "approval_policy"),
            None => Ok("none".into()),
        }
    }

    fn set_run_held(&self, run_id: i64, held: bool) -> Result<()> {
        self.execute("UPDATE runs SET held = $2 WHERE id = $1", &[&run_id, &held])?;
        Ok(())
    }

    fn run_held(&self, run_id: i64) -> Result<bool> {
        let row = self.query_opt("SELECT held FROM runs WHERE id = $1", &[&run_id])?;
        match row {
            Some(r) => col(&r, "held"),
            None => Ok(false),
        }
    }

    fn create_approval(&self, job_id: i64, run_id: i64, environment: &str) -> Result<i64> {
        col(
            &self.query_one(
                "INSERT INTO approvals (job_id, run_id, environment, state, created_at, run_attempt) \
                 VALUES ($1, $2, $3, 'pending', $4, (SELECT attempt FROM runs WHERE id = $2)) RETURNING id",
                &[&job_id, &run_id, &environment, &now_ms()],
            )?,
            "id",
        )
    }

    fn expire_approvals(&self, run_id: i64, reason: &str) -> Result<usize> {
        Ok(self.execute(
            "UPDATE approvals SET state = 'cancelled', comment = $2, decided_at = $3 \
             WHERE run_id = $1 AND state = 'pending'",
            &[&run_id, &reason, &now_ms()],
        )? as usize)
    }

    fn decide_approval(
        &self,
        id: i64,
        approve: bool,
        reviewer: &str,
        comment: &str,
    ) -> Result<Option<Approval>> {
        let state = if approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Rejected
        };
        self.query_opt(
            &format!(
                "UPDATE approvals SET state = $2, reviewer = $3, comment = $4, decided_at = $5 \
                 WHERE id = $1 AND state = 'pending' RETURNING {APPROVAL_COLS}"
            ),
            &[&id, &state.as_str(), &reviewer, &comment, &now_ms()],
        )?
        .as_ref()
        .map(approval_from_row)
        .transpose()
    }

    fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
        rows(
            self.query(
                &format!(
                    "SELECT {APPROVAL_COLS} FROM approvals WHERE (NOT $1::boolean OR state = 'pending') \
                     ORDER BY id DESC LIMIT 200"
                ),
                &[&pending_only],
            )?,
            approval_from_row,
        )
    }

    fn approvals_of_job(&self, job_id: i64) -> Result<Vec<Approval>> {
        rows(
            self.query(
                &format!(
                    "SELECT {APPROVAL_COLS} FROM approvals WHERE job_id = $1 \
                     AND run_attempt = (SELECT attempt FROM runs WHERE runs.id = approvals.run_id) ORDER BY id"
                ),
                &[&job_id],
            )?,
            approval_from_row,
        )
    }

    fn record_deployment(
        &self,
        run_id: i64,
        job_id: i64,
        env: &str,
        sha: &str,
        status: Conclusion,
    ) -> Result<i64> {
        col(
            &self.query_one(
                "INSERT INTO deployments (run_id, job_id, environment, sha, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&run_id, &job_id, &env, &sha, &status.as_str(), &now_ms()],
            )?,
            "id",
        )
    }

    fn list_deployments(&self, env: Option<&str>) -> Result<Vec<Deployment>> {
        rows(
            self.query(
                "SELECT id, run_id, job_id, environment, sha, status, created_at FROM deployments \
                 WHERE ($1::text IS NULL OR environment = $1::text) ORDER BY id DESC LIMIT 200",
                &[&env],
            )?,
            |r| {
                Ok(Deployment {
                    id: col(r, "id")?,
                    run_id: col(r, "run_id")?,
                    job_id: col(r, "job_id")?,
                    environment: col(r, "environment")?,
                    sha: col(r, "sha")?,
                    status: named(r, "status")?,
                    created_at: col(r, "created_at")?,
                })
            },
        )
    }

    fn upsert_agent(&self, a: &Agent) -> Result<()> {
        self.execute(
            "INSERT INTO agents (id, name, labels, capacity, last_seen, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, labels = excluded.labels, \
             capacity = excluded.capacity, last_seen = excluded.last_seen",
            &[
                &a.id,
                &a.name,
                &serde_json::to_string(&a.labels)?,
                &a.capacity,
                &a.last_seen,
                &a.created_at,
            ],
        )?;
        Ok(())
    }

    fn list_agents(&self) -> Result<Vec<Agent>> {
        rows(
            self.query(
                "SELECT id, name, labels, capacity, last_seen, created_at, drained, token_id FROM agents ORDER BY last_seen DESC",
                &[],
            )?,
            agent_row,
        )
    }

    fn set_agent_drained(&self, id: &str, drained: bool) -> Result<bool> {
        Ok(self.execute(
            "UPDATE agents SET drained = $2 WHERE id = $1",
            &[&id, &drained],
        )? == 1)
    }

    fn agent_drained(&self, id: &str) -> Result<bool> {
        match self.query_opt("SELECT drained FROM agents WHERE id = $1", &[&id])? {
            Some(r) => col(&r, "drained"),
            None => Ok(true),
        }
    }

    fn delete_agent(&self, id: &str) -> Result<bool> {
        Ok(self.execute("DELETE FROM agents WHERE id = $1", &[&id])? == 1)
    }

    fn register_agent(&self, a: &Agent) -> Result<Option<String>> {
        let credential = random_credential()?;
        let added = self.execute(
            "INSERT INTO agents (id, name, labels, capacity, last_seen, created_at, drained, token_id, credential_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT(id) DO NOTHING",
            &[
                &a.id,
                &a.name,
                &serde_json::to_string(&a.labels)?,
                &a.capacity,
                &a.last_seen,
                &a.created_at,
                &a.drained,
                &a.token_id,
                &sha256_hex(credential.as_bytes()),
            ],
        )?;
        Ok((added == 1).then_some(credential))
    }

    fn verify_agent_credential(&self, plaintext: &str) -> Result<Option<AgentCredential>> {
        let hash = sha256_hex(plaintext.as_bytes());
        // A revoked token's agents are out with it; an expired one's stay (a
        // registration token may be made to expire once used).
        let Some(r) = self.query_opt(
            "SELECT a.id, a.name, a.labels, a.capacity, a.last_seen, a.created_at, a.drained, a.token_id, \
             t.id AS t_id, t.name AS t_name, t.role AS t_role, t.created_at AS t_created_at, \
             t.expires_at AS t_expires_at, t.revoked_at AS t_revoked_at, t.scope AS t_scope, \
             t.reusable AS t_reusable, t.used_at AS t_used_at \
             FROM agents a LEFT JOIN api_tokens t ON t.id = a.token_id \
             WHERE a.credential_hash = $1 \
             AND (a.token_id IS NULL OR (t.id IS NOT NULL AND t.revoked_at IS NULL))",
            &[&hash],
        )?
        else {
            return Ok(None);
        };
        let agent = agent_row(&r)?;
        let token = match col::<Option<i64>>(&r, "t_id")? {
            None => None,
            // A token of a role this build does not know admits no agent.
            Some(_) => match token_row(&r, &JOINED_TOKEN_COLUMNS)?.into_info()? {
                None => return Ok(None),
                known => known,
            },
        };
        Ok(Some(AgentCredential { agent, token }))
    }

    fn touch_agent(&self, a: &Agent) -> Result<bool> {
        Ok(self.execute(
            "UPDATE agents SET name = $2, labels = $3, capacity = $4, last_seen = $5 WHERE id = $1",
            &[
                &a.id,
                &a.name,
                &serde_json::to_string(&a.labels)?,
                &a.capacity,
                &a.last_seen,
            ],
        )? == 1)
    }

    fn remove_agent(&self, id: &str) -> Result<Option<Agent>> {
        match self.query_opt(
            "DELETE FROM agents WHERE id = $1 \
             RETURNING id, name, labels, capacity, last_seen, created_at, drained, token_id",
            &[&id],
        )? {
            Some(r) => Ok(Some(agent_row(&r)?)),
            None => Ok(None),
        }
    }

    fn use_token_once(&self, id: i64) -> Result<bool> {
        Ok(self.execute(
            "UPDATE api_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL",
            &[&id, &now_ms()],
        )? == 1)
    }

    fn create_token(&self, name: &str, role: Role) -> Result<String> {
        Ok(self.create_token_expiring(name, role, None)?.1)
    }

    fn create_token_with(
        &self,
        name: &str,
        role: Role,
        expires_at: Option<Millis>,
        scope: &TokenScope,
        reusable: bool,
    ) -> Result<(i64, String)> {
        let token = random_token()?;
        let id = col(
            &self.query_one(
                "INSERT INTO api_tokens (name, role, hash, created_at, expires_at, scope, reusable) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &name,
                    &role.as_str(),
                    &sha256_hex(token.as_bytes()),
                    &now_ms(),
                    &expires_at,
                    &serde_json::to_string(scope)?,
                    &reusable,
                ],
            )?,
            "id",
        )?;
        Ok((id, token))
    }

    fn revoke_token(&self, id: i64) -> Result<bool> {
        Ok(self.execute(
            "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &now_ms()],
        )? == 1)
    }

    fn verify_token(&self, plaintext: &str) -> Result<Option<TokenInfo>> {
        let hash = sha256_hex(plaintext.as_bytes());
        // An expired or revoked token is no token.
        match self.query_opt(
            "SELECT id, name, role, created_at, expires_at, revoked_at, scope, reusable, used_at \
             FROM api_tokens WHERE hash = $1 \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
            &[&hash, &now_ms()],
        )? {
            Some(r) => token_row(&r, &TOKEN_COLUMNS)?.into_info(),
            None => Ok(None),
        }
    }

    fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let found = self.query(
            "SELECT id, name, role, created_at, expires_at, revoked_at, scope, reusable, used_at FROM api_tokens ORDER BY id",
            &[],
        )?;
        let mut out = Vec::new();
        for r in found {
            // A token of a role this build does not know is not listed.
            out.extend(token_row(&r, &TOKEN_COLUMNS)?.into_info()?);
        }
        Ok(out)
    }

    fn token_count(&self) -> Result<i64> {
        col(
            &self.query_one("SELECT count(*) AS n FROM api_tokens", &[])?,
            "n",
        )
    }

    fn schema_version(&self) -> Result<i64> {
        col(
            &self.query_one("SELECT version FROM hangar_schema", &[])?,
            "version",
        )
    }

    fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&now_ms(), &actor, &action, &target, &detail.to_string()],
        )?;
        Ok(())
    }

    fn list_audit(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        rows(
            self.query(
                "SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1",
                &[&limit],
            )?,
            |r| {
                Ok(AuditEntry {
                    id: col(r, "id")?,
                    at: col(r, "at")?,
                    actor: col(r, "actor")?,
                    action: col(r, "action")?,
                    target: col(r, "target")?,
                    detail: json_value(r, "detail")?,
                })
            },
        )
    }

    fn set_forge_credential(&self, repo_id: i64, cred: &ForgeCredential) -> Result<()> {
        let sealed = self.secrets.seal(cred.token.as_bytes())?;
        self.execute(
            "INSERT INTO forge_credentials (repo_id, kind, api_url, project, sealed, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT(repo_id) DO UPDATE SET kind = excluded.kind, \
             api_url = excluded.api_url, project = excluded.project, sealed = excluded.sealed, \
             updated_at = excluded.updated_at",
            &[
                &repo_id,
                &cred.kind,
                &cred.api_url,
                &cred.project,
                &sealed,
                &now_ms(),
            ],
        )?;
        Ok(())
    }

    fn forge_credential(&self, repo_id: i64) -> Result<Option<ForgeCredential>> {
        let Some(r) = self.query_opt(
            "SELECT kind, api_url, project, sealed FROM forge_credentials WHERE repo_id = $1",
            &[&repo_id],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(ForgeCredential {
            kind: col(&r, "kind")?,
            api_url: col(&r, "api_url")?,
            project: col(&r, "project")?,
            token: self.open_sealed(&col::<Vec<u8>>(&r, "sealed")?)?,
        }))
    }

    fn delete_forge_credential(&self, repo_id: i64) -> Result<bool> {
        Ok(self.execute(
            "DELETE FROM forge_credentials WHERE repo_id = $1",
            &[&repo_id],
        )? > 0)
    }

    fn create_notification_rule(&self, rule: &NotificationRule) -> Result<i64> {
        let target = self.secrets.seal(rule.target.as_bytes())?;
        let secret = match &rule.secret {
            Some(s) => Some(self.secrets.seal(s.as_bytes())?),
            None => None,
        };
        col(
            &self.query_one(
                "INSERT INTO notification_rules (repo_id, events, channel, target, secret, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &rule.repo_id,
                    &serde_json::to_string(&rule.events)?,
                    &rule.channel,
                    &target,
                    &secret,
                    &now_ms(),
                ],
            )?,
            "id",
        )
    }

    fn notification_rules(&self) -> Result<Vec<NotificationRule>> {
        let found = self.query(
            "SELECT id, repo_id, events, channel, target, secret, created_at \
             FROM notification_rules ORDER BY id",
            &[],
        )?;
        rows(found, |r| {
            Ok(NotificationRule {
                id: col(r, "id")?,
                repo_id: col(r, "repo_id")?,
                events: serde_json::from_str(&col::<String>(r, "events")?)?,
                channel: col(r, "channel")?,
                target: self.open_sealed(&col::<Vec<u8>>(r, "target")?)?,
                secret: col::<Option<Vec<u8>>>(r, "secret")?
                    .map(|s| self.open_sealed(&s))
                    .transpose()?,
                created_at: col(r, "created_at")?,
            })
        })
    }

    fn delete_notification_rule(&self, id: i64) -> Result<bool> {
        Ok(self.execute("DELETE FROM notification_rules WHERE id = $1", &[&id])? > 0)
    }

    fn record_outbound(&self, d: &NewOutbound) -> Result<i64> {
        col(
            &self.query_one(
                "INSERT INTO outbound_deliveries (kind, repo_id, run_id, target, subject, state, attempts, \
                 outcome, http_status, error, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                &[
                    &d.kind,
                    &d.repo_id,
                    &d.run_id,
                    &d.target,
                    &d.subject,
                    &d.state,
                    &d.attempts,
                    &d.outcome,
                    &d.http_status,
                    &d.error,
                    &now_ms(),
                ],
            )?,
            "id",
        )
    }

    fn create_operation(
        &self,
        project: &str,
        environment: &str,
        request: &serde_json::Value,
        state: &serde_json::Value,
        phase: OperationPhase,
    ) -> Result<i64> {
        let now = now_ms();
        col(
            &self.query_one(
                "INSERT INTO delivery_operations (project, environment, request, state, phase, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                &[
                    &project,
                    &environment,
                    &request.to_string(),
                    &state.to_string(),
                    &phase.as_str(),
                    &now,
                ],
            )?,
            "id",
        )
    }

    fn get_operation(&self, id: i64) -> Result<Option<DeliveryOperation>> {
        self.query_opt(
            &format!("SELECT {OPERATION_COLS} FROM delivery_operations WHERE id = $1"),
            &[&id],
        )?
        .map(|r| operation_from_row(&r))
        .transpose()
    }

    fn update_operation(
        &self,
        id: i64,
        version: i64,
        state: &serde_json::Value,
        phase: OperationPhase,
    ) -> Result<bool> {
        // Under READ COMMITTED a concurrent writer of the row waits for the
        // first and then sees the moved version: 0 rows, never both.
        Ok(self.execute(
            "UPDATE delivery_operations SET state = $2, phase = $3, updated_at = $4, version = version + 1 \
             WHERE id = $1 AND version = $5",
            &[&id, &state.to_string(), &phase.as_str(), &now_ms(), &version],
        )? > 0)
    }

    fn delete_operations_done_before(&self, before: Millis) -> Result<i64> {
        Ok(i64::try_from(self.execute(
            "DELETE FROM delivery_operations WHERE phase = $1 AND updated_at < $2",
            &[&OperationPhase::Done.as_str(), &before],
        )?)?)
    }

    fn operations_in(&self, phase: OperationPhase) -> Result<Vec<DeliveryOperation>> {
        rows(
            self.query(
                &format!(
                    "SELECT {OPERATION_COLS} FROM delivery_operations WHERE phase = $1 ORDER BY id"
                ),
                &[&phase.as_str()],
            )?,
            operation_from_row,
        )
    }

    fn put_env_deployments(&self, rows: &[EnvDeployment]) -> Result<usize> {
        let now = now_ms();
        self.tx(|c| {
            let mut changed = 0;
            for d in rows {
                // Unchanged rows are not written: ingesting a history again is free.
                changed += c.execute(
                    "INSERT INTO env_deployments (project, project_name, environment, service, record_id, started, record, ingested_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (project, environment, record_id, service) DO UPDATE SET \
                     project_name = excluded.project_name, started = excluded.started, \
                     record = excluded.record, ingested_at = excluded.ingested_at \
                     WHERE env_deployments.record <> excluded.record \
                     OR env_deployments.project_name <> excluded.project_name",
                    &[
                        &d.project,
                        &d.project_name,
                        &d.environment,
                        &d.service,
                        &d.record_id,
                        &d.started,
                        &d.record.to_string(),
                        &now,
                    ],
                )?;
            }
            Ok(usize::try_from(changed)?)
        })
    }

    fn env_deployments(&self, f: &EnvDeploymentFilter) -> Result<Vec<EnvDeployment>> {
        rows(
            self.query(
                "SELECT * FROM (SELECT project, project_name, environment, service, record_id, started, record \
                 FROM env_deployments WHERE ($1::text IS NULL OR project = $1::text) \
                 AND ($2::text IS NULL OR environment = $2::text) \
                 AND ($3::bigint IS NULL OR started >= $3::bigint) \
                 ORDER BY record_id DESC, service DESC LIMIT $4::bigint) AS newest \
                 ORDER BY record_id, service",
                &[&f.project, &f.environment, &f.started_since, &f.last],
            )?,
            |r| {
                let project: String = col(r, "project")?;
                let environment: String = col(r, "environment")?;
                let service: String = col(r, "service")?;
                let record_id: i64 = col(r, "record_id")?;
                let record: String = col(r, "record")?;
                Ok(EnvDeployment {
                    record: serde_json::from_str(&record).with_context(|| {
                        format!(
                            "the record of deployment {record_id} of `{service}` to `{environment}` of project {project}"
                        )
                    })?,
                    project_name: col(r, "project_name")?,
                    started: col(r, "started")?,
                    project,
                    environment,
                    service,
                    record_id,
                })
            },
        )
    }

    fn env_deployment_environments(&self, project: &str) -> Result<Vec<String>> {
        rows(
            self.query(
                "SELECT DISTINCT environment FROM env_deployments WHERE project = $1 ORDER BY environment",
                &[&project],
            )?,
            |r| col(r, "environment"),
        )
    }

    fn queue_workflow_run(&self, run_id: i64, action: &str) -> Result<i64> {
        col(
            &self.query_one(
                "INSERT INTO workflow_run_queue (run_id, action, queued_at) VALUES ($1, $2, $3) RETURNING id",
                &[&run_id, &action, &now_ms()],
            )?,
            "id",
        )
    }

    fn queued_workflow_runs(&self, now: Millis, limit: i64) -> Result<Vec<QueuedWorkflowRun>> {
        rows(
            self.query(
                "SELECT id, run_id, action, attempts FROM workflow_run_queue WHERE not_before <= $1 \
                 ORDER BY id LIMIT $2",
                &[&now, &limit],
            )?,
            |r| {
                Ok(QueuedWorkflowRun {
                    id: col(r, "id")?,
                    run_id: col(r, "run_id")?,
                    action: col(r, "action")?,
                    attempts: col(r, "attempts")?,
                })
            },
        )
    }

    fn retry_workflow_run(&self, id: i64, not_before: Millis) -> Result<()> {
        self.execute(
            "UPDATE workflow_run_queue SET attempts = attempts + 1, not_before = $2 WHERE id = $1",
            &[&id, &not_before],
        )?;
        Ok(())
    }

    fn dequeue_workflow_run(&self, id: i64) -> Result<()> {
        self.execute("DELETE FROM workflow_run_queue WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn list_outbound(&self, kind: Option<&str>, limit: i64) -> Result<Vec<Outbound>> {
        rows(
            self.query(
                "SELECT id, kind, repo_id, run_id, target, subject, state, attempts, outcome, http_status, \
                 error, at FROM outbound_deliveries WHERE ($1::text IS NULL OR kind = $1::text) \
                 ORDER BY id DESC LIMIT $2",
                &[&kind, &limit],
            )?,
            |r| {
                Ok(Outbound {
                    id: col(r, "id")?,
                    kind: col(r, "kind")?,
                    repo_id: col(r, "repo_id")?,
                    run_id: col(r, "run_id")?,
                    target: col(r, "target")?,
                    subject: col(r, "subject")?,
                    state: col(r, "state")?,
                    attempts: col(r, "attempts")?,
                    outcome: col(r, "outcome")?,
                    http_status: col(r, "http_status")?,
                    error: col(r, "error")?,
                    at: col(r, "at")?,
                })
            },
        )
    }

    fn retention_items(&self) -> Result<Vec<RetentionItem>> {
        let mut c = self.c()?;
        let mut out = Vec::new();
        // A run's logs expire together, from when the run ended.
        for r in c.query(
            "SELECT r.id, r.repo_id, COALESCE(r.finished_at, r.created_at) AS at, \
             SUM(octet_length(l.data))::bigint AS bytes \
             FROM runs r JOIN jobs j ON j.run_id = r.id JOIN log_chunks l ON l.job_id = j.id \
             WHERE r.status = 'completed' GROUP BY r.id",
            &[],
        )? {
            out.push(RetentionItem {
                kind: RetentionKind::Logs,
                id: col(&r, "id")?,
                repo_id: Some(col(&r, "repo_id")?),
                repository: None,
                at: col(&r, "at")?,
                bytes: col(&r, "bytes")?,
            });
        }
        for r in c.query(
            "SELECT a.id, r.repo_id, a.created_at, a.size FROM artifacts a LEFT JOIN runs r ON r.id = a.run_id",
            &[],
        )? {
            out.push(RetentionItem {
                kind: RetentionKind::Artifact,
                id: col(&r, "id")?,
                repo_id: col(&r, "repo_id")?,
                repository: None,
                at: col(&r, "created_at")?,
                bytes: col(&r, "size")?,
            });
        }
        for r in c.query(
            "SELECT id, repository, last_used_at, size FROM results_caches",
            &[],
        )? {
            out.push(RetentionItem {
                kind: RetentionKind::Cache,
                id: col(&r, "id")?,
                repo_id: None,
                repository: Some(col(&r, "repository")?),
                at: col(&r, "last_used_at")?,
                bytes: col(&r, "size")?,
            });
        }
        Ok(out)
    }

    fn delete_run_logs(&self, run_id: i64) -> Result<i64> {
        self.tx(|c| {
            let bytes: i64 = col(
                &c.query_one(
                    "SELECT COALESCE(SUM(octet_length(data)), 0)::bigint AS n FROM log_chunks \
                     WHERE job_id IN (SELECT id FROM jobs WHERE run_id = $1)",
                    &[&run_id],
                )?,
                "n",
            )?;
            c.execute(
                "DELETE FROM log_chunks WHERE job_id IN (SELECT id FROM jobs WHERE run_id = $1)",
                &[&run_id],
            )?;
            Ok(bytes)
        })
    }

    fn delete_artifact(&self, id: i64) -> Result<()> {
        let orphan = self.tx(|c| {
            let digest: Option<String> = c
                .query_opt(
                    "DELETE FROM artifacts WHERE id = $1 RETURNING digest",
                    &[&id],
                )?
                .map(|r| col(&r, "digest"))
                .transpose()?;
            let Some(d) = digest else {
                return Ok(None);
            };
            let shared: i64 = col(
                &c.query_one(
                    "SELECT COUNT(*) AS n FROM artifacts WHERE digest = $1",
                    &[&d],
                )?,
                "n",
            )?;
            Ok((shared == 0).then_some(d))
        })?;
        // The row first: an artifact is never listed without its bytes.
        if let Some(d) = orphan {
            self.blobs.remove(&d)?;
        }
        Ok(())
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        self.blobs.put(bytes)
    }

    fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        self.blobs.get(digest)
    }

    fn create_artifact(&self, run_id: i64, name: &str, digest: &str, size: i64) -> Result<i64> {
        col(
            &self.query_one(
                "INSERT INTO artifacts (run_id, name, digest, size, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&run_id, &name, &digest, &size, &now_ms()],
            )?,
            "id",
        )
    }

    fn list_artifacts(&self, run_id: i64) -> Result<Vec<Artifact>> {
        rows(
            self.query(
                "SELECT id, run_id, name, digest, size, created_at FROM artifacts WHERE run_id = $1 ORDER BY id",
                &[&run_id],
            )?,
            |r| {
                Ok(Artifact {
                    id: col(r, "id")?,
                    run_id: col(r, "run_id")?,
                    name: col(r, "name")?,
                    digest: col(r, "digest")?,
                    size: col(r, "size")?,
                    created_at: col(r, "created_at")?,
                })
            },
        )
    }

    fn put_cache(&self, repo_id: i64, key: &str, digest: &str, size: i64) -> Result<()> {
        self.execute(
            "INSERT INTO caches (repo_id, key, digest, size, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT(repo_id, key) DO NOTHING",
            &[&repo_id, &key, &digest, &size, &now_ms()],
        )?;
        Ok(())
    }

    fn find_cache(
        &self,
        repo_id: i64,
        key: &str,
        prefixes: &[String],
    ) -> Result<Option<CacheEntry>> {
        let entry = |r: &Row| -> Result<CacheEntry> {
            Ok(CacheEntry {
                repo_id: col(r, "repo_id")?,
                key: col(r, "key")?,
                digest: col(r, "digest")?,
                size: col(r, "size")?,
                created_at: col(r, "created_at")?,
            })
        };
        let mut c = self.c()?;
        if let Some(r) = c.query_opt(
            "SELECT repo_id, key, digest, size, created_at FROM caches WHERE repo_id = $1 AND key = $2",
            &[&repo_id, &key],
        )? {
            return Ok(Some(entry(&r)?));
        }
        for p in prefixes {
            if let Some(r) = c.query_opt(
                "SELECT repo_id, key, digest, size, created_at FROM caches WHERE repo_id = $1 \
                 AND substr(key, 1, length($2::text)) = $2::text ORDER BY created_at DESC LIMIT 1",
                &[&repo_id, p],
            )? {
                return Ok(Some(entry(&r)?));
            }
        }
        Ok(None)
    }

    fn insert_results_cache(&self, e: &ResultsCacheRow) -> Result<bool> {
        let n = self.execute(
            "INSERT INTO results_caches (id, repository, scope, key, version, size, parts, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            &[
                &e.id,
                &e.repository,
                &e.scope,
                &e.key,
                &e.version,
                &e.size,
                &e.parts.to_string(),
                &e.created_at,
                &e.last_used_at,
            ],
        )?;
        Ok(n == 1)
    }

    fn results_caches(&self, repository: Option<&str>) -> Result<Vec<ResultsCacheRow>> {
        rows(
            self.query(
                "SELECT id, repository, scope, key, version, size, parts, created_at, last_used_at \
                 FROM results_caches WHERE $1::text IS NULL OR repository = $1::text",
                &[&repository],
            )?,
            |r| {
                Ok(ResultsCacheRow {
                    id: col(r, "id")?,
                    repository: col(r, "repository")?,
                    scope: col(r, "scope")?,
                    key: col(r, "key")?,
                    version: col(r, "version")?,
                    size: col(r, "size")?,
                    parts: json_value(r, "parts")?,
                    created_at: col(r, "created_at")?,
                    last_used_at: col(r, "last_used_at")?,
                })
            },
        )
    }

    fn touch_results_cache(&self, id: i64, at: Millis) -> Result<()> {
        self.execute(
            "UPDATE results_caches SET last_used_at = $2 WHERE id = $1",
            &[&id, &at],
        )?;
        Ok(())
    }

    fn delete_results_cache(&self, id: i64) -> Result<()> {
        self.execute("DELETE FROM results_caches WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn blob_root(&self) -> &Path {
        self.blobs.root()
    }

    fn announce_work(&self, origin: &str) -> Result<()> {
        self.execute("SELECT pg_notify($1, $2)", &[&WORK_CHANNEL, &origin])
            .map(|_| ())
    }

    fn listen_for_work(&self, wake: crate::WorkListener) -> Result<bool> {
        self.listen(WORK_CHANNEL, wake)
    }

    fn announce_live(&self, payload: &str) -> Result<()> {
        if payload.len() > crate::LIVE_PAYLOAD_MAX {
            anyhow::bail!(
                "a live event of {} bytes is over NOTIFY's limit ({} bytes)",
                payload.len(),
                crate::LIVE_PAYLOAD_MAX
            );
        }
        self.execute("SELECT pg_notify($1, $2)", &[&LIVE_CHANNEL, &payload])
            .map(|_| ())
    }

    fn listen_for_live(&self, heard: crate::LiveListener) -> Result<bool> {
        self.listen(LIVE_CHANNEL, heard)
    }

    fn hold_presence(&self, id: &str) -> Result<()> {
        let target = self.pool.target.clone();
        let key = lock_key(&format!("presence:{id}"));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        runtime()?.spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                let mut held = |r: Result<()>| {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(r);
                    }
                };
                if let Err(e) = hold_lock_once(&target, key, &mut held).await {
                    // Failing before the lock was first held is the caller's
                    // error; later failures (the database restarting) are retried.
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        ready_rx
            .recv()
            .context("the PostgreSQL presence task stopped before it started")?
    }

    fn leads(&self, role: &str) -> Result<bool> {
        let mut leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flag) = leaders.get(role) {
            return Ok(flag.load(std::sync::atomic::Ordering::SeqCst));
        }
        // First ask: a task waits for the role's lock for as long as the
        // process runs; the flag says whether it holds it now.
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        leaders.insert(role.to_string(), flag.clone());
        let target = self.pool.target.clone();
        let key = lock_key(&format!("leader:{role}"));
        runtime()?.spawn(async move {
            loop {
                let f = flag.clone();
                let mut held =
                    move |_: Result<()>| f.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = hold_lock_once(&target, key, &mut held).await;
                flag.store(false, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        Ok(false)
    }

    fn unavailable(&self) -> Option<String> {
        let state = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        Pool::unavailable(&state)
    }

    fn present(&self, id: &str) -> Result<bool> {
        let key = lock_key(&format!("presence:{id}"));
        let mut c = self.c()?;
        let got: bool = col(
            &c.query_one("SELECT pg_try_advisory_lock($1) AS got", &[&key])?,
            "got",
        )?;
        if got {
            // Nobody holds it: its process is gone. Give it back at once.
            c.execute("SELECT pg_advisory_unlock($1)", &[&key])?;
        }
        Ok(!got)
    }

    fn backup_to(&self, dest: &Path) -> Result<()> {
        // A SQLite store beside the key file and blobs: the backup is a data
        // directory (see `copy::postgres_to_sqlite` for why not pg_dump).
        let out = dest
            .parent()
            .context("the backup's database file has no directory")?;
        if dest.file_name().is_none_or(|n| n != "hangar.db") {
            anyhow::bail!(
                "a PostgreSQL store is backed up as DIR/hangar.db, not {}",
                dest.display()
            );
        }
        let data_dir = self
            .blobs
            .root()
            .parent()
            .context("the blob directory has no data directory")?;
        crate::copy::postgres_to_sqlite(self, &data_dir.join("secret.key"), out)?;
        Ok(())
    }
}

const OPERATION_COLS: &str =
    "id, project, environment, request, state, phase, created_at, updated_at, version";

fn operation_from_row(r: &Row) -> Result<DeliveryOperation> {
    let id: i64 = col(r, "id")?;
    let request: String = col(r, "request")?;
    let state: String = col(r, "state")?;
    let phase: String = col(r, "phase")?;
    Ok(DeliveryOperation {
        id,
        project: col(r, "project")?,
        environment: col(r, "environment")?,
        request: serde_json::from_str(&request)
            .with_context(|| format!("the request of delivery operation {id}"))?,
        state: serde_json::from_str(&state)
            .with_context(|| format!("the state of delivery operation {id}"))?,
        phase: phase.parse()?,
        created_at: col(r, "created_at")?,
        updated_at: col(r, "updated_at")?,
        version: col(r, "version")?,
    })
}

/// An `agents` row (`id, name, labels, capacity, last_seen, created_at,
/// drained, token_id`).
fn agent_row(r: &Row) -> Result<Agent> {
    Ok(Agent {
        id: col(r, "id")?,
        name: col(r, "name")?,
        labels: json_list(r, "labels")?,
        capacity: col(r, "capacity")?,
        last_seen: col(r, "last_seen")?,
        created_at: col(r, "created_at")?,
        drained: col(r, "drained")?,
        token_id: col(r, "token_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new database of the test process's cluster: (its name, its URL).
    fn database() -> Option<(String, String)> {
        let cluster = hangar_testkit::postgres::cluster()?;
        let url = cluster.database();
        let name = url.rsplit('/').next().unwrap().to_string();
        Some((name, url))
    }

    fn psql(db: &str, sql: &str) -> String {
        hangar_testkit::postgres::cluster().unwrap().psql(db, sql)
    }

    /// Servers starting at once on a new database: one applies the migrations,
    /// the others wait for it; a reopen applies nothing; the version is the
    /// shared list's length.
    #[test]
    fn migrations_run_once_under_concurrent_starts() {
        let Some((db, url)) = database() else { return };
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        std::thread::scope(|s| {
            for d in &dirs {
                let url = &url;
                s.spawn(move || PgStore::open(url, d.path()).unwrap());
            }
        });
        drop(PgStore::open(&url, dirs[0].path()).unwrap());
        assert_eq!(
            psql(&db, "SELECT version FROM hangar_schema"),
            MIGRATIONS.len().to_string()
        );
        assert_eq!(psql(&db, "SELECT count(*) FROM hangar_schema"), "1");
    }

    /// A database from before log lines knew their step keeps its chunks:
    /// they belong to no step, and read as before.
    #[test]
    fn a_database_from_before_step_logs_keeps_its_lines() {
        let Some((db, url)) = database() else { return };
        let mut sql = String::from("CREATE TABLE hangar_schema (version BIGINT NOT NULL);\n");
        for m in MIGRATIONS[..10].iter().filter_map(|m| m.postgres) {
            sql.push_str(m);
        }
        let data: String = compress("old\nlog\n")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sql.push_str(&format!(
            "INSERT INTO hangar_schema VALUES (10);\n\
             INSERT INTO log_chunks (job_id, attempt, idx, first_line, line_count, raw_len, data) \
             VALUES (5, 1, 0, 0, 2, 8, '\\x{data}');\n"
        ));
        psql(&db, &sql);
        let dir = tempfile::tempdir().unwrap();
        let s = PgStore::open(&url, dir.path()).unwrap();
        let chunks = s.log_chunks(5, Some(1), 0).unwrap();
        assert_eq!(
            (chunks[0].step, &chunks[0].data[..]),
            (None, &b"old\nlog\n"[..])
        );
        assert_eq!(s.log_lines_by_step(5, Some(1)).unwrap(), [(None, 2)]);
        assert_eq!(s.log_chunks_of_step(5, Some(1), None).unwrap().len(), 1);
        s.append_step_log_chunk(5, 1, 1, 2, Some(0), "new\n")
            .unwrap();
        assert_eq!(
            s.log_lines_by_step(5, Some(1)).unwrap(),
            [(None, 2), (Some(0), 1)]
        );
    }

    /// A database migrated by a newer hangar is refused with what to do.
    #[test]
    fn a_newer_schema_is_refused() {
        let Some((db, url)) = database() else { return };
        let dir = tempfile::tempdir().unwrap();
        drop(PgStore::open(&url, dir.path()).unwrap());
        psql(&db, "UPDATE hangar_schema SET version = 999");
        let err = format!("{:#}", PgStore::open(&url, dir.path()).err().unwrap());
        assert!(
            err.contains("version 999") && err.contains("upgrade hangar"),
            "{err}"
        );
    }

    /// Statuses are read back as enums; a name this binary does not know (a
    /// corrupt row) is an error naming it, not a default.
    #[test]
    fn unknown_status_names_are_errors() {
        let Some((db, url)) = database() else { return };
        let dir = tempfile::tempdir().unwrap();
        let s = PgStore::open(&url, dir.path()).unwrap();
        let run = s
            .create_run(&NewRun {
                repo_id: 1,
                jobs: vec![NewJob::default()],
                payload: serde_json::json!({}),
                context: serde_json::json!({}),
                ..Default::default()
            })
            .unwrap();
        let job = s.jobs_of_run(run).unwrap()[0].id;
        psql(
            &db,
            &format!("UPDATE jobs SET status = 'in_progress' WHERE id = {job}"),
        );
        let err = format!("{:#}", s.get_job(job).unwrap_err());
        assert!(err.contains("unknown status `in_progress`"), "{err}");
    }

    /// Secrets and forge tokens are sealed before they reach the database, and
    /// API tokens are stored as hashes.
    #[test]
    fn secrets_and_tokens_are_not_stored_in_the_clear() {
        let Some((db, url)) = database() else { return };
        let dir = tempfile::tempdir().unwrap();
        let s = PgStore::open(&url, dir.path()).unwrap();
        s.set_secret(None, "TOKEN", "super-secret-value-123")
            .unwrap();
        s.set_forge_credential(
            1,
            &ForgeCredential {
                token: "ghp_forge-token-value-789".into(), // hangar:allow (a fake credential for the test)
                ..Default::default()
            },
        )
        .unwrap();
        let token = s.create_token("t", Role::Read).unwrap();
        let dump = psql(
            &db,
            "SELECT encode(sealed, 'escape') FROM secrets UNION ALL \
             SELECT encode(sealed, 'escape') FROM forge_credentials UNION ALL SELECT hash FROM api_tokens",
        );
        for plain in [
            "super-secret-value-123",
            "ghp_forge-token-value-789",
            &token,
        ] {
            assert!(!dump.contains(plain), "{plain} stored in the clear");
        }
        assert_eq!(
            s.secrets_for_repo(1).unwrap()["TOKEN"],
            "super-secret-value-123"
        );
    }

    /// A wrong URL or an unreachable server is an error that says so, not a hang.
    #[test]
    fn bad_urls_and_unreachable_servers_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            PgStore::open("mysql://x", dir.path()).err().unwrap()
        );
        assert!(err.contains("expected postgres://"), "{err}");
        let port = hangar_testkit::free_port();
        let url = format!("postgres://hangar@127.0.0.1:{port}/none?connect_timeout=5");
        let err = format!("{:#}", PgStore::open(&url, dir.path()).err().unwrap());
        assert!(err.contains("connecting to PostgreSQL"), "{err}");
    }

    /// The README's unix-socket form of the URL reaches the server.
    #[test]
    fn a_unix_socket_url_connects() {
        let Some((db, _)) = database() else { return };
        let cluster = hangar_testkit::postgres::cluster().unwrap();
        let url = format!(
            "postgres://hangar@/{db}?host={}&port={}",
            cluster.socket_dir().display(),
            cluster.port()
        );
        let dir = tempfile::tempdir().unwrap();
        let s = PgStore::open(&url, dir.path()).unwrap();
        assert_eq!(s.token_count().unwrap(), 0);
    }

    /// A server announcing queued jobs wakes another server's listener on the
    /// same database, and the listener comes back after its connection is cut.
    #[test]
    fn announced_work_wakes_the_other_servers() {
        let Some((db, url)) = database() else { return };
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = PgStore::open(&url, a_dir.path()).unwrap();
        let b = PgStore::open(&url, b_dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        assert!(
            b.listen_for_work(Box::new(move |from| {
                let _ = tx.lock().unwrap().send(from.map(String::from));
            }))
            .unwrap()
        );
        let wait = std::time::Duration::from_secs(10);
        a.announce_work("server-a").unwrap();
        // The announcer is named, so a server can tell its own announcements.
        assert_eq!(
            rx.recv_timeout(wait)
                .expect("the other server woke")
                .as_deref(),
            Some("server-a")
        );
        // Cut every connection of the database: the listener reconnects and
        // wakes once for what it may have missed, then hears new announcements.
        psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        );
        rx.recv_timeout(wait).expect("a wake-up after reconnecting");
        while rx.try_recv().is_ok() {}
        let deadline = std::time::Instant::now() + wait;
        loop {
            a.announce_work("server-a").unwrap();
            if rx
                .recv_timeout(std::time::Duration::from_millis(300))
                .is_ok()
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no wake-up after reconnecting"
            );
        }
    }

    /// An embedded agent's presence is seen by other servers while its process
    /// holds it, and is gone once that process's connections are.
    #[test]
    fn presence_lasts_as_long_as_its_holder() {
        let Some((db, url)) = database() else { return };
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = PgStore::open(&url, a_dir.path()).unwrap();
        let b = PgStore::open(&url, b_dir.path()).unwrap();
        assert!(!b.present("embedded-a").unwrap());
        a.hold_presence("embedded-a").unwrap();
        assert!(b.present("embedded-a").unwrap());
        assert!(b.present("embedded-a").unwrap(), "asking does not take it");
        assert!(!b.present("embedded-b").unwrap());
        // The holder's connections end (its process died): the presence is gone
        // until its task has taken it again.
        psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid() AND query LIKE '%advisory_lock(%'"
            ),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen_gone = false;
        while std::time::Instant::now() < deadline {
            match b.present("embedded-a") {
                Ok(false) => seen_gone = true,
                Ok(true) if seen_gone => return,
                _ => {}
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("presence was not lost and taken again (seen gone: {seen_gone})");
    }

    /// Of two servers asking to lead a role, exactly one does; when its
    /// connection is gone (its process died), the other takes over.
    #[test]
    fn one_leader_at_a_time_with_fail_over() {
        let Some((db, url)) = database() else { return };
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = PgStore::open(&url, a_dir.path()).unwrap();
        let b = PgStore::open(&url, b_dir.path()).unwrap();
        let wait_until = |what: &str, f: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !f() {
                assert!(std::time::Instant::now() < deadline, "timed out: {what}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        };
        a.leads("periodic").unwrap();
        wait_until("a leads", &|| a.leads("periodic").unwrap());
        b.leads("periodic").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(!b.leads("periodic").unwrap(), "two leaders");
        assert!(a.leads("periodic").unwrap());
        // The leader's lock connection dies: the other one takes over.
        let key = lock_key("leader:periodic");
        psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND s.datname = '{db}' \
                 AND ((l.classid::bigint << 32) | l.objid::bigint) = {key}"
            ),
        );
        wait_until("b takes over", &|| b.leads("periodic").unwrap());
        // a's task waits for the lock again; it does not lead while b does.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(!a.leads("periodic").unwrap(), "two leaders after fail-over");
    }

    /// A connection the server closed (a restart, an idle timeout) is not
    /// handed out again: the next call opens a new one.
    #[test]
    fn closed_connections_are_replaced() {
        let Some((db, url)) = database() else { return };
        let dir = tempfile::tempdir().unwrap();
        let s = PgStore::open(&url, dir.path()).unwrap();
        s.create_token("t", Role::Read).unwrap();
        psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(s.token_count().unwrap(), 1);
    }
}
