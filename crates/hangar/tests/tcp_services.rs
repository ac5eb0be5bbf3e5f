//! Services that are not HTTP (`protocol: tcp`): databases and the like behind
//! the environment's router, as `hangar up` / `hangar deploy` run them. Real
//! processes throughout: the `hangar` binary, a python3 line-echo server, and
//! a PostgreSQL server with `psql` when they are installed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;

use common::free_port;

const HANGAR: &str = env!("CARGO_BIN_EXE_hangar");

/// A line server: each line comes back prefixed with the version it was started as.
const ECHO: &str = r#"
import socket, sys, threading
version, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
def serve(c):
    for line in c.makefile("rb"):
        c.sendall(version.encode() + b" " + line)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn hangar(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(HANGAR)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// `hangar validate` in the project, as a user runs it there.
fn validate(dir: &Path) -> std::process::Output {
    Command::new(HANGAR)
        .arg("validate")
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// Stops the environment when the test ends, passed or failed.
struct Down<'a>(&'a Path, &'a str);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = hangar(self.0, &["down", "--env", self.1]);
    }
}

struct Conn(BufReader<TcpStream>);

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Conn(BufReader::new(s))
    }

    /// The answer to one line; `None` once the connection is closed.
    fn ask(&mut self, line: &str) -> Option<String> {
        self.0
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .ok()?;
        let mut answer = String::new();
        match self.0.read_line(&mut answer) {
            Ok(n) if n > 0 => Some(answer.trim().to_string()),
            _ => None,
        }
    }
}

fn echo_project(dir: &Path, port: u16, version: &str) {
    std::fs::write(dir.join("echo.py"), ECHO).unwrap();
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            "services:\n  db:\n    run: python3 echo.py {version} $PORT\n    protocol: tcp\n    health: {{ tcp: true, interval: 100ms, deadline: 20s }}\n    stop: {{ drain: 4s, timeout: 2s }}\nenvironments:\n  prod:\n    strategy: blue-green\n    blue_green: {{ scale_down_delay: 1s }}\n    listen: {{ db: 127.0.0.1:{port} }}\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_blue_green_switch_of_a_tcp_service_moves_new_connections_and_drains_open_ones() {
    if !common::have_python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let _down = Down(dir, "prod");
    echo_project(dir, port, "v1");
    let out = ok(&hangar(dir, &["deploy", "prod"]));
    let status = ok(&hangar(dir, &["status", "prod"]));
    assert!(
        status.contains(&format!("db on tcp://127.0.0.1:{port}")),
        "{out}\n{status}"
    );
    let mut old = Conn::open(port);
    assert_eq!(old.ask("a").as_deref(), Some("v1 a"));

    echo_project(dir, port, "v2");
    ok(&hangar(dir, &["deploy", "prod"]));
    let switched = Instant::now();
    let mut new = Conn::open(port);
    assert_eq!(
        new.ask("b").as_deref(),
        Some("v2 b"),
        "new connections go to v2"
    );
    for _ in 0..5 {
        assert_eq!(
            Conn::open(port).ask("x").as_deref(),
            Some("v2 x"),
            "every new connection"
        );
    }
    assert_eq!(
        old.ask("c").as_deref(),
        Some("v1 c"),
        "the open connection stays on v1"
    );
    // Past the scale-down delay (1 s) v1 is out of the router and draining
    // (up to `stop.drain`, 4 s): the open connection still works.
    while switched.elapsed() < Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        old.ask("d").as_deref(),
        Some("v1 d"),
        "still served while v1 drains"
    );
    // The drain is bounded: v1 is stopped and the connection ends with it.
    let mut closed = None;
    while switched.elapsed() < Duration::from_secs(20) {
        if old.ask("e").is_none() {
            closed = Some(switched.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let closed = closed.expect("the drain timeout ends the old connection");
    assert!(
        closed >= Duration::from_secs(4),
        "not before scale-down delay + drain: {closed:?}"
    );
    assert_eq!(new.ask("f").as_deref(), Some("v2 f"));
    let history = ok(&hangar(dir, &["history", "prod", "-v"]));
    assert!(history.contains("switched 100% of traffic to"), "{history}");
}

/// Debian's PostgreSQL programs (`/usr/lib/postgresql/N/bin`), newest first.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL cluster initialised under `dir` (user `app`, trust), as the
/// `db:` service of a hangar.yml (its `run`, `protocol`, `health` and `stop`
/// lines, indented for `services:`), or None when PostgreSQL is not here
/// (skipped loudly; a failure under CI).
pub(crate) fn postgres_service(dir: &Path) -> Option<String> {
    let have = postgres_bin().filter(|_| {
        Command::new("psql")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let bin = hangar_testkit::required_tool(
        "PostgreSQL (postgres, initdb) and psql",
        have.ok_or_else(|| "not installed".to_string()),
    )?;
    let pgdata = dir.join("pgdata");
    let root = is_root();
    // PostgreSQL refuses to run as root: as root the cluster is the `postgres` user's.
    let as_owner = if root { "runuser -u postgres -- " } else { "" };
    if root {
        std::fs::create_dir(&pgdata).unwrap();
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&pgdata)
            .status()
            .unwrap();
        Command::new("chmod").arg("755").arg(dir).status().unwrap();
    }
    let init = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{as_owner}{}/initdb -D {} -U app --auth=trust -E UTF8",
            bin.display(),
            pgdata.display()
        ))
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    Some(format!(
        "  db:\n    run: {as_owner}{}/postgres -D {} -p $PORT -k {} -c listen_addresses=127.0.0.1\n    protocol: tcp\n    health: {{ command: 'psql -h 127.0.0.1 -p $PORT -U app -d postgres -c \"select 1\"', interval: 200ms, timeout: 2s, deadline: 30s }}\n    stop: {{ signal: INT, drain: 100ms, timeout: 10s }}\n",
        bin.display(),
        pgdata.display(),
        pgdata.display()
    ))
}

/// Seed 001's stack: a PostgreSQL behind `listen:` answered "no response"
/// while the router spoke only HTTP. Now `psql` reaches it through the router.
#[test]
fn psql_reaches_a_postgres_service_through_its_listen_address() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(db) = postgres_service(dir) else {
        return;
    };
    let port = free_port();
    let _down = Down(dir, "dev");
    std::fs::write(
        dir.join("hangar.yml"),
        format!("services:\n{db}environments:\n  dev:\n    listen: {{ db: 127.0.0.1:{port} }}\n"),
    )
    .unwrap();
    ok(&hangar(dir, &["deploy", "dev"]));
    let psql = |sql: &str| {
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "app"])
            .args(["-d", "postgres", "-tA", "-c", sql])
            .output()
            .unwrap()
    };
    let out = psql(
        "create table t (v text); insert into t values ('through the router'); select v from t",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim().lines().last(),
        Some("through the router")
    );
    // A second session (a new connection through the router) sees the data.
    let out = psql("select count(*) from t");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
}

