//! The router's HTTP/1.1 framing against a real router on loopback: hostile
//! requests from a raw TCP client (request smuggling), bodies in both
//! directions streamed, pipelined requests, HEAD. The instance is a real
//! hyper server (strict, as a real service would be) or a raw socket where
//! the test must see the bytes as they arrive.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_router::{Router, RouterHandle, Table};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A hyper instance answering `METHOD PATH BODY-LENGTH\nBODY`; every path it
/// was asked for is kept, in order.
async fn echo() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let line = format!("{} {}", req.method(), req.uri());
                            seen.lock().unwrap().push(req.uri().path().to_string());
                            let body = req.into_body().collect().await?.to_bytes();
                            let text = format!(
                                "{line} {}\n{}",
                                body.len(),
                                String::from_utf8_lossy(&body)
                            );
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                                text,
                            ))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, kept)
}

fn serve(backend: SocketAddr) -> (Arc<Router>, RouterHandle) {
    let router = Router::new("api");
    router.set_table(Table::one_version(&router, "v1", &[backend]));
    // The threaded router, as the router process runs it.
    let h = router
        .serve_threads("127.0.0.1:0".parse().unwrap(), 2)
        .unwrap();
    (router, h)
}

/// Sends `raw` and reads until the router closes the connection.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the router kept the connection of {:?} open",
            String::from_utf8_lossy(raw)
        )
    });
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_are_refused_and_never_reach_the_instance() {
    let (backend, seen) = echo().await;
    let (_router, h) = serve(backend);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let huge = format!("X-Big: {}\r\n", "a".repeat(500 * 1024));
    let attacks: Vec<(String, &str)> = vec![
        // CL.TE and TE.CL: two framings, each hop may believe another.
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX{smuggled}"
            ),
            "400",
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n{smuggled}\r\n0\r\n\r\n"
            ),
            "400",
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n{smuggled}"
            ),
            "400",
        ),
        (
            format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 37\r\n\r\n{smuggled}"),
            "400",
        ),
        // Obfuscated Transfer-Encoding.
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            "400",
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            "400",
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            "400",
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            "400",
        ),
        // Chunk sizes a next hop could read another way.
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}"
            ),
            "400",
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n{smuggled}"
            ),
            "400",
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n{smuggled}"
            ),
            "400",
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n{smuggled}"
            ),
            "400",
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcde\r\n0\r\n\r\n{smuggled}"
            ),
            "400",
        ),
        // Heads over hyper's limits.
        (
            format!("GET /a HTTP/1.1\r\nHost: x\r\n{many}\r\n{smuggled}"),
            "431",
        ),
        (
            format!("GET /a HTTP/1.1\r\nHost: x\r\n{huge}\r\n{smuggled}"),
            "431",
        ),
        (
            format!(
                "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n{smuggled}",
                "a".repeat(70_000)
            ),
            "414",
        ),
    ];
    for (attack, status) in &attacks {
        let out = exchange(h.addr, attack.as_bytes()).await;
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?} got {out:?}",
            &attack[..attack.len().min(120)]
        );
        assert_eq!(
            out.matches("HTTP/1.1 ").count(),
            1,
            "one answer, then the connection closed: {out}"
        );
    }
    let seen = seen.lock().unwrap();
    assert!(!seen.iter().any(|p| p == "/smuggled"), "{seen:?}");
    // Requests refused at their head never reached the instance; those refused
    // for their body reached it only as a request it never completed.
    assert!(seen.iter().all(|p| p == "/a"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_with_each_framing_are_answered_in_order() {
    let (backend, seen) = echo().await;
    let (router, h) = serve(backend);
    let out = exchange(
        h.addr,
        b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n\
          HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /last?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 200 OK\r\n").skip(1).collect();
    assert_eq!(answers.len(), 4, "{out}");
    let body = |a: &str| a.split_once("\r\n\r\n").unwrap().1.to_string();
    assert_eq!(body(answers[0]), "POST /len 5\nhello");
    assert_eq!(body(answers[1]), "POST /chunked 5\nabcde");
    assert!(
        answers[2].contains("content-length: 13\r\n"),
        "HEAD keeps the length: {}",
        answers[2]
    );
    assert_eq!(body(answers[2]), "", "HEAD has no body");
    assert_eq!(body(answers[3]), "GET /last?q=1 0\n");
    assert!(answers[3].contains("connection: close\r\n"));
    assert!(
        answers
            .iter()
            .all(|a| a.contains("x-hangar-version: v1\r\n"))
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["/len", "/chunked", "/head", "/last"]
    );
    assert_eq!(router.stats("v1").snapshot().requests, 4);
}

/// What the fast path leaves to hyper (here HTTP/1.0) is served by hyper
/// for the rest of the connection, starting with the bytes already read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_handed_to_hyper_keeps_the_bytes_already_read() {
    let (backend, seen) = echo().await;
    let (_router, h) = serve(backend);
    let out = exchange(
        h.addr,
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nPOST /two HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(out.matches(" 200 OK\r\n").count(), 2, "{out}");
    assert!(
        out.contains("GET /one 0\n") && out.ends_with("POST /two 3\nabc"),
        "{out}"
    );
    assert_eq!(*seen.lock().unwrap(), ["/one", "/two"]);
}

/// A raw instance for one request: it tells when the first part of the
/// request body arrived, and sends the first part of its chunked answer, the
/// rest only when told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_streamed_both_ways() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let (got_first, got_first_rx) = tokio::sync::oneshot::channel::<()>();
    let (finish, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let instance = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut acc = Vec::new();
        let mut buf = [0u8; 4096];
        let mut got_first = Some(got_first);
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the router closed early: {}",
                String::from_utf8_lossy(&acc)
            );
            acc.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&acc).into_owned();
            if text.contains("\r\n\r\nfirst")
                && let Some(tx) = got_first.take()
            {
                tx.send(()).unwrap();
            }
            if text.ends_with("first-second") {
                assert!(text.contains("content-length: 12\r\n"), "{text}");
                s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nearly\r\n")
                    .await
                    .unwrap();
                finish_rx.await.unwrap();
                s.write_all(b"4\r\nlate\r\n0\r\n\r\n").await.unwrap();
                return text;
            }
        }
    });
    let (_router, h) = serve(backend);
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nfirst")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), got_first_rx)
        .await
        .expect("the first part of the body reached the instance before the rest was sent")
        .unwrap();
    c.write_all(b"-second").await.unwrap();
    let mut acc = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&acc).contains("early") {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0);
            acc.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first part of the answer reached the client before the rest was sent");
    finish.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&acc).ends_with("0\r\n\r\n") {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0);
            acc.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the answer ended");
    let text = String::from_utf8_lossy(&acc);
    assert!(
        text.ends_with("5\r\nearly\r\n4\r\nlate\r\n0\r\n\r\n"),
        "{text}"
    );
    let sent = instance.await.unwrap();
    assert!(
        sent.starts_with("PUT /up HTTP/1.1\r\n") && sent.contains("x-forwarded-for: 127.0.0.1\r\n"),
        "{sent}"
    );
}

