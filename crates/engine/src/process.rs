//! Running one step's process: spawned directly (no wrapper shell), in its own
//! process group so cancellation reaches its children, stdout and stderr merged
//! into one pipe in write order, read in large chunks on a blocking thread.
//!
//! Every process of a job carries `RUNNER_TRACKING_ID` in its environment, as
//! on GitHub's runner, which uses it to find a job's orphans: at the end of the
//! job whatever still carries it (a `server &` a step left behind, a daemon
//! that left its process group) is killed ([`kill_job_processes`]); a process
//! that empties its own environment escapes this. A
//! watchdog outlives this process to do the same if it dies first, `kill -9`
//! included ([`watch`]), so a retry never meets a previous attempt's leftovers.
//!
//! The step's own process also gets a parent-death signal (SIGKILL when the
//! thread that started it, hence the agent, the server or `hangar run`, dies),
//! so it goes at once, before the watchdog's scan. With the bubblewrap jail
//! ([`Sandbox`]) the steps of a job share the job's own PID namespace
//! ([`JobJail`]): when the job ends, or hangar dies, the namespace's init goes
//! and the kernel kills everything in it, whatever it did to its environment,
//! so the jail needs no scan of `/proc`.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Time a step gets after SIGINT before SIGTERM, and after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_millis(2500);

/// Receives a step's output chunks on the reading thread.
pub trait Sink: Send + 'static {
    fn chunk(&mut self, bytes: &[u8]);
}

impl Sink for crate::output::StepSink {
    fn chunk(&mut self, bytes: &[u8]) {
        self.feed(bytes);
    }
}

pub struct Spec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment (the child inherits nothing else).
    pub env: Vec<(String, String)>,
    /// The job's jail, when its steps are jailed.
    pub jail: Option<Arc<JobJail>>,
}

/// How jobs are isolated from the machine that runs them (`--sandbox`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    /// bubblewrap when it is installed and works here, else plain processes with a warning.
    Auto,
    /// bubblewrap, or refuse to start.
    Bwrap,
    /// Plain processes as the agent's user (the environment is still the allow-list).
    None,
}

impl std::str::FromStr for SandboxMode {
    type Err = String;
    fn from_str(s: &str) -> Result<SandboxMode, String> {
        match s {
            "auto" => Ok(SandboxMode::Auto),
            "bwrap" => Ok(SandboxMode::Bwrap),
            "none" => Ok(SandboxMode::None),
            _ => Err(format!("unknown sandbox {s:?}: use auto, bwrap or none")),
        }
    }
}

/// The variables of the agent's own environment a job may see. Everything else
/// (tokens, the server's configuration, whatever the service manager set) stays
/// with the agent; the job's own variables (`GITHUB_*`, `RUNNER_*`, `env:`) are
/// added by the engine.
pub const ENV_ALLOW_LIST: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "GOROOT",
    "GOPATH",
    "JAVA_HOME",
];

/// Whether `name` of the agent's environment passes to a job (the allow-list and `LC_*`).
pub fn env_allowed(name: &str) -> bool {
    ENV_ALLOW_LIST.contains(&name) || name.starts_with("LC_")
}

/// How an agent's jobs are isolated (the engine's default is no isolation:
/// `hangar run` on a developer's machine runs as the developer).
#[derive(Clone, Debug, Default)]
pub struct Sandbox {
    bwrap: Option<PathBuf>,
    hide: Vec<PathBuf>,
    clean_env: bool,
}

impl Sandbox {
    /// The sandbox of an agent's jobs. `hide` lists what no step may see (the
    /// server's data directory, the agent's work directory with other jobs'
    /// workspaces, its state file). Returns a warning to print when `auto` found no working
    /// bubblewrap; `bwrap` without a working bubblewrap is an error.
    pub fn for_agent(
        mode: SandboxMode,
        hide: Vec<PathBuf>,
    ) -> Result<(Sandbox, Option<String>), String> {
        let mut sandbox = Sandbox {
            bwrap: None,
            hide,
            clean_env: true,
        };
        if mode == SandboxMode::None {
            return Ok((sandbox, None));
        }
        match probe_bwrap() {
            Ok(program) => {
                sandbox.bwrap = Some(program);
                Ok((sandbox, None))
            }
            Err(why) if mode == SandboxMode::Bwrap => Err(format!(
                "--sandbox bwrap: {why}. Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) \
                 or choose --sandbox none"
            )),
            Err(why) => Ok((
                sandbox,
                Some(format!(
                    "WARNING: jobs are NOT sandboxed ({why}): every step runs as this user \
                     and can read what it can read, the server's data directory included. \
                     Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or pass \
                     --sandbox none to say this is intended"
                )),
            )),
        }
    }

