//! A git forge over https for tests: git's own smart-HTTP server (`git
//! http-backend`, as CGI) behind a small TLS server (rustls, a certificate
//! for `localhost` signed by a CA made at test time, see [`crate::tls`]),
//! with HTTP Basic authentication as GitHub, Gitea and GitLab take a token:
//! any user name, the token as the password. Reads are anonymous (a public
//! repository); a push, and any request that carries credentials, must carry
//! the token, else 401 with a `WWW-Authenticate` challenge, as the forges
//! answer.
//!
//! While it serves a request that carries credentials it looks at every
//! process's command line (`/proc/*/cmdline`) for the token, so a test can
//! assert that whoever pushed gave git the token through its environment,
//! never its arguments (where any local user can read it).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path and query, as sent.
    pub target: String,
    /// The Basic user name, when credentials came.
    pub user: Option<String>,
    /// Whether the credentials carried the token.
    pub authenticated: bool,
    pub status: u16,
}

/// What the server saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub requests: Vec<Request>,
    /// Command lines of processes that held the token (or its Basic
    /// encoding) while a request was served, the token replaced by `***`.
    pub token_on_argv: Vec<String>,
}

impl Seen {
    /// The pushes (`git-receive-pack` POSTs) and their statuses.
    pub fn pushes(&self) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|r| r.method == "POST" && r.target.ends_with("/git-receive-pack"))
            .collect()
    }
}

struct State {
    token: String,
    seen: Seen,
}

/// The running server; stopped when dropped.
pub struct GitHttps {
    port: u16,
    root: tempfile::TempDir,
    certs: crate::tls::LocalhostCerts,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

/// Starts a [`GitHttps`] that takes `token`, or `None` (failing under `$CI`,
/// skipping loudly elsewhere) when `openssl` or `git http-backend` is missing.
pub fn git_https(token: &str) -> Option<GitHttps> {
    let backend = Command::new("git")
        .args(["--exec-path"])
        .output()
        .map_err(|e| format!("git: {e}"))
        .and_then(|o| {
            let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            let b = dir.join("git-http-backend");
            b.exists()
                .then_some(())
                .ok_or_else(|| format!("{} is missing", b.display()))
        });
    crate::required_tool("git's smart-HTTP server (git http-backend)", backend)?;
    let certs = crate::tls::localhost_certs()?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
        .expect("the test certificate")
        .collect::<Result<_, _>>()
        .expect("the test certificate parses");
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).expect("the test key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("the test certificate and key match");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    // `localhost` may resolve to ::1 first: served there too when it can be.
    let v6 = TcpListener::bind(("::1", port)).ok();
    let root = tempfile::tempdir().expect("a temporary directory");
    let state = Arc::new(Mutex::new(State {
        token: token.to_string(),
        seen: Seen::default(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    for l in std::iter::once(listener).chain(v6) {
        let (config, state, stop) = (config.clone(), state.clone(), stop.clone());
        let root = root.path().to_path_buf();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (config, state, root) = (config.clone(), state.clone(), root.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, config, &state, &root);
                });
            }
        });
    }
    Some(GitHttps {
        port,
        root,
        certs,
        state,
        stop,
    })
}

impl GitHttps {
    /// The https URL of repository `name` (`acme/app.git`).
    pub fn url(&self, name: &str) -> String {
        format!("https://localhost:{}/{name}", self.port)
    }

    /// The bare repository behind `name`, created (branch `main`) if new.
    pub fn bare(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).expect("the repository's folder");
            crate::git(&dir, &["init", "-q", "--bare", "-b", "main"]);
        }
        dir
    }

    /// The CA a client must trust (`GIT_SSL_CAINFO`).
    pub fn ca(&self) -> &Path {
        &self.certs.ca
    }

    /// A CA that signed nothing this server has.
    pub fn other_ca(&self) -> &Path {
        &self.certs.other_ca
    }

    /// The token the server takes from now on.
    pub fn set_token(&self, token: &str) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).token = token.to_string();
    }

    pub fn seen(&self) -> Seen {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .clone()
    }
}

impl Drop for GitHttps {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting threads so they see the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = TcpStream::connect(("::1", self.port));
    }
}

