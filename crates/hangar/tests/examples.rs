//! The projects of `examples/`, one per seed team, run end to end as their
//! teams would: each is copied into a temporary git repository whose history
//! follows the team's commit conventions, then the built `hangar` binary
//! validates it, runs its CI workflow, brings its stack up, deploys it with the
//! team's strategy (a good version, then a bad one that must roll back on its
//! own), scans it, releases it and reports DORA, and takes everything down.
//! Real processes throughout: `hangar`, git, and the examples' own services.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use common::free_port;
use hangar_testkit::git;

const HANGAR: &str = env!("CARGO_BIN_EXE_hangar");

/// A temporary copy of one example, made into a git repository.
struct Project {
    tmp: tempfile::TempDir,
    /// hangar's own data directory (actions and caches), outside the project.
    data: tempfile::TempDir,
    /// The example's `listen` ports, each replaced by a free one.
    ports: BTreeMap<u16, u16>,
    /// Environments brought up, taken down at the end whatever happens.
    envs: Vec<String>,
}

impl Project {
    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The free port standing in for the example's port `p`.
    fn port(&self, p: u16) -> u16 {
        self.ports[&p]
    }

    /// `hangar ARGS` in the project, with `hangar` itself first on PATH (as
    /// `cargo install` leaves it) for the workflows' `run: hangar scan ...`.
    fn hangar(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("hangar runs");
        eprintln!(
            "$ hangar {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn command(&self, args: &[&str]) -> Command {
        let bin = Path::new(HANGAR).parent().expect("the binary's folder");
        let path = std::env::var("PATH").unwrap_or_default();
        let mut c = Command::new(HANGAR);
        c.args(args)
            .current_dir(self.dir())
            .env("PATH", format!("{}:{path}", bin.display()))
            .env("HANGAR_DATA_DIR", self.data.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env_remove("HANGAR_SERVER")
            .stdin(Stdio::null());
        c
    }

    /// `hangar ARGS`, which must succeed; its standard output and error.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.hangar(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "hangar {args:?} failed:\n{text}");
        text
    }

    /// `hangar ARGS`, which must fail with `code`; its output.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.hangar(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "hangar {args:?} should exit {code}:\n{text}"
        );
        text
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.dir().join(path)).expect("a file of the example")
    }

    /// Replaces `from` by `to` in `path` (which must contain it) and commits
    /// the change with `message`.
    fn change(&self, path: &str, from: &str, to: &str, message: &str) {
        let text = self.read(path);
        assert!(text.contains(from), "{path} has no {from:?}");
        std::fs::write(self.dir().join(path), text.replacen(from, to, 1)).expect("write");
        git(self.dir(), &["commit", "-qam", message]);
    }

    /// Deploys `env` with the team's strategy: a good version that then
    /// answers `marker` on `port`, then a bad one (`bad` = (file, from, to),
    /// committed as `fix`) that must fail and roll back by itself while the
    /// good version keeps answering; then the bad commit is undone: `git
    /// revert` (a revert and what it reverts cancel out in a release), or
    /// with `undo` a change back committed with that message.
    fn deploy_and_roll_back(
        &mut self,
        env: &str,
        port: u16,
        marker: &str,
        bad: (&str, &str, &str),
        fix: &str,
        undo: Option<&str>,
    ) {
        // A protected environment (reviewers, a wait timer) is not deployed
        // directly: with no server here to ask the reviewers, the team
        // overrides on the record, as the error says.
        let protected = hangar_project::load(self.dir())
            .ok()
            .and_then(|(_, p)| p.environments.get(env)?.value.protection.clone())
            .is_some_and(|p| !p.reviewers.is_empty() || p.wait.is_some());
        let deploy: Vec<&str> = if protected {
            vec![
                "deploy",
                env,
                "--override-protection",
                "--reason",
                "example run without a server",
            ]
        } else {
            vec!["deploy", env]
        };
        // An environment a workflow deployed already serves this version.
        if !self.envs.iter().any(|e| e == env) {
            self.envs.push(env.to_string());
            if protected {
                let out = self.fails(&["deploy", env], 2);
                assert!(out.contains("is protected"), "{out}");
            }
            let out = self.ok(&deploy);
            assert!(out.contains("succeeded"), "{out}");
        }
        let body = get(self.port(port), "/").expect("the good version answers");
        assert!(body.contains(marker), "{body}");

        let (file, from, to) = bad;
        self.change(file, from, to, fix);
        let out = self.fails(&deploy, 1);
        assert!(out.contains("rolled-back"), "{out}");
        let body = get(self.port(port), "/").expect("the good version still answers");
        assert!(body.contains(marker), "{body}");
        let history = self.ok(&["history", env]);
        assert!(history.contains("rolled-back"), "{history}");
        match undo {
            None => {
                git(self.dir(), &["revert", "--no-edit", "HEAD"]);
            }
            Some(message) => self.change(file, to, from, message),
        }
    }

    /// `hangar up` (the `local` environment, in the foreground) until `port`
    /// answers `marker` on `path`, then Ctrl-C: it must stop everything.
    fn up_local(&self, port: u16, path: &str, marker: &str) {
        let mut up = self
            .command(&["up"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hangar up");
        let port = self.port(port);
        let deadline = Instant::now() + Duration::from_secs(30);
        let body = loop {
            if let Some(body) = get(port, path) {
                break body;
            }
            if Instant::now() > deadline || up.try_wait().ok().flatten().is_some() {
                let _ = up.kill();
                let mut err = String::new();
                let _ = up.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("hangar up never served :{port}{path}:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(body.contains(marker), "{body}");
        Command::new("kill")
            .args(["-INT", &up.id().to_string()])
            .status()
            .expect("kill runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while up.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "hangar up ignored Ctrl-C");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(get(port, path).is_none(), "the local stack outlived Ctrl-C");
    }
}

impl Drop for Project {
    /// `hangar down` of every environment brought up, then no process of the
    /// project may be left (checked by working directory under the project).
    fn drop(&mut self) {
        for env in std::mem::take(&mut self.envs) {
            let _ = self.command(&["down", &env]).output();
        }
        // A stopped process may take a moment to be reaped.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = processes_under(self.dir());
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = processes_under(self.dir());
        }
        let left: Vec<String> = left
            .into_iter()
            .map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!("{pid} {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        if !left.is_empty() && !std::thread::panicking() {
            for pid in &left {
                let pid = pid.split(' ').next().unwrap_or_default();
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
            panic!("processes left after hangar down: {left:?}");
        }
    }
}

/// Processes whose working directory is under `dir`.
fn processes_under(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(dir))
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
        })
        .collect()
}

/// GET `path` on loopback `port`: the body of a 2xx answer, else None.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status: u16 = out.get(9..12)?.parse().ok()?;
    if !(200..300).contains(&status) {
        return None;
    }
    let (head, body) = out.split_once("\r\n\r\n")?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(body.to_string());
    }
    // The router answers HTTP/1.1 and chunks a body of unknown length.
    let mut rest = body;
    let mut decoded = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(decoded);
        }
        decoded.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a folder");
    for entry in std::fs::read_dir(from).expect("the example's folder") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("a copy");
        }
    }
}

