//! The server's state and its business rules: turning events into runs, deciding
//! when a job may run (needs, environments, concurrency), and reaping lost leases.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Notify;

use hangar_store::{
    ApprovalState, Conclusion, Job, JobUpdate, Millis, NewRun, Protection, Repo, Status, Store,
    now_ms,
};

use crate::git::GitReader;
use crate::live::LiveHub;
use crate::mask::Masker;
use crate::metrics::Metrics;
use crate::workflows::{self, Event, FileError, Invalid};

#[derive(Debug, Clone)]
pub struct AgentSeen {
    pub id: String,
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: i64,
    pub free_slots: i64,
    pub last_seen: Millis,
    pub persisted_at: Millis,
    pub embedded: bool,
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub git: GitReader,
    pub live: LiveHub,
    pub metrics: Metrics,
    /// Agents' long polls waiting for work: a queued job wakes one that can
    /// take it, not all of them (`Waiting`).
    pub work: Waiting,
    pub agents: Mutex<HashMap<String, AgentSeen>>,
    /// Serialises scheduling decisions (one server process owns the schedule).
    pub sched: tokio::sync::Mutex<()>,
    pub maskers: Mutex<HashMap<i64, Arc<Masker>>>,
    /// Runs to re-check after the current scheduling decision (see `advance_run`).
    pub pending_advance: Mutex<Vec<i64>>,
    /// Wait timers of protected environments: when they end, the run is re-checked.
    pub timers: Mutex<BTreeMap<(Millis, i64), ()>>,
    pub lease_ms: i64,
    pub max_attempts: i64,
    /// Token the embedded agent uses; it lives only in memory.
    pub internal_token: String,
    pub embedded_agent_id: String,
    pub metrics_public: bool,
    pub started_at: Millis,
    /// Delivery data directories (`<repo>/.hangar`) of watched repositories,
    /// whose deployment histories feed the DORA gauges on `/metrics`.
    pub delivery_data: Vec<std::path::PathBuf>,
    /// GitHub's cache and artifact services for every agent's jobs (caches
    /// are shared between agents).
    pub results: hangar_results::Service,
    /// The server's data directory: no clone URL may point into it.
    pub data_dir: PathBuf,
    /// How long logs, artifacts and caches are kept (`retention.rs`).
    pub retention: crate::retention::Retention,
    pub local_repos: crate::git::LocalRepos,
    /// Webhook bodies seen recently (replays under a new delivery id are refused).
    pub replays: Mutex<crate::hooks::ReplayWindow>,
    /// Key of the leases' keys (`agent_api::lease_key`), kept in the data directory.
    pub lease_secret: [u8; 32],
    /// Whether untrusted runs (forks' pull requests) may run on the embedded agent.
    pub untrusted_on_embedded: bool,
    /// The most log one attempt of a job keeps; later lines are dropped after a marker.
    pub max_log_bytes: u64,
    pub body_idle_timeout: std::time::Duration,
    /// Whether a first-time contributor's pull request is untrusted like a fork's.
    pub first_time_untrusted: bool,
    /// Commit statuses on the forge of each repository that has a credential.
    pub forge: Arc<crate::forge_status::Reporter>,
    /// Notification rules' deliveries.
    pub notifier: Arc<crate::notify::Notifier>,
    /// Repositories whose protection rules are still to be read (just
    /// registered, or a job of theirs names an environment before they were
    /// read), with when to try next; the reaper reads them.
    pub env_loads: Mutex<BTreeMap<i64, Millis>>,
    /// Runs requested or completed whose `on: workflow_run` followers are
    /// still to be queued (`workflow_run.rs`).
    pub workflow_runs: crate::workflow_run::Queue,
    /// Each recent commit's workflows, read and parsed once (`workflows::Cache`).
    pub workflow_cache: crate::workflows::Cache,
    /// Where remote reusable workflows come from (`calls.rs`).
    pub actions: hangar_engine::actions::ActionSource,
    /// Set when the server begins to shut down: `/readyz` answers 503 from
    /// then on, so a load balancer stops sending it new work while what it
    /// holds finishes.
    pub draining: std::sync::atomic::AtomicBool,
}

/// Whether a run of `event` executes the pull request's own code, so the
/// fork rules (no secrets, no variables, not on the embedded agent, "approve
/// and run") apply to it: `pull_request` and the review events run the head's
/// workflows; `pull_request_target` runs the base branch's, trusted as any
/// branch of the repository (GitHub's rule).
pub(crate) fn runs_pull_request_code(event: &str) -> bool {
    matches!(
        event,
        "pull_request" | "pull_request_review" | "pull_request_review_comment"
    )
}

pub fn default_branch_refs() -> [&'static str; 2] {
    ["refs/heads/main", "refs/heads/master"]
}

/// What an event queues: its runs, the runs that stand for what could not
/// run (each invalid workflow file the event would have triggered), the
/// errors of every workflow that could not be read or planned (the webhook's
/// answer), and, for a pull request whose head could not be fetched, why
/// (its base's `pull_request_target` runs are queued all the same).
#[derive(Default)]
pub struct Intake {
    pub runs: Vec<NewRun>,
    pub refused: Vec<NewRun>,
    pub errors: Vec<String>,
    pub head_unreadable: Option<String>,
}

/// The spec key of the one job a run of an unreadable pull request head had
/// before such runs had no jobs ([`App::refused_run`]): runs stored then
/// are still failed with it, never leased.
pub(crate) const UNREADABLE_HEAD: &str = "unreadable_head";

/// The context key of a run refused at intake ([`App::refused_run`]): what
/// it is audited as, its title on the forge, and what a re-run is told.
pub(crate) const REFUSED: &str = "refused";
/// The context key of a refused run's errors ([`FileError`]s), which the
/// run API and the run page show.
pub(crate) const REFUSED_ERRORS: &str = "errors";

/// Why a run is refused at intake: it stands for something that could not
/// run, has no jobs, and fails as soon as it is stored.
pub struct Refusal {
    /// The run's name: an invalid file's path, as GitHub names its run.
    pub name: String,
    pub path: String,
    pub errors: Vec<FileError>,
    /// What the audit log calls it.
    pub action: &'static str,
    /// One line for the forge's status or check run.
    pub title: String,
    /// Why re-running it would not help, and what does.
    pub rerun: String,
}

/// Agents' long polls waiting for a job, oldest first, each with the labels
/// it offers. A queued job wakes one poll that can take it ([`Waiting::ring`]):
/// waking every poll for one job cost each of them a look at the queue, and all
/// but one found nothing. A poll woken for a job it then cannot take (another
/// server's agent was faster, a repository scope, an untrusted job on the
/// embedded agent) wakes the others once ([`Waiting::ring_all`]), so no job
/// waits for the 5 s backstop because the wrong poll was asked.
#[derive(Default)]
pub struct Waiting {
    next: std::sync::atomic::AtomicU64,
    polls: Mutex<Vec<WaitingPoll>>,
}

/// A waiting poll: its ticket's id, the labels it offers, how to wake it.
type WaitingPoll = (u64, Vec<String>, Arc<PollWake>);

/// How a waiting poll is woken.
#[derive(Default)]
pub struct PollWake {
    pub notify: Notify,
    /// Woken for one queued job meant for it (not by [`Waiting::ring_all`]).
    targeted: std::sync::atomic::AtomicBool,
}

impl PollWake {
    /// Whether the last wake was meant for this poll alone (and forgets it).
    pub fn take_targeted(&self) -> bool {
        self.targeted
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

/// A poll's place among the waiting ones; leaving it (dropping) takes the poll off.
pub struct WaitingTicket<'a> {
    waiting: &'a Waiting,
    id: u64,
    labels: Vec<String>,
    pub wake: Arc<PollWake>,
}

impl WaitingTicket<'_> {
    /// Lists the poll as waiting (again, after a wake took it off).
    pub fn wait(&self) {
        let mut polls = self.waiting.polls.lock().unwrap_or_else(|e| e.into_inner());
        if !polls.iter().any(|(id, _, _)| *id == self.id) {
            polls.push((self.id, self.labels.clone(), self.wake.clone()));
        }
    }
}

impl Drop for WaitingTicket<'_> {
    fn drop(&mut self) {
        self.waiting
            .polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _, _)| *id != self.id);
    }
}

impl Waiting {
    /// A ticket for a poll offering `labels`, not listed until [`WaitingTicket::wait`].
    pub fn ticket(&self, labels: &[String]) -> WaitingTicket<'_> {
        WaitingTicket {
            waiting: self,
            id: self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            labels: labels.to_vec(),
            wake: Default::default(),
        }
    }

    /// A job needing `labels` was queued: the oldest waiting poll offering
    /// them all is taken off the list and woken. `false` when none waits.
    pub fn ring(&self, labels: &[String]) -> bool {
        let mut polls = self.polls.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = polls.iter().position(|(_, offered, _)| {
            labels
                .iter()
                .all(|l| offered.iter().any(|o| o.eq_ignore_ascii_case(l)))
        }) else {
            return false;
        };
        let (_, _, wake) = polls.remove(i);
        drop(polls);
        wake.targeted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        wake.notify.notify_one();
        true
    }

    /// Every waiting poll looks again (work announced by another server,
    /// whose labels are not told; a woken poll that could not take its job).
    pub fn ring_all(&self) {
        let polls = std::mem::take(&mut *self.polls.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, _, wake) in polls {
            wake.notify.notify_one();
        }
    }
}

/// The role whose leader does the database-wide periodic work (reaping expired
/// leases, retention, schedules) when several servers share one database.
pub(crate) const PERIODIC: &str = "periodic";

impl App {
    /// Wakes agents waiting for work: this server's, and (PostgreSQL) every
    /// other server's on the same database, through the store's announcement.
    /// Every waiting poll, here and on the other servers, looks again.
    pub(crate) fn wake_all_agents(&self) {
        self.work.ring_all();
        if let Err(e) = self.store.announce_work(&self.embedded_agent_id) {
            tracing::warn!("announcing to other servers: {e:#}");
        }
    }

    /// Jobs with these labels (one entry each) were queued: for each, the
    /// oldest waiting poll here that offers all its labels is woken, and
    /// (PostgreSQL) the other servers on the database hear of it.
    pub(crate) fn wake_agents(&self, queued: &[Vec<String>]) {
        for labels in queued {
            self.work.ring(labels);
        }
        if let Err(e) = self.store.announce_work(&self.embedded_agent_id) {
            tracing::warn!("announcing queued jobs to other servers: {e:#}");
        }
    }