/// Serves one request on one connection (`Connection: close`).
fn serve(
    conn: TcpStream,
    config: Arc<rustls::ServerConfig>,
    state: &Mutex<State>,
    root: &Path,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let tls = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut stream = BufReader::new(rustls::StreamOwned::new(tls, conn));
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if stream.read_line(&mut h)? == 0 {
            return Ok(());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let push = query.contains("service=git-receive-pack") || path.ends_with("/git-receive-pack");
    let credentials = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let token = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .token
        .clone();
    if headers.contains_key("authorization") {
        let leaks = on_argv(&token);
        state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .token_on_argv
            .extend(leaks);
    }
    let authenticated = credentials.as_ref().is_some_and(|(_, p)| *p == token);
    let record = |status: u16| {
        state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .requests
            .push(Request {
                method: method.clone(),
                target: target.clone(),
                user: credentials.as_ref().map(|(u, _)| u.clone()),
                authenticated,
                status,
            });
    };
    if (push || headers.contains_key("authorization")) && !authenticated {
        record(401);
        let body = "Invalid username or token.\n";
        write!(
            stream.get_mut(),
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"hangar test forge\"\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return stream.get_mut().flush();
    }
    if headers
        .get("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        stream
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        stream.get_mut().flush()?;
    }
    let body = read_body(&mut stream, &headers)?;
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((user, _)) = credentials.as_ref().filter(|_| authenticated) {
        // http-backend enables receive-pack for an authenticated user only.
        cgi.env("REMOTE_USER", user);
    }
    for (h, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = headers.get(h) {
            cgi.env(var, v);
        }
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output()?;
    let _ = feeder.join();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            raw.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        });
    let Some((head_end, body_start)) = split else {
        record(500);
        let msg = String::from_utf8_lossy(&out.stderr).into_owned();
        write!(
            stream.get_mut(),
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        )?;
        return stream.get_mut().flush();
    };
    let mut status = "200 OK".to_string();
    let mut response_headers = String::new();
    for h in String::from_utf8_lossy(&raw[..head_end]).lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                response_headers.push_str(h.trim_end());
                response_headers.push_str("\r\n");
            }
            None => {}
        }
    }
    let code: u16 = status
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(500);
    record(code);
    let payload = &raw[body_start..];
    let w = stream.get_mut();
    write!(
        w,
        "HTTP/1.1 {status}\r\n{response_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    w.write_all(payload)?;
    w.flush()?;
    w.conn.send_close_notify();
    w.flush()
}

/// The request's body: `Content-Length` bytes, or chunked (git sends a large
/// push so).
fn read_body(r: &mut impl BufRead, headers: &BTreeMap<String, String>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers.get("content-length").and_then(|n| n.parse().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(body)
}

/// Every process whose command line holds `token` or its Basic encoding.
fn on_argv(token: &str) -> Vec<String> {
    if token.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for p in procs.flatten() {
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let b64_hit = ["x-access-token", "oauth2", "git"].iter().any(|u| {
            let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{token}"));
            text.contains(&enc)
        });
        if text.contains(token) || b64_hit {
            found.push(format!(
                "pid {}: {}",
                p.file_name().to_string_lossy(),
                text.replace(token, "***")
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// git as a client of the server: the token in its environment.
    fn client(dir: &Path, ca: &Path, header: Option<&str>, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSL_CAINFO", ca);
        if let Some(h) = header {
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", h);
        }
        cmd.output().unwrap()
    }

    fn basic(token: &str) -> String {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        format!("Authorization: Basic {b}")
    }

    #[test]
    fn pushes_need_the_token_and_reads_do_not() {
        let Some(forge) = git_https("s3cret-t0ken") else {
            return;
        };
        let bare = forge.bare("acme/app.git");
        let (work, sha) = crate::repo_with(&[("a.txt", "a")]);
        let url = forge.url("acme/app.git");
        let w = work.path();
        let o = client(w, forge.ca(), None, &["push", "-q", &url, "main"]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("terminal prompts disabled") || err.contains("401"),
            "{err}"
        );
        let o = client(
            w,
            forge.ca(),
            Some(&basic("wrong")),
            &["push", "-q", &url, "main"],
        );
        assert!(!o.status.success());
        eprintln!("wrong token: {}", String::from_utf8_lossy(&o.stderr));
        // Another CA: refused by git's verification.
        let o = client(
            w,
            forge.other_ca(),
            Some(&basic("s3cret-t0ken")),
            &["push", "-q", &url, "main"],
        );
        assert!(!o.status.success());
        eprintln!("other CA: {}", String::from_utf8_lossy(&o.stderr));
        let o = client(
            w,
            forge.ca(),
            Some(&basic("s3cret-t0ken")),
            &["push", "-q", &url, "main"],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(crate::git(&bare, &["rev-parse", "main"]), sha);
        let seen = forge.seen();
        assert_eq!(seen.pushes().len(), 1, "{seen:#?}");
        assert_eq!(seen.pushes()[0].status, 200);
        assert_eq!(seen.pushes()[0].user.as_deref(), Some("x-access-token"));
        assert!(seen.token_on_argv.is_empty(), "{:?}", seen.token_on_argv);
        // Anonymous reads.
        let clone = tempfile::tempdir().unwrap();
        let o = client(clone.path(), forge.ca(), None, &["clone", "-q", &url, "c"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            crate::git(&clone.path().join("c"), &["rev-parse", "HEAD"]),
            sha
        );
    }

    #[test]
    fn a_token_on_a_command_line_is_seen() {
        let Some(forge) = git_https("argv-t0ken") else {
            return;
        };
        forge.bare("acme/app.git");
        let (work, _) = crate::repo_with(&[("a.txt", "a")]);
        let url = forge
            .url("acme/app.git")
            .replace("https://", "https://x-access-token:argv-t0ken@");
        let o = client(work.path(), forge.ca(), None, &["push", "-q", &url, "main"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let seen = forge.seen();
        assert!(!seen.token_on_argv.is_empty(), "{seen:#?}");
        assert!(seen.token_on_argv.iter().all(|l| !l.contains("argv-t0ken")));
    }
}
