//! Helpers shared by the CLI's process-level tests.

#![allow(dead_code)]

pub mod browser;

/// Whether python3 (the instances' web server in delivery tests) is here.
/// Missing, the test is skipped loudly, except under CI, where it fails.
pub fn have_python3() -> bool {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 is required in CI"
    );
    eprintln!("SKIPPED: python3 not found");
    false
}

pub use hangar_testkit::free_port;

/// A request to a real `hangar serve` over `HTTP/1.0` (so no chunked
/// answers): its status and JSON body (null when the body is not JSON).
pub fn http_json(method: &str, url: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}
