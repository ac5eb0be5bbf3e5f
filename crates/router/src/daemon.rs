//! The router as a process of its own: the data plane of one environment.
//!
//! The controller (control plane) decides weights; this process only serves
//! them, so traffic does not depend on the controller being alive. As
//! kamal-proxy keeps serving while Kamal runs and reloads its last routes from
//! a state file when it restarts, this process keeps the last table it was
//! given while no controller runs, and writes every table it is given to
//! `router.json` (atomically) so that a restarted router serves the same
//! weights before any controller speaks to it.
//!
//! The control channel is a Unix socket (`router.sock`, in the environment's
//! directory, which only its owner can enter): one JSON request per line, one
//! JSON answer per line. It is never on the request path: a request served by
//! the router touches neither the socket nor the file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::{InstanceGauge, MetricsServer};
use crate::tcp::Protocol;
use crate::{Route, Router, RouterHandle, Table};

/// The socket's file name in the environment's directory.
pub const SOCKET: &str = "router.sock";
/// The last tables, as the router serves them.
pub const STATE: &str = "router.json";

/// One service's listener and table, as the controller sends it and the state file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub listen: SocketAddr,
    /// HTTP (the default, and what a state file of an older router holds) or raw TCP.
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub retry_on_stable: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub version: String,
    pub weight: u32,
    pub backends: Vec<SocketAddr>,
}

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Answers the router's pid.
    Ping,
    /// Serves `service` on `listen` unless it already does; its table is kept
    /// (a restarted controller must not blank what is being served).
    Listen {
        service: String,
        listen: SocketAddr,
        #[serde(default)]
        protocol: Protocol,
    },
    /// Replaces `service`'s table (binding its listener first when needed).
    Set { service: String, spec: ServiceSpec },
    /// `service`'s counters for `version`.
    Stats { service: String, version: String },
    /// `service`'s table as served now (`null` when it is not served): what
    /// a restarted controller keeps while it re-adopts the instances.
    Table { service: String },
    /// Requests in flight to these instances.
    Inflight {
        service: String,
        addrs: Vec<SocketAddr>,
    },
    /// Serves the environment's measurements in Prometheus' format on
    /// `listen` (`GET /metrics`), or stops serving them (`None`).
    Metrics {
        env: String,
        listen: Option<SocketAddr>,
    },
    /// Every service's series (`metrics::Series`), labelled with `env`: what
    /// `hangar serve` merges into its own `/metrics`, with no listener needed.
    Series { env: String },
    /// What the controller knows of `service`'s instances, for `/metrics`.
    Instances {
        service: String,
        instances: Vec<InstanceGauge>,
    },
    /// Stops serving, forgets the tables and exits (`hangar down`).
    Stop,
}

struct Served {
    router: Arc<Router>,
    handle: RouterHandle,
    spec: ServiceSpec,
}

struct Daemon {
    dir: PathBuf,
    services: Mutex<BTreeMap<String, Served>>,
    /// The metrics listener, when the environment has `metrics_listen`.
    metrics: Mutex<Option<MetricsServer>>,
}

/// Runs the router of the environment whose directory is `dir` until asked to
/// stop. Returns an error when another router already answers there.
pub fn run(dir: &Path) -> std::io::Result<()> {
    let socket = dir.join(SOCKET);
    if UnixStream::connect(&socket).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("a router already answers on {}", socket.display()),
        ));
    }
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    let daemon = Arc::new(Daemon {
        dir: dir.to_path_buf(),
        services: Mutex::default(),
        metrics: Mutex::default(),
    });
    // The last tables first: traffic resumes with the weights it had.
    let saved: BTreeMap<String, ServiceSpec> = std::fs::read(dir.join(STATE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for (service, spec) in saved {
        if let Err(e) = daemon.set(&service, spec) {
            eprintln!("router: {service}: {e}");
        }
    }
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let daemon = daemon.clone();
        std::thread::spawn(move || daemon.session(conn));
    }
    Ok(())
}

