//! The router's HTTP/1.1 fast path: plain requests and answers proxied
//! without hyper's dispatchers.
//!
//! Why: measured under benches/router-vs-nginx.sh, the router spent about the
//! kernel time nginx spends per request but 7-10 µs of user time against
//! nginx's 5-7, and the difference was about six allocations per request, all
//! inside hyper's server and client dispatchers (the body channel, read
//! buffers, two header maps, the client's callback). Here a request is parsed
//! with `httparse` (hyper's own parser) out of a buffer the connection keeps,
//! its head is written for the instance into a second kept buffer, and the
//! instance's answer comes back the same way, over a backend connection pooled
//! per instance and thread (`Idle`): no allocation per request once a
//! connection is warm. Sockets are read with edge-triggered readiness cleared
//! after a short read, as nginx does, which saves the read that would only
//! answer "nothing more" after most reads.
//!
//! The framing rules are hyper's: Content-Length and chunked bodies are
//! streamed both ways (never buffered whole); HEAD, 1xx, 204 and 304 answers
//! have no body; an answer delimited by the instance closing is sent to the
//! client chunked; `Connection: close` is honoured on both sides; hop-by-hop
//! headers are dropped and `X-Forwarded-For` extended, as the hyper path does.
//! Smuggling is refused as hyper refuses it: a request with both
//! Content-Length and Transfer-Encoding, two Content-Lengths, a
//! Transfer-Encoding that does not end in chunked, an obsolete line fold or
//! any malformed header gets 400, a head over hyper's limit 431, a target
//! over 64 KiB 414, and a malformed chunk size ends the connection.
//!
//! An upgrade (WebSocket) is forwarded with its `Upgrade` header and, on
//! `101`, the two connections are spliced in this task until either closes
//! (`splice`); request bodies are limited to `MAX_BODY`, as on hyper's path.
//!
//! What this path does not handle goes to hyper for the rest of the
//! connection, with the bytes already read: HTTP/1.0 clients, `Expect`,
//! CONNECT, absolute-form targets, a Transfer-Encoding with codings before
//! chunked, and a table that retries a failed canary on stable (that needs
//! the request body kept for a second send; its upgrades stay here).

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Instant, SystemTime};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::{Backend, Peer, Router, STICKY_COOKIE, TableRt};

/// hyper's default limit on a message head (its read buffer's maximum).
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// hyper's default limit on the number of headers.
const MAX_HEADERS: usize = 100;
/// hyper answers 414 to a request target longer than this.
const MAX_URI: usize = 65534;
/// Each connection's read buffer (grown only for a head that needs more).
pub(crate) const BUF: usize = 16 * 1024;
/// Body bytes gathered before they are written on.
const FLUSH_AT: usize = 64 * 1024;
/// A chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// All of a chunked body's trailer fields (hyper's limit too).
const MAX_TRAILERS: usize = 16 * 1024;
/// Idle connections kept per instance and thread.
const MAX_IDLE: usize = 512;
/// How long, and how much, a refused client's remaining bytes are read
/// before its connection closes, and the silence that ends it sooner.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);
const LINGER_QUIET: std::time::Duration = std::time::Duration::from_millis(200);
const LINGER_BYTES: usize = 1024 * 1024;

/// A socket read and written with edge-triggered readiness.
pub(crate) struct Sock {
    /// A client's socket under the idle and head timeouts. The first field:
    /// dropped before the socket closes (see `sweep`).
    watch: Option<crate::sweep::Guard>,
    fd: AsyncFd<std::net::TcpStream>,
    /// Something was written already (for `TCP_NODELAY`, see `write_all`).
    wrote: AtomicBool,
    nodelay: AtomicBool,
    unread: AtomicBool,
}

impl Sock {
    /// A non-blocking socket (accepted or connected through mio, or taken
    /// from tokio) in the current thread's event loop.
    #[allow(unsafe_code)] // tokio's safe constructor is deprecated for an I/O-safety hole; see SAFETY.
    pub(crate) fn new(stream: std::net::TcpStream) -> std::io::Result<Sock> {
        // SAFETY: the stream owns its descriptor and is moved into the
        // AsyncFd, which lends it out only by reference: the descriptor stays
        // open, and the same one, until the AsyncFd is dropped or taken apart
        // (`into_inner` deregisters first), as `register` requires.
        let fd = unsafe {
            AsyncFd::register_with_interest(stream, Interest::READABLE | Interest::WRITABLE)
        }
        .map_err(std::io::Error::from)?;
        Ok(Sock {
            watch: None,
            fd,
            wrote: AtomicBool::new(false),
            nodelay: AtomicBool::new(false),
            unread: AtomicBool::new(false),
        })
    }

    /// The next read asks the kernel before waiting for the event loop: a
    /// client that just connected has usually sent its request already, and
    /// waiting costs a turn of the loop per connection (nginx reads at once
    /// too when it knows data is there). The listener does not set
    /// `TCP_DEFER_ACCEPT` to make sure of it: connections then come in
    /// bursts, and p99 at 16 connections with `Connection: close` went from
    /// 0.97-1.03x nginx's to 1.40x (benches/router-vs-nginx.sh).
    pub(crate) fn expect_data(&self) {
        self.unread.store(true, Ordering::Relaxed);
    }

    /// A connection to `addr`, made without blocking and registered once
    /// (tokio's `connect` registers a socket its `into_std` then deregisters).
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> std::io::Result<Sock> {
        let sock = Sock::new(mio::net::TcpStream::connect(addr)?.into())?;
        // Writable once connected or failed; the error, if any, says which.
        drop(sock.fd.writable().await?);
        if let Some(err) = sock.fd.get_ref().take_error()? {
            return Err(err);
        }
        Ok(sock)
    }

    /// Puts this (client) socket under the router's idle and head timeouts.
    pub(crate) fn watch(&mut self, timeouts: crate::sweep::ClientTimeouts) {
        use std::os::fd::AsRawFd;
        self.watch = Some(crate::sweep::watch(self.fd.as_raw_fd(), timeouts));
    }

    /// The socket, out of its timeouts (ended first, while it is open: see
    /// `sweep`; hyper's path puts it under them again).
    pub(crate) fn into_std(mut self) -> std::net::TcpStream {
        drop(self.watch.take());
        self.fd.into_inner()
    }

    fn mark(&self, f: impl FnOnce(&crate::sweep::Slot)) {
        if let Some(g) = &self.watch {
            f(g.slot());
        }
    }