    /// Steps run in a bubblewrap jail.
    pub fn jailed(&self) -> bool {
        self.bwrap.is_some()
    }

    /// Steps get only [`ENV_ALLOW_LIST`] of the agent's environment.
    pub(crate) fn clean_env(&self) -> bool {
        self.clean_env
    }

    /// The jail of one job: the machine read-only, a private `/tmp`, `/dev`
    /// and `/proc` of the job's own PID namespace (the agent's processes and
    /// their environment are not there), the hidden directories replaced by
    /// empty ones, then `writable` (workspace, run and temporary directories)
    /// and `readable` (action and tool caches) bound back in. `None` when the
    /// sandbox does not jail. A hidden file is covered by `/dev/null`.
    pub(crate) fn jail(
        &self,
        writable: &[&Path],
        readable: &[&Path],
    ) -> Result<Option<Arc<JobJail>>, String> {
        let Some(program) = self.bwrap.as_ref() else {
            return Ok(None);
        };
        let mut a: Vec<OsString> = vec![program.clone().into()];
        let mut opt = |o: &str, p: &[&Path]| {
            a.push(o.into());
            for p in p {
                a.push(p.as_os_str().to_owned());
            }
        };
        opt("--ro-bind", &[Path::new("/"), Path::new("/")]);
        opt("--dev", &[Path::new("/dev")]);
        opt("--proc", &[Path::new("/proc")]);
        opt("--tmpfs", &[Path::new("/tmp")]);
        for h in &self.hide {
            // A directory that does not exist cannot be mounted over (and shows nothing).
            if h.is_dir() {
                opt("--tmpfs", &[h]);
            }
        }
        // A hidden file (an agent's state file with its credential) reads as
        // nothing, unless a hidden directory holds it already.
        for h in &self.hide {
            if h.is_file() && !self.hide.iter().any(|d| d != h && h.starts_with(d)) {
                opt("--ro-bind", &[Path::new("/dev/null"), h]);
            }
        }
        for p in readable {
            if p.is_dir() {
                opt("--ro-bind", &[p, p]);
            }
        }
        for p in writable {
            if p.is_dir() {
                opt("--bind", &[p, p]);
            }
        }
        // Read-only once the binds under them are made: a step writing into the
        // data directory gets an error, not a throwaway copy that looks like success.
        for h in &self.hide {
            if h.is_dir() {
                opt("--remount-ro", &[h]);
            }
        }
        for o in [
            "--unshare-ipc",
            "--unshare-uts",
            "--die-with-parent",
            "--new-session",
        ] {
            a.push(o.into());
        }
        JobJail::start(program, a).map(|j| Some(Arc::new(j)))
    }
}

