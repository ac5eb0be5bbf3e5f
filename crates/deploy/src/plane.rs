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

/// The router process itself (`hangar __router --dir ENVDIR`): serves until `hangar down`.
pub fn run_router(env_dir: &Path) -> anyhow::Result<()> {
    hangar_router::daemon::run(env_dir).with_context(|| format!("router of {}", env_dir.display()))
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

/// Stops the environment's router process when one answers (`hangar down`).
pub(crate) fn stop_router_process(env_dir: &Path) -> bool {
    Link::new(env_dir).call(&Request::Stop).is_ok()
}

/// One service's router.
pub(crate) enum Plane {
    Local {
        router: Arc<Router>,
        handle: RouterHandle,
    },
    Remote {
        link: Link,
        service: String,
        addr: SocketAddr,
    },
}

impl Plane {
    pub(crate) fn local(svc: &str, addr: SocketAddr) -> anyhow::Result<Plane> {
        let router = Router::new(svc);
        // The router runs on threads of its own (one event loop each), not on
        // the controller's runtime: see `Router::serve_threads`.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let handle = router
            .serve_threads(addr, threads)
            .with_context(|| format!("service `{svc}`: cannot listen on {addr}"))?;
        Ok(Plane::Local { router, handle })
    }

    pub(crate) fn remote(link: Link, svc: &str, listen: SocketAddr) -> anyhow::Result<Plane> {
        let answer = link
            .call(&Request::Listen {
                service: svc.to_string(),
                listen,
            })
            .map_err(|e| anyhow!("service `{svc}`: {e}"))?;
        let addr = answer
            .get("addr")
            .and_then(|a| a.as_str())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("service `{svc}`: the router answered {answer}"))?;
        Ok(Plane::Remote {
            link,
            service: svc.to_string(),
            addr,
        })
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
            } => {
                let spec = ServiceSpec {
                    listen: *addr,
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
