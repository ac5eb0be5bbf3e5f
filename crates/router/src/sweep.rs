//! Client connections' idle and head timeouts, enforced by one sweeper
//! thread rather than a timer per request.
//!
//! Why: the fast path is measured against nginx at CPU per request
//! (benches/router-vs-nginx.sh), and arming and disarming a tokio timer
//! around every head read costs a timer-wheel insertion and removal each
//! time. Here a connection only writes what it is doing and since when (one
//! relaxed store of a coarse clock, read from memory, no system call) at the
//! two moments a request starts and ends; a thread wakes every period (an
//! eighth of the shortest timeout, at most a second), advances the coarse clock and shuts down (`shutdown(2)`) the sockets of
//! connections idle or stuck in a head for too long. The connection's pending
//! read then returns the end of the stream and it closes the way it closes
//! when the client leaves, on both HTTP paths, with no code of its own.
//!
//! A socket is shut only while its connection holds it open: the
//! connection's [`Guard`] is dropped before its socket is closed (it is the
//! socket's first field), and that drop waits for a shutdown in progress, so
//! the sweeper never shuts a descriptor number reused by another socket.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the sweeper looks (a timeout fires up to two periods late): an
/// eighth of the shortest timeout in use, within these bounds, so nginx's
/// defaults cost one wake-up a second.
const MIN_PERIOD: Duration = Duration::from_millis(10);
const MAX_PERIOD: Duration = Duration::from_secs(1);

/// How long a client connection may wait, as nginx bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// A keep-alive connection with no request under way is closed after this
    /// (nginx's `keepalive_timeout`, 75 s).
    pub idle: Duration,
    /// A request head must arrive whole within this: a connection's first
    /// from when it opened, a later one from its first byte (nginx's
    /// `client_header_timeout`, 60 s). Closes a slowloris client.
    pub head: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            idle: Duration::from_secs(75),
            head: Duration::from_secs(60),
        }
    }
}

// What a connection is doing, in the low two bits of `Slot::word`.
const HEAD: u64 = 0;
const IDLE: u64 = 1;
const BUSY: u64 = 2;

// `Slot::kill`: open, being shut by the sweeper, shut, closed by its connection.
const OPEN: u8 = 0;
const SHUTTING: u8 = 1;
const SHUT: u8 = 2;
const CLOSED: u8 = 3;

/// One client connection as the sweeper sees it.
pub(crate) struct Slot {
    /// (coarse milliseconds << 2) | state; written by its connection only.
    word: AtomicU64,
    kill: AtomicU8,
    fd: RawFd,
    idle_ms: u64,
    head_ms: u64,
}

impl Slot {
    fn set(&self, state: u64) {
        self.word.store(now_ms() << 2 | state, Ordering::Relaxed);
    }

    /// A request is being served: no timeout applies (a long answer, a slow
    /// upload, a WebSocket are the application's business).
    pub(crate) fn busy(&self) {
        self.set(BUSY);
    }

    /// The connection waits for its next request, from now.
    pub(crate) fn idle(&self) {
        self.set(IDLE);
    }

    /// Part of a head arrived: the head timeout runs from now, once per head.
    pub(crate) fn head_started(&self) {
        if self.word.load(Ordering::Relaxed) & 3 == IDLE {
            self.set(HEAD);
        }
    }

    /// Bytes were written while idle (the end of an answer hyper is still
    /// writing): the idle time counts from the last of them.
    pub(crate) fn wrote(&self) {
        if self.word.load(Ordering::Relaxed) & 3 == IDLE {
            self.set(IDLE);
        }
    }
}

/// A connection's registration; dropping it (before the socket closes) ends
/// the sweeper's right to shut the socket.
pub(crate) struct Guard(Arc<Slot>);

impl Guard {
    pub(crate) fn slot(&self) -> &Arc<Slot> {
        &self.0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        loop {
            match self.0.kill.load(Ordering::Acquire) {
                // The sweeper is in `shutdown(2)` on this descriptor: the
                // socket stays open until it is out.
                SHUTTING => std::thread::yield_now(),
                k => {
                    if self
                        .0
                        .kill
                        .compare_exchange(k, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return;
                    }
                }
            }
        }
    }
}

type Registry = Mutex<Vec<Arc<Slot>>>;

struct Sweeper {
    epoch: Instant,
    /// Milliseconds since `epoch`, advanced every period.
    now_ms: AtomicU64,
    /// The shortest timeout any connection was given, in milliseconds.
    shortest_ms: AtomicU64,
    /// The sweeper's thread, woken when a shorter timeout shortens its period.
    thread: Option<std::thread::Thread>,
    /// Each thread's connections, apart so that registering takes a lock
    /// only the sweeper shares.
    registries: Mutex<Vec<Arc<Registry>>>,
}

