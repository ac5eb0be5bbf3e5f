//! `hangar agent`: pulls leased jobs from a hangar server over HTTP and runs them.
//!
//! The embedded agent of `hangar serve` is this same code talking to its own server
//! over loopback HTTP, so the single-process mode exercises exactly the remote path.
//! The agent never touches storage: everything goes through [`protocol`].

pub mod artifacts;
pub mod client;
pub mod engine_runner;
pub mod identity;
pub mod protocol;
pub mod reporter;
pub mod runner;
pub mod workspace;

use std::path::PathBuf;

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use client::Client;
pub use engine_runner::EngineRunner;
pub use protocol::*;
pub use reporter::Reporter;
pub use runner::{JobOutcome, JobRunner};
pub use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    /// The token the agent registers with; every later call uses the
    /// credential the registration hands out.
    pub token: String,
    /// The id the agent asks for (the server may give another).
    pub id: String,
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: usize,
    pub work_dir: PathBuf,
    /// How long one poll may wait on the server before it answers "nothing".
    pub poll_wait: Duration,
}

/// Registers with the server, retrying while it cannot be reached or
/// answers a server error; a refusal (a bad or used token, another protocol
/// version) ends the agent. `None` when `shutdown` came first.
async fn register(
    client: &Client,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RegisterResponse>> {
    let req = RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        hangar_version: HANGAR_VERSION.to_string(),
        agent_id: config.id.clone(),
        name: config.name.clone(),
        labels: config.labels.clone(),
        capacity: config.capacity as i64,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let answer = tokio::select! {
            r = client.register(&req) => r,
            _ = shutdown.cancelled() => return Ok(None),
        };
        match answer {
            Ok(r) => return Ok(Some(r)),
            Err(e) if e.downcast_ref::<client::Refused>().is_some() => return Err(e),
            Err(e) => {
                tracing::warn!("registering failed: {e:#}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = shutdown.cancelled() => return Ok(None),
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Registers, then runs the pull loop until `shutdown` is cancelled. Ends
/// with [`client::Removed`] when the server stops accepting the agent's
/// credential (the agent was removed): its running jobs are stopped, as the
/// server has handed them back to the queue.
pub async fn run_agent(
    config: AgentConfig,
    runner: Arc<dyn JobRunner>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_agent_keeping(config, None, runner, shutdown).await
}

/// Where a `hangar agent` keeps its identity, and whether to drop it.
pub struct Keep {
    pub state: identity::StateFile,
    /// Register with the token even when the state file holds an identity
    /// for this server, and keep the new one instead.
    pub reregister: bool,
}

/// [`run_agent`], keeping the agent's id and credential in `keep`'s state
/// file: a restart at the same server polls as the same agent without
/// registering, so a single-use token is needed once. A 401 to a stored
/// credential ends the agent as any removal does: it never registers again
/// by itself, as an operator removed it.
pub async fn run_agent_keeping(
    config: AgentConfig,
    keep: Option<Keep>,
    runner: Arc<dyn JobRunner>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = Client::new(&config.server, &config.token)?;
    workspace::make_private(&config.work_dir)
        .with_context(|| format!("creating the work directory {}", config.work_dir.display()))?;
    let server = identity::server_key(&config.server);
    let stored = match &keep {
        Some(k) if !k.reregister => match k.state.load()? {
            Some(id) if id.server == server => Some(id),
            Some(id) => {
                tracing::warn!(
                    "{} holds agent {} of {}, not of {server}: registering with {server} and \
                     keeping that identity instead",
                    k.state.path().display(),
                    id.agent_id,
                    id.server
                );
                None
            }
            None => None,
        },
        _ => None,
    };
    let registered = match stored {
        Some(id) => {
            tracing::info!(agent = %id.agent_id, "using the identity kept in {}", keep.as_ref().map(|k| k.state.path().display().to_string()).unwrap_or_default());
            RegisterResponse {
                agent_id: id.agent_id,
                credential: id.credential,
            }
        }
        None => {
            if config.token.trim().is_empty() {
                match &keep {
                    Some(k) => anyhow::bail!(
                        "no agent token to register with: {} holds no identity for {server}; \
                         pass --token (or HANGAR_TOKEN) with an `agent` token from POST /api/v1/tokens",
                        k.state.path().display()
                    ),
                    None => anyhow::bail!("no agent token to register with"),
                }
            }
            let Some(registered) = register(&client, &config, &shutdown).await? else {
                return Ok(());
            };
            tracing::info!(agent = %registered.agent_id, "registered");
            if let Some(k) = &keep {
                k.state
                    .save(&identity::Identity {
                        server: server.clone(),
                        agent_id: registered.agent_id.clone(),
                        credential: registered.credential.clone(),
                    })
                    .with_context(|| {
                        format!(
                            "registered as agent {} but could not keep its credential: remove \
                             that agent on the server, then start again",
                            registered.agent_id
                        )
                    })?;
            }
            registered
        }
    };
    let removed_note = keep.as_ref().map(|k| {
        format!(
            "agent {} (its credential kept in {}) does not register again by itself; to \
             register this machine anew, delete that file or start with --reregister, with a \
             new agent token",
            registered.agent_id,
            k.state.path().display()
        )
    });
    pull(config, client, registered, runner, shutdown)
        .await
        .map_err(
            |e| match (&removed_note, e.downcast_ref::<client::Removed>()) {
                (Some(note), Some(_)) => e.context(note.clone()),
                _ => e,
            },
        )
}

/// The pull loop of a registered agent.
async fn pull(
    config: AgentConfig,
    client: Client,
    registered: RegisterResponse,
    runner: Arc<dyn JobRunner>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = client.with_credential(&registered.credential);
    // Jobs stop with the agent: at shutdown, and when it was removed.
    let shutdown = shutdown.child_token();
    let _stop_jobs = shutdown.clone().drop_guard();
    let slots = Arc::new(Semaphore::new(config.capacity.max(1)));
    let workspaces = Arc::new(workspace::Workspaces::new(&config.work_dir));
    let mut backoff = Duration::from_millis(100);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let req = PollRequest {
            protocol_version: PROTOCOL_VERSION,
            hangar_version: HANGAR_VERSION.to_string(),
            agent_id: registered.agent_id.clone(),
            name: config.name.clone(),
            labels: config.labels.clone(),
            capacity: config.capacity as i64,
            free_slots: slots.available_permits() as i64 + 1,
            wait_ms: config.poll_wait.as_millis() as u64,
        };
        let polled = tokio::select! {
            r = client.poll(&req) => r,
            _ = shutdown.cancelled() => return Ok(()),
        };
        match polled {
            Ok(Some(assignment)) => {
                backoff = Duration::from_millis(100);
                let client = client.clone();
                let runner = runner.clone();
                let work_dir = config.work_dir.clone();
                let shutdown = shutdown.clone();
                let workspaces = workspaces.clone();
                tokio::spawn(async move {
                    let job_id = assignment.job_id;
                    if let Err(e) =
                        run_one(client, runner, assignment, work_dir, &workspaces, shutdown).await
                    {
                        tracing::warn!(job_id, "job ended with an agent error: {e:#}");
                    }
                    drop(permit);
                });
            }
            Ok(None) => drop(permit),
            Err(e)
                if e.downcast_ref::<client::Refused>().is_some()
                    || e.downcast_ref::<client::Removed>().is_some() =>
            {
                return Err(e);
            }
            Err(e) => {
                drop(permit);
                tracing::warn!("poll failed: {e:#}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = shutdown.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn run_one(
    client: Client,
    runner: Arc<dyn JobRunner>,
    a: Assignment,
    work_dir: PathBuf,
    workspaces: &workspace::Workspaces,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = client.with_lease(&a.lease_key);
    let cancel = shutdown.child_token();
    let lost = CancellationToken::new();
    let heartbeat = {
        let client = client.clone();
        let cancel = cancel.clone();
        let lost = lost.clone();
        let (job_id, fence) = (a.job_id, a.fence);
        // At least every second, so a cancel reaches the job's processes quickly; the
        // server writes the lease only when a third of it is used.
        let every = Duration::from_millis((a.lease_ms / 3).clamp(100, 1_000) as u64);
        let lease = Duration::from_millis(a.lease_ms.max(0) as u64);
        tokio::spawn(async move {
            // When the last heartbeat the server answered was sent: the
            // lease runs at least until then plus two thirds of it (the
            // server extends it once a third is used).
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let sent = tokio::time::Instant::now();
                // The server may count the lease as expired once two thirds
                // of it passed since the last renewal, and give the job to
                // another agent (it may itself be cut off from its database
                // and unable to renew anything): the job stops then rather
                // than run twice at once, even while a heartbeat is still
                // on its way.
                let expires = renewed + lease * 2 / 3;
                let answer =
                    tokio::time::timeout_at(expires, client.heartbeat(job_id, fence)).await;
                match answer {
                    Ok(Ok(Some(r))) => {
                        renewed = sent;
                        if r.cancel {
                            cancel.cancel();
                        }
                    }
                    Ok(Ok(None)) => {
                        lost.cancel();
                        cancel.cancel();
                        return;
                    }
                    Ok(Err(e)) if tokio::time::Instant::now() < expires => {
                        tracing::warn!(job_id, "heartbeat failed: {e:#}");
                    }
                    Ok(Err(_)) | Err(_) => {
                        tracing::warn!(
                            job_id,
                            "lost the lease of job {job_id}: no heartbeat was answered for {} ms; \
                             stopping it, as it may be given to another agent",
                            renewed.elapsed().as_millis()
                        );
                        lost.cancel();
                        cancel.cancel();
                        return;
                    }
                }
            }
        })
    };
    let reporter = Reporter::start(
        client.clone(),
        a.job_id,
        a.fence,
        a.secrets.values().cloned().collect(),
    );
    for n in &a.notices {
        reporter.line(None, &format!("##[notice]{n}"));
    }
    let ws = work_dir.join(format!("job-{}-{}", a.job_id, a.attempt));
    let _ = tokio::fs::remove_dir_all(&ws).await;
    let run_dir = runner::run_dir_of(&ws);
    let _ = tokio::fs::remove_dir_all(&run_dir).await;
    let had = match artifacts::download_all(&client, a.job_id, &run_dir).await {
        Ok(names) => names,
        Err(e) => {
            reporter.line(
                None,
                &format!("##[warning]could not fetch the run's artifacts: {e:#}"),
            );
            vec![]
        }
    };
    let outcome = match workspaces
        .prepare(&ws, &a.clone_url, &a.sha, &reporter)
        .await
    {
        Ok(()) => {
            runner
                .run(a.clone(), ws.clone(), reporter.clone(), cancel.clone())
                .await
        }
        Err(e) => {
            reporter.line(
                None,
                &format!("##[error]could not prepare the workspace: {e:#}"),
            );
            JobOutcome {
                conclusion: Conclusion::Failure,
                outputs: Default::default(),
            }
        }
    };
    // Whatever the runner left unsaid, what follows ends the job.
    reporter.completing();
    let outcome = if cancel.is_cancelled() && outcome.conclusion != Conclusion::Success {
        JobOutcome {
            conclusion: Conclusion::Cancelled,
            ..outcome
        }
    } else {
        outcome
    };
    if let Err(e) = artifacts::upload_new(&client, a.job_id, a.fence, &run_dir, &had).await {
        reporter.line(None, &format!("##[error]uploading artifacts failed: {e:#}"));
    }
    reporter.finish().await;
    heartbeat.abort();
    let _ = tokio::fs::remove_dir_all(&ws).await;
    let _ = tokio::fs::remove_dir_all(&run_dir).await;
    if lost.is_cancelled() {
        anyhow::bail!(
            "lost the lease of job {}; its result is discarded",
            a.job_id
        );
    }
    client
        .complete(
            a.job_id,
            &CompleteRequest {
                fence: a.fence,
                conclusion: outcome.conclusion,
                outputs: outcome.outputs,
            },
        )
        .await
}
