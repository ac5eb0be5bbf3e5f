//! `--update` against a real HTTP server on loopback serving OSV-shaped
//! exports: what lands in the database, and that a hostile or broken archive
//! leaves the previous database untouched.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use hangar_advisories::update::{Limits, update};
use hangar_advisories::{Ecosystem, Options, scan};

/// Serves `files` (path → body) over HTTP/1.1 until the test ends.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let files = files.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match files.get(&path) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"no such export".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            });
        }
    });
    format!("http://{addr}")
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn record(id: &str, name: &str, fixed: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id, "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "crates.io", "name": name},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]
    }))
    .unwrap()
}

fn lock(dir: &Path) {
    std::fs::write(
        dir.join("Cargo.lock"),
        "version = 3\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    )
    .unwrap();
}

#[test]
fn downloads_the_exports_of_the_ecosystems_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    lock(tmp.path());
    let good = zip_of(&[
        (
            "RUSTSEC-2021-0003.json",
            &record("RUSTSEC-2021-0003", "smallvec", "1.6.1"),
        ),
        (
            "RUSTSEC-2099-0001.json",
            &record("RUSTSEC-2099-0001", "other", "1.0.0"),
        ),
    ]);
    let base = serve(HashMap::from([("/crates.io/all.zip".to_string(), good)]));
    let db = tmp.path().join("db");
    let eco = hangar_advisories::ecosystems_under(tmp.path()).unwrap();
    assert_eq!(eco, [Ecosystem::CratesIo]);
    let done = update(&db, &base, &eco, Limits::default()).unwrap();
    assert_eq!(done[0].records, 2);
    let report = scan(&Options {
        path: tmp.path().to_path_buf(),
        db: db.clone(),
        ignore_file: None,
        today: None,
    })
    .unwrap();
    let ids: Vec<&str> = report
        .vulnerabilities
        .iter()
        .map(|v| v.advisory.as_str())
        .collect();
    assert_eq!(ids, ["RUSTSEC-2021-0003"]);
}

#[test]
fn a_hostile_or_broken_archive_leaves_the_database_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let good = zip_of(&[("A.json", &record("A", "smallvec", "1.6.1"))]);
    let zip_slip = zip_of(&[("B.json", b"{}"), ("../../escaped.json", b"{}")]);
    let bomb = zip_of(&[("C.json", &vec![b' '; 4 << 20])]);
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let base = serve(HashMap::from([
        ("/good/crates.io/all.zip".to_string(), good),
        ("/slip/crates.io/all.zip".to_string(), zip_slip),
        ("/bomb/crates.io/all.zip".to_string(), bomb),
        ("/cut/crates.io/all.zip".to_string(), truncated),
    ]));
    let eco = [Ecosystem::CratesIo];
    update(&db, &format!("{base}/good"), &eco, Limits::default()).unwrap();
    let before = std::fs::read(db.join("crates.io/A.json")).unwrap();

    let small = Limits {
        entry_bytes: 1 << 20,
        ..Limits::default()
    };
    for (case, want) in [
        ("slip", "refused"),
        ("bomb", "more than"),
        ("cut", "not a zip archive"),
        ("missing", "404"),
    ] {
        let err = update(&db, &format!("{base}/{case}"), &eco, small).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(want), "{case}: {msg}");
        assert_eq!(
            std::fs::read(db.join("crates.io/A.json")).unwrap(),
            before,
            "{case}"
        );
        assert!(!db.join("crates.io/B.json").exists(), "{case}");
        assert!(!tmp.path().join("escaped.json").exists(), "{case}");
        let leftovers: Vec<_> = std::fs::read_dir(&db)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            ["crates.io"],
            "{case}: no staging directory left behind"
        );
    }
    // An oversized archive is refused before it is read whole.
    let tiny = Limits {
        archive_bytes: 64,
        ..Limits::default()
    };
    let err = update(&db, &format!("{base}/good"), &eco, tiny).unwrap_err();
    assert!(err.to_string().contains("larger than 64 bytes"), "{err}");
}
