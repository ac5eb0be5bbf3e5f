//! The controller of one environment: it owns the routers and instances of every
//! service, runs rollouts, and restores the desired state after a restart.
//!
//! Commit point: a rollout changes `stable` in `state.json` (atomically) only after
//! the router already sends all traffic to the new version. A controller killed at
//! any moment restarts from `stable`, so the environment comes back serving exactly
//! one consistent version. Under `hangar up` the routers run in a process of their
//! own (`plane`), which keeps serving the last weights while no controller runs;
//! the restarted controller then takes over the dead one's instances (recorded in
//! the same file, by pid, start time and port): they keep serving until its own
//! instances of the stable version are healthy and take the traffic, then they are
//! drained and stopped: no refused connection, no orphans. Without a router
//! process (the router died with the controller) they are killed first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hangar_project::{Environment, OnInterrupt, Project, StrategyKind};
use hangar_router::daemon::Link;
use indexmap::IndexMap;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::analysis::{self, Thresholds, Verdict};
use crate::plane::{self, Plane};
use crate::release::{Release, Releases};
use crate::state::{DeploymentRecord, EnvFiles, EnvState, Outcome, ProcessRecord, Supervision};
use crate::supervisor::{self, Instance, InstanceSpec, InstanceStatus, now_unix};

/// A human's word on a paused or running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Promote,
    Abort,
}

/// What a deployment was asked to do.
#[derive(Debug, Clone, Default)]
pub struct DeployRequest {
    pub service: Option<String>,
    pub artifact: Option<PathBuf>,
    /// Commit sha and commit time (unix seconds), for history and DORA.
    pub commit: Option<(String, u64)>,
    /// Build that commit (exported from the project's repository) instead of
    /// the working tree: its `hangar.yml`, its build command, its artifacts.
    pub from_commit: bool,
    /// Skip the services' build commands.
    pub no_build: bool,
    /// Also the services the environment's `services:` depend on but do
    /// not list (`--with-dependencies`).
    pub with_dependencies: bool,
}

struct ServiceRt {
    plane: Arc<Plane>,
    instances: Vec<Arc<Instance>>,
    /// Traffic share per version (relative weights) the refresher keeps applying.
    weights: Vec<(String, u32)>,
    retry_on_stable: Option<(String, String)>,
    rollout: Option<String>,
}

/// Status of one service, for `hangar status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub listen: SocketAddr,
    /// `http` or `tcp`: what the router speaks on `listen`.
    pub protocol: hangar_router::tcp::Protocol,
    pub stable: Option<String>,
    pub weights: Vec<(String, u32)>,
    pub rollout: Option<String>,
    pub instances: Vec<InstanceStatus>,
    pub traffic: Vec<(String, hangar_router::Summary)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    pub env: String,
    pub controller_pid: u32,
    pub services: Vec<ServiceStatus>,
}

pub struct Controller {
    pub env: String,
    project_dir: PathBuf,
    /// The data directory (releases, every environment's state).
    data: PathBuf,
    project: Mutex<Project>,
    files: EnvFiles,
    releases: Releases,
    services: Mutex<IndexMap<String, ServiceRt>>,
    state: Mutex<EnvState>,
    signal: watch::Sender<Option<Signal>>,
    busy: tokio::sync::Mutex<()>,
    events: broadcast::Sender<String>,
    /// The environment's router process, when the routers run apart from the controller.
    link: Option<Link>,
    /// Instances of a controller that died, still serving through the router
    /// until this controller's own instances take over (then stopped).
    leftovers: Mutex<Vec<ProcessRecord>>,
    /// Itself, for the recorders its instances call from their own tasks.
    me: std::sync::Weak<Controller>,
    /// Rollouts a dead controller was running, to go on with once the
    /// stable versions serve (`on_interrupt: resume`), with the canary step
    /// they had reached.
    to_resume: Mutex<Vec<(DeploymentRecord, Option<u32>)>>,
    /// Serialises `save_processes_with`.
    saving: Mutex<()>,
    /// The environment's lock, held until this controller shuts down.
    lock: Mutex<Option<std::fs::File>>,
    /// Started in place of a controller that died (rather than by a first
    /// `hangar up`/`deploy` or after `hangar down`): it re-adopts, and a
    /// failure to bring the services up does not take the environment down.
    restarted: bool,
    /// Per service: instances of the dead controller this one re-adopted
    /// and kept (healthy), for history.
    adopted: Mutex<HashMap<String, usize>>,
    /// Set by `shutdown`: what retries by itself stops retrying.
    stopping: std::sync::atomic::AtomicBool,
    /// Router processes this controller started again after one died: what
    /// the router does not keep in `router.json` (the metrics listener) is
    /// sent again when it changes.
    router_restarts: std::sync::atomic::AtomicU64,
}

fn env_config(project: &Project, env: &str) -> Environment {
    project
        .environments
        .get(env)
        .map(|e| e.value.clone())
        .unwrap_or_else(|| {
            // An environment not in hangar.yml (`local` usually) gets the defaults.
            hangar_project::parse("-", "environments: {x: {}}")
                .ok()
                .and_then(|p| p.environments.get("x").map(|e| e.value.clone()))
                .unwrap_or_else(unreachable_default)
        })
}

fn unreachable_default() -> Environment {
    // `environments: {x: {}}` always parses; this keeps the type checker honest without a panic.
    serde_json::from_str("{}").unwrap_or_else(|_| std::process::abort())
}

impl Controller {
    /// Opens an environment: kills what a previous controller left behind, then
    /// starts every service at its stable release (or its first release when it has none).
    pub async fn open(
        project_dir: &Path,
        data: &Path,
        env: &str,
    ) -> anyhow::Result<Arc<Controller>> {
        let (_, project) = hangar_project::load(project_dir).map_err(|e| anyhow!("{e}"))?;
        if env != "local" && !project.environments.contains_key(env) {
            let known: Vec<&str> = project.environments.keys().map(String::as_str).collect();
            bail!(
                "unknown environment `{env}`: hangar.yml defines {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            );
        }
        let files = EnvFiles::new(data, env);
        std::fs::create_dir_all(&files.dir)?;
        let lock = std::fs::File::create(files.lock_path())?;
        if lock.try_lock().is_err() {
            bail!(
                "environment `{env}` is already run by another hangar process{}: use `hangar deploy`/`status` against it, or `hangar down {env}`",
                files
                    .load()
                    .controller_pid
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default()
            );
        }
        let mut state = files.load();
        if let Some(pid) = state.controller_pid
            && pid != std::process::id()
            && supervisor::process_alive(pid)
            && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .map(|c| c.contains("hangar"))
                .unwrap_or(false)
        {
            bail!(
                "environment `{env}` is already run by hangar process {pid}: use `hangar deploy`/`status` against it, or `hangar down {env}`"
            );
        }
        let dead = state.controller_pid.filter(|p| *p != std::process::id());
        // `controller.json` is removed by a controller that stops as asked:
        // still there, it names one that died.
        let restarted = files.supervision().is_some();
        // A router process still answering has served the dead controller's
        // instances all along: they keep serving until ours are healthy.
        let link = match plane::router_exe() {
            Some(exe) => {
                let exe = exe.to_path_buf();
                let dir = files.dir.clone();
                let had_router = Link::new(&dir).ping().is_some();
                let (link, _) =
                    tokio::task::spawn_blocking(move || plane::ensure_router_process(&exe, &dir))
                        .await??;
                if !had_router {
                    stop_recorded_processes(&mut state);
                }
                Some(link)
            }
            None => {
                stop_recorded_processes(&mut state);
                None
            }
        };
        let leftovers: Vec<ProcessRecord> = state
            .processes
            .iter()
            .filter(|p| {
                supervisor::process_alive(p.pid)
                    && supervisor::process_start_time(p.pid) == p.start_time
            })
            .cloned()
            .collect();
        state.processes = leftovers.clone();
        // What the dead controller was doing: recorded as it ended, since the
        // state holds the commit point (`stable`) of each rollout.
        let interrupted: Vec<DeploymentRecord> = state.in_progress.drain(..).collect();
        let steps = std::mem::take(&mut state.steps);
        let env_cfg = env_config(&project, env);
        let releases = Releases::new(data);
        // With `on_interrupt: resume`, a rollout that had not switched goes
        // on once the stable version serves again; it stays in progress (a
        // second death resumes it again).
        let mut to_resume = Vec::new();
        for rec in &interrupted {
            let stable = state.stable.get(&rec.service);
            if env_cfg.on_interrupt == OnInterrupt::Resume
                && rec.previous.is_some()
                && stable == rec.previous.as_ref()
                && releases.get(&rec.service, &rec.version).is_some()
            {
                let mut rec = rec.clone();
                let who = dead
                    .map(|p| format!("the controller (pid {p})"))
                    .unwrap_or_else(|| "the controller".into());
                let at = steps.get(&rec.id).copied();
                rec.events.push(format!(
                    "{}: {who} died {}; the restarted controller resumes the rollout of {} from there (on_interrupt: resume)",
                    rec.service,
                    where_interrupted(&rec.strategy, at, &env_cfg),
                    rec.version
                ));
                rec.event_times.resize(rec.events.len() - 1, 0);
                rec.event_times.push(supervisor::now_unix_ms());
                if let Some(at) = at {
                    state.steps.insert(rec.id, at);
                }
                state.in_progress.push(rec.clone());
                to_resume.push((rec, at));
            }
        }
        let interrupted: Vec<DeploymentRecord> = interrupted
            .into_iter()
            .filter(|r| !to_resume.iter().any(|(t, _)| t.id == r.id))
            .collect();
        state.controller_pid = Some(std::process::id());
        files.save(&state)?;
        if let Some(exe) = plane::router_exe() {
            // The router process restarts this controller if it dies.
            files.set_supervision(&Supervision {
                pid: std::process::id(),
                start_time: supervisor::process_start_time(std::process::id()),
                exe: exe.to_path_buf(),
                dir: std::path::absolute(project_dir)?,
                data: std::path::absolute(data)?,
                env: env.to_string(),
            })?;
        }
        for mut rec in interrupted {
            let stable = state.stable.get(&rec.service).cloned();
            let who = dead
                .map(|p| format!("the controller (pid {p})"))
                .unwrap_or_else(|| "the controller".into());
            let outcome = if stable.as_deref() == Some(rec.version.as_str()) {
                rec.events.push(format!(
                    "{}: {who} stopped after {} took all traffic; the restarted controller keeps it",
                    rec.service, rec.version
                ));
                Outcome::Succeeded
            } else {
                rec.events.push(format!(
                    "{}: {who} died {}; the restarted controller abandoned {} and serves {}{}",
                    rec.service,
                    where_interrupted(&rec.strategy, steps.get(&rec.id).copied(), &env_cfg),
                    rec.version,
                    stable.as_deref().unwrap_or("nothing"),
                    if leftovers.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (the router kept the last weights meanwhile; the dead controller's instances of {} are re-adopted, its {} instance(s) of {} drained and stopped once {} serves alone)",
                            stable.as_deref().unwrap_or("nothing"),
                            leftovers
                                .iter()
                                .filter(|p| p.service == rec.service && p.version == rec.version)
                                .count(),
                            rec.version,
                            stable.as_deref().unwrap_or("nothing"),
                        )
                    }
                ));
                Outcome::Aborted
            };
            rec.event_times.resize(rec.events.len() - 1, 0);
            rec.event_times.push(supervisor::now_unix_ms());
            rec.outcome = outcome;
            rec.finished = now_unix();
            rec.finished_ms = Some(supervisor::now_unix_ms());
            files.append_history(&rec)?;
        }
        let restarted = restarted || !leftovers.is_empty();
        let (signal, _) = watch::channel(None);
        let (events, _) = broadcast::channel(1024);
        let ctl = Arc::new_cyclic(|me| Controller {
            env: env.to_string(),
            project_dir: project_dir.to_path_buf(),
            data: data.to_path_buf(),
            project: Mutex::new(project),
            releases: Releases::new(data),
            files,
            services: Mutex::default(),
            state: Mutex::new(state),
            signal,
            busy: tokio::sync::Mutex::new(()),
            events,
            link,
            leftovers: Mutex::new(leftovers),
            me: me.clone(),
            to_resume: Mutex::new(to_resume),
            lock: Mutex::new(Some(lock)),
            saving: Mutex::new(()),
            restarted,
            adopted: Mutex::default(),
            stopping: Default::default(),
            router_restarts: Default::default(),
        });
        if let (Some(exe), Some(_)) = (plane::router_exe(), &ctl.link) {
            // The controller supervises its router as the router supervises
            // it (one loop, `plane::supervise`): a killed data plane comes
            // back without waiting for the next `hangar` command.
            let exe = exe.to_path_buf();
            let dir = std::path::absolute(&ctl.files.dir)?;
            let (done, told) = (Arc::downgrade(&ctl), Arc::downgrade(&ctl));
            std::thread::Builder::new()
                .name("router-supervisor".into())
                .spawn(move || {
                    plane::supervise_router(
                        &exe,
                        &dir,
                        || {
                            done.upgrade().is_none_or(|c| {
                                c.stopping.load(std::sync::atomic::Ordering::SeqCst)
                            })
                        },
                        |pid, down| {
                            if let Some(c) = told.upgrade() {
                                c.router_restarts
                                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                let _ = c.events.send(format!(
                                    "the router process was down for {} ms; restarted (pid {pid}) with its last tables",
                                    down.as_millis()
                                ));
                                tracing::warn!(
                                    "{}: router restarted (pid {pid}) after {} ms down",
                                    c.env,
                                    down.as_millis()
                                );
                            }
                        },
                    )
                })?;
        }
        tokio::spawn(ctl.clone().refresher());
        crate::alerts::watch(&ctl);
        Ok(ctl)
    }

