//! Process lifetime and the job sandbox, with real processes: `hangar run` and
//! `hangar serve` killed with `kill -9` while a step and its children sleep,
//! then /proc scanned for anything of the job still alive.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hangar_engine::process::{Sandbox, SandboxMode};
use hangar_testkit::{commit, git};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

/// A step that leaves every kind of process behind: a background child, a
/// double-forked one (`( … &)`, reparented away from the step), one that left
/// the process group with `setsid` and emptied its environment (out of reach
/// of the orphan clean-up, which looks for `RUNNER_TRACKING_ID`), and a
/// sleeping foreground. All are found by their arguments, `sleep <n>.<mark>`.
fn leaver(mark: &str) -> String {
    format!(
        "on: push\njobs:\n  leave:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          sleep 300.{mark} &\n          (sleep 301.{mark} &)\n          setsid env -i /bin/sleep 302.{mark} &\n          sleep 303.{mark}\n"
    )
}

/// The processes whose arguments end in `.<mark>`, with their command line.
fn marked(mark: &str) -> Vec<(u32, String)> {
    let needle = format!(".{mark}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = cmd
            .split(|b| *b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        // A zombie has an empty command line: it is gone already.
        if cmd.trim().ends_with(&needle) && cmd.contains("sleep") {
            out.push((pid, cmd.trim().to_string()));
        }
    }
    out
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the job's processes to go, then returns those still there; kills
/// them so a failing test leaves nothing behind either.
fn survivors(mark: &str) -> Vec<(u32, String)> {
    let start = Instant::now();
    let mut left = marked(mark);
    while start.elapsed() < Duration::from_secs(5) && left.iter().any(|(_, c)| c != "sleep 302") {
        std::thread::sleep(Duration::from_millis(50));
        left = marked(mark);
    }
    for (pid, _) in &left {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }
    left
}

/// Digits unique to this test process and call (`sleep` takes `300.<digits>`).
fn unique_mark() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    format!(
        "{}{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Whether bubblewrap works here: missing or broken, the test says so loudly
/// and is skipped, or fails under CI=1.
fn bwrap_works() -> bool {
    hangar_testkit::required_tool(
        "the bubblewrap jail",
        Sandbox::for_agent(SandboxMode::Bwrap, vec![]),
    )
    .is_some()
}

struct Serve {
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, repo: &Path, sandbox: &str) -> Serve {
    let mut child = Command::new(BIN)
        .current_dir(data)
        .arg("serve")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--poll-ms",
            "100",
            "--sandbox",
            sandbox,
        ])
        .arg("--data")
        .arg(data)
        .arg("--repo")
        .arg(repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("hangar serve printed its address")
            .unwrap();
        if line.contains("listening on ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Serve { child }
}

/// `kill -9` of the server while its embedded agent runs the job.
fn kill_9_of_serve(sandbox: &str) -> Vec<(u32, String)> {
    let mark = unique_mark();
    let data = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    commit(repo.path(), &[("README", "x")]);
    let mut s = serve(data.path(), repo.path(), sandbox);
    commit(repo.path(), &[(".github/workflows/w.yml", &leaver(&mark))]);
    wait_for("the step and its children", Duration::from_secs(60), || {
        marked(&mark).len() >= 4
    });
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    survivors(&mark)
}

#[test]
fn in_the_jail_even_a_daemon_without_environment_dies_with_the_server() {
    if !bwrap_works() {
        return;
    }
    let left = kill_9_of_serve("bwrap");
    assert!(
        left.is_empty(),
        "left running after kill -9 of hangar serve: {left:?}"
    );
}

#[test]
fn without_the_jail_only_a_daemon_without_environment_escapes() {
    // What the README says is not stopped without bubblewrap, pinned so the
    // documentation stays true: the parent-death signal, the orphan clean-up
    // and the watchdog take everything else.
    let left = kill_9_of_serve("none");
    assert!(
        left.iter().all(|(_, c)| c.starts_with("/bin/sleep 302.")),
        "left running after kill -9 of hangar serve: {left:?}"
    );
}
