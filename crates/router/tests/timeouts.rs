//! Client connections' idle and head timeouts against a real router on
//! loopback, shortened for the test: a silent keep-alive client and a
//! slowloris head are closed, on both HTTP paths; a busy connection (requests
//! back to back, an answer slower than both limits, an open WebSocket) never is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_router::{ClientTimeouts, Router, RouterHandle, Table};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const IDLE: Duration = Duration::from_millis(700);
const HEAD: Duration = Duration::from_millis(1200);

/// An instance answering `ok` at once, or after 2 s for `/slow` (longer than both
/// limits), or `ab`, 2 s of nothing and `cd` for `/pause`; keep-alive, HTTP/1.1. `/ws` switches protocols and then echoes bytes.
async fn instance() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut acc = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&acc[..end]).into_owned();
                        acc.drain(..end + 4);
                        if head.starts_with("GET /ws ") {
                            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").await.unwrap();
                            loop {
                                let n = match s.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                };
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                        if head.starts_with("GET /slow ") {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        if head.starts_with("GET /pause ") {
                            // Half the body, a pause longer than both limits, the rest.
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
                                .await;
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            let _ = s.write_all(b"cd").await;
                            continue;
                        }
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => acc.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    addr
}

async fn serve() -> (Arc<Router>, RouterHandle) {
    let backend = instance().await;
    let router = Router::new("api");
    router.set_client_timeouts(ClientTimeouts {
        idle: IDLE,
        head: HEAD,
    });
    router.set_table(Table::one_version(&router, "v1", &[backend]));
    let h = router
        .serve_threads("127.0.0.1:0".parse().unwrap(), 2)
        .unwrap();
    (router, h)
}

/// Reads one answer with a Content-Length; panics if the connection ends.
async fn answer(s: &mut TcpStream) -> String {
    let mut acc = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let text = String::from_utf8_lossy(&acc).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && body.len() >= 2
            && head.contains(" 200 ")
        {
            return text;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("no answer")
            .unwrap();
        assert!(n > 0, "the connection ended mid-answer: {text:?}");
        acc.push(b[0]);
    }
}

/// How long after `since` the router closed the connection (nothing may arrive first).
async fn closed_after(s: &mut TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the router never closed the connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_keep_alive_client_is_closed_after_the_idle_timeout_on_both_paths() {
    let (_router, h) = serve().await;
    // The fast path, and hyper's (HTTP/1.0 with keep-alive).
    for req in [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        answer(&mut s).await;
        let after = closed_after(&mut s, Instant::now()).await;
        assert!(
            after >= IDLE - Duration::from_millis(150) && after < IDLE + Duration::from_secs(2),
            "{req:?}: closed {after:?} after its answer, the idle timeout is {IDLE:?}"
        );
    }
    // A connection that never sends a byte waits for its first head.
    let start = Instant::now();
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let after = closed_after(&mut s, start).await;
    assert!(
        after >= HEAD - Duration::from_millis(150) && after < HEAD + Duration::from_secs(2),
        "a silent new connection closed after {after:?}"
    );
}

/// A slowloris client trickles a head that never ends: active all along, it
/// is closed once the head deadline from its first byte passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_is_closed_at_the_head_deadline_on_both_paths() {
    let (_router, h) = serve().await;
    for first in [
        // The fast path reads the trickled head.
        "",
        // hyper's path: an HTTP/1.0 keep-alive request first hands it the connection.
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        if !first.is_empty() {
            s.write_all(first.as_bytes()).await.unwrap();
            answer(&mut s).await;
        }
        let start = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let trickle = tokio::spawn(async move {
            for i in 0.. {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if wr
                    .write_all(format!("X-{i}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf))
            .await
            .expect("the slowloris head was never cut")
            .unwrap_or(0);
        assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
        let after = start.elapsed();
        trickle.abort();
        assert!(
            after >= HEAD - Duration::from_millis(150) && after < HEAD + Duration::from_secs(2),
            "{first:?}: the trickled head was cut after {after:?}, the deadline is {HEAD:?}"
        );
    }
}

/// Busy is never idle: requests back to back for longer than both limits, an
/// answer slower than both, and an open WebSocket silent for longer than both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_connection_is_never_cut() {
    let (_router, h) = serve().await;
    for req in [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        let start = Instant::now();
        while start.elapsed() < HEAD * 2 {
            s.write_all(req.as_bytes()).await.unwrap();
            answer(&mut s).await;
            tokio::time::sleep(IDLE / 3).await;
        }
        // Slower than both limits.
        s.write_all(req.replace("GET / ", "GET /slow ").as_bytes())
            .await
            .unwrap();
        answer(&mut s).await;
        // An answer that pauses mid-body for longer than both limits.
        s.write_all(req.replace("GET / ", "GET /pause ").as_bytes())
            .await
            .unwrap();
        let mut acc = Vec::new();
        let mut buf = [0u8; 256];
        while !acc.ends_with(b"abcd") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("the paused answer never ended")
                .unwrap();
            assert!(
                n > 0,
                "{req:?}: the paused answer was cut: {:?}",
                String::from_utf8_lossy(&acc)
            );
            acc.extend_from_slice(&buf[..n]);
        }
        // And the connection still serves.
        s.write_all(req.as_bytes()).await.unwrap();
        answer(&mut s).await;
    }
    let mut ws = TcpStream::connect(h.addr).await.unwrap();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(ws.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    tokio::time::sleep(HEAD + IDLE).await;
    ws.write_all(b"still there").await.unwrap();
    let mut got = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(10), ws.read_exact(&mut got))
        .await
        .expect("no echo")
        .expect("the open socket was cut");
    assert_eq!(&got, b"still there");
}