    /// Starts every service of the environment at its stable release, in dependency order.
    pub async fn start_all(self: &Arc<Self>, build: bool) -> anyhow::Result<()> {
        self.start_all_with(&DeployRequest {
            no_build: !build,
            ..Default::default()
        })
        .await
    }

    /// As [`Controller::start_all`]; a service with no stable release gets its
    /// first one as `first` says (a commit to build, an artifact).
    pub async fn start_all_with(self: &Arc<Self>, first: &DeployRequest) -> anyhow::Result<()> {
        let _busy = self.busy.lock().await;
        let source = self.source_for(first).await?;
        if source != self.project_dir {
            let (_, project) = hangar_project::load(&source).map_err(|e| anyhow!("{e}"))?;
            *self.project.lock().unwrap_or_else(|e| e.into_inner()) = project;
        }
        let (order, env) = {
            let p = self.project.lock().unwrap_or_else(|e| e.into_inner());
            let env = env_config(&p, &self.env);
            let listed = p.services_in_order(Some(&env));
            // What the environment lists, and what was deployed here before
            // (a dependency deployed `--with-dependencies` is started again).
            let deployed: Vec<String> = self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stable
                .keys()
                .cloned()
                .collect();
            let order: Vec<String> = p
                .services_with_dependencies(Some(&env))
                .into_iter()
                .filter(|s| first.with_dependencies || listed.contains(s) || deployed.contains(s))
                .collect();
            (order, env)
        };
        // Every listener first: a `listen` address in use fails the start at
        // once, naming who has it, before anything is built or started.
        for svc in &order {
            self.ensure_router(svc, &env).await?;
        }
        for svc in order {
            let stable = self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stable
                .get(&svc)
                .cloned();
            // A service with no stable release is deployed here for the first
            // time: that is a deployment (history, DORA), a restart is not.
            let (release, first_deployment) = match stable.and_then(|v| self.releases.get(&svc, &v))
            {
                Some(r) => (r, false),
                None => (
                    self.new_release(&svc, first, &source, None)
                        .await?
                        .ok_or_else(|| anyhow!("service `{svc}`: no release was built"))?,
                    true,
                ),
            };
            self.ensure_router(&svc, &env).await?;
            let mut record = self.record(
                &svc,
                &release,
                None,
                if first_deployment { "first" } else { "start" },
            );
            let deadline = release.config.health.clone().unwrap_or_default().deadline.0;
            // A rollout to go on with (`on_interrupt: resume`) keeps the dead
            // controller's instances of its version too.
            let resuming = self
                .to_resume
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|(r, _)| r.service == svc)
                .map(|(r, _)| r.version.clone());
            let mut versions = vec![release.version.clone()];
            versions.extend(resuming.clone());
            let kept = self.adopt(&svc, &versions, deadline).await;
            if kept > 0 {
                self.event(
                    &mut record,
                    format!(
                        "{svc}: re-adopted {kept} running instance(s) of the previous controller (pid, start time and environment checked; healthy)"
                    ),
                );
            }
            let healthy = |v: &str| -> u32 {
                self.instances_of(&svc, v)
                    .iter()
                    .filter(|i| i.is_healthy())
                    .count() as u32
            };
            // Only what is gone or unhealthy is replaced. A rolling rollout
            // to resume shares the count between both versions.
            let mut want = release.config.instances;
            if let Some(v) = &resuming
                && env.strategy.value == StrategyKind::Rolling
            {
                want = want.saturating_sub(healthy(v));
            }
            let missing = want.saturating_sub(healthy(&release.version));
            let started = self.start_instances(&svc, &release, missing)?;
            if let Err(e) = wait_all_healthy(&started, deadline).await {
                self.event(
                    &mut record,
                    format!("{svc}: {} did not become healthy: {e}", release.version),
                );
                for i in &started {
                    i.stop().await;
                }
                self.forget(&svc, &started);
                if first_deployment {
                    self.finish(record, Outcome::Failed)?;
                }
                bail!("service `{svc}` did not start: {e}");
            }
            // A rollout to resume keeps the weights the router serves (its
            // step, its batch) for the versions that have healthy instances.
            let kept_weights: Option<Vec<(String, u32)>> = resuming.as_ref().and_then(|_| {
                let w: Vec<(String, u32)> = self
                    .plane(&svc)?
                    .weights()?
                    .into_iter()
                    .filter(|(v, w)| *w > 0 && versions.contains(v) && healthy(v) > 0)
                    .collect();
                (!w.is_empty()).then_some(w)
            });
            match kept_weights {
                Some(w) => {
                    let text = w
                        .iter()
                        .map(|(v, w)| format!("{v}: {w}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    self.set_weights(&svc, w, None);
                    self.event(&mut record, format!("{svc}: weights kept ({text})"));
                }
                None => self.set_weights(&svc, vec![(release.version.clone(), 100)], None),
            }
            self.commit_stable(&svc, &release.version)?;
            self.event(
                &mut record,
                format!(
                    "{svc}: {} serving on {}",
                    release.version,
                    self.listen_addr(&svc)
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                ),
            );
            if first_deployment {
                self.finish(record, Outcome::Succeeded)?;
            }
        }
        self.stop_leftovers().await;
        let resume = std::mem::take(&mut *self.to_resume.lock().unwrap_or_else(|e| e.into_inner()));
        if !resume.is_empty() {
            // After this start (it holds `busy`), so the controller answers
            // `status`, `promote` and `abort` during the resumed rollout.
            let me = self.clone();
            tokio::spawn(async move { me.resume(resume).await });
        }
        Ok(())
    }

    /// Whether this controller took the place of one that died.
    pub fn restarted(&self) -> bool {
        self.restarted
    }

    /// A restarted controller that could not bring its services up
    /// (`error`): the environment is not taken down with it. The router keeps
    /// serving what still answers (the dead controller's instances, the
    /// re-adopted ones), and the start is retried with the environment's
    /// backoff until it succeeds or the environment is stopped; the failure
    /// and the recovery are alerts (`controller-start`, in the alert event
    /// log `hangar serve` relays).
    pub fn keep_retrying(self: &Arc<Self>, first: DeployRequest, error: anyhow::Error) {
        let since = supervisor::now_unix_ms();
        let env = self.env.clone();
        let notice = move |status: &str, summary: String| {
            serde_json::json!({
                "status": status,
                "env": env,
                "service": "*",
                "rule": "controller-start",
                "kind": "controller",
                "severity": "critical",
                "value": "",
                "threshold": "",
                "summary": summary,
                "for": "0s",
                "started_at_ms": since,
                "resolved_at_ms": (status == "resolved").then(supervisor::now_unix_ms),
            })
        };
        let firing = notice(
            "firing",
            format!(
                "{}: the restarted controller cannot bring its services up ({error:#}); the router keeps serving what still answers, retrying with backoff",
                self.env
            ),
        );
        tracing::error!("{}", firing["summary"]);
        let _ = crate::alerts::append_event(&self.files.dir, &firing);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = plane::Backoff::new();
            let mut attempts = 1u32;
            loop {
                tokio::time::sleep(backoff.next_wait()).await;
                let Some(ctl) = weak.upgrade() else { return };
                if ctl.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                attempts += 1;
                match ctl.start_all_with(&first).await {
                    Ok(()) => {
                        let resolved = notice(
                            "resolved",
                            format!(
                                "{}: the restarted controller brought its services up after {attempts} attempts",
                                ctl.env
                            ),
                        );
                        tracing::info!("{}", resolved["summary"]);
                        let _ = crate::alerts::append_event(&ctl.files.dir, &resolved);
                        return;
                    }
                    Err(e) => tracing::error!(
                        "{}: attempt {attempts} to bring the services up failed: {e:#}; next in {} ms",
                        ctl.env,
                        backoff.peek().as_millis()
                    ),
                }
            }
        });
    }

    /// Goes on with rollouts a dead controller was running (`on_interrupt: resume`).
    async fn resume(self: Arc<Self>, interrupted: Vec<(DeploymentRecord, Option<u32>)>) {
        let _busy = self.busy.lock().await;
        let env = {
            let p = self.project.lock().unwrap_or_else(|e| e.into_inner());
            env_config(&p, &self.env)
        };
        for (rec, at) in interrupted {
            let svc = rec.service.clone();
            let Some(release) = self.releases.get(&svc, &rec.version) else {
                let mut rec = rec;
                let gone = format!("{svc}: release {} is gone; not resumed", rec.version);
                self.event(&mut rec, gone);
                let _ = self.finish(rec, Outcome::Aborted);
                continue;
            };
            if let Err(e) = self.ensure_router(&svc, &env).await {
                tracing::error!("{svc}: cannot resume: {e:#}");
                continue;
            }
            match self
                .rollout_from(&svc, &env, release, Some((rec, at)))
                .await
            {
                Ok(r) => tracing::info!("{svc}: resumed rollout ended {:?}", r.outcome),
                Err(e) => tracing::error!("{svc}: resumed rollout failed: {e:#}"),
            }
        }
    }

    /// Takes over the dead controller's instances of `svc` at `versions`
    /// that are still the processes recorded ([`supervisor::adoptable`]) and
    /// whose release is kept, health-checks them, and keeps those that pass
    /// within `deadline` (the others are stopped: they are replaced). Returns
    /// how many were kept. The rest of the dead controller's instances stay
    /// leftovers (drained and stopped once this controller serves).
    async fn adopt(&self, svc: &str, versions: &[String], deadline: Duration) -> usize {
        if self.link.is_none() {
            return 0; // no router kept them serving: they were stopped
        }
        let records: Vec<ProcessRecord> = {
            let mut left = self.leftovers.lock().unwrap_or_else(|e| e.into_inner());
            let (take, keep): (Vec<_>, Vec<_>) = left.drain(..).partition(|p| {
                p.service == svc
                    && versions.contains(&p.version)
                    && self.releases.get(svc, &p.version).is_some()
                    && supervisor::adoptable(p)
            });
            *left = keep;
            take
        };
        if records.is_empty() {
            return 0;
        }
        let mut adopted = Vec::new();
        for p in records {
            let Some(release) = self.releases.get(svc, &p.version) else {
                continue;
            };
            let taken: Vec<u32> = self
                .instances_of(svc, &p.version)
                .iter()
                .map(|i| i.spec.index)
                .collect();
            let index = p
                .index
                .filter(|i| !taken.contains(i))
                .unwrap_or_else(|| (0..).find(|i| !taken.contains(i)).unwrap_or(0));
            // Its variables for a restart; the process itself runs with those
            // it was started with.
            let service_env = self.service_env(svc, &release).unwrap_or_else(|e| {
                tracing::warn!("{e}");
                release
                    .config
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect()
            });
            let spec = self.spec_for(svc, &release, index, &service_env);
            let Some(port) = p.port else { continue };
            let inst = Instance::adopt(spec, port, p.pid, p.start_time, self.recorder());
            if let Some(s) = self
                .services
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(svc)
            {
                s.instances.push(inst.clone());
            }
            adopted.push(inst);
        }
        let _ = self.save_processes();
        let waits: Vec<_> = adopted
            .iter()
            .map(|i| {
                let i = i.clone();
                tokio::spawn(async move { i.wait_healthy(deadline).await })
            })
            .collect();
        let mut unhealthy = Vec::new();
        for (i, w) in adopted.iter().zip(waits) {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    tracing::warn!("{svc}: not re-adopted: {why}");
                    unhealthy.push(i.clone());
                }
                Err(_) => unhealthy.push(i.clone()),
            }
        }
        let kept = adopted.len() - unhealthy.len();
        // Not in the router's table of this controller yet: stopped at once.
        self.forget(svc, &unhealthy);
        for i in &unhealthy {
            i.stop().await;
        }
        self.adopted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(svc.to_string(), kept);
        kept
    }

    /// How many of the dead controller's instances of `svc` this one kept.
    fn adopted_count(&self, svc: &str) -> usize {
        self.adopted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(svc)
            .copied()
            .unwrap_or(0)
    }

    /// Drains and stops the instances a dead controller left, now that the
    /// router sends their traffic to this controller's instances.
    async fn stop_leftovers(&self) {
        let left: Vec<ProcessRecord> =
            std::mem::take(&mut *self.leftovers.lock().unwrap_or_else(|e| e.into_inner()));
        if left.is_empty() {
            return;
        }
        let addrs: Vec<(String, SocketAddr)> = left
            .iter()
            .filter_map(|p| {
                Some((
                    p.service.clone(),
                    SocketAddr::from(([127, 0, 0, 1], p.port?)),
                ))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let busy: usize = addrs
                .iter()
                .map(|(svc, a)| self.plane(svc).map(|p| p.inflight(&[*a])).unwrap_or(0))
                .sum();
            if busy == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for p in &left {
            if supervisor::process_alive(p.pid)
                && supervisor::process_start_time(p.pid) == p.start_time
            {
                supervisor::signal_group(p.pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && left.iter().any(|p| supervisor::process_alive(p.pid)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for p in &left {
            if supervisor::process_alive(p.pid)
                && supervisor::process_start_time(p.pid) == p.start_time
            {
                supervisor::signal_group(p.pid, libc::SIGKILL);
            }
        }
        let _ = self.save_processes();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    pub fn signal(&self, s: Signal) -> anyhow::Result<()> {
        let rolling = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|s| s.rollout.is_some());
        if !rolling {
            bail!("no rollout in progress in `{}`", self.env);
        }
        self.signal.send_replace(Some(s));
        Ok(())
    }

    pub fn listen_addr(&self, svc: &str) -> Option<SocketAddr> {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(svc)
            .map(|s| s.plane.addr())
    }

    fn plane(&self, svc: &str) -> Option<Arc<Plane>> {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(svc)
            .map(|s| s.plane.clone())
    }

    /// Deploys new releases of the environment's services (or one service).
    pub async fn deploy(
        self: &Arc<Self>,
        req: DeployRequest,
    ) -> anyhow::Result<Vec<DeploymentRecord>> {
        let _busy = self.busy.lock().await;
        let source = self.source_for(&req).await?;
        let (_, project) = hangar_project::load(&source).map_err(|e| anyhow!("{e}"))?;
        *self.project.lock().unwrap_or_else(|e| e.into_inner()) = project.clone();
        let env = env_config(&project, &self.env);
        let order = match &req.service {
            Some(s) if !project.services.contains_key(s) => {
                bail!("unknown service `{s}` in hangar.yml")
            }
            Some(s) => vec![s.clone()],
            None if req.with_dependencies => project.services_with_dependencies(Some(&env)),
            None => project.services_in_order(Some(&env)),
        };
        // Every listener first, as in `start_all_with`.
        for svc in &order {
            self.ensure_router(svc, &env).await?;
        }
        let mut out = Vec::new();
        for svc in order {
            // Without `--service`, a service whose build and configuration are
            // the same as what it serves is left alone.
            let unless_same = match &req.service {
                Some(_) => None,
                None => self
                    .stable(&svc)
                    .filter(|v| !self.instances_of(&svc, v).is_empty())
                    .and_then(|v| self.releases.get(&svc, &v)),
            };
            let Some(release) = self
                .new_release(&svc, &req, &source, unless_same.as_ref())
                .await?
            else {
                continue;
            };
            let rec = self.rollout(&svc, &env, release).await?;
            let failed = rec.outcome != Outcome::Succeeded;
            out.push(rec);
            if failed {
                break; // later services depend on this one
            }
        }
        Ok(out)
    }

    /// Where a deployment's release comes from: the project directory, or the
    /// exported tree of the commit it names (`from_commit`).
    async fn source_for(&self, req: &DeployRequest) -> anyhow::Result<PathBuf> {
        match (&req.commit, req.from_commit) {
            (Some((sha, _)), true) => {
                let _ = self
                    .events
                    .send(format!("checking out {}", &sha[..sha.len().min(12)]));
                let dest = self.files.dir.join("sources").join(sha);
                let (repo, sha, d) = (self.project_dir.clone(), sha.clone(), dest.clone());
                tokio::task::spawn_blocking(move || export_commit(&repo, &sha, &d)).await??;
                Ok(dest)
            }
            _ => Ok(self.project_dir.clone()),
        }
    }

    /// Builds (unless told not to) and records a release of `svc` from `source`:
    /// the project directory, or an exported commit. With `unless_same`, no
    /// release is made (`None`) when the build, the configuration and the
    /// environment's variables are those of that release.
    async fn new_release(
        &self,
        svc: &str,
        req: &DeployRequest,
        source: &Path,
        unless_same: Option<&Release>,
    ) -> anyhow::Result<Option<Release>> {
        let config = {
            let p = self.project.lock().unwrap_or_else(|e| e.into_inner());
            p.services
                .get(svc)
                .map(|s| s.value.clone())
                .ok_or_else(|| anyhow!("unknown service `{svc}`"))?
        };
        if let (Some(build), None, false) = (&config.build, &req.artifact, req.no_build) {
            let _ = self.events.send(format!("{svc}: building: {build}"));
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(build)
                .current_dir(source)
                .output()
                .await?;
            if !out.status.success() {
                bail!(
                    "service `{svc}`: build `{build}` failed ({}):\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let commit = match &req.commit {
            Some(c) => Some(c.clone()),
            // What runs is the working tree: a commit id alone would claim
            // that uncommitted changes are that commit.
            None if req.artifact.is_none() && source == self.project_dir => {
                let head = git_head(&self.project_dir);
                match head {
                    Some((sha, time)) if git_dirty(&self.project_dir, &self.data) => {
                        let _ = self.events.send(format!(
                            "{svc}: the working tree has uncommitted changes: recorded as {}-dirty, not as commit {}",
                            &sha[..sha.len().min(7)],
                            &sha[..sha.len().min(7)]
                        ));
                        Some((format!("{sha}-dirty"), time))
                    }
                    other => other,
                }
            }
            None => git_head(&self.project_dir),
        };
        let vars: Vec<(String, String)> = {
            let p = self.project.lock().unwrap_or_else(|e| e.into_inner());
            env_config(&p, &self.env).vars.into_iter().collect()
        };
        let project_files = if req.artifact.is_some() || !config.artifact.is_empty() {
            None // the artifact is what counts
        } else if source == self.project_dir {
            let (dir, data) = (self.project_dir.clone(), self.data.clone());
            tokio::task::spawn_blocking(move || project_digest(&dir, &data))
                .await
                .ok()
                .flatten()
        } else {
            // An exported commit: its id names its files.
            req.commit.as_ref().map(|c| c.0.clone())
        };
        let fingerprint = crate::release::fingerprint(
            source,
            &config,
            &vars,
            req.artifact.as_deref(),
            project_files.as_deref(),
        );
        if let Some(same) = unless_same
            && fingerprint.is_some()
            && same.fingerprint == fingerprint
        {
            let _ = self.events.send(format!(
                "{svc}: unchanged since {} (same build, configuration and variables): not deployed",
                same.version
            ));
            return Ok(None);
        }
        self.releases
            .create(
                source,
                svc,
                &config,
                req.artifact.as_deref(),
                commit,
                fingerprint,
            )
            .map(Some)
    }

    /// The service's router, as hangar.yml now says it listens: started when
    /// the service has none yet, rebound when its `protocol:` or `listen:`
    /// changed since (a `hangar deploy` after the edit), with the instances
    /// and weights it serves kept.
    async fn ensure_router(&self, svc: &str, env: &Environment) -> anyhow::Result<()> {
        let (listen, protocol) = {
            let p = self.project.lock().unwrap_or_else(|e| e.into_inner());
            let protocol = match p.services.get(svc).map(|s| s.value.protocol) {
                Some(hangar_project::Protocol::Tcp) => hangar_router::tcp::Protocol::Tcp,
                _ => hangar_router::tcp::Protocol::Http,
            };
            (
                p.listen_address(env, svc)
                    .unwrap_or_else(|| "127.0.0.1:0".into()),
                protocol,
            )
        };
        let addr: SocketAddr = listen
            .parse()
            .with_context(|| format!("service `{svc}`: bad listen address `{listen}`"))?;
        let serving = self.plane(svc);
        if let Some(plane) = &serving {
            // `:0` is whatever port was bound: not a change.
            let same_addr =
                addr == plane.addr() || (addr.port() == 0 && addr.ip() == plane.addr().ip());
            if same_addr && plane.protocol() == protocol {
                return Ok(());
            }
            let _ = self.events.send(format!(
                "{svc}: the router now listens on {} ({}, was {} on {})",
                addr,
                protocol.scheme(),
                plane.protocol().scheme(),
                plane.addr()
            ));
            // One socket per address: the old listener goes first.
            plane.stop_listening();
        }
        let replacing = serving.is_some();
        let plane = Arc::new(match &self.link {
            Some(link) => Plane::remote(link.clone(), svc, addr, protocol)?,
            None => Plane::local(svc, addr, protocol, replacing)?,
        });
        if replacing {
            let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = services.get_mut(svc) {
                s.plane = plane;
                apply(s);
                return Ok(());
            }
        }
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                svc.to_string(),
                ServiceRt {
                    plane,
                    instances: Vec::new(),
                    weights: Vec::new(),
                    retry_on_stable: None,
                    rollout: None,
                },
            );
        Ok(())
    }

    fn start_instances(
        &self,
        svc: &str,
        release: &Release,
        count: u32,
    ) -> anyhow::Result<Vec<Arc<Instance>>> {
        let mut started = Vec::new();
        // Indexes name log files: a new instance takes the lowest free one
        // (re-adopted instances keep theirs).
        let mut taken: Vec<u32> = self
            .instances_of(svc, &release.version)
            .iter()
            .map(|i| i.spec.index)
            .collect();
        let service_env = self.service_env(svc, release)?;
        for _ in 0..count {
            let index = (0..).find(|i| !taken.contains(i)).unwrap_or(0);
            taken.push(index);
            let spec = self.spec_for(svc, release, index, &service_env);
            let inst = match Instance::start(spec, self.recorder()) {
                Ok(inst) => inst,
                Err(e) => {
                    // Those started already are dropped, which stops them.
                    self.forget(svc, &started);
                    return Err(anyhow!("cannot start `{}`: {e}", release.config.run));
                }
            };
            // In the table at once: the next instance's record is written
            // from it, and must keep this one's.
            if let Some(s) = self
                .services
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(svc)
            {
                s.instances.push(inst.clone());
            }
            started.push(inst);
        }
        self.save_processes()?;
        Ok(started)
    }

    /// What an instance of `release` at `index` runs with.
    fn spec_for(
        &self,
        svc: &str,
        release: &Release,
        index: u32,
        service_env: &[(String, String)],
    ) -> InstanceSpec {
        let mut env: Vec<(String, String)> = {
            let p = self.project.lock().unwrap_or_else(|e| e.into_inner());
            env_config(&p, &self.env).vars.into_iter().collect()
        };
        env.extend(service_env.iter().cloned());
        // Absolute: instances run in their release's folder, where the
        // default `./.hangar/envs/ENV` would name a folder that is not there.
        let data = std::path::absolute(&self.files.dir).unwrap_or(self.files.dir.clone());
        env.push(("HANGAR_DATA".into(), data.display().to_string()));
        InstanceSpec {
            service: svc.into(),
            version: release.version.clone(),
            index,
            command: release.config.run.clone(),
            cwd: release.workdir.clone(),
            env,
            health: release.config.health.clone().unwrap_or_default(),
            stop: release.config.stop.clone(),
            restart: release.config.restart,
            log_path: self
                .files
                .dir
                .join("logs")
                .join(format!("{svc}-{}-{index}.log", release.version)),
        }
    }

    /// The addresses of `svc`'s dependencies (`HANGAR_SERVICE_<NAME>_*`) and
    /// its `env:` with their `${{ services.NAME.FIELD }}` resolved: the same
    /// for every instance of a start.
    fn service_env(&self, svc: &str, release: &Release) -> anyhow::Result<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        for dep in &release.config.depends_on {
            let name = hangar_project::refs::env_name(&dep.value);
            for field in hangar_project::refs::SERVICE_FIELDS {
                if let Ok(v) = self.service_address(&dep.value, field) {
                    out.push((
                        format!("HANGAR_SERVICE_{name}_{}", field.to_ascii_uppercase()),
                        v,
                    ));
                }
            }
        }
        for (key, value) in &release.config.env {
            let v = hangar_project::refs::resolve(&value.value, |s, f| self.service_address(s, f))
                .map_err(|e| anyhow!("service `{svc}`: env `{key}`: {e}"))?;
            out.push((key.clone(), v));
        }
        Ok(out)
    }

    /// `host`, `port` or `url` of `svc` as its dependents reach it: its
    /// router's address in this environment (the bound one: `:0` is known
    /// only once bound), else the `listen` address hangar.yml gives it (a
    /// service this environment does not run, started elsewhere).
    fn service_address(&self, svc: &str, field: &str) -> Result<String, String> {
        let (listen, protocol) = match self.plane(svc) {
            Some(plane) => (plane.addr(), plane.protocol()),
            None => {
                let p = self.project.lock().unwrap_or_else(|e| e.into_inner());
                let env = env_config(&p, &self.env);
                let Some(service) = p.services.get(svc) else {
                    return Err(format!("no service `{svc}` in hangar.yml"));
                };
                let addr = p
                    .listen_address(&env, svc)
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                    .filter(|a| a.port() != 0)
                    .ok_or_else(|| {
                        format!(
                            "service `{svc}` does not run in environment `{}` and has no `listen` address to reach it at: list it in the environment's `services:`, deploy with `--with-dependencies`, or give it a `listen:` address",
                            self.env
                        )
                    })?;
                let protocol = match service.value.protocol {
                    hangar_project::Protocol::Tcp => hangar_router::tcp::Protocol::Tcp,
                    hangar_project::Protocol::Http => hangar_router::tcp::Protocol::Http,
                };
                (addr, protocol)
            }
        };
        hangar_project::refs::address_field(
            listen,
            protocol == hangar_router::tcp::Protocol::Tcp,
            field,
        )
    }

    /// Records each process of an instance as it is spawned, before its
    /// command runs (see `supervisor::Recorder`).
    fn recorder(&self) -> supervisor::Recorder {
        let me = self.me.clone();
        Arc::new(move |rec: ProcessRecord| match me.upgrade() {
            Some(ctl) => ctl
                .save_processes_with(Some(rec))
                .map_err(std::io::Error::other),
            None => Err(std::io::Error::other("the controller is shutting down")),
        })
    }

    fn save_processes(&self) -> anyhow::Result<()> {
        self.save_processes_with(None)
    }

    /// Writes every process this controller knows of (its instances, the
    /// dead controller's it has not stopped yet, and `spawned`, an instance
    /// not yet in the table) to the state file.
    fn save_processes_with(&self, spawned: Option<ProcessRecord>) -> anyhow::Result<()> {
        // One save at a time from list to file: two recorders (instances
        // restarting at once) must not write their lists in the other order,
        // the older list last.
        let _saving = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let mut procs: Vec<ProcessRecord> = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flat_map(|s| s.instances.iter())
            .map(|i| ProcessRecord {
                service: i.spec.service.clone(),
                version: i.spec.version.clone(),
                pid: i.pid(),
                start_time: supervisor::process_start_time(i.pid()),
                port: Some(i.port),
                index: Some(i.spec.index),
            })
            .chain(
                self.leftovers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .cloned(),
            )
            .collect();
        if let Some(rec) = spawned {
            // An instance's port is its own for its life: a restarted process
            // replaces the record of the one before.
            procs.retain(|p| p.port != rec.port || p.port.is_none());
            procs.push(rec);
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.processes = procs;
        self.files.save(&st)?;
        Ok(())
    }

    fn commit_stable(&self, svc: &str, version: &str) -> anyhow::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.stable.insert(svc.to_string(), version.to_string());
        self.files.save(&st)?;
        Ok(())
    }

    fn stable(&self, svc: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stable
            .get(svc)
            .cloned()
    }

    /// Sets traffic weights and applies them at once.
    fn set_weights(
        &self,
        svc: &str,
        weights: Vec<(String, u32)>,
        retry_on_stable: Option<(String, String)>,
    ) {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = services.get_mut(svc) {
            s.weights = weights;
            s.retry_on_stable = retry_on_stable;
            apply(s);
        }
    }

    fn forget(&self, svc: &str, gone: &[Arc<Instance>]) {
        {
            let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = services.get_mut(svc) {
                s.instances
                    .retain(|i| !gone.iter().any(|g| Arc::ptr_eq(g, i)));
                apply(s);
            }
        }
        let _ = self.save_processes();
    }

    fn instances_of(&self, svc: &str, version: &str) -> Vec<Arc<Instance>> {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(svc)
            .map(|s| {
                s.instances
                    .iter()
                    .filter(|i| i.spec.version == version)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes instances out of the router, lets their requests finish, then stops them.
    async fn retire(&self, svc: &str, instances: Vec<Arc<Instance>>) {
        if instances.is_empty() {
            return;
        }
        self.forget(svc, &instances);
        let plane = self.plane(svc);
        let addrs: Vec<SocketAddr> = instances.iter().map(|i| addr(i)).collect();
        let drain = instances[0].spec.stop.drain.0;
        let deadline = Instant::now() + drain.max(Duration::from_millis(50));
        loop {
            let busy: usize = plane.as_ref().map(|p| p.inflight(&addrs)).unwrap_or(0);
            if busy == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for i in &instances {
            i.stop().await;
        }
    }

    /// Retires `n` instances of `version` (none when `n` is 0).
    async fn retire_some(&self, svc: &str, version: &str, n: u32) {
        if n > 0 {
            let some: Vec<_> = self
                .instances_of(svc, version)
                .into_iter()
                .take(n as usize)
                .collect();
            self.retire(svc, some).await;
        }
    }

    fn set_rollout(&self, svc: &str, text: Option<String>) {
        if let Some(s) = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(svc)
        {
            s.rollout = text;
        }
    }

    fn record(
        &self,
        svc: &str,
        release: &Release,
        previous: Option<String>,
        strategy: &str,
    ) -> DeploymentRecord {
        let history = self.files.history();
        DeploymentRecord {
            id: history.last().map(|r| r.id + 1).unwrap_or(1),
            env: self.env.clone(),
            service: svc.into(),
            version: release.version.clone(),
            previous,
            strategy: strategy.into(),
            commit: release.commit.clone(),
            commit_time: release.commit_time,
            started: now_unix(),
            finished: 0,
            outcome: Outcome::Succeeded,
            rollback_from: None,
            events: Vec::new(),
            event_times: Vec::new(),
            started_ms: Some(supervisor::now_unix_ms()),
            finished_ms: None,
        }
    }

    fn event(&self, rec: &mut DeploymentRecord, msg: String) {
        tracing::info!("{}: {msg}", self.env);
        let _ = self.events.send(msg.clone());
        rec.events.push(msg);
        rec.event_times.push(supervisor::now_unix_ms());
        self.track(rec);
    }

    /// Records the canary step a rollout is at (saved with its next event).
    fn set_step(&self, id: u64, step: u32) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .steps
            .insert(id, step);
    }

    /// Keeps a deployment's progress in the durable state until it finishes.
    fn track(&self, rec: &DeploymentRecord) {
        if rec.strategy == "start" {
            return; // a restart, not a deployment
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match st.in_progress.iter_mut().find(|r| r.id == rec.id) {
            Some(r) => *r = rec.clone(),
            None => st.in_progress.push(rec.clone()),
        }
        let _ = self.files.save(&st);
    }

    fn finish(
        &self,
        mut rec: DeploymentRecord,
        outcome: Outcome,
    ) -> anyhow::Result<DeploymentRecord> {
        rec.outcome = outcome;
        rec.finished = now_unix();
        rec.finished_ms = Some(supervisor::now_unix_ms());
        self.set_rollout(&rec.service, None);
        self.files.append_history(&rec)?;
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.in_progress.retain(|r| r.id != rec.id);
            st.steps.shift_remove(&rec.id);
            self.files.save(&st)?;
        }
        let keep = {
            let p = self.project.lock().unwrap_or_else(|e| e.into_inner());
            env_config(&p, &self.env).keep_releases as usize
        };
        let mut protect = self.protected_releases(&rec.service);
        protect.push(rec.version.clone());
        protect.extend(self.stable(&rec.service));
        let protect: Vec<&str> = protect.iter().map(String::as_str).collect();
        self.releases.prune(&rec.service, keep.max(1), &protect);
        Ok(rec)
    }

    /// One service's rollout with the environment's strategy.
    async fn rollout(
        self: &Arc<Self>,
        svc: &str,
        env: &Environment,
        release: Release,
    ) -> anyhow::Result<DeploymentRecord> {
        self.rollout_from(svc, env, release, None).await
    }

    /// A rollout, or the rest of an interrupted one (its record, and the
    /// canary step or rolling batch it had reached): the dead controller's
    /// healthy instances of its release were re-adopted and only missing ones
    /// start, and the canary goes on at the step it had.
    async fn rollout_from(
        self: &Arc<Self>,
        svc: &str,
        env: &Environment,
        release: Release,
        resumed: Option<(DeploymentRecord, Option<u32>)>,
    ) -> anyhow::Result<DeploymentRecord> {
        self.signal.send_replace(None);
        let is_resumed = resumed.is_some();
        let previous = self
            .stable(svc)
            .filter(|v| !self.instances_of(svc, v).is_empty());
        let strategy = match (env.strategy.value, &previous) {
            (_, None) => "first",
            // Never two instances on one service's data.
            _ if release.config.stateful => "restart",
            (StrategyKind::Rolling, _) => "rolling",
            (StrategyKind::BlueGreen, _) => "blue-green",
            (StrategyKind::Canary, _) => "canary",
        };
        let (mut rec, from_step) = match resumed {
            Some((mut rec, at)) => {
                rec.previous = previous.clone();
                rec.strategy = strategy.to_string();
                (rec, at.unwrap_or(0) as usize)
            }
            None => {
                let mut rec = self.record(svc, &release, previous.clone(), strategy);
                self.event(
                    &mut rec,
                    format!(
                        "{svc}: deploying {} ({strategy}){}",
                        release.version,
                        previous
                            .as_ref()
                            .map(|p| format!(", replacing {p}"))
                            .unwrap_or_default()
                    ),
                );
                (rec, 0)
            }
        };
        let new = release.version.clone();
        let count = release.config.instances;
        let deadline = release.config.health.clone().unwrap_or_default().deadline.0;

        if strategy == "rolling" {
            return self
                .rolling(
                    svc,
                    env,
                    release,
                    previous.unwrap_or_default(),
                    rec,
                    is_resumed,
                )
                .await;
        }
        if strategy == "restart" {
            return self
                .restart_in_place(svc, release, previous.unwrap_or_default(), rec)
                .await;
        }
        // A resumed rollout goes on with the instances of its version the
        // previous controller started (re-adopted, healthy): only the
        // missing ones start.
        let reused = if is_resumed {
            self.instances_of(svc, &new)
                .into_iter()
                .filter(|i| i.is_healthy())
                .count() as u32
        } else {
            0
        };
        if is_resumed {
            let adopted = self.adopted_count(svc);
            let at = match (strategy, env.canary.as_ref()) {
                ("canary", Some(c)) => format!(
                    "at canary step {}/{}",
                    from_step + 1,
                    c.steps.value.iter().filter(|w| **w < 100).count()
                ),
                _ => "before the switch".to_string(),
            };
            self.event(
                &mut rec,
                format!(
                    "{svc}: re-adopted {adopted} instance(s) ({reused} of {new}); resumed {at}"
                ),
            );
        }
        let missing = count.saturating_sub(reused);
        self.set_rollout(
            svc,
            Some(format!("starting {missing} instance(s) of {new}")),
        );
        let started = self.start_instances(svc, &release, missing)?;
        if let Err(report) = wait_all_healthy(&started, deadline).await {
            let started = self.instances_of(svc, &new);
            self.event(
                &mut rec,
                format!(
                    "{svc}: {new} never became healthy; rolled back, {} keeps serving. {report}",
                    previous.as_deref().unwrap_or("nothing")
                ),
            );
            self.retire(svc, started).await;
            return self.finish(
                rec,
                if previous.is_some() {
                    Outcome::RolledBack
                } else {
                    Outcome::Failed
                },
            );
        }
        self.event(
            &mut rec,
            format!("{svc}: {count} instance(s) of {new} healthy"),
        );
        let Some(old) = previous else {
            self.set_weights(svc, vec![(new.clone(), 100)], None);
            self.commit_stable(svc, &new)?;
            self.event(&mut rec, format!("{svc}: {new} takes 100% of traffic"));
            return self.finish(rec, Outcome::Succeeded);
        };

        let verdict = if strategy == "canary" {
            self.canary_steps(svc, env, &old, &new, &mut rec, from_step)
                .await
        } else {
            self.blue_green_checks(svc, env, &old, &new, &mut rec).await
        };
        match verdict {
            Ok(()) => {}
            Err(outcome) => {
                self.set_weights(svc, vec![(old.clone(), 100)], None);
                self.event(
                    &mut rec,
                    format!("{svc}: traffic back to {old} (100%); stopping {new}"),
                );
                self.retire(svc, self.instances_of(svc, &new)).await;
                return self.finish(rec, outcome);
            }
        }
        // The switch: all new clients and all pinned ones go to the new version at once.
        self.set_weights(svc, vec![(new.clone(), 100)], None);
        self.commit_stable(svc, &new)?;
        self.event(
            &mut rec,
            format!("{svc}: switched 100% of traffic to {new}"),
        );
        let delay = if strategy == "blue-green" {
            env.blue_green.scale_down_delay.0
        } else {
            Duration::ZERO
        };
        let old_instances = self.instances_of(svc, &old);
        if delay.is_zero() {
            self.retire(svc, old_instances).await;
            self.event(&mut rec, format!("{svc}: stopped {old}"));
        } else {
            self.event(
                &mut rec,
                format!(
                    "{svc}: keeping {old} warm for {} s for an instant rollback",
                    delay.as_secs()
                ),
            );
            let me = self.clone();
            let svc2 = svc.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _busy = me.busy.lock().await;
                if me.stable(&svc2).as_deref() != Some(old.as_str()) {
                    let still: Vec<Arc<Instance>> = me.instances_of(&svc2, &old);
                    me.retire(&svc2, still).await;
                    let _ = me
                        .events
                        .send(format!("{svc2}: scale-down delay over, stopped {old}"));
                }
            });
        }
        self.finish(rec, Outcome::Succeeded)
    }

    /// Replaces `old`'s instances by `release`'s, batch by batch. A resumed
    /// rollout goes on from the batch reached: the healthy instances of the
    /// new version the previous controller started count as replaced.
    /// A `stateful: true` service: the old instance is stopped (out of the
    /// router, drained, stopped) before the new one starts on the same data,
    /// so never two at once. A new version that does not become healthy is
    /// stopped and the old one started again in its place.
    async fn restart_in_place(
        self: &Arc<Self>,
        svc: &str,
        release: Release,
        old: String,
        mut rec: DeploymentRecord,
    ) -> anyhow::Result<DeploymentRecord> {
        let new = release.version.clone();
        let deadline = release.config.health.clone().unwrap_or_default().deadline.0;
        let olds = self.instances_of(svc, &old);
        self.set_rollout(svc, Some(format!("restarting in place: stopping {old}")));
        self.event(
            &mut rec,
            format!(
                "{svc}: stateful: stopping {old} ({} instance(s)) before starting {new} on the same data (restarted in place, never two at once)",
                olds.len()
            ),
        );
        self.retire(svc, olds).await;
        self.event(&mut rec, format!("{svc}: {old} stopped"));
        self.set_rollout(svc, Some(format!("restarting in place: starting {new}")));
        let started = match self.start_instances(svc, &release, release.config.instances) {
            Ok(s) => s,
            Err(e) => {
                self.event(&mut rec, format!("{svc}: {new} cannot start: {e:#}"));
                Vec::new()
            }
        };
        let healthy = if started.is_empty() {
            Err("not started".to_string())
        } else {
            wait_all_healthy(&started, deadline).await
        };
        match healthy {
            Ok(()) => {
                self.set_weights(svc, vec![(new.clone(), 100)], None);
                self.commit_stable(svc, &new)?;
                self.event(
                    &mut rec,
                    format!("{svc}: {new} restarted in place and serving"),
                );
                self.finish(rec, Outcome::Succeeded)
            }
            Err(report) => {
                self.event(
                    &mut rec,
                    format!("{svc}: {new} never became healthy; stopping it and restarting {old} in place. {report}"),
                );
                self.retire(svc, started).await;
                if let Some(old_release) = self.releases.get(svc, &old) {
                    let back =
                        self.start_instances(svc, &old_release, old_release.config.instances)?;
                    if let Err(e) = wait_all_healthy(&back, deadline).await {
                        self.event(
                            &mut rec,
                            format!("{svc}: {old} did not come back healthy: {e}"),
                        );
                    }
                    self.set_weights(svc, vec![(old.clone(), 100)], None);
                    self.event(
                        &mut rec,
                        format!("{svc}: {old} restarted in place and serving"),
                    );
                }
                self.finish(rec, Outcome::RolledBack)
            }
        }
    }

    async fn rolling(
        self: &Arc<Self>,
        svc: &str,
        env: &Environment,
        release: Release,
        old: String,
        mut rec: DeploymentRecord,
        resumed: bool,
    ) -> anyhow::Result<DeploymentRecord> {
        let new = release.version.clone();
        let total = release.config.instances;
        let surge = env
            .rolling
            .max_surge
            .max(if env.rolling.max_unavailable == 0 {
                1
            } else {
                0
            });
        let unavailable = env.rolling.max_unavailable;
        let deadline = release.config.health.clone().unwrap_or_default().deadline.0;
        let batch = (surge + unavailable).max(1);
        let batches = total.div_ceil(batch);
        let mut replaced = 0;
        if resumed {
            replaced = (self
                .instances_of(svc, &new)
                .iter()
                .filter(|i| i.is_healthy())
                .count() as u32)
                .min(total);
            let adopted = self.adopted_count(svc);
            let at = if replaced >= total {
                format!("after its last batch ({batches}/{batches})")
            } else {
                format!("at batch {}/{batches}", replaced / batch + 1)
            };
            self.event(
                &mut rec,
                format!(
                    "{svc}: re-adopted {adopted} instance(s) ({replaced}/{total} on {new}); resumed {at}"
                ),
            );
        }
        while replaced < total {
            let n = batch.min(total - replaced);
            self.set_step(rec.id, replaced / batch);
            self.set_rollout(
                svc,
                Some(format!(
                    "rolling: {replaced}/{total} replaced, starting {n}"
                )),
            );
            // With max_unavailable, old instances go first (capacity dips), else new ones first (surge).
            let take_old_first = unavailable.min(n);
            self.retire_some(svc, &old, take_old_first).await;
            let started = self.start_instances(svc, &release, n)?;
            if let Err(report) = wait_all_healthy(&started, deadline).await {
                self.event(
                    &mut rec,
                    format!("{svc}: {new} never became healthy; rolling back to {old}. {report}"),
                );
                let all_new = self.instances_of(svc, &new);
                let missing = total.saturating_sub(self.instances_of(svc, &old).len() as u32);
                if missing > 0
                    && let Some(old_release) = self.releases.get(svc, &old)
                {
                    let back = self.start_instances(svc, &old_release, missing)?;
                    let _ = wait_all_healthy(&back, deadline).await;
                }
                self.set_weights(svc, vec![(old.clone(), 100)], None);
                self.retire(svc, all_new).await;
                return self.finish(rec, Outcome::RolledBack);
            }
            replaced += n;
            let olds_left = total - replaced;
            // Weights follow instance counts, so each instance gets an equal share.
            self.set_weights(
                svc,
                vec![(old.clone(), olds_left), (new.clone(), replaced)],
                None,
            );
            let remove = n - take_old_first;
            self.retire_some(svc, &old, remove).await;
            self.event(
                &mut rec,
                format!("{svc}: {replaced}/{total} instances on {new}"),
            );
        }
        self.set_weights(svc, vec![(new.clone(), 100)], None);
        self.commit_stable(svc, &new)?;
        let leftover = self.instances_of(svc, &old);
        self.retire(svc, leftover).await;
        self.event(&mut rec, format!("{svc}: rollout of {new} complete"));
        self.finish(rec, Outcome::Succeeded)
    }

    async fn blue_green_checks(
        &self,
        svc: &str,
        env: &Environment,
        old: &str,
        new: &str,
        rec: &mut DeploymentRecord,
    ) -> Result<(), Outcome> {
        if let Some(a) = &env.blue_green.pre_promotion {
            let w = a.weight.clamp(1, 100);
            self.set_rollout(svc, Some(format!("pre-promotion analysis: {w}% to {new}")));
            self.set_weights(
                svc,
                vec![(old.to_string(), 100 - w), (new.to_string(), w)],
                None,
            );
            let t = Thresholds {
                max_error_rate: a
                    .max_error_rate
                    .map(|p| p.0)
                    .unwrap_or(analysis::DEFAULT_MAX_ERROR_RATE),
                max_p95_ms: a.max_p95.map(|d| d.0.as_secs_f64() * 1000.0),
                max_error_rate_increase: None,
                min_requests: a.min_requests,
            };
            self.analyse_step(
                svc,
                old,
                new,
                &t,
                a.duration.0,
                a.duration.0 * 4,
                rec,
                &format!("pre-promotion ({w}%)"),
            )
            .await?;
        }
        if !env.blue_green.auto_promote {
            self.set_rollout(
                svc,
                Some(format!(
                    "{new} healthy and idle; waiting for `hangar promote {}`",
                    self.env
                )),
            );
            self.event(
                rec,
                format!(
                    "{svc}: waiting for `hangar promote {}` (or abort)",
                    self.env
                ),
            );
            if self.wait_signal(None).await == Some(Signal::Abort) {
                self.event(rec, format!("{svc}: aborted by a human"));
                return Err(Outcome::Aborted);
            }
        }
        Ok(())
    }

    async fn canary_steps(
        &self,
        svc: &str,
        env: &Environment,
        old: &str,
        new: &str,
        rec: &mut DeploymentRecord,
        from_step: usize,
    ) -> Result<(), Outcome> {
        let Some(c) = env.canary.clone() else {
            return Ok(());
        };
        let t = Thresholds {
            max_error_rate: c
                .max_error_rate
                .map(|p| p.0)
                .unwrap_or(analysis::DEFAULT_MAX_ERROR_RATE),
            max_p95_ms: c.max_p95.map(|d| d.0.as_secs_f64() * 1000.0),
            max_error_rate_increase: c.max_error_rate_increase.map(|p| p.0),
            min_requests: c.min_requests,
        };
        for (i, &w) in c.steps.value.iter().enumerate().skip(from_step) {
            if w >= 100 {
                break; // 100% is the promotion itself
            }
            self.set_step(rec.id, i as u32);
            let retry = c
                .retry_on_stable
                .then(|| (new.to_string(), old.to_string()));
            self.set_weights(
                svc,
                vec![(old.to_string(), 100 - w), (new.to_string(), w)],
                retry,
            );
            self.set_rollout(svc, Some(format!("canary at {w}%")));
            self.event(rec, format!("{svc}: canary step {w}% to {new}"));
            self.analyse_step(
                svc,
                old,
                new,
                &t,
                c.interval.0,
                c.step_deadline.0,
                rec,
                &format!("step {w}%"),
            )
            .await?;
        }
        Ok(())
    }

    /// Watches one step: fails at once on a breach with enough traffic, passes after
    /// `interval` with enough traffic, pauses for a human past `deadline` without it.
    #[allow(clippy::too_many_arguments)]
    async fn analyse_step(
        &self,
        svc: &str,
        old: &str,
        new: &str,
        t: &Thresholds,
        interval: Duration,
        deadline: Duration,
        rec: &mut DeploymentRecord,
        label: &str,
    ) -> Result<(), Outcome> {
        let Some(plane) = self.plane(svc) else {
            return Ok(());
        };
        let (c0, s0) = (plane.snapshot(new), plane.snapshot(old));
        let started = Instant::now();
        loop {
            if let Some(sig) = self.take_signal() {
                self.event(
                    rec,
                    format!(
                        "{svc}: {label}: {} by a human",
                        if sig == Signal::Abort {
                            "aborted"
                        } else {
                            "promoted"
                        }
                    ),
                );
                return if sig == Signal::Abort {
                    Err(Outcome::Aborted)
                } else {
                    Ok(())
                };
            }
            let cw = plane.snapshot(new).since(&c0).summary();
            let sw = plane.snapshot(old).since(&s0).summary();
            // A service the router sends nothing to (a worker, an internal API
            // nobody calls yet) can only be judged by its health: waiting for
            // traffic that never comes would pause every deployment of it.
            if cw.requests == 0
                && sw.requests == 0
                && cw.error_rate == 0.0
                && started.elapsed() >= interval
            {
                let new_instances = self.instances_of(svc, new);
                if !new_instances.is_empty() && new_instances.iter().all(|i| i.is_healthy()) {
                    self.event(
                        rec,
                        format!(
                            "{svc}: {label}: no request reached {svc} in {} ms; {new} passes on its health alone ({} instance(s) healthy)",
                            started.elapsed().as_millis(),
                            new_instances.len()
                        ),
                    );
                    return Ok(());
                }
            }
            let verdict = analysis::judge(t, &cw, Some(&sw));
            match verdict {
                Verdict::Fail(why) => {
                    self.event(rec, format!("{svc}: {label}: {new} fails analysis: {why}; rolling back automatically"));
                    return Err(Outcome::RolledBack);
                }
                Verdict::Pass(why) if started.elapsed() >= interval => {
                    self.event(rec, format!("{svc}: {label}: {new} passes: {why}"));
                    return Ok(());
                }
                Verdict::Inconclusive(why) if started.elapsed() >= deadline => {
                    self.event(rec, format!("{svc}: {label}: not enough traffic to judge after {} s ({why}); paused for `hangar promote` or `hangar abort`", deadline.as_secs()));
                    self.set_rollout(
                        svc,
                        Some(format!("{label}: paused, waiting for a human ({why})")),
                    );
                    return match self.wait_signal(None).await {
                        Some(Signal::Promote) => Ok(()),
                        _ => Err(Outcome::Aborted),
                    };
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn take_signal(&self) -> Option<Signal> {
        self.signal.send_replace(None)
    }

    async fn wait_signal(&self, timeout: Option<Duration>) -> Option<Signal> {
        let mut rx = self.signal.subscribe();
        let fut = async {
            loop {
                // Copied out first: the borrow guard is a read lock on the
                // channel, and `send_replace` below takes its write lock.
                let seen = *rx.borrow_and_update();
                if let Some(s) = seen {
                    self.signal.send_replace(None);
                    return Some(s);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.ok().flatten(),
            None => fut.await,
        }
    }

    /// Switches a service (or all) back to an earlier release: instantly when it is still warm.
    pub async fn rollback(
        self: &Arc<Self>,
        service: Option<&str>,
        to: Option<&str>,
    ) -> anyhow::Result<Vec<DeploymentRecord>> {
        let _busy = self.busy.lock().await;
        let svcs: Vec<String> = match service {
            Some(s) => vec![s.to_string()],
            None => self
                .services
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned()
                .collect(),
        };
        let mut out = Vec::new();
        for svc in svcs {
            let current = self.stable(&svc).ok_or_else(|| {
                anyhow!("service `{svc}` has never been deployed in `{}`", self.env)
            })?;
            let target = match to {
                Some(v) => self.releases.get(&svc, v).ok_or_else(|| {
                    let kept: Vec<String> = self
                        .releases
                        .list(&svc)
                        .into_iter()
                        .map(|r| r.version)
                        .collect();
                    anyhow!(
                        "no kept release `{v}` of `{svc}`; kept: {}",
                        kept.join(", ")
                    )
                })?,
                None => self
                    .previous_release(&svc, &current)
                    .ok_or_else(|| anyhow!("`{svc}` has no earlier release to roll back to"))?,
            };
            let mut rec = self.record(&svc, &target, Some(current.clone()), "rollback");
            rec.rollback_from = Some(current.clone());
            let t0 = Instant::now();
            // A stateful service's current instance goes first: never two
            // instances on its data (and so never a warm one to switch to).
            let stateful = target.config.stateful
                || self
                    .releases
                    .get(&svc, &current)
                    .is_some_and(|r| r.config.stateful);
            if stateful {
                self.event(
                    &mut rec,
                    format!(
                        "{svc}: stateful: stopping {current} before starting {} on the same data",
                        target.version
                    ),
                );
                let running = self.instances_of(&svc, &current);
                self.retire(&svc, running).await;
            }
            let mut warm: Vec<_> = self
                .instances_of(&svc, &target.version)
                .into_iter()
                .filter(|i| i.is_healthy())
                .collect();
            if warm.is_empty() {
                self.event(
                    &mut rec,
                    format!("{svc}: starting {} (not warm)", target.version),
                );
                warm = self.start_instances(&svc, &target, target.config.instances)?;
                if let Err(report) = wait_all_healthy(
                    &warm,
                    target.config.health.clone().unwrap_or_default().deadline.0,
                )
                .await
                {
                    self.retire(&svc, warm).await;
                    self.event(
                        &mut rec,
                        format!(
                            "{svc}: {} did not become healthy; {current} keeps serving. {report}",
                            target.version
                        ),
                    );
                    out.push(self.finish(rec, Outcome::Failed)?);
                    continue;
                }
            }
            self.set_weights(&svc, vec![(target.version.clone(), 100)], None);
            self.commit_stable(&svc, &target.version)?;
            self.event(
                &mut rec,
                format!(
                    "{svc}: 100% of traffic on {} after {} ms",
                    target.version,
                    t0.elapsed().as_millis()
                ),
            );
            let old = self.instances_of(&svc, &current);
            self.retire(&svc, old).await;
            out.push(self.finish(rec, Outcome::Rollback)?);
        }
        Ok(out)
    }

    /// Where `hangar rollback` goes from `current`: the version that was stable
    /// before it, else the newest older release; never one that failed its
    /// rollout (health or analysis) in any environment.
    fn previous_release(&self, svc: &str, current: &str) -> Option<Release> {
        let histories = self.all_histories();
        let failed = |v: &str| {
            histories
                .iter()
                .flatten()
                .any(|r| r.service == svc && r.version == v && failed_rollout(r))
        };
        rollback_target(&self.files.history(), svc, current)
            .filter(|v| !failed(v))
            .and_then(|v| self.releases.get(svc, &v))
            .or_else(|| {
                let all = self.releases.list(svc);
                let pos = all.iter().position(|r| r.version == current)?;
                all[..pos]
                    .iter()
                    .rev()
                    .find(|r| !failed(&r.version))
                    .cloned()
            })
    }

    /// The environments sharing this data directory (and so its releases).
    fn all_env_files(&self) -> Vec<EnvFiles> {
        std::fs::read_dir(self.data.join("envs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| EnvFiles { dir: e.path() })
            .collect()
    }

    fn all_histories(&self) -> Vec<Vec<DeploymentRecord>> {
        self.all_env_files().iter().map(|f| f.history()).collect()
    }

    /// Releases of `svc` that pruning must keep: what any environment serves,
    /// runs, or would roll back to.
    fn protected_releases(&self, svc: &str) -> Vec<String> {
        let mut keep = Vec::new();
        for files in self.all_env_files() {
            let st = files.load();
            if let Some(stable) = st.stable.get(svc) {
                if let Some(back) = rollback_target(&files.history(), svc, stable) {
                    keep.push(back);
                }
                keep.push(stable.clone());
            }
            keep.extend(
                st.processes
                    .iter()
                    .filter(|p| p.service == svc)
                    .map(|p| p.version.clone()),
            );
        }
        keep
    }

    pub fn status(&self) -> EnvStatus {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        EnvStatus {
            env: self.env.clone(),
            controller_pid: std::process::id(),
            services: services
                .iter()
                .map(|(name, s)| ServiceStatus {
                    service: name.clone(),
                    listen: s.plane.addr(),
                    protocol: s.plane.protocol(),
                    stable: st.stable.get(name).cloned(),
                    weights: s.weights.clone(),
                    rollout: s.rollout.clone(),
                    instances: s.instances.iter().map(|i| i.status()).collect(),
                    traffic: s
                        .weights
                        .iter()
                        .map(|(v, _)| (v.clone(), s.plane.snapshot(v).summary()))
                        .collect(),
                })
                .collect(),
        }
    }

    /// Stops every instance (dependents first) and releases the environment.
    pub async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Asked to stop: the router must not start another controller.
        self.files.clear_supervision();
        let order: Vec<String> = {
            let p = self.project.lock().unwrap_or_else(|e| e.into_inner());
            p.services_with_dependencies(Some(&env_config(&p, &self.env)))
        };
        for svc in order.iter().rev() {
            let all: Vec<Arc<Instance>> = self
                .services
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(svc)
                .map(|s| s.instances.clone())
                .unwrap_or_default();
            self.retire(svc, all).await;
        }
        // What a dead controller left and nobody took over yet goes too.
        let mut left: Vec<ProcessRecord> =
            std::mem::take(&mut *self.leftovers.lock().unwrap_or_else(|e| e.into_inner()));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.processes.append(&mut left);
        stop_recorded_processes(&mut st);
        st.controller_pid = None;
        let _ = self.files.save(&st);
        drop(st);
        if self.link.is_some() {
            plane::stop_router_process(&self.files.dir);
        }
        // Closing it releases the environment to the next controller.
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// The environment's directory (its state, history and alerts).
    pub(crate) fn env_dir(&self) -> &Path {
        &self.files.dir
    }

    /// The environment's settings in the hangar.yml now deployed.
    pub(crate) fn env_settings(&self) -> Environment {
        env_config(
            &self.project.lock().unwrap_or_else(|e| e.into_inner()),
            &self.env,
        )
    }

    pub(crate) fn router_link(&self) -> Option<&Link> {
        self.link.as_ref()
    }

    /// How many times this controller restarted its router process.
    pub(crate) fn router_restarts(&self) -> u64 {
        self.router_restarts
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Each service's counters per version and its instances, for the alert rules.
    pub(crate) fn observe(&self) -> Vec<crate::alerts::Observed> {
        let mut planes = Vec::new();
        let mut observed: Vec<crate::alerts::Observed> = {
            let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            services
                .iter()
                .map(|(name, s)| {
                    let mut versions: Vec<String> =
                        s.weights.iter().map(|(v, _)| v.clone()).collect();
                    for i in &s.instances {
                        if !versions.contains(&i.spec.version) {
                            versions.push(i.spec.version.clone());
                        }
                    }
                    planes.push(s.plane.clone());
                    crate::alerts::Observed {
                        service: name.clone(),
                        versions: versions
                            .into_iter()
                            .map(|v| (v, Default::default()))
                            .collect(),
                        instances: s.instances.iter().map(|i| i.status()).collect(),
                    }
                })
                .collect()
        };
        // The router is asked outside the lock (a socket round trip per version).
        for (obs, plane) in observed.iter_mut().zip(&planes) {
            for (version, snap) in &mut obs.versions {
                *snap = plane.snapshot(version);
            }
        }
        observed
    }

    pub(crate) fn set_instance_gauges(
        &self,
        svc: &str,
        gauges: Vec<hangar_router::metrics::InstanceGauge>,
    ) {
        if let Some(plane) = self.plane(svc) {
            plane.set_instances(gauges);
        }
    }

    /// The routers served in this process (none under a router process).
    pub(crate) fn local_routers(&self) -> Vec<(String, Arc<hangar_router::Router>)> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.plane.local_router()?)))
            .collect()
    }

    /// Re-applies the routing table as instance health changes (crash, recovery).
    async fn refresher(self: Arc<Self>) {
        let mut last: HashMap<String, Vec<(String, Vec<SocketAddr>)>> = HashMap::new();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if Arc::strong_count(&self) == 1 {
                return;
            }
            let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            for (name, s) in services.iter_mut() {
                let now = backends(s);
                if last.get(name) != Some(&now) {
                    apply(s);
                    last.insert(name.clone(), now);
                }
            }
        }
    }
}

/// Kills every process a controller recorded (its instances), checking the
/// start time so that a reused pid is never hit, and forgets them.
fn stop_recorded_processes(state: &mut EnvState) -> usize {
    let mut stopped = 0;
    for p in state.processes.drain(..) {
        if supervisor::process_alive(p.pid) && supervisor::process_start_time(p.pid) == p.start_time
        {
            tracing::warn!(
                "stopping {}#{} (pid {}) left by a previous controller",
                p.service,
                p.version,
                p.pid
            );
            supervisor::signal_group(p.pid, libc::SIGKILL);
            stopped += 1;
        }
    }
    stopped
}

/// `hangar down` of an environment whose controller is gone: stops what it
/// left running. Returns how many processes were stopped.
pub fn stop_leftovers(files: &EnvFiles) -> anyhow::Result<usize> {
    files.clear_supervision();
    let mut state = files.load();
    if let Some(pid) = state.controller_pid
        && pid != std::process::id()
        && supervisor::process_alive(pid)
        && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| c.contains("hangar"))
            .unwrap_or(false)
    {
        bail!(
            "the controller of this environment (pid {pid}) is alive but does not answer on its socket; stop it first (kill {pid})"
        );
    }
    let mut n = stop_recorded_processes(&mut state);
    // The router process serves nothing once the instances are gone.
    if plane::stop_router_process(&files.dir) {
        n += 1;
    }
    state.controller_pid = None;
    files.save(&state)?;
    Ok(n)
}

/// Where a rollout stood when its controller died, for history.
fn where_interrupted(strategy: &str, step: Option<u32>, env: &Environment) -> String {
    match (strategy, step) {
        ("canary", Some(i)) => {
            let weight = env
                .canary
                .as_ref()
                .and_then(|c| c.steps.value.get(i as usize).copied());
            format!(
                "at canary step {}{}",
                i + 1,
                weight.map(|w| format!(" ({w}%)")).unwrap_or_default()
            )
        }
        ("canary", None) => "before the first canary step".into(),
        ("blue-green", _) => "before the switch".into(),
        ("rolling", Some(i)) => format!("in rolling batch {}", i + 1),
        ("rolling", None) => "during the rolling batches".into(),
        _ => "during this deployment".into(),
    }
}

/// The version that was stable before `current` became stable in this history.
fn rollback_target(history: &[DeploymentRecord], svc: &str, current: &str) -> Option<String> {
    history
        .iter()
        .rev()
        .find(|r| {
            r.service == svc
                && r.version == current
                && matches!(r.outcome, Outcome::Succeeded | Outcome::Rollback)
        })
        .and_then(|r| r.previous.clone())
}

/// A rollout whose new version failed its health checks or its analysis.
fn failed_rollout(r: &DeploymentRecord) -> bool {
    match r.outcome {
        Outcome::RolledBack => true,
        Outcome::Failed => r.strategy != "rollback",
        _ => false,
    }
}

fn addr(i: &Instance) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], i.port))
}

fn backends(s: &ServiceRt) -> Vec<(String, Vec<SocketAddr>)> {
    s.weights
        .iter()
        .map(|(v, _)| {
            (
                v.clone(),
                s.instances
                    .iter()
                    .filter(|i| &i.spec.version == v && i.is_healthy())
                    .map(|i| addr(i))
                    .collect(),
            )
        })
        .collect()
}

/// Builds the router table from the weights and the healthy instances: no instance gets traffic before its health check passes.
/// A service given no weights yet keeps the router's table: that is what a
/// restarted controller finds serving, and it must not be blanked.
fn apply(s: &mut ServiceRt) {
    if s.weights.is_empty() {
        return;
    }
    let routes = backends(s)
        .into_iter()
        .zip(s.weights.iter())
        .map(|((version, addrs), (_, weight))| (version, *weight, addrs))
        .collect();
    s.plane.set(routes, s.retry_on_stable.clone());
}

async fn wait_all_healthy(instances: &[Arc<Instance>], deadline: Duration) -> Result<(), String> {
    for i in instances {
        i.wait_healthy(deadline).await?;
    }
    Ok(())
}

/// Writes the tree of commit `sha` to `dest` (`git archive` piped into `tar`),
/// once: an export that completed is reused, a half-written one redone. It is
/// kept, since a release without `artifact:` paths runs from it.
fn export_commit(repo: &Path, sha: &str, dest: &Path) -> anyhow::Result<()> {
    use std::process::{Command, Stdio};
    let done = dest.join(".hangar-export");
    if done.exists() {
        return Ok(());
    }
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut git = hangar_git::Git::new(repo)
        .args(&["archive", "--format=tar"])
        .value(sha)
        .into_command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&tmp)
        .stdin(git.stdout.take().context("git's output")?)
        .status()
        .context("cannot run tar")?;
    let out = git.wait_with_output()?;
    if !out.status.success() || !tar.success() {
        bail!(
            "cannot check out {sha}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::write(tmp.join(".hangar-export"), sha)?;
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

/// Whether the working tree of `dir` differs from HEAD (tracked changes or
/// untracked files), hangar's own data directory aside.
fn git_dirty(dir: &Path, data: &Path) -> bool {
    let mut git = hangar_git::Git::new(dir).args(&[
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
        ".",
    ]);
    if let Ok(rel) = data.strip_prefix(dir)
        && !rel.as_os_str().is_empty()
    {
        git = git.value(format!(":(exclude){}", rel.display()));
    }
    match git.output() {
        Ok(out) => !out.is_empty(),
        Err(_) => false,
    }
}

/// A digest of the files a service without `artifact:` runs from: every file
/// git tracks or would track in `dir` (ignored files, hangar's data and
/// `hangar.yml` aside: services' configurations are compared on their own, so
/// editing one service does not change the others). `None` outside git.
fn project_digest(dir: &Path, data: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let out = hangar_git::Git::new(dir)
        .args(&[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .into_command()
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut paths: Vec<&[u8]> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty() && *p != b"hangar.yml")
        .collect();
    paths.sort();
    paths.dedup();
    let mut h = Sha256::new();
    for p in paths {
        let path = dir.join(String::from_utf8_lossy(p).as_ref());
        if path.starts_with(data) {
            continue;
        }
        h.update(p);
        h.update([0]);
        // A tracked file deleted in the working tree hashes as absent.
        if crate::release::hash_tree(&mut h, &path).is_err() {
            h.update(b"-");
        }
    }
    Some(format!("{:x}", h.finalize()))
}

fn git_head(dir: &Path) -> Option<(String, u64)> {
    let text = hangar_git::Git::new(dir)
        .args(&["log", "-1", "--format=%H %ct"])
        .output()
        .ok()?;
    let (sha, time) = text.trim().split_once(' ')?;
    Some((sha.to_string(), time.parse().ok()?))
}