impl Daemon {
    fn session(self: &Arc<Self>, conn: UnixStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
        let Ok(mut out) = conn.try_clone() else {
            return;
        };
        for line in BufReader::new(conn).lines() {
            let Ok(line) = line else { return };
            let (answer, stop) = match serde_json::from_str::<Request>(&line) {
                Ok(Request::Stop) => (serde_json::json!({ "ok": true }), true),
                Ok(req) => (
                    self.handle(req)
                        .unwrap_or_else(|e| serde_json::json!({ "error": e })),
                    false,
                ),
                Err(e) => (
                    serde_json::json!({ "error": format!("bad request: {e}") }),
                    false,
                ),
            };
            if stop {
                self.stop();
            }
            if writeln!(out, "{answer}").is_err() {
                return;
            }
            if stop {
                let _ = out.flush();
                std::process::exit(0);
            }
        }
    }

    fn handle(self: &Arc<Self>, req: Request) -> Result<serde_json::Value, String> {
        match req {
            Request::Ping => Ok(serde_json::json!({ "pid": std::process::id() })),
            Request::Listen {
                service,
                listen,
                protocol,
            } => {
                let existing = self.lock().get(&service).map(|s| s.spec.clone());
                let spec = match existing {
                    // A changed `protocol:` on the same address keeps the
                    // table: the instances are the same, only the listener
                    // in front of them is replaced.
                    Some(spec) if spec.listen == listen || listen.port() == 0 => {
                        ServiceSpec { protocol, ..spec }
                    }
                    _ => ServiceSpec {
                        listen,
                        protocol,
                        routes: Vec::new(),
                        retry_on_stable: None,
                    },
                };
                let addr = self.set(&service, spec)?;
                Ok(serde_json::json!({ "addr": addr }))
            }
            Request::Set { service, spec } => {
                let addr = self.set(&service, spec)?;
                Ok(serde_json::json!({ "addr": addr }))
            }
            Request::Stats { service, version } => {
                let services = self.lock();
                let snap = services
                    .get(&service)
                    .map(|s| s.router.stats(&version).snapshot())
                    .unwrap_or_default();
                serde_json::to_value(snap).map_err(|e| e.to_string())
            }
            Request::Table { service } => {
                let services = self.lock();
                serde_json::to_value(services.get(&service).map(|s| &s.spec))
                    .map_err(|e| e.to_string())
            }
            Request::Inflight { service, addrs } => {
                let services = self.lock();
                let n: usize = services
                    .get(&service)
                    .map(|s| addrs.iter().map(|a| s.router.inflight(*a)).sum())
                    .unwrap_or(0);
                Ok(serde_json::json!({ "inflight": n }))
            }
            Request::Metrics { env, listen } => {
                let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
                let same = |m: &MetricsServer| {
                    listen.is_some_and(|l| l == m.addr || (l.port() == 0 && l.ip() == m.addr.ip()))
                };
                if metrics.as_ref().is_some_and(|m| !same(m)) {
                    // Dropping it closes the listener before the new one binds.
                    *metrics = None;
                }
                if let Some(listen) = listen
                    && metrics.is_none()
                {
                    // A weak reference: the listener must not keep a stopped daemon alive.
                    let daemon = Arc::downgrade(self);
                    let render: crate::metrics::Render = Arc::new(move || {
                        let Some(daemon) = daemon.upgrade() else {
                            return String::new();
                        };
                        let services = daemon.lock();
                        let list: Vec<(&str, &Router)> = services
                            .iter()
                            .map(|(name, s)| (name.as_str(), &*s.router))
                            .collect();
                        crate::metrics::render(&env, &list)
                    });
                    *metrics = Some(
                        crate::metrics::serve(listen, render)
                            .map_err(|e| format!("metrics: cannot listen on {listen}: {e}"))?,
                    );
                }
                Ok(serde_json::json!({ "addr": metrics.as_ref().map(|m| m.addr) }))
            }
            Request::Series { env } => {
                let services = self.lock();
                let list: Vec<(&str, &Router)> = services
                    .iter()
                    .map(|(name, s)| (name.as_str(), &*s.router))
                    .collect();
                serde_json::to_value(crate::metrics::series(&env, &list)).map_err(|e| e.to_string())
            }
            Request::Instances { service, instances } => {
                if let Some(s) = self.lock().get(&service) {
                    s.router.set_instance_gauges(instances);
                }
                Ok(serde_json::json!({ "ok": true }))
            }
            Request::Stop => Ok(serde_json::json!({ "ok": true })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Served>> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `spec` for `service` (binding when its address changed) and
    /// persists every table before answering, so that what the controller was
    /// told is applied is also what a restarted router serves.
    fn set(&self, service: &str, spec: ServiceSpec) -> Result<SocketAddr, String> {
        let mut services = self.lock();
        let bound = services.get(service).is_some_and(|s| {
            (s.spec.listen == spec.listen || s.handle.addr == spec.listen)
                && s.spec.protocol == spec.protocol
        });
        if !bound {
            let replacing = match services.remove(service) {
                Some(old) => {
                    old.handle.stop();
                    true
                }
                None => false,
            };
            let router = Router::new(service);
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
            let served = router.serve_protocol(spec.listen, spec.protocol, threads, replacing);
            let handle = served.map_err(|e| {
                format!("service `{service}`: cannot listen on {}: {e}", spec.listen)
            })?;
            services.insert(
                service.to_string(),
                Served {
                    router,
                    handle,
                    spec: spec.clone(),
                },
            );
        }
        let Some(served) = services.get_mut(service) else {
            return Err(format!("service `{service}` is not served"));
        };
        let table = Table {
            routes: spec
                .routes
                .iter()
                .map(|r| Route {
                    version: r.version.clone(),
                    weight: r.weight,
                    backends: r
                        .backends
                        .iter()
                        .map(|a| served.router.backend(*a))
                        .collect(),
                })
                .collect(),
            retry_on_stable: spec.retry_on_stable.clone(),
        };
        served.router.set_table(table);
        // The bound address is what is kept: a `:0` listener comes back on the same port.
        served.spec = ServiceSpec {
            listen: served.handle.addr,
            ..spec
        };
        let addr = served.handle.addr;
        let all: BTreeMap<&String, &ServiceSpec> =
            services.iter().map(|(k, v)| (k, &v.spec)).collect();
        persist(&self.dir.join(STATE), &all).map_err(|e| format!("saving the tables: {e}"))?;
        Ok(addr)
    }

    fn stop(&self) {
        let services = self.lock();
        for s in services.values() {
            s.handle.stop();
        }
        let _ = std::fs::remove_file(self.dir.join(STATE));
        let _ = std::fs::remove_file(self.dir.join(SOCKET));
    }
}

/// Written whole or not at all: a router killed while saving leaves the previous tables.
fn persist(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(value)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The controller's end of the control socket.
#[derive(Debug, Clone)]
pub struct Link {
    socket: PathBuf,
}

impl Link {
    pub fn new(dir: &Path) -> Link {
        Link {
            socket: dir.join(SOCKET),
        }
    }

    /// Sends one request and reads its answer (a local socket: well under a millisecond).
    pub fn call(&self, req: &Request) -> Result<serde_json::Value, String> {
        let conn = UnixStream::connect(&self.socket)
            .map_err(|e| format!("router socket {}: {e}", self.socket.display()))?;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        self.exchange(conn, req)
    }

    /// [`Link::call`] for a reader that must not wait on a router that is
    /// stopped, hung or swamped (a scrape): the connection is made without
    /// blocking (a router that accepts nothing fills its socket's backlog,
    /// where a blocking connect would wait), and writing the request and
    /// reading the answer each get at most `timeout`.
    pub fn call_within(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        let conn: UnixStream = mio::net::UnixStream::connect(&self.socket)
            .map_err(|e| format!("router socket {}: {e}", self.socket.display()))?
            .into();
        let setup = conn
            .set_nonblocking(false)
            .and_then(|()| conn.set_read_timeout(Some(timeout)))
            .and_then(|()| conn.set_write_timeout(Some(timeout)));
        setup.map_err(|e| format!("router socket: {e}"))?;
        self.exchange(conn, req)
    }

    fn exchange(&self, mut conn: UnixStream, req: &Request) -> Result<serde_json::Value, String> {
        let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
        line.push('\n');
        conn.write_all(line.as_bytes())
            .map_err(|e| format!("router socket: {e}"))?;
        let mut answer = String::new();
        BufReader::new(conn)
            .read_line(&mut answer)
            .map_err(|e| format!("router socket: {e}"))?;
        let v: serde_json::Value = serde_json::from_str(&answer)
            .map_err(|e| format!("router answered `{answer}`: {e}"))?;
        match v.get("error").and_then(|e| e.as_str()) {
            Some(e) => Err(e.to_string()),
            None => Ok(v),
        }
    }

    /// The router's pid when one answers.
    pub fn ping(&self) -> Option<u32> {
        self.call(&Request::Ping)
            .ok()?
            .get("pid")?
            .as_u64()
            .map(|p| p as u32)
    }
}