/// 16 MiB, the one request-body limit of both HTTP paths.
const LIMIT: usize = 16 * 1024 * 1024;

/// A body over the limit is refused with 413 on both paths: by its
/// Content-Length before anything reaches the instance, chunked as soon as
/// the chunks announced pass the limit (the instance's connection is closed
/// mid-request then). A body of exactly the limit goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_the_limit_are_refused_with_413() {
    let (backend, seen) = echo().await;
    let (_router, h) = serve(backend);
    let over = LIMIT + 1;
    // Only the head is sent: the refusal cannot wait for the body.
    for head in [
        // The fast path.
        format!("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {over}\r\n\r\n"),
        // hyper's path (HTTP/1.0), and `Expect`, which must not get `100 Continue` first.
        format!("POST /big HTTP/1.0\r\nContent-Length: {over}\r\n\r\n"),
        format!(
            "POST /big HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {over}\r\n\r\n"
        ),
    ] {
        let out = exchange(h.addr, head.as_bytes()).await;
        // hyper answers an HTTP/1.0 client in HTTP/1.0.
        assert!(
            out.starts_with("HTTP/1.") && out[8..].starts_with(" 413 "),
            "{head:?} got {out:?}"
        );
        assert!(out.contains("16 MiB"), "the answer says the limit: {out}");
        assert_eq!(out.matches("HTTP/1.").count(), 1, "{out}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );

    // Exactly the limit is taken, with its length.
    let mut exact = format!(
        "PUT /exact HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMIT}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    exact.resize(exact.len() + LIMIT, b'x');
    let out = exchange(h.addr, &exact).await;
    assert!(
        out.starts_with("HTTP/1.1 200 "),
        "{}",
        &out[..out.len().min(200)]
    );
    assert!(
        out.contains(&format!("PUT /exact {LIMIT}\n")),
        "{}",
        &out[..200]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_growing_past_the_limit_gets_413_and_both_connections_close() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let instance = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        // Until the router closes its side: it must, the request cannot end.
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .expect("the router left the instance's connection open mid-request")
            .ok();
        String::from_utf8_lossy(&got).into_owned()
    });
    let (_router, h) = serve(backend);
    // Ten bytes, then a chunk that would take the body to the limit plus
    // nine: refused at its size line, its data never needed.
    let raw = format!(
        "POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n{:x}\r\n",
        LIMIT - 1
    );
    let out = exchange(h.addr, raw.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");
    let sent = instance.await.unwrap();
    assert!(sent.starts_with("POST /chunks HTTP/1.1\r\n"), "{sent}");
    assert!(
        !sent.contains(&format!("{:x}\r\n", LIMIT - 1)),
        "the chunk over the limit was forwarded: {sent}"
    );
}
