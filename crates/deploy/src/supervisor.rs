//! Instances as child processes: start with `$PORT`, restart with backoff,
//! health-check continuously, stop gracefully (signal to the process group, then SIGKILL).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hangar_project::{Health, RestartPolicy, Stop};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::health;
use crate::state::ProcessRecord;

/// Writes where a process of an instance runs (pid, start time, port) where
/// the next controller and `hangar down` find it. Called after each spawn of
/// the instance's process and before its command runs: a controller killed at
/// any moment leaves no instance that nobody knows of.
pub type Recorder = Arc<dyn Fn(ProcessRecord) -> std::io::Result<()> + Send + Sync>;

/// The first lines of every instance's shell: wait for the controller's word
/// on standard input (a pipe), given once the pid is recorded ([`Recorder`]).
/// A controller that dies before it gives it closes the pipe: `read` fails at
/// end of file and the shell exits without running the command. Then
/// standard input is /dev/null again, as services expect.
const GATE: &str = "read -r hangar_gate || exit 0\nexec </dev/null\n";

/// Everything needed to start one instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub service: String,
    pub version: String,
    pub index: u32,
    pub command: String,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub health: Health,
    pub stop: Stop,
    pub restart: RestartPolicy,
    pub log_path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Starting,
    Healthy,
    Unhealthy,
    /// Exited; waiting out the restart backoff.
    Backoff,
    Stopped,
    /// Exited and will not be restarted (policy or crash loop).
    Failed,
}

/// What `status` shows of an instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub service: String,
    pub version: String,
    pub index: u32,
    pub port: u16,
    pub pid: u32,
    pub phase: Phase,
    pub restarts: u32,
    pub last_health: Option<String>,
    pub last_exit: Option<String>,
    pub log: PathBuf,
}

/// A supervised instance.
pub struct Instance {
    pub spec: InstanceSpec,
    pub port: u16,
    pid: AtomicU32,
    stopping: AtomicBool,
    state: Mutex<State>,
    healthy_tx: watch::Sender<bool>,
    started: Instant,
    /// Whether a health check ever passed (a later exit 127 is then not a typo in `run:`).
    ever_healthy: AtomicBool,
    recorder: Recorder,
}

/// The process an instance's keeper watches.
enum Running {
    /// Spawned by this controller: waited for.
    Child(tokio::process::Child),
    /// Started by a controller that died, re-adopted by this one.
    Adopted { pid: u32, start_time: Option<u64> },
}

struct State {
    phase: Phase,
    restarts: u32,
    last_health: Option<String>,
    last_exit: Option<String>,
}

