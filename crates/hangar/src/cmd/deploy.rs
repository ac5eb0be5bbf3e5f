//! `hangar up|down|deploy|promote|abort|rollback|status|history|dora`.
//!
//! An environment is run by one controller process (`hangar up --env E`, in the
//! foreground, or started in the background by the first `hangar deploy E`). The
//! other commands talk to it over its control socket, so a deployment outlives the
//! shell that started it, and `promote`/`abort` work from another terminal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use hangar_deploy::client::{EnvClient, ServerClient};
use hangar_deploy::control::{self, Request};
use hangar_deploy::controller::DeployRequest;
use hangar_deploy::protection;
use hangar_deploy::state::{DeploymentRecord, EnvFiles, Outcome};
use hangar_deploy::{Controller, dora};

/// `println!` that returns the error instead of panicking when stdout is
/// closed early (`hangar history -v | head`); [`run`] treats that as done.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?;
    }};
}

#[derive(Args, Clone)]
pub struct Where {
    /// Project directory (holding hangar.yml).
    #[arg(long, default_value = ".", global = true)]
    dir: PathBuf,
    /// Data directory for releases, state and logs [default: <dir>/.hangar].
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Go through this hangar server (it watches the project with `--repo`):
    /// the deployment then runs in the server and outlives this command.
    #[arg(long, global = true, env = "HANGAR_SERVER", value_name = "URL")]
    server: Option<String>,
    /// API token for `--server`.
    #[arg(long, global = true, env = "HANGAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The project on the server: its id (`project_id` in the delivery API)
    /// or its folder name [default: the name of --dir; when the server
    /// watches several projects of that name, the one at --dir's path].
    #[arg(long, global = true)]
    project: Option<String>,
}

/// Setting a protected environment's rules aside when no server can ask its
/// reviewers.
#[derive(Args, Clone, Default)]
pub struct Override {
    /// Act on an environment whose hangar.yml `protection:` has reviewers or a
    /// wait timer without a server to ask them; recorded with --reason in the
    /// environment's history (`hangar history ENV`).
    #[arg(long, requires = "reason")]
    override_protection: bool,
    /// Why the protection is set aside (required with --override-protection).
    #[arg(long, value_name = "TEXT", requires = "override_protection")]
    reason: Option<String>,
}

/// A direct action on `env` (`hangar deploy|rollback|promote|up`): the one
/// decision of `hangar_deploy::protection`, which refuses a protected
/// environment with no server unless overridden, and records an override
/// before the action runs.
fn check_protection(
    at: &Where,
    env: &str,
    command: &str,
    ov: &Override,
) -> anyhow::Result<protection::Way> {
    let ask = protection::Ask {
        server: at.server.is_some(),
        override_protection: ov.override_protection,
        reason: ov.reason.clone(),
        actor: None,
        approved: false,
    };
    let way = protection::decide(
        &at.dir,
        &at.files(env),
        env,
        protection::Caller::Cli(command),
        &ask,
    )?;
    if let protection::Way::Overridden(line) = &way {
        eprintln!("{line}");
    }
    Ok(way)
}

impl Where {
    /// Sends a controller request through the server; a deployment is
    /// followed (its progress printed) until it ends.
    async fn remote(
        &self,
        server: &str,
        env: &str,
        req: &Request,
    ) -> anyhow::Result<serde_json::Value> {
        let client = match &self.project {
            Some(p) => ServerClient::new(server, self.token.clone(), p),
            None => {
                let dir = std::fs::canonicalize(&self.dir)?;
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .context("--project is needed: the directory has no name")?;
                ServerClient::new(server, self.token.clone(), &name).at_dir(&dir)
            }
        };
        client.call(env, req, |e| eprintln!("{e}")).await
    }

