//! Scheduled backups of the projects `hangar serve --repo DIR` watches: each
//! second the leader (one server of those sharing a database, as for the
//! other periodic work) reads the project's hangar.yml and lets
//! `hangar_deploy::recovery::scheduled` back up each environment of
//! `recovery.environments` whose backup is due (`every:` after the newest
//! backup, or at each due time of the cron `schedule:`, UTC), with `keep:`
//! retention. A look holds the environment's schedule lock, so servers that
//! watch one project never make one backup twice, even while the lead
//! passes from one to another. The
//! outcome goes to the audit log (`backup.succeeded` / `backup.failed`) and
//! a failure to the notification rules as `backup_failed`; the alerts the
//! schedule raises (`backup`, `backup-rpo`) are in the environment's alert
//! event log, which `delivery::relay_alerts` relays. A backup killed mid-way
//! leaves a `.STAMP.partial` folder: the first look at each environment after
//! start removes such leftovers (`backup.leftover_removed` in the audit log),
//! as each backup does before it starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hangar_deploy::recovery;

use crate::app::App;

/// How often a watched project's schedule is looked at.
const TICK: Duration = Duration::from_secs(1);

/// The actor scheduled backups are audited as.
const ACTOR: &str = "schedule";

/// Keeps the backup schedule of the project in `dir`.
pub fn spawn(app: Arc<App>, repo_id: i64, repo: String, dir: PathBuf) {
    tokio::spawn(async move {
        // The last hangar.yml problem logged, so a broken file is said once.
        let mut said = String::new();
        // Environments whose leftovers of killed backups were looked for
        // since this server started (each backup looks again before it runs).
        let mut swept = std::collections::HashSet::new();
        loop {
            tokio::time::sleep(TICK).await;
            if !matches!(app.store.leads(crate::app::PERIODIC), Ok(true)) {
                continue;
            }
            let project = match hangar_project::load(&dir) {
                Ok((_, p)) => p,
                Err(e) => {
                    let e = e.to_string();
                    // No hangar.yml at all is a project without a schedule.
                    if e != said && !e.starts_with("no hangar.yml") {
                        tracing::warn!("backups of {repo}: {e}");
                    }
                    said = e;
                    continue;
                }
            };
            said.clear();
            let Some(envs) = project
                .recovery
                .as_ref()
                .filter(|_| recovery::Rule::of(&project).is_some())
                .map(|r| {
                    r.environments
                        .iter()
                        .map(|e| e.value.clone())
                        .collect::<Vec<_>>()
                })
            else {
                continue;
            };
            let project = Arc::new(project);
            for env in envs {
                if swept.insert(env.clone()) {
                    let (d, p, e) = (dir.clone(), project.clone(), env.clone());
                    let removed = tokio::task::spawn_blocking(move || {
                        recovery::remove_stale_partials(&d, &p, &e)
                    })
                    .await;
                    match removed {
                        Ok(Ok(removed)) => {
                            for path in removed {
                                tracing::warn!(
                                    "backups of {repo} {env}: removed {}, left by a backup that was interrupted",
                                    path.display()
                                );
                                let target = format!("backup/{repo}/{env}");
                                let detail = serde_json::json!({"project": repo, "environment": env, "path": path});
                                if let Err(e) = app.store.audit(
                                    ACTOR,
                                    "backup.leftover_removed",
                                    &target,
                                    &detail,
                                ) {
                                    tracing::warn!("audit of {target}: {e:#}");
                                }
                            }
                        }
                        Ok(Err(e)) => tracing::warn!("backups of {repo} {env}: {e:#}"),
                        Err(e) => tracing::warn!("backups of {repo} {env}: {e}"),
                    }
                }
                let (d, p, e) = (dir.clone(), project.clone(), env.clone());
                let tick = tokio::task::spawn_blocking(move || {
                    recovery::scheduled(
                        &d,
                        &p,
                        &d.join(".hangar"),
                        &e,
                        hangar_store::now_ms() as u64,
                    )
                })
                .await;
                match tick {
                    Ok(Ok(tick)) => report(&app, repo_id, &repo, &env, tick),
                    Ok(Err(e)) => tracing::warn!("backups of {repo} {env}: {e:#}"),
                    Err(e) => tracing::warn!("backups of {repo} {env}: {e}"),
                }
            }
        }
    });
}

/// The audit entry of a scheduled backup, and the notice of a failed one.
fn report(app: &App, repo_id: i64, repo: &str, env: &str, tick: recovery::Tick) {
    let target = format!("backup/{repo}/{env}");
    let audit = |action: &str, detail: serde_json::Value| {
        if let Err(e) = app.store.audit(ACTOR, action, &target, &detail) {
            tracing::warn!("audit of {target}: {e:#}");
        }
    };
    match tick.backup {
        Some(Ok(set)) => {
            tracing::info!("backed up {repo} {env} to {}", set.path.display());
            audit(
                "backup.succeeded",
                serde_json::json!({
                    "project": repo,
                    "environment": env,
                    "path": set.path,
                    "created_ms": set.manifest.created_ms,
                    "services": set.manifest.services,
                    "files": set.manifest.files.len(),
                    // Which of the servers sharing the database made it
                    // (the one leading the periodic work).
                    "server": {"id": app.embedded_agent_id, "pid": std::process::id()},
                }),
            );
        }
        Some(Err(error)) => {
            tracing::warn!("scheduled backup of {repo} {env} failed: {error}");
            audit(
                "backup.failed",
                serde_json::json!({"project": repo, "environment": env, "error": error}),
            );
            app.notifier.notify(
                &app.store,
                crate::notify::Notice {
                    event: "backup_failed",
                    repo_id: Some(repo_id),
                    run_id: None,
                    title: format!("Backup of {repo} {env} failed"),
                    text: error.clone(),
                    data: serde_json::json!({"project": repo, "environment": env, "error": error}),
                },
            );
        }
        None => {}
    }
}
