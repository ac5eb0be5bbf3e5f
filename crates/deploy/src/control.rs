//! The control socket: a running controller (`hangar up`) listens on a Unix socket
//! in the environment's directory; `hangar deploy|promote|abort|rollback|status|down`
//! connect to it, send one JSON request line, and read JSON lines back: progress
//! events, then one result. Unix permissions on the data directory guard it.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::controller::{Controller, DeployRequest, Signal};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Deploy {
        service: Option<String>,
        artifact: Option<String>,
        commit: Option<String>,
        commit_time: Option<u64>,
        no_build: bool,
        /// Build `commit` itself rather than the working tree (`--ref`).
        #[serde(default)]
        from_commit: bool,
        /// Also the services the environment's `services:` depend on.
        #[serde(default)]
        with_dependencies: bool,
    },
    Promote,
    Abort,
    Rollback {
        service: Option<String>,
        to: Option<String>,
    },
    Status,
    Down,
}

/// One line of an answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    Event(String),
    Result(serde_json::Value),
    Error(String),
}

/// Serves requests until `down` (then returns).
pub async fn serve(ctl: Arc<Controller>, socket: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(socket);
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(socket)?;
    let (down_tx, mut down_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let ctl = ctl.clone();
                let down = down_tx.clone();
                tokio::spawn(async move { let _ = handle(ctl, stream, down).await; });
            }
            _ = down_rx.recv() => {
                let _ = std::fs::remove_file(socket);
                return Ok(());
            }
        }
    }
}

async fn handle(
    ctl: Arc<Controller>,
    stream: UnixStream,
    down: tokio::sync::mpsc::Sender<()>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => return send(&mut write, &Reply::Error(format!("bad request: {e}"))).await,
    };
    let mut events = ctl.subscribe();
    let work = {
        let ctl = ctl.clone();
        async move {
            let json = |v: anyhow::Result<serde_json::Value>| match v {
                Ok(v) => Reply::Result(v),
                Err(e) => Reply::Error(format!("{e:#}")),
            };
            match req {
                Request::Deploy {
                    service,
                    artifact,
                    commit,
                    commit_time,
                    no_build,
                    from_commit,
                    with_dependencies,
                } => json(
                    ctl.deploy(DeployRequest {
                        service,
                        artifact: artifact.map(Into::into),
                        commit: commit.map(|c| (c, commit_time.unwrap_or(0))),
                        no_build,
                        from_commit,
                        with_dependencies,
                    })
                    .await
                    .and_then(|r| Ok(serde_json::to_value(r)?)),
                ),
                Request::Promote => json(
                    ctl.signal(Signal::Promote)
                        .map(|_| serde_json::json!("promoted")),
                ),
                Request::Abort => json(
                    ctl.signal(Signal::Abort)
                        .map(|_| serde_json::json!("aborting")),
                ),
                Request::Rollback { service, to } => json(
                    ctl.rollback(service.as_deref(), to.as_deref())
                        .await
                        .and_then(|r| Ok(serde_json::to_value(r)?)),
                ),
                Request::Status => json(Ok(serde_json::to_value(ctl.status()).unwrap_or_default())),
                Request::Down => {
                    ctl.shutdown().await;
                    let _ = down.send(()).await;
                    Reply::Result(serde_json::json!("stopped"))
                }
            }
        }
    };
    tokio::pin!(work);
    loop {
        tokio::select! {
            reply = &mut work => {
                while let Ok(e) = events.try_recv() {
                    send(&mut write, &Reply::Event(e)).await?;
                }
                return send(&mut write, &reply).await;
            }
            Ok(e) = events.recv() => send(&mut write, &Reply::Event(e)).await?,
        }
    }
}

async fn send(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r)?;
    line.push(b'\n');
    w.write_all(&line).await
}

/// Client side: sends a request and calls `on_event` for each progress line.
pub async fn call(
    socket: &Path,
    req: &Request,
    mut on_event: impl FnMut(&str),
) -> anyhow::Result<serde_json::Value> {
    let stream = UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(l) = lines.next_line().await? {
        match serde_json::from_str::<Reply>(&l)? {
            Reply::Event(e) => on_event(&e),
            Reply::Result(v) => return Ok(v),
            Reply::Error(e) => anyhow::bail!("{e}"),
        }
    }
    anyhow::bail!("the controller closed the connection without an answer")
}

/// Whether a controller answers on `socket`.
pub async fn running(socket: &Path) -> bool {
    UnixStream::connect(socket).await.is_ok()
}

/// Where the first release of services with none comes from, for a
/// controller started by a deployment.
#[derive(Debug, Default, Clone)]
pub struct FirstRelease {
    /// A commit to build (`hangar deploy --ref`).
    pub git_ref: Option<String>,
    pub artifact: Option<std::path::PathBuf>,
    /// Start the dependencies the environment's `services:` leaves out too.
    pub with_dependencies: bool,
}

/// Starts `EXE up --env ENV` detached (its own process group, logging to the
/// environment's directory) and waits until its socket answers. Returns its pid.
pub async fn start_controller(
    exe: &Path,
    dir: &Path,
    data: &Path,
    env: &str,
    no_build: bool,
    first: &FirstRelease,
) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let files = crate::state::EnvFiles::new(data, env);
    std::fs::create_dir_all(&files.dir)?;
    let log_path = files.dir.join("controller.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let logged = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["up", env, "--controller", "--dir"])
        .arg(dir)
        .arg("--data")
        .arg(data)
        // A controller started by a workflow step (`hangar/deploy@v1`) runs the
        // environment after the job ends: it is not one of the job's
        // processes, which the job's orphan clean-up finds by this variable
        // (GitHub's runner spares a process the same way).
        .env_remove("RUNNER_TRACKING_ID");
    if no_build {
        cmd.arg("--no-build");
    }
    if let Some(r) = &first.git_ref {
        cmd.arg("--ref").arg(r);
    }
    if let Some(a) = &first.artifact {
        cmd.arg("--artifact").arg(a);
    }
    if first.with_dependencies {
        cmd.arg("--with-dependencies");
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start the controller of `{env}`: {e}"))?;
    let pid = child.id();
    for _ in 0..1200 {
        if running(&files.socket()).await {
            // Reap it when it exits some day, without blocking: it outlives us by design.
            std::thread::spawn(move || child.wait());
            return Ok(pid);
        }
        if let Some(status) = child.try_wait()?
            // Another controller got the environment first (the router
            // restarting a dead one): it answers soon.
            && !files.controller_holds()
        {
            // What this start wrote, not an earlier one's errors.
            let log = std::fs::read(&log_path).unwrap_or_default();
            let log = String::from_utf8_lossy(log.get(logged as usize..).unwrap_or_default());
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            anyhow::bail!(
                "the controller of `{env}` exited ({status}):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "the controller of `{env}` did not come up in 120 s; see {}",
        log_path.display()
    )
}
