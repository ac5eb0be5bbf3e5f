//! hangar's HTTP reverse proxy: weighted, sticky routing between versions of a
//! service, connection draining and per-version metrics.
//!
//! One [`Router`] serves one environment service on one listener. The routing
//! table is swapped atomically ([`arc_swap`]), so a blue-green switch or a
//! canary weight change takes effect for the next request with no lock on the
//! request path. Requests already in flight finish on the instance they reached
//! (draining); [`Router::inflight`] tells the supervisor when an instance is idle.
//!
//! Retries happen only when a request never reached an instance (connection
//! refused or reset before any byte of answer), and — when the table says so —
//! an idempotent request that failed on the canary is retried on the stable
//! version, still counted against the canary.

pub mod daemon;
mod fast;
pub mod metrics;
mod pool;
mod stats;
mod sweep;
pub mod tcp;

pub use stats::{Snapshot, Summary, VersionStats};
pub use sweep::ClientTimeouts;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pool::{Local, Pool, SendError};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpListener;

/// The cookie that pins a client to one version during a rollout.
pub const STICKY_COOKIE: &str = "hangar_version";
/// Response header naming the version that answered (for clients and tests).
pub const VERSION_HEADER: &str = "x-hangar-version";
/// The largest request body either HTTP path takes (nginx's
/// `client_max_body_size`, 413 beyond it). The hyper path buffers bodies up
/// to it (so a request can be retried); the fast path streams them and
/// refuses a Content-Length over it before forwarding anything, and a chunked
/// body that grows past it as soon as it does.
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;

/// An answer: the instance's body streamed through, or the router's own
/// message. An enum, not a boxed body: one allocation less per request.
type Body = Either<Incoming, Full<Bytes>>;

/// One instance's address, with the count of requests it is serving now.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    inflight: AtomicUsize,
    /// hyper's connections (for the requests the fast path leaves to hyper).
    pool: Arc<Pool>,
    /// The fast path's connections.
    idle: fast::Idle,
}

impl Backend {
    pub fn new(addr: SocketAddr) -> Arc<Backend> {
        Arc::new(Backend {
            addr,
            inflight: AtomicUsize::new(0),
            pool: Arc::default(),
            idle: fast::Idle::default(),
        })
    }
}

/// A version's share of traffic and its healthy instances.
#[derive(Debug, Clone)]
pub struct Route {
    pub version: String,
    /// Relative weight; 0 receives no new clients (but keeps sticky ones if it has instances).
    pub weight: u32,
    pub backends: Vec<Arc<Backend>>,
}

/// The whole routing state, replaced atomically.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub routes: Vec<Route>,
    /// Retry idempotent requests that fail (5xx) on `canary` once on `stable`.
    pub retry_on_stable: Option<(String, String)>,
}

impl Table {
    /// Every request to `version`, served by `instances` of `router`: what a
    /// service with one version running routes.
    pub fn one_version(router: &Router, version: &str, instances: &[SocketAddr]) -> Table {
        Table {
            routes: vec![Route {
                version: version.into(),
                weight: 100,
                backends: instances.iter().map(|a| router.backend(*a)).collect(),
            }],
            retry_on_stable: None,
        }
    }
}

struct RouteRt {
    route: Route,
    stats: Arc<VersionStats>,
    next: AtomicUsize,
    /// `x-hangar-version` of this route's answers, built once per table.
    version_header: Option<HeaderValue>,
}

struct TableRt {
    routes: Vec<RouteRt>,
    total_weight: u64,
    retry_on_stable: Option<(usize, usize)>,
    /// More than one version may answer: set the sticky cookie.
    sticky: bool,
    /// Versions with at least one instance (1 = no choice to make, the common case).
    live: usize,
}

impl TableRt {
    /// Where a request that reached no instance goes next, in order: the
    /// chosen route `first`, then every other route that has instances;
    /// within a route each instance once, from its round-robin position
    /// (taken only when the route is reached). Yields (how many routes were
    /// tried before, route index, instance). One order for both HTTP paths.
    fn try_order(&self, first: usize) -> impl Iterator<Item = (usize, usize, &Arc<Backend>)> {
        std::iter::once(first)
            .chain(
                (0..self.routes.len())
                    .filter(move |i| *i != first && !self.routes[*i].route.backends.is_empty()),
            )
            .enumerate()
            .flat_map(move |(attempt, ri)| {
                let route = &self.routes[ri];
                let n = route.route.backends.len();
                let start_at = if n > 1 {
                    route.next.fetch_add(1, Ordering::Relaxed)
                } else {
                    0
                };
                (0..n).map(move |k| (attempt, ri, &route.route.backends[(start_at + k) % n]))
            })
    }
}

