//! Where a service's router runs: in a router process of its own (`hangar up`:
//! traffic outlives the controller) or in the controller (a library user such
//! as the tests of this crate, which have no `hangar` binary to start).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use hangar_router::daemon::{Link, Request, RouteSpec, ServiceSpec};
use hangar_router::metrics::InstanceGauge;
use hangar_router::tcp::Protocol;
use hangar_router::{Route, Router, RouterHandle, Snapshot, Table};

static ROUTER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Controllers opened from now on run their routers as `EXE __router --dir ENVDIR`
/// (the `hangar` binary), in a process that outlives them.
pub fn use_router_process(exe: PathBuf) {
    let _ = ROUTER_EXE.set(exe);
}

pub(crate) fn router_exe() -> Option<&'static Path> {
    ROUTER_EXE.get().map(PathBuf::as_path)
}

/// The router process itself (`hangar __router --dir ENVDIR`): serves until
/// `hangar down`, and restarts the environment's controller when it dies.
pub fn run_router(env_dir: &Path) -> anyhow::Result<()> {
    let dir = env_dir.to_path_buf();
    std::thread::spawn(move || supervise_controller(&dir));
    hangar_router::daemon::run(env_dir).with_context(|| format!("router of {}", env_dir.display()))
}

/// First wait before restarting a dead controller; doubled at each restart
/// that did not stay up for [`STAYED_UP`], up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const STAYED_UP: Duration = Duration::from_secs(60);

/// The waits between attempts of everything the environment's processes
/// retry by themselves (a dead controller or router restarted, a restarted
/// controller bringing its services up): 250 ms, doubled at each attempt, at
/// most 30 s.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }

    /// The wait before the next attempt (the one after waits twice as long).
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }

    /// The wait `next_wait` would give now.
    pub(crate) fn peek(&self) -> Duration {
        self.next
    }

    pub(crate) fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

/// The router process outlives the controller by design (it is the data
/// plane), so it is the one to notice that the controller died and to start
/// another, as a process supervisor would: with backoff, and only while
/// `controller.json` says a controller should run (a controller that stops as
/// asked removes it). The new controller finds the dead one's instances and
/// rollout in the state file, re-adopts them and applies the environment's
/// `on_interrupt`.
fn supervise_controller(env_dir: &Path) {
    use crate::state::EnvFiles;
    use crate::supervisor::{process_alive, process_start_time};
    let files = EnvFiles {
        dir: env_dir.to_path_buf(),
    };
    // The last controller started here (checked and replaced by two closures).
    let restarted: std::cell::RefCell<Option<std::process::Child>> = Default::default();
    supervise(
        "controller",
        || files.supervision().is_some(),
        || {
            let Some(sup) = files.supervision() else {
                return Up::Alive;
            };
            if process_alive(sup.pid) && process_start_time(sup.pid) == sup.start_time {
                return Up::Alive;
            }
            // One we started that is still starting (it writes controller.json
            // once it has opened the environment), or any controller holding it.
            let starting = restarted
                .borrow_mut()
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
                || files.controller_holds();
            if starting { Up::Starting } else { Up::Dead }
        },
        |_| {
            let Some(sup) = files.supervision() else {
                return Ok(());
            };
            eprintln!(
                "router: the controller of `{}` (pid {}) is gone; starting another",
                sup.env, sup.pid
            );
            *restarted.borrow_mut() = Some(start_detached(&sup, &files)?);
            Ok(())
        },
        || false,
    );
}

/// The controller's side of the mutual supervision: a router process that
/// died (`kill -9`, a crash) is started again on the same socket, where it
/// reloads `router.json` and so listens on the same addresses with the same
/// weights; connections are refused only while it is down. `restarted` is
/// told each time (with how long it was down); stops when `done`.
pub(crate) fn supervise_router(
    exe: &Path,
    env_dir: &Path,
    mut done: impl FnMut() -> bool,
    mut restarted: impl FnMut(u32, Duration),
) {
    let link = Link::new(env_dir);
    supervise(
        "router",
        || true,
        || {
            if link.ping().is_some() {
                Up::Alive
            } else {
                Up::Dead
            }
        },
        |down| {
            eprintln!(
                "controller: the router of {} does not answer; starting another",
                env_dir.display()
            );
            let (_, pid) = ensure_router_process(exe, env_dir).map_err(std::io::Error::other)?;
            restarted(pid, down);
            Ok(())
        },
        &mut done,
    );
}