/// Copies `examples/NAME` into a temporary repository on `main` and commits it
/// as `history` says: each (message, path prefixes) commits the files under
/// those prefixes, the last one everything left. The example's `127.0.0.1:PORT`
/// addresses in hangar.yml get free ports, so examples run side by side.
fn project(name: &str, history: &[(&str, &[&str])]) -> Project {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path();
    copy_tree(&example_dir(name), dir);
    let yml = std::fs::read_to_string(dir.join("hangar.yml")).expect("hangar.yml");
    let mut ports = BTreeMap::new();
    let mut rewritten = String::new();
    let mut rest = yml.as_str();
    while let Some(i) = rest.find("127.0.0.1:") {
        let (head, tail) = rest.split_at(i + 10);
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        let p: u16 = digits.parse().expect("a port after 127.0.0.1:");
        let free = *ports.entry(p).or_insert_with(free_port);
        rewritten.push_str(head);
        rewritten.push_str(&free.to_string());
        rest = &tail[digits.len()..];
    }
    rewritten.push_str(rest);
    std::fs::write(dir.join("hangar.yml"), rewritten).expect("hangar.yml");
    git(dir, &["init", "-q", "-b", "main"]);
    for (i, (message, paths)) in history.iter().enumerate() {
        if i + 1 == history.len() {
            git(dir, &["add", "-A"]);
        } else {
            let mut args = vec!["add", "--"];
            args.extend_from_slice(paths);
            git(dir, &args);
        }
        git(dir, &["commit", "-qm", message]);
    }
    Project {
        tmp,
        data: tempfile::tempdir().expect("a temporary directory"),
        ports,
        envs: Vec::new(),
    }
}

/// The seeds' services are tiny Python and Node servers.
fn have(tool: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
    eprintln!("SKIPPED: {tool} not found");
    false
}

/// Asserts the CI run printed `run succeeded` with every one of `jobs` a success.
fn assert_jobs_succeeded(out: &str, jobs: &[&str]) {
    assert!(out.contains("run succeeded"), "{out}");
    for job in jobs {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().take(2).eq([*job, "success"])),
            "job {job} did not succeed:\n{out}"
        );
    }
}

