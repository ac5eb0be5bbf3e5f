//! Upgrades (WebSocket) through a real router on loopback, against a real
//! WebSocket echo instance written here over a raw socket (RFC 6455: the
//! handshake with its `Sec-WebSocket-Accept`, masked client frames, close
//! frames), since no WebSocket library is among the dependencies.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_router::{Route, Router, RouterHandle, Table};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// SHA-1 (FIPS 180-4), for `Sec-WebSocket-Accept` only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 6455 4.2.2: the answer to a `Sec-WebSocket-Key`.
fn accept_key(key: &str) -> String {
    base64(&sha1(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ))
}

#[test]
fn the_accept_key_is_rfc_6455s() {
    // The example of RFC 6455 1.3.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

/// One frame: (opcode, payload), unmasked on the way.
async fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let masked = h[1] & 0x80 != 0;
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).await?;
        len = u64::from_be_bytes(b);
    }
    let mut mask = [0u8; 4];
    if masked {
        s.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((h[0] & 0x0f, payload))
}

/// A final frame; masked as a client must mask it (RFC 6455 5.3).
fn frame(opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let m = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if mask {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A WebSocket echo instance named `name`: it switches when asked as RFC
/// 6455 says (any method: the router must not care), says `NAME:hello`
/// first, then answers each text frame with `NAME:` and the text, and a
/// close with a close. Asked without a WebSocket handshake it answers 200
/// (keep-alive) with the request head it got, so tests can see what was
/// forwarded. Every request head it got is kept.
async fn ws_instance(name: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let heads = heads.clone();
            tokio::spawn(async move {
                loop {
                    let head = read_head(&mut s).await;
                    if head.is_empty() {
                        return;
                    }
                    heads.lock().unwrap().push(head.clone());
                    let upgrade = header(&head, "upgrade")
                        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
                        && header(&head, "connection")
                            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
                    let key = header(&head, "sec-websocket-key");
                    let (true, Some(key)) = (upgrade, key) else {
                        let body = head.replace("\r\n", "|");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    };
                    // The switch and the first message in one write.
                    let mut out = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                        accept_key(key)
                    )
                    .into_bytes();
                    out.extend(frame(1, format!("{name}:hello").as_bytes(), false));
                    s.write_all(&out).await.unwrap();
                    while let Ok((op, payload)) = read_frame(&mut s).await {
                        match op {
                            8 => {
                                let _ = s.write_all(&frame(8, &payload, false)).await;
                                return;
                            }
                            _ => {
                                let mut text = format!("{name}:").into_bytes();
                                text.extend_from_slice(&payload);
                                if s.write_all(&frame(1, &text, false)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    return;
                }
            });
        }
    });
    (addr, kept)
}

fn table(router: &Arc<Router>, routes: &[(&str, u32, SocketAddr)]) -> Table {
    Table {
        routes: routes
            .iter()
            .map(|(v, w, a)| Route {
                version: (*v).into(),
                weight: *w,
                backends: vec![router.backend(*a)],
            })
            .collect(),
        retry_on_stable: None,
    }
}

fn serve(router: &Arc<Router>) -> RouterHandle {
    router
        .serve_threads("127.0.0.1:0".parse().unwrap(), 2)
        .unwrap()
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Opens a WebSocket through the router (`extra` is sent right after the
/// handshake, before the answer, as a client in a hurry may): the 101's head
/// and the socket.
async fn open(addr: SocketAddr, extra: &[u8]) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(extra);
    s.write_all(&req).await.unwrap();
    let head = tokio::time::timeout(WAIT, read_head(&mut s))
        .await
        .expect("no answer to the handshake");
    assert!(
        head.starts_with("HTTP/1.1 101 "),
        "the handshake was not switched: {head}"
    );
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some(accept_key(KEY).as_str()),
        "{head}"
    );
    assert!(
        header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{head}"
    );
    assert!(
        header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{head}"
    );
    assert!(
        header(&head, "content-length").is_none() && header(&head, "transfer-encoding").is_none(),
        "{head}"
    );
    (head, s)
}

async fn text(s: &mut TcpStream) -> String {
    let (op, payload) = tokio::time::timeout(WAIT, read_frame(s))
        .await
        .expect("no message")
        .expect("the socket broke");
    assert_eq!(op, 1);
    String::from_utf8(payload).unwrap()
}

async fn say(s: &mut TcpStream, msg: &str) -> String {
    s.write_all(&frame(1, msg.as_bytes(), true)).await.unwrap();
    text(s).await
}

async fn close(mut s: TcpStream) {
    s.write_all(&frame(8, &[0x03, 0xe8], true)).await.unwrap();
    let (op, _) = tokio::time::timeout(WAIT, read_frame(&mut s))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op, 8, "the close was answered");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("the router kept the connection open after the instance closed it")
        .ok();
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_go_both_ways_counted_once_and_in_flight_while_open() {
    let (v1, heads) = ws_instance("v1").await;
    let router = Router::new("chat");
    router.set_table(table(&router, &[("v1", 100, v1)]));
    let h = serve(&router);

    // A first message sent before the 101 came back reaches the instance
    // after the switch; the instance's first message came with its 101.
    let early = frame(1, b"early", true);
    let (head, mut ws) = open(h.addr, &early).await;
    assert_eq!(header(&head, "x-hangar-version"), Some("v1"));
    assert_eq!(text(&mut ws).await, "v1:hello");
    assert_eq!(text(&mut ws).await, "v1:early");
    for i in 0..20 {
        assert_eq!(say(&mut ws, &format!("m{i}")).await, format!("v1:m{i}"));
    }
    // A message bigger than one read buffer, both ways.
    let big = "x".repeat(100_000);
    assert_eq!(say(&mut ws, &big).await, format!("v1:{big}"));

    let forwarded = heads.lock().unwrap()[0].clone();
    assert!(
        header(&forwarded, "upgrade") == Some("websocket"),
        "{forwarded}"
    );
    assert!(
        header(&forwarded, "connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{forwarded}"
    );
    assert_eq!(
        header(&forwarded, "sec-websocket-key"),
        Some(KEY),
        "{forwarded}"
    );

    assert_eq!(router.inflight(v1), 1, "an open socket is in flight");
    let s = router.stats("v1").snapshot();
    assert_eq!(
        (s.requests, s.classes[0]),
        (1, 1),
        "one request, a 1xx: {s:?}"
    );
    close(ws).await;
    eventually("the closed socket leaves in-flight", || {
        router.inflight(v1) == 0
    })
    .await;
    assert_eq!(router.stats("v1").snapshot().requests, 1, "counted once");
}

/// A blue-green switch moves new sockets; an open one stays on the version
/// it reached, in flight there (what the controller's drain waits for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_stays_on_its_version_through_a_blue_green_switch() {
    let (v1, _) = ws_instance("v1").await;
    let (v2, _) = ws_instance("v2").await;
    let router = Router::new("chat");
    router.set_table(table(&router, &[("v1", 100, v1)]));
    let h = serve(&router);
    let (_, mut blue) = open(h.addr, b"").await;
    assert_eq!(text(&mut blue).await, "v1:hello");

    router.set_table(table(&router, &[("v2", 100, v2)]));
    let (head, mut green) = open(h.addr, b"").await;
    assert_eq!(header(&head, "x-hangar-version"), Some("v2"));
    assert_eq!(text(&mut green).await, "v2:hello");
    for i in 0..5 {
        assert_eq!(say(&mut blue, &format!("b{i}")).await, format!("v1:b{i}"));
        assert_eq!(say(&mut green, &format!("g{i}")).await, format!("v2:g{i}"));
    }
    assert_eq!((router.inflight(v1), router.inflight(v2)), (1, 1));
    close(blue).await;
    eventually("the old version drained", || router.inflight(v1) == 0).await;
    assert_eq!(say(&mut green, "still").await, "v2:still");

    // A sticky cookie naming the version with instances keeps a client there,
    // for sockets too; a canary table that retries on stable (hyper's path
    // for plain requests) still switches.
    let mut t = table(&router, &[("v1", 0, v1), ("v2", 100, v2)]);
    t.retry_on_stable = Some(("v2".into(), "v1".into()));
    router.set_table(t);
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nCookie: hangar_version=v1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\r\n").as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(header(&head, "x-hangar-version"), Some("v1"), "{head}");
    assert_eq!(text(&mut s).await, "v1:hello");
}

/// Sends `req` and reads one answer with a Content-Length: head and body.
async fn answer(s: &mut TcpStream, req: &str) -> String {
    s.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(WAIT, read_head(s)).await.unwrap();
    let n: usize = header(&head, "content-length")
        .unwrap_or_else(|| panic!("{head}"))
        .parse()
        .unwrap();
    let mut body = vec![0u8; n];
    s.read_exact(&mut body).await.unwrap();
    format!("{head}{}", String::from_utf8_lossy(&body))
}

/// What is not forwarded as an upgrade, and a refusal of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_that_are_not_spliced_are_plain_requests() {
    let (v1, heads) = ws_instance("v1").await;
    let router = Router::new("chat");
    router.set_table(table(&router, &[("v1", 100, v1)]));
    let h = serve(&router);
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    // h2c: an HTTP/2 connection straight to one instance would bypass the
    // router for every request on it; answered in HTTP/1.1 as RFC 9113 says
    // a server without h2c does, the upgrade and its settings dropped.
    let out = answer(
        &mut s,
        "GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(
        lower.contains("get /h2c")
            && !lower.contains("upgrade")
            && !lower.contains("http2-settings"),
        "{out}"
    );
    // `Upgrade` without `Connection: upgrade` is no upgrade (RFC 9110 7.8).
    let out = answer(
        &mut s,
        &format!("GET /half HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 200 ")
            && !out.to_ascii_lowercase().contains("upgrade: websocket"),
        "{out}"
    );
    // An upgrade the instance declines: its answer is an ordinary one, and
    // the connection carries the next request.
    let out = answer(
        &mut s,
        "GET /declined HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 200 ") && out.contains("GET /declined"),
        "{out}"
    );
    assert!(
        out.to_ascii_lowercase().contains("upgrade: websocket|"),
        "the upgrade was forwarded: {out}"
    );
    let out = answer(&mut s, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        out.starts_with("HTTP/1.1 200 ") && out.contains("GET /after"),
        "{out}"
    );
    // Any method may ask (nginx and kamal-proxy pass it on): a POST's body
    // goes first, then the switch.
    let mut p = TcpStream::connect(h.addr).await.unwrap();
    p.write_all(format!("POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\n\r\nbody").as_bytes()).await.unwrap();
    let head = tokio::time::timeout(WAIT, read_head(&mut p)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(heads.lock().unwrap().len(), 5);
    // A 101 the request did not ask for is the instance's fault: 502.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rogue = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
        let _ = s.read(&mut [0u8; 1]).await;
    });
    router.set_table(table(&router, &[("v1", 100, rogue)]));
    let mut r = TcpStream::connect(h.addr).await.unwrap();
    r.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = tokio::time::timeout(WAIT, read_head(&mut r)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
}
