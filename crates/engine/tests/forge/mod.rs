//! A local forge for tests: the real actions of `../shared/actions/*.bundle`
//! as bare repositories, served over `file://` and over HTTP by `git
//! http-backend` behind a tiny loopback HTTP server (CGI, one thread per
//! connection), or by a server that refuses every request.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `../shared/actions`, or `None` (tests skip loudly) when it is not there.
pub fn bundles() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/actions");
    d.is_dir().then_some(d)
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Clones each bundle named `owner/repo` into `root/owner/repo.git` (bare).
pub fn build(root: &Path, bundles: &Path, names: &[&str]) {
    for name in names {
        let bundle = bundles.join(format!("{name}.bundle"));
        let dest = root.join(format!("{name}.git"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        git(
            root,
            &[
                "clone",
                "--quiet",
                "--bare",
                bundle.to_str().unwrap(),
                dest.to_str().unwrap(),
            ],
        );
    }
}

/// A repository `root/owner/repo.git` made from `files`, tagged `tag`;
/// returns the commit id.
pub fn repo_from_files(root: &Path, name: &str, files: &[(&str, &str)], tag: &str) -> String {
    let work = root.join(format!(".work-{}", name.replace('/', "-")));
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "-b", "main"]);
    for (p, text) in files {
        let f = work.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "init"]);
    git(&work, &["tag", tag]);
    let bare = root.join(format!("{name}.git"));
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(
        root,
        &[
            "clone",
            "--quiet",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    std::fs::remove_dir_all(&work).unwrap();
    git(&bare, &["rev-parse", "HEAD"])
}

/// A loopback HTTP server in a background thread; lives as long as the test.
pub struct Http {
    pub url: String,
}

impl Http {
    /// Smart HTTP over `root` with `git http-backend`.
    pub fn git(root: &Path) -> Http {
        Http::start(Some(root.to_path_buf()))
    }

    /// Answers every request `403 Forbidden`.
    pub fn refusing() -> Http {
        Http::start(None)
    }

    fn start(root: Option<PathBuf>) -> Http {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let root = root.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, root.as_deref());
                });
            }
        });
        Http { url }
    }
}

fn serve(conn: TcpStream, root: Option<&Path>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let mut w = conn.try_clone()?;
        let Some(root) = root else {
            w.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden")?;
            continue;
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut cgi = Command::new("git")
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("GIT_PROTOCOL", header("git-protocol").unwrap_or_default())
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdin = cgi.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let out = cgi.wait_with_output()?;
        let _ = writer.join();
        let split = out
            .stdout
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| (p, 4))
            .or_else(|| {
                out.stdout
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|p| (p, 2))
            })
            .unwrap_or((0, 0));
        let head = String::from_utf8_lossy(&out.stdout[..split.0]).to_string();
        let content = &out.stdout[split.0 + split.1..];
        let mut status = "200 OK".to_string();
        let mut resp = Vec::new();
        for h in head.lines() {
            if let Some(s) = h.strip_prefix("Status:") {
                status = s.trim().to_string();
            } else if !h.trim().is_empty() {
                resp.push(h.trim().to_string());
            }
        }
        let mut msg = format!("HTTP/1.1 {status}\r\n");
        for h in resp {
            msg.push_str(&h);
            msg.push_str("\r\n");
        }
        msg.push_str(&format!("Content-Length: {}\r\n\r\n", content.len()));
        w.write_all(msg.as_bytes())?;
        w.write_all(content)?;
    }
}