    /// Reads what is there (0 at the end of the stream). A read that did not
    /// fill `buf` emptied the socket: its readiness is cleared then, so the
    /// next read waits for the next event instead of asking the kernel first
    /// (nginx's `ready = 0` after a short `recv`).
    pub(crate) async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.unread.swap(false, Ordering::Relaxed) {
            match (&mut self.fd.get_ref()).read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| (&mut fd.get_ref()).read(buf)) {
                Ok(Ok(n)) => {
                    if n > 0 && n < buf.len() {
                        // Closed states are never cleared (tokio keeps them), so
                        // an end of stream that came with this data is still seen.
                        ready.clear_ready();
                    }
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `data`. `TCP_NODELAY` is set only before a second
    /// write: Nagle's algorithm holds back a small write only while an earlier
    /// one is unacknowledged, so a connection's first (often only) answer goes
    /// out at once without the system call, as nginx sets it only when a
    /// connection goes keep-alive.
    pub(crate) async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        // Relaxed: only the connection's task uses it.
        if self.wrote.load(Ordering::Relaxed) && !self.nodelay.load(Ordering::Relaxed) {
            self.nodelay.store(true, Ordering::Relaxed);
            let _ = self.fd.get_ref().set_nodelay(true);
        }
        self.wrote.store(true, Ordering::Relaxed);
        while !data.is_empty() {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| (&mut fd.get_ref()).write(data)) {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => {
                    if n < data.len() {
                        ready.clear_ready();
                    }
                    data = &data[n..];
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// An idle connection still usable: nothing arrived on it (no end of
    /// stream, no stray bytes). Asks the kernel only when the event loop has
    /// seen it readable.
    fn idle_and_open(&self) -> bool {
        let mut probe = [0u8; 1];
        match self
            .fd
            .try_io(Interest::READABLE, |s| (&mut &*s).read(&mut probe))
        {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }

    pub(crate) fn shutdown_write(&self) {
        let _ = self.fd.get_ref().shutdown(std::net::Shutdown::Write);
    }
}

/// Buffers of connections that ended, for the next ones of this thread:
/// read buffers (`BUF` bytes, initialised) and output buffers (empty).
type Spares = (Vec<Vec<u8>>, Vec<Vec<u8>>);

thread_local! {
    static SPARE: std::cell::RefCell<Spares> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Spare buffers kept per thread, of each kind.
const SPARES: usize = 64;

/// A read buffer: `BUF` initialised bytes.
pub(crate) fn take_buf() -> Vec<u8> {
    SPARE
        .with_borrow_mut(|(bufs, _)| bufs.pop())
        .unwrap_or_else(|| vec![0; BUF])
}

/// Gives back a read buffer (`BUF` long; one grown further may keep its capacity).
pub(crate) fn give_buf(buf: Vec<u8>) {
    if buf.len() == BUF {
        SPARE.with_borrow_mut(|(bufs, _)| {
            if bufs.len() < SPARES {
                bufs.push(buf);
            }
        });
    }
}

fn take_out() -> Vec<u8> {
    SPARE
        .with_borrow_mut(|(_, outs)| outs.pop())
        .unwrap_or_else(|| Vec::with_capacity(BUF))
}

fn give_out(mut out: Vec<u8>) {
    if out.capacity() <= 2 * FLUSH_AT {
        out.clear();
        SPARE.with_borrow_mut(|(_, outs)| {
            if outs.len() < SPARES {
                outs.push(out);
            }
        });
    }
}

/// Bytes read from a socket and not used yet: `buf[start..end]`. `buf` is all
/// initialised (zeroed once, then reused), so reads go straight into it.
struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Input {
    fn new() -> Input {
        Input {
            buf: take_buf(),
            start: 0,
            end: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more from `sock`; 0 at its end. The buffer grows (up to what a
    /// head may take) only when it is full of unused bytes.
    async fn fill(&mut self, sock: &Sock) -> std::io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() >= MAX_HEAD + BUF {
                return Err(std::io::Error::other("message head too large"));
            } else {
                let grown = (self.buf.len() * 2).clamp(BUF, MAX_HEAD + BUF);
                self.buf.resize(grown, 0);
            }
        }
        let n = sock.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// A connection to an instance, with what was read from it.
pub(crate) struct Upstream {
    sock: Sock,
    input: Input,
    backend: Arc<Backend>,
    /// It served an earlier request (and may have been closed by the instance since).
    reused: bool,
}

impl Upstream {
    /// Back to its instance's pool, if it can serve another request.
    fn release(self) {
        if self.input.data().is_empty() && self.sock.idle_and_open() {
            let backend = self.backend.clone();
            backend.idle.put(self);
        }
    }
}

/// Idle connections to one instance, kept apart per thread: a socket belongs
/// to the event loop of the thread that opened it (see `pool`).
#[derive(Default)]
pub(crate) struct Idle {
    idle: Mutex<Vec<(ThreadId, Vec<Upstream>)>>,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .idle
            .lock()
            .map(|v| v.iter().map(|(_, c)| c.len()).sum::<usize>())
            .unwrap_or(0);
        f.debug_struct("Idle").field("idle", &n).finish()
    }
}

impl Idle {
    fn take(&self) -> Option<Upstream> {
        let me = std::thread::current().id();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let (_, mine) = idle.iter_mut().find(|(t, _)| *t == me)?;
        while let Some(mut up) = mine.pop() {
            if up.sock.idle_and_open() {
                up.reused = true;
                return Some(up);
            }
        }
        None
    }

    fn put(&self, up: Upstream) {
        let me = std::thread::current().id();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let at = match idle.iter().position(|(t, _)| *t == me) {
            Some(at) => at,
            None => {
                idle.push((me, Vec::new()));
                idle.len() - 1
            }
        };
        if idle[at].1.len() < MAX_IDLE {
            idle[at].1.push(up);
        }
    }
}

async fn connect(backend: &Arc<Backend>) -> std::io::Result<Upstream> {
    let sock = Sock::connect(backend.addr).await?;
    let _ = sock.fd.get_ref().set_nodelay(true);
    sock.nodelay.store(true, Ordering::Relaxed);
    Ok(Upstream {
        sock,
        input: Input::new(),
        backend: backend.clone(),
        reused: false,
    })
}

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the sender closes (answers only).
    UntilClose,
}

/// What the client's request head says, once parsed.
#[derive(Debug, PartialEq, Eq)]
enum Prepared {
    /// More bytes are needed.
    Partial,
    /// Refused with this status; the connection closes.
    Reject(u16),
    /// Not this path's business: hyper serves the rest of the connection.
    Fallback,
    Forward(Req),
}

#[derive(Debug, PartialEq, Eq)]
struct Req {
    head_len: usize,
    body: Framing,
    /// The client asked to close after this answer.
    close: bool,
    /// A HEAD request: the answer has no body whatever it says.
    head: bool,
    /// An upgrade (WebSocket) was asked for and forwarded: a 101 answer splices the connections.
    upgrade: bool,
    /// The route chosen, `None` when no version has an instance.
    route: Option<usize>,
    /// The client's cookie does not name the version chosen.
    set_cookie: bool,
}

fn is(name: &str, lower: &str) -> bool {
    name.eq_ignore_ascii_case(lower)
}

/// Hop-by-hop headers, never forwarded (RFC 9110 7.6.1 and the legacy ones).
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .any(|h| is(name, h))
}

/// A Content-Length value: digits only, no sign, no list (RFC 9110 8.6).
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The last coding of a Transfer-Encoding value is `chunked`.
fn ends_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

fn sticky_cookie(value: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(value).ok()?;
    s.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == STICKY_COOKIE).then_some(v)
    })
}

/// Parses the client's request head at the start of `data` and, when it is
/// this path's to forward, writes the head for the instance into `out`.
fn prepare(router: &Router, t: &TableRt, data: &[u8], peer: &Peer, out: &mut Vec<u8>) -> Prepared {
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(data, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if data.len() >= MAX_HEAD => return Prepared::Reject(431),
        Ok(httparse::Status::Partial) => return Prepared::Partial,
        Err(httparse::Error::TooManyHeaders) => return Prepared::Reject(431),
        Err(_) => return Prepared::Reject(400),
    };
    if head_len > MAX_HEAD {
        return Prepared::Reject(431);
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Prepared::Reject(400);
    };
    if path.len() > MAX_URI {
        return Prepared::Reject(414);
    }
    if version != 1 || method == "CONNECT" || !path.starts_with('/') {
        return Prepared::Fallback;
    }
    let mut length = None;
    let mut te_count = 0;
    let mut te_last_chunked = false;
    let mut te_only_chunked = false;
    let mut close = false;
    let mut cookie = None;
    let mut forwarded_for = false;
    // `Connection: upgrade` and an `Upgrade` header: both, or it is no
    // upgrade (RFC 9110 7.8; a 1.0 proxy on the way may have forwarded one).
    let mut connection_upgrade = false;
    let mut upgrade_header = false;
    let mut h2c = false;
    for h in req.headers.iter() {
        let name = h.name;
        if is(name, "content-length") {
            if length.is_some() {
                return Prepared::Reject(400);
            }
            match content_length(h.value) {
                Some(n) => length = Some(n),
                None => return Prepared::Reject(400),
            }
        } else if is(name, "transfer-encoding") {
            te_count += 1;
            te_last_chunked = ends_chunked(h.value);
            te_only_chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if is(name, "connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    connection_upgrade = true;
                }
            }
        } else if is(name, "upgrade") {
            upgrade_header = true;
            h2c |= h.value.split(|b| *b == b',').any(|p| {
                let p = p.trim_ascii();
                p.eq_ignore_ascii_case(b"h2c")
                    || p.len() > 3 && p[..4].eq_ignore_ascii_case(b"h2c/")
            });
        } else if is(name, "expect") {
            return Prepared::Fallback;
        } else if is(name, "cookie") {
            if cookie.is_none() {
                cookie = sticky_cookie(h.value);
            }
        } else if is(name, "x-forwarded-for") {
            forwarded_for = true;
        }
    }
    let body = match (length, te_count) {
        (Some(_), 1..) => return Prepared::Reject(400),
        (None, 1) if te_only_chunked => Framing::Chunked,
        // Codings before chunked: hyper decodes the chunks and keeps the rest.
        (None, 1..) if te_last_chunked => return Prepared::Fallback,
        (None, 1..) => return Prepared::Reject(400),
        (Some(n), _) if n > crate::MAX_BODY as u64 => return Prepared::Reject(413),
        (Some(n), _) => Framing::Length(n),
        (None, _) => Framing::Empty,
    };
    // An upgrade (WebSocket) is forwarded with its Upgrade header and spliced
    // on 101, as nginx's and kamal-proxy's WebSocket proxying does, whatever
    // the method. Not `h2c`: a 101 to it would hand the client an HTTP/2
    // connection straight to one instance, past the router's routing and
    // counting for every request on it ("h2c smuggling"); it goes as a plain
    // request with the upgrade dropped, which RFC 9113 3.1 tells a server that
    // does not speak h2c to answer in HTTP/1.1.
    let upgrade = connection_upgrade && upgrade_header && !h2c;
    // A retry on stable needs the request kept for a second send: hyper's
    // path. An upgrade is never retried there, and stays here.
    if t.retry_on_stable.is_some() && !upgrade {
        return Prepared::Fallback;
    }
    let route = router.pick_route(t, cookie);
    let set_cookie = route.is_some_and(|ri| cookie != Some(t.routes[ri].route.version.as_str()));

    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let keep_upgrade = upgrade && is(h.name, "upgrade");
        if (hop_by_hop(h.name) && !keep_upgrade)
            || is(h.name, "content-length")
            || is(h.name, "x-forwarded-for")
            || (h2c && is(h.name, "http2-settings"))
        {
            continue;
        }
        header(out, h.name.as_bytes(), h.value);
    }
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    // The client's address appended to what earlier proxies said (every
    // X-Forwarded-For line of the request, in order).
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded_for {
        for h in req.headers.iter().filter(|h| is(h.name, "x-forwarded-for")) {
            out.extend_from_slice(h.value);
            out.extend_from_slice(b", ");
        }
    }
    match &peer.ip_header {
        Some(ip) => out.extend_from_slice(ip.as_bytes()),
        None => {
            let _ = write!(out, "{}", peer.addr.ip());
        }
    }
    out.extend_from_slice(b"\r\n");
    match body {
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
    Prepared::Forward(Req {
        head_len,
        body,
        close,
        head: method == "HEAD",
        upgrade,
        route,
        set_cookie,
    })
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the instance's answer head says.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Partial,
    /// Not a valid answer: the client gets 502.
    Bad(&'static str),
    /// A 1xx answer of this length, skipped (the request never asked for one).
    Informational(usize),
    Head {
        len: usize,
        status: u16,
        body: Framing,
        /// The instance's connection can take another request afterwards.
        reusable: bool,
    },
}

/// Parses the instance's answer head at the start of `data` and writes the
/// client's answer head into `out`.
fn answer(
    data: &[u8],
    req: &Req,
    t: &TableRt,
    ri: usize,
    close: bool,
    out: &mut Vec<u8>,
) -> Answer {
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        data,
        &mut headers,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if data.len() >= MAX_HEAD => {
            return Answer::Bad("answer head too large");
        }
        Ok(httparse::Status::Partial) => return Answer::Partial,
        Err(_) => return Answer::Bad("malformed answer"),
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Answer::Bad("malformed answer");
    };
    let switch = status == 101;
    if switch && !req.upgrade {
        return Answer::Bad("switched protocols unasked");
    }
    if (100..200).contains(&status) && !switch {
        return Answer::Informational(len);
    }
    let mut length = None;
    let mut te = None;
    let mut reusable = version == 1;
    let mut has_date = false;
    let ours = t.routes[ri].version_header.as_ref();
    for h in resp.headers.iter() {
        if is(h.name, "content-length") {
            match (length, content_length(h.value)) {
                (_, None) => return Answer::Bad("invalid content-length"),
                (Some(a), Some(b)) if a != b => return Answer::Bad("two content-lengths"),
                (_, n) => length = n,
            }
        } else if is(h.name, "transfer-encoding") {
            te = Some(ends_chunked(h.value));
        } else if is(h.name, "connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
                    reusable = true;
                }
            }
        } else if is(h.name, "date") {
            has_date = true;
        }
    }
    let no_body = req.head || status == 204 || status == 304 || switch;
    let body = match (te, length) {
        // What follows a 101 is the new protocol's, not a body.
        _ if switch => {
            reusable = false;
            Framing::Empty
        }
        _ if no_body => Framing::Empty,
        (Some(true), l) => {
            // Both: Transfer-Encoding wins (RFC 9112 6.3), and a connection
            // that said both is not trusted with another request.
            reusable &= l.is_none();
            Framing::Chunked
        }
        (Some(false), _) | (None, None) => {
            reusable = false;
            Framing::UntilClose
        }
        (None, Some(n)) => Framing::Length(n),
    };