    /// Whether a run executes code the repository's owners have not vetted: a
    /// pull request from a fork (or whose head repository is gone), and, when
    /// configured, one from a first-time contributor.
    pub fn untrusted(&self, event: &str, payload: &Value) -> bool {
        let s = |p: &str| payload.pointer(p).and_then(Value::as_str);
        if !runs_pull_request_code(event) {
            return false;
        }
        // One rule for every forge: a GitLab merge request reaches here in
        // GitHub's shape, its head repository marked `fork` when it comes
        // from another project (`webhook::gitlab_mr`).
        let head = s("/pull_request/head/repo/full_name");
        let fork = payload
            .pointer("/pull_request/head/repo/fork")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let first_time = matches!(
            s("/pull_request/author_association"),
            Some("FIRST_TIME_CONTRIBUTOR" | "FIRST_TIMER" | "NONE")
        );
        fork || head.is_none()
            || head != s("/repository/full_name")
            || (self.first_time_untrusted && first_time)
    }

    pub fn job_is_untrusted(&self, job: &Job) -> anyhow::Result<bool> {
        let Some(run) = self.store.get_run(job.run_id)? else {
            return Ok(false);
        };
        if !runs_pull_request_code(&run.event) {
            return Ok(false);
        }
        Ok(self.untrusted(&run.event, &self.store.run_payload(run.id)?))
    }

    /// A secret was set (`value`) or removed (`None`) by `who`: recorded in
    /// the audit log, and the maskers of running jobs extended with the new
    /// value. Never rebuilt from the store: a job holds the values it was
    /// leased with, and a rotated secret's old value must stay masked in its
    /// log (a removed one too).
    pub fn secret_changed(
        &self,
        who: &str,
        action: &str,
        target: &str,
        value: Option<&str>,
    ) -> anyhow::Result<()> {
        self.store
            .audit(who, action, target, &serde_json::json!({}))?;
        if let Some(value) = value {
            let mut maskers = self.maskers.lock().unwrap_or_else(|e| e.into_inner());
            for m in maskers.values_mut() {
                *m = Arc::new(m.with(value));
            }
        }
        Ok(())
    }

