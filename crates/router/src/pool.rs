//! Keep-alive connections to backends, one small pool per instance.
//!
//! Written here instead of using hyper-util's legacy `Client`: the proxy only
//! ever talks HTTP/1.1 to loopback instances, and a lock-light stack of ready
//! `SendRequest`s per backend costs far less per request than the general
//! client's pool (measured by benches/router-vs-nginx.sh). A connection goes back
//! to its pool when the response body is finished (or dropped) and is reused
//! only once hyper says it is ready again; closed ones are discarded.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

type Sender = SendRequest<Full<Bytes>>;

/// Idle connections to one backend.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Sender>>,
}

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

const MAX_IDLE: usize = 512;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

impl Pool {
    async fn checkout(&self, addr: SocketAddr) -> Result<(Sender, bool), SendError> {
        loop {
            let popped = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut s) = popped else { break };
            if s.is_closed() {
                continue;
            }
            if s.is_ready() || s.ready().await.is_ok() {
                return Ok((s, true));
            }
        }
        Ok((connect(addr).await?, false))
    }

    fn checkin(&self, s: Sender) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    /// Sends one request; retries once on a fresh connection when a pooled one had
    /// been closed by the backend before the request was written (a keep-alive race).
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        build: impl Fn() -> Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, SendError> {
        let (mut sender, reused) = self.checkout(addr).await?;
        let resp = match sender.send_request(build()).await {
            Ok(r) => r,
            // The pooled connection died before our request went out: nothing reached the backend.
            Err(e) if reused && (e.is_canceled() || e.is_closed()) => {
                let mut fresh = connect(addr).await?;
                let r = fresh
                    .send_request(build())
                    .await
                    .map_err(SendError::Request)?;
                sender = fresh;
                r
            }
            Err(e) => return Err(SendError::Request(e)),
        };
        let (parts, body) = resp.into_parts();
        Ok(Response::from_parts(
            parts,
            PooledBody {
                inner: body,
                sender: Some(sender),
                pool: self.clone(),
            },
        ))
    }
}

/// A new keep-alive connection; its driver runs on its own task.
async fn connect(addr: SocketAddr) -> Result<Sender, SendError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(SendError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connect(std::io::Error::other(e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A backend's response body; returns the connection to its pool when done.
pub struct PooledBody {
    inner: Incoming,
    sender: Option<Sender>,
    pool: Arc<Pool>,
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some(s) = self.sender.take() {
            self.pool.checkin(s);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = res
            && let Some(s) = self.sender.take()
        {
            self.pool.checkin(s);
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