    out.extend_from_slice(b"HTTP/1.1 ");
    let _ = write!(out, "{status:03} ");
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        // A 101 has no content, so no Content-Length either (HEAD, 204 and
        // 304 keep theirs: it tells the length the content would have).
        if (hop_by_hop(h.name) && !(switch && is(h.name, "upgrade")))
            || (is(h.name, "content-length") && (!no_body || switch))
            || (ours.is_some() && is(h.name, crate::VERSION_HEADER))
        {
            continue;
        }
        header(out, h.name.as_bytes(), h.value);
    }
    match body {
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked | Framing::UntilClose => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        Framing::Empty => {}
    }
    if let Some(v) = ours {
        header(out, crate::VERSION_HEADER.as_bytes(), v.as_bytes());
        if t.sticky && req.set_cookie {
            out.extend_from_slice(b"set-cookie: ");
            out.extend_from_slice(STICKY_COOKIE.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"; Path=/; HttpOnly; SameSite=Lax\r\n");
        }
    }
    if !has_date {
        // A proxy forwarding an answer without a date adds one (RFC 9110 6.6.1), as hyper does.
        let _ = write!(
            out,
            "date: {}\r\n",
            httpdate::HttpDate::from(SystemTime::now())
        );
    }
    if switch {
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Answer::Head {
        len,
        status,
        body,
        reusable,
    }
}