    /// The masker of `job`, made once (from the values its repository holds
    /// then) and kept while it runs; `repo_id` is asked only to make it, so a
    /// log chunk of a running job costs no read of its run.
    pub fn masker_for_job(&self, job: &Job, repo_id: impl FnOnce() -> i64) -> Arc<Masker> {
        if let Some(m) = self
            .maskers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job.id)
        {
            return m.clone();
        }
        let repo_id = repo_id();
        let secrets = self.store.secrets_for_repo(repo_id).unwrap_or_default();
        let mut values: Vec<String> = secrets.into_values().collect();
        values.extend(
            self.store
                .env_secrets(repo_id, None)
                .unwrap_or_default()
                .into_values(),
        );
        if let Some(s) = self.store.repo_webhook_secret(repo_id).ok().flatten() {
            values.push(s);
        }
        let m = Arc::new(Masker::new(values.iter()));
        self.maskers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id, m.clone());
        m
    }

    /// Reads the workflows at the event's commit and builds the runs it triggers.
    ///
    /// A pull request's head and its base are read apart: the head of a fork
    /// may be gone (force-pushed away, the fork deleted, a forge that does not
    /// serve it), while the base branch's `pull_request_target` workflows
    /// never need it. Then the base's runs are queued and the head's failure
    /// is `Intake::head_unreadable`. Only when neither can be read (the
    /// registered repository itself is unreachable) is the whole event an error.
    pub async fn runs_for_event(&self, repo: &Repo, ev: &Event) -> anyhow::Result<Intake> {
        if ev.name != "pull_request" {
            // Always the registered URL.
            self.git
                .repo_with_ref(&repo.clone_url, &ev.sha, Some(&ev.git_ref))
                .await?;
            let mut ev = ev.clone();
            if ev.changed_files.is_none() && ev.name == "push" {
                ev.changed_files = Some(
                    self.git
                        .changed_files(&repo.clone_url, &ev.before, &ev.sha)
                        .await,
                );
            }
            let mut intake = Intake::default();
            self.add_triggered_runs(repo, &ev, &[], &mut intake).await?;
            return Ok(intake);
        }
        // One pull request, two events as on GitHub: `pull_request` runs the
        // head's workflows on the merge commit, `pull_request_target` the
        // base branch's on its last commit. Both filter on the files the pull
        // request changes. The head first: once fetched (with its review ref
        // from the registered URL), the base's diff against it is local.
        let head = self
            .git
            .repo_with_ref(&repo.clone_url, &ev.sha, Some(&ev.git_ref))
            .await;
        let mut intake = Intake::default();
        let mut ev = ev.clone();
        let target = match self.pull_request_target(repo, &ev).await {
            Ok(t) => {
                if ev.changed_files.is_none() {
                    ev.changed_files = t.changed_files.clone();
                }
                Some(t)
            }
            Err(e) => {
                intake.errors.push(format!(
                    "pull_request_target workflows were not read: {e:#}"
                ));
                None
            }
        };
        let head = match head {
            Ok(_) => {
                let notices = self.pull_request_merge(repo, &mut ev).await;
                self.add_triggered_runs(repo, &ev, &notices, &mut intake)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = head {
            if target.is_none() {
                // Neither side could be read: the repository, not the head.
                return Err(e.context(format!(
                    "neither the pull request's head {} nor its base branch could be read",
                    ev.sha
                )));
            }
            intake.head_unreadable = Some(format!(
                "the pull request's head commit {} could not be read from {} ({}): {e:#}. \
                 Its `pull_request` workflows did not run; the base branch's \
                 `pull_request_target` workflows did. Push to the pull request again to retry.",
                ev.sha, repo.clone_url, ev.git_ref
            ));
        }
        if let Some(t) = target {
            // The base's files, never the head's: a pull request cannot change
            // what runs with the repository's secrets.
            if let Err(e) = self.add_triggered_runs(repo, &t, &[], &mut intake).await {
                intake
                    .errors
                    .push(format!("pull_request_target workflows at {}: {e:#}", t.sha));
            }
        }
        Ok(intake)
    }

    /// A run that stands for what could not run: no jobs, its errors on the
    /// run, failed by [`App::fail_refused`] as soon as it is stored, so the
    /// run list, the forge's checks and the notifications show it.
    pub fn refused_run(&self, repo: &Repo, ev: &Event, r: Refusal) -> NewRun {
        NewRun {
            repo_id: repo.id,
            workflow_path: r.path,
            workflow_name: r.name,
            event: ev.name.clone(),
            git_ref: ev.git_ref.clone(),
            sha: ev.sha.clone(),
            payload: ev.payload.clone(),
            concurrency_group: None,
            cancel_in_progress: false,
            actor: ev.actor.clone(),
            context: json!({
                "clone_url": repo.clone_url,
                "repository": repo.name,
                REFUSED: {"action": r.action, "title": r.title, "rerun": r.rerun},
                REFUSED_ERRORS: r.errors,
            }),
            jobs: Vec::new(),
        }
    }

    /// The run of a pull request whose head could not be read (`why`).
    pub fn unreadable_head_run(&self, repo: &Repo, ev: &Event, why: &str) -> NewRun {
        let r = Refusal {
            name: "hangar".into(),
            path: String::new(),
            errors: vec![FileError::unplaced(why)],
            action: "pull_request.head_unreadable",
            title: "The pull request's head commit could not be read".into(),
            rerun: "the pull request's head commit could not be read: push to the pull request \
                    again to run its workflows"
                .into(),
        };
        self.refused_run(repo, ev, r)
    }

    /// The run of an invalid workflow file that `ev` would have triggered,
    /// as GitHub shows it: named after the file, failed, no jobs,
    /// "Invalid workflow file: PATH#L7" with the errors.
    pub fn invalid_workflow_run(&self, repo: &Repo, ev: &Event, inv: &Invalid) -> NewRun {
        let r = Refusal {
            name: inv.path.clone(),
            path: inv.path.clone(),
            errors: inv.errors.clone(),
            action: "workflow.invalid",
            title: format!("Invalid workflow file: {}#L{}", inv.path, inv.first_line()),
            rerun: format!(
                "{} is not a valid workflow at this commit, and a re-run reads the same \
                 file: fix it in a new commit (`hangar validate` shows what is wrong)",
                inv.path
            ),
        };
        self.refused_run(repo, ev, r)
    }

    /// Fails a run of [`App::refused_run`], on the record: never held for
    /// an approval or leased (there is nothing to run), reported to the
    /// forge with its errors, audited. Also what a restart does with one
    /// the previous process stored but did not fail.
    pub async fn fail_refused(&self, run_id: i64) -> anyhow::Result<()> {
        {
            let _g = self.sched.lock().await;
            self.conclude_run(run_id)?;
        }
        let Some(run) = self.store.get_run(run_id)? else {
            return Ok(());
        };
        let context = self.store.run_context(run_id)?;
        let errors: Vec<FileError> =
            serde_json::from_value(context[REFUSED_ERRORS].clone()).unwrap_or_default();
        let refused = &context[REFUSED];
        let title = refused["title"].as_str().unwrap_or("refused");
        let text = workflows::errors_text(&errors);
        tracing::warn!(run = run_id, "{title}: {text}");
        self.forge
            .run_refused(&self.store, &run, title, &text, &errors);
        self.store.audit(
            "hangar",
            refused["action"].as_str().unwrap_or("run.refused"),
            &format!("run/{run_id}"),
            &json!({"workflow": run.workflow_path, "reason": text, "errors": errors}),
        )?;
        Ok(())
    }

    /// The `pull_request_target` event of a pull request event `ev`: the base
    /// branch's ref and last commit (fetched from the registered URL), the
    /// same payload, action and changed files.
    async fn pull_request_target(&self, repo: &Repo, ev: &Event) -> anyhow::Result<Event> {
        let base = ev
            .base_ref
            .as_deref()
            .context("the payload names no base branch")?;
        let sha = self.git.branch_head(&repo.clone_url, base).await?;
        // The files the pull request changes: its head since it left the base.
        let merge_base_of = ev
            .payload
            .pointer("/pull_request/base/sha")
            .and_then(Value::as_str)
            .filter(|s| hangar_git::is_commit_id(s))
            .unwrap_or(&sha);
        let changed_files = self
            .git
            .pull_request_files(&repo.clone_url, merge_base_of, &ev.sha)
            .await;
        Ok(Event {
            name: "pull_request_target".into(),
            git_ref: format!("refs/heads/{base}"),
            sha,
            before: String::new(),
            base_ref: ev.base_ref.clone(),
            action: ev.action.clone(),
            changed_files,
            deleted: false,
            payload: ev.payload.clone(),
            actor: ev.actor.clone(),
        })
    }

    /// The runs `ev` triggers among the workflows of its commit.
    async fn add_triggered_runs(
        &self,
        repo: &Repo,
        ev: &Event,
        notices: &[String],
        intake: &mut Intake,
    ) -> anyhow::Result<()> {
        let Intake {
            runs,
            refused,
            errors,
            ..
        } = intake;
        let files =
            workflows::at_commit(&self.workflow_cache, &self.git, &repo.clone_url, &ev.sha).await?;
        for (path, wf) in files.iter() {
            let wf = match wf {
                Ok(w) => w,
                Err(invalid) => {
                    errors.push(invalid.to_string());
                    if invalid.triggered_by(ev) {
                        refused.push(self.invalid_workflow_run(repo, ev, invalid));
                    }
                    continue;
                }
            };
            if !wf.triggered_by(ev) {
                continue;
            }
            match self.new_run(repo, wf, ev, json!({})) {
                Ok(mut r) => {
                    if !notices.is_empty() {
                        r.context["notices"] = json!(notices);
                    }
                    runs.push(r)
                }
                Err(e) => {
                    // Valid but not plannable (a matrix that cannot be
                    // expanded): as invalid as a refused file to GitHub.
                    let invalid = Invalid {
                        path: path.clone(),
                        errors: vec![FileError {
                            file: Some(path.clone()),
                            ..FileError::unplaced(&e)
                        }],
                        on: None,
                    };
                    refused.push(self.invalid_workflow_run(repo, ev, &invalid));
                    errors.push(e);
                }
            }
        }
        Ok(())
    }

    /// A pull request builds the merge commit GitHub builds: `ev` moves to
    /// `refs/pull/N/merge` and its commit when the forge offers that ref for
    /// the pushed head (the payload's `pull_request.head.sha` stays as sent).
    /// Otherwise the head is built, and the returned notice says why in each
    /// job's log.
    async fn pull_request_merge(&self, repo: &Repo, ev: &mut Event) -> Vec<String> {
        let head = ev.sha.clone();
        let Some(number) = ev
            .git_ref
            .strip_prefix("refs/pull/")
            .and_then(|r| r.strip_suffix("/head"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return vec![format!(
                "This run builds the pull request's head commit {head}: the forge offers no merge commit for it ({})",
                ev.git_ref
            )];
        };
        if ev.payload.pointer("/pull_request/mergeable") == Some(&Value::Bool(false)) {
            return vec![format!(
                "This run builds the pull request's head commit {head}: it conflicts with its base branch, so there is no merge commit"
            )];
        }
        // GitHub computes the merge commit in the background after a push and
        // says so with `mergeable: null`: the ref may lag the webhook by a
        // moment, so it is asked again a few times (bounded: the forge waits
        // for the webhook's answer). A forge that sends no `mergeable`, or a
        // settled one, is asked once.
        let computing = ev.payload.pointer("/pull_request/mergeable") == Some(&Value::Null);
        let tries = if computing { MERGE_REF_TRIES } else { 1 };
        for attempt in 1..=tries {
            if let Some(merge) = self
                .git
                .pull_merge_commit(&repo.clone_url, number, &head)
                .await
            {
                ev.sha = merge;
                ev.git_ref = format!("refs/pull/{number}/merge");
                return vec![];
            }
            if attempt < tries {
                tokio::time::sleep(MERGE_REF_WAIT).await;
            }
        }
        vec![format!(
            "This run builds the pull request's head commit {head}: refs/pull/{number}/merge does not exist for it (a forge without merge refs, a conflict, or a merge commit not computed yet)"
        )]
    }

    pub fn new_run(
        &self,
        repo: &Repo,
        wf: &workflows::Workflow,
        ev: &Event,
        inputs: Value,
    ) -> Result<NewRun, String> {
        let jobs = wf.plan_jobs(self.max_attempts)?;
        // A run whose jobs cannot all be scheduled is refused now, not left
        // waiting for ever: the scheduler's graph check, named as validate names it.
        let mut nodes: Vec<(String, Vec<String>)> = Vec::new();
        for j in &jobs {
            if !nodes.iter().any(|(k, _)| *k == j.key) {
                nodes.push((j.key.clone(), j.needs.clone()));
            }
        }
        hangar_engine::schedule::Graph::new(nodes).map_err(|e| format!("{}: {e}", wf.path))?;
        let (group, cancel) = match wf.concurrency(ev, &repo.name) {
            Some((g, c)) => (Some(g), c),
            None => (None, false),
        };
        Ok(NewRun {
            repo_id: repo.id,
            workflow_path: wf.path.clone(),
            workflow_name: wf.name.clone(),
            event: ev.name.clone(),
            git_ref: ev.git_ref.clone(),
            sha: ev.sha.clone(),
            payload: ev.payload.clone(),
            concurrency_group: group,
            cancel_in_progress: cancel,
            actor: ev.actor.clone(),
            context: json!({
                "workflow": wf.text,
                "clone_url": repo.clone_url,
                "repository": repo.name,
                "inputs": inputs,
            }),
            jobs,
        })
    }

    /// Whether a run must wait for an approval before any of its jobs is
    /// leased ("approve and run"), and why, from the repository's policy.
    fn needs_approval_to_run(&self, run: &hangar_store::Run) -> anyhow::Result<Option<String>> {
        // GitHub: `pull_request_target` runs the base branch's trusted
        // workflow, so "approve and run" never holds it.
        if !runs_pull_request_code(&run.event) {
            return Ok(None);
        }
        let payload = self.store.run_payload(run.id)?;
        if !self.untrusted(&run.event, &payload) {
            return Ok(None);
        }
        let s = |p: &str| payload.pointer(p).and_then(Value::as_str);
        let first_time = matches!(
            s("/pull_request/author_association"),
            Some("FIRST_TIME_CONTRIBUTOR" | "FIRST_TIMER" | "NONE")
        );
        let hold = match self.store.approval_policy(run.repo_id)?.as_str() {
            "untrusted" => true,
            "first-time" => first_time,
            _ => false,
        };
        if !hold {
            return Ok(None);
        }
        let who = s("/pull_request/user/login")
            .or(s("/sender/login"))
            .unwrap_or("an outside contributor");
        let from = s("/pull_request/head/repo/full_name").unwrap_or("a fork");
        let what = if first_time {
            "a first-time contributor's pull request"
        } else {
            "a pull request from a fork"
        };
        Ok(Some(format!(
            "waiting for approval to run: {what} ({from}, by {who}); an administrator or a write token approves it (POST /api/v1/runs/{}/approve, or Approve and run in the UI)",
            run.id
        )))
    }

    /// Holds a run that needs an approval to run: the run shows `waiting`
    /// with the reason, its jobs too, and nothing is queued until
    /// [`App::release_held_run`].
    fn hold_if_untrusted(&self, run_id: i64) -> anyhow::Result<bool> {
        let Some(run) = self.store.get_run(run_id)? else {
            return Ok(false);
        };
        if self.store.run_held(run_id)? {
            return Ok(true);
        }
        let Some(reason) = self.needs_approval_to_run(&run)? else {
            return Ok(false);
        };
        self.store.set_run_held(run_id, true)?;
        self.store
            .set_run_status(run_id, Status::Waiting, None, Some(&reason))?;
        for job in self.store.jobs_of_run(run_id)? {
            self.set_waiting(&job, &reason)?;
        }
        self.store.audit(
            "hangar",
            "run.held",
            &format!("run/{run_id}"),
            &json!({"reason": reason}),
        )?;
        self.notifier.notify(
            &self.store,
            crate::notify::Notice {
                event: "approval_waiting",
                repo_id: Some(run.repo_id),
                run_id: Some(run_id),
                title: format!("Approval to run waiting: {}", self.repo_name(run.repo_id)),
                text: format!(
                    "{} on {} ({}): {reason}",
                    run.workflow_name,
                    short_ref(&run.git_ref),
                    short_sha(&run.sha)
                ),
                data: json!({"run_id": run_id, "ref": run.git_ref, "sha": run.sha, "approve_and_run": true}),
            },
        );
        self.live.publish(
            run_id,
            json!({"type": "run", "status": Status::Waiting, "conclusion": null}),
        );
        Ok(true)
    }

    /// An approver let a held run start.
    pub async fn release_held_run(&self, run_id: i64, approver: &str) -> anyhow::Result<()> {
        {
            let _g = self.sched.lock().await;
            self.store.set_run_held(run_id, false)?;
            self.store
                .set_run_status(run_id, Status::Queued, None, None)?;
        }
        self.store.audit(
            approver,
            "run.approve",
            &format!("run/{run_id}"),
            &json!({}),
        )?;
        // Not `start_runs`: that would hold the run again.
        if let Err(e) = self.apply_concurrency(run_id).await {
            tracing::warn!(run = run_id, "concurrency: {e:#}");
        }
        // Held, it was not yet requested: its followers hear of it now.
        self.workflow_runs
            .push(&*self.store, run_id, crate::workflow_run::Action::Requested);
        self.advance_run(run_id).await;
        Ok(())
    }

    /// Brings newly created runs to life: concurrency groups first, then jobs.
    pub async fn start_runs(&self, run_ids: &[i64]) {
        for &id in run_ids {
            match self.hold_if_untrusted(id) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    // Not knowing whether to hold is holding.
                    tracing::warn!(run = id, "approve-and-run check: {e:#}");
                    continue;
                }
            }
            if let Err(e) = self.apply_concurrency(id).await {
                tracing::warn!(run = id, "concurrency: {e:#}");
            }
            self.workflow_runs
                .push(&*self.store, id, crate::workflow_run::Action::Requested);
            self.advance_run(id).await;
        }
    }

    async fn apply_concurrency(&self, run_id: i64) -> anyhow::Result<()> {
        let Some(run) = self.store.get_run(run_id)? else {
            return Ok(());
        };
        let Some(group) = &run.concurrency_group else {
            return Ok(());
        };
        let others: Vec<_> = self
            .store
            .active_runs()?
            .into_iter()
            .filter(|r| r.id != run.id && r.concurrency_group.as_ref() == Some(group))
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        if run.cancel_in_progress {
            for o in others.iter().filter(|o| o.id < run.id) {
                self.cancel_run(
                    o.id,
                    "concurrency",
                    &format!("cancelled by run #{} in group {group}", run.id),
                )
                .await?;
            }
        } else {
            self.store.set_run_status(
                run.id,
                Status::Waiting,
                None,
                Some(&format!("waiting for concurrency group `{group}`")),
            )?;
        }
        Ok(())
    }

    /// Decides what every job of a run may do now. Idempotent; called after any change.
    pub async fn advance_run(&self, run_id: i64) {
        let mut next = Some(run_id);
        loop {
            while let Some(id) = next {
                next = match self.advance_run_inner(id).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(run = id, "scheduling failed: {e:#}");
                        None
                    }
                };
            }
            // Runs touched by a decision about another run (concurrency groups).
            next = self
                .pending_advance
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            if next.is_none() {
                return;
            }
        }
    }

    /// A job left its concurrency group: the jobs waiting for the group get a look.
    pub async fn wake_group(&self, job_id: i64) {
        let Ok(Some(group)) = self.store.job_group(job_id) else {
            return;
        };
        let mut runs: Vec<i64> = match self.store.jobs_in_group(&group) {
            Ok(jobs) => jobs
                .into_iter()
                .filter(|j| j.status == Status::Waiting)
                .map(|j| j.run_id)
                .collect(),
            Err(_) => return,
        };
        runs.dedup();
        for r in runs {
            self.advance_run(r).await;
        }
    }

    /// The `github` context of job `job` of `run`, from the builder `hangar run`
    /// uses, over the facts the run holds.
    pub(crate) fn github_context(
        &self,
        run: &hangar_store::Run,
        job: &str,
    ) -> anyhow::Result<Value> {
        let ctx = self.store.run_context(run.id)?;
        let payload = self.store.run_payload(run.id)?;
        let repository = ctx.get("repository").and_then(Value::as_str).unwrap_or("");
        let facts = workflows::github_facts(run, repository, payload, job);
        Ok(Value::Object(hangar_engine::context::github_context(
            &facts, None,
        )))
    }

    /// The job-level `concurrency:` (string or `{group, cancel-in-progress}`), its
    /// `${{ }}` evaluated over `github`, `matrix` and `inputs`.
    fn job_concurrency(
        &self,
        run: &hangar_store::Run,
        job: &Job,
    ) -> anyhow::Result<Option<(String, bool)>> {
        let spec = self
            .store
            .get_job(job.id)?
            .map(|j| j.spec)
            .unwrap_or_default();
        let (template, cancel) = match spec.get("concurrency") {
            Some(Value::String(s)) => (s.clone(), false),
            Some(Value::Object(m)) => match m.get("group").and_then(Value::as_str) {
                Some(g) => (
                    g.to_string(),
                    m.get("cancel-in-progress")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                ),
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        if !template.contains("${{") {
            return Ok(Some((template, cancel)));
        }
        let contexts =
            hangar_expr::Contexts::from_json(&self.job_contexts(run, job, &spec, &[])?);
        let group = hangar_expr::Template::parse(&template)
            .ok()
            .and_then(|t| t.eval_to_string(&contexts, &hangar_expr::DefaultHost).ok())
            .unwrap_or(template);
        Ok(Some((group, cancel)))
    }

    /// Returns a run that may start now because this one left its concurrency group.
    async fn advance_run_inner(&self, run_id: i64) -> anyhow::Result<Option<i64>> {
        let _g = self.sched.lock().await;
        let Some(run) = self.store.get_run(run_id)? else {
            return Ok(None);
        };
        if run.status == Status::Completed {
            return Ok(None);
        }
        // An untrusted run waiting for its approval leases nothing.
        if self.store.run_held(run_id)? {
            return Ok(None);
        }
        if run.status == Status::Waiting {
            let group = run.concurrency_group.clone().unwrap_or_default();
            let blocked = self.store.active_runs()?.iter().any(|r| {
                r.id < run.id
                    && r.concurrency_group.as_deref() == Some(group.as_str())
                    && r.status != Status::Waiting
            });
            let older_waiting =
                self.store.active_runs()?.iter().any(|r| {
                    r.id < run.id && r.concurrency_group.as_deref() == Some(group.as_str())
                });
            if blocked || older_waiting {
                return Ok(None);
            }
            self.store
                .set_run_status(run.id, Status::Queued, None, None)?;
        }
        // Most calls follow a job's completion in a run with nothing waiting: then
        // only the counts are read, however many jobs the run has.
        // A caller of a reusable workflow running is settled here too, when
        // its called jobs are done.
        let mut jobs = if self
            .store
            .jobs_of_run_in(run_id, Status::Waiting)?
            .is_empty()
            && !self
                .store
                .jobs_of_run_in(run_id, Status::Running)?
                .iter()
                .any(crate::calls::is_running_caller)
        {
            vec![]
        } else {
            self.store.jobs_of_run(run_id)?
        };
        // A settled nested caller may complete the caller above it.
        while self.settle_calls(&run, &jobs)? {
            jobs = self.store.jobs_of_run(run_id)?;
        }
        // Called jobs a re-run reset wait for their caller to start again.
        let held = {
            let waiting = self.called_jobs_waiting_on_callers(&jobs)?;
            for (job, why) in &waiting.orphaned {
                self.finish_job(job, Conclusion::Skipped, why)?;
            }
            let held = waiting.held;
            if !waiting.orphaned.is_empty() {
                jobs = self.store.jobs_of_run(run_id)?;
            }
            held
        };
        let mut queued: Vec<Vec<String>> = Vec::new();
        let mut others_to_advance: Vec<i64> = Vec::new();
        // The engine's scheduler decides; this loop carries its decisions out
        // and persists them. Jobs here are matrix legs; the graph's nodes are
        // their keys.
        let to_run = match self.decide_jobs(&run, &jobs, &held)? {
            Ok(ids) => ids,
            Err(graph_error) => {
                // Runs stored before cycles were refused at creation.
                for job in jobs.iter().filter(|j| j.status == Status::Waiting) {
                    self.finish_job(job, Conclusion::Failure, &graph_error)?;
                }
                Vec::new()
            }
        };
        for job in jobs.iter().filter(|j| to_run.contains(&j.id)) {
            // The stand-in job of an unreadable pull request head, stored
            // before such runs had no jobs: failed, never leased.
            if let Some(why) = job.spec.get(UNREADABLE_HEAD).and_then(Value::as_str) {
                self.finish_job(job, Conclusion::Failure, why)?;
                continue;
            }
            let deps: Vec<&Job> = jobs.iter().filter(|d| job.needs.contains(&d.key)).collect();
            match self.expand_deferred_matrix(&run, job, &deps)? {
                MatrixStep::Ready => {}
                MatrixStep::Expanded => {
                    // The legs are new waiting jobs: look at the run again.
                    self.pending_advance
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(run_id);
                    continue;
                }
                MatrixStep::Failed(msg) => {
                    self.finish_job(job, Conclusion::Failure, &msg)?;
                    continue;
                }
            }
            // Its name and `continue-on-error`, as `hangar run` reads them.
            let started = match self.job_start(&run, job, &deps)? {
                Ok(j) => j,
                Err(msg) => {
                    self.finish_job(job, Conclusion::Failure, &msg)?;
                    continue;
                }
            };
            let job = &started;
            let spec = self
                .store
                .get_job(job.id)?
                .map(|j| j.spec)
                .unwrap_or_default();
            if spec.get("uses").is_some() {
                // A caller: its called jobs are what runs.
                match self.start_call(&run, job, &spec, &deps).await? {
                    Ok(()) => self
                        .pending_advance
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(run_id),
                    Err(msg) => self.finish_job(job, Conclusion::Failure, &msg)?,
                }
                continue;
            }
            // `environment: ${{ inputs.environment }}` names the environment
            // whose protection applies: evaluated before anything is decided.
            let environment = match self.job_environment(&run, job, &deps)? {
                Ok(e) => e,
                Err(msg) => {
                    self.finish_job(job, Conclusion::Failure, &msg)?;
                    continue;
                }
            };
            if let Some(env) = &environment {
                // Rules never read are not "no rules": the job waits for them.
                if !self.store.environments_loaded(run.repo_id)? {
                    self.env_loads
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(run.repo_id)
                        .or_insert(0);
                    self.set_waiting(
                        job,
                        &format!(
                            "waiting for the protection rules of environment `{env}`: the repository's hangar.yml has not been read yet"
                        ),
                    )?;
                    continue;
                }
                let protection = self
                    .store
                    .get_environment(run.repo_id, env)?
                    .unwrap_or_default();
                if !protection.branches.is_empty() {
                    let branch = run
                        .git_ref
                        .strip_prefix("refs/heads/")
                        .unwrap_or(&run.git_ref);
                    if !protection
                        .branches
                        .iter()
                        .any(|p| workflows::pattern_match(p, branch))
                    {
                        self.finish_job(job, Conclusion::Failure, &format!("branch `{branch}` may not deploy to environment `{env}` (allowed: {})", protection.branches.join(", ")))?;
                        continue;
                    }
                }
                if !protection.reviewers.is_empty() && !job.approved {
                    let approvals = self.store.approvals_of_job(job.id)?;
                    if let Some(rej) = approvals
                        .iter()
                        .find(|a| a.state == ApprovalState::Rejected)
                    {
                        let who = rej.reviewer.clone().unwrap_or_default();
                        self.finish_job(
                            job,
                            Conclusion::Failure,
                            &format!("rejected by {who} for environment `{env}`"),
                        )?;
                        continue;
                    }
                    if approvals.iter().any(|a| a.state == ApprovalState::Approved) {
                        self.store.update_job(
                            job.id,
                            &JobUpdate {
                                approved: Some(true),
                                ..Default::default()
                            },
                        )?;
                    } else {
                        if approvals.is_empty() {
                            let id = self.store.create_approval(job.id, run.id, env)?;
                            self.notifier.notify(
                                &self.store,
                                crate::notify::Notice {
                                    event: "approval_waiting",
                                    repo_id: Some(run.repo_id),
                                    run_id: Some(run.id),
                                    title: format!(
                                        "Approval waiting: {} to {env}",
                                        self.repo_name(run.repo_id)
                                    ),
                                    text: format!(
                                        "{} / {} on {} ({}) waits for a reviewer of `{env}` ({})",
                                        run.workflow_name,
                                        job.name,
                                        short_ref(&run.git_ref),
                                        short_sha(&run.sha),
                                        protection.reviewers.join(", ")
                                    ),
                                    data: json!({"approval_id": id, "job_id": job.id, "environment": env,
                                        "ref": run.git_ref, "sha": run.sha}),
                                },
                            );
                            self.store.audit(
                                "hangar",
                                "approval.requested",
                                &format!("approval/{id}"),
                                &json!({"job": job.id, "run": run.id, "environment": env}),
                            )?;
                        }
                        self.set_waiting(
                            job,
                            &format!(
                                "waiting for approval by a reviewer of environment `{env}` ({})",
                                protection.reviewers.join(", ")
                            ),
                        )?;
                        continue;
                    }
                }
                if protection.wait_seconds > 0 {
                    let now = now_ms();
                    let until = match job.not_before {
                        Some(t) => t,
                        None => {
                            let t = now + protection.wait_seconds * 1000;
                            self.store.update_job(
                                job.id,
                                &JobUpdate {
                                    not_before: Some(Some(t)),
                                    ..Default::default()
                                },
                            )?;
                            t
                        }
                    };
                    if now < until {
                        self.timers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert((until, run.id), ());
                        self.set_waiting(
                            job,
                            &format!(
                                "wait timer of environment `{env}`: {} s left",
                                (until - now + 999) / 1000
                            ),
                        )?;
                        continue;
                    }
                }
            }
            if let Some((group, cancel)) = self.job_concurrency(&run, job)? {
                self.store.set_job_group(job.id, Some(&group))?;
                let older: Vec<Job> = self
                    .store
                    .jobs_in_group(&group)?
                    .into_iter()
                    .filter(|o| o.id < job.id)
                    .collect();
                if cancel {
                    for o in &older {
                        match o.status {
                            Status::Running => self.store.request_cancel(o.id)?,
                            _ => {
                                self.finish_job(
                                    o,
                                    Conclusion::Cancelled,
                                    &format!(
                                        "cancelled by job #{} in concurrency group `{group}`",
                                        job.id
                                    ),
                                )?;
                                if o.run_id != run_id {
                                    others_to_advance.push(o.run_id);
                                }
                            }
                        }
                    }
                } else if !older.is_empty() {
                    self.set_waiting(
                        job,
                        &format!(
                            "waiting for concurrency group `{group}` (job #{} holds it)",
                            older[0].id
                        ),
                    )?;
                    continue;
                }
            }
            // `runs-on: ${{ inputs.os }}` names the agents that may take
            // it: evaluated before it is queued, over its job-level contexts.
            let labels = match self.job_labels(&run, job, &deps)? {
                Ok(l) => l,
                Err(msg) => {
                    self.finish_job(job, Conclusion::Failure, &msg)?;
                    continue;
                }
            };
            queued.push(labels.clone().unwrap_or_else(|| job.labels.clone()));
            self.store.update_job(
                job.id,
                &JobUpdate {
                    status: Some(Status::Queued),
                    waiting_reason: Some(None),
                    labels,
                    ..Default::default()
                },
            )?;
            self.publish_job(run_id, job.id);
        }
        if !queued.is_empty() {
            self.wake_agents(&queued);
        }
        if !others_to_advance.is_empty() {
            self.pending_advance
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(others_to_advance);
        }
        self.conclude_run(run_id)
    }

    /// The job (leg) as it starts: its `name:` and `continue-on-error`
    /// evaluated over its job-level contexts by the engine's one reading
    /// (`evaluate::job_start`, which `hangar run` uses), stored so the run
    /// page, the agent and the scheduler see them. `Err` inside: why a key
    /// cannot be read, at its file, line and column.
    fn job_start(
        &self,
        run: &hangar_store::Run,
        job: &Job,
        deps: &[&Job],
    ) -> anyhow::Result<Result<Job, String>> {
        let spec = self
            .store
            .get_job(job.id)?
            .map(|j| j.spec)
            .unwrap_or_default();
        let own = crate::calls::own_mapping(&spec);
        let written = |k: &str| own.get(k).is_some_and(|v| !v.is_null());
        if !written("name") && !written("continue-on-error") {
            return Ok(Ok(job.clone()));
        }
        let host = status_host_of(deps);
        let contexts = hangar_expr::Contexts::from_json(&self.job_contexts(run, job, &spec, deps)?);
        // A called job is shown under its caller: `caller / name`.
        let prefix = spec
            .pointer(&format!("/{}/caller_name", crate::calls::CALL))
            .and_then(Value::as_str)
            .map(|c| format!("{c} / "));
        let planned = job.name.clone();
        let start = match hangar_engine::evaluate::job_start(
            &own,
            &job.key,
            Some(planned.clone()),
            &contexts,
            &host,
        ) {
            Ok(s) => s,
            Err(e) => {
                let ctx = self.store.run_context(run.id)?;
                let text = ctx.get("workflow").and_then(Value::as_str).unwrap_or("");
                let at = crate::calls::key_place(run, text, job, &spec, e.key);
                return Ok(Err(format!("{at}{}", e.message)));
            }
        };
        let name = match start.name {
            Some(n) if n != planned => match &prefix {
                Some(p) => format!("{p}{n}"),
                None => n,
            },
            _ => planned,
        };
        let mut job = job.clone();
        if name != job.name {
            self.store.set_job_spec(job.id, &name, &spec)?;
            job.name = name;
        }
        if start.continue_on_error != job.continue_on_error {
            self.store.update_job(
                job.id,
                &JobUpdate {
                    continue_on_error: Some(start.continue_on_error),
                    ..Default::default()
                },
            )?;
            job.continue_on_error = start.continue_on_error;
        }
        Ok(Ok(job))
    }

    /// The job's environment name with its `${{ }}` evaluated over the
    /// `github`, `inputs`, `matrix`, `needs` and `vars` contexts (GitHub's
    /// contexts for `jobs.<id>.environment`), stored back so approvals,
    /// environment secrets and DORA use the evaluated name. An empty result
    /// is no environment. `Err` inside holds the message for a bad expression.
    fn job_environment(
        &self,
        run: &hangar_store::Run,
        job: &Job,
        deps: &[&Job],
    ) -> anyhow::Result<Result<Option<String>, String>> {
        let Some(raw) = &job.environment else {
            return Ok(Ok(None));
        };
        if !raw.contains("${{") {
            return Ok(Ok(Some(raw.clone())));
        }
        let spec = self
            .store
            .get_job(job.id)?
            .map(|j| j.spec)
            .unwrap_or_default();
        let host = status_host_of(deps);
        let contexts = hangar_expr::Contexts::from_json(&self.job_contexts(run, job, &spec, deps)?);
        // The engine's reading, the one `hangar run` uses too.
        let name = match hangar_engine::evaluate::environment_name(
            &serde_json::Value::String(raw.clone()),
            &contexts,
            &host,
        ) {
            Ok(n) => n.map(|(name, _)| name).unwrap_or_default(),
            Err(e) => {
                return Ok(Err(format!("job `{}`: `environment: {raw}`: {e}", job.key)));
            }
        };
        let name = (!name.is_empty()).then_some(name);
        self.store.update_job(
            job.id,
            &JobUpdate {
                environment: Some(name.clone()),
                ..Default::default()
            },
        )?;
        Ok(Ok(name))
    }

    /// The job's `runs-on` labels with their `${{ }}` evaluated over its
    /// job-level contexts (an expression may give a list); `None` inside
    /// when none holds an expression. `Err` inside: why they cannot be.
    fn job_labels(
        &self,
        run: &hangar_store::Run,
        job: &Job,
        deps: &[&Job],
    ) -> anyhow::Result<Result<Option<Vec<String>>, String>> {
        if !job.labels.iter().any(|l| l.contains("${{")) {
            return Ok(Ok(None));
        }
        let spec = self
            .store
            .get_job(job.id)?
            .map(|j| j.spec)
            .unwrap_or_default();
        let host = status_host_of(deps);
        let contexts = hangar_expr::Contexts::from_json(&self.job_contexts(run, job, &spec, deps)?);
        let mut out = Vec::new();
        for raw in &job.labels {
            match hangar_engine::evaluate::eval_typed(raw, &contexts, &host) {
                Ok(Value::Array(items)) => out.extend(items.iter().map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })),
                Ok(Value::String(s)) => out.push(s),
                Ok(other) => out.push(other.to_string()),
                Err(e) => return Ok(Err(format!("job `{}`: `runs-on: {raw}`: {e}", job.key))),
            }
        }
        out.retain(|l| !l.trim().is_empty());
        Ok(Ok(Some(out)))
    }

    /// Asks the scheduler about the run's waiting jobs and persists what it
    /// decides for them (waiting reasons, skips, failures). Returns the ids of
    /// the jobs (legs) that may go on (matrix expansion, environments,
    /// concurrency, queue), or the graph's error for a run whose `needs` cannot
    /// be scheduled.
    /// `held`: waiting called jobs whose caller has not started; they wait,
    /// whatever the graph would decide.
    fn decide_jobs(
        &self,
        run: &hangar_store::Run,
        jobs: &[Job],
        held: &[i64],
    ) -> anyhow::Result<Result<Vec<i64>, String>> {
        use hangar_engine::schedule::{Decision, Graph, State};
        let mut nodes: Vec<(String, Vec<String>)> = Vec::new();
        for j in jobs {
            if !nodes.iter().any(|(k, _)| *k == j.key) {
                nodes.push((j.key.clone(), j.needs.clone()));
            }
        }
        let graph = match Graph::new(nodes) {
            Ok(g) => g,
            Err(e) => return Ok(Err(format!("{}: {e}", run.workflow_path))),
        };
        fn legs<'a>(jobs: &'a [Job], key: &'a str) -> impl Iterator<Item = &'a Job> {
            jobs.iter().filter(move |j| j.key == key)
        }
        let mut states: BTreeMap<String, State> = graph
            .order()
            .iter()
            .map(|k| (k.clone(), State::of_legs(legs(jobs, k).map(job_state))))
            .collect();
        // Legs still waiting in a job whose other legs went on were decided
        // to run before (an approval, a wait timer or a concurrency group
        // holds them): they go on to those checks again.
        let mut to_run: Vec<i64> = graph
            .order()
            .iter()
            .filter(|k| states[*k] == State::Running)
            .flat_map(|k| {
                legs(jobs, k)
                    .filter(|j| j.status == Status::Waiting && !held.contains(&j.id))
                    .map(|j| j.id)
            })
            .collect();
        let mut store_error = None;
        let decisions = graph.decide(&mut states, false, &mut |key, host| {
            let Some(job) = legs(jobs, key).next() else {
                return Ok(false);
            };
            match self.job_condition(run, job, jobs, host) {
                Ok(answer) => answer,
                Err(e) => {
                    store_error.get_or_insert(e);
                    Ok(false)
                }
            }
        });
        if let Some(e) = store_error {
            return Err(e);
        }
        for (key, decision) in decisions {
            for job in legs(jobs, &key).filter(|j| j.status == Status::Waiting) {
                if held.contains(&job.id) {
                    self.set_waiting(job, "waiting for its caller to start")?;
                    continue;
                }
                match &decision {
                    Decision::Run => to_run.push(job.id),
                    Decision::Wait(on) => self
                        .set_waiting(job, &format!("waiting for needed jobs: {}", on.join(", ")))?,
                    Decision::Skip(why) => {
                        self.finish_job(job, Conclusion::Skipped, &format!("skipped: {why}"))?
                    }
                    Decision::Fail(e) => self.finish_job(job, Conclusion::Failure, e)?,
                }
                // A called job concluded here may be its caller's last: the
                // run is looked at again to settle the caller (nothing else
                // would, when no job of the run is left to complete).
                if !matches!(decision, Decision::Run | Decision::Wait(_)) && job.key.contains(" / ")
                {
                    self.pending_advance
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(run.id);
                }
            }
        }
        Ok(Ok(to_run))
    }

    /// The job's `if:` (default `success()`) over the run's `github`, `needs`,
    /// `vars` and `inputs` contexts, with status functions answered by the
    /// scheduler's `host`. `Err` inside holds a message for a bad expression.
    fn job_condition(
        &self,
        run: &hangar_store::Run,
        job: &Job,
        jobs: &[Job],
        host: &hangar_engine::schedule::StatusHost,
    ) -> anyhow::Result<Result<bool, String>> {
        // Scheduling reads jobs without their spec; the condition lives there.
        let spec = self
            .store
            .get_job(job.id)?
            .map(|j| j.spec)
            .unwrap_or_default();
        let text = match spec.get("if") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let cond = match hangar_expr::Condition::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Err(format!(
                    "job `{}`: `if: {text}` is invalid: {}",
                    job.key, e.message
                )));
            }
        };
        if text.trim().is_empty() {
            // `success()` needs no context.
            return Ok(cond
                .eval(&hangar_expr::Contexts::new(), host)
                .map_err(|e| format!("job `{}`: {e}", job.key)));
        }
        let deps: Vec<&Job> = jobs.iter().filter(|d| job.needs.contains(&d.key)).collect();
        let mut contexts = self.job_contexts(run, job, &spec, &deps)?;
        // The scheduler's view of the needed jobs, which `host` answers from.
        contexts["needs"] = needs_context(&deps, host);
        let contexts = hangar_expr::Contexts::from_json(&contexts);
        Ok(cond
            .eval(&contexts, host)
            .map_err(|e| format!("job `{}`: `if: {text}`: {e}", job.key)))
    }

    /// A job whose `strategy.matrix` holds expressions becomes its legs once the
    /// jobs it needs have finished (their outputs feed the expressions).
    fn expand_deferred_matrix(
        &self,
        run: &hangar_store::Run,
        job: &Job,
        deps: &[&Job],
    ) -> anyhow::Result<MatrixStep> {
        let spec = self
            .store
            .get_job(job.id)?
            .map(|j| j.spec)
            .unwrap_or_default();
        if spec.get("matrix_deferred") != Some(&Value::Bool(true)) {
            return Ok(MatrixStep::Ready);
        }
        let matrix = spec
            .pointer("/strategy/matrix")
            .cloned()
            .unwrap_or(Value::Null);
        let host = status_host_of(deps);
        let contexts = hangar_expr::Contexts::from_json(&self.job_contexts(run, job, &spec, deps)?);
        let evaluated = match hangar_engine::evaluate::eval_tree(&matrix, &contexts, &host) {
            Ok(v) => v,
            Err(e) => {
                return Ok(MatrixStep::Failed(format!(
                    "job `{}`: strategy.matrix: {e}",
                    job.key
                )));
            }
        };
        let legs = match hangar_engine::matrix::legs(Some(&evaluated)) {
            Ok(l) if !l.is_empty() => l,
            Ok(_) => {
                return Ok(MatrixStep::Failed(format!(
                    "job `{}`: the matrix has no legs",
                    job.key
                )));
            }
            Err(e) => return Ok(MatrixStep::Failed(format!("job `{}`: {e}", job.key))),
        };
        let base = spec
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&job.key)
            .to_string();
        let total = legs.len();
        let strategy = spec.get("strategy").cloned().unwrap_or(Value::Null);
        let leg_spec = |index: usize, leg: &hangar_engine::matrix::Leg| {
            let mut s = spec.clone();
            if let Value::Object(m) = &mut s {
                m.remove("matrix_deferred");
                m.insert(
                    crate::workflows::LEG_KEY.into(),
                    json!(hangar_engine::matrix::display_name(&job.key, &leg.segments)),
                );
                m.insert("matrix".into(), Value::Object(leg.matrix.clone()));
                m.insert(
                    crate::workflows::STRATEGY_CONTEXT.into(),
                    Value::Object(hangar_engine::context::strategy_context(
                        &strategy, index, total,
                    )),
                );
            }
            s
        };
        let leg_name = |leg: &hangar_engine::matrix::Leg| {
            hangar_engine::matrix::display_name(&base, &leg.segments)
        };
        self.store
            .set_job_spec(job.id, &leg_name(&legs[0]), &leg_spec(0, &legs[0]))?;
        let more: Vec<hangar_store::NewJob> = legs[1..]
            .iter()
            .enumerate()
            .map(|(i, leg)| hangar_store::NewJob {
                key: job.key.clone(),
                name: leg_name(leg),
                needs: job.needs.clone(),
                labels: job.labels.clone(),
                environment: job.environment.clone(),
                max_attempts: job.max_attempts,
                spec: leg_spec(i + 1, leg),
            })
            .collect();
        self.store.add_jobs(run.id, &more)?;
        self.publish_job(run.id, job.id);
        Ok(MatrixStep::Expanded)
    }

    fn set_waiting(&self, job: &Job, reason: &str) -> anyhow::Result<()> {
        if job.waiting_reason.as_deref() != Some(reason) {
            self.store.update_job(
                job.id,
                &JobUpdate {
                    waiting_reason: Some(Some(reason.to_string())),
                    ..Default::default()
                },
            )?;
            self.publish_job(job.run_id, job.id);
        }
        Ok(())
    }

    fn finish_job(&self, job: &Job, conclusion: Conclusion, reason: &str) -> anyhow::Result<()> {
        self.store.update_job(
            job.id,
            &JobUpdate {
                status: Some(Status::Completed),
                conclusion: Some(Some(conclusion)),
                waiting_reason: Some(Some(reason.into())),
                finished_at: Some(now_ms()),
                ..Default::default()
            },
        )?;
        self.publish_job(job.run_id, job.id);
        Ok(())
    }

    /// Sets the run's status from its jobs.
    fn conclude_run(&self, run_id: i64) -> anyhow::Result<Option<i64>> {
        let Some(run) = self.store.get_run(run_id)? else {
            return Ok(None);
        };
        if run.status == Status::Waiting {
            return Ok(None);
        }
        let n = self.store.job_counts(run_id)?;
        // A run refused at intake has no jobs, and failed.
        let refused = n.total == 0 && self.store.run_context(run_id)?.get(REFUSED).is_some();
        let (status, conclusion) = if refused {
            (Status::Completed, Some(Conclusion::Failure))
        } else if n.completed == n.total {
            let c = if n.failed > 0 {
                Conclusion::Failure
            } else if n.cancelled > 0 {
                Conclusion::Cancelled
            } else {
                Conclusion::Success
            };
            (Status::Completed, Some(c))
        } else if n.running > 0 || n.completed > 0 {
            (Status::Running, None)
        } else {
            (Status::Queued, None)
        };
        if run.status != status || run.conclusion != conclusion {
            self.store
                .set_run_status(run_id, status, conclusion, None)?;
            self.live.publish(
                run_id,
                json!({"type": "run", "status": status, "conclusion": conclusion}),
            );
            if status == Status::Completed {
                self.notify_run_completed(&run, conclusion.unwrap_or(Conclusion::Failure));
                self.workflow_runs.push(
                    &*self.store,
                    run_id,
                    crate::workflow_run::Action::Completed,
                );
                let mut m = self.maskers.lock().unwrap_or_else(|e| e.into_inner());
                for j in self.store.jobs_of_run(run_id)? {
                    m.remove(&j.id);
                }
                drop(m);
                // A run leaving a concurrency group lets the next one in.
                if let Some(group) = &run.concurrency_group {
                    let next = self.store.active_runs()?.into_iter().find(|r| {
                        r.status == Status::Waiting && r.concurrency_group.as_ref() == Some(group)
                    });
                    return Ok(next.map(|n| n.id));
                }
            }
        }
        Ok(None)
    }

    /// A job with an environment is a deployment: it started when it runs, and
    /// its conclusion is the deployment's.
    fn notify_deployment(&self, job: &Job) {
        let Some(env) = &job.environment else {
            return;
        };
        let event = match (job.status, job.conclusion) {
            (Status::Running, _) => "deployment_started",
            (Status::Completed, Some(Conclusion::Success)) => "deployment_succeeded",
            (Status::Completed, Some(Conclusion::Failure)) => "deployment_failed",
            _ => return,
        };
        if !self.notifier.first_time(job.id, job.attempt, event) {
            return;
        }
        let Ok(Some(run)) = self.store.get_run(job.run_id) else {
            return;
        };
        let repo = self.repo_name(run.repo_id);
        let what = match event {
            "deployment_started" => "started",
            "deployment_succeeded" => "succeeded",
            _ => "failed",
        };
        self.notifier.notify(
            &self.store,
            crate::notify::Notice {
                event,
                repo_id: Some(run.repo_id),
                run_id: Some(run.id),
                title: format!("Deployment to {env} {what}: {repo}"),
                text: format!(
                    "{} / {} on {} ({})",
                    run.workflow_name,
                    job.name,
                    short_ref(&run.git_ref),
                    short_sha(&run.sha)
                ),
                data: json!({"environment": env, "job_id": job.id, "sha": run.sha, "ref": run.git_ref}),
            },
        );
    }

    fn repo_name(&self, repo_id: i64) -> String {
        self.store
            .get_repo(repo_id)
            .ok()
            .flatten()
            .map(|r| r.name)
            .unwrap_or_else(|| format!("repository {repo_id}"))
    }

    /// A run just completed: failed, or fixed (it succeeded where the previous
    /// run of its workflow on its ref had failed).
    fn notify_run_completed(&self, run: &hangar_store::Run, conclusion: Conclusion) {
        let event = match conclusion {
            Conclusion::Failure => "run_failed",
            Conclusion::Success => {
                let previous = self
                    .store
                    .list_runs(&hangar_store::RunFilter {
                        repo_id: Some(run.repo_id),
                        workflow: Some(run.workflow_path.clone()),
                        status: Some(Status::Completed),
                        limit: Some(50),
                        ..Default::default()
                    })
                    .unwrap_or_default()
                    .into_iter()
                    .find(|r| r.id < run.id && r.git_ref == run.git_ref);
                match previous {
                    Some(p) if p.conclusion == Some(Conclusion::Failure) => "run_fixed",
                    _ => return,
                }
            }
            _ => return,
        };
        let repo = self.repo_name(run.repo_id);
        let title = if event == "run_failed" {
            format!("{} failed: {repo}", run.workflow_name)
        } else {
            format!("{} fixed: {repo}", run.workflow_name)
        };
        let failed: Vec<String> = self
            .store
            .jobs_of_run(run.id)
            .unwrap_or_default()
            .into_iter()
            .filter(|j| j.conclusion == Some(Conclusion::Failure))
            .map(|j| j.name)
            .collect();
        let mut text = format!(
            "{} on {} ({}) by {}",
            run.event,
            short_ref(&run.git_ref),
            short_sha(&run.sha),
            run.actor
        );
        if !failed.is_empty() {
            text.push_str(&format!("; failed: {}", failed.join(", ")));
        }
        self.notifier.notify(
            &self.store,
            crate::notify::Notice {
                event,
                repo_id: Some(run.repo_id),
                run_id: Some(run.id),
                title,
                text,
                data: json!({"workflow": run.workflow_path, "ref": run.git_ref, "sha": run.sha,
                    "event": run.event, "actor": run.actor, "conclusion": conclusion, "failed_jobs": failed}),
            },
        );
    }

    pub fn publish_job(&self, run_id: i64, job_id: i64) {
        if let Ok(Some(job)) = self.store.get_job(job_id) {
            // The one point every job state change goes through.
            self.forge.job_changed(&self.store, &job);
            self.notify_deployment(&job);
            self.live
                .publish(run_id, json!({"type": "job", "job": job}));
        }
    }

    pub async fn cancel_run(&self, run_id: i64, actor: &str, reason: &str) -> anyhow::Result<()> {
        {
            let _g = self.sched.lock().await;
            for job in self.store.jobs_of_run(run_id)? {
                match job.status {
                    Status::Waiting | Status::Queued => {
                        self.finish_job(&job, Conclusion::Cancelled, reason)?
                    }
                    Status::Running => self.store.request_cancel(job.id)?,
                    Status::Completed => {}
                }
            }
            if let Some(run) = self.store.get_run(run_id)?
                && run.status == Status::Waiting
            {
                self.store.set_run_held(run_id, false)?;
                self.store
                    .set_run_status(run_id, Status::Queued, None, None)?;
            }
            // Nothing is left to approve: a reviewer must not be asked, nor
            // able to start a job of a cancelled run.
            self.store
                .expire_approvals(run_id, &format!("the run was cancelled: {reason}"))?;
        }
        self.store.audit(
            actor,
            "run.cancel",
            &format!("run/{run_id}"),
            &json!({"reason": reason}),
        )?;
        self.advance_run(run_id).await;
        for job in self.store.jobs_of_run(run_id)? {
            self.wake_group(job.id).await;
        }
        Ok(())
    }

    /// Re-runs jobs: `which` is `all`, `failed` or a job id.
    ///
    /// As on GitHub, the jobs that need a re-run job run again too (their
    /// inputs change); the others keep their results. A caller of a
    /// reusable workflow stands for its called jobs: re-run by itself (by
    /// its id, or because it needs a re-run job) it re-runs every job it
    /// called, nested calls included; a called job re-run alone reopens its
    /// caller (whose conclusion and outputs are its called jobs'), and so
    /// what needs the caller. "Failed" re-runs the failed called jobs and
    /// reopens their callers; a caller that failed by itself (its outputs)
    /// while every job it called succeeded is re-run whole.
    pub async fn rerun(&self, run_id: i64, which: &str, actor: &str) -> anyhow::Result<Vec<i64>> {
        // A refused run has nothing to run again: its commit is what is wrong.
        if self.store.get_run(run_id)?.is_some()
            && let Some(why) = self.store.run_context(run_id)?[REFUSED]["rerun"].as_str()
        {
            anyhow::bail!("run {run_id} cannot be re-run: {why}");
        }
        let jobs = self.store.jobs_of_run(run_id)?;
        if jobs.iter().any(|j| j.status != Status::Completed) {
            anyhow::bail!("the run is still in progress; cancel it or wait for it to finish");
        }
        // The expanded callers, each with the key prefix of its called jobs.
        let mut callers: Vec<(i64, String)> = Vec::new();
        for j in &jobs {
            if let Some(prefix) = self
                .store
                .get_job(j.id)?
                .and_then(|full| crate::calls::called_prefix(&full.spec))
            {
                callers.push((j.id, prefix));
            }
        }
        let failed = |j: &Job| j.conclusion != Some(Conclusion::Success);
        // `whole`: the callers whose every called job runs again.
        let (mut chosen, mut whole): (Vec<i64>, Vec<i64>) = match which {
            "all" => (jobs.iter().map(|j| j.id).collect(), Vec::new()),
            "failed" => {
                let chosen: Vec<i64> = jobs.iter().filter(|j| failed(j)).map(|j| j.id).collect();
                let whole = callers
                    .iter()
                    .filter(|(id, prefix)| {
                        chosen.contains(id)
                            && !jobs
                                .iter()
                                .any(|j| j.key.starts_with(prefix.as_str()) && failed(j))
                    })
                    .map(|(id, _)| *id)
                    .collect();
                (chosen, whole)
            }
            id => {
                let id: i64 = id
                    .parse()
                    .context("re-run takes `all`, `failed` or a job id")?;
                if !jobs.iter().any(|j| j.id == id) {
                    anyhow::bail!("job {id} is not part of run {run_id}");
                }
                (vec![id], vec![id])
            }
        };
        loop {
            let before = (chosen.len(), whole.len());
            for (id, prefix) in &callers {
                if whole.contains(id) {
                    for j in jobs.iter().filter(|j| j.key.starts_with(prefix.as_str())) {
                        if !chosen.contains(&j.id) {
                            chosen.push(j.id);
                        }
                    }
                } else if !chosen.contains(id)
                    && jobs
                        .iter()
                        .any(|j| chosen.contains(&j.id) && j.key.starts_with(prefix.as_str()))
                {
                    chosen.push(*id);
                }
            }
            let keys: Vec<&str> = jobs
                .iter()
                .filter(|j| chosen.contains(&j.id))
                .map(|j| j.key.as_str())
                .collect();
            // What needs a re-run job runs again, whole: its inputs change.
            let needing: Vec<i64> = jobs
                .iter()
                .filter(|j| {
                    !whole.contains(&j.id) && j.needs.iter().any(|n| keys.contains(&n.as_str()))
                })
                .map(|j| j.id)
                .collect();
            for id in needing {
                if !chosen.contains(&id) {
                    chosen.push(id);
                }
                whole.push(id);
            }
            if (chosen.len(), whole.len()) == before {
                break;
            }
        }
        self.store.reset_jobs(run_id, &chosen, self.max_attempts)?;
        self.store.audit(
            actor,
            "run.rerun",
            &format!("run/{run_id}"),
            &json!({"jobs": chosen, "which": which}),
        )?;
        self.live.publish(
            run_id,
            json!({"type": "run", "status": Status::Queued, "conclusion": null}),
        );
        self.advance_run(run_id).await;
        Ok(chosen)
    }

    /// Expired leases: retried when attempts remain, otherwise failed with the reason.
    pub async fn reap(&self) -> anyhow::Result<usize> {
        // Expired leases are the database's, not this process's: of several
        // servers on one database, the leader of the periodic work reaps them.
        let expired = if matches!(self.store.leads(PERIODIC), Ok(true)) {
            self.store.expired_leases(now_ms())?
        } else {
            Vec::new()
        };
        let n = expired.len();
        for job in expired {
            self.lose_job(
                &job,
                "the agent stopped sending heartbeats; its lease expired",
            )
            .await?;
        }
        let due: Vec<i64> = {
            let mut t = self.timers.lock().unwrap_or_else(|e| e.into_inner());
            let now = now_ms();
            let due: Vec<(Millis, i64)> = t.keys().filter(|(at, _)| *at <= now).cloned().collect();
            for k in &due {
                t.remove(k);
            }
            due.into_iter().map(|(_, r)| r).collect()
        };
        for run in due {
            self.advance_run(run).await;
        }
        self.load_pending_environments().await;
        Ok(n)
    }

    /// Reads the protection rules of repositories that wait for them, then
    /// lets their waiting jobs go on; a repository that cannot be read is
    /// tried again in 30 s.
    async fn load_pending_environments(&self) {
        let now = now_ms();
        let due: Vec<i64> = self
            .env_loads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(r, _)| *r)
            .collect();
        for repo_id in due {
            let loaded = match self.store.get_repo(repo_id) {
                Ok(Some(repo)) => match self.load_environments(&repo).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(repo = repo.name, "protection rules: {e:#}");
                        false
                    }
                },
                _ => true,
            };
            {
                let mut pending = self.env_loads.lock().unwrap_or_else(|e| e.into_inner());
                if loaded {
                    pending.remove(&repo_id);
                } else {
                    pending.insert(repo_id, now_ms() + 30_000);
                }
            }
            if loaded {
                let runs: Vec<i64> = self
                    .store
                    .active_runs()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| r.repo_id == repo_id)
                    .map(|r| r.id)
                    .collect();
                for run in runs {
                    self.advance_run(run).await;
                }
            }
        }
    }

    /// The protection rules at the repository's default branch.
    pub async fn load_environments(&self, repo: &Repo) -> anyhow::Result<()> {
        let head = self
            .git
            .symbolic_head(&repo.clone_url)
            .await
            .unwrap_or_else(|| "refs/heads/main".into());
        let sha = self
            .git
            .resolve(&repo.clone_url, &head)
            .await
            .with_context(|| format!("resolving {head} of {}", repo.name))?;
        self.sync_environments(repo, &sha).await
    }

    pub async fn lose_job(&self, job: &Job, why: &str) -> anyhow::Result<()> {
        let owner = job.lease_owner.clone().unwrap_or_default();
        let retry = job.attempt < job.max_attempts;
        let reason = if retry {
            format!(
                "{why} (agent {owner}); retrying, attempt {} of {}",
                job.attempt + 1,
                job.max_attempts
            )
        } else {
            format!("{why} (agent {owner})")
        };
        if self
            .store
            .release_lease(job.id, job.fence, retry, &reason)?
        {
            tracing::warn!(job = job.id, "{reason}");
            let run = self.store.get_run(job.run_id).ok().flatten();
            self.notifier.notify(
                &self.store,
                crate::notify::Notice {
                    event: "agent_lost",
                    repo_id: run.as_ref().map(|r| r.repo_id),
                    run_id: Some(job.run_id),
                    title: format!("Agent lost: {owner}"),
                    text: format!("job {} ({}): {reason}", job.name, job.id),
                    data: json!({"agent": owner, "job_id": job.id, "retry": retry}),
                },
            );
            self.store.audit(
                "hangar",
                "job.lease_lost",
                &format!("job/{}", job.id),
                &json!({"agent": owner, "retry": retry}),
            )?;
            if !retry {
                let _ = self.store.append_log_chunk(
                    job.id,
                    job.attempt,
                    1_000_000,
                    10_000_000,
                    &format!("##[error]{reason}\n"),
                );
            }
            self.publish_job(job.run_id, job.id);
            if retry {
                self.wake_agents(std::slice::from_ref(&job.labels));
            }
            self.advance_run(job.run_id).await;
            self.wake_group(job.id).await;
        }
        Ok(())
    }

    /// After a restart: the previous process's embedded agent died with it, so its
    /// leases are settled now rather than after expiry (unless another server
    /// that is still running holds them); every active run is re-checked.
    pub async fn recover(&self) -> anyhow::Result<()> {
        for job in self.store.jobs_leased_by_prefix("embedded-")? {
            let owner = job.lease_owner.as_deref().unwrap_or_default();
            // Another live server's embedded agent (several servers on one
            // PostgreSQL database) keeps its jobs; a dead process's are settled.
            if owner != self.embedded_agent_id && !self.store.present(owner)? {
                self.lose_job(
                    &job,
                    "the server restarted while the job ran on its embedded agent",
                )
                .await?;
            }
        }
        for run in self.store.active_runs()? {
            if self.store.job_counts(run.id)?.total == 0
                && self.store.run_context(run.id)?.get(REFUSED).is_some()
            {
                // Stored by a process that stopped before failing it.
                if let Err(e) = self.fail_refused(run.id).await {
                    tracing::warn!(run = run.id, "failing a refused run: {e:#}");
                }
                continue;
            }
            self.advance_run(run.id).await;
        }
        Ok(())
    }

    /// Why a queued job is still queued, from the agents seen recently.
    pub fn queued_reason(&self, job: &Job) -> String {
        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        let matching: Vec<&AgentSeen> = agents
            .values()
            .filter(|a| now - a.last_seen < 60_000)
            .filter(|a| {
                job.labels
                    .iter()
                    .all(|l| a.labels.iter().any(|o| o.eq_ignore_ascii_case(l)))
            })
            .collect();
        if matching.is_empty() {
            format!(
                "no connected agent has the labels [{}]",
                job.labels.join(", ")
            )
        } else {
            "waiting for a free slot on an agent".to_string()
        }
    }

    /// Protection rules from `hangar.yml` (`environments.<name>.protection`) at a commit.
    /// Also the notification rules of its `notifications:`.
    pub async fn sync_environments(&self, repo: &Repo, sha: &str) -> anyhow::Result<()> {
        let Some(text) = self.git.file_at(&repo.clone_url, sha, "hangar.yml").await? else {
            self.notifier.set_file_rules(repo.id, vec![]);
            self.store.set_environments_loaded(repo.id)?;
            return Ok(());
        };
        // A file that does not validate keeps no rules: a typo must not send
        // a deployment's news to the wrong place. `hangar validate` shows why.
        match hangar_project::parse("hangar.yml", &text) {
            Ok(p) => self.notifier.set_file_rules(
                repo.id,
                p.notifications.into_iter().map(|r| r.value).collect(),
            ),
            Err(e) => {
                self.notifier.set_file_rules(repo.id, vec![]);
                tracing::warn!(
                    repo = %repo.name,
                    "hangar.yml at {sha} is invalid; its notification rules are not used:\n{e}"
                );
            }
        }
        for (name, p) in parse_protections(&text).map_err(|e| anyhow::anyhow!("hangar.yml: {e}"))? {
            self.store.set_environment(repo.id, &name, &p)?;
        }
        self.store.set_environments_loaded(repo.id)?;
        Ok(())
    }
}