/// CodeCraft AI (seed 000): a Python API, lint and test on every push,
/// rolling staging and blue-green production, and a history that is not
/// conventional: the first release is cut with `--as`, then the team writes
/// Conventional Commits.
#[test]
fn codecraft_ai() {
    if !have("python3") {
        return;
    }
    let mut p = project(
        "codecraft-ai",
        &[
            ("Initial commit", &["README.md", ".gitignore"]),
            ("Add API", &["app", "requirements.txt", "hangar.yml"]),
            ("Add tests and CI", &[]),
        ],
    );
    let out = p.ok(&["validate"]);
    assert!(out.contains("0 error(s)"), "{out}");
    let out = p.ok(&["run"]);
    assert_jobs_succeeded(&out, &["lint", "test", "secrets"]);
    assert!(out.contains("Ran 2 tests"), "{out}");
    p.up_local(18001, "/", "codecraft-ai 0.0.0");

    p.deploy_and_roll_back(
        "production",
        18003,
        "codecraft-ai 0.0.0",
        ("app/main.py", "HEALTHY = True", "HEALTHY = False"),
        "Fix the model loader",
        Some("Back out the model loader fix"),
    );
    let out = p.ok(&["history", "production"]);
    assert!(out.contains("(blue-green) rolled-back"), "{out}");

    p.ok(&["scan", "secrets", "."]);

    // Nothing conventional yet: hangar says so and what to do.
    let out = p.ok(&["release", "--dry-run"]);
    assert!(out.contains("nothing to release"), "{out}");
    assert!(out.contains("none of them a Conventional Commit"), "{out}");
    // The team's first release, with the old subjects as its notes.
    let out = p.ok(&["release", "--as", "1.0.0"]);
    assert!(out.contains("released 1.0.0"), "{out}");
    assert_eq!(p.read("app/VERSION").trim(), "1.0.0");
    assert!(p.read("CHANGELOG.md").contains("* Add API"));
    assert_eq!(git(p.dir(), &["tag", "--list"]), "v1.0.0");
    // From now on, Conventional Commits.
    p.change(
        "app/main.py",
        "codecraft-ai {VERSION}",
        "CodeCraft AI {VERSION}",
        "feat: a friendlier greeting",
    );
    let out = p.ok(&["release", "--dry-run"]);
    assert!(out.contains("would release 1.1.0"), "{out}");

    let out = p.ok(&["dora", "production"]);
    assert!(out.contains("2 deployments"), "{out}");
    assert!(out.contains("change failure rate       50.0%"), "{out}");
}

