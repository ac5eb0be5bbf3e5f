//! `hangar serve`: webhooks, scheduler, queue and leases, live logs, REST API and
//! the web UI. The server never executes steps: an agent does, the embedded one
//! included, through the same HTTP protocol a remote agent uses.

pub mod admin;
pub mod agent_api;
pub mod api;
pub mod app;
pub mod auth;
mod backups;
mod calls;
pub mod delivery;
mod delivery_history;
mod errors;
pub mod forge_pr;
pub mod forge_status;
pub mod git;
pub mod github_app;
pub mod github_checks;
pub mod hooks;
pub mod live;
pub mod mask;
pub mod metrics;
pub mod notify;
mod notify_email;
pub mod openapi;
mod paging;
mod release_tag;
mod results_store;
pub mod retention;
pub mod settings;
pub mod triggers;
pub mod ui;
pub mod webhook;
pub mod workflow_run;
pub mod workflows;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use tokio_util::sync::CancellationToken;

use hangar_agent::{AgentConfig, JobRunner};
use hangar_store::{NewRepo, Role, Store};

pub use app::App;

pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A `postgres://` URL: the server's state in PostgreSQL (several servers
    /// may share it). `None`: SQLite in the data directory.
    pub database: Option<String>,
    /// A leased job whose agent has not sent a heartbeat for this long is lost.
    pub lease: Duration,
    pub reap_every: Duration,
    /// Attempts per job when its agent is lost (1 = fail at once, never retry).
    pub max_attempts: i64,
    /// Slots of the embedded agent; 0 runs no embedded agent.
    pub embedded_capacity: usize,
    pub embedded_labels: Vec<String>,
    pub metrics_public: bool,
    /// Local repositories to register and watch (no forge needed).
    pub watch: Vec<PathBuf>,
    pub watch_every: Duration,
    pub runner: Arc<dyn JobRunner>,
    pub cron: bool,
    /// Local paths that may be registered as clone URLs.
    pub local_repos: git::LocalRepos,
    /// A client must send its request's headers within this long.
    pub header_timeout: Duration,
    /// Run forks' pull requests on the embedded agent too (off: only remote agents take them).
    pub untrusted_on_embedded: bool,
    /// Treat a first-time contributor's pull request like a fork's.
    pub first_time_untrusted: bool,
    /// The server's address as users reach it (links on commit statuses);
    /// `http://<listen address>` when unset.
    pub public_url: Option<String>,
    /// Retries of commit status delivery.
    pub status_retry: forge_status::RetryPolicy,
    /// A PEM certificate trusted for e-mail notifications' SMTP servers besides
    /// the web's roots (an internal CA).
    pub smtp_ca_file: Option<PathBuf>,
    /// A PEM bundle git trusts for https clone URLs (the server's fetches and
    /// its release tag pushes) instead of the system's roots: a self-hosted
    /// forge's private CA.
    pub git_ca_file: Option<PathBuf>,
    /// The most log one attempt of a job keeps (64 MiB by default).
    pub max_log_bytes: u64,
    /// A request body that sends nothing for this long is cut off.
    pub body_idle_timeout: Duration,
    /// How long logs, artifacts and caches are kept, and their size budget.
    pub retention: retention::Retention,
    /// Where remote reusable workflows (`OWNER/REPO/.github/workflows/F.yml@REF`)
    /// are fetched from: the source `hangar run` uses (`HANGAR_ACTIONS_URL`,
    /// else GitHub), fetched by the server into its data directory's action
    /// cache; agents never fetch workflows.
    pub actions: hangar_engine::actions::ActionSource,
}