/// A chunked body being read (RFC 9112 7.1), strictly: hex sizes that fit in
/// 64 bits, CRLF line ends (never a bare LF), extensions of visible
/// characters, bounded lines and trailers.
#[derive(Debug, Default)]
struct Chunks {
    state: ChunkState,
    trailers: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Need,
    /// A chunk-size line of `used` bytes announcing `size`.
    Size {
        used: usize,
        size: u64,
    },
    /// The next `n` bytes are data.
    Data(usize),
    /// The CRLF after a chunk's data, or a trailer line: skipped.
    Skip(usize),
    /// The last line of the body, `n` bytes.
    Done(usize),
}

#[derive(Debug, PartialEq, Eq)]
struct BadChunk;

/// The length of the line at the start of `buf` without its CRLF, if whole.
fn line(buf: &[u8], limit: usize) -> Result<Option<usize>, BadChunk> {
    match buf.iter().take(limit + 2).position(|b| *b == b'\n') {
        Some(lf) => {
            if lf == 0 || buf[lf - 1] != b'\r' || buf[..lf - 1].contains(&b'\r') {
                return Err(BadChunk);
            }
            Ok(Some(lf - 1))
        }
        None if buf.len() >= limit + 2 => Err(BadChunk),
        None => Ok(None),
    }
}

impl Chunks {
    fn step(&mut self, buf: &[u8]) -> Result<Step, BadChunk> {
        match self.state {
            ChunkState::Size => {
                let Some(end) = line(buf, MAX_CHUNK_LINE)? else {
                    return Ok(Step::Need);
                };
                let l = &buf[..end];
                let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                if digits == 0 {
                    return Err(BadChunk);
                }
                let size = l[..digits].iter().try_fold(0u64, |n, d| {
                    let v = (*d as char).to_digit(16)?;
                    n.checked_mul(16)?.checked_add(u64::from(v))
                });
                let size = size.ok_or(BadChunk)?;
                // Whitespace after the size only before an extension or the
                // end of the line (hyper's "size LWS"); an extension is
                // visible characters.
                let mut i = digits;
                while i < l.len() && (l[i] == b' ' || l[i] == b'\t') {
                    i += 1;
                }
                let ext = &l[i..];
                if !ext.is_empty()
                    && (ext[0] != b';'
                        || !ext
                            .iter()
                            .all(|b| *b == b'\t' || (0x20..0x7f).contains(b) || *b >= 0x80))
                {
                    return Err(BadChunk);
                }
                self.state = if size == 0 {
                    ChunkState::Trailer
                } else {
                    ChunkState::Data(size)
                };
                Ok(Step::Size {
                    used: end + 2,
                    size,
                })
            }
            ChunkState::Data(left) => {
                if buf.is_empty() {
                    return Ok(Step::Need);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                Ok(Step::Data(n))
            }
            ChunkState::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Step::Need);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(BadChunk);
                }
                self.state = ChunkState::Size;
                Ok(Step::Skip(2))
            }
            ChunkState::Trailer => {
                let Some(end) = line(buf, MAX_TRAILERS)? else {
                    return Ok(Step::Need);
                };
                if end == 0 {
                    self.state = ChunkState::Done;
                    return Ok(Step::Done(2));
                }
                self.trailers += end + 2;
                if self.trailers > MAX_TRAILERS || !buf[..end].contains(&b':') {
                    return Err(BadChunk);
                }
                Ok(Step::Skip(end + 2))
            }
            ChunkState::Done => Err(BadChunk),
        }
    }

    /// `n` data bytes of the current chunk were used.
    fn used(&mut self, n: usize) {
        if let ChunkState::Data(left) = self.state {
            let left = left - n as u64;
            self.state = if left == 0 {
                ChunkState::DataEnd
            } else {
                ChunkState::Data(left)
            };
        }
    }
}

/// Why a body stopped.
#[derive(Debug)]
enum Broken {
    /// The sender ended early, sent bad framing, or its socket failed.
    Src,
    /// A chunked body grew past the limit it was relayed under.
    TooLarge,
    /// The receiver's socket failed.
    Dst,
}

async fn flush(dst: &Sock, out: &mut Vec<u8>) -> Result<(), Broken> {
    if !out.is_empty() {
        dst.write_all(out).await.map_err(|_| Broken::Dst)?;
        out.clear();
    }
    Ok(())
}

