//! `hangar-tcp-bench`: the backend and the load of `benches/tcp-proxy-vs-haproxy.sh`,
//! which measures the router's raw TCP mode (`protocol: tcp`) against HAProxy's
//! `mode tcp` in front of the same backend.
//!
//! - `backend ECHO_ADDR SINK_ADDR`: on ECHO_ADDR every byte comes back; on
//!   SINK_ADDR bytes are read until the client shuts its side, then their
//!   count is written back as 8 bytes (big-endian) and the connection closed.
//! - `rate ADDR CONNS SECONDS`: CONNS clients, each in a loop: connect, write
//!   64 bytes, read them back, close. Prints `RESULT done errors micros`.
//! - `stream ADDR CONNS BYTES`: CONNS connections to a sink share BYTES
//!   between them, written in 256 KiB chunks; each waits for the sink's count,
//!   which must be what it sent. Prints `RESULT bytes errors micros`.
//!
//! One thread of event loop per command, like the router's TCP mode, so that
//! on a small machine the load does not crowd out what it measures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["backend", echo, sink] => rt.block_on(backend(addr(echo), addr(sink))),
        ["rate", to, conns, secs] => rt.block_on(rate(addr(to), number(conns), number(secs))),
        ["stream", to, conns, bytes] => rt.block_on(stream(addr(to), number(conns), number(bytes))),
        _ => {
            eprintln!(
                "usage: hangar-tcp-bench backend ECHO_ADDR SINK_ADDR | rate ADDR CONNS SECONDS | stream ADDR CONNS BYTES"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("hangar-tcp-bench: {e}");
        std::process::exit(1);
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| {
        eprintln!("{s}: {e}");
        std::process::exit(2)
    })
}

fn number(s: &str) -> u64 {
    s.parse().unwrap_or_else(|e| {
        eprintln!("{s}: {e}");
        std::process::exit(2)
    })
}

async fn backend(echo: SocketAddr, sink: SocketAddr) -> std::io::Result<()> {
    let echo = TcpListener::bind(echo).await?;
    let sink = TcpListener::bind(sink).await?;
    let echoing = async {
        loop {
            let Ok((mut c, _)) = echo.accept().await else {
                continue;
            };
            let _ = c.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    };
    let sinking = async {
        loop {
            let Ok((mut c, _)) = sink.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => total += n as u64,
                        Err(_) => return,
                    }
                }
                let _ = c.write_all(&total.to_be_bytes()).await;
                let _ = c.shutdown().await;
            });
        }
    };
    tokio::join!(echoing, sinking);
    Ok(())
}

async fn rate(to: SocketAddr, conns: u64, secs: u64) -> std::io::Result<()> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (done, errors, stop) = (done.clone(), errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let msg = [b'x'; 64];
            let mut back = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                let one = async {
                    let mut c = TcpStream::connect(to).await?;
                    c.set_nodelay(true)?;
                    c.write_all(&msg).await?;
                    c.read_exact(&mut back).await?;
                    std::io::Result::Ok(())
                };
                match tokio::time::timeout(Duration::from_secs(5), one).await {
                    Ok(Ok(())) if back == msg => done.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "RESULT {} {} {}",
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        elapsed.as_micros()
    );
    Ok(())
}

async fn stream(to: SocketAddr, conns: u64, bytes: u64) -> std::io::Result<()> {
    let share = bytes / conns.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let one = async {
                let mut c = TcpStream::connect(to).await?;
                let chunk = vec![b'y'; 256 * 1024];
                let mut left = share;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    c.write_all(&chunk[..n]).await?;
                    left -= n as u64;
                }
                c.shutdown().await?;
                let mut count = [0u8; 8];
                c.read_exact(&mut count).await?;
                std::io::Result::Ok(u64::from_be_bytes(count))
            };
            match one.await {
                Ok(n) if n == share => (n, 0),
                _ => (0, 1),
            }
        }));
    }
    let (mut total, mut errors) = (0u64, 0u64);
    for t in tasks {
        let (n, e) = t.await.unwrap_or((0, 1));
        total += n;
        errors += e;
    }
    println!("RESULT {total} {errors} {}", started.elapsed().as_micros());
    Ok(())
}