/// After this many restarts within a minute a service is reported as crash-looping
/// and its restarts are spaced by the maximum backoff.
const CRASH_LOOP_RESTARTS: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Instance {
    /// Starts the process and its keeper and health tasks. `recorder` is
    /// called with each process of the instance before its command runs.
    pub fn start(spec: InstanceSpec, recorder: Recorder) -> std::io::Result<Arc<Instance>> {
        let port = free_port()?;
        if let Some(dir) = spec.log_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let inst = Instance::new(spec, port, 0, recorder);
        let child = inst.spawn_child()?;
        tokio::spawn(inst.clone().keep(Running::Child(child)));
        tokio::spawn(inst.clone().check_health());
        Ok(inst)
    }

    /// Takes over a process a dead controller started (see [`adoptable`]):
    /// it keeps running and serving, is health-checked from now on (it is
    /// `Starting` until its checks pass, so no traffic is trusted to it on
    /// the dead controller's word), and is restarted on its own port by the
    /// restart policy when it exits, as if this controller had started it.
    pub fn adopt(
        spec: InstanceSpec,
        port: u16,
        pid: u32,
        start_time: Option<u64>,
        recorder: Recorder,
    ) -> Arc<Instance> {
        let inst = Instance::new(spec, port, pid, recorder);
        tokio::spawn(inst.clone().keep(Running::Adopted { pid, start_time }));
        tokio::spawn(inst.clone().check_health());
        inst
    }

    fn new(spec: InstanceSpec, port: u16, pid: u32, recorder: Recorder) -> Arc<Instance> {
        let (healthy_tx, _) = watch::channel(false);
        Arc::new(Instance {
            spec,
            port,
            pid: AtomicU32::new(pid),
            stopping: AtomicBool::new(false),
            state: Mutex::new(State {
                phase: Phase::Starting,
                restarts: 0,
                last_health: None,
                last_exit: None,
            }),
            healthy_tx,
            started: Instant::now(),
            ever_healthy: AtomicBool::new(false),
            recorder,
        })
    }

    fn spawn_child(&self) -> std::io::Result<tokio::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log_path)?;
        // Close-on-exec on both ends: another instance spawned meanwhile does
        // not inherit the write end (which would keep this gate from closing).
        let (gate, mut open) = std::io::pipe()?;
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{GATE}{}", shell_line(&self.spec.command)))
            .current_dir(&self.spec.cwd)
            .env("PORT", self.port.to_string())
            .env("HANGAR_SERVICE", &self.spec.service)
            .env("HANGAR_VERSION", &self.spec.version)
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(gate)
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a stop reaches everything the command started,
            // and hangar's Ctrl-C does not reach it before the graceful stop does.
            .process_group(0);
        let child = cmd.spawn()?;
        drop(cmd); // our copy of the gate's reading end
        let pid = child.id().unwrap_or(0);
        self.pid.store(pid, Ordering::SeqCst);
        let record = ProcessRecord {
            service: self.spec.service.clone(),
            version: self.spec.version.clone(),
            pid,
            start_time: process_start_time(pid),
            port: Some(self.port),
            index: Some(self.spec.index),
        };
        if let Err(e) = (self.recorder)(record) {
            // Nobody could find it after a crash: it does not run.
            signal_group(pid, libc::SIGKILL);
            return Err(std::io::Error::other(format!(
                "cannot record the instance's pid {pid}: {e}"
            )));
        }
        use std::io::Write;
        // Four bytes into an empty pipe never block; a child already gone is
        // seen by the keeper.
        let _ = open.write_all(b"go\n");
        Ok(child)
    }

    async fn keep(self: Arc<Self>, mut running: Running) {
        let mut recent: Vec<Instant> = Vec::new();
        loop {
            let status = match &mut running {
                Running::Child(child) => child.wait().await,
                Running::Adopted { pid, start_time } => {
                    // Not our child: its exit status goes to whoever
                    // inherited it, so its end is seen by polling.
                    while process_alive(*pid) && process_start_time(*pid) == *start_time {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(std::io::Error::other(
                        "exited (status unknown: started by a previous controller)",
                    ))
                }
            };
            let exit = match &status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            let _ = self.healthy_tx.send_replace(false);
            if self.stopping.load(Ordering::SeqCst) {
                self.set(|s| {
                    s.phase = Phase::Stopped;
                    s.last_exit = Some(exit.clone());
                });
                return;
            }
            let success = matches!(&status, Ok(s) if s.success());
            // The shell's "command not found" (127) or "not executable" (126)
            // on the first start: no restart can fix that, and waiting for the
            // health deadline would only hide it.
            // (An adopted process ran: `status` is an error then.)
            let unrunnable = matches!(&status, Ok(s) if matches!(s.code(), Some(126 | 127)))
                && self.set(|s| s.restarts) == 0
                && !self.ever_healthy.load(Ordering::SeqCst);
            if unrunnable {
                let why = format!(
                    "`{}` cannot run ({exit}: {})",
                    self.spec.command,
                    if status.as_ref().ok().and_then(|s| s.code()) == Some(127) {
                        "command not found"
                    } else {
                        "not executable"
                    }
                );
                self.set(|s| {
                    s.last_exit = Some(why.clone());
                    s.phase = Phase::Failed;
                });
                // Wakes whoever waits for health, so they fail now.
                let _ = self.healthy_tx.send_replace(false);
                return;
            }
            let restart = match self.spec.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !success,
                RestartPolicy::Never => false,
            };
            recent.retain(|t| t.elapsed() < Duration::from_secs(60));
            recent.push(Instant::now());
            let restarts = self.set(|s| {
                s.last_exit = Some(exit.clone());
                s.phase = if restart {
                    Phase::Backoff
                } else {
                    Phase::Failed
                };
                s.restarts
            });
            if !restart {
                tracing::warn!(
                    "{}#{} ({}) exited: {exit}; restart policy says no restart",
                    self.spec.service,
                    self.spec.index,
                    self.spec.version
                );
                return;
            }
            let backoff = if recent.len() as u32 > CRASH_LOOP_RESTARTS {
                MAX_BACKOFF
            } else {
                (Duration::from_millis(250) * 2u32.pow(restarts.min(7))).min(MAX_BACKOFF)
            };
            tracing::warn!(
                "{}#{} ({}) exited: {exit}; restart {} in {} ms{}",
                self.spec.service,
                self.spec.index,
                self.spec.version,
                restarts + 1,
                backoff.as_millis(),
                if recent.len() as u32 > CRASH_LOOP_RESTARTS {
                    " (crash loop)"
                } else {
                    ""
                }
            );
            let deadline = Instant::now() + backoff;
            while Instant::now() < deadline {
                if self.stopping.load(Ordering::SeqCst) {
                    self.set(|s| s.phase = Phase::Stopped);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            match self.spawn_child() {
                Ok(c) => {
                    running = Running::Child(c);
                    self.set(|s| {
                        s.restarts += 1;
                        s.phase = Phase::Starting;
                    });
                }
                Err(e) => {
                    self.set(|s| {
                        s.phase = Phase::Failed;
                        s.last_exit = Some(format!("cannot restart: {e}"));
                    });
                    return;
                }
            }
        }
    }

    async fn check_health(self: Arc<Self>) {
        let h = self.spec.health.clone();
        let (mut ok_run, mut fail_run) = (0u32, 0u32);
        let mut healthy = false;
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let phase = self.state.lock().unwrap_or_else(|e| e.into_inner()).phase;
            if matches!(phase, Phase::Failed | Phase::Stopped) {
                return;
            }
            // Until first healthy, probe often so a deploy is gated by the service's
            // real start time rather than by the probe interval.
            let interval = if healthy {
                h.interval.0
            } else {
                h.interval.0.min(Duration::from_millis(100))
            };
            if phase != Phase::Backoff {
                match health::probe(&h, self.port).await {
                    Ok(msg) => {
                        ok_run += 1;
                        fail_run = 0;
                        if !healthy && ok_run >= h.healthy_threshold {
                            healthy = true;
                            self.ever_healthy.store(true, Ordering::SeqCst);
                            let _ = self.healthy_tx.send_replace(true);
                        }
                        self.set(|s| {
                            s.last_health = Some(msg);
                            if healthy {
                                s.phase = Phase::Healthy;
                            }
                        });
                    }
                    Err(msg) => {
                        ok_run = 0;
                        let in_start_period = self.started.elapsed() < h.start_period.0;
                        if !in_start_period {
                            fail_run += 1;
                        }
                        if healthy && fail_run >= h.unhealthy_threshold {
                            healthy = false;
                            let _ = self.healthy_tx.send_replace(false);
                        }
                        self.set(|s| {
                            s.last_health = Some(msg);
                            if !healthy && s.phase == Phase::Healthy {
                                s.phase = Phase::Unhealthy;
                            }
                        });
                    }
                }
            } else if healthy {
                healthy = false;
                ok_run = 0;
            }
            tokio::time::sleep(interval).await;
        }
    }

    fn set<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    }

    pub fn is_healthy(&self) -> bool {
        *self.healthy_tx.borrow()
    }

    /// A receiver that flips when health changes.
    pub fn health_watch(&self) -> watch::Receiver<bool> {
        self.healthy_tx.subscribe()
    }

    /// Waits until the instance is healthy, or fails with the reason at `deadline`.
    pub async fn wait_healthy(&self, deadline: Duration) -> Result<(), String> {
        let mut rx = self.health_watch();
        let res = tokio::time::timeout(deadline, async {
            loop {
                if *rx.borrow_and_update() {
                    return;
                }
                if self.set(|s| s.phase == Phase::Failed) {
                    return; // it will not come up: say why now
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        if res.is_ok() && self.is_healthy() {
            return Ok(());
        }
        let st = self.status();
        if st.phase == Phase::Failed {
            return Err(format!(
                "{}#{} ({}) failed before it became healthy: {}; last log lines:\n{}",
                st.service,
                st.index,
                st.version,
                st.last_exit.as_deref().unwrap_or("exited"),
                tail(&self.spec.log_path, 10)
            ));
        }
        Err(format!(
            "{}#{} ({}) on port {} not healthy after {} s: last health check: {}; last exit: {}; last log lines:\n{}",
            st.service,
            st.index,
            st.version,
            st.port,
            deadline.as_secs_f64(),
            st.last_health.as_deref().unwrap_or("none yet"),
            st.last_exit.as_deref().unwrap_or("still running"),
            tail(&self.spec.log_path, 10)
        ))
    }

    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> InstanceStatus {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        InstanceStatus {
            service: self.spec.service.clone(),
            version: self.spec.version.clone(),
            index: self.spec.index,
            port: self.port,
            pid: self.pid(),
            phase: s.phase,
            restarts: s.restarts,
            last_health: s.last_health.clone(),
            last_exit: s.last_exit.clone(),
            log: self.spec.log_path.clone(),
        }
    }

    /// Graceful stop: the configured signal to the process group, SIGKILL after the timeout.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.healthy_tx.send_replace(false);
        let pid = self.pid();
        if pid == 0 {
            return;
        }
        signal_group(pid, signal_number(&self.spec.stop.signal));
        let deadline = Instant::now() + self.spec.stop.timeout.0;
        while Instant::now() < deadline && process_alive(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if process_alive(pid) {
            signal_group(pid, libc::SIGKILL);
        }
        // The group may hold grandchildren that outlived the leader.
        signal_group(pid, libc::SIGKILL);
        self.set(|s| s.phase = Phase::Stopped);
    }
}

impl Drop for Instance {
    /// An instance nobody holds any more (its controller ended without `shutdown`,
    /// e.g. a failing test) must not outlive it. A controller killed with SIGKILL runs
    /// no destructors: its successor finds those processes in the state file instead.
    fn drop(&mut self) {
        if !self.stopping.load(Ordering::SeqCst) {
            signal_group(self.pid(), libc::SIGKILL);
        }
    }
}

/// Whether the process `rec` names is still the instance it was recorded
/// as, so that a restarted controller may adopt it: the pid is alive with
/// the recorded start time (a pid reused since has another), and the
/// environment it was started with names the same service, version and port
/// (a record that does not describe its process is never trusted with traffic).
pub fn adoptable(rec: &ProcessRecord) -> bool {
    let Some(port) = rec.port else { return false };
    if rec.start_time.is_none()
        || !process_alive(rec.pid)
        || process_start_time(rec.pid) != rec.start_time
    {
        return false;
    }
    let Ok(environ) = std::fs::read(format!("/proc/{}/environ", rec.pid)) else {
        return false;
    };
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    let has = |k: &str, v: &str| vars.iter().any(|e| *e == format!("{k}={v}").as_bytes());
    has("HANGAR_SERVICE", &rec.service)
        && has("HANGAR_VERSION", &rec.version)
        && has("PORT", &port.to_string())
}

/// The last `n` lines of a log file.
pub fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn free_port() -> std::io::Result<u16> {
    // Bind-and-release: the kernel hands out ephemeral ports in sequence, so the
    // window for another process to take it before the instance binds is tiny;
    // a lost race shows up as a failed health check and a restart.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn signal_number(name: &str) -> i32 {
    match name.trim_start_matches("SIG").to_ascii_uppercase().as_str() {
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        _ => libc::SIGTERM,
    }
}

/// The line `sh -c` runs for a `run:` command, as compose hands a string to a
/// shell. A plain command is `exec`'d, so the instance is the process itself;
/// one that starts with variable assignments (`PORT=5432 postgres`) or joins
/// commands (`npm ci && npm start`, a pipe, a redirection) is given to the
/// shell as written: `exec` would make the first a "not found" and cut the
/// second short. Stops reach every process of the instance either way (they
/// signal its process group).
pub fn shell_line(command: &str) -> String {
    let first = command.split_whitespace().next().unwrap_or("");
    let assignment = first.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    });
    // Operators count outside quotes only: `sh -c 'a; b'` is one plain command.
    let (mut single, mut double, mut escaped, mut compound) = (false, false, false, false);
    for c in command.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' | '\n' if !single && !double => {
                compound = true;
                break;
            }
            _ => {}
        }
    }
    if assignment || compound {
        command.to_string()
    } else {
        format!("exec {command}")
    }
}