/// Where a supervised process stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Up {
    Alive,
    /// Started and not answering yet: not restarted again meanwhile.
    Starting,
    Dead,
}

/// The one supervision loop of the environment's processes: the router
/// process restarts a dead controller with it, the controller a dead router.
/// Every 100 ms: while `wanted`, a process that is not `up` is started again
/// once it has been dead for the [`Backoff`]'s wait (250 ms, doubled after
/// each start up to 30 s, back to 250 ms once it stayed up for a minute).
/// `start` is given how long the process had been dead. Returns when `done`.
pub(crate) fn supervise(
    what: &str,
    mut wanted: impl FnMut() -> bool,
    mut up: impl FnMut() -> Up,
    mut start: impl FnMut(Duration) -> std::io::Result<()>,
    mut done: impl FnMut() -> bool,
) {
    let mut backoff = Backoff::new();
    let mut dead_since: Option<std::time::Instant> = None;
    let mut up_since = std::time::Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if done() {
            return;
        }
        if !wanted() {
            dead_since = None;
            continue;
        }
        match up() {
            Up::Alive => {
                if dead_since.take().is_some() {
                    up_since = std::time::Instant::now();
                }
                if up_since.elapsed() >= STAYED_UP {
                    backoff.reset();
                }
                continue;
            }
            Up::Starting => continue,
            Up::Dead => {}
        }
        let since = *dead_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < backoff.peek() {
            continue;
        }
        // Asked to stop while it was found dead: not started again.
        if done() || !wanted() {
            continue;
        }
        if let Err(e) = start(since.elapsed()) {
            eprintln!("cannot restart the {what}: {e}");
        }
        dead_since = Some(std::time::Instant::now());
        backoff.next_wait();
    }
}