/// A reverse proxy for one service.
pub struct Router {
    name: String,
    table: ArcSwap<TableRt>,
    stats: Mutex<HashMap<String, Arc<VersionStats>>>,
    backends: Mutex<HashMap<SocketAddr, Arc<Backend>>>,
    seq: AtomicU64,
    /// The controller's word on each version's instances, repeated on `/metrics`.
    instances: Mutex<Vec<metrics::InstanceGauge>>,
    /// Client connections' timeouts (milliseconds), read as each one opens.
    idle_ms: AtomicU64,
    head_ms: AtomicU64,
}

impl Router {
    pub fn new(name: impl Into<String>) -> Arc<Router> {
        let router = Arc::new(Router {
            name: name.into(),
            table: ArcSwap::from_pointee(TableRt {
                routes: Vec::new(),
                total_weight: 0,
                retry_on_stable: None,
                sticky: false,
                live: 0,
            }),
            stats: Mutex::default(),
            backends: Mutex::default(),
            seq: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            instances: Mutex::default(),
            idle_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(0),
        });
        router.set_client_timeouts(ClientTimeouts::default());
        router
    }

    /// How long client connections may be idle between requests or take to
    /// send a request head (nginx's defaults unless set); applies to
    /// connections opened from now on.
    pub fn set_client_timeouts(&self, t: ClientTimeouts) {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.idle_ms.store(ms(t.idle), Ordering::Relaxed);
        self.head_ms.store(ms(t.head), Ordering::Relaxed);
    }