/// A job's PID namespace, shared by all its steps as a job's processes share
/// a machine on GitHub: a `server &` one step starts is there for the next
/// one. A bubblewrap "holder" (`cat` reading a pipe) keeps the namespace for
/// the job's life; each step's own bubblewrap joins it (`--pidns`). Ending the
/// job closes the pipe: the namespace's init exits and the kernel kills
/// everything left in it, daemons that left their session or emptied their
/// environment included, with no scan of `/proc`.
pub struct JobJail {
    /// bubblewrap's program and the step's options (everything before
    /// `--chdir`), `--pidns`/`--userns` with the descriptors below included.
    args: Vec<OsString>,
    /// `/proc/<init>/ns/pid` (and `ns/user` when bubblewrap made a user
    /// namespace, as it does without root): inherited by each step's
    /// bubblewrap under the same numbers.
    namespaces: Vec<rustix::fd::OwnedFd>,
    /// The namespace's init (bubblewrap's reaper), as this process sees it.
    init: u32,
    /// Closing it ends the holder, hence the namespace.
    holder_stdin: std::sync::Mutex<Option<std::process::ChildStdin>>,
    /// The thread that started the holder and waits for it: the holder's
    /// parent-death signal is tied to it, so it lives as long as the job.
    holder_thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl JobJail {
    fn start(program: &Path, step_args: Vec<OsString>) -> Result<JobJail, String> {
        use std::os::fd::AsRawFd;
        // std's pipes are close-on-exec: only the holder inherits the write end
        // (through `inherit_fds`), so the read below ends when bubblewrap's does.
        let (mut info_read, info_write) =
            std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
        let info_fd = info_write.as_raw_fd();
        let (tx, rx) = std::sync::mpsc::channel();
        let program = program.to_path_buf();
        let holder_thread = std::thread::Builder::new()
            .name("job-jail".into())
            .spawn(move || {
                use std::os::unix::process::CommandExt;
                let mut cmd = std::process::Command::new(&program);
                cmd.args(["--ro-bind", "/", "/", "--unshare-pid", "--die-with-parent"])
                    .arg("--info-fd")
                    .arg(info_fd.to_string())
                    .args(["--", "cat"])
                    .env_clear()
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .process_group(0);
                die_with_parent(&mut cmd);
                inherit_fds(&mut cmd, vec![info_fd]);
                let spawned = cmd.spawn();
                drop(info_write);
                let mut child = match spawned {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot start {}: {e}", program.display())));
                        return;
                    }
                };
                let _ = tx.send(Ok((child.stdin.take(), child.stderr.take())));
                // The job ended (its stdin closed) or the holder died: reap it.
                let _ = child.wait();
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let (stdin, stderr) = rx
            .recv()
            .map_err(|_| "the job jail's thread ended".to_string())??;
        // bubblewrap writes `{"child-pid": N}` in one write once the namespace
        // exists (read up to the closing brace: whether the sandbox's own
        // processes keep the descriptor is bubblewrap's business), or exits.
        let mut info = Vec::new();
        let mut buf = [0u8; 256];
        while !info.contains(&b'}') && info.len() < 4096 {
            match info_read.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => info.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let init = serde_json::from_slice::<serde_json::Value>(&info)
            .ok()
            .and_then(|v| v.get("child-pid")?.as_u64())
            .map(|p| p as u32);
        let Some(init) = init else {
            let mut why = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut why);
            }
            drop(stdin);
            let _ = holder_thread.join();
            return Err(format!(
                "bubblewrap did not make the job's PID namespace: {}",
                why.trim()
            ));
        };
        let open = |kind: &str| {
            rustix::fs::open(
                format!("/proc/{init}/ns/{kind}"),
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| format!("cannot open the job's {kind} namespace: {e}"))
        };
        let same = |kind: &str| {
            let ours = rustix::fs::stat(format!("/proc/self/ns/{kind}")).ok();
            let theirs = rustix::fs::stat(format!("/proc/{init}/ns/{kind}")).ok();
            matches!((ours, theirs), (Some(a), Some(b)) if a.st_ino == b.st_ino && a.st_dev == b.st_dev)
        };
        let mut namespaces = Vec::new();
        let mut args = step_args;
        // Joining a PID namespace owned by another user namespace takes that
        // user namespace too (bubblewrap makes one when not run as root).
        if !same("user") {
            let fd = open("user")?;
            args.push("--userns".into());
            args.push(fd.as_raw_fd().to_string().into());
            namespaces.push(fd);
        }
        let fd = open("pid")?;
        args.push("--pidns".into());
        args.push(fd.as_raw_fd().to_string().into());
        namespaces.push(fd);
        // The holder's stderr is not read again: a full pipe must not block it.
        drop(stderr);
        Ok(JobJail {
            args,
            namespaces,
            init,
            holder_stdin: std::sync::Mutex::new(stdin),
            holder_thread: std::sync::Mutex::new(Some(holder_thread)),
        })
    }

    /// Prepares `cmd` (a new `Command` of bubblewrap) to run a step in the jail.
    fn command(&self) -> std::process::Command {
        use std::os::fd::AsRawFd;
        let mut cmd = std::process::Command::new(&self.args[0]);
        cmd.args(&self.args[1..]);
        inherit_fds(
            &mut cmd,
            self.namespaces.iter().map(|f| f.as_raw_fd()).collect(),
        );
        cmd
    }

    /// Ends the job's namespace and everything in it; returns the processes
    /// that were still there (the job's orphans), init's own holder excepted.
    pub(crate) fn end(&self) -> Vec<u32> {
        let left = descendants(self.init);
        let Some(stdin) = self
            .holder_stdin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Vec::new();
        };
        drop(stdin);
        if let Some(t) = self
            .holder_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
        // `cat` (the holder itself) is init's first child: not an orphan.
        left.into_iter().skip(1).collect()
    }
}

