//! Health checks: HTTP GET, TCP connect or a command, each bounded by a timeout.

use std::time::Duration;

use hangar_project::Health;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One probe of an instance on `port`. `Ok` carries a short description for reports.
pub async fn probe(health: &Health, port: u16) -> Result<String, String> {
    let timeout = health.timeout.0.max(Duration::from_millis(50));
    match tokio::time::timeout(timeout, probe_inner(health, port)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn probe_inner(health: &Health, port: u16) -> Result<String, String> {
    if let Some(path) = &health.path {
        // A hand-written GET: one request on a fresh connection is all a probe needs,
        // and it keeps the probe independent of the router's connection pool.
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect to port {port}: {e}"))?;
        // HTTP/1.0: the answer's body comes as it is, never chunked, so a
        // failing check can quote it (Node answered `7\r\nbroken\r\n0`).
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: hangar-health\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 512];
        while buf.len() < 4096 {
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let status_line = text.lines().next().unwrap_or("").to_string();
        let code: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body: String = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        if (200..400).contains(&code) {
            Ok(format!("GET {path} -> {code}"))
        } else {
            Err(format!(
                "GET {path} -> {} {}",
                if code == 0 {
                    "no HTTP answer".to_string()
                } else {
                    code.to_string()
                },
                body.trim()
            ))
        }
    } else if let Some(cmd) = &health.command {
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("PORT", port.to_string())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
        let text: String = String::from_utf8_lossy(&[out.stdout, out.stderr].concat())
            .chars()
            .take(300)
            .collect();
        if out.status.success() {
            Ok(format!("`{cmd}` exited 0"))
        } else {
            Err(format!("`{cmd}` failed ({}): {}", out.status, text.trim()))
        }
    } else {
        TcpStream::connect(("127.0.0.1", port))
            .await
            .map(|_| format!("tcp {port} open"))
            .map_err(|e| format!("tcp {port}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that, like Node's, answers an HTTP/1.1 request with a chunked
    /// body and an HTTP/1.0 one with the body as it is.
    async fn failing_server() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let answer = if req.lines().next().unwrap_or("").ends_with("HTTP/1.1") {
                    "HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n6\r\nbroken\r\n0\r\n\r\n"
                } else {
                    "HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\n\r\nbroken"
                };
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn a_failing_check_quotes_the_body_as_the_service_wrote_it() {
        let port = failing_server().await;
        let health = Health {
            path: Some("/health".into()),
            ..Health::default()
        };
        let err = probe(&health, port).await.unwrap_err();
        assert_eq!(err, "GET /health -> 500 broken");
    }
}
