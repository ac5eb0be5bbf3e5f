//! Scheduled backups (`recovery.every`, `recovery.schedule`) kept by a real
//! `hangar serve` for a project it watches: retention proven by counting, a
//! failing command audited, notified as `backup_failed` and raised as an
//! alert that the next success resolves, and an RPO breach raised as an
//! alert; a cron schedule backs up once at each due time; two servers on one
//! PostgreSQL database make one backup per period between them, the leader
//! only, and the survivor of a `kill -9` keeps the schedule without a double.

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
    write_schedule(dir, &format!("every: {every}"), rpo, 2);
}

/// [`write_project`] with the schedule line (`every: 2s`, `schedule: "…"`)
/// and `keep` given.
fn write_schedule(dir: &Path, when: &str, rpo: &str, keep: u32) {
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
  {when}
  rpo: {rpo}
  keep: {keep}
  environments: [prod]
"#
        ),
    )
    .unwrap();
}

/// A watched project with `when` as its schedule, committed.
fn scheduled_project(when: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    git(dir, &["init", "-q", "-b", "main"]);
    write_schedule(dir, when, "1h", 1000);
    std::fs::write(dir.join("notes.txt"), "meeting at noon\n").unwrap();
    std::fs::write(dir.join(".gitignore"), ".hangar/\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "init"]);
    repo
}

/// The `backup.succeeded` audit entries, oldest first.
fn audited_backups(base: &str, token: &str) -> Vec<Value> {
    let (code, v) = common::http_json("GET", &format!("{base}/api/v1/audit?limit=1000"), token, "");
    assert_eq!(code, 200, "{v}");
    let mut made: Vec<Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "backup.succeeded")
        .cloned()
        .collect();
    made.sort_by_key(|e| e["detail"]["created_ms"].as_u64());
    made
}

/// The complete backups of prod on disk under each of `dirs`.
fn backups_on_disk(dirs: &[&Path]) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<std::path::PathBuf> = dirs
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(dir.join(".hangar/backups/prod"))
                .map(|d| {
                    d.flatten()
                        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                        .map(|e| e.path())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    paths.sort();
    paths
}

/// Every audited backup is one folder on disk and the other way round: no
/// backup made twice, none unaudited.
fn audit_matches_disk(made: &[Value], dirs: &[&Path]) {
    let mut audited: Vec<std::path::PathBuf> = made
        .iter()
        .map(|e| std::fs::canonicalize(e["detail"]["path"].as_str().unwrap()).unwrap())
        .collect();
    audited.sort();
    let mut unique = audited.clone();
    unique.dedup();
    assert_eq!(audited, unique, "a backup audited twice");
    let on_disk: Vec<std::path::PathBuf> = backups_on_disk(dirs)
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap())
        .collect();
    assert_eq!(audited, on_disk, "audit and disk differ");
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
    // A failing backup is retried every second, and the attempt under way
    // has its `.partial` folder until it fails: a listing taken during one
    // shows it. What a failed attempt leaves must be gone, so some listing
    // within a few attempts holds the two kept backups and nothing else.
    let only_kept =
        |names: &[String]| names.len() == 2 && !names.iter().any(|n| n.starts_with('.'));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listing = kept();
    while !only_kept(&listing) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        listing = kept();
    }
    assert!(only_kept(&listing), "{listing:?}");
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