/// `EXE up ENV --dir DIR --data DATA --no-build` in a session of its own,
/// logging to `controller.log`, as `hangar deploy` starts a controller.
#[allow(unsafe_code)] // pre_exec: setsid(2) has no safe wrapper in std.
fn start_detached(
    sup: &crate::state::Supervision,
    files: &crate::state::EnvFiles,
) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.dir.join("controller.log"))?;
    let mut cmd = std::process::Command::new(&sup.exe);
    cmd.args(["up", &sup.env, "--controller", "--no-build", "--dir"])
        .arg(&sup.dir)
        .arg("--data")
        .arg(&sup.data)
        .env_remove("RUNNER_TRACKING_ID")
        .current_dir(&sup.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Connects to the environment's router process, starting it when none answers.
/// A running one keeps its tables: that is what served traffic while no controller ran.
#[allow(unsafe_code)] // pre_exec: setsid(2) has no safe wrapper in std.
pub(crate) fn ensure_router_process(exe: &Path, env_dir: &Path) -> anyhow::Result<(Link, u32)> {
    use std::os::unix::process::CommandExt;
    // The router runs in the environment's directory: a relative path given
    // to it (`--dir ./.hangar/envs/prod`) would name a directory below that.
    let env_dir = &std::path::absolute(env_dir)?;
    let link = Link::new(env_dir);
    if let Some(pid) = link.ping() {
        return Ok((link, pid));
    }
    std::fs::create_dir_all(env_dir)?;
    let log_path = env_dir.join("router.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__router")
        .arg("--dir")
        .arg(env_dir)
        // Not one of a workflow job's processes (see `control::start_controller`).
        .env_remove("RUNNER_TRACKING_ID")
        .current_dir(env_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // A session of its own: neither the terminal's Ctrl-C nor a kill of the
    // controller's process group reaches the data plane.
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start the router ({})", exe.display()))?;
    for _ in 0..500 {
        if let Some(pid) = link.ping() {
            // Reaped when it exits, without blocking: it may outlive us by design.
            std::thread::spawn(move || child.wait());
            return Ok((link, pid));
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(anyhow!("the router exited ({status}): {}", log.trim()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(anyhow!(
        "the router did not answer on its socket within 5 s (see {})",
        log_path.display()
    ))
}

/// How long a scrape waits for one environment's router: a router answers a
/// `Series` request in microseconds, so one that has not answered within this
/// is stopped, hung or swamped, and is reported down rather than holding the
/// whole scrape (Prometheus gives up on a target after 10 s by default).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// The routers' measurements of every environment under each data directory
/// (`(source, data)`: `source` names the project, as the DORA gauges do), as
/// one OpenMetrics block for `hangar serve`'s `/metrics`: each environment's
/// router process is asked over its control socket (a few microseconds of
/// its time, no file read), all at once, each for at most
/// [`SCRAPE_TIMEOUT`]; its series are labelled `source` in front of `env`,
/// `service` and `version`. Every environment with a router socket gets
/// `hangar_router_up` (1 when its router answered, 0 when it did not: its
/// series are then absent, not stale, as Prometheus' own `up` reports a
/// target). An environment whose router was stopped (`hangar down` removes
/// the socket) has no series. The caller ends the exposition (`# EOF`).
pub fn routers_openmetrics(sources: &[(String, PathBuf)]) -> String {
    use hangar_router::metrics::{Format, Series, escape_label, render_series};
    use std::fmt::Write as _;
    let mut targets: Vec<(&str, String, PathBuf)> = Vec::new();
    for (source, data) in sources {
        let Ok(envs) = std::fs::read_dir(data.join("envs")) else {
            continue;
        };
        let mut envs: Vec<(String, PathBuf)> = envs
            .flatten()
            .filter(|e| e.path().join(hangar_router::daemon::SOCKET).exists())
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect();
        envs.sort();
        targets.extend(
            envs.into_iter()
                .map(|(env, dir)| (source.as_str(), env, dir)),
        );
    }
    if targets.is_empty() {
        return String::new();
    }
    // One thread per router: a scrape takes as long as the slowest router
    // within the timeout, not the sum of them.
    let answers: Vec<Option<Vec<Series>>> = std::thread::scope(|scope| {
        let asks: Vec<_> = targets
            .iter()
            .map(|(_, env, dir)| {
                scope.spawn(move || {
                    let answer = Link::new(dir)
                        .call_within(&Request::Series { env: env.clone() }, SCRAPE_TIMEOUT)
                        .ok()?;
                    serde_json::from_value::<Vec<Series>>(answer).ok()
                })
            })
            .collect();
        asks.into_iter()
            .map(|ask| ask.join().ok().flatten())
            .collect()
    });
    let mut all: Vec<Series> = Vec::new();
    let mut up = String::from(
        "# HELP hangar_router_up Whether the environment's router answered this scrape (0: stopped, hung or gone; its series are left out).\n# TYPE hangar_router_up gauge\n",
    );
    for ((source, env, _), answer) in targets.iter().zip(answers) {
        let _ = writeln!(
            up,
            "hangar_router_up{{source=\"{}\",env=\"{}\"}} {}",
            escape_label(source),
            escape_label(env),
            u8::from(answer.is_some())
        );
        for mut s in answer.unwrap_or_default() {
            s.labels.insert(0, ("source".into(), source.to_string()));
            all.push(s);
        }
    }
    let mut out = render_series(&all, Format::OpenMetrics);
    out.push_str(&up);
    out
}

/// Stops the environment's router process when one answers (`hangar down`),
/// and waits (at most 5 s) until that process is gone: the router answers
/// before it exits, and `down` must not return while it is still exiting
/// (a script that reuses the port right after would find it taken).
pub(crate) fn stop_router_process(env_dir: &Path) -> bool {
    let link = Link::new(env_dir);
    let pid = link.ping();
    if link.call(&Request::Stop).is_err() {
        return false;
    }
    if let Some(pid) = pid {
        let t0 = std::time::Instant::now();
        while crate::supervisor::process_alive(pid) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    true
}

/// One service's router.
pub(crate) enum Plane {
    Local {
        router: Arc<Router>,
        handle: RouterHandle,
        protocol: Protocol,
    },
    Remote {
        link: Link,
        service: String,
        addr: SocketAddr,
        protocol: Protocol,
    },
}

impl Plane {
    /// `replacing`: this service's previous listener was just stopped (see
    /// `Router::serve_protocol`).
    pub(crate) fn local(
        svc: &str,
        addr: SocketAddr,
        protocol: Protocol,
        replacing: bool,
    ) -> anyhow::Result<Plane> {
        let router = Router::new(svc);
        // The router runs on threads of its own (one event loop each), not on
        // the controller's runtime: see `Router::serve_threads`.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let served = router.serve_protocol(addr, protocol, threads, replacing);
        let handle = match served {
            Ok(h) => h,
            Err(e) => match taken(svc, addr) {
                Some(why) => return Err(anyhow!(why)),
                None => {
                    return Err(
                        anyhow!(e).context(format!("service `{svc}`: cannot listen on {addr}"))
                    );
                }
            },
        };
        Ok(Plane::Local {
            router,
            handle,
            protocol,
        })
    }

    pub(crate) fn remote(
        link: Link,
        svc: &str,
        listen: SocketAddr,
        protocol: Protocol,
    ) -> anyhow::Result<Plane> {
        let answer = link
            .call(&Request::Listen {
                service: svc.to_string(),
                listen,
                protocol,
            })
            .map_err(|e| match taken(svc, listen) {
                Some(why) => anyhow!(why),
                // The router's error names the service and the address.
                None => anyhow!("{e}"),
            })?;
        let addr = answer
            .get("addr")
            .and_then(|a| a.as_str())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("service `{svc}`: the router answered {answer}"))?;
        Ok(Plane::Remote {
            link,
            service: svc.to_string(),
            addr,
            protocol,
        })
    }

    /// Stops accepting on the service's address (its router is about to be
    /// replaced). The router process replaces its own listener when told the
    /// new one, so only an in-process router is stopped here.
    pub(crate) fn stop_listening(&self) {
        if let Plane::Local { handle, .. } = self {
            handle.stop();
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        match self {
            Plane::Local { protocol, .. } | Plane::Remote { protocol, .. } => *protocol,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            Plane::Local { handle, .. } => handle.addr,
            Plane::Remote { addr, .. } => *addr,
        }
    }

    /// Replaces the table: (version, weight, healthy instances) per route.
    pub(crate) fn set(
        &self,
        routes: Vec<(String, u32, Vec<SocketAddr>)>,
        retry_on_stable: Option<(String, String)>,
    ) {
        match self {
            Plane::Local { router, .. } => router.set_table(Table {
                routes: routes
                    .into_iter()
                    .map(|(version, weight, addrs)| Route {
                        version,
                        weight,
                        backends: addrs.into_iter().map(|a| router.backend(a)).collect(),
                    })
                    .collect(),
                retry_on_stable,
            }),
            Plane::Remote {
                link,
                service,
                addr,
                protocol,
            } => {
                let spec = ServiceSpec {
                    listen: *addr,
                    protocol: *protocol,
                    routes: routes
                        .into_iter()
                        .map(|(version, weight, backends)| RouteSpec {
                            version,
                            weight,
                            backends,
                        })
                        .collect(),
                    retry_on_stable,
                };
                if let Err(e) = link.call(&Request::Set {
                    service: service.clone(),
                    spec,
                }) {
                    tracing::error!("service `{service}`: the router did not take its table: {e}");
                }
            }
        }
    }

    /// The weights the router serves now, per version (`None` when it
    /// cannot say: an in-process router starts with the controller).
    pub(crate) fn weights(&self) -> Option<Vec<(String, u32)>> {
        match self {
            Plane::Local { .. } => None,
            Plane::Remote { link, service, .. } => {
                let v = link
                    .call(&Request::Table {
                        service: service.clone(),
                    })
                    .ok()?;
                let spec: Option<ServiceSpec> = serde_json::from_value(v).ok()?;
                Some(
                    spec?
                        .routes
                        .into_iter()
                        .map(|r| (r.version, r.weight))
                        .collect(),
                )
            }
        }
    }

    pub(crate) fn inflight(&self, addrs: &[SocketAddr]) -> usize {
        match self {
            Plane::Local { router, .. } => addrs.iter().map(|a| router.inflight(*a)).sum(),
            Plane::Remote { link, service, .. } => link
                .call(&Request::Inflight {
                    service: service.clone(),
                    addrs: addrs.to_vec(),
                })
                .ok()
                .and_then(|v| v.get("inflight")?.as_u64())
                .unwrap_or(0) as usize,
        }
    }

    /// What the controller knows of the instances, for the router's `/metrics`.
    pub(crate) fn set_instances(&self, gauges: Vec<InstanceGauge>) {
        match self {
            Plane::Local { router, .. } => router.set_instance_gauges(gauges),
            Plane::Remote { link, service, .. } => {
                if let Err(e) = link.call(&Request::Instances {
                    service: service.clone(),
                    instances: gauges,
                }) {
                    tracing::debug!("service `{service}`: instance counts not sent: {e}");
                }
            }
        }
    }

    pub(crate) fn local_router(&self) -> Option<Arc<Router>> {
        match self {
            Plane::Local { router, .. } => Some(router.clone()),
            Plane::Remote { .. } => None,
        }
    }

    pub(crate) fn snapshot(&self, version: &str) -> Snapshot {
        match self {
            Plane::Local { router, .. } => router.stats(version).snapshot(),
            Plane::Remote { link, service, .. } => link
                .call(&Request::Stats {
                    service: service.clone(),
                    version: version.to_string(),
                })
                .ok()
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
        }
    }
}

/// When `addr` cannot be bound because something listens there: says who
/// (another hangar environment's router, or a process by pid and command
/// line, or another user's process) and what to do.
pub(crate) fn taken(svc: &str, addr: SocketAddr) -> Option<String> {
    match std::net::TcpListener::bind(addr) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        _ => return None,
    }
    let holder = listener_pid(addr.port());
    let cmdline = holder.and_then(|pid| {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        Some(
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>(),
        )
    });
    let router_of = cmdline.as_ref().and_then(|args| {
        if !args.iter().any(|a| a == "__router") {
            return None;
        }
        let dir = args
            .iter()
            .position(|a| a == "--dir")
            .and_then(|i| args.get(i + 1))?;
        let dir = Path::new(dir);
        let env = dir.file_name()?.to_string_lossy().into_owned();
        // ENVDIR is DATA/envs/ENV, DATA usually PROJECT/.hangar.
        let project = dir
            .parent()
            .and_then(Path::parent)
            .map(|d| {
                if d.file_name().is_some_and(|n| n == ".hangar") {
                    d.parent().unwrap_or(d)
                } else {
                    d
                }
            })
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        Some((env, project))
    });
    Some(match (holder, router_of, cmdline) {
        (Some(pid), Some((env, project)), _) => format!(
            "service `{svc}`: {addr} is already served by hangar environment `{env}` of {project} (its router, pid {pid}); give `{svc}` another `listen` address in this environment, or stop that one (`hangar down {env}` there)"
        ),
        (Some(pid), None, Some(args)) => format!(
            "service `{svc}`: {addr} is already in use by process {pid} (`{}`); stop it, or give `{svc}` another `listen` address in hangar.yml",
            args.join(" ")
        ),
        _ => format!(
            "service `{svc}`: {addr} is already in use by another process (of another user, or gone since); give `{svc}` another `listen` address in hangar.yml"
        ),
    })
}

/// The pid of a process of this user with a TCP socket listening on `port`
/// (from /proc/net/tcp{,6} and the processes' file descriptors).
fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXADDR:HEXPORT; state 0A is LISTEN; inode is field 9.
            let listening = f.get(3) == Some(&"0A");
            let on_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening
                && on_port
                && let Some(inode) = f.get(9)
            {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}
