//! `hangar serve`, `hangar agent`, `hangar backup`, `hangar restore`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use hangar_agent::{AgentConfig, CancellationToken, EngineRunner, JobRunner};
use hangar_engine::actions::ActionSource;
use hangar_engine::process::{Sandbox, SandboxMode};
use hangar_server::ServeConfig;
use hangar_store::Store;

#[derive(Subcommand)]
pub enum Command {
    /// Run the CI server: web UI, API, webhooks, scheduler and an embedded agent.
    Serve {
        /// Address to listen on (loopback by default: put a TLS proxy in front to expose it).
        #[arg(long, default_value = "127.0.0.1:8420")]
        listen: SocketAddr,
        /// Data directory (SQLite database, key file, blobs). Default: ~/.local/share/hangar.
        #[arg(long, env = "HANGAR_DATA")]
        data: Option<PathBuf>,
        /// Keep the server's state in PostgreSQL instead of SQLite in the data
        /// directory: postgres://USER:PASSWORD@HOST:PORT/DATABASE, with libpq's
        /// ?sslmode=verify-full&sslrootcert=CA.pem for TLS. The key file and
        /// blobs stay in the data directory.
        #[arg(long, env = "HANGAR_DATABASE_URL", value_name = "URL")]
        database: Option<String>,
        /// Local git repository to register and watch for new commits (repeatable).
        /// Default: the current directory when it is a git repository.
        #[arg(long = "repo")]
        repos: Vec<PathBuf>,
        /// Seconds without a heartbeat after which an agent's job is declared lost.
        #[arg(long, default_value_t = 30)]
        lease_timeout: u64,
        /// Attempts per job when its agent is lost (1: fail, never retry).
        #[arg(long, default_value_t = 1)]
        max_attempts: i64,
        /// Slots of the embedded agent (0: run no embedded agent).
        #[arg(long, default_value_t = 4)]
        agent_capacity: usize,
        /// Labels of the embedded agent, comma-separated (default: self-hosted,linux,x64,hangar,ubuntu-latest,...).
        #[arg(long, value_delimiter = ',')]
        agent_labels: Vec<String>,
        /// Serve /metrics without a token.
        #[arg(long)]
        metrics_public: bool,
        /// Let forks' pull requests run on the embedded agent (inside the
        /// server's process tree, beside its data). Off: only remote agents take them.
        #[arg(long)]
        untrusted_on_embedded: bool,
        /// Treat a first-time contributor's pull request like a fork's (no
        /// secrets, no variables, never on the embedded agent).
        #[arg(long)]
        first_time_untrusted: bool,
        /// Only local repositories under these directories may be registered
        /// (default: any local path outside the data directory).
        #[arg(long, value_delimiter = ',')]
        local_repos: Vec<PathBuf>,
        /// A PEM certificate to trust for e-mail notifications' SMTP servers,
        /// besides the web's roots (an internal CA).
        #[arg(long, value_name = "FILE", env = "HANGAR_SMTP_CA_FILE")]
        smtp_ca_file: Option<PathBuf>,
        /// A PEM bundle git trusts for https clone URLs (fetches, release tag
        /// pushes) instead of the system's roots: a self-hosted forge's CA.
        #[arg(long, value_name = "FILE", env = "HANGAR_GIT_CA_FILE")]
        git_ca_file: Option<PathBuf>,
        /// The most log one attempt of a job keeps, in MiB; later lines are
        /// dropped after a marker line.
        #[arg(long, value_name = "MIB", default_value_t = 64)]
        max_log_mib: u64,
        /// How often watched repositories are polled, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// The server's address as users reach it (links on commit statuses),
        /// e.g. https://ci.example.com; http://<listen address> when unset.
        #[arg(long, env = "HANGAR_PUBLIC_URL")]
        public_url: Option<String>,
        /// Days completed runs' logs, artifacts and cache entries are kept (0: no limit by age).
        #[arg(long, default_value_t = 90)]
        retention_days: u32,
        /// Total megabytes of logs, artifacts and caches; past it the oldest go first (default: no budget).
        #[arg(long, value_name = "MB")]
        retention_max_mb: Option<u64>,
        /// Where marketplace actions and remote reusable workflows are fetched
        /// from: a forge's base URL (https://, http://, ssh://, git:// or
        /// file://). Default: GitHub.
        #[arg(long = "actions-url", value_name = "URL", env = "HANGAR_ACTIONS_URL")]
        actions_url: Option<String>,
        /// How the embedded agent isolates jobs: auto (bubblewrap when it works
        /// here, else plain processes with a warning), bwrap (refuse to start
        /// without it), none.
        #[arg(long, default_value = "auto", value_parser = parse_sandbox)]
        sandbox: SandboxMode,
        /// Seconds between SIGTERM (or Ctrl-C) and the stop, during which
        /// /readyz answers 503 `draining` and everything else is served as
        /// before: at least a load balancer's readiness interval, so no new
        /// request is sent to a server that is about to stop. A second signal
        /// stops at once.
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        drain_seconds: u64,
    },
    /// Take jobs from a hangar server and run them on this machine.
    Agent {
        /// The server's URL, e.g. http://ci.example:8420.
        #[arg(long, env = "HANGAR_SERVER")]
        server: String,
        /// An `agent` (or admin) token from `POST /api/v1/tokens`, to register
        /// with. Needed once: the agent keeps the id and credential the
        /// registration gives in its state file and uses them after a restart.
        #[arg(long, env = "HANGAR_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Where the agent keeps its id and credential (mode 0600). Default:
        /// agent-state.json in --work-dir when given, else
        /// $XDG_STATE_HOME/hangar/agent/NAME.json (~/.local/state when unset).
        /// An identity kept for another --server is replaced.
        #[arg(long, value_name = "FILE", env = "HANGAR_AGENT_STATE")]
        state_file: Option<PathBuf>,
        /// Register with --token even though the state file holds an identity
        /// for this server (after the agent was removed on the server), and
        /// keep the new one.
        #[arg(long)]
        reregister: bool,
        /// Labels this agent offers to `runs-on`, comma-separated.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Jobs run at once.
        #[arg(long, default_value_t = 2)]
        capacity: usize,
        /// Name shown in the UI (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// Where job workspaces go (default: a directory under the system temp dir).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Where marketplace actions are fetched from: a forge's base URL
        /// (https://, http://, ssh://, git:// or file://). Default: GitHub.
        #[arg(long = "actions-url", value_name = "URL", env = "HANGAR_ACTIONS_URL")]
        actions_url: Option<String>,
        /// How jobs are isolated: auto (bubblewrap when it works here, else
        /// plain processes with a warning), bwrap (refuse to start without it), none.
        #[arg(long, default_value = "auto", value_parser = parse_sandbox)]
        sandbox: SandboxMode,
    },
    /// Copy the server's data directory (online SQLite backup, key file and
    /// blobs). With --database postgres://…: the whole PostgreSQL store as of
    /// one moment, written as a SQLite store in the copy (every table's count
    /// and hash verified); restore it with `hangar restore`, or into an empty
    /// PostgreSQL database with `hangar migrate --from sqlite://OUT`.
    Backup {
        #[arg(long, env = "HANGAR_DATA")]
        data: Option<PathBuf>,
        /// The server's PostgreSQL database (as `hangar serve --database`).
        #[arg(long, env = "HANGAR_DATABASE_URL", value_name = "URL")]
        database: Option<String>,
        /// Directory to create with the copy.
        out: PathBuf,
    },
    /// Copy a whole SQLite store into an empty PostgreSQL database and verify
    /// every table's row count and hash (the server must be stopped). The data
    /// directory (key file, blobs) stays where it is: start the server on it
    /// with `--database` afterwards.
    Migrate {
        /// sqlite://DATA_DIR (the directory that holds hangar.db).
        #[arg(long, value_name = "URL")]
        from: String,
        /// postgres://USER:PASSWORD@HOST:PORT/DATABASE, an empty database.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Restore a data directory from `hangar backup` (the server must be stopped).
    Restore {
        #[arg(long, env = "HANGAR_DATA")]
        data: Option<PathBuf>,
        /// Directory made by `hangar backup`.
        from: PathBuf,
        /// Replace an existing database.
        #[arg(long)]
        force: bool,
    },
}

/// The agent's state file when `--state-file` is not given: beside the
/// workspaces of a chosen `--work-dir` (a directory jobs never see), else in
/// the user's state directory under the agent's name, so agents of other
/// names on one machine keep identities of their own.
fn default_state_file(work_dir: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(w) = work_dir {
        return Ok(w.join("agent-state.json"));
    }
    let base = match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        Some(x) if x.is_absolute() => x,
        _ => match std::env::var_os("HOME").map(PathBuf::from) {
            Some(h) if h.is_absolute() => h.join(".local/state"),
            _ => bail!(
                "no home directory (HOME) to keep the agent's identity in: pass --state-file FILE or --work-dir DIR"
            ),
        },
    };
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file = file.trim_start_matches('.');
    let file = if file.is_empty() { "agent" } else { file };
    Ok(base.join("hangar/agent").join(format!("{file}.json")))
}

