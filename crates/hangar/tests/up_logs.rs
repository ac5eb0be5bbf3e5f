//! `hangar up` in the foreground: every instance's output, live, prefixed with
//! `service[index]`; Ctrl-C stops everything. Real processes throughout.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn up_shows_prefixed_instance_logs_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("hangar.yml"),
        format!(
            "services:\n  web:\n    run: sh -c 'echo web says hi on $PORT; exec python3 -m http.server $PORT --bind 127.0.0.1'\n    instances: 2\n    health: {{ path: /, interval: 200ms, timeout: 1s, deadline: 20s }}\n    stop: {{ drain: 100ms, timeout: 2s }}\nenvironments:\n  dev:\n    listen: {{ web: 127.0.0.1:{port} }}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["up", "--env", "dev", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(seen
        .iter()
        .any(|l: &String| l.starts_with("web[0]") && l.contains("web says hi"))
        && seen
            .iter()
            .any(|l| l.starts_with("web[1]") && l.contains("web says hi")))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no prefixed output from both instances; got:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
    assert!(
        seen.iter().all(|l| !l.contains("\x1b[")),
        "no colours when stdout is not a terminal: {seen:?}"
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hangar up did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the router stopped with the environment"
    );
}