/// Copies a body from `src` (its buffered bytes first) to `dst`, after what
/// `out` holds already (a head): a length as is, chunks re-chunked (trailers
/// dropped, as hyper's server drops them unless asked), a body delimited by
/// its end as chunks. Written on whenever the sender has nothing more yet, so
/// a streamed body flows. A chunked body stops at the chunk that takes it past
/// `limit` bytes (a length is checked against it before the relay starts).
async fn relay(
    body: Framing,
    src_sock: &Sock,
    src: &mut Input,
    dst: &Sock,
    out: &mut Vec<u8>,
    limit: u64,
) -> Result<(), Broken> {
    match body {
        Framing::Empty => {}
        Framing::Length(mut left) => loop {
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(src.data().len());
            if out.is_empty() && take > 0 {
                dst.write_all(&src.data()[..take])
                    .await
                    .map_err(|_| Broken::Dst)?;
            } else {
                out.extend_from_slice(&src.data()[..take]);
            }
            src.consume(take);
            left -= take as u64;
            if left == 0 {
                break;
            }
            flush(dst, out).await?;
            if src.fill(src_sock).await.map_err(|_| Broken::Src)? == 0 {
                return Err(Broken::Src);
            }
        },
        Framing::Chunked => {
            let mut chunks = Chunks::default();
            let mut total = 0u64;
            loop {
                match chunks.step(src.data()).map_err(|_| Broken::Src)? {
                    Step::Need => {
                        flush(dst, out).await?;
                        if src.fill(src_sock).await.map_err(|_| Broken::Src)? == 0 {
                            return Err(Broken::Src);
                        }
                    }
                    Step::Size { used, size } => {
                        src.consume(used);
                        total = total.saturating_add(size);
                        if total > limit {
                            return Err(Broken::TooLarge);
                        }
                        if size > 0 {
                            let _ = write!(out, "{size:x}\r\n");
                        }
                    }
                    Step::Data(n) => {
                        out.extend_from_slice(&src.data()[..n]);
                        src.consume(n);
                        chunks.used(n);
                        if chunks.state == ChunkState::DataEnd {
                            out.extend_from_slice(b"\r\n");
                        }
                        if out.len() >= FLUSH_AT {
                            flush(dst, out).await?;
                        }
                    }
                    Step::Skip(n) => src.consume(n),
                    Step::Done(n) => {
                        src.consume(n);
                        out.extend_from_slice(b"0\r\n\r\n");
                        break;
                    }
                }
            }
        }
        Framing::UntilClose => loop {
            let n = src.data().len();
            if n > 0 {
                let _ = write!(out, "{n:x}\r\n");
                out.extend_from_slice(src.data());
                out.extend_from_slice(b"\r\n");
                src.consume(n);
            }
            flush(dst, out).await?;
            if src.fill(src_sock).await.map_err(|_| Broken::Src)? == 0 {
                out.extend_from_slice(b"0\r\n\r\n");
                break;
            }
        },
    }
    flush(dst, out).await
}

/// The router's own answer (no instance, a refused request).
fn own_answer(out: &mut Vec<u8>, status: u16, msg: &str, close: bool) {
    let reason = match status {
        400 => "Bad Request",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\ndate: {}\r\n{}\r\n{msg}",
        msg.len(),
        httpdate::HttpDate::from(SystemTime::now()),
        if close { "connection: close\r\n" } else { "" },
    );
}

const TOO_LARGE: &str = "hangar: request body too large (the limit is 16 MiB)\n";

/// What to do after a request.
enum Next {
    KeepAlive,
    Close,
    /// Close after a refusal: the client may have sent bytes not read.
    Abort,
    Fallback,
}

/// The client connection.
struct Client {
    sock: Sock,
    input: Input,
    out: Vec<u8>,
}

/// Serves a client connection until it closes, or until a request this path
/// does not handle: then the socket and the bytes read but not used are
/// returned, for hyper to serve the rest.
pub(crate) async fn serve(
    router: &Router,
    sock: Sock,
    peer: &Peer,
) -> Option<(std::net::TcpStream, Vec<u8>)> {
    let mut c = Client {
        sock,
        input: Input::new(),
        out: take_out(),
    };
    let mut held: Option<Upstream> = None;
    let next = loop {
        match request(router, &mut c, peer, &mut held).await {
            Next::KeepAlive => c.sock.mark(crate::sweep::Slot::idle),
            other => break other,
        }
    };
    if let Some(up) = held.take() {
        up.release();
    }
    let Client { sock, input, out } = c;
    give_out(out);
    match next {
        Next::Fallback => {
            let rest = input.data().to_vec();
            give_buf(input.buf);
            Some((sock.into_std(), rest))
        }
        Next::Abort => {
            // A refusal may leave part of the request unread, and closing a
            // socket with unread bytes resets the connection, which can
            // destroy the answer before the client reads it. So, as nginx's
            // lingering close: the writing side is shut, and what the client
            // still sends is read and dropped for a while before closing.
            sock.shutdown_write();
            let mut buf = input.buf;
            let mut left = LINGER_BYTES;
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(Ok(n @ 1..)) =
                    tokio::time::timeout(LINGER_QUIET, sock.read(&mut buf)).await
                {
                    left = left.saturating_sub(n);
                    if left == 0 {
                        break;
                    }
                }
            })
            .await;
            give_buf(buf);
            None
        }
        // Everything the client sent was read: closing sends the FIN after
        // the answer, no shutdown needed (nginx does the same).
        Next::KeepAlive | Next::Close => {
            give_buf(input.buf);
            None
        }
    }
}

/// Serves one request of the client connection.
async fn request(
    router: &Router,
    c: &mut Client,
    peer: &Peer,
    held: &mut Option<Upstream>,
) -> Next {
    let t = router.table.load_full();
    let req = loop {
        c.out.clear();
        match prepare(router, &t, c.input.data(), peer, &mut c.out) {
            Prepared::Forward(req) => {
                c.sock.mark(crate::sweep::Slot::busy);
                break req;
            }
            Prepared::Partial => {
                if !c.input.data().is_empty() {
                    // The head deadline runs from a head's first byte.
                    c.sock.mark(crate::sweep::Slot::head_started);
                }
                match c.input.fill(&c.sock).await {
                    // Also how a connection the sweeper shut for a timeout ends.
                    Ok(0) | Err(_) => return Next::Close,
                    Ok(_) => {}
                }
            }
            Prepared::Fallback => {
                c.out.clear();
                return Next::Fallback;
            }
            Prepared::Reject(status) => {
                c.out.clear();
                let msg = match status {
                    413 => TOO_LARGE,
                    414 => "hangar: request target too long\n",
                    431 => "hangar: request header fields too large\n",
                    _ => "hangar: malformed request\n",
                };
                own_answer(&mut c.out, status, msg, true);
                let _ = c.sock.write_all(&c.out).await;
                return Next::Abort;
            }
        }
    };
    let Some(first) = req.route else {
        c.input.consume(req.head_len);
        let unread_body = req.body != Framing::Empty && req.body != Framing::Length(0);
        let close = req.close || unread_body;
        c.out.clear();
        own_answer(
            &mut c.out,
            503,
            "hangar: no healthy instance for this service\n",
            close,
        );
        return match c.sock.write_all(&c.out).await {
            Ok(()) if unread_body => Next::Abort,
            Ok(()) if !close => Next::KeepAlive,
            _ => Next::Close,
        };
    };

    // The request's head and as much of its body as was read: a body read
    // whole (the usual small one) can be sent again on a fresh connection
    // when a pooled one turns out closed by the instance.
    c.input.consume(req.head_len);
    let mut rest = req.body;
    if let Framing::Length(n) = req.body {
        let take = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(c.input.data().len());
        c.out.extend_from_slice(&c.input.data()[..take]);
        c.input.consume(take);
        rest = Framing::Length(n - take as u64);
    }
    let replayable = matches!(rest, Framing::Empty | Framing::Length(0));
    let close = req.close;

    // The chosen version first, then the others, each instance in turn: only
    // a connection that could not be made moves on (nothing was sent then).
    let mut last_err = None;
    for (_, ri, backend) in t.try_order(first) {
        let route = &t.routes[ri];
        let up = match acquire(held, backend).await {
            Ok(up) => up,
            Err(err) => {
                route.stats.record_connect_error();
                last_err = Some(err);
                continue;
            }
        };
        backend.inflight.fetch_add(1, Ordering::Relaxed);
        let next = exchange(c, up, &req, rest, replayable, &t, ri, close, held).await;
        backend.inflight.fetch_sub(1, Ordering::Relaxed);
        match next {
            Exchanged::Next(next) => return next,
            Exchanged::NotSent(err) => {
                route.stats.record_connect_error();
                last_err = Some(err);
            }
        }
    }
    let msg = format!(
        "hangar: no instance of {} answered: connect: {}\n",
        router.name,
        last_err.map_or_else(|| "no instance".to_string(), |e| e.to_string())
    );
    let close = close || !replayable;
    c.out.clear();
    own_answer(&mut c.out, 502, &msg, close);
    match c.sock.write_all(&c.out).await {
        Ok(()) if !replayable => Next::Abort,
        Ok(()) if !close => Next::KeepAlive,
        _ => Next::Close,
    }
}