/// `schedule: "*/2 * * * * *"` (a leading seconds field): one backup at each
/// due time, none between, each audited once.
#[test]
fn a_cron_schedule_backs_up_once_at_each_due_time() {
    let data = tempfile::tempdir().unwrap();
    let repo = scheduled_project(r#"schedule: "*/2 * * * * *""#);
    let dir = repo.path();
    let repo_arg = dir.display().to_string();
    let (_server, url, token) = common::browser::serve(
        BIN,
        data.path(),
        &["--repo", &repo_arg, "--agent-capacity", "0"],
    );
    let base = url.trim_end_matches("/ui/").to_string();
    wait_for("five scheduled backups", 40, || {
        audited_backups(&base, &token).len() >= 5
    });
    std::thread::sleep(Duration::from_millis(300));
    let made = audited_backups(&base, &token);
    audit_matches_disk(&made, &[dir]);
    // Each backup belongs to the due time (an even second) at or before its
    // start; no due time has two.
    let due: Vec<u64> = made
        .iter()
        .map(|e| e["detail"]["created_ms"].as_u64().unwrap() / 2000)
        .collect();
    let mut distinct = due.clone();
    distinct.dedup();
    assert_eq!(due, distinct, "one backup per due time: {made:#?}");
}

/// Two `hangar serve` processes on one PostgreSQL database watch the same
/// project, each its own checkout as two hosts would, backed up every two
/// seconds: between them one backup per due time, made by the leader of the
/// periodic work only; `kill -9` of the leader, and the other takes the lead
/// and keeps the schedule, still one backup per due time. Separate
/// checkouts, because servers sharing one directory also share its backups
/// and its schedule lock, which would hide a follower that did not defer to
/// the leader; a cron schedule, because its due times are the same for both.
#[test]
fn two_servers_make_one_backup_per_period_and_the_survivor_keeps_the_schedule() {
    let Some(cluster) = hangar_testkit::postgres::cluster() else {
        return;
    };
    let db = cluster.database();
    let origin = scheduled_project(r#"schedule: "*/2 * * * * *""#);
    let hosts = tempfile::tempdir().unwrap();
    let checkout = |host: &str| {
        let dir = hosts.path().join(host).join("app");
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        git(
            hosts.path(),
            &[
                "clone",
                "-q",
                origin.path().to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        );
        std::fs::write(dir.join("notes.txt"), "meeting at noon\n").unwrap();
        dir
    };
    let (dir_a, dir_b) = (checkout("a"), checkout("b"));
    let (arg_a, arg_b) = (dir_a.display().to_string(), dir_b.display().to_string());
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = crate::server_postgres::serve(
        data_a.path(),
        &["--repo", &arg_a, "--agent-capacity", "0"],
        &db,
    );
    let token = a.token.clone().unwrap();
    let a_pid = u64::from(a.child.id());
    // The first backup is made before the second server starts: the first
    // server leads.
    wait_for("the first server's first backup", 30, || {
        !audited_backups(&a.url, &token).is_empty()
    });
    // Both servers seal with one key: the second gets the first's key file.
    std::fs::copy(
        data_a.path().join("secret.key"),
        data_b.path().join("secret.key"),
    )
    .unwrap();
    let b = crate::server_postgres::serve(
        data_b.path(),
        &["--repo", &arg_b, "--agent-capacity", "0"],
        &db,
    );
    let b_pid = u64::from(b.child.id());
    let both_from = audited_backups(&b.url, &token).len();
    wait_for("four more periods with both servers up", 40, || {
        audited_backups(&b.url, &token).len() >= both_from + 4
    });
    let pid = |e: &Value| e["detail"]["server"]["pid"].as_u64().unwrap();
    let made = audited_backups(&b.url, &token);
    assert!(
        made.iter().all(|e| pid(e) == a_pid),
        "only the leader backs up while both run: {made:#?}"
    );

    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    wait_for("three backups by the survivor", 40, || {
        audited_backups(&b.url, &token)
            .iter()
            .filter(|e| pid(e) == b_pid)
            .count()
            >= 3
    });
    std::thread::sleep(Duration::from_millis(300));
    let made = audited_backups(&b.url, &token);
    audit_matches_disk(&made, &[&dir_a, &dir_b]);
    // One per due time (an even second), across the hand-over too.
    let due: Vec<u64> = made
        .iter()
        .map(|e| e["detail"]["created_ms"].as_u64().unwrap() / 2000)
        .collect();
    let mut distinct = due.clone();
    distinct.dedup();
    assert_eq!(due, distinct, "two backups for one due time: {made:#?}");
    let survivor: Vec<&Value> = made.iter().filter(|e| pid(e) == b_pid).collect();
    assert!(
        made.iter().all(|e| pid(e) == a_pid || pid(e) == b_pid),
        "{made:#?}"
    );
    // The survivor's backups all come after the kill, the first within the
    // period plus the hand-over (the dead server's lock ends with its
    // connection; the survivor looks each second).
    let first = survivor[0]["detail"]["created_ms"].as_u64().unwrap();
    assert!(first >= killed_ms - 100, "{made:#?}");
    assert!(
        first - killed_ms <= 2000 + 5000,
        "the survivor took {} ms to make its first backup",
        first - killed_ms
    );
}

/// A `hangar serve` killed (`kill -9`) while its scheduled backup runs
/// leaves the backup's `.STAMP.partial` folder; the restarted server removes
/// it at start (audited), before any backup is due, and leaves the complete
/// backup and every other folder alone.
#[test]
fn a_restarted_server_removes_what_a_backup_killed_mid_way_left() {
    let data = tempfile::tempdir().unwrap();
    let repo = scheduled_project("every: 1h");
    let dir = repo.path();
    let repo_arg = dir.display().to_string();
    // A complete backup, made before any server runs.
    let out = Command::new(BIN)
        .args(["recovery", "backup", "prod", "--dir", &repo_arg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let complete = backups_on_disk(&[dir]);
    assert_eq!(complete.len(), 1, "{complete:?}");
    let manifest = std::fs::read(complete[0].join("manifest.json")).unwrap();
    // Folders that are not a backup's leftovers, though they look close.
    let backups = dir.join(".hangar/backups/prod");
    for other in [".notes.partial", "20260101T000000.000Z.partial"] {
        std::fs::create_dir_all(backups.join(other)).unwrap();
        std::fs::write(backups.join(other).join("keep"), "x").unwrap();
    }
    let partials = || -> Vec<String> {
        std::fs::read_dir(&backups)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".2") && n.ends_with(".partial"))
            .collect()
    };

    // A backup due every second whose command takes long: killed in it.
    write_schedule(dir, "every: 1s", "1h", 1000);
    let yml = std::fs::read_to_string(dir.join("hangar.yml")).unwrap();
    std::fs::write(
        dir.join("hangar.yml"),
        yml.replace("notes.txt\"\n", "notes.txt\" && sleep 5\n"),
    )
    .unwrap();
    let (server, _, token) = common::browser::serve(
        BIN,
        data.path(),
        &["--repo", &repo_arg, "--agent-capacity", "0"],
    );
    wait_for("a backup in progress", 30, || !partials().is_empty());
    drop(server); // kill -9
    let left = partials();
    assert_eq!(left.len(), 1, "{left:?}");

    // Restarted with no backup due for an hour: only the start removes it.
    write_schedule(dir, "every: 1h", "1h", 1000);
    let (_server, again, _) = common::browser::serve(
        BIN,
        data.path(),
        &["--repo", &repo_arg, "--agent-capacity", "0"],
    );
    let base = again.trim_end_matches("/ui/").to_string();
    wait_for("the leftover removed", 30, || partials().is_empty());
    let now: Vec<_> = backups_on_disk(&[dir])
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".partial"))
        .collect();
    assert_eq!(now, complete, "no backup was made");
    assert_eq!(
        std::fs::read(complete[0].join("manifest.json")).unwrap(),
        manifest
    );
    for other in [".notes.partial", "20260101T000000.000Z.partial"] {
        assert!(backups.join(other).join("keep").is_file(), "{other}");
    }
    wait_for("the removal audited", 10, || {
        let (_, v) =
            common::http_json("GET", &format!("{base}/api/v1/audit?limit=500"), &token, "");
        v.as_array().unwrap().iter().any(|e| {
            e["action"] == "backup.leftover_removed"
                && e["detail"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&left[0]))
        })
    });
}