/// An HTTP service that answers with what its database (a line server at
/// `$DATABASE_URL`) answered, and the port it was given in its variables.
const API: &str = r#"
import os, socket, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        url = os.environ["DATABASE_URL"]
        u = urlsplit(url)
        with socket.create_connection((u.hostname, u.port), timeout=5) as c:
            c.sendall(b"ping\n")
            answer = c.makefile("rb").readline().decode().strip()
        body = f"{answer}|{url}|{os.environ['HANGAR_SERVICE_DB_PORT']}|{os.environ['HANGAR_SERVICE_DB_HOST']}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn http_get(port: u16) -> String {
    use std::io::Read;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

/// The api reaches its database through the address hangar gives it: the
/// db's router, bound on any free port (`listen` unset), known only at start.
#[test]
fn a_service_reads_its_dependency_s_url_and_reaches_it() {
    if !common::have_python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let _down = Down(dir, "dev");
    std::fs::write(dir.join("echo.py"), ECHO).unwrap();
    std::fs::write(dir.join("api.py"), API).unwrap();
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            "services:\n  db:\n    run: python3 echo.py v1 $PORT\n    protocol: tcp\n    health: {{ interval: 100ms }}\n  api:\n    run: python3 api.py $PORT\n    depends_on: [db]\n    env:\n      DATABASE_URL: ${{{{ services.db.url }}}}\n    health: {{ interval: 100ms }}\nenvironments:\n  dev:\n    listen: {{ api: 127.0.0.1:{port} }}\n"
        ),
    )
    .unwrap();
    ok(&validate(dir));
    ok(&hangar(dir, &["deploy", "dev"]));
    let status: serde_json::Value =
        serde_json::from_slice(&hangar(dir, &["status", "dev", "--json"]).stdout).unwrap();
    let db_listen = status[0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "db")
        .map(|s| s["listen"].as_str().unwrap().to_string())
        .expect("db in status");
    let db_port = db_listen.rsplit(':').next().unwrap().to_string();
    let body = http_get(port);
    assert_eq!(
        body,
        format!("v1 ping|tcp://{db_listen}|{db_port}|127.0.0.1"),
        "the api reached the db's router at the address it was given"
    );
}

