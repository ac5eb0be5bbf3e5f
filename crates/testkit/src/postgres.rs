//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary
//! directory, the server on a free loopback port (and a unix socket in that
//! directory), one per test process, a new database per test.
//!
//! PostgreSQL refuses to run as root: as root the cluster runs as the
//! `postgres` user (Debian's package creates it) through `runuser`.
//!
//! The server is stopped when the test process exits, even by a panic or a
//! kill: it runs under a small shell that waits for its standard input to
//! close (the test process holds the other end), then stops it and removes
//! the directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Cluster {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    /// Keeps the watchdog's standard input open for the life of the process.
    _stdin: std::sync::Mutex<std::process::ChildStdin>,
}

/// Where PostgreSQL's programs are: `$HANGAR_PG_BIN`, else Debian's
/// `/usr/lib/postgresql/VERSION/bin` (newest first), else `pg_config --bindir`.
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HANGAR_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    bin.join("initdb").exists().then_some(bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command that runs `program` as the cluster's user.
fn as_owner(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Starts a cluster: with TLS files from `tls`, and listening as well on
/// `also.0` (an address of this host) for clients of network `also.1`.
fn start(tls: Option<&Path>, also: Option<(&str, &str)>) -> Cluster {
    let bin = find_bin().expect("checked by the caller");
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("hangar-pg-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    if root {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .expect("id runs");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("running as root, the tests need a `postgres` user to run PostgreSQL as")
        };
        std::os::unix::fs::chown(&dir, Some(id("-u")), Some(id("-g"))).expect("chown");
    }
    let data = dir.join("data");
    let out = as_owner(root, &bin.join("initdb"))
        .args([
            "--auth=trust",
            "--username=hangar",
            "--encoding=UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .expect("initdb runs");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = crate::free_port();
    // Durability is not what these tests measure: fsync off keeps them fast.
    let listen = match also {
        Some((addr, _)) => format!("127.0.0.1,{addr}"),
        None => "127.0.0.1".to_string(),
    };
    let mut server = format!(
        "'{}' -D '{}' -p {port} -k '{}' -c listen_addresses={listen} -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
        bin.join("postgres").display(),
        data.display(),
        dir.display()
    );
    if let Some((_, net)) = also {
        let hba = data.join("pg_hba.conf");
        let mut text = std::fs::read_to_string(&hba).expect("initdb's pg_hba.conf");
        text.push_str(&format!("host all all {net} trust\n"));
        std::fs::write(&hba, text).expect("write pg_hba.conf");
    }
    if let Some(files) = tls {
        // The server's key must belong to the server's user and be private.
        for name in ["server.crt", "server.key"] {
            let to = data.join(name);
            std::fs::copy(files.join(name), &to).expect("copy the server's TLS files");
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
            if root {
                let meta = std::fs::metadata(&data).expect("the data directory");
                std::os::unix::fs::chown(
                    &to,
                    Some(std::os::unix::fs::MetadataExt::uid(&meta)),
                    Some(std::os::unix::fs::MetadataExt::gid(&meta)),
                )
                .expect("chown");
            }
        }
        // TCP only with TLS: a client that did not encrypt is refused, so a
        // connection that works proves it used TLS.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .expect("write pg_hba.conf");
        server.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
    }
    let script = format!(
        "{server} </dev/null >'{log}' 2>&1 & pid=$!; cat >/dev/null; kill -INT $pid; wait $pid; rm -rf '{dir}'",
        log = dir.join("server.log").display(),
        dir = dir.display(),
    );
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", &script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        c
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the PostgreSQL watchdog starts");
    let stdin = child.stdin.take().expect("a piped stdin");
    // Reaped by nobody: the watchdog outlives this handle by design.
    std::mem::forget(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not start within 60s: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Cluster {
        bin,
        port,
        dir,
        _stdin: std::sync::Mutex::new(stdin),
    }
}

impl Cluster {
    /// A new empty database; returns its URL.
    pub fn database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "hangar",
                &name,
            ])
            .output()
            .expect("createdb runs");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://hangar@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `sql` with `psql` against `database` and returns its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "hangar", "-d", database])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(sql.as_bytes())
            .expect("psql's input");
        let out = child.wait_with_output().expect("psql finishes");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The test process's cluster, started on first use, or `None` when
/// PostgreSQL is not installed. Missing PostgreSQL never passes a test
/// silently: under CI (`$CI` set) it fails the test, elsewhere it prints a
/// loud SKIPPED line.
pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| installed().then(|| start(None, None)))
        .as_ref()
}

/// A cluster of its own that also listens on `addr` (an address of this
/// host, such as the host's end of a veth pair into a network namespace) and
/// lets clients of network `net` (`10.214.3.0/30`) in without a password;
/// `None` (failing under `$CI`, skipping loudly elsewhere) without PostgreSQL.
/// Stopped when the test process exits.
pub fn cluster_also_on(addr: &str, net: &str) -> Option<Cluster> {
    installed().then(|| start(None, Some((addr, net))))
}

/// Whether PostgreSQL's programs are here: fails under `$CI` when they are
/// not, and prints a loud SKIPPED line elsewhere.
fn installed() -> bool {
    if find_bin().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "PostgreSQL (initdb) is missing in CI: install Debian's `postgresql` package"
    );
    eprintln!(
        "\n!!! SKIPPED: PostgreSQL's initdb not found (install `postgresql` or set HANGAR_PG_BIN) !!!\n"
    );
    false
}

/// A cluster of its own that takes TCP connections only over TLS (`hostssl`;
/// `hostnossl` is rejected), with a certificate for the name `localhost` only,
/// signed by a CA made for the test with the `openssl` command-line tool.
pub struct TlsCluster {
    pub cluster: Cluster,
    /// The PEM file of the CA that signed the server's certificate.
    pub ca: PathBuf,
    /// The PEM file of another CA, which signed nothing the server has.
    pub other_ca: PathBuf,
    _files: tempfile::TempDir,
}

/// Starts a [`TlsCluster`], or `None` (failing under `$CI`, skipping loudly
/// elsewhere) when PostgreSQL or the `openssl` tool is missing.
pub fn tls_cluster() -> Option<TlsCluster> {
    if !installed() {
        return None;
    }
    let certs = crate::tls::localhost_certs()?;
    Some(TlsCluster {
        cluster: start(Some(certs.dir.path()), None),
        ca: certs.ca,
        other_ca: certs.other_ca,
        _files: certs.dir,
    })
}