    pub fn client_timeouts(&self) -> ClientTimeouts {
        let d = |a: &AtomicU64| std::time::Duration::from_millis(a.load(Ordering::Relaxed));
        ClientTimeouts {
            idle: d(&self.idle_ms),
            head: d(&self.head_ms),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shared backend record for an address (so in-flight counts survive table swaps).
    pub fn backend(&self, addr: SocketAddr) -> Arc<Backend> {
        let mut map = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(addr)
            .or_insert_with(|| Backend::new(addr))
            .clone()
    }

    /// Live counters of a version (created on first use, kept across table swaps).
    pub fn stats(&self, version: &str) -> Arc<VersionStats> {
        let mut map = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(version.to_string()).or_default().clone()
    }

    /// Every version that has counters (served now or earlier: counters never go back).
    pub fn versions(&self) -> Vec<String> {
        let map = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        map.keys().cloned().collect()
    }

    /// Replaces what the controller says of each version's instances.
    pub fn set_instance_gauges(&self, gauges: Vec<metrics::InstanceGauge>) {
        for g in &gauges {
            // A version with instances but no request yet is still a series.
            self.stats(&g.version);
        }
        *self.instances.lock().unwrap_or_else(|e| e.into_inner()) = gauges;
    }

    pub fn instance_gauges(&self) -> Vec<metrics::InstanceGauge> {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the routing table; the next request uses the new one.
    pub fn set_table(&self, table: Table) {
        let routes: Vec<RouteRt> = table
            .routes
            .into_iter()
            .map(|route| RouteRt {
                stats: self.stats(&route.version),
                version_header: HeaderValue::from_str(&route.version).ok(),
                route,
                next: AtomicUsize::new(0),
            })
            .collect();
        let idx = |v: &str| routes.iter().position(|r| r.route.version == v);
        let retry_on_stable = table
            .retry_on_stable
            .as_ref()
            .and_then(|(c, s)| Some((idx(c)?, idx(s)?)));
        let total_weight = routes
            .iter()
            .filter(|r| !r.route.backends.is_empty())
            .map(|r| r.route.weight as u64)
            .sum();
        let live = routes
            .iter()
            .filter(|r| !r.route.backends.is_empty())
            .count();
        self.table.store(Arc::new(TableRt {
            routes,
            total_weight,
            retry_on_stable,
            sticky: live > 1,
            live,
        }));
    }

    /// The table now in force.
    pub fn table(&self) -> Table {
        let t = self.table.load();
        Table {
            routes: t.routes.iter().map(|r| r.route.clone()).collect(),
            retry_on_stable: t.retry_on_stable.map(|(c, s)| {
                (
                    t.routes[c].route.version.clone(),
                    t.routes[s].route.version.clone(),
                )
            }),
        }
    }

    /// Requests an instance is serving right now (0 means it can be stopped).
    pub fn inflight(&self, addr: SocketAddr) -> usize {
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&addr)
            .map(|b| b.inflight.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Binds the listener and serves on the current tokio runtime until the
    /// returned handle is dropped or stopped.
    pub async fn serve(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<RouterHandle> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(self.clone(), listener));
        Ok(RouterHandle {
            addr: local,
            stop: Stop::Task(task),
        })
    }

    /// Binds the listener and serves from `threads` threads, each with a
    /// single-threaded runtime, as an event-driven proxy runs one loop per
    /// worker: a multi-threaded runtime spends a fifth of a proxy's time waking
    /// its idle workers (measured with perf under benches/router-vs-nginx.sh),
    /// while here a connection lives and dies on one thread.
    ///
    /// Every thread accepts from the one listening socket, as nginx's workers
    /// do: a connection usually starts on the thread that took it, with no
    /// hand-over and no wake-up of another thread. Dealing every connection
    /// from one accepting thread made that thread the bottleneck at low
    /// concurrency (p99 1.6-1.8x nginx's at 16 connections with
    /// `Connection: close`), and an accept-only thread cost a wake-up per
    /// connection (CPU per request 1.07-1.15x nginx's). A thread serving more
    /// connections than another lets that one accept first
    /// ([`accept_balanced`]), and one serving far more deals what it accepts
    /// to it ([`least_loaded`]), so a burst of long-lived connections does not
    /// stay with whichever thread woke first. One listening socket (not
    /// `SO_REUSEPORT`) keeps a second hangar from binding the same address and
    /// quietly taking half the traffic.
    /// Stopping stops accepting; connections in flight get up to [`DRAIN`].
    pub fn serve_threads(
        self: &Arc<Self>,
        addr: SocketAddr,
        threads: usize,
    ) -> std::io::Result<RouterHandle> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let threads = threads.max(1);
        // Each thread's count of live connections, read by the others.
        let lives: Arc<[Arc<AtomicUsize>]> = (0..threads)
            .map(|_| Arc::new(AtomicUsize::new(0)))
            .collect();
        let mut inboxes = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..threads {
            let (tx, rx) =
                tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
            inboxes.push(tx);
            receivers.push(rx);
        }
        let inboxes: Arc<[_]> = inboxes.into();
        for (me, mut inbox) in receivers.into_iter().enumerate() {
            let router = self.clone();
            let (lives, inboxes) = (lives.clone(), inboxes.clone());
            spawn_serving_thread(
                format!("router-{}-{me}", self.name),
                self.clone(),
                listener.try_clone()?,
                stop_rx.clone(),
                lives[me].clone(),
                move |listener, live| async move {
                    // Connections dealt by the other threads; ends when they
                    // all stop accepting (they drop the senders).
                    let dealt = router.clone();
                    tokio::spawn(async move {
                        while let Some((stream, addr)) = inbox.recv().await {
                            serve_connection(dealt.clone(), stream, addr, live.clone());
                        }
                    });
                    loop {
                        let (stream, addr) = accept_balanced(&router, &listener, &lives, me).await;
                        let to = least_loaded(&lives, me);
                        // Counted by the dealer, so that the next choice sees it.
                        lives[to].fetch_add(1, Ordering::Relaxed);
                        if to == me {
                            serve_connection(router.clone(), stream, addr, lives[me].clone());
                        } else if let Err(back) = inboxes[to].send((stream, addr)) {
                            // That thread has stopped: serve it here.
                            lives[to].fetch_sub(1, Ordering::Relaxed);
                            lives[me].fetch_add(1, Ordering::Relaxed);
                            let (stream, addr) = back.0;
                            serve_connection(router.clone(), stream, addr, lives[me].clone());
                        }
                    }
                },
            )?;
        }
        Ok(RouterHandle {
            addr: local,
            stop: Stop::Threads(stop_tx, lives),
        })
    }

    fn random(&self) -> u64 {
        // splitmix64 over a shared counter: uniform enough for weights, no lock, no syscall.
        let mut z = self.seq.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick_route(&self, t: &TableRt, cookie: Option<&str>) -> Option<usize> {
        if let Some(v) = cookie
            && let Some(i) = t
                .routes
                .iter()
                .position(|r| r.route.version == v && !r.route.backends.is_empty())
        {
            return Some(i);
        }
        if t.live == 1 || t.total_weight == 0 {
            return t.routes.iter().position(|r| !r.route.backends.is_empty());
        }
        let mut ticket = self.random() % t.total_weight;
        for (i, r) in t.routes.iter().enumerate() {
            if r.route.backends.is_empty() {
                continue;
            }
            let w = r.route.weight as u64;
            if ticket < w {
                return Some(i);
            }
            ticket -= w;
        }
        None
    }

    async fn handle(&self, req: Request<Incoming>, conn: &Conn) -> Response<Body> {
        let (peer, local) = (&conn.peer, &conn.local);
        // Until the body is read whole, closing the connection could leave the
        // client's bytes unread (see `ClientIo::poll_shutdown`).
        conn.request_read.store(false, Ordering::Relaxed);
        let t = self.table.load_full();
        let cookie = sticky_cookie(&req);
        let Some(first) = self.pick_route(&t, cookie.as_deref()) else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "hangar: no healthy instance for this service\n",
            );
        };
        let (mut parts, body) = req.into_parts();
        // Buffered so that a request that never reached an instance can be sent again.
        let body = if hyper::body::Body::is_end_stream(&body) {
            Bytes::new()
        } else if hyper::body::Body::size_hint(&body).lower() > MAX_BODY as u64 {
            // A Content-Length over the limit is refused before the body is
            // read (and before `100 Continue` is sent to an `Expect`), as nginx does.
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "hangar: request body too large (the limit is 16 MiB)\n",
            );
        } else {
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "hangar: request body too large or broken\n",
                    );
                }
            }
        };
        conn.request_read.store(true, Ordering::Relaxed);
        strip_hop_by_hop(&mut parts.headers);
        let forwarded = match parts
            .headers
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", peer.addr.ip())).ok(),
            None => peer.ip_header.clone(),
        };
        if let Some(v) = forwarded {
            parts.headers.insert(X_FORWARDED_FOR, v);
        }
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );

        // One version with one instance and no retry on stable (the common
        // case): the request can go to one place only, so its head is moved
        // into the request to the instance instead of copied for a retry.
        let route = &t.routes[first];
        if t.live == 1 && t.retry_on_stable.is_none() && route.route.backends.len() == 1 {
            let backend = &route.route.backends[0];
            let set_cookie = cookie.as_deref() != Some(route.route.version.as_str());
            return match self.send(local, backend, outgoing(parts, body)).await {
                Ok((resp, latency)) => {
                    route.stats.record(latency, resp.status().as_u16());
                    self.finish(resp, &t, first, set_cookie)
                }
                Err(err) => {
                    route.stats.record_connect_error();
                    self.unanswered(err)
                }
            };
        }

        // Candidates: the chosen version first, then the others (only for requests that never reached an instance).
        let mut last_connect_error = None;
        for (attempt, ri, backend) in t.try_order(first) {
            let route = &t.routes[ri];
            match self.forward(local, backend, &parts, body.clone()).await {
                Ok((resp, latency)) => {
                    let failed = resp.status().is_server_error();
                    route.stats.record(latency, resp.status().as_u16());
                    if failed && idempotent && t.retry_on_stable.map(|(c, _)| c) == Some(ri) {
                        let (_, stable) = t.retry_on_stable.unwrap_or((ri, ri));
                        if let Some(resp) = self.try_route(local, &t, stable, &parts, &body).await {
                            return self.finish(resp, &t, stable, attempt > 0 || cookie.is_none());
                        }
                    }
                    return self.finish(
                        resp,
                        &t,
                        ri,
                        cookie.as_deref() != Some(route.route.version.as_str()),
                    );
                }
                Err(err) => {
                    route.stats.record_connect_error();
                    last_connect_error = Some(err);
                }
            }
        }
        match last_connect_error {
            Some(err) => self.unanswered(err),
            None => plain(
                StatusCode::BAD_GATEWAY,
                &format!("hangar: no instance of {} answered\n", self.name),
            ),
        }
    }

    fn unanswered(&self, err: SendError) -> Response<Body> {
        plain(
            StatusCode::BAD_GATEWAY,
            &format!("hangar: no instance of {} answered: {err}\n", self.name),
        )
    }

    async fn try_route(
        &self,
        local: &Local,
        t: &TableRt,
        ri: usize,
        parts: &hyper::http::request::Parts,
        body: &Bytes,
    ) -> Option<Response<Incoming>> {
        let route = &t.routes[ri];
        let n = route.route.backends.len();
        let start = route.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let backend = &route.route.backends[(start + k) % n];
            match self.forward(local, backend, parts, body.clone()).await {
                Ok((resp, latency)) => {
                    route.stats.record(latency, resp.status().as_u16());
                    return Some(resp);
                }
                Err(_) => route.stats.record_connect_error(),
            }
        }
        None
    }

    fn finish(
        &self,
        resp: Response<Incoming>,
        t: &TableRt,
        ri: usize,
        set_cookie: bool,
    ) -> Response<Body> {
        let version = &t.routes[ri].route.version;
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // The client speaks to hangar, not to the backend: an HTTP/1.0 backend must
        // not downgrade the client's keep-alive connection.
        parts.version = hyper::Version::HTTP_11;
        if let Some(v) = &t.routes[ri].version_header {
            parts.headers.insert(X_HANGAR_VERSION, v.clone());
        }
        if t.sticky
            && set_cookie
            && let Ok(v) = HeaderValue::from_str(&format!(
                "{STICKY_COOKIE}={version}; Path=/; HttpOnly; SameSite=Lax"
            ))
        {
            parts.headers.append(hyper::header::SET_COOKIE, v);
        }
        Response::from_parts(parts, Either::Left(body))
    }

    /// Sends a copy of the request (the original is kept for a retry).
    async fn forward(
        &self,
        local: &Local,
        backend: &Arc<Backend>,
        parts: &hyper::http::request::Parts,
        body: Bytes,
    ) -> Result<(Response<Incoming>, std::time::Duration), SendError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = origin_form(&parts.uri);
        *req.headers_mut() = parts.headers.clone();
        self.send(local, backend, req).await
    }

    async fn send(
        &self,
        local: &Local,
        backend: &Arc<Backend>,
        req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, std::time::Duration), SendError> {
        backend.inflight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = local.send(backend.addr, &backend.pool, req).await;
        backend.inflight.fetch_sub(1, Ordering::Relaxed);
        result.map(|resp| (resp, started.elapsed()))
    }
}