#[test]
fn validate_names_a_wrong_service_reference_at_its_line_with_did_you_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("hangar.yml"),
        "services:\n  db:\n    run: x\n  api:\n    run: y\n    depends_on: [db]\n    env:\n      DATABASE_URL: ${{ services.dv.url }}\n",
    )
    .unwrap();
    let out = validate(dir);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("hangar.yml:8:"), "{text}");
    assert!(text.contains("unknown service `dv`"), "{text}");
    assert!(text.contains("did you mean `db`?"), "{text}");
}

/// A database stand-in: a line server that holds an exclusive lock on its
/// data while it runs, and records a second one started on the same data.
const STATEFUL: &str = r#"
import fcntl, os, socket, sys
version, port, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(data, exist_ok=True)
lock = open(os.path.join(data, "lock"), "w")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    open(os.path.join(data, "CONFLICT"), "a").write(version + " started while another ran\n")
    sys.exit(1)
open(os.path.join(data, "starts"), "a").write(version + "\n")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
while True:
    c, _ = s.accept()
    for line in c.makefile("rb"):
        c.sendall(version.encode() + b" " + line)
    c.close()
"#;

fn stateful_project(dir: &Path, db_port: u16, api_port: u16, db_version: &str) {
    std::fs::write(dir.join("db.py"), STATEFUL).unwrap();
    std::fs::write(dir.join("api.py"), API).unwrap();
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            "services:\n  db:\n    run: python3 db.py {db_version} $PORT $HANGAR_DATA/db\n    protocol: tcp\n    stateful: true\n    listen: 127.0.0.1:{db_port}\n    health: {{ interval: 100ms, deadline: 20s }}\n    stop: {{ drain: 100ms, timeout: 5s }}\n  api:\n    run: python3 api.py $PORT\n    depends_on: [db]\n    env: {{ DATABASE_URL: '${{{{ services.db.url }}}}' }}\n    health: {{ interval: 100ms }}\n    stop: {{ drain: 100ms, timeout: 2s }}\nenvironments:\n  prod:\n    strategy: blue-green\n    blue_green: {{ scale_down_delay: 0s }}\n    services: [api]\n    listen: {{ api: 127.0.0.1:{api_port} }}\n"
        ),
    )
    .unwrap();
}