/// AI Code Platform (seed 001): a Node.js API over a real PostgreSQL and a
/// Redis stand-in; CI on main, develop and feature branches with a dependency
/// gate that fails on high and critical advisories only; rolling staging,
/// blue-green production of the API alone (`services: [api]`).
#[test]
fn ai_code_platform() {
    if !have("python3") || !have("node") || !have_postgres() {
        return;
    }
    let mut p = project(
        "ai-code-platform",
        &[
            (
                "chore: initial import",
                &["package.json", "package-lock.json", ".gitignore"],
            ),
            ("feat(api): health endpoint", &["src"]),
            ("ci: CI, deploy and security pipelines", &[]),
        ],
    );
    // Run as root, db/postgres.sh runs PostgreSQL as the `postgres` user,
    // which must reach the data directory under the project (a temporary
    // directory is private to its owner).
    std::fs::set_permissions(p.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    p.ok(&["validate"]);
    let out = p.ok(&["run"]);
    assert_jobs_succeeded(
        &out,
        &["ci/quality", "ci/test", "ci/security", "security/scan"],
    );
    // The PostgreSQL client's own unit tests ran in CI's `npm test`.
    assert!(out.contains("startup message"), "{out}");
    // The deploy workflow waits for CI (`workflow_run`), which `hangar run`
    // does not trigger today: it must not have run beside CI either.
    assert!(!out.contains("deploy/"), "{out}");
    // On a feature branch, CI runs too.
    git(p.dir(), &["checkout", "-qb", "feature/login"]);
    let out = p.ok(&["run", "--workflows", ".github/workflows/ci.yml"]);
    assert!(out.contains("run succeeded"), "{out}");
    git(p.dir(), &["checkout", "-q", "main"]);

    // The dependency gate: a lock file back on lodash 4.17.20 fails on the
    // high advisory and leaves the moderate one out.
    let lock = p.read("package-lock.json");
    std::fs::write(
        p.dir().join("package-lock.json"),
        lock.replace("4.17.21", "4.17.20"),
    )
    .unwrap();
    let out = p.fails(
        &[
            "scan",
            "deps",
            ".",
            "--db",
            "security/advisories",
            "--severity",
            "high",
        ],
        1,
    );
    assert!(out.contains("GHSA-35jh-r3h4-6jhm"), "{out}");
    assert!(!out.contains("GHSA-29mw-wpgm-hmr9"), "{out}");
    assert!(out.contains("1 finding(s) below HIGH not shown"), "{out}");
    std::fs::write(p.dir().join("package-lock.json"), lock).unwrap();
    p.ok(&["scan", "policy", ".github/workflows"]);

    // The local stack: the API healthy means it queried its PostgreSQL,
    // created on this first start; Ctrl-C stopped PostgreSQL too.
    p.up_local(18011, "/", "aicode-api 1.0.0");
    let local = p.dir().join(".hangar/envs/local");
    assert!(local.join("db/PG_VERSION").is_file(), "no cluster made");
    assert_eq!(
        gone_within(Duration::from_secs(10), || processes_under(&local)),
        Vec::<u32>::new()
    );
    p.deploy_and_roll_back(
        "staging",
        18012,
        "aicode-api 1.0.0",
        (
            "src/server.js",
            "const HEALTHY = true;",
            "const HEALTHY = false;",
        ),
        "fix(api): stricter request parsing",
        None,
    );
    assert!(
        p.ok(&["history", "staging"])
            .contains("(rolling) rolled-back")
    );
    // Production deploys the API's releases alone (`services: [api]`): its
    // database and cache are deployed once, on their own schedule.
    let out = p.fails(&["deploy", "production"], 2);
    assert!(out.contains("is protected"), "{out}");
    let out = p.ok(&[
        "deploy",
        "production",
        "--with-dependencies",
        "--override-protection",
        "--reason",
        "example run without a server",
    ]);
    for svc in ["db", "cache", "api"] {
        assert!(
            out.contains(&format!("{svc} - -> ")),
            "{svc} deployed: {out}"
        );
    }
    p.envs.push("production".into());
    p.deploy_and_roll_back(
        "production",
        18013,
        "aicode-api 1.0.0",
        (
            "src/server.js",
            "const HEALTHY = true;",
            "const HEALTHY = false;",
        ),
        "fix(api): stricter request parsing",
        None,
    );

    api_over_its_cache(
        &p,
        "production",
        18013,
        "/visits",
        (
            "src/server.js",
            "// One Redis command on a connection of its own; the reply's first line.",
            "// One Redis command per connection (the cache is local); its reply's first line.",
            "fix(api): one cache connection per command",
        ),
    );

    api_over_its_database(
        &p,
        "production",
        (18013, 18016),
        (
            "src/server.js",
            "// GET /health: the process and its database (a query, not just a connect).",
            "// GET /health: the process and its database (a query: a connect proves little).",
            "fix(api): health check wording",
        ),
    );

    let out = p.ok(&["release", "--dry-run"]);
    assert!(out.contains("would release 1.1.0"), "{out}");
    let out = p.ok(&["release"]);
    assert!(out.contains("released 1.1.0"), "{out}");
    assert!(p.read("package.json").contains("\"version\": \"1.1.0\""));
    assert!(
        p.read("package-lock.json")
            .contains("\"version\": \"1.1.0\"")
    );
    // The db's, the cache's and the api's first deployments, the api's bad
    // one, its fix, the api deployed over its database.
    let out = p.ok(&["dora", "production"]);
    assert!(out.contains("6 deployments"), "{out}");
    assert!(out.contains("change failure rate       16.7%"), "{out}");

    // `down` stops each environment's PostgreSQL: the postmaster is gone.
    for env in ["staging", "production"] {
        let db = instance_pids(&p, env, "db");
        assert_eq!(db.len(), 1, "{env}: {db:?}");
        p.ok(&["down", env]);
        p.envs.retain(|e| e != env);
        let pid = db[0] as u32;
        assert_eq!(
            gone_within(Duration::from_secs(10), || [pid]
                .into_iter()
                .filter(|p| alive(*p))
                .collect()),
            Vec::<u32>::new(),
            "{env}: PostgreSQL outlived hangar down"
        );
    }
}

/// PostgreSQL's server and the client programs hangar.yml's health check
/// and backup commands run (`.ci/run` installs them).
fn have_postgres() -> bool {
    let server = Command::new("sh")
        .args([
            "-c",
            "command -v postgres || ls /usr/lib/postgresql/*/bin/postgres || ls \"$(pg_config --bindir)/postgres\"",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    let clients = ["psql", "pg_dump", "pg_isready"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    hangar_testkit::required_tool(
        "PostgreSQL (postgres, initdb, psql, pg_dump, pg_isready)",
        if server && clients {
            Ok(())
        } else {
            Err("not installed".to_string())
        },
    )
    .is_some()
}

/// Whether `pid` runs (a zombie, stopped but not yet reaped, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// What `left()` still finds after `wait` (empty as soon as it is).
fn gone_within(wait: Duration, left: impl Fn() -> Vec<u32>) -> Vec<u32> {
    let deadline = Instant::now() + wait;
    loop {
        let found = left();
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many deployments of `service` `env`'s history holds.
fn deployments_of(p: &Project, env: &str, service: &str) -> usize {
    let out = p.hangar(&["history", env, "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history as JSON");
    history
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["service"] == service)
        .count()
}

/// POST `body` to `path` on loopback `port`: the answer's status and body.
fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

/// `sql` run by psql through the database's router on `port`; its output.
fn psql(port: u16, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-U",
            "aicode",
            "-d",
            "aicode",
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql {sql:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The API over its PostgreSQL (seed 001): a note written through the API is
/// in the database, and stays readable through a new version of the API
/// (`change` = file, from, to, commit message) deployed under steady traffic:
/// no request failed, every answer held the note, and the database was not
/// redeployed (the environment lists `services: [api]`): the same postmaster.
/// Then `hangar recovery`: a backup (pg_dump), the note deleted by hand, and
/// a restore (psql) brings it back. `ports` = the api's and the db's.
fn api_over_its_database(
    p: &Project,
    env: &str,
    ports: (u16, u16),
    change: (&str, &str, &str, &str),
) {
    let (port, db_port) = (p.port(ports.0), p.port(ports.1));
    let (status, answer) = post(port, "/notes", "first note");
    assert_eq!(status, 201, "{answer}");
    assert_eq!(get(port, "/notes").as_deref(), Some("first note\n"));
    assert_eq!(psql(db_port, "SELECT body FROM notes"), "first note");
    let db = instance_pids(p, env, "db");
    assert_eq!(db.len(), 1, "one db instance: {db:?}");
    // The instance is PostgreSQL itself (db/postgres.sh execs it), as its
    // own lock file says.
    let postmaster = || {
        p.read(&format!(".hangar/envs/{env}/db/postmaster.pid"))
            .lines()
            .next()
            .and_then(|l| l.parse::<u64>().ok())
    };
    assert_eq!(postmaster(), Some(db[0]));
    let db_deployments = deployments_of(p, env, "db");
    let status = p.ok(&["status", env]);
    assert!(status.contains("db on tcp://127.0.0.1:"), "{status}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut answers, mut failed) = (Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match get(port, "/notes") {
                    Some(body) => answers.push(body),
                    None => failed.push(answers.len()),
                }
            }
            (answers, failed)
        })
    };
    let (file, from, to, message) = change;
    p.change(file, from, to, message);
    // The database's files changed too: it would be restarted were it
    // deployed with the api.
    p.change(
        "db/schema.sql",
        "-- The API's tables",
        "-- The API's tables (notes)",
        "chore(db): name the tables",
    );
    let out = p.ok(&[
        "deploy",
        env,
        "--override-protection",
        "--reason",
        "example run without a server",
    ]);
    assert!(out.contains("api") && out.contains("succeeded"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answers, failed) = load.join().expect("the load thread");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the deployment (after {failed:?})",
        failed.len(),
        answers.len() + failed.len()
    );
    assert!(answers.len() >= 10, "{answers:?}");
    assert!(answers.iter().all(|a| a == "first note\n"), "{answers:?}");
    eprintln!(
        "{} requests through the api to its database during the deployment, none failed",
        answers.len()
    );
    assert_eq!(
        instance_pids(p, env, "db"),
        db,
        "the db's process is the same"
    );
    assert_eq!(postmaster(), Some(db[0]));
    assert_eq!(
        deployments_of(p, env, "db"),
        db_deployments,
        "db redeployed: {out}"
    );

    // Disaster recovery: pg_dump through the db's router, a row lost, psql
    // restores it.
    let out = p.ok(&["recovery", "backup", env]);
    assert!(out.contains("db: backup.run took"), "{out}");
    assert_eq!(
        psql(db_port, "DELETE FROM notes WHERE body = 'first note'"),
        "DELETE 1"
    );
    assert_eq!(get(port, "/notes").as_deref(), Some(""));
    p.ok(&["recovery", "restore", env]);
    assert_eq!(get(port, "/notes").as_deref(), Some("first note\n"));
    assert_eq!(instance_pids(p, env, "db"), db, "restored in place");
}

/// The pid of `service`'s one instance in `env`, from `hangar status --json`.
fn instance_pids(p: &Project, env: &str, service: &str) -> Vec<u64> {
    let out = p.hangar(&["status", env, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status as JSON");
    status[0]["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| s["service"] == service)
        .flat_map(|s| s["instances"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["pid"].as_u64())
        .collect()
}

/// The count in an answer of `/visits`: the number after `visits`.
fn visits(body: &str) -> u64 {
    let after = body.split_once("visits").map_or("", |(_, a)| a);
    let digits: String = after
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no count in {body:?}"))
}

/// An API over its Redis (`protocol: tcp`, `stateful: true`, seeds 001 and
/// 004): it reaches the cache at `${{ services.cache.url }}` (GET `path`
/// counts in it), and a new version of the API (`change` = file, from, to,
/// commit message) deployed under steady traffic leaves the cache alone (the
/// same process, its count going on) with no request failed.
fn api_over_its_cache(
    p: &Project,
    env: &str,
    port: u16,
    path: &'static str,
    change: (&str, &str, &str, &str),
) {
    let port = p.port(port);
    let first = visits(&get(port, path).expect("the api reaches its cache"));
    let cache = instance_pids(p, env, "cache");
    assert_eq!(cache.len(), 1, "one cache instance: {cache:?}");
    let cache_deployments = deployments_of(p, env, "cache");
    let status = p.ok(&["status", env]);
    assert!(status.contains("cache on tcp://127.0.0.1:"), "{status}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut counts, mut failed) = (Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match get(port, path) {
                    Some(body) => counts.push(body),
                    None => failed.push(counts.len()),
                }
            }
            (counts, failed)
        })
    };
    let (file, from, to, message) = change;
    p.change(file, from, to, message);
    let out = p.ok(&[
        "deploy",
        env,
        "--override-protection",
        "--reason",
        "example run without a server",
    ]);
    assert!(out.contains("api") && out.contains("succeeded"), "{out}");
    assert_eq!(
        deployments_of(p, env, "cache"),
        cache_deployments,
        "the cache is not redeployed: {out}"
    );
    // A moment on the new version before the load stops.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (counts, failed) = load.join().expect("the load thread");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the deployment (after {failed:?})",
        failed.len(),
        counts.len() + failed.len()
    );
    assert!(counts.len() >= 10, "{counts:?}");
    eprintln!(
        "{} requests through the api to its cache during the deployment, none failed",
        counts.len()
    );
    // One count, going up across the switch: the cache kept its data.
    let numbers: Vec<u64> = counts.iter().map(|b| visits(b)).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert!(numbers[0] > first, "{first} then {numbers:?}");
    assert_eq!(
        instance_pids(p, env, "cache"),
        cache,
        "the cache's process is the same"
    );
}

/// CODE (seed 002): conventional commits and release-please's version marker;
/// the OPA admission policy gating manifests; a canary in prod; the
/// disaster-recovery plan (backups, RPO 1 hour, RTO 4 hours) as a drill.
#[test]
fn code() {
    if !have("python3") {
        return;
    }
    let mut p = project(
        "code",
        &[
            (
                "chore: initial commit",
                &["README.md", ".gitignore", "requirements.txt"],
            ),
            ("feat(api): notes endpoint", &["src", "tests"]),
            ("feat(security): OPA admission policy", &["policy", "k8s"]),
            ("ci: pipeline and environments", &[]),
        ],
    );
    p.ok(&["validate"]);
    let out = p.ok(&["run"]);
    assert_jobs_succeeded(&out, &["lint", "test", "security", "build"]);
    assert!(out.contains("3 of 3 rules applied"), "{out}");

    // The policy refuses a privileged pod from Docker Hub...
    let review = p
        .read("k8s/api-pod-review.json")
        .replace("ghcr.io/code/api:0.4.0", "docker.io/library/python:3.12")
        .replace("\"privileged\": false", "\"privileged\": true");
    std::fs::write(p.dir().join("k8s/debug-pod-review.json"), review).unwrap();
    let out = p.fails(
        &[
            "scan",
            "policy",
            "k8s",
            "--namespace",
            "kubernetes.admission",
        ],
        1,
    );
    assert!(
        out.contains("Only images from ghcr.io are allowed (docker.io/library/python:3.12)"),
        "{out}"
    );
    assert!(
        out.contains("Privileged containers are not allowed"),
        "{out}"
    );
    // ...and a bare Pod (not an AdmissionReview) is not silently "passed".
    std::fs::remove_file(p.dir().join("k8s/debug-pod-review.json")).unwrap();
    std::fs::write(
        p.dir().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: x, image: nginx}]\n",
    )
    .unwrap();
    let out = p.fails(
        &[
            "scan",
            "policy",
            "pod.yaml",
            "--namespace",
            "kubernetes.admission",
            "--fail-on-empty",
        ],
        1,
    );
    assert!(out.contains("input.request"), "{out}");
    std::fs::remove_file(p.dir().join("pod.yaml")).unwrap();

    p.deploy_and_roll_back(
        "prod",
        18023,
        "code 0.4.0",
        ("src/main.py", "HEALTHY = True", "HEALTHY = False"),
        "fix(api): faster notes",
        None,
    );
    assert!(p.ok(&["history", "prod"]).contains("(canary) rolled-back"));

    // State the instances keep under $HANGAR_DATA, backed up and drilled.
    let port = p.port(18023);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "POST /notes HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\nconnection: close\r\n\r\nfirst note").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(get(port, "/notes").as_deref(), Some("first note\n"));
    let out = p.ok(&["recovery", "backup", "prod"]);
    assert!(!out.contains("error"), "{out}");
    p.envs.push("drill".into());
    let out = p.ok(&["recovery", "drill", "prod", "--into", "drill"]);
    assert!(out.contains("RPO") && out.contains("RTO"), "{out}");
    assert!(out.contains("PASSED"), "{out}");
    // The drill restored the notes into the scratch environment's data.
    assert_eq!(p.read(".hangar/envs/drill/notes.txt"), "first note\n");

    server_backup_and_restore(&p);

    let out = p.ok(&["release", "--dry-run"]);
    assert!(out.contains("would release 0.5.0"), "{out}");
    p.ok(&["release"]);
    assert!(p.read("src/main.py").contains("VERSION = \"0.5.0\""));
    let out = p.ok(&["dora", "prod"]);
    assert!(out.contains("2 deployments"), "{out}");
}