/// Origin-form URI (path and query only): the instance gets what the client
/// sent, its Host header included.
fn origin_form(uri: &hyper::Uri) -> hyper::Uri {
    uri.path_and_query()
        .cloned()
        .map(hyper::Uri::from)
        .unwrap_or_else(|| hyper::Uri::from_static("/"))
}

/// The request to an instance, made of the client's (moved, not copied).
fn outgoing(mut parts: hyper::http::request::Parts, body: Bytes) -> Request<Full<Bytes>> {
    if parts.uri.scheme().is_some() || parts.uri.path_and_query().is_none() {
        parts.uri = origin_form(&parts.uri);
    }
    // hangar speaks HTTP/1.1 to its instances whatever the client spoke, and
    // what hyper's server attached to the client's request stays there.
    parts.version = hyper::Version::HTTP_11;
    parts.extensions.clear();
    Request::from_parts(parts, Full::new(body))
}

/// The client end of a connection, with its `x-forwarded-for` value built once.
struct Peer {
    addr: SocketAddr,
    ip_header: Option<HeaderValue>,
}

impl Peer {
    fn new(addr: SocketAddr) -> Peer {
        // Most connections come from the address the previous one came from
        // (a load balancer, a client reconnecting): its header value is
        // reused (a reference count) instead of formatted and copied again.
        thread_local! {
            static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
                const { std::cell::RefCell::new(None) };
        }
        let ip_header = LAST.with_borrow_mut(|last| match last {
            Some((ip, v)) if *ip == addr.ip() => Some(v.clone()),
            _ => {
                let v = HeaderValue::from_str(&addr.ip().to_string()).ok()?;
                *last = Some((addr.ip(), v.clone()));
                Some(v)
            }
        });
        Peer { addr, ip_header }
    }
}

