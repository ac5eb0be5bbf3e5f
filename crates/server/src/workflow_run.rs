//! `on: workflow_run` on the server: when a run is requested (created and let
//! start) and when it completes, the repository's workflows that wait for it
//! are queued on the default branch's commit with GitHub's
//! `github.event.workflow_run`.
//!
//! Which workflows follow, the payload and the chain limit are the engine's
//! (`hangar_engine::workflow_run`), so `hangar run --follow-workflow-run` and
//! the server start the same workflows with the same event.
//!
//! Scheduling decisions are taken under the scheduler's lock and reading
//! workflows needs git, so a decision only queues `(run, action)` here; a
//! task of its own reads the default branch and creates the runs. The queue
//! is in the store: a run that completed just before the server was killed
//! still starts its followers when the server comes back (the delivery
//! recorded per run, attempt and action keeps a follower from starting
//! twice when the server dies between creating it and dequeuing).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use hangar_engine::workflow_run::{self as wr, TriggeringRun};
use hangar_store::{Conclusion, NewRun, Run, Store};

use crate::App;
use crate::workflows::{self, Event};

/// The run context key holding how deep in a `workflow_run` chain a run is
/// (0 or absent: started by anything else).
const DEPTH_KEY: &str = "workflow_run_depth";

/// How often the queue is read without a wake-up: another server on the same
/// PostgreSQL database may have queued, an action put off may be due.
const POLL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Requested,
    Completed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Requested => "requested",
            Action::Completed => "completed",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "requested" => Some(Action::Requested),
            "completed" => Some(Action::Completed),
            _ => None,
        }
    }
}

/// Wakes the task that reads the store's queue of runs whose followers are
/// still to be looked for.
#[derive(Default)]
pub struct Queue {
    wake: Notify,
}

impl Queue {
    /// Queues in the store, then wakes the task.
    pub fn push(&self, store: &dyn Store, run_id: i64, action: Action) {
        if let Err(e) = store.queue_workflow_run(run_id, action.as_str()) {
            tracing::warn!(
                run = run_id,
                "queueing workflow_run ({}): {e:#}",
                action.as_str()
            );
        }
        self.wake.notify_one();
    }
}

/// Attempts at looking for a run's followers before giving up (the default
/// branch could not be read: a forge that is down, a repository moved).
const MAX_ATTEMPTS: i64 = 12;

/// How long a failed attempt puts the action off: doubling from a second,
/// at most a minute (twelve attempts span about seven minutes).
fn backoff(attempts: i64) -> Duration {
    Duration::from_secs((1u64 << attempts.clamp(0, 6)).min(60))
}

/// Starts the task that turns queued `(run, action)` pairs into runs, first
/// those a previous server process left.
pub fn spawn(app: Arc<App>) {
    tokio::spawn(async move {
        loop {
            loop {
                let batch = match app.store.queued_workflow_runs(hangar_store::now_ms(), 100) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!("reading the workflow_run queue: {e:#}");
                        break;
                    }
                };
                if batch.is_empty() {
                    break;
                }
                for q in batch {
                    let done = match Action::parse(&q.action) {
                        None => true,
                        Some(action) => match follow(&app, q.run_id, action).await {
                            Ok(_) => true,
                            Err(e) if q.attempts + 1 >= MAX_ATTEMPTS => {
                                tracing::warn!(
                                    run = q.run_id,
                                    "workflow_run ({}): giving up after {} attempts: {e:#}",
                                    q.action,
                                    q.attempts + 1
                                );
                                let _ = app.store.audit(
                                    "hangar",
                                    "workflow_run.failed",
                                    &format!("run/{}", q.run_id),
                                    &json!({"action": q.action, "attempts": q.attempts + 1, "error": format!("{e:#}")}),
                                );
                                true
                            }
                            Err(e) => {
                                let wait = backoff(q.attempts);
                                tracing::warn!(
                                    run = q.run_id,
                                    "workflow_run ({}): {e:#}; trying again in {} s",
                                    q.action,
                                    wait.as_secs()
                                );
                                let at = hangar_store::now_ms()
                                    + i64::try_from(wait.as_millis()).unwrap_or(60_000);
                                if let Err(e) = app.store.retry_workflow_run(q.id, at) {
                                    tracing::warn!("putting off workflow_run {}: {e:#}", q.id);
                                }
                                false
                            }
                        },
                    };
                    if done && let Err(e) = app.store.dequeue_workflow_run(q.id) {
                        tracing::warn!("dequeueing workflow_run {}: {e:#}", q.id);
                    }
                }
            }
            tokio::select! {
                _ = app.workflow_runs.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    });
}