/// How often, and how far apart, a pull request's merge ref is asked for
/// while GitHub is still computing it (`mergeable: null`): at most 3 s more
/// before the webhook is answered.
const MERGE_REF_TRIES: u32 = 4;
const MERGE_REF_WAIT: Duration = Duration::from_secs(1);

enum MatrixStep {
    Ready,
    Expanded,
    Failed(String),
}

/// A stored job's place in the scheduler's graph.
fn job_state(j: &Job) -> hangar_engine::schedule::State {
    use hangar_engine::schedule::State;
    match j.status {
        Status::Waiting => State::Waiting,
        // A completed job always has a conclusion; should a row lack one,
        // the jobs that need it must not run as if it had succeeded.
        Status::Completed => State::Done(scheduled_conclusion(j)),
        Status::Queued | Status::Running => State::Running,
    }
}

/// A completed job's conclusion as the jobs after it and its run see it: a
/// failure under `continue-on-error` is a success (it is still shown as a
/// failure). A row lacking a conclusion must not count as a success.
pub(crate) fn scheduled_conclusion(j: &Job) -> Conclusion {
    match j.conclusion {
        Some(Conclusion::Failure) if j.continue_on_error => Conclusion::Success,
        Some(c) => c,
        None => Conclusion::Failure,
    }
}