/// What one client connection's requests share: one reference counted per
/// request instead of one per part.
struct Conn {
    router: Arc<Router>,
    peer: Peer,
    /// The backend connections this client connection uses, driven in its task (see `pool`).
    local: Arc<Local>,
    /// The last request's body was read whole: nothing the client sent is
    /// left unread, so the connection can be closed without a shutdown.
    request_read: AtomicBool,
    /// What the idle and head timeouts see of this connection.
    slot: Option<Arc<sweep::Slot>>,
}

impl Conn {
    fn mark(&self, f: impl FnOnce(&sweep::Slot)) {
        if let Some(s) = &self.slot {
            f(s);
        }
    }
}

/// How long connections in flight may finish after a threaded router stops.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The next connection; failures (EMFILE and friends) back off instead of spinning.
async fn accept(router: &Router, listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(s) => return s,
            Err(err) => {
                tracing::warn!("router {}: accept failed: {err}", router.name);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The next connection, accepted (non-blocking) but registered with no event
/// loop yet: the thread that serves it registers it. Failures back off as in [`accept`].
async fn accept_raw(
    router: &Router,
    listener: &AsyncFd<mio::net::TcpListener>,
) -> (std::net::TcpStream, SocketAddr) {
    accept_balanced(router, listener, &[], 0).await
}

/// [`accept_raw`] for thread `me` of several accepting from one listener,
/// `lives` being each thread's count of live connections. A new connection
/// wakes every waiting thread; one that serves more connections than another
/// first lets its event loop turn once, so that the less loaded thread takes
/// the connection, then accepts whatever is still there. A thread is never
/// kept from accepting, only made second, so a busy peer delays no
/// connection by more than one turn of this thread's loop.
async fn accept_balanced(
    router: &Router,
    listener: &AsyncFd<mio::net::TcpListener>,
    lives: &[Arc<AtomicUsize>],
    me: usize,
) -> (std::net::TcpStream, SocketAddr) {
    let mut deferred = false;
    loop {
        let mut ready = match listener.readable().await {
            Ok(ready) => ready,
            Err(err) => {
                tracing::warn!("router {}: listener failed: {err}", router.name);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !deferred && let Some(mine) = lives.get(me) {
            let mine = mine.load(Ordering::Relaxed);
            let less_loaded_peer = lives
                .iter()
                .enumerate()
                .any(|(i, l)| i != me && l.load(Ordering::Relaxed) < mine);
            if less_loaded_peer {
                // The readiness stays set: the next look finds it at once.
                drop(ready);
                deferred = true;
                tokio::task::yield_now().await;
                continue;
            }
        }
        deferred = false;
        match ready.try_io(|l| l.get_ref().accept()) {
            Ok(Ok((stream, addr))) => return (stream.into(), addr),
            Ok(Err(err)) => {
                tracing::warn!("router {}: accept failed: {err}", router.name);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            // Nothing left to accept: wait for the next readiness.
            Err(_would_block) => {}
        }
    }
}

/// The thread that should serve the connection thread `me` just accepted:
/// `me`, unless it serves more than twice as many connections as another
/// thread, and at least 3 more. Threads racing to accept take a burst of
/// connections by who woke first (a burst of 16 keep-alive connections
/// went 15 to 1); dealing then keeps long-lived connections spread, at the
/// cost of a wake-up of the other thread. Connections that come and go
/// (`Connection: close`) keep the counts a few apart all the time: dealing
/// at a difference of 3 or a quarter of all connections cost 10-20% more
/// p99 at 16 connections (benches/router-vs-nginx.sh) for no gain.
fn least_loaded(lives: &[Arc<AtomicUsize>], me: usize) -> usize {
    let mine = lives[me].load(Ordering::Relaxed);
    let (least, count) = lives
        .iter()
        .map(|l| l.load(Ordering::Relaxed))
        .enumerate()
        .min_by_key(|(_, n)| *n)
        .unwrap_or((me, mine));
    if mine > 2 * count + 3 { least } else { me }
}

/// Runs `accepting` (given the listener, watched by this thread's event
/// loop, and the thread's count of live connections) on a thread of its own
/// with a single-threaded runtime, until the stop signal; then lets the
/// connections in flight finish, for up to [`DRAIN`].
pub(crate) fn spawn_serving_thread<F, Fut>(
    name: String,
    router: Arc<Router>,
    listener: std::net::TcpListener,
    mut stop_rx: tokio::sync::watch::Receiver<bool>,
    live: Arc<AtomicUsize>,
    accepting: F,
) -> std::io::Result<()>
where
    F: FnOnce(AsyncFd<mio::net::TcpListener>, Arc<AtomicUsize>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::Builder::new().name(name).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("router {}: no runtime for a thread: {e}", router.name);
                return;
            }
        };
        rt.block_on(async {
            let listener = match watch_listener(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("router {}: cannot watch the listener: {e}", router.name);
                    return;
                }
            };
            // The listener is dropped when accepting stops: the socket closes
            // once every thread holding it has seen the stop.
            tokio::select! {
                _ = accepting(listener, live.clone()) => {}
                _ = stop_rx.wait_for(|s| *s) => {}
            }
        });
        let deadline = Instant::now() + DRAIN;
        rt.block_on(async {
            while live.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
    })?;
    Ok(())
}

/// The listening socket in the current thread's event loop, for [`accept_raw`].
#[allow(unsafe_code)] // tokio's safe constructor is deprecated for an I/O-safety hole; see SAFETY.
fn watch_listener(
    listener: std::net::TcpListener,
) -> std::io::Result<AsyncFd<mio::net::TcpListener>> {
    let listener = mio::net::TcpListener::from_std(listener);
    // SAFETY: the mio listener owns its descriptor and is moved into the
    // AsyncFd, which lends it out only by reference: the descriptor stays open,
    // and the same one, until the AsyncFd is dropped, as `register` requires.
    unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

async fn accept_loop(router: Arc<Router>, listener: TcpListener) {
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, addr) = accept(&router, &listener).await;
        match stream.into_std() {
            Ok(stream) => {
                live.fetch_add(1, Ordering::Relaxed);
                serve_connection(router.clone(), stream, addr, live.clone())
            }
            Err(err) => tracing::warn!("router {}: cannot serve a connection: {err}", router.name),
        }
    }
}

/// Serves one client connection on a task of the current runtime (the fast
/// path, then hyper if the fast path hands the connection over); `live`
/// counts the connections being served, and the caller has counted this one.
fn serve_connection(
    router: Arc<Router>,
    stream: std::net::TcpStream,
    addr: SocketAddr,
    live: Arc<AtomicUsize>,
) {
    tokio::spawn(async move {
        let peer = Peer::new(addr);
        match fast::Sock::new(stream) {
            Ok(mut sock) => {
                sock.expect_data();
                sock.watch(router.client_timeouts());
                if let Some((stream, read)) = fast::serve(&router, sock, &peer).await {
                    serve_hyper(router, peer, stream, read).await;
                }
            }
            Err(err) => tracing::warn!("router {}: cannot serve a connection: {err}", router.name),
        }
        live.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Serves the rest of a connection with hyper; `read` is what the fast path
/// read from it and did not use (it is read first).
async fn serve_hyper(router: Arc<Router>, peer: Peer, stream: std::net::TcpStream, read: Vec<u8>) {
    let stream = match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::warn!("router {}: cannot serve a connection: {err}", router.name);
            return;
        }
    };
    // Registered again (the fast path's registration ended before its socket
    // changed hands), now that the socket is owned by what closes it.
    let watch = {
        use std::os::fd::AsRawFd;
        sweep::watch(stream.as_raw_fd(), router.client_timeouts())
    };
    let conn = Arc::new(Conn {
        router,
        peer,
        local: Arc::new(Local::default()),
        request_read: AtomicBool::new(false),
        slot: Some(watch.slot().clone()),
    });
    let drive = conn.local.drive();
    let io = ClientIo {
        _watch: watch,
        stream,
        conn: conn.clone(),
        wrote: false,
        nodelay: false,
        read,
        at: 0,
    };
    let svc = {
        let conn = conn.clone();
        service_fn(move |req| {
            let conn = conn.clone();
            async move {
                conn.mark(sweep::Slot::busy);
                let resp = conn.router.handle(req, &conn).await;
                let slot = conn.slot.clone();
                Ok::<_, Infallible>(resp.map(|body| Sent { body, slot }))
            }
        })
    };
    let served = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    // The instances' side first: in one wake-up an answer is read from
    // the instance, then written to the client by the server connection
    // polled next, instead of in two wake-ups when the order is random.
    tokio::select! {
        biased;
        _ = drive => {}
        _ = served => {}
    }
    conn.local.release();
}

/// An answer's body on hyper's path: the connection is busy until it has
/// been sent whole (or given up), so a streamed answer is never cut by the
/// idle timeout, however long it pauses.
struct Sent {
    body: Body,
    slot: Option<Arc<sweep::Slot>>,
}

impl http_body::Body for Sent {
    type Data = Bytes;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Sent {
    /// hyper drops an answer's body once it is written whole (or the
    /// connection failed): the wait for the next request starts.
    fn drop(&mut self) {
        if let Some(s) = &self.slot {
            s.idle();
        }
    }
}

/// The client's socket, with two system calls per connection saved where
/// nginx saves them too.
struct ClientIo {
    /// The idle and head timeouts' registration: the first field, dropped
    /// before the socket closes (see `sweep`). Held, never read.
    _watch: sweep::Guard,
    stream: tokio::net::TcpStream,
    conn: Arc<Conn>,
    /// Something was written already.
    wrote: bool,
    /// `TCP_NODELAY` is set.
    nodelay: bool,
    /// Bytes the fast path read before handing the connection over, from `at` on.
    read: Vec<u8>,
    at: usize,
}

impl ClientIo {
    /// `TCP_NODELAY` only from the second write on: Nagle's algorithm holds
    /// back a small write only while an earlier one is unacknowledged, so the
    /// first write (all of a connection's answer with `Connection: close`)
    /// goes out at once without it, and the `setsockopt` is paid only by
    /// connections that are kept alive or stream an answer, as nginx sets it
    /// when a connection goes keep-alive.
    fn before_write(&mut self) {
        if self.wrote && !self.nodelay {
            self.nodelay = true;
            let _ = self.stream.set_nodelay(true);
        }
    }
}

impl tokio::io::AsyncRead for ClientIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.at < self.read.len() {
            let n = buf.remaining().min(self.read.len() - self.at);
            buf.put_slice(&self.read[self.at..self.at + n]);
            self.at += n;
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.mark(sweep::Slot::head_started);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for ClientIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.before_write();
        let polled = std::pin::Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote |= polled.is_ready();
        self.conn.mark(sweep::Slot::wrote);
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.before_write();
        let polled = std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote |= polled.is_ready();
        self.conn.mark(sweep::Slot::wrote);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// hyper shuts the socket down before closing it; the close alone sends
    /// the FIN, after the answer. The shutdown matters only while the client
    /// has bytes the router has not read (closing then resets the
    /// connection), so it is skipped, as nginx skips it, when the last
    /// request was read whole.
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.conn.request_read.load(Ordering::Relaxed) {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A running listener.
pub struct RouterHandle {
    pub addr: SocketAddr,
    stop: Stop,
}

enum Stop {
    Task(tokio::task::JoinHandle<()>),
    /// The stop signal, and each thread's count of live connections.
    Threads(tokio::sync::watch::Sender<bool>, Arc<[Arc<AtomicUsize>]>),
}

impl RouterHandle {
    /// The client connections each thread of a threaded router serves now
    /// (none for a router on the caller's runtime): how evenly the threads
    /// share the work.
    pub fn connections_per_thread(&self) -> Vec<usize> {
        match &self.stop {
            Stop::Task(_) => Vec::new(),
            Stop::Threads(_, lives) => lives.iter().map(|l| l.load(Ordering::Relaxed)).collect(),
        }
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        match &self.stop {
            Stop::Task(t) => t.abort(),
            Stop::Threads(tx, _) => {
                let _ = tx.send(true);
            }
        }
    }
}

impl Drop for RouterHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sticky_cookie(req: &Request<Incoming>) -> Option<String> {
    for value in req.headers().get_all(hyper::header::COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == STICKY_COOKIE
            {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Hop-by-hop headers (RFC 9110 7.6.1 and the legacy ones): a proxy does not forward them.
/// Names built at compile time: removing by a `&str` parses and hashes it each time,
/// twice per proxied request.
const HOP_BY_HOP: [HeaderName; 7] = [
    hyper::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    hyper::header::TE,
    hyper::header::TRAILER,
    hyper::header::TRANSFER_ENCODING,
    hyper::header::UPGRADE,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_HANGAR_VERSION: HeaderName = HeaderName::from_static(VERSION_HEADER);

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn plain(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(msg.to_string()))));
    *resp.status_mut() = status;
    resp
}
