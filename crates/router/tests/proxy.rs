//! The router against real HTTP backends on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use hangar_router::{Route, Router, Table, VERSION_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A minimal HTTP/1.1 backend answering `status` with its name, keep-alive.
async fn backend(name: &'static str, status: u16) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut acc = Vec::new();
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    acc.extend_from_slice(&buf[..n]);
                    while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                        acc.drain(..end + 4);
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn raw_get(addr: SocketAddr, cookie: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let cookie = cookie
        .map(|c| format!("cookie: {c}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET / HTTP/1.1\r\nhost: x\r\n{cookie}connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// (status, body, set-cookie)
async fn get(addr: SocketAddr, cookie: Option<&str>) -> (u16, String, Option<String>) {
    let out = raw_get(addr, cookie).await;
    let status: u16 = out[9..12].parse().unwrap();
    let header = |name: &str| {
        out.lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(|l| l.split_once(':').unwrap().1.trim().to_string())
    };
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    if status == 200 && body != "live" {
        assert_eq!(
            header(VERSION_HEADER).unwrap_or_default(),
            body.trim(),
            "version header names the answering version"
        );
    }
    (status, body, header("set-cookie"))
}

fn route(router: &Arc<Router>, version: &str, weight: u32, addrs: &[SocketAddr]) -> Route {
    Route {
        version: version.into(),
        weight,
        backends: addrs.iter().map(|a| router.backend(*a)).collect(),
    }
}

#[tokio::test]
async fn weights_sticky_cookie_and_atomic_switch() {
    let blue = backend("blue", 200).await;
    let green = backend("green", 200).await;
    let router = Router::new("api");
    router.set_table(Table::one_version(&router, "blue", &[blue]));
    let h = router.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();

    let (status, body, cookie) = get(h.addr, None).await;
    assert_eq!((status, body.as_str()), (200, "blue"));
    assert!(cookie.is_none(), "a single version sets no sticky cookie");

    router.set_table(Table {
        routes: vec![
            route(&router, "blue", 50, &[blue]),
            route(&router, "green", 50, &[green]),
        ],
        retry_on_stable: None,
    });
    let mut seen = std::collections::HashMap::new();
    for _ in 0..200 {
        let (_, body, cookie) = get(h.addr, None).await;
        assert!(
            cookie
                .unwrap()
                .starts_with(&format!("hangar_version={body}"))
        );
        *seen.entry(body).or_insert(0) += 1;
    }
    assert!(
        seen["blue"] > 60 && seen["green"] > 60,
        "50/50 split: {seen:?}"
    );
    for _ in 0..20 {
        let (_, body, _) = get(h.addr, Some("hangar_version=green")).await;
        assert_eq!(body, "green", "a pinned client stays on its version");
    }

    router.set_table(Table::one_version(&router, "green", &[green]));
    for _ in 0..20 {
        let (_, body, _) = get(h.addr, Some("hangar_version=blue")).await;
        assert_eq!(
            body, "green",
            "a pin to a removed version falls back to the live one"
        );
    }
    let g = router.stats("green").snapshot().summary();
    assert!(g.requests >= 60 && g.errors == 0, "{g:?}");
}

#[tokio::test]
async fn connect_failures_retry_elsewhere_and_count() {
    let live = backend("live", 200).await;
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // bound then dropped: connections are refused
    let router = Router::new("api");
    router.set_table(Table::one_version(&router, "v1", &[dead, live]));
    let h = router.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    for _ in 0..10 {
        let (status, body, _) = get(h.addr, None).await;
        assert_eq!((status, body.as_str()), (200, "live"));
    }
    let s = router.stats("v1").snapshot();
    assert_eq!(s.requests, 10);
    assert!(
        s.connect_errors >= 4,
        "refused connections are counted: {s:?}"
    );

    router.set_table(Table::one_version(&router, "v1", &[dead]));
    let (status, _, _) = get(h.addr, None).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn canary_failures_retry_on_stable_but_count_against_canary() {
    let stable = backend("stable", 200).await;
    let canary = backend("canary", 500).await;
    let router = Router::new("api");
    router.set_table(Table {
        routes: vec![
            route(&router, "stable", 0, &[stable]),
            route(&router, "canary", 100, &[canary]),
        ],
        retry_on_stable: Some(("canary".into(), "stable".into())),
    });
    let h = router.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    for _ in 0..10 {
        let (status, body, _) = get(h.addr, None).await;
        assert_eq!((status, body.as_str()), (200, "stable"));
    }
    let c = router.stats("canary").snapshot().summary();
    assert_eq!((c.requests, c.errors), (10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threaded_router_serves_keeps_its_address_and_stops() {
    let a = backend("a", 200).await;
    let router = Router::new("web");
    router.set_table(Table::one_version(&router, "a", &[a]));
    let handle = router
        .serve_threads("127.0.0.1:0".parse().unwrap(), 3)
        .unwrap();
    let addr = handle.addr;
    // Many connections at once, dealt over the threads; every one is answered.
    let mut tasks = Vec::new();
    for _ in 0..30 {
        tasks.push(tokio::spawn(async move { get(addr, None).await }));
    }
    for t in tasks {
        let (status, body, _) = t.await.unwrap();
        assert_eq!((status, body.as_str()), (200, "a"));
    }
    assert_eq!(router.stats("a").snapshot().requests, 30);
    // No second listener can take the address while it serves.
    assert!(std::net::TcpListener::bind(addr).is_err());
    handle.stop();
    // Stopped: the listening socket is closed once the acceptor has seen the stop.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused, "a stopped router no longer accepts");
}

/// A burst of long-lived keep-alive connections is shared by the threads
/// that all accept from one listener: a thread that took more than twice
/// the other's (and 3 more) deals the next to it, so a burst is not served
/// by whichever thread woke first while the other idles (it went 15 to 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_share_a_burst_of_keep_alive_connections_evenly() {
    let a = backend("a", 200).await;
    let router = Router::new("web");
    router.set_table(Table::one_version(&router, "a", &[a]));
    let handle = router
        .serve_threads("127.0.0.1:0".parse().unwrap(), 2)
        .unwrap();
    let addr = handle.addr;
    for round in 0..5 {
        // 16 clients connect at once, each with one request answered and the
        // connection then kept open.
        let clients = open_keep_alive(addr, 16).await;
        let mut per_thread = handle.connections_per_thread();
        for _ in 0..100 {
            if per_thread.iter().sum::<usize>() == 16 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            per_thread = handle.connections_per_thread();
        }
        assert_eq!(per_thread.iter().sum::<usize>(), 16, "round {round}");
        let (low, high) = (
            per_thread[0].min(per_thread[1]),
            per_thread[0].max(per_thread[1]),
        );
        assert!(
            high <= 2 * low + 4,
            "round {round}: 16 keep-alive connections split {per_thread:?} over two threads"
        );
        drop(clients);
        for _ in 0..200 {
            if handle.connections_per_thread().iter().sum::<usize>() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// `n` keep-alive connections to `addr` opened at once, each after one answered request.
async fn open_keep_alive(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.ends_with(b"a") {
                let k = s.read(&mut buf).await.unwrap();
                assert!(k > 0, "the router closed a keep-alive connection");
                got.extend_from_slice(&buf[..k]);
            }
            s
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
