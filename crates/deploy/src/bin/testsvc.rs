//! `hangar-testsvc`: the service the delivery tests and benchmarks deploy.
//!
//! Listens on `$PORT`; `/health` answers 200 (or 503 when `TESTSVC_NEVER_HEALTHY=1`),
//! every other path answers 200 with `$TESTSVC_VERSION`, or 500 for a fraction
//! `TESTSVC_FAIL_RATE` of requests, after `TESTSVC_LATENCY_MS`.
//! `TESTSVC_CRASH_AFTER_MS` makes it exit(1) after that long (a crash loop).
//! While the file `$TESTSVC_FAIL_FILE` exists, every other path answers 500
//! (a service that starts failing in production, and recovers).
//! A request with `Connection: upgrade` is switched (101) to an echo protocol:
//! each read is answered with `$TESTSVC_VERSION:` and the bytes read.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = env("PORT", 8080);
    let version: Arc<str> = std::env::var("TESTSVC_VERSION")
        .unwrap_or_else(|_| "v0".into())
        .into();
    let fail_rate: f64 = env("TESTSVC_FAIL_RATE", 0.0);
    let latency_ms: u64 = env("TESTSVC_LATENCY_MS", 0);
    let never_healthy = env("TESTSVC_NEVER_HEALTHY", 0u8) == 1;
    let crash_after: u64 = env("TESTSVC_CRASH_AFTER_MS", 0);
    let fail_file: Option<Arc<std::path::Path>> = std::env::var_os("TESTSVC_FAIL_FILE")
        .filter(|f| !f.is_empty())
        .map(|f| std::path::PathBuf::from(f).into());
    if crash_after > 0 {
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(crash_after)).await;
            eprintln!("testsvc: crashing on purpose");
            std::process::exit(1);
        });
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind $PORT");
    println!("testsvc {version} listening on {port}");
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let version = version.clone();
        let counter = counter.clone();
        let fail_file = fail_file.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let version = version.clone();
                let counter = counter.clone();
                let failing = fail_file.as_ref().is_some_and(|f| f.exists());
                async move {
                    if req.headers().contains_key(hyper::header::UPGRADE) {
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(echo(on, version.clone()));
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                        resp.headers_mut().insert(
                            hyper::header::UPGRADE,
                            hyper::header::HeaderValue::from_static("echo"),
                        );
                        resp.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("upgrade"),
                        );
                        return Ok::<_, Infallible>(resp);
                    }
                    if latency_ms > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(latency_ms)).await;
                    }
                    let (status, body) = if req.uri().path() == "/health" {
                        if never_healthy {
                            (StatusCode::SERVICE_UNAVAILABLE, "starting".to_string())
                        } else {
                            (StatusCode::OK, "ok".to_string())
                        }
                    } else if failing {
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("{version} failing"),
                        )
                    } else {
                        // Deterministic, evenly spread failures: request n fails when n * rate crosses an integer.
                        let n = counter.fetch_add(1, Ordering::Relaxed) as f64;
                        if ((n + 1.0) * fail_rate).floor() > (n * fail_rate).floor() {
                            (
                                StatusCode::INTERNAL_SERVER_ERROR,
                                format!("{version} failed"),
                            )
                        } else {
                            (StatusCode::OK, version.to_string())
                        }
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = status;
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// The echo protocol of a switched connection, until the client closes it.
async fn echo(on: hyper::upgrade::OnUpgrade, version: Arc<str>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(upgraded) = on.await else { return };
    let mut io = TokioIo::new(upgraded);
    let mut buf = [0u8; 4096];
    loop {
        let n = match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut out = format!("{version}:").into_bytes();
        out.extend_from_slice(&buf[..n]);
        if io.write_all(&out).await.is_err() {
            return;
        }
    }
}
