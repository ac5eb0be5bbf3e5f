//! Triggers that do not come from a forge: `--repo PATH` (watching a local git
//! repository's branches and tags) and `schedule:` cron entries (UTC, or
//! the entry's `timezone:`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use hangar_store::Repo;

use crate::app::App;
use crate::hooks::queue_event;
use crate::workflows::{self, Event};

/// Polls `git for-each-ref` of a local repository; every moved branch or tag is a push.
///
/// What was seen is durable: each push is a delivery named
/// `local:<repo>:<ref>:<sha>`, so after a restart a ref whose commit differs
/// from the last one seen is built (with that commit as `before`), and a ref
/// created while the server was down is built as a new one. The first watch of
/// a repository records its refs as they are, building nothing.
pub fn watch_local(app: Arc<App>, repo: Repo, path: PathBuf, every: Duration) {
    tokio::spawn(async move {
        let refs = match app.git.local_refs(&path).await {
            Ok(refs) => refs,
            Err(e) => {
                tracing::warn!("not watching {}: {e:#}", path.display());
                return;
            }
        };
        let mut known: HashMap<String, String> = HashMap::new();
        let prefix = format!("local:{}:", repo.id);
        let first_watch = matches!(
            app.store.latest_delivery_with_prefix(repo.id, &prefix),
            Ok(None)
        );
        for (r, sha) in refs {
            let id = delivery_id(&repo, &r, &sha);
            if first_watch {
                let _ = app
                    .store
                    .record_delivery(&id, Some(repo.id), "push", "baseline", &[]);
                known.insert(r, sha);
                continue;
            }
            let last = app
                .store
                .latest_delivery_with_prefix(repo.id, &format!("{prefix}{r}:"))
                .ok()
                .flatten();
            if last.as_deref() == Some(id.as_str()) {
                known.insert(r, sha);
                continue;
            }
            // Moved (or created) while the server was down.
            let before = last
                .as_deref()
                .and_then(|l| l.rsplit(':').next())
                .map(str::to_string);
            known.insert(r.clone(), sha.clone());
            push(&app, &repo, &r, before, &sha).await;
        }
        loop {
            tokio::time::sleep(every).await;
            let Ok(refs) = app.git.local_refs(&path).await else {
                continue;
            };
            for (r, sha) in refs {
                let before = known.get(&r).cloned();
                if before.as_deref() == Some(sha.as_str()) {
                    continue;
                }
                known.insert(r.clone(), sha.clone());
                push(&app, &repo, &r, before, &sha).await;
            }
        }
    });
}

fn delivery_id(repo: &Repo, git_ref: &str, sha: &str) -> String {
    format!("local:{}:{git_ref}:{sha}", repo.id)
}

/// Queues the push of `git_ref` from `before` (none: a new ref) to `sha`.
async fn push(app: &Arc<App>, repo: &Repo, git_ref: &str, before: Option<String>, sha: &str) {
    let before = before.unwrap_or_else(|| "0".repeat(40));
    let head_commit = app.git.head_commit(&repo.clone_url, sha).await;
    let ev = Event {
        name: "push".into(),
        git_ref: git_ref.into(),
        sha: sha.into(),
        before: before.clone(),
        actor: whoami(),
        payload: json!({
            "ref": git_ref, "before": before, "after": sha,
            "repository": {"full_name": repo.name, "clone_url": repo.clone_url},
            "head_commit": head_commit,
        }),
        ..Default::default()
    };
    let _ = queue_event(app, repo, &ev, &delivery_id(repo, git_ref, sha)).await;
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "local".into())
}

/// Once a minute, runs the `schedule:` workflows of each repository's default
/// branch whose cron (in UTC or its entry's `timezone:`) fires that minute.
/// Delivery ids name the minute, so a restart never runs a tick twice.
pub fn cron(app: Arc<App>) {
    tokio::spawn(async move {
        loop {
            let now = chrono_now_secs();
            let next_minute = (now / 60 + 1) * 60;
            tokio::time::sleep(Duration::from_secs((next_minute - now) as u64)).await;
            // One server of those sharing a database queues the schedules (the
            // delivery ids would de-duplicate them anyway; this saves the work).
            if !matches!(app.store.leads(crate::app::PERIODIC), Ok(true)) {
                continue;
            }
            if let Err(e) = tick(&app, next_minute).await {
                tracing::warn!("schedule: {e:#}");
            }
        }
    });
}

