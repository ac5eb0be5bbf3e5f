//! Retention: completed runs' logs, artifacts and cache entries expire after
//! a number of days, and past a total-size budget the oldest go first. A
//! periodic task of the server sweeps; `GET /api/v1/usage` shows what each
//! repository keeps on disk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use hangar_store::{Millis, RetentionItem, RetentionKind};

use crate::app::App;

/// How long things are kept and how much disk they may take.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Age past which an item expires (`None`: never by age).
    pub max_age: Option<Duration>,
    /// Total bytes of logs, artifacts and caches (`None`: no budget).
    pub max_bytes: Option<u64>,
    /// How often the sweep runs.
    pub every: Duration,
}

impl Default for Retention {
    /// GitHub's default: 90 days of logs and artifacts, no size budget.
    fn default() -> Retention {
        Retention {
            max_age: Some(Duration::from_secs(90 * 86_400)),
            max_bytes: None,
            every: Duration::from_secs(3600),
        }
    }
}

/// What to delete: every item past the age, then the oldest until the rest
/// fits the budget. Pure, so the rule is tested on its own.
pub(crate) fn plan(items: &[RetentionItem], now: Millis, cfg: &Retention) -> Vec<RetentionItem> {
    let mut sorted: Vec<&RetentionItem> = items.iter().collect();
    // Oldest first; the id orders items of the same instant.
    sorted.sort_by_key(|i| (i.at, i.id));
    let cutoff = cfg
        .max_age
        .map(|a| now.saturating_sub(i64::try_from(a.as_millis()).unwrap_or(i64::MAX)));
    let mut total: i64 = items.iter().map(|i| i.bytes.max(0)).sum();
    let budget = cfg.max_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    let mut out = Vec::new();
    for item in sorted {
        let expired = cutoff.is_some_and(|c| item.at < c);
        let over = budget.is_some_and(|b| total > b);
        if !(expired || over) {
            continue;
        }
        total -= item.bytes.max(0);
        out.push(item.clone());
    }
    out
}

/// One sweep: deletes what [`plan`] says; the number of items and bytes freed.
pub(crate) fn sweep(app: &App, cfg: &Retention) -> anyhow::Result<(usize, i64)> {
    let items = app.store.retention_items()?;
    let now = hangar_store::now_ms();
    let doomed = plan(&items, now, cfg);
    // Delivery operations that are over (carried out, failed, rejected) go
    // with the logs of their age: only a waiting or running one is of use
    // to a server, and the history of what was deployed is the
    // environment's own (`hangar history`).
    let operations = match cfg.max_age {
        Some(age) => app.store.delete_operations_done_before(
            now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
        )?,
        None => 0,
    };
    let mut freed = 0;
    for item in &doomed {
        match item.kind {
            RetentionKind::Logs => {
                app.store.delete_run_logs(item.id)?;
            }
            RetentionKind::Artifact => app.store.delete_artifact(item.id)?,
            RetentionKind::Cache => crate::results_store::remove_entry(&*app.store, item.id)?,
        }
        freed += item.bytes.max(0);
    }
    if !doomed.is_empty() || operations > 0 {
        let count = |k: RetentionKind| doomed.iter().filter(|i| i.kind == k).count();
        app.store.audit(
            "retention",
            "retention.sweep",
            "data",
            &json!({
                "logs": count(RetentionKind::Logs),
                "artifacts": count(RetentionKind::Artifact),
                "caches": count(RetentionKind::Cache),
                "delivery_operations": operations,
                "bytes": freed,
            }),
        )?;
    }
    Ok((
        doomed.len() + usize::try_from(operations).unwrap_or(0),
        freed,
    ))
}

/// A repository being deleted: its artifacts and cache entries go through
/// the deletions the sweep uses, so their files leave the disk now rather
/// than at a sweep that would no longer find their rows (a blob another
/// repository's artifact still names stays). The rows left are the store's
/// `delete_repo`'s. The number of items and bytes freed.
pub(crate) fn remove_repository_files(
    app: &App,
    repo_id: i64,
    name: &str,
) -> anyhow::Result<(usize, i64)> {
    let mine = app.store.retention_items()?.into_iter().filter(|i| {
        i.kind != RetentionKind::Logs
            && (i.repo_id == Some(repo_id) || i.repository.as_deref() == Some(name))
    });
    let (mut n, mut freed) = (0, 0);
    for item in mine {
        match item.kind {
            RetentionKind::Artifact => app.store.delete_artifact(item.id)?,
            RetentionKind::Cache => crate::results_store::remove_entry(&*app.store, item.id)?,
            RetentionKind::Logs => continue,
        }
        n += 1;
        freed += item.bytes.max(0);
    }
    Ok((n, freed))
}

