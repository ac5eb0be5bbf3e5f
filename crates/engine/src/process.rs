//! Running one step's process: spawned directly (no wrapper shell), in its own
//! process group so cancellation reaches its children, stdout and stderr merged
//! into one pipe in write order, read in large chunks on a blocking thread.

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
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
    // A full path lets std use posix_spawn (vfork-like) instead of fork+exec:
    // with PATH set in the child's environment and a bare name it must fork.
    let path_var = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let program = crate::shell::which(&spec.program, path_var)
        .map(|p| p.into_os_string())
        .unwrap_or_else(|| spec.program.clone().into());
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .process_group(0);
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
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => sink.chunk(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the step: {e}"))?;
    Ok(status.code())
}