fn chrono_now_secs() -> i64 {
    hangar_store::now_ms() / 1000
}

pub async fn tick(app: &App, minute_secs: i64) -> anyhow::Result<usize> {
    let when = std::time::UNIX_EPOCH + Duration::from_secs(minute_secs as u64);
    let mut queued = 0;
    for repo in app.store.list_repos()? {
        let head = app
            .git
            .symbolic_head(&repo.clone_url)
            .await
            .unwrap_or_else(|| "HEAD".into());
        let Ok(sha) = app.git.resolve(&repo.clone_url, &head).await else {
            continue;
        };
        for (path, text) in app
            .git
            .workflows_at(&repo.clone_url, &sha)
            .await
            .unwrap_or_default()
        {
            let Ok(wf) = workflows::parse(&path, &text) else {
                continue;
            };
            for (expr, zone) in wf.schedules() {
                if !cron_matches(&expr, zone.as_deref(), when) {
                    continue;
                }
                let ev = Event {
                    name: "schedule".into(),
                    git_ref: head.clone(),
                    sha: sha.clone(),
                    actor: "schedule".into(),
                    // GitHub's payload names the cron as written, not its
                    // zone: `github.event.schedule` tells entries apart.
                    payload: json!({"schedule": expr}),
                    ..Default::default()
                };
                let Ok(run) = app.new_run(&repo, &wf, &ev, json!({})) else {
                    continue;
                };
                // The zone is part of the entry: one cron written for two
                // zones that fire the same minute is two runs.
                let entry = match &zone {
                    Some(zone) => format!("{expr}@{zone}"),
                    None => expr.clone(),
                };
                let delivery = format!("schedule:{}:{path}:{entry}:{minute_secs}", repo.id);
                if let Some(ids) = app.store.record_delivery(
                    &delivery,
                    Some(repo.id),
                    "schedule",
                    "queued",
                    &[run],
                )? {
                    queued += ids.len();
                    app.start_runs(&ids).await;
                }
            }
        }
    }
    Ok(queued)
}

/// Whether a five-field cron expression fires at this minute, read in UTC
/// or in the IANA time zone `zone` (`hangar_units::cron`, the evaluation
/// `hangar validate` checked the entry against).
pub fn cron_matches(expr: &str, zone: Option<&str>, when: std::time::SystemTime) -> bool {
    let Ok(mut cron) = hangar_units::cron::parse(expr, hangar_units::cron::Seconds::Refused) else {
        return false;
    };
    if let Some(name) = zone {
        // The server refuses a workflow whose zone the validator refuses;
        // a database that lost the name since fires nothing, and says so.
        match hangar_units::cron::zone(name) {
            Ok(z) => cron = cron.in_zone(z),
            Err(e) => {
                tracing::warn!("schedule `{expr}`: {}", e.message);
                return false;
            }
        }
    }
    let secs = when
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    cron.matches(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_in_utc() {
        // 2024-01-01T00:00:00Z was a Monday.
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert!(cron_matches("0 0 * * *", None, t));
        assert!(cron_matches("0 0 * * 1", None, t));
        assert!(!cron_matches("30 0 * * *", None, t));
        assert!(!cron_matches("not a cron", None, t));
    }

    #[test]
    fn cron_in_a_zone() {
        // 2024-01-01T00:00:00Z was 19:00 on Sunday in New York (UTC-5) and
        // 05:30 on Monday in Kolkata (UTC+05:30).
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert!(cron_matches("0 19 * * 0", Some("America/New_York"), t));
        assert!(!cron_matches("0 0 * * *", Some("America/New_York"), t));
        assert!(cron_matches("30 5 * * 1", Some("Asia/Kolkata"), t));
        assert!(!cron_matches("0 0 * * *", Some("Mars/Olympus_Mons"), t));
    }
}