impl Drop for JobJail {
    fn drop(&mut self) {
        self.end();
    }
}

/// The processes below `pid`, parents before children, from
/// `/proc/PID/task/TID/children` (cheap: no scan of every process). Empty
/// when the kernel does not offer the file.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([pid]);
    while let Some(p) = queue.pop_front() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(t.path().join("children")) else {
                continue;
            };
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&c) && out.len() < 100_000 {
                    out.push(c);
                    queue.push_back(c);
                }
            }
        }
    }
    out
}

/// Keeps `fds` open across `cmd`'s exec (they are close-on-exec here, so no
/// other process inherits them).
#[allow(unsafe_code)] // pre_exec has no safe wrapper; see SAFETY.
fn inherit_fds(cmd: &mut std::process::Command, fds: Vec<std::os::fd::RawFd>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec, makes only
    // fcntl calls (async-signal-safe) and allocates nothing (`fds` was built
    // before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The `bwrap` on PATH, if it can make the namespaces a job needs here (it
/// needs user namespaces, or root): a real jail started and stopped.
fn probe_bwrap() -> Result<PathBuf, String> {
    let path = std::env::var("PATH").ok();
    let program = crate::shell::which("bwrap", path.as_deref())
        .ok_or_else(|| "bubblewrap (`bwrap`) is not on PATH".to_string())?;
    let out = std::process::Command::new(&program)
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--die-with-parent",
            "--new-session",
            "--",
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} is installed but cannot make a jail here ({}): it needs unprivileged user namespaces \
             (sysctl kernel.unprivileged_userns_clone=1) or root",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // A job's steps join the job's PID namespace (`--pidns`, bubblewrap 0.4+).
    let jail = JobJail::start(
        &program,
        vec![
            program.clone().into(),
            "--ro-bind".into(),
            "/".into(),
            "/".into(),
            "--proc".into(),
            "/proc".into(),
            "--die-with-parent".into(),
        ],
    )
    .map_err(|e| format!("{}: {e}", program.display()))?;
    let joined = jail
        .command()
        .args(["--", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    jail.end();
    if !joined.status.success() {
        return Err(format!(
            "{} cannot put a step into its job's PID namespace ({}): bubblewrap 0.4 or later is needed",
            program.display(),
            String::from_utf8_lossy(&joined.stderr).trim()
        ));
    }
    Ok(program)
}

#[derive(Debug, Default)]
pub struct Exit {
    /// Exit code; `None` when killed by a signal or never started.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub cancelled: bool,
    /// Could not start (program missing, bad directory...).
    pub error: Option<String>,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.cancelled && self.error.is_none()
    }
}

/// Runs `spec`, handing every chunk of output to `sink`; returns the sink back
/// with the exit. Cancellation and timeout send SIGINT, then SIGTERM, then
/// SIGKILL to the process group, [`GRACE`] apart.
pub async fn run<F>(
    spec: Spec,
    mut sink: F,
    cancel: &CancellationToken,
    timeout: Option<Duration>,
) -> (F, Exit)
where
    F: Sink,
{
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel::<Option<u32>>();
    let worker = tokio::task::spawn_blocking(move || {
        let result = spawn_and_read(spec, &mut sink, pid_tx);
        (sink, result)
    });
    let pid = pid_rx.await.ok().flatten();
    let mut worker = std::pin::pin!(worker);
    let mut timed_out = false;
    let mut cancelled = false;
    let sleep = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let joined = tokio::select! {
        r = &mut worker => Some(r),
        _ = cancel.cancelled() => { cancelled = true; None }
        _ = sleep => { timed_out = true; None }
    };
    let joined = match joined {
        Some(r) => r,
        None => {
            let mut result = None;
            if let Some(pid) = pid {
                for signal in [
                    rustix::process::Signal::INT,
                    rustix::process::Signal::TERM,
                    rustix::process::Signal::KILL,
                ] {
                    signal_group(pid, signal);
                    if let Ok(r) = tokio::time::timeout(GRACE, &mut worker).await {
                        result = Some(r);
                        break;
                    }
                }
            }
            match result {
                Some(r) => r,
                None => worker.await,
            }
        }
    };
    match joined {
        Ok((sink, Ok(code))) => (
            sink,
            Exit {
                code,
                timed_out,
                cancelled,
                error: None,
            },
        ),
        Ok((sink, Err(e))) => (
            sink,
            Exit {
                code: None,
                timed_out,
                cancelled,
                error: Some(e),
            },
        ),
        Err(e) => panic!("step reader thread failed: {e}"),
    }
}

/// Most steps are short. Waiting a moment for the process to exit before
/// streaming its output costs a trivial step one wake-up (its exit) instead
/// of one per write plus one for the end of its output; a longer step is
/// streamed as usual after [`FIRST_WAIT`], and one that fills the pipe
/// meanwhile only waits that long.
fn wait_briefly_for_exit(pid: u32) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return;
    };
    // Without pidfds (old kernels), stream at once.
    let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return;
    };
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: FIRST_WAIT.as_nanos() as _,
    };
    let _ = poll(&mut [PollFd::new(&fd, PollFlags::IN)], Some(&timeout));
}

