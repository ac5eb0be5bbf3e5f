//! Scheduled backups (`recovery.every`) kept by a real `hangar serve` for a
//! project it watches: retention proven by counting, a failing command
//! audited, notified as `backup_failed` and raised as an alert that the next
//! success resolves, and an RPO breach raised as an alert.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// The project: one service whose data is `notes.txt` in the project, copied
/// by its `backup.run`; `every`, `rpo` as given, two backups kept.
fn write_project(dir: &Path, every: &str, rpo: &str) {
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            r#"services:
  notes:
    run: sleep 600
    backup:
      run: cp notes.txt "$HANGAR_BACKUP_DIR/notes.txt"
      restore: cp "$HANGAR_BACKUP_DIR/notes.txt" notes.txt
environments:
  prod: {{}}
recovery:
  every: {every}
  rpo: {rpo}
  keep: 2
  environments: [prod]
"#
        ),
    )
    .unwrap();
}

/// What the receiver got: each `X-Hangar-Event` header and JSON body.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// Every JSON body POSTed to it, with its `X-Hangar-Event` header.
fn receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let into = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut event, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-hangar-event:") {
                    event = v.trim().to_string();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            into.lock()
                .unwrap()
                .push((event, serde_json::from_slice(&body).unwrap_or_default()));
        }
    });
    (url, got)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_server_backs_up_on_schedule_keeps_the_newest_and_alerts_on_failure_and_rpo() {
    let data = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    git(dir, &["init", "-q", "-b", "main"]);
    write_project(dir, "1s", "1h");
    std::fs::write(dir.join("notes.txt"), "meeting at noon\n").unwrap();
    std::fs::write(dir.join(".gitignore"), ".hangar/\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "init"]);
    let (hook, got) = receiver();
    let repo_arg = dir.display().to_string();
    let (_server, url, token) = common::browser::serve(BIN, data.path(), &["--repo", &repo_arg]);
    let base = url.trim_end_matches("/ui/").to_string();
    let (code, v) = common::http_json(
        "POST",
        &format!("{base}/api/v1/notifications"),
        &token,
        &serde_json::json!({"events": ["backup_failed", "alert_firing", "alert_resolved"], "channel": "webhook", "url": hook}).to_string(),
    );
    assert_eq!(code, 201, "{v}");
    let audit = |action: &str| -> Vec<Value> {
        let (_, v) =
            common::http_json("GET", &format!("{base}/api/v1/audit?limit=500"), &token, "");
        v.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    };
    let backups = dir.join(".hangar/backups/prod");
    let kept = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&backups)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };

    // Every second a backup; two kept, whatever the count made.
    wait_for("four scheduled backups", 30, || {
        audit("backup.succeeded").len() >= 4
    });
    let made = audit("backup.succeeded");
    assert_eq!(made[0]["actor"], "schedule", "{made:?}");
    assert!(
        made[0]["target"].as_str().unwrap().ends_with("/prod"),
        "{made:?}"
    );
    let names = kept();
    assert_eq!(
        names.len(),
        2,
        "recovery.keep: 2 of {} made: {names:?}",
        made.len()
    );
    for n in &names {
        assert_eq!(
            std::fs::read_to_string(backups.join(n).join("services/notes/notes.txt")).unwrap(),
            "meeting at noon\n"
        );
    }
    let newest_made = made
        .iter()
        .filter_map(|e| e["detail"]["path"].as_str())
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .max()
        .unwrap();
    assert!(
        names.contains(&newest_made),
        "the newest is kept: {newest_made} in {names:?}"
    );

    // The command fails: audited with its error, notified, an alert fires,
    // and nothing is kept of the failed attempt.
    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    wait_for("a failed scheduled backup", 30, || {
        !audit("backup.failed").is_empty()
    });
    let failed = &audit("backup.failed")[0];
    assert!(
        failed["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("service `notes`: its backup command"),
        "{failed}"
    );
    wait_for("backup_failed and alert_firing notifications", 30, || {
        let got = got.lock().unwrap();
        got.iter().any(|(e, _)| e == "backup_failed")
            && got
                .iter()
                .any(|(e, b)| e == "alert_firing" && b.to_string().contains("\"rule\":\"backup\""))
    });
    let out = Command::new(BIN)
        .args(["alerts", "prod", "--dir", &repo_arg])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.trim_start().starts_with("backup ") && l.contains("FIRING")),
        "hangar alerts lists it: {listed}"
    );
    assert_eq!(out.status.code(), Some(1), "something fires: {listed}");
    let (_, page) = common::http_json("GET", &format!("{base}/api/v1/delivery"), &token, "");
    let prod = page
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["env"] == "prod")
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(prod["backups"]["count"], 2, "{prod}");
    assert!(prod["backups"]["failing_since_ms"].is_u64(), "{prod}");
    assert!(
        kept().len() == 2 && !kept().iter().any(|n| n.starts_with('.')),
        "{:?}",
        kept()
    );
    assert_eq!(
        got.lock()
            .unwrap()
            .iter()
            .filter(|(e, b)| e == "alert_firing" && b.to_string().contains("\"rule\":\"backup\""))
            .count(),
        1,
        "announced once while it fails"
    );

    // The next success resolves it.
    std::fs::write(dir.join("notes.txt"), "meeting at one\n").unwrap();
    wait_for("alert_resolved", 30, || {
        got.lock()
            .unwrap()
            .iter()
            .any(|(e, b)| e == "alert_resolved" && b.to_string().contains("\"rule\":\"backup\""))
    });

    // A period longer than the RPO: the newest backup grows older than it.
    write_project(dir, "1h", "2s");
    wait_for("the backup-rpo alert", 30, || {
        got.lock()
            .unwrap()
            .iter()
            .any(|(e, b)| e == "alert_firing" && b.to_string().contains("\"rule\":\"backup-rpo\""))
    });
}