    fn data(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| self.dir.join(".hangar"))
    }
    fn files(&self, env: &str) -> EnvFiles {
        EnvFiles::new(&self.data(), env)
    }
    /// The environment's controller, started by this very binary when needed.
    fn client(&self, env: &str) -> anyhow::Result<EnvClient> {
        Ok(EnvClient::new(
            &std::env::current_exe()?,
            &self.dir,
            &self.data(),
            env,
        ))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Start an environment's services in dependency order and run its controller in the foreground (Ctrl-C stops all).
    Up {
        /// The environment [default: local].
        #[arg(value_name = "ENV")]
        env: Option<String>,
        /// The environment, as earlier versions named it.
        #[arg(long = "env", value_name = "ENV", hide = true, conflicts_with = "env")]
        env_flag: Option<String>,
        /// Do not run the services' build commands.
        #[arg(long)]
        no_build: bool,
        /// Services with no release yet get their first one from this git ref.
        #[arg(long = "ref", value_name = "REF", conflicts_with = "artifact")]
        git_ref: Option<String>,
        /// Services with no release yet get this artifact as their first.
        #[arg(long, value_name = "PATH")]
        artifact: Option<PathBuf>,
        /// Started by hangar as the environment's background controller
        /// (`hangar deploy`, `hangar/deploy`, the router process's restart):
        /// the command that needed it decided the protection already.
        #[arg(long, hide = true)]
        controller: bool,
        /// Also start the services the environment's `services:` list depends on.
        #[arg(long)]
        with_dependencies: bool,
        #[command(flatten)]
        ov: Override,
        #[command(flatten)]
        at: Where,
    },
    /// Stop an environment's controller and all its instances.
    Down {
        /// The environment [default: local].
        #[arg(value_name = "ENV")]
        env: Option<String>,
        /// The environment, as earlier versions named it.
        #[arg(long = "env", value_name = "ENV", hide = true, conflicts_with = "env")]
        env_flag: Option<String>,
        #[command(flatten)]
        at: Where,
    },
    /// Deploy a new release of an environment's services with its strategy.
    Deploy {
        env: String,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Deploy this file or directory as the artifact instead of building.
        #[arg(long)]
        artifact: Option<PathBuf>,
        /// Record this commit (sha) as the deployed change [default: HEAD].
        #[arg(long = "ref")]
        git_ref: Option<String>,
        #[arg(long)]
        no_build: bool,
        /// Also deploy the services the environment's `services:` list
        /// depends on (by default only the listed ones are deployed).
        #[arg(long)]
        with_dependencies: bool,
        #[command(flatten)]
        ov: Override,
        #[command(flatten)]
        at: Where,
    },
    /// Let a paused or running rollout go on to 100%.
    Promote {
        env: String,
        #[command(flatten)]
        ov: Override,
        #[command(flatten)]
        at: Where,
    },
    /// Stop a rollout and send all traffic back to the stable version.
    Abort {
        env: String,
        #[command(flatten)]
        at: Where,
    },
    /// Switch back to an earlier kept release (instantly while it is still warm).
    Rollback {
        env: String,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        ov: Override,
        #[command(flatten)]
        at: Where,
    },
    /// Versions, instances, health, weights and live traffic of an environment.
    Status {
        env: Option<String>,
        #[command(flatten)]
        at: Where,
    },
    /// Past deployments of an environment, with every decision and its numbers.
    History {
        env: String,
        /// Show each deployment's events.
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        at: Where,
    },
    /// DORA metrics: deployment frequency, lead time, change failure rate, recovery time.
    Dora {
        /// The environment [default: prod].
        #[arg(value_name = "ENV")]
        env: Option<String>,
        /// The environment, as earlier versions named it.
        #[arg(long = "env", value_name = "ENV", hide = true, conflicts_with = "env")]
        env_flag: Option<String>,
        /// Window, e.g. 30d, 12h.
        #[arg(long, default_value = "30d")]
        since: String,
        #[command(flatten)]
        at: Where,
    },
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match rt.block_on(dispatch(command)) {
        // The reader went away (`| head`): what it wanted was written.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up {
            env,
            env_flag,
            no_build,
            git_ref,
            artifact,
            controller,
            ov,
            with_dependencies,
            at,
        } => {
            let env = env.or(env_flag).unwrap_or_else(|| "local".into());
            // A protected environment is brought up by the server that asks
            // its reviewers (its controller then runs there), or on the record.
            if !controller && check_protection(&at, &env, "up", &ov)? == protection::Way::Server {
                let server = at.server.clone().unwrap_or_default();
                let req = server_deploy(None, artifact, git_ref, no_build, with_dependencies);
                let v = at.remote(&server, &env, &req).await?;
                let empty = format!("environment `{env}` is up on the server");
                return report(&at, &v, Outcome::Succeeded, &empty);
            }
            let commit = match &git_ref {
                Some(r) => Some(resolve_commit(&at.dir, r)?),
                None => None,
            };
            let first = DeployRequest {
                service: None,
                artifact: artifact
                    .map(|a| {
                        std::fs::canonicalize(&a)
                            .with_context(|| format!("artifact {}", a.display()))
                    })
                    .transpose()?,
                from_commit: commit.is_some(),
                commit,
                no_build,
                with_dependencies,
            };
            up(&env, &first, &at).await
        }
        Command::Down { env, env_flag, at } => {
            let env = env.or(env_flag).unwrap_or_else(|| "local".into());
            let files = at.files(&env);
            if !controller_running(&files).await {
                // One the router is restarting holds the environment before
                // it answers: it is the one to stop everything.
                files.clear_supervision();
                let t0 = std::time::Instant::now();
                while files.controller_holds()
                    && !controller_running(&files).await
                    && t0.elapsed() < std::time::Duration::from_secs(120)
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            // A controller that its supervisor is restarting can accept the
            // call and go away under it (the reset of a half-started
            // process): then it is asked again, or its leftovers stopped.
            let mut attempts = 0;
            let v = loop {
                if !controller_running(&files).await {
                    // A controller that died (kill -9, OOM) leaves its instances
                    // running in their own process groups: down stops them too.
                    let n = hangar_deploy::controller::stop_leftovers(&files)?;
                    if n > 0 {
                        eprintln!(
                            "environment `{env}` had no controller; stopped the {n} instance(s) it left running"
                        );
                    } else {
                        eprintln!("environment `{env}` is not running");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                match control::call(&files.socket(), &Request::Down, |e| eprintln!("{e}")).await {
                    Ok(v) => break v,
                    Err(e) if attempts < 3 && connection_lost(&e) => {
                        attempts += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            print_value(&at, &v, |_| format!("environment `{env}` stopped"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy {
            env,
            service,
            artifact,
            git_ref,
            no_build,
            with_dependencies,
            ov,
            at,
        } => {
            if let Some(server) = at.server.clone() {
                let req = server_deploy(service, artifact, git_ref, no_build, with_dependencies);
                let v = at.remote(&server, &env, &req).await?;
                return report(&at, &v, Outcome::Succeeded, "");
            }
            check_protection(&at, &env, "deploy", &ov)?;
            let from_commit = git_ref.is_some() && artifact.is_none();
            let commit = match git_ref {
                Some(r) => Some(resolve_commit(&at.dir, &r)?),
                None => None,
            };
            let artifact = artifact
                .map(|a| {
                    std::fs::canonicalize(&a).with_context(|| format!("artifact {}", a.display()))
                })
                .transpose()?;
            let req = Request::Deploy {
                service,
                artifact: artifact.map(|a| a.display().to_string()),
                commit: commit.as_ref().map(|c| c.0.clone()),
                commit_time: commit.map(|c| c.1),
                no_build,
                from_commit,
                with_dependencies,
            };
            let recs = at.client(&env)?.deploy(&req, |e| eprintln!("{e}")).await?;
            let empty = format!(
                "nothing changed since the last deployment to `{env}`: no service deployed (name one with --service to deploy it anyway)"
            );
            report(
                &at,
                &serde_json::to_value(&recs)?,
                Outcome::Succeeded,
                &empty,
            )
        }
        Command::Promote { env, ov, at } => {
            check_protection(&at, &env, "promote", &ov)?;
            simple(&env, &at, Request::Promote).await
        }
        Command::Abort { env, at } => simple(&env, &at, Request::Abort).await,
        Command::Rollback {
            env,
            to,
            service,
            ov,
            at,
        } => {
            check_protection(&at, &env, "rollback", &ov)?;
            let req = Request::Rollback { service, to };
            let v = match &at.server {
                Some(server) => at.remote(server, &env, &req).await?,
                None => serde_json::to_value(
                    at.client(&env)?
                        .rollback(&req, |e| eprintln!("{e}"))
                        .await?,
                )?,
            };
            report(&at, &v, Outcome::Rollback, "")
        }
        Command::Status { env, at } => status(env, &at).await,
        Command::History { env, verbose, at } => {
            let history = at.files(&env).history();
            let overrides = at.files(&env).overrides();
            if !at.json {
                for o in &overrides {
                    outln!(
                        "{}  protection overridden by {} for `{}` ({}): {}",
                        date_ms(o.at_ms),
                        o.by,
                        o.command,
                        o.rules,
                        o.reason
                    );
                }
            }
            if at.json {
                outln!("{}", serde_json::to_string_pretty(&history)?);
            } else if history.is_empty() {
                outln!("no deployments in `{env}` yet");
            } else {
                for r in &history {
                    if verbose {
                        outln!("{}", summary_head(r));
                        for (i, e) in r.events.iter().enumerate() {
                            match r.event_times.get(i).filter(|t| **t > 0) {
                                Some(t) => outln!("    {}  {e}", clock_ms(*t)),
                                None => outln!("    {e}"),
                            }
                        }
                    } else {
                        outln!("{}", summary_line(r));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dora {
            env,
            env_flag,
            since,
            at,
        } => {
            let env = env.or(env_flag).unwrap_or_else(|| "prod".into());
            let window = hangar_project::parse_duration(&since)
                .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let d = dora::compute(
                &env,
                &at.files(&env).history(),
                hangar_deploy::supervisor::now_unix(),
                window.as_secs(),
            );
            if at.json {
                outln!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| {
                    v.map(f).unwrap_or_else(|| "n/a".into())
                };
                outln!(
                    "DORA metrics for `{env}` over the last {since} ({} deployments)",
                    d.deployments
                );
                outln!(
                    "  deployment frequency      {:.2} per day",
                    d.deployment_frequency_per_day
                );
                outln!(
                    "  lead time for changes     {}",
                    opt(d.lead_time_seconds_median, &|s| human(s))
                );
                outln!(
                    "  change failure rate       {}",
                    opt(d.change_failure_rate, &|r| format!("{:.1}%", r * 100.0))
                );
                outln!(
                    "  failed deployment recovery {}",
                    opt(d.recovery_time_seconds_median, &|s| human(s))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn up(env: &str, first: &DeployRequest, at: &Where) -> anyhow::Result<ExitCode> {
    let dir = std::fs::canonicalize(&at.dir)
        .with_context(|| format!("project directory {}", at.dir.display()))?;
    let data = at.data.clone().unwrap_or_else(|| dir.join(".hangar"));
    // Ctrl-C is caught from now on: one pressed while the services start is
    // acted on once they have started (a half-started environment is not
    // abandoned with instances running in their own process groups).
    let mut stop = StopSignals::new()?;
    // The routers run in a process of their own, which keeps serving if this one dies.
    hangar_deploy::use_router_process(std::env::current_exe()?);
    let ctl = Controller::open(&dir, &data, env).await?;
    let mut events = ctl.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            eprintln!("{e}");
        }
    });
    let files = EnvFiles::new(&data, env);
    // Instances' output, prefixed `service[index]`, from what they write from now on.
    let logs = tokio::spawn(super::follow::follow(
        ctl.clone(),
        super::follow::baseline(&files.dir.join("logs")),
    ));
    if let Err(e) = ctl.start_all_with(first).await {
        if ctl.restarted() {
            // In place of a controller that died: the environment keeps
            // serving through its router while this one retries.
            eprintln!("error: {e:#}; retrying with backoff");
            ctl.keep_retrying(first.clone(), e);
        } else {
            ctl.shutdown().await;
            printer.abort();
            logs.abort();
            return Err(e);
        }
    }
    for s in ctl.status().services {
        let scheme = match s.protocol {
            hangar_router::tcp::Protocol::Tcp => "tcp",
            hangar_router::tcp::Protocol::Http => "http",
        };
        eprintln!(
            "{}: {} on {scheme}://{}",
            s.service,
            s.stable.unwrap_or_default(),
            s.listen
        );
    }
    eprintln!("environment `{env}` is up; Ctrl-C stops it");
    let socket = files.socket();
    tokio::select! {
        r = control::serve(ctl.clone(), &socket) => { r?; }
        _ = stop.recv() => {
            eprintln!("stopping `{env}`...");
            ctl.shutdown().await;
            let _ = std::fs::remove_file(&socket);
        }
    }
    printer.abort();
    logs.abort();
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM, caught from creation on.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// The controller's socket went away during a call (as opposed to the
/// controller answering with an error).
fn connection_lost(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::*;
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                ConnectionReset | BrokenPipe | ConnectionRefused | NotFound | UnexpectedEof
            )
        })
}

async fn controller_running(files: &EnvFiles) -> bool {
    control::running(&files.socket()).await
}

async fn simple(env: &str, at: &Where, req: Request) -> anyhow::Result<ExitCode> {
    if let Some(server) = &at.server {
        let v = at.remote(server, env, &req).await?;
        print_value(at, &v, |v| v.as_str().unwrap_or_default().to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    let answer = at.client(env)?.signal(&req).await?;
    print_value(at, &serde_json::json!(answer), |v| {
        v.as_str().unwrap_or_default().to_string()
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn status(env: Option<String>, at: &Where) -> anyhow::Result<ExitCode> {
    let envs: Vec<String> = match env {
        Some(e) => vec![e],
        None => std::fs::read_dir(at.data().join("envs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
    };
    let mut all = Vec::new();
    for env in envs {
        if let Some(server) = &at.server {
            all.push(at.remote(server, &env, &Request::Status).await?);
            continue;
        }
        let files = at.files(&env);
        if controller_running(&files).await {
            all.push(control::call(&files.socket(), &Request::Status, |_| {}).await?);
        } else {
            let st = files.load();
            all.push(serde_json::json!({"env": env, "running": false, "stable": st.stable}));
        }
    }
    if at.json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        outln!("no environment has been started here (hangar up / hangar deploy ENV)");
    }
    for s in all {
        let env = s["env"].as_str().unwrap_or_default();
        if s.get("running") == Some(&serde_json::json!(false)) {
            outln!("{env}: not running; stable releases: {}", s["stable"]);
            continue;
        }
        outln!("{env} (controller pid {})", s["controller_pid"]);
        for svc in s["services"].as_array().into_iter().flatten() {
            outln!(
                "  {} on {}://{}  stable {}",
                svc["service"].as_str().unwrap_or_default(),
                svc["protocol"].as_str().unwrap_or("http"),
                svc["listen"].as_str().unwrap_or_default(),
                svc["stable"].as_str().unwrap_or("-")
            );
            if let Some(r) = svc["rollout"].as_str() {
                outln!("    rollout: {r}");
            }
            for w in svc["weights"].as_array().into_iter().flatten() {
                outln!(
                    "    weight {} = {}",
                    w[0].as_str().unwrap_or_default(),
                    w[1]
                );
            }
            for t in svc["traffic"].as_array().into_iter().flatten() {
                let m = &t[1];
                // Counted since the router started: a restarted one counts
                // from zero again, which the date shows.
                let since = match m["since_ms"].as_u64() {
                    Some(ms) if ms > 0 => format!(" since {} UTC", date_ms(ms)),
                    _ => String::new(),
                };
                outln!(
                    "    traffic {}: {} requests, {} errors ({:.2}%), p95 {:.1} ms{since}",
                    t[0].as_str().unwrap_or_default(),
                    m["requests"],
                    m["errors"],
                    m["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                    m["p95_ms"].as_f64().unwrap_or(0.0)
                );
            }
            for i in svc["instances"].as_array().into_iter().flatten() {
                outln!(
                    "    #{} {} pid {} port {} {} restarts {}  {}",
                    i["index"],
                    i["version"].as_str().unwrap_or_default(),
                    i["pid"],
                    i["port"],
                    i["phase"].as_str().unwrap_or_default(),
                    i["restarts"],
                    i["last_health"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn resolve_commit(dir: &Path, r: &str) -> anyhow::Result<(String, u64)> {
    let text = hangar_git::Git::new(dir)
        .args(&["log", "-1", "--format=%H %ct"])
        .value(r)
        .arg("--")
        .output()
        .with_context(|| format!("--ref {r}"))?;
    let (sha, t) = text
        .trim()
        .split_once(' ')
        .context("unexpected git output")?;
    Ok((sha.to_string(), t.parse()?))
}

/// `2026-12-04 07:17:44.123` (UTC) from unix milliseconds.
fn date_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// `07:17:44.123` (UTC) from unix milliseconds.
fn clock_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|d| d.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A deployment's first line in `history -v`: when it started (UTC, to the
/// millisecond) and how long it took.
fn summary_head(r: &DeploymentRecord) -> String {
    let outcome = serde_json::to_value(r.outcome)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let started = r.started_ms.unwrap_or(r.started * 1000);
    let took = match (r.started_ms, r.finished_ms) {
        (Some(a), Some(b)) => format!("{:.3} s", b.saturating_sub(a) as f64 / 1000.0),
        _ => format!("{} s", r.finished.saturating_sub(r.started)),
    };
    format!(
        "#{} {} UTC  {} {} -> {} ({}) {} in {took}{}",
        r.id,
        date_ms(started),
        r.service,
        r.previous.as_deref().unwrap_or("-"),
        r.version,
        r.strategy,
        outcome,
        r.commit
            .as_ref()
            .map(|c| format!(" commit {}", &c[..c.len().min(7)]))
            .unwrap_or_default(),
    )
}

/// What `deploy`/`up` ask a server for: the server resolves the ref in its
/// own checkout, so the commit goes as given and its time is the server's to find.
fn server_deploy(
    service: Option<String>,
    artifact: Option<PathBuf>,
    git_ref: Option<String>,
    no_build: bool,
    with_dependencies: bool,
) -> Request {
    Request::Deploy {
        service,
        artifact: artifact.map(|a| a.display().to_string()),
        from_commit: git_ref.is_some(),
        commit: git_ref,
        commit_time: None,
        no_build,
        with_dependencies,
    }
}

/// Prints the deployment records a command produced (one line each, or
/// `empty` when there are none and it is not blank) and exits non-zero
/// unless every record ended as `want`.
fn report(
    at: &Where,
    v: &serde_json::Value,
    want: Outcome,
    empty: &str,
) -> anyhow::Result<ExitCode> {
    let recs: Vec<DeploymentRecord> = serde_json::from_value(v.clone())?;
    print_value(at, v, |_| {
        if recs.is_empty() && !empty.is_empty() {
            empty.to_string()
        } else {
            recs.iter().map(summary_line).collect::<Vec<_>>().join("\n")
        }
    })?;
    Ok(if recs.iter().all(|r| r.outcome == want) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summary_line(r: &DeploymentRecord) -> String {
    let outcome = serde_json::to_value(r.outcome)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    format!(
        "#{} {} {} -> {} ({}) {} in {} s{}{}",
        r.id,
        r.service,
        r.previous.as_deref().unwrap_or("-"),
        r.version,
        r.strategy,
        outcome,
        r.finished.saturating_sub(r.started),
        r.commit
            .as_ref()
            .map(|c| format!(" commit {}", &c[..c.len().min(7)]))
            .unwrap_or_default(),
        r.events
            .last()
            .map(|e| format!("\n    {e}"))
            .unwrap_or_default()
    )
}

fn print_value(
    at: &Where,
    v: &serde_json::Value,
    text: impl FnOnce(&serde_json::Value) -> String,
) -> std::io::Result<()> {
    if at.json {
        outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        outln!("{}", text(v));
    }
    Ok(())
}

fn human(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.1} min", secs / 60.0)
    } else if secs < 172800.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.1} days", secs / 86400.0)
    }
}