/// How long a step's output may wait for the step to end before it is streamed.
const FIRST_WAIT: Duration = Duration::from_millis(5);

fn signal_group(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Gives the step's process a parent-death signal: SIGKILL when the thread
/// that spawned it (which waits for it) goes, so when its agent, server or
/// `hangar run` dies, `kill -9` included.
#[allow(unsafe_code)] // pre_exec and prctl have no safe wrappers; see SAFETY.
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (prctl, getppid), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will not come.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

fn spawn_and_read(
    spec: Spec,
    sink: &mut dyn Sink,
    pid_tx: tokio::sync::oneshot::Sender<Option<u32>>,
) -> Result<Option<i32>, String> {
    use std::os::unix::process::CommandExt;
    let (mut reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            let _ = pid_tx.send(None);
            return Err(format!("cannot create a pipe: {e}"));
        }
    };
    // The program is found on the step's own PATH (the job's, not this
    // process's). (std forks rather than posix_spawns here whatever the path:
    // the parent-death signal needs a `pre_exec`.)
    let path_var = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let program = crate::shell::which(&spec.program, path_var)
        .map(|p| p.into_os_string())
        .unwrap_or_else(|| spec.program.clone().into());
    let mut cmd = match &spec.jail {
        Some(jail) => {
            let mut cmd = jail.command();
            cmd.arg("--chdir").arg(&spec.cwd).arg("--").arg(&program);
            cmd
        }
        None => std::process::Command::new(&program),
    };
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .process_group(0);
    die_with_parent(&mut cmd);
    let spawned = writer
        .try_clone()
        .map_err(|e| format!("cannot duplicate a pipe: {e}"))
        .and_then(|w2| {
            cmd.stdout(w2).stderr(writer);
            cmd.spawn().map_err(|e| {
                if !spec.cwd.is_dir() {
                    // GitHub's words for a `working-directory` that is missing.
                    format!(
                        "An error occurred trying to start process '{}' with working directory '{}'. No such file or directory",
                        std::path::Path::new(&program).display(),
                        spec.cwd.display()
                    )
                } else if e.kind() == std::io::ErrorKind::NotFound {
                    format!("`{}` was not found on PATH: {e}", spec.program)
                } else {
                    format!("cannot start `{}`: {e}", spec.program)
                }
            })
        });
    // The Command holds the pipe's write ends; drop them so EOF arrives when the
    // step (and everything it started) is done.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = pid_tx.send(None);
            return Err(e);
        }
    };
    let _ = pid_tx.send(Some(child.id()));
    wait_briefly_for_exit(child.id());
    let mut buf = vec![0u8; 64 * 1024];
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    match pidfd {
        Some(pidfd) => read_until_exit(&mut reader, &pidfd, sink, &mut buf),
        // Without pidfds (old kernels): until the pipe closes.
        None => loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => sink.chunk(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        },
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the step: {e}"))?;
    Ok(status.code())
}

