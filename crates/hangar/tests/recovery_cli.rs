//! `hangar recovery`: a real service's data backed up with its own command,
//! restored into a scratch environment by a drill that reports RPO and RTO,
//! and the ways a backup goes wrong (a damaged file, a failing command).

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::free_port;

fn hangar(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn project(dir: &Path, prod: u16, drill: u16, rto: &str) {
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            r#"services:
  notes:
    run: sh -c 'mkdir -p "$HANGAR_DATA/files" && exec python3 -m http.server $PORT --bind 127.0.0.1 --directory "$HANGAR_DATA/files"'
    health: {{ path: /, interval: 100ms, timeout: 1s, deadline: 20s }}
    stop: {{ drain: 50ms, timeout: 2s }}
    backup:
      run: cp "$HANGAR_DATA/files/notes.txt" "$HANGAR_BACKUP_DIR/notes.txt" && echo "$HANGAR_ADDRESS" > "$HANGAR_BACKUP_DIR/from.txt"
      restore: mkdir -p "$HANGAR_DATA/files" && cp "$HANGAR_BACKUP_DIR/notes.txt" "$HANGAR_DATA/files/notes.txt"
environments:
  prod:
    listen: {{ notes: 127.0.0.1:{prod} }}
  drill:
    listen: {{ notes: 127.0.0.1:{drill} }}
recovery: {{ rpo: 1h, rto: {rto}, keep: 2 }}
"#
        ),
    )
    .unwrap();
}

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = hangar(self.0, &["down", "prod"]);
        let _ = hangar(self.0, &["down", "drill"]);
    }
}

#[test]
fn backup_drill_and_what_goes_wrong() {
    if !common::have_python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (prod, drill) = (free_port(), free_port());
    project(dir, prod, drill, "4h");
    let _down = Down(dir);
    let out = hangar(dir, &["deploy", "prod"]);
    assert!(out.status.success(), "{}", text(&out));
    let files = dir.join(".hangar/envs/prod/files");
    std::fs::write(files.join("notes.txt"), "meeting at noon\n").unwrap();
    assert_eq!(
        get(prod, "/notes.txt").as_deref(),
        Some("meeting at noon\n")
    );

    // Three backups, two kept.
    for _ in 0..3 {
        let out = hangar(dir, &["recovery", "backup", "prod"]);
        assert!(out.status.success(), "{}", text(&out));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = hangar(dir, &["recovery", "list", "prod", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "recovery.keep: 2");
    let newest = std::path::PathBuf::from(list[0]["path"].as_str().unwrap());
    let files_in: Vec<&str> = list[0]["manifest"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    assert!(files_in.contains(&"history/history.jsonl"), "{files_in:?}");
    assert!(
        files_in.contains(&"services/notes/notes.txt"),
        "{files_in:?}"
    );
    assert_eq!(
        std::fs::read_to_string(newest.join("services/notes/from.txt"))
            .unwrap()
            .trim(),
        format!("127.0.0.1:{prod}"),
        "the command is told its service's address"
    );

    // The drill restores into `drill`, which serves prod's data, within the targets.
    let out = hangar(
        dir,
        &["recovery", "drill", "prod", "--into", "drill", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true, "{v}");
    assert!(v["report"]["rto_achieved_ms"].as_u64().unwrap() > 0);
    assert_eq!(v["report"]["rpo_target_ms"], 3_600_000);
    assert_eq!(
        std::fs::read_to_string(dir.join(".hangar/envs/drill/files/notes.txt")).unwrap(),
        "meeting at noon\n"
    );
    assert!(
        dir.join(".hangar/envs/drill/history.jsonl").exists(),
        "the history came back too"
    );
    assert!(
        get(drill, "/notes.txt").is_none(),
        "the scratch environment was stopped"
    );
    assert_eq!(
        get(prod, "/notes.txt").as_deref(),
        Some("meeting at noon\n"),
        "prod untouched"
    );

    // An RTO the drill cannot meet fails it, with the numbers.
    project(dir, prod, drill, "1ms");
    let out = hangar(dir, &["recovery", "drill", "prod", "--into", "drill"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("RTO achieved"), "{}", text(&out));
    assert!(text(&out).contains("FAILED"), "{}", text(&out));
    project(dir, prod, drill, "4h");

    // A damaged backup is refused, naming the file.
    std::fs::write(newest.join("services/notes/notes.txt"), "tampered\n").unwrap();
    let out = hangar(dir, &["recovery", "drill", "prod", "--into", "drill"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("services/notes/notes.txt does not match its checksum"),
        "{}",
        text(&out)
    );

    // A failing backup command names the service and leaves nothing behind.
    std::fs::remove_file(files.join("notes.txt")).unwrap();
    let out = hangar(dir, &["recovery", "backup", "prod"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("service `notes`: its backup command"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("nothing was kept"), "{}", text(&out));
    let left: Vec<_> = std::fs::read_dir(dir.join(".hangar/backups/prod"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");

    // A scratch environment hangar.yml does not define is named.
    let out = hangar(dir, &["recovery", "drill", "prod", "--into", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no environment `nowhere`"),
        "{}",
        text(&out)
    );
}

/// `${{ services.db.host|port }}` in `backup:` commands: a real PostgreSQL
/// dumped with `pg_dump` through the environment's router address and
/// restored with `psql`, with no address written twice in hangar.yml.
#[test]
fn pg_dump_and_psql_reach_the_database_through_its_service_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(db) = crate::tcp_services::postgres_service(dir) else {
        return;
    };
    let port = free_port();
    struct DownDev<'a>(&'a Path);
    impl Drop for DownDev<'_> {
        fn drop(&mut self) {
            let _ = hangar(self.0, &["down", "dev"]);
        }
    }
    let _down = DownDev(dir);
    let at = "-h ${{ services.db.host }} -p ${{ services.db.port }} -U app";
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            "services:\n{db}    backup:\n      run: pg_dump {at} -d postgres -f \"$HANGAR_BACKUP_DIR/db.sql\"\n      restore: psql {at} -d postgres -v ON_ERROR_STOP=1 -f \"$HANGAR_BACKUP_DIR/db.sql\"\nenvironments:\n  dev:\n    listen: {{ db: 0.0.0.0:{port} }}\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .arg("validate")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = hangar(dir, &["deploy", "dev"]);
    assert!(out.status.success(), "{}", text(&out));
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "app"])
            .args(["-d", "postgres", "-tA", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    psql("create table notes (v text); insert into notes values ('kept by pg_dump')");

    let out = hangar(dir, &["recovery", "backup", "dev", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = hangar(dir, &["recovery", "list", "dev", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let newest = std::path::PathBuf::from(list[0]["path"].as_str().unwrap());
    let dump = std::fs::read_to_string(newest.join("services/db/db.sql")).unwrap();
    assert!(dump.contains("kept by pg_dump"), "{dump}");

    psql("drop table notes");
    let out = hangar(dir, &["recovery", "restore", "dev"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(psql("select v from notes"), "kept by pg_dump");

    // A reference the environment cannot resolve is named before anything runs.
    let yml = std::fs::read_to_string(dir.join("hangar.yml")).unwrap();
    std::fs::write(
        dir.join("hangar.yml"),
        yml.replace(&format!("0.0.0.0:{port}"), "127.0.0.1:0"),
    )
    .unwrap();
    let out = hangar(dir, &["recovery", "backup", "dev"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("service `db`: backup.run: service `db` listens on any free port"),
        "{}",
        text(&out)
    );
}
