//! `run:` in hangar.yml is handed to a shell as compose hands it: variable
//! assignments before the command and joined commands work (seed 004's
//! `run: PORT=... cmd` failed). Real instances behind the real router.

use crate::common;

use std::process::Command;

const HANGAR: &str = env!("CARGO_BIN_EXE_hangar");

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.0 200")
        .then(|| out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
        .flatten()
}

#[test]
fn assignments_and_joined_commands_run_as_in_a_shell() {
    if !common::have_python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (a, b) = (common::free_port(), common::free_port());
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            r#"services:
  assigned:
    run: GREETING=hello sh -c 'mkdir -p www && echo $GREETING > www/g.txt && exec python3 -m http.server $PORT --bind 127.0.0.1 --directory www'
    health: {{ path: /g.txt, interval: 100ms, deadline: 20s }}
    stop: {{ drain: 10ms, timeout: 2s }}
  joined:
    run: mkdir -p site && echo prepared > site/p.txt && exec python3 -m http.server $PORT --bind 127.0.0.1 --directory site
    health: {{ path: /p.txt, interval: 100ms, deadline: 20s }}
    stop: {{ drain: 10ms, timeout: 2s }}
environments:
  dev:
    listen: {{ assigned: 127.0.0.1:{a}, joined: 127.0.0.1:{b} }}
"#
        ),
    )
    .unwrap();
    let out = Command::new(HANGAR)
        .args(["deploy", "dev", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    let down = || {
        let _ = Command::new(HANGAR)
            .args(["down", "dev", "--dir"])
            .arg(dir)
            .output();
    };
    if !out.status.success() {
        down();
        panic!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let got = (get(a, "/g.txt"), get(b, "/p.txt"));
    down();
    assert_eq!(got.0.as_deref(), Some("hello\n"));
    assert_eq!(got.1.as_deref(), Some("prepared\n"));
}