/// A connection to `backend`: the one this client connection holds, else an
/// idle one of the thread, else a new one.
async fn acquire(held: &mut Option<Upstream>, backend: &Arc<Backend>) -> std::io::Result<Upstream> {
    if let Some(mut up) = held.take() {
        if Arc::ptr_eq(&up.backend, backend) && up.sock.idle_and_open() {
            up.reused = true;
            return Ok(up);
        }
        up.release();
    }
    match backend.idle.take() {
        Some(up) => Ok(up),
        None => connect(backend).await,
    }
}

enum Exchanged {
    Next(Next),
    /// Nothing reached the instance: another may be tried.
    NotSent(std::io::Error),
}

/// The instance's answer cannot be relayed: 502, and the client connection
/// closes (its request may not have been read whole).
async fn bad_gateway(c: &mut Client, why: &str) -> Next {
    c.out.clear();
    let msg = format!("hangar: the instance's answer was unusable: {why}\n");
    own_answer(&mut c.out, 502, &msg, true);
    let _ = c.sock.write_all(&c.out).await;
    Next::Abort
}

/// Sends the request (`c.out` holds its head and the body read so far, `rest`
/// is the body still to come) and relays the answer. A connection that can
/// take another request afterwards goes to `held`.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    c: &mut Client,
    mut up: Upstream,
    req: &Req,
    rest: Framing,
    replayable: bool,
    t: &TableRt,
    ri: usize,
    close: bool,
    held: &mut Option<Upstream>,
) -> Exchanged {
    let route = &t.routes[ri];
    let started = Instant::now();
    // A pooled connection the instance closed since is found on the first
    // write or read; a request that can be sent again goes on a new one.
    let mut fresh_tried = !up.reused;
    let (len, status, body, reusable) = loop {
        if let Err(err) = up.sock.write_all(&c.out).await {
            if fresh_tried {
                return Exchanged::NotSent(err);
            }
            fresh_tried = true;
            match connect(&up.backend).await {
                Ok(new) => up = new,
                Err(e) => return Exchanged::NotSent(e),
            }
            continue;
        }
        if !replayable {
            c.out.clear();
            let limit = crate::MAX_BODY as u64;
            match relay(rest, &c.sock, &mut c.input, &up.sock, &mut c.out, limit).await {
                Ok(()) => {}
                Err(Broken::TooLarge) => {
                    // Refused as nginx refuses it: the instance's connection
                    // is mid-request and is dropped (closed), the client gets
                    // 413 and its connection closes after a lingering read.
                    c.out.clear();
                    own_answer(&mut c.out, 413, TOO_LARGE, true);
                    let _ = c.sock.write_all(&c.out).await;
                    return Exchanged::Next(Next::Abort);
                }
                Err(Broken::Src) => {
                    // The client's body broke off or was malformed: the
                    // instance's connection is mid-request and is dropped.
                    c.out.clear();
                    own_answer(&mut c.out, 400, "hangar: malformed request body\n", true);
                    let _ = c.sock.write_all(&c.out).await;
                    return Exchanged::Next(Next::Abort);
                }
                Err(Broken::Dst) => {
                    route.stats.record(started.elapsed(), 502);
                    return Exchanged::Next(
                        bad_gateway(c, "the instance closed the connection").await,
                    );
                }
            }
        }
        // The answer's head, 1xx answers skipped. A request that may be sent
        // again stays at the front of `c.out`; the client's head is written
        // after it and moved to the front once whole.
        let start = c.out.len();
        let mut got_any = false;
        let parsed = loop {
            match answer(up.input.data(), req, t, ri, close, &mut c.out) {
                Answer::Head {
                    len,
                    status,
                    body,
                    reusable,
                } => {
                    c.out.drain(..start);
                    break Some((len, status, body, reusable));
                }
                Answer::Informational(len) => {
                    c.out.truncate(start);
                    up.input.consume(len);
                    got_any = true;
                    continue;
                }
                Answer::Bad(why) => {
                    c.out.truncate(start);
                    route.stats.record(started.elapsed(), 502);
                    return Exchanged::Next(bad_gateway(c, why).await);
                }
                Answer::Partial => {
                    c.out.truncate(start);
                    got_any |= !up.input.data().is_empty();
                }
            }
            match up.input.fill(&up.sock).await {
                Ok(n) if n > 0 => {}
                _ => break None,
            }
        };
        match parsed {
            Some(head) => break head,
            None if !got_any && !fresh_tried && replayable => {
                fresh_tried = true;
                match connect(&up.backend).await {
                    Ok(new) => up = new,
                    Err(e) => return Exchanged::NotSent(e),
                }
            }
            None => {
                route.stats.record(started.elapsed(), 502);
                return Exchanged::Next(bad_gateway(c, "the instance closed the connection").await);
            }
        }
    };
    route.stats.record(started.elapsed(), status);
    up.input.consume(len);
    if status == 101 {
        // Counted once, as the request it was; in flight (the caller's count)
        // until either side closes, so a drain waits for it.
        return Exchanged::Next(splice(c, up).await);
    }
    if relay(body, &up.sock, &mut up.input, &c.sock, &mut c.out, u64::MAX)
        .await
        .is_err()
    {
        // The answer is cut short: the client sees its connection end, as
        // hyper ends it; neither connection can carry another message.
        return Exchanged::Next(Next::Abort);
    }
    if reusable && up.input.data().is_empty() {
        // The connection for this client's next request (or another's).
        *held = Some(up);
    }
    Exchanged::Next(if close { Next::Close } else { Next::KeepAlive })
}

