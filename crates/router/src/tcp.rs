//! The router's raw TCP mode (`protocol: tcp` in hangar.yml): Postgres, Redis
//! and any other protocol that is not HTTP.
//!
//! It shares the [`Router`]'s table, per-version counters and per-instance
//! counts with the HTTP mode, so the controller drives both the same way, but
//! it has its own listener: a connection is routed once, when it is accepted,
//! to a version chosen by weight (there is no cookie to keep a client on one
//! version; a database client's connection is its session), then bytes are
//! copied both ways until either end closes. A blue-green switch or a rolling
//! batch therefore sends *new* connections to the new version while the
//! connections already open stay on the instance they reached: that instance
//! counts them as in flight, and the controller drains it (waits for them to
//! close, bounded by the service's `stop.drain`) before stopping it.
//!
//! What is counted per version: each connection an instance accepted is one
//! "request" (class `2xx`), its latency the time the instance took to accept;
//! a connection no instance of a version accepted is a connect error. Canary
//! analysis and the alert rules read these as they read HTTP answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::fast::{self, Sock};
use crate::{Backend, Router, RouterHandle, Stop, TableRt};

/// How long connecting to one instance may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The buffer of each direction of a connection: a 16 KiB one reused from
/// the thread's spares (`fast::take_buf`), grown to [`COPY_MAX`] once a read
/// fills it. tokio's `copy_bidirectional` keeps 8 KiB per direction, which
/// costs a bulk transfer (a dump, a bulk load) a read and a write system call
/// per 8 KiB: benches/tcp-proxy-vs-haproxy.sh measured the router at
/// 1.16-1.24x the CPU per GiB of HAProxy with it, and 0.47-0.55x with 64 KiB.
/// Buffers allocated (and zeroed) per connection made a short connection
/// (connect, a query, close) pay for them (6% of the router's CPU under
/// perf); reused, they cost nothing per connection.
const COPY_MAX: usize = 64 * 1024;

/// Which listener a service's router runs: HTTP (the default) or raw TCP.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Tcp,
}

impl Protocol {
    /// The scheme of a service's address: `http` or `tcp`.
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
    }
}

/// How long a stopped listener's thread may take to close its socket before
/// the address it held is reported as taken: the thread wakes within a few
/// milliseconds, but on a loaded machine it may wait for a core.
const REBIND: Duration = Duration::from_secs(2);

