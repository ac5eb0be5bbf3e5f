//! The SQLite implementation of [`Store`]: WAL mode, versioned migrations, one
//! connection behind a mutex (SQLite serialises writers anyway; one connection
//! keeps every method trivially atomic).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::blobs::BlobDir;
use crate::crypto::{SecretBox, random_credential, random_token, sha256_hex};
use crate::migrations::MIGRATIONS;
use crate::model::*;
use crate::{Result, Store};

pub struct SqliteStore {
    conn: Mutex<Connection>,
    secrets: SecretBox,
    blobs: BlobDir,
    path: PathBuf,
}

const JOB_COLS: &str = "id, run_id, key, name, needs, labels, status, conclusion, waiting_reason, \
    environment, outputs, lease_owner, lease_expires_at, fence, attempt, max_attempts, \
    cancel_requested, approved, not_before, created_at, started_at, finished_at, continue_on_error, spec";

const RUN_COLS: &str = "id, repo_id, workflow_path, workflow_name, event, git_ref, sha, status, \
    conclusion, waiting_reason, concurrency_group, cancel_in_progress, attempt, created_at, \
    started_at, finished_at, actor, run_number";

fn json_list(s: String) -> Vec<String> {
    serde_json::from_str(&s).unwrap_or_default()
}

/// A status, conclusion or approval state read from its column: a name this
/// binary does not know is an error (a corrupt row, or a database written by
/// a newer hangar), not a guess.
fn named<T: std::str::FromStr<Err = UnknownName>>(r: &Row, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    text.parse().map_err(|e: UnknownName| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn named_opt<T: std::str::FromStr<Err = UnknownName>>(
    r: &Row,
    i: usize,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = r.get(i)?;
    text.map(|t| {
        t.parse().map_err(|e: UnknownName| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}

fn job_from_row(r: &Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        run_id: r.get(1)?,
        key: r.get(2)?,
        name: r.get(3)?,
        needs: json_list(r.get(4)?),
        labels: json_list(r.get(5)?),
        status: named(r, 6)?,
        conclusion: named_opt(r, 7)?,
        waiting_reason: r.get(8)?,
        environment: r.get(9)?,
        outputs: serde_json::from_str(&r.get::<_, String>(10)?).unwrap_or_default(),
        lease_owner: r.get(11)?,
        lease_expires_at: r.get(12)?,
        fence: r.get(13)?,
        attempt: r.get(14)?,
        max_attempts: r.get(15)?,
        cancel_requested: r.get(16)?,
        approved: r.get(17)?,
        not_before: r.get(18)?,
        created_at: r.get(19)?,
        started_at: r.get(20)?,
        finished_at: r.get(21)?,
        continue_on_error: r.get(22)?,
        spec: serde_json::from_str(&r.get::<_, String>(23)?).unwrap_or_default(),
    })
}

fn run_from_row(r: &Row) -> rusqlite::Result<Run> {
    Ok(Run {
        id: r.get(0)?,
        repo_id: r.get(1)?,
        workflow_path: r.get(2)?,
        workflow_name: r.get(3)?,
        event: r.get(4)?,
        git_ref: r.get(5)?,
        sha: r.get(6)?,
        status: named(r, 7)?,
        conclusion: named_opt(r, 8)?,
        waiting_reason: r.get(9)?,
        concurrency_group: r.get(10)?,
        cancel_in_progress: r.get(11)?,
        attempt: r.get(12)?,
        created_at: r.get(13)?,
        started_at: r.get(14)?,
        finished_at: r.get(15)?,
        actor: r.get(16)?,
        run_number: r.get(17)?,
    })
}

fn repo_from_row(r: &Row) -> rusqlite::Result<Repo> {
    Ok(Repo {
        id: r.get(0)?,
        name: r.get(1)?,
        clone_url: r.get(2)?,
        forge: r.get(3)?,
        has_webhook_secret: r.get::<_, Option<Vec<u8>>>(4)?.is_some(),
        created_at: r.get(5)?,
        public: r.get(6)?,
    })
}

fn approval_from_row(r: &Row) -> rusqlite::Result<Approval> {
    Ok(Approval {
        id: r.get(0)?,
        job_id: r.get(1)?,
        run_id: r.get(2)?,
        environment: r.get(3)?,
        state: named(r, 4)?,
        reviewer: r.get(5)?,
        comment: r.get(6)?,
        created_at: r.get(7)?,
        decided_at: r.get(8)?,
    })
}

fn insert_run(tx: &Connection, run: &NewRun) -> Result<i64> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO runs (repo_id, workflow_path, workflow_name, event, git_ref, sha, status, \
         concurrency_group, cancel_in_progress, payload, context, actor, created_at, run_number) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?9, ?10, ?11, ?12, \
         (SELECT COALESCE(max(run_number), 0) + 1 FROM runs WHERE repo_id = ?1 AND workflow_path = ?2))",
        params![
            run.repo_id,
            run.workflow_path,
            run.workflow_name,
            run.event,
            run.git_ref,
            run.sha,
            run.concurrency_group,
            run.cancel_in_progress,
            run.payload.to_string(),
            run.context.to_string(),
            run.actor,
            now
        ],
    )?;
    let run_id = tx.last_insert_rowid();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO jobs (run_id, key, name, needs, labels, status, waiting_reason, environment, \
         spec, max_attempts, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'waiting', 'waiting for the scheduler', ?6, ?7, ?8, ?9)",
    )?;
    for job in &run.jobs {
        stmt.execute(params![
            run_id,
            job.key,
            job.name,
            serde_json::to_string(&job.needs)?,
            serde_json::to_string(&job.labels)?,
            job.environment,
            job.spec.to_string(),
            job.max_attempts.max(1),
            now
        ])?;
    }
    Ok(run_id)
}