fn history(dir: &Path) -> Vec<serde_json::Value> {
    let out = hangar(dir, &["history", "prod", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Seed 001: `services: [api]` also blue-greened the database through
/// `depends_on`. Now the listed services alone are deployed unless
/// `--with-dependencies`, and a `stateful: true` service is restarted in
/// place: the old instance stopped before the new one starts on its data.
#[test]
fn a_stateful_dependency_is_deployed_only_when_asked_and_restarted_in_place() {
    if !common::have_python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (db_port, api_port) = (free_port(), free_port());
    let _down = Down(dir, "prod");
    // In git, as a project is: what a service runs from is fingerprinted
    // (outside git every service is redeployed every time).
    hangar_testkit::git(dir, &["init", "-q"]);
    stateful_project(dir, db_port, api_port, "v1");
    ok(&validate(dir));

    // The environment lists only api: its dependency is not deployed.
    ok(&hangar(dir, &["deploy", "prod"]));
    let h = history(dir);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["service"], "api");
    assert!(
        TcpStream::connect(("127.0.0.1", db_port)).is_err(),
        "db was not started"
    );

    // Asked for, the dependency is deployed; api, unchanged, is left alone.
    ok(&hangar(dir, &["deploy", "prod", "--with-dependencies"]));
    let h = history(dir);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[1]["service"], "db");
    assert_eq!(http_get(api_port).split('|').next(), Some("v1 ping"));

    // A new db version: restarted in place, never two at once.
    stateful_project(dir, db_port, api_port, "v2");
    let out = ok(&hangar(dir, &["deploy", "prod", "--with-dependencies"]));
    let h = history(dir);
    assert_eq!(h.len(), 3, "{out}\n{h:?}");
    let rec = &h[2];
    assert_eq!(rec["service"], "db");
    assert_eq!(rec["strategy"], "restart", "not blue-green: {rec}");
    assert_eq!(rec["outcome"], "succeeded", "{rec}");
    let events = rec["events"].to_string();
    assert!(events.contains("restarted in place"), "{events}");
    // The db's data, under the environment's directory (`$HANGAR_DATA`).
    let data = dir.join(".hangar/envs/prod/db");
    assert!(
        !data.join("CONFLICT").exists(),
        "two db instances ran at once: {}",
        std::fs::read_to_string(data.join("CONFLICT")).unwrap_or_default()
    );
    assert_eq!(
        std::fs::read_to_string(data.join("starts")).unwrap(),
        "v1\nv2\n"
    );
    assert_eq!(http_get(api_port).split('|').next(), Some("v2 ping"));

    // Without the flag, a changed dependency is not redeployed.
    stateful_project(dir, db_port, api_port, "v3");
    ok(&hangar(dir, &["deploy", "prod"]));
    assert_eq!(history(dir).len(), 3);
    assert_eq!(http_get(api_port).split('|').next(), Some("v2 ping"));
}

/// A server that speaks both: HTTP to a request line starting `GET `, the
/// line protocol of [`ECHO`] to anything else (so one program can be declared
/// `protocol: http`, then `protocol: tcp`, and back).
const BOTH: &str = r#"
import socket, sys, threading
version, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
def serve(c):
    f = c.makefile("rb")
    for line in f:
        if line.startswith(b"GET "):
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass
            body = version.encode() + b" http"
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        else:
            c.sendall(version.encode() + b" " + line)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn both_project(dir: &Path, port: u16, version: &str, protocol: &str) {
    std::fs::write(dir.join("both.py"), BOTH).unwrap();
    std::fs::write(
        dir.join("hangar.yml"),
        format!(
            "services:\n  db:\n    run: python3 both.py {version} $PORT\n    protocol: {protocol}\n    health: {{ tcp: true, interval: 100ms, deadline: 20s }}\n    stop: {{ drain: 100ms, timeout: 2s }}\nenvironments:\n  prod:\n    strategy: blue-green\n    blue_green: {{ scale_down_delay: 0s }}\n    listen: {{ db: 127.0.0.1:{port} }}\n"
        ),
    )
    .unwrap();
}

/// Connects to `port` every 2 ms until told to stop; the instants at which a
/// connect was refused (nothing listening on the address).
fn count_refusals(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<Instant>)> {
    std::thread::spawn(move || {
        let (mut tried, mut refused) = (0, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tried += 1;
            if TcpStream::connect(("127.0.0.1", port)).is_err() {
                refused.push(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (tried, refused)
    })
}

/// Seed 001 declared its Postgres without `protocol: tcp` first: the change
/// of `protocol:` on a running service must rebind its address (the router's
/// old listener closed, the new one bound on the same port) within a
/// `hangar deploy`, refusing connections for a moment at most, and back.
#[test]
fn changing_the_protocol_of_a_running_service_rebinds_its_address() {
    if !common::have_python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let _down = Down(dir, "prod");
    both_project(dir, port, "v1", "http");
    ok(&hangar(dir, &["deploy", "prod"]));
    assert!(
        ok(&hangar(dir, &["status", "prod"])).contains(&format!("db on http://127.0.0.1:{port}"))
    );
    assert_eq!(http_get(port), "v1 http");

    for (version, protocol) in [("v2", "tcp"), ("v3", "http"), ("v4", "tcp")] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let prober = count_refusals(port, stop.clone());
        both_project(dir, port, version, protocol);
        let out = ok(&hangar(dir, &["deploy", "prod"]));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (tried, refused) = prober.join().unwrap();
        let status = ok(&hangar(dir, &["status", "prod"]));
        assert!(
            status.contains(&format!("db on {protocol}://127.0.0.1:{port}")),
            "{out}\n{status}"
        );
        match protocol {
            // Raw bytes through: the line protocol reaches the program.
            "tcp" => assert_eq!(
                Conn::open(port).ask("x").as_deref(),
                Some(format!("{version} x").as_str())
            ),
            // The HTTP router in front again: its answer is the program's.
            _ => assert_eq!(http_get(port), format!("{version} http")),
        }
        // Refused only while the old listener closes and the new one binds:
        // a few milliseconds (the bound leaves room for a loaded machine).
        let window = match (refused.first(), refused.last()) {
            (Some(a), Some(b)) => *b - *a,
            _ => Duration::ZERO,
        };
        assert!(
            window < Duration::from_millis(500),
            "to {protocol}: {} of {tried} connects refused over {window:?}\n{out}",
            refused.len()
        );
        eprintln!(
            "to {protocol}: {} of {tried} connects refused over {window:?}",
            refused.len()
        );
    }
}