pub fn spawn(app: Arc<App>, cfg: Retention) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(cfg.every).await;
            // One server of those sharing a database sweeps.
            if !matches!(app.store.leads(crate::app::PERIODIC), Ok(true)) {
                continue;
            }
            let (a, c) = (app.clone(), cfg.clone());
            match tokio::task::spawn_blocking(move || sweep(&a, &c)).await {
                Ok(Ok((n, bytes))) if n > 0 => {
                    tracing::info!("retention: removed {n} items, {bytes} bytes")
                }
                Ok(Err(e)) => tracing::warn!("retention: {e:#}"),
                _ => {}
            }
        }
    });
}

/// `GET /api/v1/usage`: bytes kept per repository (logs, artifacts, caches)
/// and the retention in force.
pub async fn usage(State(app): State<Arc<App>>) -> Response {
    let (items, repos) = match (app.store.retention_items(), app.store.list_repos()) {
        (Ok(i), Ok(r)) => (i, r),
        (Err(e), _) | (_, Err(e)) => {
            return crate::errors::error(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{e:#}"),
            );
        }
    };
    let by_name: BTreeMap<&str, i64> = repos.iter().map(|r| (r.name.as_str(), r.id)).collect();
    // repo id (None: a cache entry of no registered repository) → [logs, artifacts, caches]
    let mut sums: BTreeMap<Option<i64>, [i64; 3]> = BTreeMap::new();
    for i in &items {
        let repo = i.repo_id.or_else(|| {
            i.repository
                .as_deref()
                .and_then(|n| by_name.get(n).copied())
        });
        let slot = match i.kind {
            RetentionKind::Logs => 0,
            RetentionKind::Artifact => 1,
            RetentionKind::Cache => 2,
        };
        sums.entry(repo).or_default()[slot] += i.bytes.max(0);
    }
    let row = |id: Option<i64>, s: &[i64; 3]| {
        let name = id.and_then(|id| repos.iter().find(|r| r.id == id).map(|r| r.name.clone()));
        json!({"repo_id": id, "repo": name, "logs_bytes": s[0], "artifacts_bytes": s[1],
               "caches_bytes": s[2], "total_bytes": s[0] + s[1] + s[2]})
    };
    let mut rows: Vec<Value> = repos
        .iter()
        .map(|r| row(Some(r.id), sums.get(&Some(r.id)).unwrap_or(&[0; 3])))
        .collect();
    for (id, s) in &sums {
        if id.is_none_or(|id| !repos.iter().any(|r| r.id == id)) {
            rows.push(row(*id, s));
        }
    }
    let total: i64 = sums.values().flatten().sum();
    let cfg = &app.retention;
    Json(json!({
        "total_bytes": total,
        "retention": {
            "max_age_days": cfg.max_age.map(|a| a.as_secs_f64() / 86_400.0),
            "max_bytes": cfg.max_bytes,
        },
        "repos": rows,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: i64, at: Millis, bytes: i64) -> RetentionItem {
        RetentionItem {
            kind: RetentionKind::Artifact,
            id,
            repo_id: Some(1),
            repository: None,
            at,
            bytes,
        }
    }

    #[test]
    fn past_the_age_everything_goes_and_over_the_budget_the_oldest_go_first() {
        let items = vec![
            item(3, 300, 10),
            item(1, 100, 10),
            item(2, 200, 10),
            item(4, 400, 10),
        ];
        let ids = |cfg: &Retention| -> Vec<i64> {
            plan(&items, 1000, cfg).iter().map(|i| i.id).collect()
        };
        let none = Retention {
            max_age: None,
            max_bytes: None,
            every: Duration::from_secs(1),
        };
        assert!(ids(&none).is_empty());
        let budget = Retention {
            max_bytes: Some(25),
            ..none.clone()
        };
        assert_eq!(ids(&budget), vec![1, 2], "down to 20 bytes, oldest first");
        let age = Retention {
            max_age: Some(Duration::from_millis(750)),
            ..none.clone()
        };
        assert_eq!(ids(&age), vec![1, 2], "older than 250 ms");
        let both = Retention {
            max_bytes: Some(5),
            ..age
        };
        assert_eq!(ids(&both), vec![1, 2, 3, 4]);
    }
}