fn sweeper() -> &'static Sweeper {
    static SWEEPER: OnceLock<Sweeper> = OnceLock::new();
    SWEEPER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("router-sweep".into())
            .spawn(|| {
                let s = sweeper();
                let mut period = MAX_PERIOD;
                loop {
                    std::thread::park_timeout(period);
                    let eighth = Duration::from_millis(s.shortest_ms.load(Ordering::Relaxed) / 8);
                    let next = eighth.clamp(MIN_PERIOD, MAX_PERIOD);
                    // A connection's mark may be up to a period stale (the
                    // coarse clock it read), so one more period is waited:
                    // a timeout fires late, never early.
                    sweep(s, period.max(next));
                    period = next;
                }
            });
        if let Err(e) = &spawned {
            tracing::error!("router: no sweeper thread, client timeouts are off: {e}");
        }
        Sweeper {
            thread: spawned.ok().map(|h| h.thread().clone()),
            epoch: Instant::now(),
            now_ms: AtomicU64::new(0),
            shortest_ms: AtomicU64::new(u64::MAX),
            registries: Mutex::default(),
        }
    })
}

fn now_ms() -> u64 {
    sweeper().now_ms.load(Ordering::Relaxed)
}

thread_local! {
    static MINE: Arc<Registry> = {
        let r = Arc::<Registry>::default();
        sweeper()
            .registries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r.clone());
        r
    };
}

/// Puts a client connection (its socket `fd`, open for as long as the
/// guard lives) under `timeouts`, waiting for its first head from now.
pub(crate) fn watch(fd: RawFd, timeouts: ClientTimeouts) -> Guard {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let shortest = ms(timeouts.idle.min(timeouts.head));
    let s = sweeper();
    if shortest < s.shortest_ms.load(Ordering::Relaxed) {
        s.shortest_ms.fetch_min(shortest, Ordering::Relaxed);
        if let Some(t) = &s.thread {
            t.unpark();
        }
    }
    let slot = Arc::new(Slot {
        word: AtomicU64::new(now_ms() << 2 | HEAD),
        kill: AtomicU8::new(OPEN),
        fd,
        idle_ms: ms(timeouts.idle),
        head_ms: ms(timeouts.head),
    });
    MINE.with(|r| {
        r.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot.clone())
    });
    Guard(slot)
}

/// Advances the coarse clock and shuts down the sockets over their limit by
/// more than `slack` (how stale a mark may be).
fn sweep(s: &Sweeper, slack: Duration) {
    let slack = u64::try_from(slack.as_millis()).unwrap_or(u64::MAX);
    let now = u64::try_from(s.epoch.elapsed().as_millis()).unwrap_or(u64::MAX >> 2);
    s.now_ms.store(now, Ordering::Relaxed);
    let registries: Vec<Arc<Registry>> = {
        let mut all = s.registries.lock().unwrap_or_else(|e| e.into_inner());
        // A thread that ended left its registry here alone.
        all.retain(|r| {
            Arc::strong_count(r) > 1 || !r.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
        });
        all.clone()
    };
    for r in registries {
        r.lock().unwrap_or_else(|e| e.into_inner()).retain(|slot| {
            match slot.kill.load(Ordering::Acquire) {
                CLOSED => return false,
                OPEN => {}
                _ => return true,
            }
            let word = slot.word.load(Ordering::Relaxed);
            let limit = match word & 3 {
                HEAD => slot.head_ms,
                IDLE => slot.idle_ms,
                _ => return true,
            };
            if now.saturating_sub(word >> 2) >= limit.saturating_add(slack)
                && slot
                    .kill
                    .compare_exchange(OPEN, SHUTTING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                shutdown(slot.fd);
                slot.kill.store(SHUT, Ordering::Release);
            }
            true
        });
    }
}

/// Ends both directions of a client's socket: its connection's pending read
/// sees the end of the stream, the client a FIN.
#[allow(unsafe_code)] // std has no shutdown for a socket another thread owns; see SAFETY.
fn shutdown(fd: RawFd) {
    // SAFETY: `fd` is the socket of a connection whose guard is alive (the
    // kill state was OPEN and is now SHUTTING, which its guard's drop waits
    // out before the socket can close), so it is that open socket and no
    // other; shutdown(2) takes no pointer and changes no memory of ours.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection busy for longer than both limits is never shut; idle or
    /// in a head for longer than its limit, it is.
    #[test]
    fn only_idle_and_head_states_time_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        use std::os::fd::AsRawFd;
        let short = ClientTimeouts {
            idle: Duration::from_millis(300),
            head: Duration::from_millis(300),
        };
        let g = watch(s.as_raw_fd(), short);
        g.slot().busy();
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(
            g.0.kill.load(Ordering::Acquire),
            OPEN,
            "a busy connection was shut"
        );
        g.slot().idle();
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.0.kill.load(Ordering::Acquire) != SHUT {
            assert!(
                Instant::now() < deadline,
                "an idle connection was never shut"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The client sees the end of the stream.
        use std::io::Read;
        let mut c = c;
        assert_eq!(c.read(&mut [0u8; 8]).unwrap(), 0);
        drop(g);
        drop(s);
    }
}