impl ServeConfig {
    pub fn new(data_dir: PathBuf, runner: Arc<dyn JobRunner>) -> ServeConfig {
        ServeConfig {
            listen: "127.0.0.1:8420".parse().expect("literal address"),
            data_dir,
            database: None,
            lease: Duration::from_secs(30),
            reap_every: Duration::from_secs(1),
            max_attempts: 1,
            embedded_capacity: 4,
            embedded_labels: default_labels(),
            metrics_public: false,
            watch: vec![],
            watch_every: Duration::from_secs(1),
            runner,
            cron: true,
            local_repos: git::LocalRepos::Any,
            header_timeout: Duration::from_secs(10),
            untrusted_on_embedded: false,
            first_time_untrusted: false,
            public_url: None,
            status_retry: Default::default(),
            smtp_ca_file: None,
            git_ca_file: None,
            max_log_bytes: 64 << 20,
            body_idle_timeout: Duration::from_secs(30),
            retention: Default::default(),
            actions: Default::default(),
        }
    }
}

/// The labels a `runs-on` of a hosted runner name maps onto: the embedded agent
/// runs on this machine, as `hangar run` does.
pub fn default_labels() -> Vec<String> {
    [
        "self-hosted",
        "linux",
        "x64",
        "hangar",
        "ubuntu-latest",
        "ubuntu-24.04",
        "ubuntu-22.04",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

pub struct Server {
    pub addr: SocketAddr,
    /// Printed once on first start; `None` when tokens already existed.
    pub admin_token: Option<String>,
    pub app: Arc<App>,
    pub shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The embedded agent's private work directory (removed on stop).
    work_dir: Option<PathBuf>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Begins to shut down: `/readyz` answers 503 `draining` from now on,
    /// everything else as before, so a load balancer that checks readiness
    /// moves new requests to the other servers before [`Server::stop`].
    pub fn drain(&self) {
        self.app
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub async fn stop(self) {
        self.drain();
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        if let Some(w) = self.work_dir {
            let _ = tokio::fs::remove_dir_all(w).await;
        }
    }
}

/// The body limit of every API route that takes a document (a repository,
/// a secret, a token, a dispatch, a decision): far above what any of them
/// needs (GitHub caps a secret at 48 KB), far below what would let a holder
/// of any token make the server buffer large bodies.
pub const API_BODY_LIMIT: usize = 1024 * 1024;
/// An agent's log chunk (at most 1 MiB of text, which JSON escaping can
/// inflate) and its job's completion (outputs: GitHub keeps 1 MB per job).
const AGENT_UPLOAD_LIMIT: usize = 8 * 1024 * 1024;
/// An artifact file an agent uploads for its job.
const ARTIFACT_UPLOAD_LIMIT: usize = 64 * 1024 * 1024;

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/metrics", get(api::metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { axum::Json(openapi::document()) }),
        )
        .route("/api/v1/repos", get(api::list_repos).post(api::create_repo))
        .route(
            "/api/v1/repos/{id}",
            get(admin::get_repo)
                .patch(admin::patch_repo)
                .delete(admin::delete_repo),
        )
        .route("/api/v1/repos/{id}/variables", get(admin::list_variables))
        .route(
            "/api/v1/repos/{id}/environments/{env}/variables",
            get(admin::list_env_variables),
        )
        .route(
            "/api/v1/agents/{agent}",
            axum::routing::delete(admin::delete_agent),
        )
        .route(crate::auth::REGISTER_PATH, post(agent_api::register))
        .route("/api/v1/agents/{agent}/drain", post(admin::drain_agent))
        .route("/api/v1/agents/{agent}/resume", post(admin::resume_agent))
        .route("/api/v1/repos/{id}/dispatch", post(api::dispatch))
        .route("/api/v1/repos/{id}/workflows", get(api::list_workflows))
        .route("/api/v1/repos/{id}/secrets", get(api::list_secrets))
        .route(
            "/api/v1/repos/{id}/forge",
            get(api::get_forge)
                .put(api::put_forge)
                .delete(api::delete_forge),
        )
        .route(
            "/api/v1/github-app",
            get(github_app::get_app)
                .put(github_app::put_app)
                .delete(github_app::delete_app),
        )
        .route("/api/v1/outbound", get(api::list_outbound))
        .route(
            "/api/v1/notifications",
            get(api::list_notifications).post(api::create_notification),
        )
        .route(
            "/api/v1/notifications/{id}",
            axum::routing::delete(api::delete_notification),
        )
        .route(
            "/api/v1/repos/{id}/secrets/{name}",
            put(api::put_secret).delete(admin::delete_secret),
        )
        .route(
            "/api/v1/repos/{id}/settings",
            get(settings::get_settings).put(settings::put_settings),
        )
        .route(
            "/api/v1/repos/{id}/environments/{env}/secrets",
            get(settings::list_env_secrets),
        )
        .route(
            "/api/v1/repos/{id}/environments/{env}/secrets/{name}",
            put(settings::put_env_secret).delete(settings::delete_env_secret),
        )
        .route(
            "/api/v1/repos/{id}/environments/{env}/variables/{name}",
            put(settings::put_env_variable).delete(admin::delete_env_variable),
        )
        .route("/api/v1/runs/{id}/approve", post(settings::approve_run))
        .route(
            "/api/v1/runs/{id}/events/token",
            post(settings::stream_token),
        )
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(settings::revoke_token),
        )
        .route(
            "/api/v1/repos/{id}/variables/{name}",
            put(api::put_variable).delete(admin::delete_variable),
        )
        .route("/api/v1/runs", get(api::list_runs))
        .route("/api/v1/runs/{id}", get(api::get_run))
        .route("/api/v1/runs/{id}/cancel", post(api::cancel_run))
        .route("/api/v1/runs/{id}/rerun", post(api::rerun))
        .route("/api/v1/runs/{id}/events", get(api::run_events))
        .route("/api/v1/runs/{id}/artifacts", get(api::list_artifacts))
        .route(
            "/api/v1/runs/{id}/artifacts/{name}",
            get(api::download_artifact).post(api::upload_artifact),
        )
        .route("/api/v1/jobs/{id}/logs", get(api::job_log_lines))
        .route("/api/v1/jobs/{id}/logs/raw", get(api::job_log_raw))
        .route("/api/v1/approvals", get(api::list_approvals))
        .route("/api/v1/approvals/{id}", post(api::decide_approval))
        .route("/api/v1/agents", get(api::list_agents))
        .route("/api/v1/deliveries", get(api::list_deliveries))
        .route("/api/v1/audit", get(api::list_audit))
        .route("/api/v1/deployments", get(api::list_deployments))
        .route("/api/v1/usage", get(retention::usage))
        .route("/api/v1/whoami", get(admin::whoami))
        .route("/api/v1/delivery", get(delivery::overview))
        .route(
            "/api/v1/delivery/{project}/{env}",
            get(delivery::environment).post(delivery::request),
        )
        .route("/api/v1/delivery/operations/{id}", get(delivery::operation))
        .route(
            "/api/v1/delivery/operations/{id}/approve",
            post(delivery::decide),
        )
        .route(
            "/api/v1/tokens",
            get(api::list_tokens).post(api::create_token),
        )
        .route("/api/v1/agent/poll", post(agent_api::poll))
        .route(
            "/api/v1/agent/jobs/{id}/heartbeat",
            post(agent_api::heartbeat),
        )
        .route(
            "/api/v1/agent/jobs/{id}/logs",
            post(agent_api::logs).layer(DefaultBodyLimit::max(AGENT_UPLOAD_LIMIT)),
        )
        .route("/api/v1/agent/jobs/{id}/steps", post(agent_api::step))
        .route("/api/v1/agent/jobs/{id}/refuse", post(agent_api::refuse))
        .route(
            "/api/v1/agent/jobs/{id}/complete",
            post(agent_api::complete).layer(DefaultBodyLimit::max(AGENT_UPLOAD_LIMIT)),
        )
        .route(
            "/api/v1/agent/jobs/{id}/artifacts",
            get(agent_api::artifact_names),
        )
        .route(
            "/api/v1/agent/jobs/{id}/artifacts/{name}",
            get(agent_api::artifact_download)
                .post(agent_api::artifact_upload)
                .layer(DefaultBodyLimit::max(ARTIFACT_UPLOAD_LIMIT)),
        )
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        // Badges need no token (an image in a README cannot send one); only
        // public repositories have them.
        .route("/badge/{*path}", get(admin::badge))
        // A job's `hangar/deploy`: authenticated by the key the server gave
        // that job's attempt (`X-Hangar-Deploy`), not by a token.
        .route("/api/v1/jobs/{id}/deploy/{env}", post(delivery::job_deploy))
        .route(
            "/api/v1/jobs/{id}/deploy/operations/{op}",
            get(delivery::job_operation),
        )
        // The handler enforces GitHub's 25 MB itself, refusing unread when the
        // length is announced; this limit only has to let that through.
        .route(
            "/hooks/{forge}",
            post(hooks::receive).layer(DefaultBodyLimit::disable()),
        )
        .merge(ui::routes().layer(axum::middleware::map_response(security_headers)))
        .merge(api)
        .fallback(errors::not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            errors::database_gate,
        ))
        .layer(axum::middleware::map_response(errors::json_errors))
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            app.body_idle_timeout,
            body_idle_timeout,
        ))
        .with_state(app)
}