/// Status functions over the jobs `deps` (matrix legs grouped by key).
pub(crate) fn status_host_of(deps: &[&Job]) -> hangar_engine::schedule::StatusHost {
    use hangar_engine::schedule::State;
    let mut needs = BTreeMap::new();
    for d in deps {
        let legs = deps.iter().filter(|o| o.key == d.key).map(|o| job_state(o));
        if let State::Done(c) = State::of_legs(legs) {
            needs.insert(d.key.clone(), c);
        }
    }
    hangar_engine::schedule::StatusHost {
        ancestors: needs.clone(),
        needs,
        cancelled: false,
    }
}

/// The `needs` context: each needed job's result (its legs' aggregate, as the
/// scheduler sees it) and outputs (every leg's, merged).
pub(crate) fn needs_context(deps: &[&Job], host: &hangar_engine::schedule::StatusHost) -> Value {
    let mut outputs: Vec<(String, serde_json::Map<String, Value>)> = Vec::new();
    for d in deps {
        let at = match outputs.iter().position(|(k, _)| *k == d.key) {
            Some(at) => at,
            None => {
                outputs.push((d.key.clone(), serde_json::Map::new()));
                outputs.len() - 1
            }
        };
        if let Value::Object(from) = &d.outputs {
            outputs[at].1.extend(from.clone());
        }
    }
    Value::Object(hangar_engine::context::needs_context(
        outputs.into_iter().map(|(k, o)| {
            let result = host.needs.get(&k).copied();
            (k, result, o)
        }),
    ))
}

