//! Moving a whole store from SQLite to PostgreSQL (`hangar migrate`), and
//! back for a backup of the PostgreSQL case (`postgres_to_sqlite`): every
//! table's rows copied as they are (secrets stay sealed, tokens hashed), the
//! identities set past the copied ids, then each table's row count and a hash
//! of its rows compared on both sides.
//!
//! The data directory does not move: the key that seals the secrets and the
//! blobs stay where they are, and the server is started on it with
//! `--database` pointing at the copy.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// Every table, parents before the rows that name them (`jobs` refers to `runs`).
const TABLES: &[&str] = &[
    "repos",
    "deliveries",
    "runs",
    "jobs",
    "steps",
    "log_chunks",
    "secrets",
    "variables",
    "environments",
    "approvals",
    "deployments",
    "agents",
    "api_tokens",
    "audit_log",
    "artifacts",
    "caches",
    "results_caches",
    "forge_credentials",
    "outbound_deliveries",
    "notification_rules",
    "delivery_operations",
    "workflow_run_queue",
    "env_deployments",
];

/// One table as copied: its rows on each side and the hash both agreed on.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCopy {
    pub table: String,
    pub rows: i64,
    /// SHA-256 over the sorted hashes of the rows (order does not matter).
    pub hash: String,
}

/// A column value in the one form both sides are hashed in.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    fn feed(&self, h: &mut Sha256) {
        match self {
            Value::Null => h.update([0]),
            Value::Int(i) => {
                h.update([1]);
                h.update(i.to_le_bytes());
            }
            Value::Text(t) => {
                h.update([2]);
                h.update((t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
            Value::Bytes(b) => {
                h.update([3]);
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
    }
}

/// Hashes rows without regard to their order.
fn table_hash(rows: &[Vec<Value>]) -> String {
    let mut each: Vec<[u8; 32]> = rows
        .iter()
        .map(|r| {
            let mut h = Sha256::new();
            for v in r {
                v.feed(&mut h);
            }
            h.finalize().into()
        })
        .collect();
    each.sort_unstable();
    let mut h = Sha256::new();
    for e in &each {
        h.update(e);
    }
    hex::encode(h.finalize())
}

/// The PostgreSQL column types of the schema: what a SQLite value becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PgType {
    BigInt,
    Text,
    Bytes,
    Bool,
}

fn sqlite_rows(
    conn: &rusqlite::Connection,
    table: &str,
    cols: &[(String, PgType)],
) -> anyhow::Result<Vec<Vec<Value>>> {
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(cols.len());
        for (i, (name, ty)) in cols.iter().enumerate() {
            use rusqlite::types::ValueRef as V;
            let v = match (row.get_ref(i)?, ty) {
                (V::Null, _) => Value::Null,
                (V::Integer(n), PgType::BigInt | PgType::Bool) => Value::Int(n),
                (V::Text(t), PgType::Text) => Value::Text(
                    String::from_utf8(t.to_vec())
                        .map_err(|_| anyhow!("{table}.{name}: text that is not UTF-8"))?,
                ),
                (V::Blob(b), PgType::Bytes) => Value::Bytes(b.to_vec()),
                (other, ty) => bail!(
                    "{table}.{name} holds a {:?} where PostgreSQL expects {ty:?}; \
                     the SQLite store is damaged",
                    other.data_type()
                ),
            };
            values.push(v);
        }
        out.push(values);
    }
    Ok(out)
}

fn pg_rows(
    rows: &[tokio_postgres::Row],
    cols: &[(String, PgType)],
) -> anyhow::Result<Vec<Vec<Value>>> {
    rows.iter()
        .map(|r| {
            cols.iter()
                .enumerate()
                .map(|(i, (_, ty))| {
                    Ok(match ty {
                        PgType::BigInt => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
                        PgType::Bool => r
                            .try_get::<_, Option<bool>>(i)?
                            .map(|b| Value::Int(i64::from(b))),
                        PgType::Text => r.try_get::<_, Option<String>>(i)?.map(Value::Text),
                        PgType::Bytes => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes),
                    }
                    .unwrap_or(Value::Null))
                })
                .collect()
        })
        .collect()
}