/// After `101 Switching Protocols` (in `c.out`): the connections carry the
/// new protocol, copied both ways until both ends have closed (an end of
/// stream is passed on as a half-close) or either fails. Bytes either side
/// sent after its head go first. The connections' read buffers are the copy
/// buffers: nothing is allocated.
async fn splice(c: &mut Client, mut up: Upstream) -> Next {
    c.out.extend_from_slice(up.input.data());
    up.input.consume(up.input.data().len());
    if c.sock.write_all(&c.out).await.is_err() {
        return Next::Close;
    }
    c.out.clear();
    if !c.input.data().is_empty() {
        if up.sock.write_all(c.input.data()).await.is_err() {
            return Next::Close;
        }
        c.input.consume(c.input.data().len());
    }
    async fn pipe(src: &Sock, buf: &mut [u8], dst: &Sock) -> std::io::Result<()> {
        loop {
            let n = src.read(buf).await?;
            if n == 0 {
                dst.shutdown_write();
                return Ok(());
            }
            dst.write_all(&buf[..n]).await?;
        }
    }
    let _ = tokio::try_join!(
        pipe(&c.sock, &mut c.input.buf, &up.sock),
        pipe(&up.sock, &mut up.input.buf, &c.sock),
    );
    Next::Close
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Route, Table};

    fn router(versions: &[&str]) -> (Arc<Router>, Arc<TableRt>) {
        let router = Router::new("api");
        let routes = versions
            .iter()
            .enumerate()
            .map(|(i, v)| Route {
                version: (*v).into(),
                weight: 50,
                backends: vec![router.backend(SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)))],
            })
            .collect();
        router.set_table(Table {
            routes,
            retry_on_stable: None,
        });
        let t = router.table.load_full();
        (router, t)
    }

    use std::net::SocketAddr;

    fn prep(raw: &str) -> (Prepared, String) {
        let (router, t) = router(&["v1"]);
        let peer = Peer::new(SocketAddr::from(([10, 0, 0, 7], 5555)));
        let mut out = Vec::new();
        let p = prepare(&router, &t, raw.as_bytes(), &peer, &mut out);
        (p, String::from_utf8(out).unwrap())
    }

    fn forwarded(raw: &str) -> (Req, String) {
        match prep(raw) {
            (Prepared::Forward(req), out) => (req, out),
            (other, _) => panic!("{raw:?} was not forwarded: {other:?}"),
        }
    }

    #[test]
    fn a_plain_request_is_forwarded_with_hop_by_hop_headers_dropped() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\nAccept: */*\r\n\r\nNEXT";
        let (req, out) = forwarded(raw);
        assert_eq!(req.head_len, raw.len() - 4);
        assert_eq!(req.body, Framing::Empty);
        assert!(req.close && !req.head);
        assert_eq!(req.route, Some(0));
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nx-forwarded-for: 1.2.3.4, 10.0.0.7\r\n\r\n"
        );
    }

    #[test]
    fn bodies_keep_their_framing_and_one_framing_header() {
        let (req, out) =
            forwarded("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0005\r\n\r\nhello");
        assert_eq!(req.body, Framing::Length(5));
        assert_eq!(out.matches("content-length: 5\r\n").count(), 1, "{out}");
        assert!(!out.contains("0005"));
        let (req, out) =
            forwarded("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(req.body, Framing::Chunked);
        assert_eq!(
            out.to_ascii_lowercase()
                .matches("transfer-encoding")
                .count(),
            1
        );
        let (req, _) = forwarded("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(req.head && !req.close);
    }

    #[test]
    fn smuggling_attempts_are_refused() {
        for (raw, status) in [
            // Both framings: which one a next hop believes is the attack.
            (
                "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
                400,
            ),
            ("POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 0x4\r\n\r\n", 400),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            ("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                400,
            ),
            // An obsolete line fold, a space before the colon, a bare LF in a value.
            (
                "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
                400,
            ),
            ("GET / HTTP/1.1\r\nContent-Length : 4\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 400),
            ("GET /\x7f HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1 extra\r\n\r\n", 400),
        ] {
            assert_eq!(prep(raw).0, Prepared::Reject(status), "{raw:?}");
        }
    }

    #[test]
    fn heads_over_the_limits_are_refused_as_hyper_refuses_them() {
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(prep(&raw).0, Prepared::Reject(431));
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            prep(&big).0,
            Prepared::Reject(431),
            "an unfinished head over the limit"
        );
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI));
        assert_eq!(prep(&long).0, Prepared::Reject(414));
        assert_eq!(prep("GET / HTTP/1.1\r\nHost: x\r\n").0, Prepared::Partial);
    }

    #[test]
    fn what_this_path_does_not_handle_goes_to_hyper() {
        for raw in [
            "GET / HTTP/1.0\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(prep(raw).0, Prepared::Fallback, "{raw:?}");
        }
        // A table that retries a failed canary on stable needs the body kept: hyper's path.
        let (router, _) = router(&["stable", "canary"]);
        let mut table = router.table();
        table.retry_on_stable = Some(("canary".into(), "stable".into()));
        router.set_table(table);
        let peer = Peer::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        let p = prepare(
            &router,
            &router.table.load(),
            b"GET / HTTP/1.1\r\n\r\n",
            &peer,
            &mut Vec::new(),
        );
        assert_eq!(p, Prepared::Fallback);
    }

    #[test]
    fn upgrades_are_forwarded_with_their_headers_and_h2c_is_not() {
        let (req, out) = forwarded(
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
        );
        assert!(req.upgrade && !req.close);
        assert_eq!(
            out,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nconnection: upgrade\r\nx-forwarded-for: 10.0.0.7\r\n\r\n"
        );
        // Half an upgrade, or h2c: a plain request, its upgrade dropped.
        for raw in [
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket, H2C\r\n\r\n",
        ] {
            let (req, out) = forwarded(raw);
            assert!(!req.upgrade, "{raw:?}");
            let lower = out.to_ascii_lowercase();
            assert!(
                !lower.contains("upgrade") && !lower.contains("http2-settings"),
                "{raw:?} became {out:?}"
            );
        }
        // The answer to an upgrade keeps its Upgrade header and says so in Connection.
        let (_router, t) = router(&["v1"]);
        let req = Req {
            head_len: 0,
            body: Framing::Empty,
            close: false,
            head: false,
            upgrade: true,
            route: Some(0),
            set_cookie: false,
        };
        let mut out = Vec::new();
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\nSec-WebSocket-Accept: a\r\nDate: d\r\n\r\nFRAME";
        let a = answer(raw, &req, &t, 0, false, &mut out);
        assert!(
            matches!(a, Answer::Head { status: 101, body: Framing::Empty, reusable: false, len } if len == raw.len() - 5),
            "{a:?}"
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\nDate: d\r\nx-hangar-version: v1\r\nconnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn the_sticky_cookie_picks_the_version() {
        let (router, t) = router(&["blue", "green"]);
        let peer = Peer::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        for _ in 0..20 {
            let raw = "GET / HTTP/1.1\r\nCookie: a=b; hangar_version=green\r\n\r\n";
            let Prepared::Forward(req) =
                prepare(&router, &t, raw.as_bytes(), &peer, &mut Vec::new())
            else {
                panic!("not forwarded")
            };
            assert_eq!((req.route, req.set_cookie), (Some(1), false));
        }
    }

    fn ans(raw: &str, head: bool) -> (Answer, String) {
        let (_router, t) = router(&["v1", "v2"]);
        let req = Req {
            head_len: 0,
            body: Framing::Empty,
            close: false,
            head,
            upgrade: false,
            route: Some(0),
            set_cookie: true,
        };
        let mut out = Vec::new();
        let a = answer(raw.as_bytes(), &req, &t, 0, false, &mut out);
        (a, String::from_utf8(out).unwrap())
    }

    fn framing(raw: &str, head: bool) -> (Framing, bool, String) {
        match ans(raw, head) {
            (
                Answer::Head {
                    body,
                    reusable,
                    len,
                    ..
                },
                out,
            ) => {
                assert_eq!(len, raw.find("\r\n\r\n").unwrap() + 4);
                (body, reusable, out)
            }
            (other, _) => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn answers_are_framed_as_hyper_frames_them() {
        let d = "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n";
        let (b, r, out) = framing(
            &format!(
                "HTTP/1.1 200 OK\r\n{d}Content-Length: 3\r\nConnection: keep-alive\r\nx-hangar-version: forged\r\n\r\nabc"
            ),
            false,
        );
        assert_eq!((b, r), (Framing::Length(3), true));
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 200 OK\r\n{d}content-length: 3\r\nx-hangar-version: v1\r\nset-cookie: hangar_version=v1; Path=/; HttpOnly; SameSite=Lax\r\n\r\n"
            )
        );
        // No body, whatever the head says: HEAD, 204, 304 (their Content-Length kept).
        let (b, r, out) = framing(
            &format!("HTTP/1.1 200 OK\r\n{d}Content-Length: 10\r\n\r\n"),
            true,
        );
        assert_eq!((b, r), (Framing::Empty, true));
        assert!(out.contains("Content-Length: 10\r\n"), "{out}");
        assert_eq!(
            framing(&format!("HTTP/1.1 204 No Content\r\n{d}\r\n"), false).0,
            Framing::Empty
        );
        assert_eq!(
            framing(
                &format!("HTTP/1.1 304 Not Modified\r\n{d}Content-Length: 7\r\n\r\n"),
                false
            )
            .0,
            Framing::Empty
        );
        // Chunked, re-chunked to the client.
        let (b, r, out) = framing(
            &format!("HTTP/1.1 200 OK\r\n{d}Transfer-Encoding: chunked\r\n\r\n"),
            false,
        );
        assert_eq!((b, r), (Framing::Chunked, true));
        assert_eq!(out.matches("transfer-encoding: chunked").count(), 1);
        // Both: chunked wins, the Content-Length goes, the connection is not reused.
        let (b, r, out) = framing(
            &format!(
                "HTTP/1.1 200 OK\r\n{d}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            false,
        );
        assert_eq!((b, r), (Framing::Chunked, false));
        assert!(
            !out.to_ascii_lowercase().contains("content-length"),
            "{out}"
        );
        // Delimited by the close: chunked to the client, whose connection stays open.
        let (b, r, out) = framing(&format!("HTTP/1.1 200 OK\r\n{d}\r\n"), false);
        assert_eq!((b, r), (Framing::UntilClose, false));
        assert!(
            out.contains("transfer-encoding: chunked\r\n") && !out.contains("connection: close")
        );
        let (b, r, _) = framing(
            &format!("HTTP/1.1 200 OK\r\n{d}Transfer-Encoding: gzip\r\n\r\n"),
            false,
        );
        assert_eq!((b, r), (Framing::UntilClose, false));
        // The instance's wish to close; HTTP/1.0 closes unless it says keep-alive.
        assert!(
            !framing(
                &format!("HTTP/1.1 200 OK\r\n{d}Content-Length: 0\r\nConnection: close\r\n\r\n"),
                false
            )
            .1
        );
        assert!(
            !framing(
                &format!("HTTP/1.0 200 OK\r\n{d}Content-Length: 0\r\n\r\n"),
                false
            )
            .1
        );
        let (_, r, out) = framing(
            &format!("HTTP/1.0 200 OK\r\n{d}Content-Length: 0\r\nConnection: keep-alive\r\n\r\n"),
            false,
        );
        assert!(r);
        assert!(
            out.starts_with("HTTP/1.1 200 OK\r\n"),
            "the client's connection is HTTP/1.1"
        );
        // A missing date is added.
        assert!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false)
                .2
                .contains("\r\ndate: ")
        );
    }

    #[test]
    fn bad_and_informational_answers() {
        assert_eq!(
            ans("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", false).0,
            Answer::Informational(25)
        );
        assert!(matches!(
            ans("HTTP/1.1 101 Switching Protocols\r\n\r\n", false).0,
            Answer::Bad(_)
        ));
        assert!(matches!(
            ans(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                false
            )
            .0,
            Answer::Bad(_)
        ));
        assert!(matches!(
            ans("HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", false).0,
            Answer::Bad(_)
        ));
        assert!(matches!(
            ans("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false).0,
            Answer::Bad(_)
        ));
        assert!(matches!(
            ans("HTTP/1.1 2000 OK\r\n\r\n", false).0,
            Answer::Bad(_)
        ));
        assert_eq!(
            ans("HTTP/1.1 200 OK\r\nContent-Le", false).0,
            Answer::Partial
        );
    }

    /// Decodes a whole chunked body: the data, or the first error.
    fn dechunk(raw: &[u8]) -> Result<(Vec<u8>, usize), BadChunk> {
        let mut c = Chunks::default();
        let (mut at, mut data) = (0, Vec::new());
        loop {
            match c.step(&raw[at..])? {
                Step::Need => return Err(BadChunk),
                Step::Size { used, .. } | Step::Skip(used) => at += used,
                Step::Data(n) => {
                    data.extend_from_slice(&raw[at..at + n]);
                    c.used(n);
                    at += n;
                }
                Step::Done(n) => return Ok((data, at + n)),
            }
        }
    }

    #[test]
    fn chunks_are_read_strictly() {
        let (data, used) =
            dechunk(b"5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT").unwrap();
        assert_eq!(data, b"hello0123456789");
        assert_eq!(used, 45);
        assert_eq!(
            dechunk(b"0000000000000000000001\r\na\r\n0\r\n\r\n")
                .unwrap()
                .0,
            b"a"
        );
        for bad in [
            &b"zz\r\n"[..],
            b"-1\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\x01\r\nhello\r\n0\r\n\r\n",
            b"5\r\r\nhello\r\n0\r\n\r\n",
            b"0\r\nno-colon\r\n\r\n",
            b"\r\n",
        ] {
            assert_eq!(
                dechunk(bad),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("5;{}\r\n", "a".repeat(MAX_CHUNK_LINE));
        assert_eq!(Chunks::default().step(long.as_bytes()), Err(BadChunk));
        assert_eq!(Chunks::default().step(b"5;aaa"), Ok(Step::Need));
    }
}

#[cfg(test)]
mod spare_tests {
    use super::*;

    /// An output buffer given back is never handed out as a read buffer (an
    /// empty read buffer reads 0 bytes: the TCP mode would take it for the
    /// end of the stream).
    #[test]
    fn the_refusal_of_a_large_body_names_the_limit() {
        assert!(TOO_LARGE.contains(&format!(" {} MiB", crate::MAX_BODY >> 20)));
    }

    #[test]
    fn spare_buffers_keep_their_kind() {
        give_out(Vec::with_capacity(10));
        give_buf(vec![0; BUF]);
        give_out(Vec::new());
        for _ in 0..3 {
            assert_eq!(take_buf().len(), BUF);
        }
        assert!(take_out().is_empty());
        give_buf(vec![0; 10]);
        assert_eq!(
            take_buf().len(),
            BUF,
            "a buffer of another size is not kept"
        );
    }
}