/// Reads only `environments.<name>.protection` of hangar.yml; the full model is
/// the `project` crate's.
pub fn parse_protections(text: &str) -> Result<Vec<(String, Protection)>, String> {
    let v = hangar_workflow::yaml::parse(text)
        .map_err(|errors| {
            let e = &errors[0];
            format!("{}:{}: {}", e.pos.line, e.pos.column, e.message)
        })?
        .to_json();
    let mut out = Vec::new();
    let Some(envs) = v.get("environments").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (name, env) in envs {
        let Some(p) = env.get("protection") else {
            continue;
        };
        let wait_seconds = match p.get("wait") {
            None => 0,
            Some(w @ (Value::Number(_) | Value::String(_))) => {
                let text = match w {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let wait = hangar_units::parse_duration(&text)
                    .map_err(|e| format!("environments.{name}.protection.wait: {e}"))?;
                i64::try_from(wait.as_secs()).unwrap_or(i64::MAX)
            }
            Some(other) => {
                return Err(format!(
                    "environments.{name}.protection.wait: expected seconds or a duration, got {other}"
                ));
            }
        };
        out.push((
            name.clone(),
            Protection {
                reviewers: workflows::list(p.get("reviewers")),
                wait_seconds,
                branches: workflows::list(p.get("branches")),
                prevent_self_review: match p.get("prevent_self_review") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => {
                        return Err(format!(
                            "environments.{name}.protection.prevent_self_review: expected true or false, got {other}"
                        ));
                    }
                },
            },
        ));
    }
    Ok(out)
}