impl SqliteStore {
    pub fn open(data_dir: &Path) -> Result<SqliteStore> {
        crate::fsmode::create_private_dir(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let path = data_dir.join("hangar.db");
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SQLite creates the file by the umask, and its -wal and -shm files
        // with the database's mode: 0600 before either exists.
        std::fs::set_permissions(
            &path,
            std::os::unix::fs::PermissionsExt::from_mode(crate::fsmode::FILE_MODE),
        )
        .with_context(|| format!("setting the mode of {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL: readers never block the writer; NORMAL sync is durable across process
        // crashes (the kill -9 case) and only risks the last commits on power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&conn)?;
        let secrets = SecretBox::load_or_create(&data_dir.join("secret.key"))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            secrets,
            blobs: BlobDir::new(data_dir.join("blobs")),
            path,
        })
    }

    pub fn db_path(&self) -> &Path {
        &self.path
    }

    fn c(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls
        // back any open transaction when the statement is dropped.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn query_jobs(&self, sql_where: &str, p: impl rusqlite::Params) -> Result<Vec<Job>> {
        let c = self.c();
        let mut stmt = c.prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs {sql_where}"))?;
        let rows = stmt.query_map(p, job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Jobs without their spec: the spec is only needed when a job is handed to
    /// an agent (`get_job`); leaving it out keeps scheduling many jobs cheap.
    fn query_jobs_light(&self, sql_where: &str, p: impl rusqlite::Params) -> Result<Vec<Job>> {
        let c = self.c();
        let cols = JOB_COLS.replace(", spec", ", '{}'");
        let mut stmt = c.prepare_cached(&format!("SELECT {cols} FROM jobs {sql_where}"))?;
        let rows = stmt.query_map(p, job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn query_runs(&self, sql_where: &str, p: impl rusqlite::Params) -> Result<Vec<Run>> {
        let c = self.c();
        let mut stmt = c.prepare(&format!("SELECT {RUN_COLS} FROM runs {sql_where}"))?;
        let rows = stmt.query_map(p, run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version as usize > MIGRATIONS.len() {
        anyhow::bail!(
            "the database schema is version {version}, newer than this hangar understands ({}); upgrade hangar",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .map(|m| m.sqlite)
        .enumerate()
        .skip(version as usize)
    {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("applying migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn compress(lines: &str) -> Vec<u8> {
    lz4_flex::compress_prepend_size(lines.as_bytes())
}

fn decompress(data: &[u8]) -> Vec<u8> {
    lz4_flex::decompress_size_prepended(data).unwrap_or_else(|_| b"<corrupt log chunk>\n".to_vec())
}

impl SqliteStore {
    /// Log chunks of a query selecting `idx, first_line, line_count, step,
    /// data`, decompressed outside the connection's lock.
    fn chunks(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<LogChunk>> {
        type Raw = (i64, i64, i64, Option<i64>, Vec<u8>);
        let raw: Vec<Raw> = {
            let c = self.c();
            let mut s = c.prepare_cached(sql)?;
            s.query_map(params, |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        Ok(raw
            .into_iter()
            .map(|(idx, first_line, line_count, step, d)| LogChunk {
                idx,
                first_line,
                line_count,
                step,
                data: decompress(&d),
            })
            .collect())
    }
}

impl Store for SqliteStore {
    fn create_repo(&self, repo: &NewRepo) -> Result<Repo> {
        let sealed = match &repo.webhook_secret {
            Some(s) => Some(self.secrets.seal(s.as_bytes())?),
            None => None,
        };
        let c = self.c();
        c.execute(
            "INSERT INTO repos (name, clone_url, forge, webhook_secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT(name) DO UPDATE SET clone_url = excluded.clone_url, forge = excluded.forge, \
             webhook_secret = COALESCE(excluded.webhook_secret, repos.webhook_secret)",
            params![repo.name, repo.clone_url, repo.forge, sealed, now_ms()],
        )?;
        let r = c.query_row(
            "SELECT id, name, clone_url, forge, webhook_secret, created_at, public FROM repos WHERE name = ?1",
            [&repo.name],
            repo_from_row,
        )?;
        Ok(r)
    }

    fn list_repos(&self) -> Result<Vec<Repo>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, name, clone_url, forge, webhook_secret, created_at, public FROM repos ORDER BY id",
        )?;
        Ok(s.query_map([], repo_from_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn get_repo(&self, id: i64) -> Result<Option<Repo>> {
        let c = self.c();
        Ok(c.query_row(
            "SELECT id, name, clone_url, forge, webhook_secret, created_at, public FROM repos WHERE id = ?1",
            [id],
            repo_from_row,
        )
        .optional()?)
    }

    fn find_repo(&self, name: &str) -> Result<Option<Repo>> {
        let c = self.c();
        Ok(c.query_row(
            "SELECT id, name, clone_url, forge, webhook_secret, created_at, public FROM repos WHERE name = ?1",
            [name],
            repo_from_row,
        )
        .optional()?)
    }

    fn repo_webhook_secret(&self, id: i64) -> Result<Option<String>> {
        let sealed: Option<Option<Vec<u8>>> = self
            .c()
            .query_row(
                "SELECT webhook_secret FROM repos WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        match sealed.flatten() {
            Some(s) => Ok(Some(String::from_utf8(self.secrets.open(&s)?)?)),
            None => Ok(None),
        }
    }

    fn update_repo(&self, id: i64, u: &RepoUpdate) -> Result<Option<Repo>> {
        let sealed = match &u.webhook_secret {
            Some(Some(s)) => Some(Some(self.secrets.seal(s.as_bytes())?)),
            Some(None) => Some(None),
            None => None,
        };
        let tx_conn = self.c();
        let tx = tx_conn.unchecked_transaction()?;
        if let Some(url) = &u.clone_url {
            tx.execute(
                "UPDATE repos SET clone_url = ?2 WHERE id = ?1",
                params![id, url],
            )?;
        }
        if let Some(forge) = &u.forge {
            tx.execute(
                "UPDATE repos SET forge = ?2 WHERE id = ?1",
                params![id, forge],
            )?;
        }
        if let Some(secret) = &sealed {
            tx.execute(
                "UPDATE repos SET webhook_secret = ?2 WHERE id = ?1",
                params![id, secret],
            )?;
        }
        if let Some(public) = u.public {
            tx.execute(
                "UPDATE repos SET public = ?2 WHERE id = ?1",
                params![id, public],
            )?;
        }
        let repo = tx
            .query_row(
                "SELECT id, name, clone_url, forge, webhook_secret, created_at, public FROM repos WHERE id = ?1",
                [id],
                repo_from_row,
            )
            .optional()?;
        tx.commit()?;
        Ok(repo)
    }

    fn delete_repo(&self, id: i64) -> Result<bool> {
        let conn = self.c();
        let tx = conn.unchecked_transaction()?;
        let name: Option<String> = tx
            .query_row("SELECT name FROM repos WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        let Some(name) = name else {
            return Ok(false);
        };
        // Children first, by the run and job ids they hang from. A reused
        // repository id must find nothing of this one (deliveries' ids name
        // the repository id: a leftover would make a new push a duplicate).
        let runs = "SELECT id FROM runs WHERE repo_id = ?1";
        let jobs = "SELECT id FROM jobs WHERE run_id IN (SELECT id FROM runs WHERE repo_id = ?1)";
        for sql in [
            format!("DELETE FROM steps WHERE job_id IN ({jobs})"),
            format!("DELETE FROM log_chunks WHERE job_id IN ({jobs})"),
            format!("DELETE FROM approvals WHERE run_id IN ({runs})"),
            format!("DELETE FROM deployments WHERE run_id IN ({runs})"),
            format!("DELETE FROM artifacts WHERE run_id IN ({runs})"),
            format!("DELETE FROM jobs WHERE run_id IN ({runs})"),
            "DELETE FROM runs WHERE repo_id = ?1".to_string(),
            "DELETE FROM secrets WHERE repo_id = ?1".to_string(),
            "DELETE FROM variables WHERE repo_id = ?1".to_string(),
            "DELETE FROM environments WHERE repo_id = ?1".to_string(),
            "DELETE FROM caches WHERE repo_id = ?1".to_string(),
            "DELETE FROM forge_credentials WHERE repo_id = ?1".to_string(),
            "DELETE FROM notification_rules WHERE repo_id = ?1".to_string(),
            "DELETE FROM outbound_deliveries WHERE repo_id = ?1".to_string(),
            "DELETE FROM deliveries WHERE repo_id = ?1".to_string(),
            "DELETE FROM repos WHERE id = ?1".to_string(),
        ] {
            tx.execute(&sql, [id])?;
        }
        tx.execute("DELETE FROM results_caches WHERE repository = ?1", [&name])?;
        tx.commit()?;
        Ok(true)
    }

    fn record_delivery(
        &self,
        delivery_id: &str,
        repo_id: Option<i64>,
        event: &str,
        outcome: &str,
        runs: &[NewRun],
    ) -> Result<Option<Vec<i64>>> {
        let mut c = self.c();
        let tx = c.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO deliveries (delivery_id, repo_id, event, outcome, run_ids, received_at) \
             VALUES (?1, ?2, ?3, ?4, '[]', ?5) ON CONFLICT(delivery_id) DO NOTHING",
            params![delivery_id, repo_id, event, outcome, now_ms()],
        )?;
        if inserted == 0 {
            return Ok(None);
        }
        let id = tx.last_insert_rowid();
        let mut run_ids = Vec::new();
        for run in runs {
            run_ids.push(insert_run(&tx, run)?);
        }
        tx.execute(
            "UPDATE deliveries SET run_ids = ?1 WHERE id = ?2",
            params![serde_json::to_string(&run_ids)?, id],
        )?;
        tx.commit()?;
        Ok(Some(run_ids))
    }

    fn list_deliveries(&self, limit: i64) -> Result<Vec<Delivery>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, delivery_id, repo_id, event, outcome, run_ids, received_at FROM deliveries ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = s.query_map([limit], |r| {
            Ok(Delivery {
                id: r.get(0)?,
                delivery_id: r.get(1)?,
                repo_id: r.get(2)?,
                event: r.get(3)?,
                outcome: r.get(4)?,
                run_ids: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
                received_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn latest_delivery_with_prefix(&self, repo_id: i64, prefix: &str) -> Result<Option<String>> {
        // substr, not LIKE: a ref name may hold `%` or `_`.
        Ok(self
            .c()
            .query_row(
                "SELECT delivery_id FROM deliveries WHERE repo_id = ?1 \
                 AND substr(delivery_id, 1, length(?2)) = ?2 ORDER BY id DESC LIMIT 1",
                params![repo_id, prefix],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn create_run(&self, run: &NewRun) -> Result<i64> {
        let mut c = self.c();
        let tx = c.transaction()?;
        let id = insert_run(&tx, run)?;
        tx.commit()?;
        Ok(id)
    }

    fn get_run(&self, id: i64) -> Result<Option<Run>> {
        Ok(self.query_runs("WHERE id = ?1", [id])?.pop())
    }

    fn run_context(&self, id: i64) -> Result<serde_json::Value> {
        let s: String =
            self.c()
                .query_row("SELECT context FROM runs WHERE id = ?1", [id], |r| r.get(0))?;
        Ok(serde_json::from_str(&s)?)
    }

    fn run_payload(&self, id: i64) -> Result<serde_json::Value> {
        let s: String =
            self.c()
                .query_row("SELECT payload FROM runs WHERE id = ?1", [id], |r| r.get(0))?;
        Ok(serde_json::from_str(&s)?)
    }

    fn list_runs(&self, f: &RunFilter) -> Result<Vec<Run>> {
        let (cond, values) = run_filter_sql(f);
        let mut values = values;
        values.push(f.before.into());
        values.push(f.limit.unwrap_or(100).into());
        let n = values.len();
        self.query_runs(
            &format!(
                "WHERE {cond} AND (?{} IS NULL OR id < ?{}) ORDER BY id DESC LIMIT ?{n}",
                n - 1,
                n - 1
            ),
            rusqlite::params_from_iter(values),
        )
    }

    fn count_runs(&self, f: &RunFilter) -> Result<i64> {
        let (cond, values) = run_filter_sql(f);
        Ok(self.c().query_row(
            &format!("SELECT COUNT(*) FROM runs WHERE {cond}"),
            rusqlite::params_from_iter(values),
            |r| r.get(0),
        )?)
    }

    fn active_runs(&self) -> Result<Vec<Run>> {
        self.query_runs("WHERE status != 'completed' ORDER BY id", [])
    }

    fn set_run_status(
        &self,
        id: i64,
        status: Status,
        conclusion: Option<Conclusion>,
        waiting: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        self.c().execute(
            "UPDATE runs SET status = ?2, conclusion = ?3, waiting_reason = ?4, \
             started_at = CASE WHEN ?2 = 'running' AND started_at IS NULL THEN ?5 ELSE started_at END, \
             finished_at = CASE WHEN ?2 = 'completed' THEN ?5 ELSE NULL END WHERE id = ?1",
            params![id, status.as_str(), conclusion.map(Conclusion::as_str), waiting, now],
        )?;
        Ok(())
    }

    fn jobs_of_run(&self, run_id: i64) -> Result<Vec<Job>> {
        self.query_jobs_light("WHERE run_id = ?1 ORDER BY id", [run_id])
    }

    fn jobs_of_run_in(&self, run_id: i64, status: Status) -> Result<Vec<Job>> {
        self.query_jobs_light(
            "WHERE run_id = ?1 AND status = ?2 ORDER BY id",
            params![run_id, status.as_str()],
        )
    }

    fn add_jobs(&self, run_id: i64, jobs: &[NewJob]) -> Result<Vec<i64>> {
        let mut c = self.c();
        let tx = c.transaction()?;
        let mut ids = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO jobs (run_id, key, name, needs, labels, status, waiting_reason, environment, \
                 spec, max_attempts, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'waiting', 'waiting for the scheduler', ?6, ?7, ?8, ?9)",
            )?;
            for job in jobs {
                stmt.execute(params![
                    run_id,
                    job.key,
                    job.name,
                    serde_json::to_string(&job.needs)?,
                    serde_json::to_string(&job.labels)?,
                    job.environment,
                    job.spec.to_string(),
                    job.max_attempts.max(1),
                    now_ms()
                ])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    fn set_job_spec(&self, job_id: i64, name: &str, spec: &serde_json::Value) -> Result<()> {
        self.c().execute(
            "UPDATE jobs SET name = ?2, spec = ?3 WHERE id = ?1",
            params![job_id, name, spec.to_string()],
        )?;
        Ok(())
    }

    fn set_job_group(&self, job_id: i64, group: Option<&str>) -> Result<()> {
        self.c().execute(
            "UPDATE jobs SET concurrency_group = ?2 WHERE id = ?1",
            params![job_id, group],
        )?;
        Ok(())
    }

    fn jobs_in_group(&self, group: &str) -> Result<Vec<Job>> {
        self.query_jobs_light(
            "WHERE concurrency_group = ?1 AND status != 'completed' ORDER BY id",
            [group],
        )
    }

    fn job_group(&self, job_id: i64) -> Result<Option<String>> {
        Ok(self
            .c()
            .query_row(
                "SELECT concurrency_group FROM jobs WHERE id = ?1",
                [job_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    fn job_counts(&self, run_id: i64) -> Result<JobCounts> {
        Ok(self.c().query_row(
            "SELECT count(*), \
             COALESCE(sum(status = 'completed'), 0), COALESCE(sum(status = 'running'), 0), \
             COALESCE(sum(status = 'completed' AND conclusion = 'failure' AND continue_on_error = 0), 0), \
             COALESCE(sum(status = 'completed' AND conclusion = 'cancelled'), 0) FROM jobs WHERE run_id = ?1",
            [run_id],
            |r| Ok(JobCounts { total: r.get(0)?, completed: r.get(1)?, running: r.get(2)?, failed: r.get(3)?, cancelled: r.get(4)? }),
        )?)
    }

    fn get_job(&self, id: i64) -> Result<Option<Job>> {
        Ok(self.query_jobs("WHERE id = ?1", [id])?.pop())
    }

    fn update_job(&self, id: i64, u: &JobUpdate) -> Result<()> {
        let c = self.c();
        if let Some(s) = &u.status {
            c.execute(
                "UPDATE jobs SET status = ?2 WHERE id = ?1",
                params![id, s.as_str()],
            )?;
        }
        if let Some(v) = &u.conclusion {
            c.execute(
                "UPDATE jobs SET conclusion = ?2 WHERE id = ?1",
                params![id, v.map(Conclusion::as_str)],
            )?;
        }
        if let Some(v) = &u.waiting_reason {
            c.execute(
                "UPDATE jobs SET waiting_reason = ?2 WHERE id = ?1",
                params![id, v],
            )?;
        }
        if let Some(v) = u.approved {
            c.execute(
                "UPDATE jobs SET approved = ?2 WHERE id = ?1",
                params![id, v],
            )?;
        }
        if let Some(v) = u.not_before {
            c.execute(
                "UPDATE jobs SET not_before = ?2 WHERE id = ?1",
                params![id, v],
            )?;
        }
        if let Some(v) = u.continue_on_error {
            c.execute(
                "UPDATE jobs SET continue_on_error = ?2 WHERE id = ?1",
                params![id, v],
            )?;
        }
        if let Some(v) = u.finished_at {
            c.execute(
                "UPDATE jobs SET finished_at = ?2, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1",
                params![id, v],
            )?;
        }
        if let Some(v) = &u.environment {
            c.execute(
                "UPDATE jobs SET environment = ?2 WHERE id = ?1",
                params![id, v],
            )?;
        }
        if let Some(v) = &u.outputs {
            c.execute(
                "UPDATE jobs SET outputs = ?2 WHERE id = ?1",
                params![id, v.to_string()],
            )?;
        }
        if let Some(v) = &u.labels {
            c.execute(
                "UPDATE jobs SET labels = ?2 WHERE id = ?1",
                params![id, serde_json::to_string(v)?],
            )?;
        }
        Ok(())
    }

    fn request_cancel(&self, job_id: i64) -> Result<()> {
        self.c().execute(
            "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1",
            [job_id],
        )?;
        Ok(())
    }

    fn reset_jobs(&self, run_id: i64, job_ids: &[i64], max_attempts: i64) -> Result<()> {
        let mut c = self.c();
        let tx = c.transaction()?;
        for id in job_ids {
            tx.execute(
                "UPDATE jobs SET status = 'waiting', conclusion = NULL, waiting_reason = 'waiting for the scheduler', \
                 outputs = '{}', lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0, approved = 0, \
                 continue_on_error = 0, not_before = NULL, started_at = NULL, finished_at = NULL, max_attempts = attempt + ?3 \
                 WHERE id = ?1 AND run_id = ?2",
                params![id, run_id, max_attempts.max(1)],
            )?;
        }
        tx.execute(
            "UPDATE runs SET status = 'queued', conclusion = NULL, finished_at = NULL, attempt = attempt + 1 WHERE id = ?1",
            [run_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn upsert_step(&self, s: &Step) -> Result<()> {
        self.c().execute(
            "INSERT INTO steps (job_id, attempt, idx, name, status, conclusion, started_at, finished_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(job_id, attempt, idx) DO UPDATE SET name = excluded.name, \
             status = excluded.status, conclusion = excluded.conclusion, \
             started_at = COALESCE(steps.started_at, excluded.started_at), finished_at = excluded.finished_at",
            params![s.job_id, s.attempt, s.idx, s.name, s.status.as_str(), s.conclusion.map(Conclusion::as_str), s.started_at, s.finished_at],
        )?;
        Ok(())
    }

    fn steps_of_job(&self, job_id: i64, attempt: Option<i64>) -> Result<Vec<Step>> {
        let c = self.c();
        let mut s = c.prepare_cached(
            "SELECT job_id, attempt, idx, name, status, conclusion, started_at, finished_at FROM steps \
             WHERE job_id = ?1 AND attempt = COALESCE(?2, (SELECT max(attempt, 1) FROM jobs WHERE id = ?1)) ORDER BY idx",
        )?;
        let rows = s.query_map(params![job_id, attempt], |r| {
            Ok(Step {
                job_id: r.get(0)?,
                attempt: r.get(1)?,
                idx: r.get(2)?,
                name: r.get(3)?,
                status: named(r, 4)?,
                conclusion: named_opt(r, 5)?,
                started_at: r.get(6)?,
                finished_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn runnable_jobs(&self, labels: &[String], limit: i64) -> Result<Vec<Job>> {
        // Label matching happens here in Rust (a job's labels must all be offered):
        // it keeps the SQL portable, and the queued set is small.
        let jobs = self.query_jobs(
            "WHERE status = 'queued' ORDER BY id LIMIT ?1",
            [limit.max(1) * 8],
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
        let changed = self.c().execute(
            "UPDATE jobs SET status = 'running', lease_owner = ?2, lease_expires_at = ?3, fence = fence + 1, \
             attempt = attempt + 1, waiting_reason = NULL, started_at = ?4 WHERE id = ?1 AND status = 'queued'",
            params![job_id, agent, expires, now],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        let job = self.get_job(job_id)?.context("claimed job vanished")?;
        Ok(Some(Lease {
            fence: job.fence,
            expires_at: expires,
            job,
        }))
    }

    fn heartbeat(&self, job_id: i64, fence: i64, lease_ms: i64) -> Result<LeaseCheck> {
        // Agents beat often so that a cancel reaches them quickly; the lease row is
        // rewritten only once a third of it has been used, so most beats only read.
        let c = self.c();
        let row: Option<(i64, Status, bool, Option<i64>)> = c
            .query_row(
                "SELECT fence, status, cancel_requested, lease_expires_at FROM jobs WHERE id = ?1",
                [job_id],
                |r| Ok((r.get(0)?, named(r, 1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((current, status, cancel, expires)) = row else {
            return Ok(LeaseCheck::Lost);
        };
        if current != fence || status != Status::Running {
            return Ok(LeaseCheck::Lost);
        }
        let now = now_ms();
        if expires.unwrap_or(0) < now + lease_ms * 2 / 3 {
            let changed = c.execute(
                "UPDATE jobs SET lease_expires_at = ?3 WHERE id = ?1 AND fence = ?2 AND status = 'running'",
                params![job_id, fence, now + lease_ms],
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
        let changed = self.c().execute(
            "UPDATE jobs SET status = 'completed', conclusion = ?3, outputs = ?4, finished_at = ?5, \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1 AND fence = ?2 AND status = 'running'",
            params![job_id, fence, conclusion.as_str(), outputs.to_string(), now_ms()],
        )?;
        Ok(changed == 1)
    }

    fn expired_leases(&self, now: Millis) -> Result<Vec<Job>> {
        self.query_jobs(
            "WHERE status = 'running' AND lease_expires_at < ?1 ORDER BY id",
            [now],
        )
    }

    fn jobs_leased_by_prefix(&self, owner_prefix: &str) -> Result<Vec<Job>> {
        self.query_jobs(
            "WHERE status = 'running' AND substr(lease_owner, 1, length(?1)) = ?1 ORDER BY id",
            [owner_prefix],
        )
    }

    fn release_lease(&self, job_id: i64, fence: i64, requeue: bool, reason: &str) -> Result<bool> {
        let c = self.c();
        let changed = if requeue {
            c.execute(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, waiting_reason = ?3 \
                 WHERE id = ?1 AND fence = ?2 AND status = 'running'",
                params![job_id, fence, reason],
            )?
        } else {
            c.execute(
                "UPDATE jobs SET status = 'completed', conclusion = 'failure', lease_owner = NULL, \
                 lease_expires_at = NULL, waiting_reason = ?3, finished_at = ?4 \
                 WHERE id = ?1 AND fence = ?2 AND status = 'running'",
                params![job_id, fence, reason, now_ms()],
            )?
        };
        if changed == 1 && !requeue {
            // Steps that were running when the agent vanished did not finish.
            c.execute(
                "UPDATE steps SET status = 'completed', conclusion = 'failure', finished_at = ?2 \
                 WHERE job_id = ?1 AND status != 'completed'",
                params![job_id, now_ms()],
            )?;
        }
        Ok(changed == 1)
    }

    fn queue_depth(&self) -> Result<i64> {
        Ok(self.c().query_row(
            "SELECT count(*) FROM jobs WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?)
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
        // Compress outside the lock so concurrent uploads overlap.
        let data = compress(lines);
        let changed = self.c().execute(
            "INSERT INTO log_chunks (job_id, attempt, idx, first_line, line_count, raw_len, data, step) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(job_id, attempt, idx) DO NOTHING",
            params![
                job_id,
                attempt,
                idx,
                first_line,
                line_count,
                lines.len() as i64,
                data,
                step
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
        self.chunks(
            "SELECT idx, first_line, line_count, step, data FROM log_chunks WHERE job_id = ?1 AND idx >= ?2 \
             AND attempt = COALESCE(?3, (SELECT max(attempt, 1) FROM jobs WHERE id = ?1)) ORDER BY idx",
            params![job_id, from_idx, attempt],
        )
    }

    fn log_chunks_for_lines(
        &self,
        job_id: i64,
        attempt: Option<i64>,
        from: i64,
        to: i64,
    ) -> Result<Vec<LogChunk>> {
        self.chunks(
            "SELECT idx, first_line, line_count, step, data FROM log_chunks WHERE job_id = ?1 \
             AND first_line < ?3 AND first_line + line_count > ?2 \
             AND attempt = COALESCE(?4, (SELECT max(attempt, 1) FROM jobs WHERE id = ?1)) ORDER BY idx",
            params![job_id, from, to, attempt],
        )
    }

    fn log_chunks_of_step(
        &self,
        job_id: i64,
        attempt: Option<i64>,
        step: Option<i64>,
    ) -> Result<Vec<LogChunk>> {
        // `IS`: NULL matches the chunks of no step.
        self.chunks(
            "SELECT idx, first_line, line_count, step, data FROM log_chunks WHERE job_id = ?1 \
             AND step IS ?3 \
             AND attempt = COALESCE(?2, (SELECT max(attempt, 1) FROM jobs WHERE id = ?1)) ORDER BY idx",
            params![job_id, attempt, step],
        )
    }

    fn log_lines_by_step(
        &self,
        job_id: i64,
        attempt: Option<i64>,
    ) -> Result<Vec<(Option<i64>, i64)>> {
        let c = self.c();
        let mut s = c.prepare_cached(
            "SELECT step, sum(line_count) FROM log_chunks WHERE job_id = ?1 \
             AND attempt = COALESCE(?2, (SELECT max(attempt, 1) FROM jobs WHERE id = ?1)) \
             GROUP BY step ORDER BY step",
        )?;
        Ok(
            s.query_map(params![job_id, attempt], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?,
        )
    }

    fn log_attempts(&self, job_id: i64) -> Result<Vec<i64>> {
        let c = self.c();
        let mut s = c.prepare_cached(
            "SELECT attempt FROM log_chunks WHERE job_id = ?1 UNION SELECT attempt FROM steps WHERE job_id = ?1 ORDER BY 1",
        )?;
        Ok(s.query_map([job_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn log_stats(&self, job_id: i64, attempt: Option<i64>) -> Result<(i64, i64)> {
        Ok(self.c().query_row(
            "SELECT count(*), COALESCE(max(first_line + line_count), 0) FROM log_chunks WHERE job_id = ?1 \
             AND attempt = COALESCE(?2, (SELECT max(attempt, 1) FROM jobs WHERE id = ?1))",
            params![job_id, attempt],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    fn log_bytes(&self, job_id: i64, attempt: i64) -> Result<i64> {
        Ok(self.c().query_row(
            "SELECT COALESCE(sum(raw_len), 0) FROM log_chunks WHERE job_id = ?1 AND attempt = ?2",
            params![job_id, attempt],
            |r| r.get(0),
        )?)
    }

    fn set_secret(&self, repo_id: Option<i64>, name: &str, value: &str) -> Result<()> {
        let sealed = self.secrets.seal(value.as_bytes())?;
        self.c().execute(
            "INSERT INTO secrets (repo_id, environment, name, sealed, updated_at) VALUES (?1, '', ?2, ?3, ?4) \
             ON CONFLICT(repo_id, environment, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            params![repo_id.unwrap_or(0), name, sealed, now_ms()],
        )?;
        Ok(())
    }

    fn delete_secret(&self, repo_id: Option<i64>, name: &str) -> Result<bool> {
        Ok(self.c().execute(
            "DELETE FROM secrets WHERE repo_id = ?1 AND environment = '' AND name = ?2",
            params![repo_id.unwrap_or(0), name],
        )? == 1)
    }

    fn secret_names(&self, repo_id: Option<i64>) -> Result<Vec<String>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT name FROM secrets WHERE repo_id = ?1 AND environment = '' ORDER BY name",
        )?;
        Ok(s.query_map([repo_id.unwrap_or(0)], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn secrets_for_repo(&self, repo_id: i64) -> Result<BTreeMap<String, String>> {
        let rows: Vec<(String, Vec<u8>)> = {
            let c = self.c();
            let mut s = c.prepare_cached(
                "SELECT name, sealed FROM secrets WHERE repo_id IN (0, ?1) AND environment = '' ORDER BY repo_id",
            )?;
            s.query_map([repo_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut out = BTreeMap::new();
        for (name, sealed) in rows {
            out.insert(name, String::from_utf8(self.secrets.open(&sealed)?)?);
        }
        Ok(out)
    }

    fn set_variable(&self, repo_id: Option<i64>, name: &str, value: &str) -> Result<()> {
        self.c().execute(
            "INSERT INTO variables (repo_id, environment, name, value) VALUES (?1, '', ?2, ?3) \
             ON CONFLICT(repo_id, environment, name) DO UPDATE SET value = excluded.value",
            params![repo_id.unwrap_or(0), name, value],
        )?;
        Ok(())
    }

    fn variables_for_repo(&self, repo_id: i64) -> Result<BTreeMap<String, String>> {
        let c = self.c();
        let mut s = c.prepare_cached(
            "SELECT name, value FROM variables WHERE repo_id IN (0, ?1) AND environment = '' ORDER BY repo_id",
        )?;
        let rows = s.query_map([repo_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn variable_names(&self, repo_id: Option<i64>, env: &str) -> Result<Vec<String>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT name FROM variables WHERE repo_id = ?1 AND environment = ?2 ORDER BY name",
        )?;
        Ok(
            s.query_map(params![repo_id.unwrap_or(0), env], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?,
        )
    }

    fn delete_variable(&self, repo_id: Option<i64>, env: &str, name: &str) -> Result<bool> {
        Ok(self.c().execute(
            "DELETE FROM variables WHERE repo_id = ?1 AND environment = ?2 AND name = ?3",
            params![repo_id.unwrap_or(0), env, name],
        )? == 1)
    }

    fn set_environment(&self, repo_id: i64, name: &str, p: &Protection) -> Result<()> {
        self.c().execute(
            "INSERT INTO environments (repo_id, name, protection) VALUES (?1, ?2, ?3) \
             ON CONFLICT(repo_id, name) DO UPDATE SET protection = excluded.protection",
            params![repo_id, name, serde_json::to_string(p)?],
        )?;
        Ok(())
    }

    fn get_environment(&self, repo_id: i64, name: &str) -> Result<Option<Protection>> {
        let s: Option<String> = self
            .c()
            .query_row(
                "SELECT protection FROM environments WHERE repo_id = ?1 AND name = ?2",
                params![repo_id, name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(s.map(|s| serde_json::from_str(&s)).transpose()?)
    }

    fn set_env_secret(&self, repo_id: i64, env: &str, name: &str, value: &str) -> Result<()> {
        let sealed = self.secrets.seal(value.as_bytes())?;
        self.c().execute(
            "INSERT INTO secrets (repo_id, environment, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT(repo_id, environment, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            params![repo_id, env, name, sealed, now_ms()],
        )?;
        Ok(())
    }

    fn delete_env_secret(&self, repo_id: i64, env: &str, name: &str) -> Result<bool> {
        Ok(self.c().execute(
            "DELETE FROM secrets WHERE repo_id = ?1 AND environment = ?2 AND name = ?3",
            params![repo_id, env, name],
        )? == 1)
    }

    fn env_secret_names(&self, repo_id: i64, env: &str) -> Result<Vec<String>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT name FROM secrets WHERE repo_id = ?1 AND environment = ?2 ORDER BY name",
        )?;
        Ok(s.query_map(params![repo_id, env], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn env_secrets(&self, repo_id: i64, env: Option<&str>) -> Result<BTreeMap<String, String>> {
        let rows: Vec<(String, String, Vec<u8>)> = {
            let c = self.c();
            let mut s = c.prepare_cached(
                "SELECT environment, name, sealed FROM secrets WHERE repo_id = ?1 AND environment <> '' \
                 AND (?2 IS NULL OR environment = ?2) ORDER BY environment, name",
            )?;
            s.query_map(params![repo_id, env], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        let mut out = BTreeMap::new();
        for (environment, name, sealed) in rows {
            let value = String::from_utf8(self.secrets.open(&sealed)?)?;
            let key = if env.is_some() {
                name
            } else {
                format!("{environment}/{name}")
            };
            out.insert(key, value);
        }
        Ok(out)
    }

    fn set_env_variable(&self, repo_id: i64, env: &str, name: &str, value: &str) -> Result<()> {
        self.c().execute(
            "INSERT INTO variables (repo_id, environment, name, value) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(repo_id, environment, name) DO UPDATE SET value = excluded.value",
            params![repo_id, env, name, value],
        )?;
        Ok(())
    }

    fn env_variables(&self, repo_id: i64, env: &str) -> Result<BTreeMap<String, String>> {
        let c = self.c();
        let mut s = c.prepare_cached(
            "SELECT name, value FROM variables WHERE repo_id = ?1 AND environment = ?2 AND environment <> ''",
        )?;
        let rows = s.query_map(params![repo_id, env], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_environments_loaded(&self, repo_id: i64) -> Result<()> {
        self.c().execute(
            "UPDATE repos SET environments_loaded_at = ?2 WHERE id = ?1",
            params![repo_id, now_ms()],
        )?;
        Ok(())
    }

    fn environments_loaded(&self, repo_id: i64) -> Result<bool> {
        let at: Option<Option<i64>> = self
            .c()
            .query_row(
                "SELECT environments_loaded_at FROM repos WHERE id = ?1",
                [repo_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(at.flatten().is_some())
    }

    fn set_approval_policy(&self, repo_id: i64, policy: &str) -> Result<bool> {
        Ok(self.c().execute(
            "UPDATE repos SET approval_policy = ?2 WHERE id = ?1",
            params![repo_id, policy],
        )? == 1)
    }

    fn approval_policy(&self, repo_id: i64) -> Result<String> {
        let p: Option<String> = self
            .c()
            .query_row(
                "SELECT approval_policy FROM repos WHERE id = ?1",
                [repo_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(p.unwrap_or_else(|| "none".into()))
    }

    fn set_run_held(&self, run_id: i64, held: bool) -> Result<()> {
        self.c().execute(
            "UPDATE runs SET held = ?2 WHERE id = ?1",
            params![run_id, held],
        )?;
        Ok(())
    }

    fn run_held(&self, run_id: i64) -> Result<bool> {
        let h: Option<bool> = self
            .c()
            .query_row("SELECT held FROM runs WHERE id = ?1", [run_id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(h.unwrap_or(false))
    }

    fn create_approval(&self, job_id: i64, run_id: i64, environment: &str) -> Result<i64> {
        let c = self.c();
        c.execute(
            "INSERT INTO approvals (job_id, run_id, environment, state, created_at, run_attempt) \
             VALUES (?1, ?2, ?3, 'pending', ?4, (SELECT attempt FROM runs WHERE id = ?2))",
            params![job_id, run_id, environment, now_ms()],
        )?;
        Ok(c.last_insert_rowid())
    }

    fn expire_approvals(&self, run_id: i64, reason: &str) -> Result<usize> {
        Ok(self.c().execute(
            "UPDATE approvals SET state = 'cancelled', comment = ?2, decided_at = ?3 WHERE run_id = ?1 AND state = 'pending'",
            params![run_id, reason, now_ms()],
        )?)
    }

    fn decide_approval(
        &self,
        id: i64,
        approve: bool,
        reviewer: &str,
        comment: &str,
    ) -> Result<Option<Approval>> {
        let c = self.c();
        let changed = c.execute(
            "UPDATE approvals SET state = ?2, reviewer = ?3, comment = ?4, decided_at = ?5 WHERE id = ?1 AND state = 'pending'",
            params![id, if approve { ApprovalState::Approved } else { ApprovalState::Rejected }.as_str(), reviewer, comment, now_ms()],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        Ok(c.query_row(
            "SELECT id, job_id, run_id, environment, state, reviewer, comment, created_at, decided_at FROM approvals WHERE id = ?1",
            [id],
            approval_from_row,
        )
        .optional()?)
    }

    fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, job_id, run_id, environment, state, reviewer, comment, created_at, decided_at FROM approvals \
             WHERE (?1 = 0 OR state = 'pending') ORDER BY id DESC LIMIT 200",
        )?;
        Ok(s.query_map([pending_only], approval_from_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn approvals_of_job(&self, job_id: i64) -> Result<Vec<Approval>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, job_id, run_id, environment, state, reviewer, comment, created_at, decided_at FROM approvals \
             WHERE job_id = ?1 AND run_attempt = (SELECT attempt FROM runs WHERE runs.id = approvals.run_id) ORDER BY id",
        )?;
        Ok(s.query_map([job_id], approval_from_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn record_deployment(
        &self,
        run_id: i64,
        job_id: i64,
        env: &str,
        sha: &str,
        status: Conclusion,
    ) -> Result<i64> {
        let c = self.c();
        c.execute(
            "INSERT INTO deployments (run_id, job_id, environment, sha, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run_id, job_id, env, sha, status.as_str(), now_ms()],
        )?;
        Ok(c.last_insert_rowid())
    }

    fn list_deployments(&self, env: Option<&str>) -> Result<Vec<Deployment>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, run_id, job_id, environment, sha, status, created_at FROM deployments \
             WHERE (?1 IS NULL OR environment = ?1) ORDER BY id DESC LIMIT 200",
        )?;
        let rows = s.query_map([env], |r| {
            Ok(Deployment {
                id: r.get(0)?,
                run_id: r.get(1)?,
                job_id: r.get(2)?,
                environment: r.get(3)?,
                sha: r.get(4)?,
                status: named(r, 5)?,
                created_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn upsert_agent(&self, a: &Agent) -> Result<()> {
        self.c().execute(
            "INSERT INTO agents (id, name, labels, capacity, last_seen, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, labels = excluded.labels, \
             capacity = excluded.capacity, last_seen = excluded.last_seen",
            params![a.id, a.name, serde_json::to_string(&a.labels)?, a.capacity, a.last_seen, a.created_at],
        )?;
        Ok(())
    }

    fn list_agents(&self) -> Result<Vec<Agent>> {
        let c = self.c();
        let mut s =
            c.prepare("SELECT id, name, labels, capacity, last_seen, created_at, drained, token_id FROM agents ORDER BY last_seen DESC")?;
        let rows = s.query_map([], agent_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_agent_drained(&self, id: &str, drained: bool) -> Result<bool> {
        Ok(self.c().execute(
            "UPDATE agents SET drained = ?2 WHERE id = ?1",
            params![id, drained],
        )? == 1)
    }

    fn agent_drained(&self, id: &str) -> Result<bool> {
        Ok(self
            .c()
            .query_row("SELECT drained FROM agents WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(true))
    }

    fn delete_agent(&self, id: &str) -> Result<bool> {
        Ok(self.c().execute("DELETE FROM agents WHERE id = ?1", [id])? == 1)
    }

    fn register_agent(&self, a: &Agent) -> Result<Option<String>> {
        let credential = random_credential()?;
        let added = self.c().execute(
            "INSERT INTO agents (id, name, labels, capacity, last_seen, created_at, drained, token_id, credential_hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(id) DO NOTHING",
            params![
                a.id,
                a.name,
                serde_json::to_string(&a.labels)?,
                a.capacity,
                a.last_seen,
                a.created_at,
                a.drained,
                a.token_id,
                sha256_hex(credential.as_bytes())
            ],
        )?;
        Ok((added == 1).then_some(credential))
    }

    fn verify_agent_credential(&self, plaintext: &str) -> Result<Option<AgentCredential>> {
        let hash = sha256_hex(plaintext.as_bytes());
        let c = self.c();
        // A revoked token's agents are out with it; an expired one's stay (a
        // registration token may be made to expire once used).
        let found = c
            .query_row(
                "SELECT a.id, a.name, a.labels, a.capacity, a.last_seen, a.created_at, a.drained, a.token_id, \
                 t.id, t.name, t.role, t.created_at, t.expires_at, t.revoked_at, t.scope, t.reusable, t.used_at \
                 FROM agents a LEFT JOIN api_tokens t ON t.id = a.token_id \
                 WHERE a.credential_hash = ?1 \
                 AND (a.token_id IS NULL OR (t.id IS NOT NULL AND t.revoked_at IS NULL))",
                [hash],
                |r| {
                    let agent = agent_row(r)?;
                    let token = match r.get::<_, Option<i64>>(8)? {
                        None => None,
                        Some(_) => Some(token_row(r, 8)?),
                    };
                    Ok((agent, token))
                },
            )
            .optional()?;
        let Some((agent, token)) = found else {
            return Ok(None);
        };
        let token = match token {
            None => None,
            // A token of a role this build does not know admits no agent.
            Some(row) => match row.into_info()? {
                None => return Ok(None),
                known => known,
            },
        };
        Ok(Some(AgentCredential { agent, token }))
    }

    fn touch_agent(&self, a: &Agent) -> Result<bool> {
        Ok(self.c().execute(
            "UPDATE agents SET name = ?2, labels = ?3, capacity = ?4, last_seen = ?5 WHERE id = ?1",
            params![
                a.id,
                a.name,
                serde_json::to_string(&a.labels)?,
                a.capacity,
                a.last_seen
            ],
        )? == 1)
    }

    fn remove_agent(&self, id: &str) -> Result<Option<Agent>> {
        let row = self
            .c()
            .query_row(
                "DELETE FROM agents WHERE id = ?1 \
                 RETURNING id, name, labels, capacity, last_seen, created_at, drained, token_id",
                [id],
                agent_row,
            )
            .optional()?;
        Ok(row)
    }

    fn use_token_once(&self, id: i64) -> Result<bool> {
        Ok(self.c().execute(
            "UPDATE api_tokens SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL",
            params![id, now_ms()],
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
        let c = self.c();
        c.execute(
            "INSERT INTO api_tokens (name, role, hash, created_at, expires_at, scope, reusable) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                name,
                role.as_str(),
                sha256_hex(token.as_bytes()),
                now_ms(),
                expires_at,
                serde_json::to_string(scope)?,
                reusable
            ],
        )?;
        Ok((c.last_insert_rowid(), token))
    }

    fn revoke_token(&self, id: i64) -> Result<bool> {
        Ok(self.c().execute(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now_ms()],
        )? == 1)
    }

    fn verify_token(&self, plaintext: &str) -> Result<Option<TokenInfo>> {
        // Looking up by the hash is safe against timing attacks: the attacker does not
        // control the hash prefix being compared.
        let hash = sha256_hex(plaintext.as_bytes());
        // An expired or revoked token is no token: the caller sees the same
        // answer as for an unknown one.
        let row = self
            .c()
            .query_row(
                "SELECT id, name, role, created_at, expires_at, revoked_at, scope, reusable, used_at \
                 FROM api_tokens WHERE hash = ?1 \
                 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
                params![hash, now_ms()],
                |r| token_row(r, 0),
            )
            .optional()?;
        match row {
            Some(row) => row.into_info(),
            None => Ok(None),
        }
    }

    fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, name, role, created_at, expires_at, revoked_at, scope, reusable, used_at FROM api_tokens ORDER BY id",
        )?;
        let rows = s.query_map([], |r| token_row(r, 0))?;
        let mut out = Vec::new();
        for row in rows {
            // A token of a role this build does not know is not listed.
            out.extend(row?.into_info()?);
        }
        Ok(out)
    }

    fn token_count(&self) -> Result<i64> {
        Ok(self
            .c()
            .query_row("SELECT count(*) FROM api_tokens", [], |r| r.get(0))?)
    }

    fn schema_version(&self) -> Result<i64> {
        Ok(self
            .c()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        self.c().execute(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now_ms(), actor, action, target, detail.to_string()],
        )?;
        Ok(())
    }

    fn list_audit(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = s.query_map([limit], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                detail: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_forge_credential(&self, repo_id: i64, cred: &ForgeCredential) -> Result<()> {
        let sealed = self.secrets.seal(cred.token.as_bytes())?;
        self.c().execute(
            "INSERT INTO forge_credentials (repo_id, kind, api_url, project, sealed, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(repo_id) DO UPDATE SET kind = excluded.kind, \
             api_url = excluded.api_url, project = excluded.project, sealed = excluded.sealed, \
             updated_at = excluded.updated_at",
            params![repo_id, cred.kind, cred.api_url, cred.project, sealed, now_ms()],
        )?;
        Ok(())
    }

    fn forge_credential(&self, repo_id: i64) -> Result<Option<ForgeCredential>> {
        let row: Option<(String, String, String, Vec<u8>)> = self
            .c()
            .query_row(
                "SELECT kind, api_url, project, sealed FROM forge_credentials WHERE repo_id = ?1",
                [repo_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        match row {
            Some((kind, api_url, project, sealed)) => Ok(Some(ForgeCredential {
                kind,
                api_url,
                project,
                token: String::from_utf8(self.secrets.open(&sealed)?)?,
            })),
            None => Ok(None),
        }
    }

    fn delete_forge_credential(&self, repo_id: i64) -> Result<bool> {
        Ok(self.c().execute(
            "DELETE FROM forge_credentials WHERE repo_id = ?1",
            [repo_id],
        )? > 0)
    }

    fn create_notification_rule(&self, rule: &NotificationRule) -> Result<i64> {
        let target = self.secrets.seal(rule.target.as_bytes())?;
        let secret = match &rule.secret {
            Some(s) => Some(self.secrets.seal(s.as_bytes())?),
            None => None,
        };
        let c = self.c();
        c.execute(
            "INSERT INTO notification_rules (repo_id, events, channel, target, secret, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                rule.repo_id,
                serde_json::to_string(&rule.events)?,
                rule.channel,
                target,
                secret,
                now_ms()
            ],
        )?;
        Ok(c.last_insert_rowid())
    }

    fn notification_rules(&self) -> Result<Vec<NotificationRule>> {
        type Raw = (
            i64,
            Option<i64>,
            String,
            String,
            Vec<u8>,
            Option<Vec<u8>>,
            i64,
        );
        let raw: Vec<Raw> = {
            let c = self.c();
            let mut s = c.prepare(
                "SELECT id, repo_id, events, channel, target, secret, created_at \
                 FROM notification_rules ORDER BY id",
            )?;
            s.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        raw.into_iter()
            .map(
                |(id, repo_id, events, channel, target, secret, created_at)| {
                    Ok(NotificationRule {
                        id,
                        repo_id,
                        events: serde_json::from_str(&events)?,
                        channel,
                        target: String::from_utf8(self.secrets.open(&target)?)?,
                        secret: match secret {
                            Some(s) => Some(String::from_utf8(self.secrets.open(&s)?)?),
                            None => None,
                        },
                        created_at,
                    })
                },
            )
            .collect()
    }

    fn delete_notification_rule(&self, id: i64) -> Result<bool> {
        Ok(self
            .c()
            .execute("DELETE FROM notification_rules WHERE id = ?1", [id])?
            > 0)
    }

    fn record_outbound(&self, d: &NewOutbound) -> Result<i64> {
        let c = self.c();
        c.execute(
            "INSERT INTO outbound_deliveries (kind, repo_id, run_id, target, subject, state, attempts, \
             outcome, http_status, error, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                d.kind,
                d.repo_id,
                d.run_id,
                d.target,
                d.subject,
                d.state,
                d.attempts,
                d.outcome,
                d.http_status,
                d.error,
                now_ms()
            ],
        )?;
        Ok(c.last_insert_rowid())
    }

    fn create_operation(
        &self,
        project: &str,
        environment: &str,
        request: &serde_json::Value,
        state: &serde_json::Value,
        phase: OperationPhase,
    ) -> Result<i64> {
        let c = self.c();
        let now = now_ms();
        c.execute(
            "INSERT INTO delivery_operations (project, environment, request, state, phase, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![
                project,
                environment,
                request.to_string(),
                state.to_string(),
                phase.as_str(),
                now
            ],
        )?;
        Ok(c.last_insert_rowid())
    }

    fn get_operation(&self, id: i64) -> Result<Option<DeliveryOperation>> {
        let c = self.c();
        let row = c
            .query_row(
                &format!("SELECT {OPERATION_COLS} FROM delivery_operations WHERE id = ?1"),
                [id],
                operation_columns,
            )
            .optional()?;
        row.map(operation_from_columns).transpose()
    }

    fn update_operation(
        &self,
        id: i64,
        version: i64,
        state: &serde_json::Value,
        phase: OperationPhase,
    ) -> Result<bool> {
        Ok(self.c().execute(
            "UPDATE delivery_operations SET state = ?2, phase = ?3, updated_at = ?4, version = version + 1 \
             WHERE id = ?1 AND version = ?5",
            params![id, state.to_string(), phase.as_str(), now_ms(), version],
        )? > 0)
    }

    fn delete_operations_done_before(&self, before: Millis) -> Result<i64> {
        let n = self.c().execute(
            "DELETE FROM delivery_operations WHERE phase = ?1 AND updated_at < ?2",
            params![OperationPhase::Done.as_str(), before],
        )?;
        Ok(i64::try_from(n)?)
    }

    fn operations_in(&self, phase: OperationPhase) -> Result<Vec<DeliveryOperation>> {
        let c = self.c();
        let mut s = c.prepare(&format!(
            "SELECT {OPERATION_COLS} FROM delivery_operations WHERE phase = ?1 ORDER BY id"
        ))?;
        let rows = s
            .query_map([phase.as_str()], operation_columns)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(operation_from_columns).collect()
    }

    fn put_env_deployments(&self, rows: &[EnvDeployment]) -> Result<usize> {
        let mut c = self.c();
        let tx = c.transaction()?;
        let mut changed = 0;
        {
            // Unchanged rows are not written: ingesting a history again is free.
            let mut upsert = tx.prepare(
                "INSERT INTO env_deployments (project, project_name, environment, service, record_id, started, record, ingested_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (project, environment, record_id, service) DO UPDATE SET \
                 project_name = excluded.project_name, started = excluded.started, \
                 record = excluded.record, ingested_at = excluded.ingested_at \
                 WHERE env_deployments.record <> excluded.record \
                 OR env_deployments.project_name <> excluded.project_name",
            )?;
            let now = now_ms();
            for d in rows {
                changed += upsert.execute(params![
                    d.project,
                    d.project_name,
                    d.environment,
                    d.service,
                    d.record_id,
                    d.started,
                    d.record.to_string(),
                    now
                ])?;
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    fn env_deployments(&self, f: &EnvDeploymentFilter) -> Result<Vec<EnvDeployment>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT * FROM (SELECT project, project_name, environment, service, record_id, started, record \
             FROM env_deployments WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR environment = ?2) \
             AND (?3 IS NULL OR started >= ?3) ORDER BY record_id DESC, service DESC LIMIT ?4) \
             ORDER BY record_id, service",
        )?;
        let rows = s
            .query_map(
                params![
                    f.project,
                    f.environment,
                    f.started_since,
                    f.last.unwrap_or(-1)
                ],
                |r| {
                    Ok((
                        r.get::<_, String>("project")?,
                        r.get::<_, String>("project_name")?,
                        r.get::<_, String>("environment")?,
                        r.get::<_, String>("service")?,
                        r.get::<_, i64>("record_id")?,
                        r.get::<_, i64>("started")?,
                        r.get::<_, String>("record")?,
                    ))
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(
                |(project, project_name, environment, service, record_id, started, record)| {
                    Ok(EnvDeployment {
                        record: serde_json::from_str(&record).with_context(|| {
                            format!(
                                "the record of deployment {record_id} of `{service}` to `{environment}` of project {project}"
                            )
                        })?,
                        project,
                        project_name,
                        environment,
                        service,
                        record_id,
                        started,
                    })
                },
            )
            .collect()
    }

    fn env_deployment_environments(&self, project: &str) -> Result<Vec<String>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT DISTINCT environment FROM env_deployments WHERE project = ?1 ORDER BY environment",
        )?;
        Ok(
            s.query_map([project], |r| r.get::<_, String>("environment"))?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        )
    }

    fn queue_workflow_run(&self, run_id: i64, action: &str) -> Result<i64> {
        let c = self.c();
        c.execute(
            "INSERT INTO workflow_run_queue (run_id, action, queued_at) VALUES (?1, ?2, ?3)",
            params![run_id, action, now_ms()],
        )?;
        Ok(c.last_insert_rowid())
    }

    fn queued_workflow_runs(&self, now: Millis, limit: i64) -> Result<Vec<QueuedWorkflowRun>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, run_id, action, attempts FROM workflow_run_queue WHERE not_before <= ?1 \
             ORDER BY id LIMIT ?2",
        )?;
        let rows = s.query_map(params![now, limit], |r| {
            Ok(QueuedWorkflowRun {
                id: r.get(0)?,
                run_id: r.get(1)?,
                action: r.get(2)?,
                attempts: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn retry_workflow_run(&self, id: i64, not_before: Millis) -> Result<()> {
        self.c().execute(
            "UPDATE workflow_run_queue SET attempts = attempts + 1, not_before = ?2 WHERE id = ?1",
            params![id, not_before],
        )?;
        Ok(())
    }

    fn dequeue_workflow_run(&self, id: i64) -> Result<()> {
        self.c()
            .execute("DELETE FROM workflow_run_queue WHERE id = ?1", [id])?;
        Ok(())
    }

    fn list_outbound(&self, kind: Option<&str>, limit: i64) -> Result<Vec<Outbound>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, kind, repo_id, run_id, target, subject, state, attempts, outcome, http_status, \
             error, at FROM outbound_deliveries WHERE (?1 IS NULL OR kind = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = s.query_map(params![kind, limit], |r| {
            Ok(Outbound {
                id: r.get(0)?,
                kind: r.get(1)?,
                repo_id: r.get(2)?,
                run_id: r.get(3)?,
                target: r.get(4)?,
                subject: r.get(5)?,
                state: r.get(6)?,
                attempts: r.get(7)?,
                outcome: r.get(8)?,
                http_status: r.get(9)?,
                error: r.get(10)?,
                at: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        self.blobs.put(bytes)
    }

    fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        self.blobs.get(digest)
    }

    fn create_artifact(&self, run_id: i64, name: &str, digest: &str, size: i64) -> Result<i64> {
        let c = self.c();
        c.execute(
            "INSERT INTO artifacts (run_id, name, digest, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run_id, name, digest, size, now_ms()],
        )?;
        Ok(c.last_insert_rowid())
    }

    fn list_artifacts(&self, run_id: i64) -> Result<Vec<Artifact>> {
        let c = self.c();
        let mut s = c.prepare(
            "SELECT id, run_id, name, digest, size, created_at FROM artifacts WHERE run_id = ?1 ORDER BY id",
        )?;
        let rows = s.query_map([run_id], |r| {
            Ok(Artifact {
                id: r.get(0)?,
                run_id: r.get(1)?,
                name: r.get(2)?,
                digest: r.get(3)?,
                size: r.get(4)?,
                created_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn put_cache(&self, repo_id: i64, key: &str, digest: &str, size: i64) -> Result<()> {
        self.c().execute(
            "INSERT INTO caches (repo_id, key, digest, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT(repo_id, key) DO NOTHING",
            params![repo_id, key, digest, size, now_ms()],
        )?;
        Ok(())
    }

    fn find_cache(
        &self,
        repo_id: i64,
        key: &str,
        prefixes: &[String],
    ) -> Result<Option<CacheEntry>> {
        let c = self.c();
        let row = |r: &Row| {
            Ok(CacheEntry {
                repo_id: r.get(0)?,
                key: r.get(1)?,
                digest: r.get(2)?,
                size: r.get(3)?,
                created_at: r.get(4)?,
            })
        };
        let exact = c
            .query_row(
                "SELECT repo_id, key, digest, size, created_at FROM caches WHERE repo_id = ?1 AND key = ?2",
                params![repo_id, key],
                row,
            )
            .optional()?;
        if exact.is_some() {
            return Ok(exact);
        }
        for p in prefixes {
            let hit = c
                .query_row(
                    "SELECT repo_id, key, digest, size, created_at FROM caches WHERE repo_id = ?1 \
                     AND substr(key, 1, length(?2)) = ?2 ORDER BY created_at DESC LIMIT 1",
                    params![repo_id, p],
                    row,
                )
                .optional()?;
            if hit.is_some() {
                return Ok(hit);
            }
        }
        Ok(None)
    }

    fn insert_results_cache(&self, e: &ResultsCacheRow) -> Result<bool> {
        let n = self.c().execute(
            "INSERT INTO results_caches (id, repository, scope, key, version, size, parts, created_at, last_used_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
            params![
                e.id,
                e.repository,
                e.scope,
                e.key,
                e.version,
                e.size,
                e.parts.to_string(),
                e.created_at,
                e.last_used_at
            ],
        )?;
        Ok(n == 1)
    }

    fn results_caches(&self, repository: Option<&str>) -> Result<Vec<ResultsCacheRow>> {
        let c = self.c();
        let mut stmt = c.prepare_cached(
            "SELECT id, repository, scope, key, version, size, parts, created_at, last_used_at \
             FROM results_caches WHERE ?1 IS NULL OR repository = ?1",
        )?;
        let rows = stmt.query_map(params![repository], |r| {
            Ok(ResultsCacheRow {
                id: r.get(0)?,
                repository: r.get(1)?,
                scope: r.get(2)?,
                key: r.get(3)?,
                version: r.get(4)?,
                size: r.get(5)?,
                parts: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                created_at: r.get(7)?,
                last_used_at: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn touch_results_cache(&self, id: i64, at: Millis) -> Result<()> {
        self.c().execute(
            "UPDATE results_caches SET last_used_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    fn delete_results_cache(&self, id: i64) -> Result<()> {
        self.c()
            .execute("DELETE FROM results_caches WHERE id = ?1", params![id])?;
        Ok(())
    }

    fn blob_root(&self) -> &Path {
        self.blobs.root()
    }

    fn retention_items(&self) -> Result<Vec<RetentionItem>> {
        let c = self.c();
        let mut out = Vec::new();
        // A run's logs expire together, from when the run ended.
        let mut s = c.prepare(
            "SELECT r.id, r.repo_id, COALESCE(r.finished_at, r.created_at), SUM(length(l.data)) \
             FROM runs r JOIN jobs j ON j.run_id = r.id JOIN log_chunks l ON l.job_id = j.id \
             WHERE r.status = 'completed' GROUP BY r.id",
        )?;
        for item in s.query_map([], |r| {
            Ok(RetentionItem {
                kind: RetentionKind::Logs,
                id: r.get(0)?,
                repo_id: Some(r.get(1)?),
                repository: None,
                at: r.get(2)?,
                bytes: r.get(3)?,
            })
        })? {
            out.push(item?);
        }
        let mut s = c.prepare(
            "SELECT a.id, r.repo_id, a.created_at, a.size FROM artifacts a LEFT JOIN runs r ON r.id = a.run_id",
        )?;
        for item in s.query_map([], |r| {
            Ok(RetentionItem {
                kind: RetentionKind::Artifact,
                id: r.get(0)?,
                repo_id: r.get(1)?,
                repository: None,
                at: r.get(2)?,
                bytes: r.get(3)?,
            })
        })? {
            out.push(item?);
        }
        let mut s = c.prepare("SELECT id, repository, last_used_at, size FROM results_caches")?;
        for item in s.query_map([], |r| {
            Ok(RetentionItem {
                kind: RetentionKind::Cache,
                id: r.get(0)?,
                repo_id: None,
                repository: Some(r.get(1)?),
                at: r.get(2)?,
                bytes: r.get(3)?,
            })
        })? {
            out.push(item?);
        }
        Ok(out)
    }

    fn delete_run_logs(&self, run_id: i64) -> Result<i64> {
        let c = self.c();
        let bytes: i64 = c.query_row(
            "SELECT COALESCE(SUM(length(data)), 0) FROM log_chunks WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?1)",
            [run_id],
            |r| r.get(0),
        )?;
        c.execute(
            "DELETE FROM log_chunks WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?1)",
            [run_id],
        )?;
        Ok(bytes)
    }

    fn delete_artifact(&self, id: i64) -> Result<()> {
        let orphan: Option<String> = {
            let mut c = self.c();
            let tx = c.transaction()?;
            let digest: Option<String> = tx
                .query_row("SELECT digest FROM artifacts WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            tx.execute("DELETE FROM artifacts WHERE id = ?1", [id])?;
            let orphan = match digest {
                Some(d) => {
                    let shared: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM artifacts WHERE digest = ?1",
                        [&d],
                        |r| r.get(0),
                    )?;
                    (shared == 0).then_some(d)
                }
                None => None,
            };
            tx.commit()?;
            orphan
        };
        // The row first: an artifact is never listed without its bytes.
        if let Some(d) = orphan {
            self.blobs.remove(&d)?;
        }
        Ok(())
    }

    fn backup_to(&self, dest: &Path) -> Result<()> {
        let c = self.c();
        let mut out =
            Connection::open(dest).with_context(|| format!("creating {}", dest.display()))?;
        let backup = rusqlite::backup::Backup::new(&c, &mut out)?;
        backup.run_to_completion(256, std::time::Duration::from_millis(0), None)?;
        Ok(())
    }
}

/// The `WHERE` condition of a run filter (without paging) and its values, `?1`…
///
/// A run with a pending approval is `waiting` (as the runs list shows it and
/// GitHub names it), whatever its stored status: `status=waiting` finds it,
/// `status=queued` or `in_progress` does not.
fn run_filter_sql(f: &RunFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let text = |o: &Option<String>| -> V {
        match o.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => V::Text(s.to_string()),
            None => V::Null,
        }
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
    let values = vec![
        f.repo_id.into(),
        f.status
            .map(|st| V::Text(st.as_str().to_string()))
            .unwrap_or(V::Null),
        text(&f.event),
        full_ref.map(V::Text).unwrap_or(V::Null),
        branch
            .map(|b| V::Text(b.trim_start_matches("refs/heads/").to_string()))
            .unwrap_or(V::Null),
        text(&f.workflow),
        workflow_file.map(V::Text).unwrap_or(V::Null),
        f.conclusion
            .map(|c| V::Text(c.as_str().to_string()))
            .unwrap_or(V::Null),
        commit.map(V::Text).unwrap_or(V::Null),
        text(&f.actor),
        f.pull_request.into(),
    ];
    let cond = "(?1 IS NULL OR repo_id = ?1) \
         AND (?2 IS NULL OR (?2 = 'waiting' AND (status = 'waiting' OR (status != 'completed' \
              AND id IN (SELECT run_id FROM approvals WHERE state = 'pending')))) \
              OR (?2 != 'waiting' AND status = ?2 AND NOT (status != 'completed' \
              AND id IN (SELECT run_id FROM approvals WHERE state = 'pending')))) \
         AND (?3 IS NULL OR event = ?3) \
         AND (?4 IS NULL OR git_ref = ?4 OR json_extract(payload, '$.pull_request.head.ref') = ?5) \
         AND (?6 IS NULL OR workflow_name = ?6 OR workflow_path = ?6 OR workflow_path = ?7) \
         AND (?8 IS NULL OR conclusion = ?8) AND (?9 IS NULL OR sha LIKE ?9 ESCAPE '\\') \
         AND (?10 IS NULL OR actor = ?10) \
         AND (?11 IS NULL OR json_extract(payload, '$.pull_request.number') = ?11 \
              OR git_ref IN ('refs/pull/' || ?11 || '/merge', 'refs/pull/' || ?11 || '/head'))"
        .to_string();
    (cond, values)
}

const OPERATION_COLS: &str =
    "id, project, environment, request, state, phase, created_at, updated_at, version";

type OperationColumns = (i64, String, String, String, String, String, i64, i64, i64);

fn operation_columns(r: &Row) -> rusqlite::Result<OperationColumns> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn operation_from_columns(
    (id, project, environment, request, state, phase, created_at, updated_at, version): OperationColumns,
) -> Result<DeliveryOperation> {
    Ok(DeliveryOperation {
        id,
        project,
        environment,
        request: serde_json::from_str(&request)
            .with_context(|| format!("the request of delivery operation {id}"))?,
        state: serde_json::from_str(&state)
            .with_context(|| format!("the state of delivery operation {id}"))?,
        phase: phase.parse()?,
        created_at,
        updated_at,
        version,
    })
}

/// A token's `id, name, role, created_at, expires_at, revoked_at, scope,
/// reusable, used_at`, read from column `at` on.
fn token_row(r: &Row, at: usize) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(at)?,
        name: r.get(at + 1)?,
        role: r.get(at + 2)?,
        created_at: r.get(at + 3)?,
        expires_at: r.get(at + 4)?,
        revoked_at: r.get(at + 5)?,
        scope: r.get(at + 6)?,
        reusable: r.get(at + 7)?,
        used_at: r.get(at + 8)?,
    })
}

/// An `agents` row read as `id, name, labels, capacity, last_seen, created_at,
/// drained, token_id` (the order every query of it selects).
fn agent_row(r: &Row) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: r.get(0)?,
        name: r.get(1)?,
        labels: json_list(r.get(2)?),
        capacity: r.get(3)?,
        last_seen: r.get(4)?,
        created_at: r.get(5)?,
        drained: r.get(6)?,
        token_id: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        (dir, s)
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
            jobs: (0..n)
                .map(|i| NewJob {
                    key: format!("j{i}"),
                    name: format!("j{i}"),
                    labels: vec![],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn migrations_are_idempotent_and_reopen_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let s = SqliteStore::open(dir.path()).unwrap();
        let v: i64 = s
            .c()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let mode: String = s
            .c()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn tokens_are_hashed_at_rest() {
        let (dir, s) = store();
        let t = s.create_token("admin", Role::Admin).unwrap();
        assert_eq!(s.verify_token(&t).unwrap().unwrap().role, Role::Admin);
        assert!(s.verify_token("hgr_nope").unwrap().is_none());
        drop(s);
        let db = std::fs::read(dir.path().join("hangar.db")).unwrap();
        let wal = std::fs::read(dir.path().join("hangar.db-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "token plaintext found on disk"
            );
        }
    }

    #[test]
    fn secrets_are_encrypted_at_rest() {
        let (dir, s) = store();
        let repo = s
            .create_repo(&NewRepo {
                name: "r".into(),
                clone_url: "x".into(),
                forge: "local".into(),
                webhook_secret: None,
            })
            .unwrap();
        s.set_secret(Some(repo.id), "TOKEN", "super-secret-value-123")
            .unwrap();
        s.set_secret(None, "GLOBAL", "global-value-456").unwrap();
        let m = s.secrets_for_repo(repo.id).unwrap();
        assert_eq!(m["TOKEN"], "super-secret-value-123");
        assert_eq!(m["GLOBAL"], "global-value-456");
        drop(s);
        for f in ["hangar.db", "hangar.db-wal"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
            assert!(!bytes.windows(22).any(|w| w == b"super-secret-value-123"));
        }
    }

    #[test]
    fn forge_tokens_are_sealed_at_rest_and_survive_reopening() {
        let (dir, s) = store();
        let cred = ForgeCredential {
            kind: "github".into(),
            api_url: "https://api.github.com".into(),
            project: "acme/app".into(),
            token: "ghp_forge-token-value-789".into(),
        };
        s.set_forge_credential(7, &cred).unwrap();
        assert!(
            !format!("{cred:?}").contains("ghp_"),
            "Debug masks the token"
        );
        drop(s);
        for f in ["hangar.db", "hangar.db-wal"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
            assert!(!bytes.windows(25).any(|w| w == b"ghp_forge-token-value-789"));
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.forge_credential(7).unwrap(), Some(cred));
        assert!(s.delete_forge_credential(7).unwrap());
        assert_eq!(s.forge_credential(7).unwrap(), None);
        s.record_outbound(&NewOutbound {
            kind: "status".into(),
            target: "https://api.github.com/repos/acme/app/statuses/abc".into(),
            state: "pending".into(),
            attempts: 3,
            outcome: "delivered".into(),
            ..Default::default()
        })
        .unwrap();
        let log = s.list_outbound(Some("status"), 10).unwrap();
        assert_eq!((log.len(), log[0].attempts), (1, 3));
        assert!(
            s.list_outbound(Some("notification"), 10)
                .unwrap()
                .is_empty()
        );
    }

    /// Statuses are read back as the enums they were written from; a name
    /// the binary does not know (a corrupt row) is an error naming it, not
    /// a default that would let the scheduler treat the job as waiting.
    #[test]
    fn statuses_round_trip_and_unknown_names_are_errors() {
        let (_d, s) = store();
        let repo = s
            .create_repo(&NewRepo {
                name: "a/b".into(),
                clone_url: "x".into(),
                forge: "local".into(),
                webhook_secret: None,
            })
            .unwrap();
        let run = s.create_run(&run_with_jobs(repo.id, 1)).unwrap();
        s.set_run_status(run, Status::Completed, Some(Conclusion::Cancelled), None)
            .unwrap();
        let r = s.get_run(run).unwrap().unwrap();
        assert_eq!(
            (r.status, r.conclusion),
            (Status::Completed, Some(Conclusion::Cancelled))
        );
        let job = s.jobs_of_run(run).unwrap()[0].id;
        s.c()
            .execute(
                "UPDATE jobs SET status = 'in_progress' WHERE id = ?1",
                [job],
            )
            .unwrap();
        let err = format!("{:#}", s.get_job(job).unwrap_err());
        assert!(err.contains("unknown status `in_progress`"), "{err}");
    }

    /// A database from before environment-level secrets keeps its secrets,
    /// variables, protection rules (one per name without case) and tokens.
    #[test]
    fn a_database_from_before_environment_secrets_keeps_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        {
            let sealer = SecretBox::load_or_create(&dir.path().join("secret.key")).unwrap();
            let c = Connection::open(dir.path().join("hangar.db")).unwrap();
            for m in &MIGRATIONS[..6] {
                c.execute_batch(m.sqlite).unwrap();
            }
            c.pragma_update(None, "user_version", 6).unwrap();
            c.execute(
                "INSERT INTO secrets VALUES (1, 'TOKEN', ?1, 0), (0, 'GLOBAL', ?2, 0)",
                params![
                    sealer.seal(b"repo-value").unwrap(),
                    sealer.seal(b"server-value").unwrap()
                ],
            )
            .unwrap();
            c.execute_batch(
                "INSERT INTO variables VALUES (1, 'REGION', 'eu');
                 INSERT INTO environments VALUES (1, 'Prod', '{\"reviewers\":[\"old\"],\"wait_seconds\":0,\"branches\":[]}');
                 INSERT INTO environments VALUES (1, 'prod', '{\"reviewers\":[\"new\"],\"wait_seconds\":0,\"branches\":[]}');
                 INSERT INTO repos (id, name, clone_url, forge, created_at) VALUES (1, 'a/b', '/x', 'github', 0);",
            )
            .unwrap();
            c.execute(
                "INSERT INTO api_tokens (name, role, hash, created_at) VALUES ('admin', 'admin', ?1, 0)",
                [sha256_hex(b"the-token")],
            )
            .unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let secrets = s.secrets_for_repo(1).unwrap();
        assert_eq!(secrets["TOKEN"], "repo-value");
        assert_eq!(secrets["GLOBAL"], "server-value");
        assert!(s.env_secrets(1, None).unwrap().is_empty());
        assert_eq!(s.variables_for_repo(1).unwrap()["REGION"], "eu");
        let p = s.get_environment(1, "PROD").unwrap().unwrap();
        assert_eq!(p.reviewers, ["new"], "the later row of one name wins");
        assert_eq!(s.verify_token("the-token").unwrap().unwrap().name, "admin");
        assert_eq!(s.approval_policy(1).unwrap(), "none");
        assert!(!s.environments_loaded(1).unwrap());
        // The three levels stay apart.
        s.set_env_secret(1, "Prod", "TOKEN", "env-value").unwrap();
        assert_eq!(s.secrets_for_repo(1).unwrap()["TOKEN"], "repo-value");
        assert_eq!(
            s.env_secrets(1, Some("PROD")).unwrap()["TOKEN"],
            "env-value"
        );
        assert_eq!(s.env_secret_names(1, "prod").unwrap(), ["TOKEN"]);
    }

    /// A database written before logs were kept per attempt opens, and its
    /// logs, steps and approvals are those of each job's last attempt; its
    /// runs are numbered per workflow.
    #[test]
    fn a_database_from_before_attempts_keeps_its_logs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join("hangar.db")).unwrap();
            for m in &MIGRATIONS[..3] {
                c.execute_batch(m.sqlite).unwrap();
            }
            c.pragma_update(None, "user_version", 3).unwrap();
            c.execute_batch(
                "INSERT INTO runs (id, repo_id, workflow_path, workflow_name, event, git_ref, sha, status, attempt, payload, context, actor, created_at) \
                   VALUES (1, 1, 'w.yml', 'w', 'push', 'refs/heads/main', 'abc', 'completed', 2, '{}', '{}', 'a', 0);
                 INSERT INTO jobs (id, run_id, key, name, needs, labels, status, spec, attempt, created_at) \
                   VALUES (5, 1, 'a', 'a', '[]', '[]', 'completed', '{}', 3, 0);
                 INSERT INTO log_chunks VALUES (5, 0, 0, 1, 4, X'00');
                 INSERT INTO steps VALUES (5, 0, 'build', 'completed', 'success', 1, 2);
                 INSERT INTO approvals (job_id, run_id, environment, state, created_at) VALUES (5, 1, 'prod', 'approved', 0);
                 INSERT INTO runs (id, repo_id, workflow_path, workflow_name, event, git_ref, sha, status, payload, context, actor, created_at) \
                   VALUES (2, 1, 'other.yml', 'o', 'push', 'refs/heads/main', 'abc', 'completed', '{}', '{}', 'a', 0),
                          (3, 1, 'w.yml', 'w', 'push', 'refs/heads/main', 'abc', 'completed', '{}', '{}', 'a', 0);",
            )
            .unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.get_run(1).unwrap().unwrap().attempt, 2);
        assert_eq!(s.log_stats(5, None).unwrap(), (1, 1));
        assert_eq!(s.log_stats(5, Some(3)).unwrap(), (1, 1));
        assert_eq!(s.steps_of_job(5, None).unwrap()[0].name, "build");
        assert_eq!(s.approvals_of_job(5).unwrap().len(), 1);
        let numbers: Vec<i64> = (1..=3)
            .map(|id| s.get_run(id).unwrap().unwrap().run_number)
            .collect();
        assert_eq!(numbers, [1, 1, 2], "runs kept, numbered per workflow");
    }

    /// A database from before log lines knew their step keeps its chunks:
    /// they belong to no step, and read as before.
    #[test]
    fn a_database_from_before_step_logs_keeps_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join("hangar.db")).unwrap();
            for m in &MIGRATIONS[..10] {
                c.execute_batch(m.sqlite).unwrap();
            }
            c.pragma_update(None, "user_version", 10).unwrap();
            c.execute(
                "INSERT INTO log_chunks (job_id, attempt, idx, first_line, line_count, raw_len, data) \
                 VALUES (5, 1, 0, 0, 2, 8, ?1)",
                [compress("old\nlog\n")],
            )
            .unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let chunks = s.log_chunks(5, Some(1), 0).unwrap();
        assert_eq!(
            (chunks[0].step, &chunks[0].data[..]),
            (None, &b"old\nlog\n"[..])
        );
        assert_eq!(s.log_lines_by_step(5, Some(1)).unwrap(), [(None, 2)]);
        assert_eq!(s.log_chunks_of_step(5, Some(1), None).unwrap().len(), 1);
        // New chunks of the same job take their step.
        s.append_step_log_chunk(5, 1, 1, 2, Some(0), "new\n")
            .unwrap();
        assert_eq!(
            s.log_lines_by_step(5, Some(1)).unwrap(),
            [(None, 2), (Some(0), 1)]
        );
    }

    #[test]
    fn backup_is_a_readable_copy() {
        let (d, s) = store();
        s.create_token("t", Role::Read).unwrap();
        let dest = d.path().join("copy.db");
        s.backup_to(&dest).unwrap();
        let c = Connection::open(dest).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM api_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