/// Sends a signal to a process group (the instance was started as its group leader).
#[allow(unsafe_code)] // kill(2) has no safe wrapper in std; arguments are plain integers.
pub fn signal_group(pgid: u32, sig: i32) {
    if pgid > 1 {
        unsafe {
            libc::kill(-(pgid as i32), sig);
        }
    }
}

/// Whether a pid is alive (and not a zombie we already reaped).
#[allow(unsafe_code)] // kill(pid, 0) probes existence; no memory is touched.
pub fn process_alive(pid: u32) -> bool {
    if pid <= 1 {
        return false;
    }
    let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
    if !alive {
        return false;
    }
    // A zombie still answers kill(0); check its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Process start time (clock ticks since boot) from /proc: with the pid it identifies a process.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Unix time in milliseconds, for history's timings.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record is adopted only by the process it describes: a pid reused
    /// since (another start time) or another program that happens to have
    /// the recorded start time but not the instance's environment is not.
    #[test]
    fn only_the_recorded_instance_is_adoptable() {
        let spawn = |service: &str| {
            std::process::Command::new("sleep")
                .arg("30")
                .env("HANGAR_SERVICE", service)
                .env("HANGAR_VERSION", "r1")
                .env("PORT", "4321")
                .spawn()
                .unwrap()
        };
        let mut web = spawn("web");
        let mut other = spawn("api");
        let record = |pid: u32, start_time: Option<u64>| ProcessRecord {
            service: "web".into(),
            version: "r1".into(),
            pid,
            start_time,
            port: Some(4321),
            index: Some(0),
        };
        let start = process_start_time(web.id());
        assert!(adoptable(&record(web.id(), start)));
        // The pid reused by another process: its start time differs.
        assert!(!adoptable(&record(web.id(), start.map(|t| t + 1))));
        assert!(!adoptable(&record(web.id(), None)));
        // Right pid and start time, another service's environment.
        assert!(!adoptable(&record(
            other.id(),
            process_start_time(other.id())
        )));
        // Another port recorded.
        let mut moved = record(web.id(), start);
        moved.port = Some(4322);
        assert!(!adoptable(&moved));
        for c in [&mut web, &mut other] {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(!adoptable(&record(web.id(), start)));
    }

    #[test]
    fn run_lines_are_execd_only_when_plain() {
        assert_eq!(
            shell_line("python3 -m http.server $PORT"),
            "exec python3 -m http.server $PORT"
        );
        for as_written in [
            "PORT=5432 postgres -D data",
            "npm ci && npm start",
            "cat x | server",
            "server > out.log",
            "cd api; ./run",
        ] {
            assert_eq!(shell_line(as_written), as_written);
        }
        // Quoted operators belong to the quoted program.
        assert_eq!(
            shell_line("sh -c 'sleep 1; exec server'"),
            "exec sh -c 'sleep 1; exec server'"
        );
        assert_eq!(shell_line("echo \"a|b\" x"), "exec echo \"a|b\" x");
    }
}