fn short_ref(r: &str) -> &str {
    r.strip_prefix("refs/heads/")
        .or_else(|| r.strip_prefix("refs/tags/"))
        .unwrap_or(r)
}

fn short_sha(s: &str) -> &str {
    s.get(..7).unwrap_or(s)
}

pub fn data_dir_default() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("hangar");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/hangar");
    }
    PathBuf::from(".hangar")
}

pub fn spawn_reaper(app: Arc<App>, every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = app.reap().await {
                tracing::warn!("reaper: {e:#}");
            }
            if let Ok(d) = app.store.queue_depth() {
                app.metrics.queue_depth.set(d);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_of_the_pull_requests_own_workflows_take_the_fork_rules() {
        for event in [
            "pull_request",
            "pull_request_review",
            "pull_request_review_comment",
        ] {
            assert!(runs_pull_request_code(event), "{event}");
        }
        // The base branch's workflow, trusted as GitHub trusts it, and
        // everything else that runs a branch of the repository.
        for event in [
            "pull_request_target",
            "push",
            "workflow_run",
            "workflow_dispatch",
            "schedule",
            "pull_requests",
            "",
        ] {
            assert!(!runs_pull_request_code(event), "{event}");
        }
    }

    #[test]
    fn protections_from_hangar_yml() {
        let p = parse_protections("environments:\n  prod:\n    protection:\n      reviewers: [alice]\n      wait: 5m\n      branches: [main]\n  dev: {}\n").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1.wait_seconds, 300);
        assert_eq!(p[0].1.reviewers, vec!["alice"]);
        assert!(
            parse_protections("environments:\n  p:\n    protection: {wait: soon}\n")
                .unwrap_err()
                .contains("duration")
        );
    }
}