/// The CI server's side of the plan: `hangar serve` watching the project,
/// `hangar backup` of its data directory while it runs, `hangar restore` of
/// that copy into a new data directory once it is stopped.
fn server_backup_and_restore(p: &Project) {
    let data = tempfile::tempdir().expect("a temporary directory");
    let data = data.path().join("server");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let dir = p.dir().display().to_string();
    let mut serve = p
        .command(&[
            "serve",
            "--data",
            &data.display().to_string(),
            "--listen",
            &listen,
            "--repo",
            &dir,
            "--agent-capacity",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hangar serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, "/healthz").is_none() {
        if Instant::now() > deadline || serve.try_wait().ok().flatten().is_some() {
            let _ = serve.kill();
            panic!("hangar serve never answered /healthz");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let copy = data.with_file_name("backup");
    let out = p.ok(&[
        "backup",
        &copy.display().to_string(),
        "--data",
        &data.display().to_string(),
    ]);
    Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .expect("kill runs");
    let _ = serve.wait();
    let restored = data.with_file_name("restored");
    let out2 = p.ok(&[
        "restore",
        &copy.display().to_string(),
        "--data",
        &restored.display().to_string(),
    ]);
    let files: Vec<_> = std::fs::read_dir(&restored)
        .expect("the restored data directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with(".db") || f.ends_with(".sqlite")),
        "{out}{out2}{files:?}"
    );
}

/// Menteebot (seed 003): version.txt holds the version (1.0.0, no tag yet);
/// the pipeline builds, checks the Dockerfile, tests and deploys blue-green
/// from the workflow itself; releases are semantic, with release candidates.
#[test]
fn menteebot() {
    if !have("python3") {
        return;
    }
    let mut p = project(
        "menteebot",
        &[
            (
                "chore: project structure",
                &["version.txt", ".gitignore", "README.md"],
            ),
            (
                "feat: hello world service with health endpoints",
                &["src", "tests"],
            ),
            ("build: multi-stage Dockerfile", &["docker", "policy"]),
            ("ci: ci-cd, security and release pipelines", &[]),
        ],
    );
    p.ok(&["validate"]);
    // The whole pipeline, deployment included (gated on a variable so that a
    // plain `hangar run` does not deploy).
    p.envs.push("prod".into());
    // `--bind`: the deployment a job starts must outlive the run, and a run's
    // private copy of the working tree is removed when it ends.
    let out = p.ok(&["run", "--bind", "--var", "DEPLOY=true"]);
    assert_jobs_succeeded(
        &out,
        &[
            "ci-cd/source",
            "ci-cd/build",
            "ci-cd/test",
            "ci-cd/deploy",
            "security-scan/scan",
        ],
    );
    assert!(out.contains("deployed 1.0.0"), "{out}");
    assert_eq!(
        get(p.port(18033), "/").as_deref(),
        Some("Hello from Menteebot 1.0.0\n")
    );

    // The Dockerfile policy: a Debian base is refused.
    p.change(
        "docker/Dockerfile",
        "FROM python:3.12-alpine\n",
        "FROM python:3.12-slim\n",
        "build: slim base",
    );
    let out = p.fails(&["scan", "policy", "docker/Dockerfile"], 1);
    assert!(
        out.contains("base image python:3.12-slim is not Alpine"),
        "{out}"
    );
    git(p.dir(), &["revert", "--no-edit", "HEAD"]);

    p.up_local(18031, "/health", "healthy");
    p.deploy_and_roll_back(
        "prod",
        18033,
        "Menteebot 1.0.0",
        ("src/health_check.py", "HEALTHY = True", "HEALTHY = False"),
        "fix: health check reads the database",
        None,
    );

    // The release workflow's dry run, then a candidate and the release.
    let out = p.ok(&[
        "run",
        "workflow_dispatch",
        "--workflows",
        ".github/workflows/release.yml",
    ]);
    assert!(out.contains("would release 1.1.0"), "{out}");
    let out = p.ok(&["release"]);
    assert!(out.contains("released 1.1.0 (tag v1.1.0"), "{out}");
    assert_eq!(p.read("version.txt").trim(), "1.1.0");
    // The next feature goes through a release candidate first.
    p.change(
        "src/hello_world.py",
        "Hello from Menteebot",
        "Hello from Menteebot,",
        "feat: a warmer greeting",
    );
    let out = p.ok(&["release", "--pre", "rc"]);
    assert!(out.contains("released 1.2.0-rc.1"), "{out}");
    assert_eq!(p.read("version.txt").trim(), "1.2.0-rc.1");
    let out = p.ok(&["release"]);
    assert!(out.contains("released 1.2.0 (tag v1.2.0"), "{out}");
    assert_eq!(p.read("version.txt").trim(), "1.2.0");
    let out = p.ok(&["dora", "prod"]);
    assert!(out.contains("2 deployments"), "{out}");
}

/// Echoes (seed 004): a web frontend and an API as the local stack; CI on
/// main and develop; infrastructure stacks deployed one at a time in their
/// order; dev rolling, staging and prod blue-green.
#[test]
fn echoes() {
    if !have("python3") {
        return;
    }
    let mut p = project(
        "echoes",
        &[
            ("feat(web): landing page", &["web", ".gitignore"]),
            ("feat(api): echoes endpoint", &["backend"]),
            ("ci: CI and deployment workflows", &[".github"]),
            // Last, so that the push `hangar run` simulates touches
            // `infrastructure/**`, the infrastructure workflow's path filter.
            ("feat(infra): stacks and environments", &[]),
        ],
    );
    p.ok(&["validate"]);
    let log = p.dir().join("stacks.log");
    let out = p
        .command(&["run"])
        .env("STACK_LOG", &log)
        .output()
        .expect("hangar run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_jobs_succeeded(&text, &["ci/lint", "ci/test", "ci/security", "ci/build"]);
    // max-parallel: 1 over the stacks: one at a time, in the matrix's order.
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "deployed echoes-storage-dev\ndeployed echoes-auth-dev\ndeployed echoes-api-dev\ndeployed echoes-notifications-dev\n"
    );

    p.up_local(18042, "/health", "\"stage\": \"local\"");
    p.deploy_and_roll_back(
        "dev",
        18044,
        "\"stage\": \"dev\"",
        ("backend/app.py", "HEALTHY = True", "HEALTHY = False"),
        "fix(api): paginate echoes",
        None,
    );
    p.deploy_and_roll_back(
        "prod",
        18048,
        "\"stage\": \"prod\"",
        ("backend/app.py", "HEALTHY = True", "HEALTHY = False"),
        "fix(api): paginate echoes",
        None,
    );
    assert!(get(p.port(18047), "/index.html").is_some_and(|b| b.contains("Echoes")));
    api_over_its_cache(
        &p,
        "prod",
        18048,
        "/api/visits",
        (
            "backend/app.py",
            "\"\"\"INCR visits in the cache, on a connection of its own.\"\"\"",
            "\"\"\"INCR visits in the cache (one connection per command).\"\"\"",
            "fix(api): one cache connection per command",
        ),
    );
    let out = p.ok(&["release", "--dry-run"]);
    assert!(out.contains("would release"), "{out}");
    // cache, web and api first, then api's failed release, then its fix.
    let out = p.ok(&["dora", "prod"]);
    assert!(out.contains("5 deployments"), "{out}");
    assert!(out.contains("change failure rate       20.0%"), "{out}");
}