/// A request body that stops arriving for `idle` ends in an error instead of
/// holding its connection (one of a bounded number) for ever: the header
/// timeout stops slow headers, this stops a slow body after fast headers.
async fn body_idle_timeout(
    axum::extract::State(idle): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures_util::StreamExt;
    let (parts, body) = req.into_parts();
    let timed = futures_util::stream::unfold(Some(body.into_data_stream()), move |s| async move {
        let mut s = s?;
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(item)) => Some((item, Some(s))),
            Ok(None) => None,
            Err(_) => Some((
                Err(axum::Error::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the request body stopped arriving for {} s",
                        idle.as_secs_f64()
                    ),
                ))),
                None,
            )),
        }
    });
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from_stream(timed),
    ))
    .await
}

/// The key of lease keys, created once (0600) in the data directory so leases
/// outlive a restart of the server.
fn lease_secret(data_dir: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("lease.key");
    let parse = |text: &str| -> Option<[u8; 32]> { hex::decode(text.trim()).ok()?.try_into().ok() };
    if let Ok(text) = std::fs::read_to_string(&path) {
        return parse(&text).with_context(|| {
            format!(
                "{} is not 64 hex characters; delete it to make a new one (agents then re-poll)",
                path.display()
            )
        });
    }
    std::fs::create_dir_all(data_dir)?;
    let token = hangar_store::crypto::random_token()?;
    let hexed = hangar_store::crypto::sha256_hex(token.as_bytes());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(hexed.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    parse(&hexed).context("a fresh lease key")
}

/// Connections served at once; more wait in the listen backlog, so a flood of
/// idle connections cannot exhaust the process's file descriptors.
const MAX_CONNECTIONS: usize = 1024;

/// hyper's HTTP/1 server with what `axum::serve` does not offer: a header read
/// timeout (a slow-headers client is dropped) and a connection cap.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
    header_timeout: Duration,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let svc = hyper_util::service::TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

/// The UI's pages run only their own scripts, cannot be framed (clickjacking
/// an approval button) and are never sniffed as another type.
async fn security_headers(mut r: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// The name a watched directory is registered under: its folder name, unless
/// another directory already holds that name (registering under it would merge
/// two repositories into one); then its parent's name before it, and the whole
/// path as a last resort.
fn watched_name(store: &dyn Store, path: &std::path::Path) -> anyhow::Result<String> {
    let url = path.to_string_lossy().into_owned();
    let folder = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".into());
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| format!("{}/{folder}", n.to_string_lossy()));
    for name in [Some(folder), parent, Some(url.clone())]
        .into_iter()
        .flatten()
    {
        match store.find_repo(&name)? {
            Some(r) if r.clone_url != url => continue,
            _ => return Ok(name),
        }
    }
    Ok(url)
}

/// Opens the store, registers repositories, binds, and starts every background task.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<Server> {
    let store: Arc<dyn Store> =
        hangar_store::open_database(&cfg.data_dir, cfg.database.as_deref())?;
    // Sealed secrets, their key, token hashes and every blob live here: no
    // other user of the machine may read them, whatever an older version or
    // the umask left behind.
    for fixed in hangar_store::fsmode::secure_data_dir(&cfg.data_dir)? {
        tracing::warn!("data directory was readable by others: {fixed}");
    }
    let admin_token = if store.token_count()? == 0 {
        Some(store.create_token("admin", Role::Admin)?)
    } else {
        None
    };
    let internal_token = hangar_store::crypto::random_token()?;
    let embedded_agent_id = format!("embedded-{}", &hangar_store::crypto::random_token()?[4..16]);
    let app = Arc::new(App {
        store: store.clone(),
        git: git::GitReader::new(cfg.data_dir.join("mirrors"))
            .with_ca_file(cfg.git_ca_file.clone()),
        live: Default::default(),
        metrics: Default::default(),
        work: Default::default(),
        agents: Mutex::new(HashMap::new()),
        sched: Default::default(),
        maskers: Default::default(),
        pending_advance: Default::default(),
        timers: Default::default(),
        lease_ms: cfg.lease.as_millis() as i64,
        max_attempts: cfg.max_attempts.max(1),
        internal_token: internal_token.clone(),
        embedded_agent_id: embedded_agent_id.clone(),
        metrics_public: cfg.metrics_public,
        started_at: hangar_store::now_ms(),
        delivery_data: cfg
            .watch
            .iter()
            .map(|p| {
                std::fs::canonicalize(p)
                    .unwrap_or_else(|_| p.clone())
                    .join(".hangar")
            })
            .collect(),
        results: {
            let cache = results_store::StoreCache::open(store.clone())
                .context("opening the cache under the data directory")?;
            let mut rc = hangar_results::Config::new(cfg.data_dir.join("results-artifacts"));
            rc.artifacts_per_run = true;
            hangar_results::Service::new(Arc::new(cache), rc)?
        },
        data_dir: cfg.data_dir.clone(),
        retention: cfg.retention.clone(),
        local_repos: cfg.local_repos.clone(),
        replays: Default::default(),
        lease_secret: lease_secret(&cfg.data_dir)?,
        untrusted_on_embedded: cfg.untrusted_on_embedded,
        max_log_bytes: cfg.max_log_bytes,
        body_idle_timeout: cfg.body_idle_timeout,
        first_time_untrusted: cfg.first_time_untrusted,
        forge: Arc::new(forge_status::Reporter::new(cfg.status_retry.clone())),
        notifier: Arc::new(
            notify::Notifier::new(cfg.status_retry.clone()).with_smtp_ca(cfg.smtp_ca_file.clone()),
        ),
        env_loads: Default::default(),
        workflow_runs: Default::default(),
        workflow_cache: Default::default(),
        actions: cfg.actions.clone(),
        draining: Default::default(),
    });
    hangar_store::fsmode::create_private_dir(&cfg.data_dir.join("mirrors"))?;
    // Other servers on the same database see this server's embedded agent as
    // alive (and leave its jobs alone) for as long as this process runs.
    app.store.hold_presence(&app.embedded_agent_id)?;
    app.recover().await?;
    // Notification rules from each repository's hangar.yml live in memory:
    // read them again (with the protection rules) by the reaper's next pass.
    {
        let mut loads = app.env_loads.lock().unwrap_or_else(|e| e.into_inner());
        for repo in store.list_repos().unwrap_or_default() {
            loads.entry(repo.id).or_insert(0);
        }
    }

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (is another hangar serve running? use --listen)",
                cfg.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let base_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    *app.forge.base_url.lock().unwrap_or_else(|e| e.into_inner()) = base_url.clone();
    *app.notifier
        .base_url
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = base_url;
    // Jobs queued by another server on the same database wake the agents
    // waiting here too (a store only this server uses has nothing to hear).
    // Its own announcements come back too: those woke their poll already.
    let weak = Arc::downgrade(&app);
    app.store.listen_for_work(Box::new(move |from| {
        if let Some(app) = weak.upgrade()
            && from != Some(app.embedded_agent_id.as_str())
        {
            app.work.ring_all();
        }
    }))?;
    // Live events reach browsers connected to the other servers on the
    // database (nothing to do when this server is the only one).
    live::spawn_relay(app.clone())?;
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    {
        let shutdown = shutdown.clone();
        // The results service checks its own tokens (a job's runtime token,
        // signed blob URLs), not the API's.
        let router = router(app.clone()).merge(app.results.router());
        let header_timeout = cfg.header_timeout;
        tasks.push(tokio::spawn(serve_http(
            listener,
            router,
            shutdown,
            header_timeout,
        )));
    }
    // Start waiting to lead the periodic work (PostgreSQL: an advisory lock;
    // another server takes over when this one is gone).
    app.store.leads(app::PERIODIC)?;
    app::spawn_reaper(app.clone(), cfg.reap_every);
    retention::spawn(app.clone(), cfg.retention.clone());
    workflow_run::spawn(app.clone());
    if cfg.cron {
        triggers::cron(app.clone());
    }
    for path in &cfg.watch {
        let path =
            std::fs::canonicalize(path).with_context(|| format!("--repo {}", path.display()))?;
        let name = watched_name(store.as_ref(), &path)?;
        let repo = store.create_repo(&NewRepo {
            name,
            clone_url: path.to_string_lossy().into_owned(),
            forge: "local".into(),
            webhook_secret: None,
        })?;
        if let Some(head) = app.git.symbolic_head(&repo.clone_url).await
            && let Ok(sha) = app.git.resolve(&repo.clone_url, &head).await
            && let Err(e) = app.sync_environments(&repo, &sha).await
        {
            tracing::warn!("{e:#}");
        }
        delivery::relay_alerts(
            app.clone(),
            repo.id,
            repo.name.clone(),
            path.join(".hangar"),
        );
        backups::spawn(app.clone(), repo.id, repo.name.clone(), path.clone());
        triggers::watch_local(app.clone(), repo, path, cfg.watch_every);
    }
    // The watched projects' deployment histories into the store (what was
    // deployed while no server ran first), then checked every second.
    delivery_history::spawn(app.clone());
    // Deployments waiting for their reviewers when the last server process
    // stopped wait again (their projects are watched by now).
    delivery::resume(app.clone())?;
    let mut work_dir = None;
    if cfg.embedded_capacity > 0 {
        // Outside the data directory: a job's workspace never leads into the
        // database or the key file, and a jail can hide the whole data directory.
        let private = hangar_agent::workspace::private_work_dir("hangar-serve")
            .context("creating the embedded agent's work directory")?;
        work_dir = Some(private.clone());
        let agent = AgentConfig {
            server: format!("http://{addr}"),
            token: internal_token,
            id: embedded_agent_id,
            name: "embedded".into(),
            labels: cfg.embedded_labels.clone(),
            capacity: cfg.embedded_capacity,
            work_dir: private,
            poll_wait: Duration::from_secs(30),
        };
        let runner = cfg.runner.clone();
        // The agent stops with the server, and also when the server's
        // runtime goes away without `stop` (the guard below is dropped with
        // its task).
        let agent_stop = shutdown.child_token();
        let guard = agent_stop.clone().drop_guard();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        // The embedded agent runs on a runtime of its own, as a remote agent
        // would in its own process: a server whose workers are held by store
        // calls (a database that stopped answering) must not stall the
        // agent's heartbeats, nor the deadline at which it stops a job whose
        // lease it can no longer renew.
        std::thread::Builder::new()
            .name("hangar-embedded-agent".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("hangar-agent")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("embedded agent: starting its runtime: {e:#}");
                        return;
                    }
                };
                if let Err(e) = rt.block_on(hangar_agent::run_agent(agent, runner, agent_stop)) {
                    tracing::error!("embedded agent stopped: {e:#}");
                }
                rt.shutdown_timeout(Duration::from_secs(5));
                let _ = done_tx.send(());
            })
            .context("starting the embedded agent's thread")?;
        tasks.push(tokio::spawn(async move {
            let _guard = guard;
            let _ = done_rx.await;
        }));
    }
    Ok(Server {
        addr,
        admin_token,
        app,
        shutdown,
        tasks,
        work_dir,
    })
}