/// Streams the step's output until the step's own process has exited, not
/// until the pipe closes: a process it started in the background (`server &`)
/// holds the pipe open for as long as it runs, and on GitHub the step still
/// ends when its process does. What the step wrote before exiting is in the
/// pipe and is read; the background process's later output is not the step's.
fn read_until_exit(
    reader: &mut std::io::PipeReader,
    pidfd: &rustix::fd::OwnedFd,
    sink: &mut dyn Sink,
    buf: &mut [u8],
) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let readable = PollFlags::IN | PollFlags::HUP | PollFlags::ERR;
    loop {
        let (pipe, exited) = {
            let mut fds = [
                PollFd::new(reader, PollFlags::IN),
                PollFd::new(pidfd, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
            (
                fds[0].revents().intersects(readable),
                fds[1].revents().contains(PollFlags::IN),
            )
        };
        if exited {
            // What the step wrote before it exited is in the pipe (at most a
            // pipe's buffer: a writer blocks until it is read). Drain it, for a
            // bounded time, as a background process may keep writing.
            let until = std::time::Instant::now() + Duration::from_millis(100);
            while std::time::Instant::now() < until {
                let mut fds = [PollFd::new(reader, PollFlags::IN)];
                let zero = Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                if !matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
                    || !fds[0].revents().intersects(readable)
                {
                    return;
                }
                match reader.read(buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink.chunk(&buf[..n]),
                }
            }
            return;
        }
        if pipe {
            match reader.read(buf) {
                Ok(0) => return,
                Ok(n) => sink.chunk(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// The environment variable that marks every process of a job.
pub const TRACKING_VAR: &str = "RUNNER_TRACKING_ID";

/// Kills every process whose environment carries `RUNNER_TRACKING_ID=<id>`:
/// the job's steps' children, grandchildren and daemons that left their
/// process group alike. (Not the steps' process groups by number: once a
/// group is empty its number can be a new process's, another job's step.)
/// Returns the processes found.
pub fn kill_job_processes(id: &str) -> Vec<u32> {
    let needle = format!("{TRACKING_VAR}={id}\0");
    let me = std::process::id();
    let mut found = Vec::new();
    // A process can fork while the scan runs: look again until nothing is left.
    for _ in 0..5 {
        let mut this_pass = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            break;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            let carries = env.starts_with(needle.as_bytes())
                || env
                    .windows(needle.len() + 1)
                    .any(|w| w[0] == 0 && &w[1..] == needle.as_bytes());
            if carries && let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                this_pass += 1;
                if !found.contains(&pid) {
                    found.push(pid);
                }
            }
        }
        if this_pass == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    found
}

/// The watchdog: `sh` in a process group of its own, ignoring the signals a
/// terminal or a supervisor sends to ours, reading job ids on its stdin
/// (`+id` when a job starts, `-id` when it ended and was cleaned up). When its
/// stdin closes (this process exited or was killed), it kills every process
/// still carrying a registered id. Written in sh so it needs nothing but a
/// shell, and so it is not a copy of this (possibly large) process.
const WATCHDOG: &str = r#"trap '' INT TERM HUP PIPE
ids=""
while IFS= read -r line; do
  case "$line" in
    +*) ids="$ids ${line#+}" ;;
    -*) keep=""; for i in $ids; do [ "$i" = "${line#-}" ] || keep="$keep $i"; done; ids=$keep ;;
  esac
done
[ -z "$ids" ] && exit 0
for pass in 1 2 3; do
  for e in /proc/[0-9]*/environ; do
    for i in $ids; do
      if tr '\0' '\n' < "$e" 2>/dev/null | grep -qx "RUNNER_TRACKING_ID=$i"; then
        p=${e#/proc/}; kill -KILL "${p%/environ}" 2>/dev/null
      fi
    done
  done
  sleep 0.1
done
"#;

static WATCHDOG_STDIN: std::sync::Mutex<Option<std::process::ChildStdin>> =
    std::sync::Mutex::new(None);

fn tell_watchdog(line: &str) {
    use std::io::Write;
    let mut guard = WATCHDOG_STDIN.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        use std::os::unix::process::CommandExt;
        let spawned = std::process::Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => *guard = child.stdin.take(),
            Err(e) => {
                eprintln!(
                    "warning: no watchdog for job processes ({e}): if hangar is killed, its jobs' processes may outlive it"
                );
                return;
            }
        }
    }
    if let Some(stdin) = guard.as_mut()
        && stdin.write_all(format!("{line}\n").as_bytes()).is_err()
    {
        *guard = None;
    }
}

/// Registers job `id` with the watchdog.
pub fn watch(id: &str) {
    tell_watchdog(&format!("+{id}"));
}

/// The job `id` was cleaned up: the watchdog forgets it.
pub fn unwatch(id: &str) {
    tell_watchdog(&format!("-{id}"));
}