fn parse_sandbox(s: &str) -> Result<SandboxMode, String> {
    s.parse()
}

/// The sandbox of an agent's jobs; the warning of `auto` without bubblewrap is
/// printed here, once, on the agent's standard error.
fn sandbox(mode: SandboxMode, hide: Vec<PathBuf>) -> anyhow::Result<Sandbox> {
    let (sandbox, warning) = Sandbox::for_agent(mode, hide).map_err(anyhow::Error::msg)?;
    if let Some(w) = warning {
        eprintln!("hangar: {w}");
    }
    Ok(sandbox)
}

/// `--actions-url` (or `HANGAR_ACTIONS_URL`), checked before anything starts,
/// else GitHub: the same rule as `hangar run`'s, minus hangar.yml, which a
/// server or agent has no single one of.
fn action_source(url: Option<String>) -> anyhow::Result<ActionSource> {
    match url.filter(|u| !u.trim().is_empty()) {
        Some(u) => ActionSource::new(&u, false).map_err(|e| anyhow::anyhow!("--actions-url: {e}")),
        None => ActionSource::new(hangar_engine::actions::DEFAULT_URL, false)
            .map_err(anyhow::Error::msg),
    }
}

/// The job runner agents use: the workflow engine.
fn runner(sandbox: Sandbox, actions: ActionSource) -> Arc<dyn JobRunner> {
    // hangar's own steps (hangar/release, hangar/deploy) run in server jobs too.
    let mut engine = hangar_engine::Engine::new();
    engine.set_sandbox(sandbox);
    engine.set_action_source(actions);
    for action in hangar_builtins::all() {
        engine.register(action);
    }
    // The server serves GitHub's cache service to every job: the real
    // `actions/cache` runs, not the engine's look-alike.
    engine.unregister("actions/cache");
    Arc::new(EngineRunner::new(engine))
}

