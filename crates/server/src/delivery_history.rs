//! The watched projects' deployment histories, in the store.
//!
//! An environment's controller (a process of its own, which the CLI also
//! runs with no server) journals every deployment to
//! `PROJECT/.hangar/envs/ENV/history.jsonl`; those files stay its journal.
//! The server reads them into the store at start-up (catching up on what
//! happened while it was down), after each delivery operation it runs, and
//! whenever a cheap periodic check (each file's length and modification
//! time, no read) says one changed, which catches deployments made with the
//! CLI directly. `/metrics` and the delivery API and page then read the
//! store alone: no history file is opened per request, and a deployment
//! whose project folder was later deleted still counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hangar_deploy::state::{DeploymentRecord, EnvFiles};
use hangar_store::{EnvDeployment, EnvDeploymentFilter, Store};

use crate::App;

/// How often the watched projects' history files are looked at.
const HISTORY_CHECK: Duration = Duration::from_secs(1);

/// A project the server watches (`--repo DIR`), as the delivery API
/// addresses it.
#[derive(Debug, Clone)]
pub(crate) struct Project {
    /// Stable: `hangar_deploy::client::project_id` of its directory.
    pub id: String,
    /// Its folder name (not unique: two checkouts may share it).
    pub name: String,
    pub dir: PathBuf,
}

impl Project {
    pub(crate) fn at(dir: &Path) -> Project {
        Project {
            id: hangar_deploy::client::project_id(dir),
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join(".hangar")
    }
}

/// The watched projects, in the order they were given.
pub(crate) fn watched(app: &App) -> Vec<Project> {
    app.delivery_data
        .iter()
        .map(|data| Project::at(data.parent().unwrap_or(data)))
        .collect()
}

/// Reads one environment's history into the store; how many rows were
/// added or changed (0 when the store had it all).
pub(crate) fn ingest_env(store: &dyn Store, project: &Project, env: &str) -> anyhow::Result<usize> {
    let history = EnvFiles::new(&project.data(), env).history();
    let rows = history
        .into_iter()
        .map(|rec| {
            Ok(EnvDeployment {
                project: project.id.clone(),
                project_name: project.name.clone(),
                environment: env.to_string(),
                service: rec.service.clone(),
                record_id: i64::try_from(rec.id)?,
                started: i64::try_from(rec.started)?,
                record: serde_json::to_value(&rec)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("the history of `{env}` of {}", project.dir.display()))?;
    store.put_env_deployments(&rows)
}

/// After the server acted on an environment: its history into the store
/// now, so the next scrape and page see the deployment without waiting for
/// the periodic check.
pub(crate) fn ingest_after(app: &App, dir: &Path, env: &str) {
    if let Err(e) = ingest_env(app.store.as_ref(), &Project::at(dir), env) {
        tracing::warn!("reading deployments into the store: {e:#}");
    }
}

/// What the periodic check last read of each history file: its length and
/// modification time when it was read.
#[derive(Default)]
pub(crate) struct Seen(HashMap<PathBuf, (u64, SystemTime)>);

/// One pass over the watched projects: each environment whose history file
/// changed since it was last read (or was never read) is read into the
/// store; the others cost one `stat`. Returns how many rows changed.
pub(crate) fn check(store: &dyn Store, projects: &[Project], seen: &mut Seen) -> usize {
    let mut changed = 0;
    for project in projects {
        for env in hangar_deploy::dora::environments(&project.data()) {
            let file = EnvFiles::new(&project.data(), &env)
                .dir
                .join("history.jsonl");
            // Looked at before it is read: an append in between makes the
            // next pass read it again, never miss it.
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            let mark = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if seen.0.get(&file) == Some(&mark) {
                continue;
            }
            match ingest_env(store, project, &env) {
                Ok(n) => {
                    changed += n;
                    seen.0.insert(file, mark);
                }
                // Tried again at the next pass (the database may be back).
                Err(e) => tracing::warn!("reading deployments into the store: {e:#}"),
            }
        }
    }
    changed
}

/// The catch-up at start-up (every history read once), then the periodic
/// check, for as long as the server runs.
pub(crate) fn spawn(app: Arc<App>) {
    let mut seen = Seen::default();
    let changed = check(app.store.as_ref(), &watched(&app), &mut seen);
    if changed > 0 {
        tracing::info!("{changed} deployment record(s) of watched projects read into the store");
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HISTORY_CHECK).await;
            let app2 = app.clone();
            let pass = tokio::task::spawn_blocking(move || {
                check(app2.store.as_ref(), &watched(&app2), &mut seen);
                seen
            });
            seen = pass.await.unwrap_or_default();
        }
    });
}

/// A project's deployments to `env` as the store has them, oldest first
/// (the newest `last` when given).
pub(crate) fn history(
    store: &dyn Store,
    project: &str,
    env: &str,
    last: Option<i64>,
) -> anyhow::Result<Vec<DeploymentRecord>> {
    store
        .env_deployments(&EnvDeploymentFilter {
            project: Some(project),
            environment: Some(env),
            last,
            ..Default::default()
        })?
        .into_iter()
        .map(|d| record(&d))
        .collect()
}

/// A stored row's record; one that does not read as a deployment record is
/// an error naming it, never an empty default.
pub(crate) fn record(d: &EnvDeployment) -> anyhow::Result<DeploymentRecord> {
    serde_json::from_value(d.record.clone()).with_context(|| {
        format!(
            "deployment {} of `{}` to `{}` of project {} ({}) in the store",
            d.record_id, d.service, d.environment, d.project_name, d.project
        )
    })
}