/// A value as a parameter of the column's type.
fn param(v: &Value, ty: PgType) -> Box<dyn ToSql + Sync> {
    match (v, ty) {
        (Value::Null, PgType::BigInt) => Box::new(None::<i64>),
        (Value::Null, PgType::Bool) => Box::new(None::<bool>),
        (Value::Null, PgType::Text) => Box::new(None::<String>),
        (Value::Null, PgType::Bytes) => Box::new(None::<Vec<u8>>),
        (Value::Int(n), PgType::Bool) => Box::new(*n != 0),
        (Value::Int(n), _) => Box::new(*n),
        (Value::Text(t), _) => Box::new(t.clone()),
        (Value::Bytes(b), _) => Box::new(b.clone()),
    }
}

/// Copies the SQLite store in `data_dir` into the empty PostgreSQL database at
/// `url` and verifies it; the report has one entry per table.
pub fn sqlite_to_postgres(data_dir: &Path, url: &str) -> anyhow::Result<Vec<TableCopy>> {
    if !data_dir.join("hangar.db").exists() {
        bail!(
            "{} holds no hangar database (hangar.db)",
            data_dir.display()
        );
    }
    // Opening brings the SQLite schema to this binary's version, as the
    // PostgreSQL one will be: the same columns on both sides.
    let source = SqliteStore::open(data_dir)?;
    let target = PgStore::open(url, data_dir)?;
    let src = rusqlite::Connection::open(source.db_path())?;
    let mut report = Vec::new();
    target.with_conn(|c| {
        for table in TABLES {
            let n: i64 = crate::postgres::count(c, table)?;
            if n > 0 {
                bail!(
                    "the PostgreSQL database already holds {n} rows in `{table}`; \
                     migrate into a new, empty database"
                );
            }
        }
        c.batch("BEGIN")?;
        let copied = (|| -> anyhow::Result<Vec<TableCopy>> {
            let mut report = Vec::new();
            for table in TABLES {
                let cols = crate::postgres::columns(c, table)?;
                let mut sqlite_cols: Vec<String> = src
                    .prepare(&format!("SELECT * FROM {table} LIMIT 0"))?
                    .column_names()
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                let mut pg_cols: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
                sqlite_cols.sort();
                pg_cols.sort();
                if sqlite_cols != pg_cols {
                    bail!(
                        "`{table}` has columns {sqlite_cols:?} in SQLite but {pg_cols:?} in PostgreSQL"
                    );
                }
                let rows = sqlite_rows(&src, table, &cols)?;
                let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
                let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
                let insert = format!(
                    "INSERT INTO {table} ({}) VALUES ({})",
                    names.join(", "),
                    marks.join(", ")
                );
                for row in &rows {
                    let params: Vec<Box<dyn ToSql + Sync>> = row
                        .iter()
                        .zip(&cols)
                        .map(|(v, (_, ty))| param(v, *ty))
                        .collect();
                    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p).collect();
                    c.execute(&insert, &refs)
                        .with_context(|| format!("copying a row of `{table}`"))?;
                }
                crate::postgres::advance_identity(c, table)?;
                report.push(TableCopy {
                    table: table.to_string(),
                    rows: rows.len() as i64,
                    hash: table_hash(&rows),
                });
            }
            Ok(report)
        })();
        match copied {
            Ok(r) => {
                c.batch("COMMIT")?;
                report = r;
                Ok(())
            }
            Err(e) => {
                let _ = c.batch("ROLLBACK");
                Err(e)
            }
        }
    })?;
    // Read back what PostgreSQL holds now, through a new statement per table.
    target.with_conn(|c| {
        for entry in &report {
            let cols = crate::postgres::columns(c, &entry.table)?;
            let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
            let rows = c.query(
                &format!("SELECT {} FROM {}", names.join(", "), entry.table),
                &[],
            )?;
            let values = pg_rows(&rows, &cols)?;
            let hash = table_hash(&values);
            if values.len() as i64 != entry.rows || hash != entry.hash {
                bail!(
                    "`{}` differs after the copy: SQLite {} rows ({}), PostgreSQL {} rows ({})",
                    entry.table,
                    entry.rows,
                    &entry.hash[..12],
                    values.len(),
                    &hash[..12]
                );
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// Copies the PostgreSQL store into a new SQLite store in `out_dir` (a backup
/// of the PostgreSQL case: `hangar backup --database postgres://…`) and
/// verifies each table's row count and hash against what PostgreSQL held. The
/// rows are read in one repeatable-read transaction, so the copy is one
/// consistent moment of a database servers keep writing to. `key_file` (the
/// servers' `secret.key`) is copied first: the sealed secrets open with it.
///
/// Why a logical copy through the store and not `pg_dump`: the backup is then
/// a hangar data directory like SQLite's, which `hangar restore` brings back
/// as a SQLite server and `hangar migrate --from sqlite://BACKUP --to
/// postgres://…` into an empty PostgreSQL database, verified the same way; and
/// it needs no PostgreSQL client of the server's major version on the machine.
pub fn postgres_to_sqlite(
    source: &PgStore,
    key_file: &Path,
    out_dir: &Path,
) -> anyhow::Result<Vec<TableCopy>> {
    if out_dir.join("hangar.db").exists() {
        bail!("{} already holds a hangar database", out_dir.display());
    }
    crate::fsmode::create_private_dir(out_dir)
        .with_context(|| format!("creating {}", out_dir.display()))?;
    std::fs::copy(key_file, out_dir.join("secret.key"))
        .with_context(|| format!("copying the key file {}", key_file.display()))?;
    // Opening creates the schema at this binary's version, as PostgreSQL's is.
    let target = SqliteStore::open(out_dir)?;
    let mut dst = rusqlite::Connection::open(target.db_path())?;
    drop(target);
    let mut copied: Vec<(TableCopy, Vec<(String, PgType)>)> = Vec::new();
    source.with_conn(|c| {
        c.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let result = (|| -> anyhow::Result<()> {
            let tx = dst.transaction()?;
            for table in TABLES {
                let cols = crate::postgres::columns(c, table)?;
                let mut sqlite_cols: Vec<String> = tx
                    .prepare(&format!("SELECT * FROM {table} LIMIT 0"))?
                    .column_names()
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                let mut pg_cols: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
                sqlite_cols.sort();
                pg_cols.sort();
                if sqlite_cols != pg_cols {
                    bail!(
                        "`{table}` has columns {pg_cols:?} in PostgreSQL but {sqlite_cols:?} in SQLite"
                    );
                }
                let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
                let rows = c.query(&format!("SELECT {} FROM {table}", names.join(", ")), &[])?;
                let values = pg_rows(&rows, &cols)?;
                let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
                {
                    let mut insert = tx.prepare(&format!(
                        "INSERT INTO {table} ({}) VALUES ({})",
                        names.join(", "),
                        marks.join(", ")
                    ))?;
                    for row in &values {
                        insert
                            .execute(rusqlite::params_from_iter(row.iter().map(sqlite_value)))
                            .with_context(|| format!("copying a row of `{table}`"))?;
                    }
                }
                copied.push((
                    TableCopy {
                        table: table.to_string(),
                        rows: values.len() as i64,
                        hash: table_hash(&values),
                    },
                    cols,
                ));
            }
            tx.commit()?;
            Ok(())
        })();
        let _ = c.batch("COMMIT");
        result
    })?;
    // Read back what SQLite holds now.
    for (entry, cols) in &copied {
        let values = sqlite_rows(&dst, &entry.table, cols)?;
        let hash = table_hash(&values);
        if values.len() as i64 != entry.rows || hash != entry.hash {
            bail!(
                "`{}` differs after the copy: PostgreSQL {} rows ({}), SQLite {} rows ({})",
                entry.table,
                entry.rows,
                &entry.hash[..12],
                values.len(),
                &hash[..12]
            );
        }
    }
    Ok(copied.into_iter().map(|(t, _)| t).collect())
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Int(n) => V::Integer(*n),
        Value::Text(t) => V::Text(t.clone()),
        Value::Bytes(b) => V::Blob(b.clone()),
    }
}

pub(crate) fn pg_type(data_type: &str) -> anyhow::Result<PgType> {
    Ok(match data_type {
        "bigint" => PgType::BigInt,
        "text" => PgType::Text,
        "bytea" => PgType::Bytes,
        "boolean" => PgType::Bool,
        other => bail!("a column of type {other} that the copy does not know"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::model::*;

    /// A SQLite store with rows in every table, through the store's own API.
    fn filled(s: &SqliteStore) -> (String, i64, i64) {
        let repo = s
            .create_repo(&NewRepo {
                name: "o/r".into(),
                clone_url: "x".into(),
                forge: "github".into(),
                webhook_secret: Some("hook-secret-0123456789".into()),
            })
            .unwrap();
        let run = NewRun {
            repo_id: repo.id,
            workflow_path: ".github/workflows/ci.yml".into(),
            workflow_name: "ci".into(),
            event: "push".into(),
            git_ref: "refs/heads/main".into(),
            sha: "abc".into(),
            actor: "mona".into(),
            payload: serde_json::json!({"after": "abc"}),
            context: serde_json::json!({}),
            cancel_in_progress: true,
            jobs: vec![NewJob {
                key: "build".into(),
                name: "build".into(),
                labels: vec!["linux".into()],
                spec: serde_json::json!({"steps": []}),
                ..Default::default()
            }],
            ..Default::default()
        };
        let run_id = s
            .record_delivery("d-1", Some(repo.id), "push", "queued", &[run])
            .unwrap()
            .unwrap()[0];
        let job = s.jobs_of_run(run_id).unwrap()[0].id;
        s.update_job(
            job,
            &JobUpdate {
                status: Some(Status::Queued),
                ..Default::default()
            },
        )
        .unwrap();
        let lease = s.claim_job(job, "agent-1", 60_000).unwrap().unwrap();
        s.upsert_step(&Step {
            job_id: job,
            attempt: 1,
            idx: 0,
            name: "make".into(),
            status: Status::Completed,
            conclusion: Some(Conclusion::Success),
            started_at: Some(1),
            finished_at: Some(2),
        })
        .unwrap();
        s.append_log_chunk(job, 1, 0, 0, "line one\nline two\n")
            .unwrap();
        s.request_cancel(job).unwrap();
        s.complete_job(
            job,
            lease.fence,
            Conclusion::Success,
            &serde_json::json!({"v": "1"}),
        )
        .unwrap();
        s.set_secret(Some(repo.id), "TOKEN", "sealed-value")
            .unwrap();
        s.set_variable(None, "REGION", "eu").unwrap();
        s.set_environment(repo.id, "Prod", &Protection::default())
            .unwrap();
        s.set_env_secret(repo.id, "Prod", "KEY", "env-value")
            .unwrap();
        let approval = s.create_approval(job, run_id, "Prod").unwrap();
        s.decide_approval(approval, true, "mona", "ok").unwrap();
        s.record_deployment(run_id, job, "Prod", "abc", Conclusion::Success)
            .unwrap();
        s.upsert_agent(&Agent {
            id: "agent-1".into(),
            name: "box".into(),
            labels: vec![],
            capacity: 2,
            last_seen: 5,
            created_at: 1,
            drained: false,
            token_id: None,
        })
        .unwrap();
        let token = s.create_token("admin", Role::Admin).unwrap();
        s.audit("mona", "token.create", "admin", &serde_json::json!({}))
            .unwrap();
        let digest = s.put_blob(b"artifact").unwrap();
        s.create_artifact(run_id, "dist", &digest, 8).unwrap();
        s.put_cache(repo.id, "k", &digest, 8).unwrap();
        s.insert_results_cache(&ResultsCacheRow {
            id: 77,
            repository: "o/r".into(),
            scope: "refs/heads/main".into(),
            key: "k".into(),
            version: "v".into(),
            size: 1,
            parts: serde_json::json!([]),
            created_at: 1,
            last_used_at: 1,
        })
        .unwrap();
        s.set_forge_credential(
            repo.id,
            &ForgeCredential {
                kind: "github".into(),
                api_url: "u".into(),
                project: "o/r".into(),
                token: "ghp_x".into(),
            },
        )
        .unwrap();
        s.record_outbound(&NewOutbound {
            kind: "status".into(),
            attempts: 1,
            ..Default::default()
        })
        .unwrap();
        s.create_notification_rule(&NotificationRule {
            events: vec!["run.failed".into()],
            channel: "webhook".into(),
            target: "https://h".into(),
            ..Default::default()
        })
        .unwrap();
        s.set_run_held(run_id, true).unwrap();
        s.create_operation(
            "app",
            "prod",
            &serde_json::json!({"deploy": {}}),
            &serde_json::json!({"events": []}),
            OperationPhase::Waiting,
        )
        .unwrap();
        s.queue_workflow_run(run_id, "completed").unwrap();
        s.put_env_deployments(&[EnvDeployment {
            project: "0123456789ab".into(),
            project_name: "shop".into(),
            environment: "prod".into(),
            service: "web".into(),
            record_id: 1,
            started: 1_700_000_000,
            record: serde_json::json!({"id": 1, "outcome": "succeeded"}),
        }])
        .unwrap();
        (token, run_id, job)
    }

    /// A PostgreSQL store backed up (a SQLite store in a new directory, every
    /// table verified) restores on both backends: the backup opens as a SQLite
    /// store with its secrets, tokens and logs, and `hangar migrate` of it into
    /// a new PostgreSQL database gives every table the hashes the original had.
    #[test]
    fn a_postgres_backup_restores_on_both_backends() {
        let Some(cluster) = hangar_testkit::postgres::cluster() else {
            return;
        };
        let (url, again) = (cluster.database(), cluster.database());
        let dir = tempfile::tempdir().unwrap();
        let (token, run_id, job) = filled(&SqliteStore::open(dir.path()).unwrap());
        let original = sqlite_to_postgres(dir.path(), &url).unwrap();
        let pg = PgStore::open(&url, dir.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let backup = out.path().join("backup");
        crate::Store::backup_to(&pg, &backup.join("hangar.db")).unwrap();
        // A second backup into the same place is refused, not mixed in.
        assert!(crate::Store::backup_to(&pg, &backup.join("hangar.db")).is_err());

        // SQLite: the backup is a store as it was.
        let restored = SqliteStore::open(&backup).unwrap();
        assert_eq!(
            restored.verify_token(&token).unwrap().unwrap().role,
            Role::Admin
        );
        let repo = restored.find_repo("o/r").unwrap().unwrap();
        assert_eq!(
            restored.secrets_for_repo(repo.id).unwrap()["TOKEN"],
            "sealed-value"
        );
        assert_eq!(
            restored.log_chunks(job, None, 0).unwrap()[0].data,
            b"line one\nline two\n"
        );
        assert!(restored.run_held(run_id).unwrap());
        drop(restored);

        // PostgreSQL: migrated into an empty database, every table as it was.
        let back = sqlite_to_postgres(&backup, &again).unwrap();
        assert_eq!(back, original, "every table's count and hash");
        let pg2 = PgStore::open(&again, &backup).unwrap();
        assert_eq!(
            pg2.secrets_for_repo(repo.id).unwrap()["TOKEN"],
            "sealed-value"
        );
    }

    /// Every table is copied with its ids, sealed secrets open with the data
    /// directory's key on the other side, tokens verify, logs read back, and
    /// new rows get ids after the copied ones; a second copy into the same
    /// database is refused.
    #[test]
    fn a_whole_store_moves_to_postgres_and_is_verified() {
        let Some(cluster) = hangar_testkit::postgres::cluster() else {
            return;
        };
        let url = cluster.database();
        let dir = tempfile::tempdir().unwrap();
        let (token, run_id, job) = filled(&SqliteStore::open(dir.path()).unwrap());
        let report = sqlite_to_postgres(dir.path(), &url).unwrap();
        assert_eq!(report.len(), TABLES.len());
        for t in &report {
            assert!(t.rows > 0, "{} was left empty by the fixture", t.table);
        }
        let pg = PgStore::open(&url, dir.path()).unwrap();
        assert_eq!(pg.verify_token(&token).unwrap().unwrap().role, Role::Admin);
        let repo = pg.find_repo("o/r").unwrap().unwrap();
        assert_eq!(
            pg.repo_webhook_secret(repo.id).unwrap().unwrap(),
            "hook-secret-0123456789"
        );
        assert_eq!(
            pg.secrets_for_repo(repo.id).unwrap()["TOKEN"],
            "sealed-value"
        );
        assert_eq!(
            pg.env_secrets(repo.id, Some("prod")).unwrap()["KEY"],
            "env-value"
        );
        assert_eq!(
            pg.forge_credential(repo.id).unwrap().unwrap().token,
            "ghp_x"
        );
        assert_eq!(pg.notification_rules().unwrap()[0].target, "https://h");
        assert_eq!(
            pg.log_chunks(job, None, 0).unwrap()[0].data,
            b"line one\nline two\n"
        );
        let j = pg.get_job(job).unwrap().unwrap();
        assert!(j.cancel_requested, "booleans cross as booleans");
        assert_eq!(j.outputs["v"], "1");
        assert!(pg.run_held(run_id).unwrap());
        assert!(pg.get_run(run_id).unwrap().unwrap().cancel_in_progress);
        assert_eq!(
            pg.approvals_of_job(job).unwrap()[0].state,
            ApprovalState::Approved
        );
        let a = &pg.list_artifacts(run_id).unwrap()[0];
        assert_eq!(pg.get_blob(&a.digest).unwrap().unwrap(), b"artifact");
        // Identities continue after the copied ids.
        let next = pg
            .create_run(&NewRun {
                repo_id: repo.id,
                workflow_path: ".github/workflows/ci.yml".into(),
                payload: serde_json::json!({}),
                context: serde_json::json!({}),
                ..Default::default()
            })
            .unwrap();
        assert!(next > run_id);
        assert_eq!(pg.get_run(next).unwrap().unwrap().run_number, 2);
        pg.create_token("second", Role::Read).unwrap();
        let err = format!("{:#}", sqlite_to_postgres(dir.path(), &url).unwrap_err());
        assert!(
            err.contains("already holds") && err.contains("empty database"),
            "{err}"
        );
    }

    #[test]
    fn the_hash_ignores_row_order_but_not_values() {
        let a = vec![Value::Int(1), Value::Text("x".into())];
        let b = vec![Value::Int(2), Value::Null];
        assert_eq!(
            table_hash(&[a.clone(), b.clone()]),
            table_hash(&[b.clone(), a.clone()])
        );
        let c = vec![Value::Int(2), Value::Text(String::new())];
        assert_ne!(
            table_hash(&[a.clone(), b]),
            table_hash(&[a, c]),
            "NULL is not ''"
        );
    }
}