/// Ctrl-C or SIGTERM (what service managers send).
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The top of the git repository the current directory is in, if any.
fn current_repo() -> Option<PathBuf> {
    let out = hangar_git::Git::here()
        .args(&["rev-parse", "--show-toplevel"])
        .output()
        .ok()?;
    let top = out.trim().to_string();
    (!top.is_empty()).then(|| PathBuf::from(top))
}

/// The server's and the agent's log on standard error: warnings, or what
/// `HANGAR_LOG` (an `EnvFilter`, e.g. `debug` or `trace`) asks for. No
/// secret, key or token is written at any level (`serve_logs` checks it).
fn log_to_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HANGAR_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
}

fn data_dir(d: Option<PathBuf>) -> PathBuf {
    d.unwrap_or_else(hangar_server::app::data_dir_default)
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command {
        Command::Serve {
            listen,
            data,
            database,
            repos,
            lease_timeout,
            max_attempts,
            agent_capacity,
            agent_labels,
            metrics_public,
            untrusted_on_embedded,
            first_time_untrusted,
            local_repos,
            smtp_ca_file,
            git_ca_file,
            max_log_mib,
            poll_ms,
            public_url,
            retention_days,
            retention_max_mb,
            actions_url,
            sandbox: mode,
            drain_seconds,
        } => {
            let data = data_dir(data);
            log_to_stderr();
            let actions = action_source(actions_url)?;
            // No step sees the database, the key file or the blobs.
            let jobs = sandbox(mode, vec![data.clone()])?;
            let mut cfg = ServeConfig::new(data.clone(), runner(jobs, actions.clone()));
            cfg.actions = actions;
            cfg.listen = listen;
            let database_label = database.as_deref().map(hangar_store::database_label);
            cfg.database = database;
            cfg.lease = Duration::from_secs(lease_timeout.max(1));
            cfg.reap_every = Duration::from_millis((lease_timeout * 1000 / 10).clamp(100, 1000));
            cfg.max_attempts = max_attempts;
            cfg.embedded_capacity = agent_capacity;
            if !agent_labels.is_empty() {
                cfg.embedded_labels = agent_labels;
            }
            cfg.metrics_public = metrics_public;
            cfg.untrusted_on_embedded = untrusted_on_embedded;
            cfg.first_time_untrusted = first_time_untrusted;
            cfg.smtp_ca_file = smtp_ca_file;
            cfg.git_ca_file = git_ca_file;
            cfg.max_log_bytes = max_log_mib.clamp(1, 1 << 20) << 20;
            if !local_repos.is_empty() {
                cfg.local_repos = hangar_server::git::LocalRepos::Under(local_repos);
            }
            cfg.watch_every = Duration::from_millis(poll_ms.max(50));
            cfg.retention.max_age = (retention_days > 0)
                .then(|| Duration::from_secs(u64::from(retention_days) * 86_400));
            cfg.retention.max_bytes = retention_max_mb.map(|mb| mb.saturating_mul(1024 * 1024));
            cfg.public_url = public_url.map(|u| u.trim_end_matches('/').to_string());
            cfg.watch = if repos.is_empty() {
                current_repo().into_iter().collect()
            } else {
                repos
            };
            rt.block_on(async move {
                let server = hangar_server::start(cfg).await?;
                println!("hangar serve: data in {}", data.display());
                if let Some(db) = &database_label {
                    println!("hangar serve: database {db}");
                }
                for repo in server.app.store.list_repos()? {
                    println!(
                        "hangar serve: repository {} ({})",
                        repo.name, repo.clone_url
                    );
                }
                if let Some(t) = &server.admin_token {
                    println!("hangar serve: admin token (shown once; keep it): {t}");
                }
                println!("hangar serve: listening on {}/ui/", server.url());
                shutdown_signal().await;
                if drain_seconds > 0 {
                    server.drain();
                    eprintln!(
                        "hangar serve: draining for {drain_seconds} s (/readyz answers 503); a second signal stops at once"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(drain_seconds)) => {}
                        _ = shutdown_signal() => {}
                    }
                }
                eprintln!("hangar serve: shutting down");
                server.stop().await;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Agent {
            server,
            token,
            state_file,
            reregister,
            labels,
            capacity,
            name,
            work_dir,
            actions_url,
            sandbox: mode,
        } => {
            let actions = action_source(actions_url)?;
            let name = name.unwrap_or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "agent".into())
            });
            let labels = if labels.is_empty() {
                hangar_server::default_labels()
            } else {
                labels
            };
            // The agent's warnings (a lost lease, a failed poll or heartbeat)
            // go to standard error; HANGAR_LOG=debug (an EnvFilter) shows more.
            log_to_stderr();
            let id = format!("agent-{name}-{}", std::process::id());
            let state_path = match state_file {
                Some(f) => f,
                None => default_state_file(work_dir.as_deref(), &name)?,
            };
            if reregister && token.as_deref().is_none_or(|t| t.trim().is_empty()) {
                bail!("--reregister registers with an agent token: pass --token (or HANGAR_TOKEN)");
            }
            let state = hangar_agent::identity::StateFile::open(&state_path)?;
            let work_dir = match work_dir {
                Some(w) => w,
                None => hangar_agent::workspace::private_work_dir("hangar-agent")
                    .context("creating the agent's work directory")?,
            };
            // Other jobs' workspaces, the agent's git mirrors and its
            // credential stay out of sight; the job's own workspace is bound
            // back in.
            let jobs = sandbox(mode, vec![work_dir.clone(), state_path])?;
            let cfg = AgentConfig {
                server,
                token: token.unwrap_or_default(),
                id,
                name,
                labels,
                capacity,
                work_dir,
                poll_wait: Duration::from_secs(30),
            };
            let keep = hangar_agent::Keep { state, reregister };
            rt.block_on(async move {
                let shutdown = CancellationToken::new();
                let s2 = shutdown.clone();
                tokio::spawn(async move {
                    shutdown_signal().await;
                    s2.cancel();
                });
                eprintln!(
                    "hangar agent: polling {} as {} with labels {} (identity kept in {})",
                    cfg.server,
                    cfg.name,
                    cfg.labels.join(","),
                    keep.state.path().display()
                );
                hangar_agent::run_agent_keeping(cfg, Some(keep), runner(jobs, actions), shutdown)
                    .await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Backup {
            data,
            database,
            out,
        } => {
            let data = data_dir(data);
            backup(&data, database.as_deref(), &out)?;
            println!("hangar backup: {} -> {}", data.display(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { from, to } => {
            let Some(dir) = from.strip_prefix("sqlite://") else {
                bail!(
                    "--from must be sqlite://DATA_DIR (the directory that holds hangar.db), not `{from}`"
                );
            };
            let dir = PathBuf::from(dir);
            // The database file itself names its directory too.
            let dir = if dir.file_name().is_some_and(|n| n == "hangar.db") {
                dir.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                dir
            };
            if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
                bail!(
                    "--to must be a postgres://USER@HOST:PORT/DATABASE URL, not `{}`",
                    hangar_store::database_label(&to)
                );
            }
            let label = hangar_store::database_label(&to);
            let report = hangar_store::copy::sqlite_to_postgres(&dir, &to)
                .with_context(|| format!("migrating {} to {label}", dir.display()))?;
            let mut rows = 0;
            for t in &report {
                println!(
                    "{:<22} {:>10} rows  sha256 {}",
                    t.table,
                    t.rows,
                    &t.hash[..16]
                );
                rows += t.rows;
            }
            println!(
                "hangar migrate: {rows} rows in {} tables copied to {label}, counts and hashes verified",
                report.len()
            );
            println!(
                "hangar migrate: start the server with --data {} --database {label}",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { data, from, force } => {
            let data = data_dir(data);
            restore(&from, &data, force)?;
            println!("hangar restore: {} -> {}", from.display(), data.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn backup(data: &Path, database: Option<&str>, out: &Path) -> anyhow::Result<()> {
    let database = database.map(str::trim).filter(|d| !d.is_empty());
    if database.is_none() && !data.join("hangar.db").exists() {
        bail!("{} holds no hangar database", data.display());
    }
    if out.exists() {
        bail!("{} already exists; choose a new directory", out.display());
    }
    let store = hangar_store::open_database(data, database)?;
    std::fs::create_dir_all(out)?;
    store.backup_to(&out.join("hangar.db"))?;
    std::fs::copy(data.join("secret.key"), out.join("secret.key"))
        .context("copying the key file")?;
    // Servers sharing one database share this key too (agents' lease keys).
    if data.join("lease.key").exists() {
        std::fs::copy(data.join("lease.key"), out.join("lease.key"))
            .context("copying the lease key file")?;
    }
    copy_dir(&data.join("blobs"), &out.join("blobs"))?;
    Ok(())
}

fn restore(from: &Path, data: &Path, force: bool) -> anyhow::Result<()> {
    for f in ["hangar.db", "secret.key"] {
        if !from.join(f).exists() {
            bail!("{} is not a hangar backup: {f} is missing", from.display());
        }
    }
    if data.join("hangar.db").exists() && !force {
        bail!(
            "{} already holds a database; stop the server and pass --force to replace it",
            data.display()
        );
    }
    std::fs::create_dir_all(data)?;
    for f in ["hangar.db-wal", "hangar.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    std::fs::copy(from.join("hangar.db"), data.join("hangar.db"))?;
    std::fs::copy(from.join("secret.key"), data.join("secret.key"))?;
    if from.join("lease.key").exists() {
        std::fs::copy(from.join("lease.key"), data.join("lease.key"))?;
    }
    copy_dir(&from.join("blobs"), &data.join("blobs"))?;
    // Opening runs the migrations and checks the key decrypts.
    let store = hangar_store::open(data)?;
    store.token_count()?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
