//! Keep-alive connections to backends, driven in the task of the client
//! connection that uses them.
//!
//! hyper's client splits a connection into a `SendRequest` handle and a
//! `Connection` future that does the I/O. The usual way spawns that future as a
//! task of its own, so every proxied request hops between two tasks (and often
//! two threads) twice. Here the client connection's task polls the backend
//! connections it holds ([`Local::drive`], joined with the server connection),
//! so a request and its response are read, forwarded and written in one task,
//! the way an event-driven proxy does it — this is most of the router's
//! throughput (benches/router-vs-nginx.sh). When the client goes away its idle
//! backend connections go to the backend's shared [`Pool`], so a new client
//! connection reuses them instead of connecting again.
//!
//! Written here rather than with hyper-util's pooled `Client`: that client
//! spawns each connection's future and cannot hand it to another task.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::thread::ThreadId;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Sender = SendRequest<Full<Bytes>>;
type Conn = Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// Idle connections to one backend, each with the future that drives it, kept
/// apart per thread. A socket is registered with the reactor of the runtime
/// that opened it, and each router thread runs a runtime of its own: a
/// connection opened on one thread and reused on another would have every
/// readiness event of it read by the first thread's event loop and passed on
/// with a cross-thread wake-up (an eventfd write and a context switch per
/// request, measured with strace under benches/router-vs-nginx.sh).
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<(ThreadId, Vec<Idle>)>>,
}

type Idle = (Sender, Conn);

/// Why a request did not get an answer.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made: the request never reached the instance (safe to retry).
    Connect(std::io::Error),
    /// The request was sent (or may have been) and failed.
    Request(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Request(e) => write!(f, "{e}"),
        }
    }
}

/// Idle connections kept per backend and thread.
const MAX_IDLE: usize = 512;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self
            .idle
            .lock()
            .map(|v| v.iter().map(|(_, c)| c.len()).sum::<usize>())
            .unwrap_or(0);
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

impl Pool {
    fn take(&self) -> Option<(Sender, Conn)> {
        let me = std::thread::current().id();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let (_, mine) = idle.iter_mut().find(|(t, _)| *t == me)?;
        while let Some((s, c)) = mine.pop() {
            if !s.is_closed() {
                return Some((s, c));
            }
        }
        None
    }

    fn put(&self, s: Sender, c: Conn) {
        let me = std::thread::current().id();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let at = match idle.iter().position(|(t, _)| *t == me) {
            Some(at) => at,
            None => {
                idle.push((me, Vec::new()));
                idle.len() - 1
            }
        };
        let mine = &mut idle[at].1;
        if mine.len() < MAX_IDLE {
            mine.push((s, c));
        }
    }
}

struct Held {
    id: u64,
    addr: SocketAddr,
    pool: Arc<Pool>,
    sender: Sender,
    conn: Conn,
}

/// The backend connections one client connection holds and drives.
#[derive(Default)]
pub struct Local {
    inner: Mutex<LocalInner>,
}

#[derive(Default)]
struct LocalInner {
    held: Vec<Held>,
    /// The waker of the task running [`Local::drive`], woken when a connection is added.
    waker: Option<Waker>,
    next_id: u64,
}

impl Local {
    fn lock(&self) -> MutexGuard<'_, LocalInner> {
        // Uncontended: only this client connection's task takes it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Polls every held backend connection; never finishes. Run it joined with
    /// the client connection, in the same task.
    pub fn drive(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let me = self.clone();
        poll_fn(move |cx| {
            let mut g = me.lock();
            if !g.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                g.waker = Some(cx.waker().clone());
            }
            // A finished connection future (closed, or failed) is never polled again.
            g.held.retain_mut(|h| h.conn.as_mut().poll(cx).is_pending());
            Poll::Pending
        })
    }

    /// The client connection ended: idle backend connections go back to their
    /// backends' pools, busy ones are dropped (closing them).
    pub fn release(&self) {
        let held = std::mem::take(&mut self.lock().held);
        for h in held {
            if h.sender.is_ready() && !h.sender.is_closed() {
                h.pool.put(h.sender, h.conn);
            }
        }
    }

    /// A ready connection to `addr`: one this client connection holds, else one
    /// from the backend's pool, else a new one.
    async fn acquire(&self, addr: SocketAddr, pool: &Arc<Pool>) -> Result<u64, SendError> {
        for _ in 0..3 {
            let existing = self
                .lock()
                .held
                .iter()
                .find(|h| h.addr == addr && !h.sender.is_closed())
                .map(|h| h.id);
            let id = match existing {
                Some(id) => id,
                None => {
                    let (sender, conn) = match pool.take() {
                        Some(pair) => pair,
                        None => connect(addr).await?,
                    };
                    let mut g = self.lock();
                    let id = g.next_id;
                    g.next_id += 1;
                    g.held.push(Held {
                        id,
                        addr,
                        pool: pool.clone(),
                        sender,
                        conn,
                    });
                    if let Some(w) = g.waker.take() {
                        w.wake();
                    }
                    id
                }
            };
            let ready = poll_fn(|cx| {
                let mut g = self.lock();
                match g.held.iter_mut().find(|h| h.id == id) {
                    Some(h) => h.sender.poll_ready(cx).map(|r| r.is_ok()),
                    None => Poll::Ready(false),
                }
            })
            .await;
            if ready {
                return Ok(id);
            }
            self.lock().held.retain(|h| h.id != id);
        }
        Err(SendError::Connect(std::io::Error::other(
            "the instance keeps closing its connections",
        )))
    }

    /// Sends one request to `addr`. A request that a held or pooled connection
    /// could not take (it closed before the request was written) goes out again
    /// on another connection: it never reached the backend.
    pub async fn send(
        &self,
        addr: SocketAddr,
        pool: &Arc<Pool>,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut req = Some(req);
        for _ in 0..3 {
            let id = self.acquire(addr, pool).await?;
            let fut = {
                let mut g = self.lock();
                match g.held.iter_mut().find(|h| h.id == id) {
                    Some(h) => h
                        .sender
                        .try_send_request(req.take().expect("kept on retry")),
                    None => continue,
                }
            };
            match fut.await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        req = Some(unsent);
                        self.lock().held.retain(|h| h.id != id);
                    }
                    None => return Err(SendError::Request(e.into_error())),
                },
            }
        }
        Err(SendError::Connect(std::io::Error::other(
            "the instance keeps closing its connections",
        )))
    }
}

/// A new keep-alive connection, not yet driven by anyone.
async fn connect(addr: SocketAddr) -> Result<(Sender, Conn), SendError> {
    let stream = TcpStream::connect(addr).await.map_err(SendError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connect(std::io::Error::other(e)))?;
    Ok((sender, Box::pin(conn)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pooled connection is handed out only on the thread (the event loop) that opened it.
    #[test]
    fn idle_connections_stay_with_their_thread() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Arc::new(Pool::default());
        let rt = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let here = rt();
        let (s, c) = here.block_on(connect(addr)).unwrap();
        pool.put(s, c);
        let elsewhere = {
            let pool = pool.clone();
            std::thread::spawn(move || rt().block_on(async { pool.take().is_some() }))
                .join()
                .unwrap()
        };
        assert!(
            !elsewhere,
            "another thread got a connection registered here"
        );
        assert!(here.block_on(async { pool.take().is_some() }));
        assert!(here.block_on(async { pool.take().is_none() }));
        drop(listener);
    }
}