/// Queues the workflows of `run_id`'s repository that wait for `action` of
/// it; returns the ids of the runs created.
pub async fn follow(app: &App, run_id: i64, action: Action) -> anyhow::Result<Vec<i64>> {
    let Some(run) = app.store.get_run(run_id)? else {
        return Ok(vec![]);
    };
    let Some(repo) = app.store.get_repo(run.repo_id)? else {
        return Ok(vec![]);
    };
    let context = app.store.run_context(run_id)?;
    let depth = context.get(DEPTH_KEY).and_then(Value::as_u64).unwrap_or(0);
    let payload = app.store.run_payload(run_id)?;
    // The default branch: HEAD of a local repository, else what the forge's
    // payload says, else `main`.
    let default_ref = match app.git.symbolic_head(&repo.clone_url).await {
        Some(r) => r,
        None => format!(
            "refs/heads/{}",
            payload
                .pointer("/repository/default_branch")
                .and_then(Value::as_str)
                .filter(|b| !b.is_empty())
                .unwrap_or("main")
        ),
    };
    let default_branch = default_ref
        .strip_prefix("refs/heads/")
        .unwrap_or(&default_ref)
        .to_string();
    let triggering = triggering_run(app, &run, &repo.name, &payload, &default_branch, action);
    // Cheap first: is any workflow of the default branch waiting for this one?
    let sha = app.git.resolve(&repo.clone_url, &default_ref).await?;
    app.git
        .repo_with_ref(&repo.clone_url, &sha, Some(&default_ref))
        .await?;
    let files = workflows::at_commit(&app.workflow_cache, &app.git, &repo.clone_url, &sha).await?;
    let mut runs: Vec<NewRun> = Vec::new();
    for (path, wf) in files.iter() {
        let Ok(wf) = wf else {
            continue;
        };
        let Some(trigger) = wf.model.trigger("workflow_run") else {
            continue;
        };
        if !wr::follows(trigger, &triggering, action.as_str()) {
            continue;
        }
        if depth >= u64::from(wr::MAX_DEPTH) {
            // GitHub's limit: a chain of workflow_run stops after three levels.
            app.store.audit(
                "hangar",
                "workflow_run.chain_limit",
                &format!("run/{run_id}"),
                &json!({"workflow": path, "depth": depth,
                    "reason": format!("workflow_run chains stop after {} levels (as on GitHub)", wr::MAX_DEPTH)}),
            )?;
            continue;
        }
        let ev = Event {
            name: "workflow_run".into(),
            git_ref: default_ref.clone(),
            sha: sha.clone(),
            action: Some(action.as_str().into()),
            payload: wr::payload(&triggering, action.as_str()),
            actor: run.actor.clone(),
            ..Default::default()
        };
        match app.new_run(&repo, wf, &ev, json!({})) {
            Ok(mut r) => {
                if let Value::Object(m) = &mut r.context {
                    m.insert(DEPTH_KEY.into(), json!(depth + 1));
                }
                runs.push(r);
            }
            Err(e) => tracing::warn!(run = run_id, "workflow_run: {e}"),
        }
    }
    if runs.is_empty() {
        return Ok(vec![]);
    }
    // One delivery per attempt and action: a re-run completes again and
    // triggers again, as on GitHub; the same completion never twice.
    let delivery = format!("workflow_run:{run_id}:{}:{}", run.attempt, action.as_str());
    let Some(ids) =
        app.store
            .record_delivery(&delivery, Some(repo.id), "workflow_run", "queued", &runs)?
    else {
        return Ok(vec![]);
    };
    app.start_runs(&ids).await;
    Ok(ids)
}

/// The run as GitHub describes it in `github.event.workflow_run`.
fn triggering_run(
    app: &App,
    run: &Run,
    repo_name: &str,
    payload: &Value,
    default_branch: &str,
    action: Action,
) -> TriggeringRun {
    // A pull request's run is on its head branch (what `branches:` filters).
    let head_branch = payload
        .pointer("/pull_request/head/ref")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            run.git_ref
                .strip_prefix("refs/heads/")
                .or_else(|| run.git_ref.strip_prefix("refs/tags/"))
                .unwrap_or(&run.git_ref)
                .to_string()
        });
    // The repository as the forge sent it, with the server's own name and
    // default branch (a payload does not get to choose either).
    let mut repository = payload
        .get("repository")
        .filter(|r| r.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    repository["full_name"] = json!(repo_name);
    repository["default_branch"] = json!(default_branch);
    let (status, conclusion) = match action {
        Action::Requested => ("queued", None),
        Action::Completed => (
            "completed",
            Some(run.conclusion.unwrap_or(Conclusion::Failure).to_string()),
        ),
    };
    let server_url = app
        .forge
        .base_url
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let time = |ms: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    let path = run.workflow_path.clone();
    TriggeringRun {
        id: run.id,
        name: run.workflow_name.clone(),
        workflow_id: wr::workflow_id(&path),
        path,
        head_branch,
        head_sha: run.sha.clone(),
        event: run.event.clone(),
        status: status.into(),
        conclusion,
        run_number: run.run_number,
        run_attempt: run.attempt,
        server_url,
        repository,
        actor: run.actor.clone(),
        created_at: time(run.created_at),
        updated_at: time(run.finished_at.unwrap_or(run.created_at)),
    }
}