impl Router {
    /// Serves `protocol` on `addr`: [`Router::serve_threads`] with `threads`
    /// event loops for HTTP, [`Router::serve_tcp`] for raw TCP.
    ///
    /// `replacing`: a listener of this process on `addr` was just stopped (the
    /// service's `protocol:` changed, or its router is being replaced). Its
    /// thread closes the socket only once it wakes up, and until then the
    /// address is in use (`SO_REUSEADDR` does not let two sockets listen on
    /// one address), so binding at once fails about every time; the bind is
    /// then tried again every millisecond for up to [`REBIND`]. Clients are
    /// refused only between the old socket's close and the new one's listen:
    /// about a millisecond.
    pub fn serve_protocol(
        self: &Arc<Self>,
        addr: SocketAddr,
        protocol: Protocol,
        threads: usize,
        replacing: bool,
    ) -> std::io::Result<RouterHandle> {
        let deadline = Instant::now() + REBIND;
        loop {
            let served = match protocol {
                Protocol::Http => self.serve_threads(addr, threads),
                Protocol::Tcp => self.serve_tcp(addr),
            };
            match served {
                Err(e)
                    if replacing
                        && e.kind() == std::io::ErrorKind::AddrInUse
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }

    /// Binds `addr` and proxies raw TCP connections to the table's instances,
    /// on a thread of its own (one event loop: a connection costs two socket
    /// copies, which one thread drives for far more connections than a
    /// database takes). Stopping stops accepting; open connections get up to
    /// [`crate::DRAIN`] to close.
    pub fn serve_tcp(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<RouterHandle> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let live = Arc::new(AtomicUsize::new(0));
        let router = self.clone();
        let picker = Arc::new(AtomicU64::new(0x9E37_79B9_7F4A_7C15));
        // Accepted unregistered (`accept_raw`: accept4 until the queue is
        // empty, then one wait), registered once as the proxy's own socket.
        crate::spawn_serving_thread(
            format!("router-tcp-{}", self.name),
            self.clone(),
            listener,
            stop_rx,
            live.clone(),
            move |listener, live| async move {
                loop {
                    let (client, _) = crate::accept_raw(&router, &listener).await;
                    live.fetch_add(1, Ordering::Relaxed);
                    let (router, live, picker) = (router.clone(), live.clone(), picker.clone());
                    tokio::spawn(async move {
                        proxy(&router, client, &picker).await;
                        live.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            },
        )?;
        Ok(RouterHandle {
            addr: local,
            stop: Stop::Threads(stop_tx, Arc::from([live])),
        })
    }
}

/// Routes one client connection and copies its bytes until either end
/// closes: both directions in the connection's one task, over sockets that
/// skip the read that would only say "nothing more" (`fast::Sock`), with
/// `TCP_NODELAY` set only on a socket written to twice, through buffers
/// reused from the thread's spares; nothing is allocated per connection
/// beyond its task.
async fn proxy(router: &Router, client: std::net::TcpStream, picker: &AtomicU64) {
    let table = router.table.load_full();
    let Some((backend, upstream)) = connect(&table, picker).await else {
        // No instance took it: the client sees the connection closed, as it
        // would with the service down (no protocol to say more in).
        tracing::debug!("router {}: no instance accepted a connection", router.name);
        return;
    };
    let client = match Sock::new(client) {
        Ok(c) => c,
        Err(err) => {
            tracing::warn!("router {}: cannot serve a connection: {err}", router.name);
            return;
        }
    };
    backend.inflight.fetch_add(1, Ordering::Relaxed);
    let _ = tokio::try_join!(pipe(&client, &upstream), pipe(&upstream, &client));
    backend.inflight.fetch_sub(1, Ordering::Relaxed);
}

/// Copies what `from` reads to `to` until `from` ends, then ends `to`'s
/// writing side (a half-close goes through: the other direction goes on until
/// it ends too, as `copy_bidirectional` does).
async fn pipe(from: &Sock, to: &Sock) -> std::io::Result<()> {
    let mut buf = fast::take_buf();
    let copied = async {
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n]).await?;
            if n == buf.len() && n < COPY_MAX {
                buf.resize(COPY_MAX, 0);
            }
        }
        to.shutdown_write();
        Ok(())
    }
    .await;
    buf.truncate(fast::BUF);
    fast::give_buf(buf);
    copied
}

/// The version chosen by weight first, then the others; within a version
/// its instances in turn. Each refused or timed-out connect is counted
/// against its version before the next instance is tried.
async fn connect<'t>(t: &'t TableRt, picker: &AtomicU64) -> Option<(&'t Arc<Backend>, Sock)> {
    let ticket = next_random(picker);
    let first = pick(t, ticket)?;
    let order = std::iter::once(first).chain(
        (0..t.routes.len()).filter(|i| *i != first && !t.routes[*i].route.backends.is_empty()),
    );
    for ri in order {
        let route = &t.routes[ri];
        let n = route.route.backends.len();
        // Round-robin within a version, from the same random draw.
        let start = (ticket >> 32) as usize % n;
        for k in 0..n {
            let backend = &route.route.backends[(start + k) % n];
            let started = Instant::now();
            match tokio::time::timeout(CONNECT_TIMEOUT, Sock::connect(backend.addr)).await {
                Ok(Ok(sock)) => {
                    route.stats.record(started.elapsed(), 200);
                    return Some((backend, sock));
                }
                _ => route.stats.record_connect_error(),
            }
        }
    }
    None
}

/// A route with instances by weight (the first one when all weigh 0).
fn pick(t: &TableRt, ticket: u64) -> Option<usize> {
    let live = |i: &usize| !t.routes[*i].route.backends.is_empty();
    if t.total_weight == 0 {
        return (0..t.routes.len()).find(live);
    }
    let mut left = ticket % t.total_weight;
    for i in (0..t.routes.len()).filter(live) {
        let w = t.routes[i].route.weight as u64;
        if left < w {
            return Some(i);
        }
        left -= w;
    }
    (0..t.routes.len()).find(live)
}

fn next_random(seq: &AtomicU64) -> u64 {
    // splitmix64, as the HTTP mode draws its weights.
    let mut z = seq.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Route, Table};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    /// A line-echo server that prefixes each line with `name`.
    async fn echo(name: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if w.write_all(format!("{name} {line}\n").as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn ask(conn: &mut BufReader<TcpStream>, line: &str) -> std::io::Result<Option<String>> {
        conn.get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        let mut answer = String::new();
        let n = conn.read_line(&mut answer).await?;
        Ok((n > 0).then(|| answer.trim().to_string()))
    }

    fn table(router: &Router, routes: &[(&str, u32, SocketAddr)]) {
        router.set_table(Table {
            routes: routes
                .iter()
                .map(|(v, w, a)| Route {
                    version: v.to_string(),
                    weight: *w,
                    backends: if *w > 0 || routes.len() == 1 {
                        vec![router.backend(*a)]
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
            retry_on_stable: None,
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_switch_sends_new_connections_to_the_new_version_and_keeps_open_ones() {
        let (v1, v2) = (echo("v1").await, echo("v2").await);
        let router = Router::new("db");
        table(&router, &[("v1", 100, v1)]);
        let handle = router.serve_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut old = BufReader::new(TcpStream::connect(handle.addr).await.unwrap());
        assert_eq!(ask(&mut old, "a").await.unwrap().as_deref(), Some("v1 a"));
        assert_eq!(router.inflight(v1), 1, "an open connection is in flight");

        table(&router, &[("v1", 0, v1), ("v2", 100, v2)]);
        let mut new = BufReader::new(TcpStream::connect(handle.addr).await.unwrap());
        assert_eq!(ask(&mut new, "b").await.unwrap().as_deref(), Some("v2 b"));
        assert_eq!(
            ask(&mut old, "c").await.unwrap().as_deref(),
            Some("v1 c"),
            "the open connection stays on the instance it reached"
        );
        drop(old);
        let t0 = Instant::now();
        while router.inflight(v1) > 0 && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(router.inflight(v1), 0, "drained once the client closed");
        assert_eq!(router.stats("v2").snapshot().requests, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_instance_is_counted_and_the_next_one_serves() {
        let good = echo("up").await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let router = Router::new("db");
        router.set_table(Table::one_version(&router, "v1", &[dead, good]));
        let handle = router.serve_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        for i in 0..4 {
            let mut c = BufReader::new(TcpStream::connect(handle.addr).await.unwrap());
            assert_eq!(
                ask(&mut c, &i.to_string()).await.unwrap(),
                Some(format!("up {i}"))
            );
        }
        let snap = router.stats("v1").snapshot();
        assert_eq!(snap.requests, 4);
        assert!(snap.connect_errors >= 1, "{snap:?}");
    }

    /// A bulk transfer (past the buffer's growth) arrives whole, and a
    /// client's half-close reaches the instance while the answer still
    /// comes back (a dump, or `psql < file`, ends its input this way).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_transfer_and_a_half_close_go_through() {
        use tokio::io::AsyncReadExt;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            let sum: u64 = all.iter().map(|b| *b as u64).sum();
            s.write_all(format!("{} {sum}\n", all.len()).as_bytes())
                .await
                .unwrap();
        });
        let router = Router::new("db");
        table(&router, &[("v1", 100, sink)]);
        let handle = router.serve_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut c = TcpStream::connect(handle.addr).await.unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        c.write_all(&data).await.unwrap();
        c.shutdown().await.unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.unwrap();
        let sum: u64 = data.iter().map(|b| *b as u64).sum();
        assert_eq!(answer, format!("{} {sum}\n", data.len()));
    }

    /// A `protocol:` change: the HTTP listener is stopped and a TCP one takes
    /// its address at once (the stopped one closes its socket only when its
    /// thread wakes, so a plain bind fails with the address in use), then back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_listener_s_address_is_taken_over_by_the_other_protocol() {
        let v1 = echo("v1").await;
        let router = Router::new("db");
        table(&router, &[("v1", 100, v1)]);
        let http = router
            .serve_protocol("127.0.0.1:0".parse().unwrap(), Protocol::Http, 2, false)
            .unwrap();
        let addr = http.addr;
        // Without `replacing`, a taken address fails at once, as it must
        // when another program holds it.
        let t0 = Instant::now();
        let err = router
            .serve_protocol(addr, Protocol::Tcp, 1, false)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(t0.elapsed() < Duration::from_millis(500));
        let mut current = http;
        for round in 0..20 {
            let protocol = if round % 2 == 0 {
                Protocol::Tcp
            } else {
                Protocol::Http
            };
            current.stop();
            current = router.serve_protocol(addr, protocol, 2, true).unwrap();
            assert_eq!(current.addr, addr);
            let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
            if protocol == Protocol::Tcp {
                assert_eq!(ask(&mut c, "a").await.unwrap().as_deref(), Some("v1 a"));
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_no_instance_the_connection_is_closed() {
        let router = Router::new("db");
        let handle = router.serve_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut c = BufReader::new(TcpStream::connect(handle.addr).await.unwrap());
        let answer = tokio::time::timeout(Duration::from_secs(5), ask(&mut c, "x"))
            .await
            .expect("closed, not left hanging");
        assert!(matches!(answer, Ok(None) | Err(_)), "{answer:?}");
    }
}
