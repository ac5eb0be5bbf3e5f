//! Every process a job starts ends with the job, and with hangar when it is
//! killed with `kill -9`: children, grandchildren and a daemon that left its
//! process group (`setsid`) alike. Real `hangar run` and `hangar serve`
//! processes; the steps' processes are found in /proc by their arguments.

use std::io::{BufRead, BufReader};
use std::path::Path;

use hangar_testkit::git;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

/// Pids of processes whose arguments are exactly `sleep <n>`.
fn sleeping(n: u32) -> Vec<u32> {
    let want = format!("sleep\0{n}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c == want.as_bytes())
                // A zombie awaiting its reaper is already gone.
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn workflow(dir: &Path, body: &str) {
    std::fs::create_dir_all(dir.join(".github/workflows")).unwrap();
    std::fs::write(
        dir.join(".github/workflows/ci.yml"),
        format!(
            "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n{body}"
        ),
    )
    .unwrap();
}

/// Kills whatever a failed assertion left running.
struct Sweep(&'static [u32]);

impl Drop for Sweep {
    fn drop(&mut self) {
        for n in self.0 {
            for pid in sleeping(*n) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

#[test]
fn what_a_job_leaves_running_is_cleaned_up_when_it_ends() {
    let _sweep = Sweep(&[31410, 31411]);
    let dir = tempfile::tempdir().unwrap();
    // The first step ends while what it started in the background runs on
    // (and holds its output pipe): the next step still finds it alive.
    workflow(
        dir.path(),
        "          sleep 31410 &\n          echo $! > bg.pid\n          setsid sleep 31411 &\n          echo started\n      - run: kill -0 $(cat bg.pid) && echo still running\n",
    );
    let out = Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Cleaning up orphan processes: terminated 2"),
        "{text}"
    );
    wait_until("the orphans to be gone", Duration::from_secs(5), || {
        sleeping(31410).is_empty() && sleeping(31411).is_empty()
    });
}

#[test]
fn kill_9_of_hangar_run_takes_the_jobs_processes_with_it() {
    let _sweep = Sweep(&[31412, 31413]);
    let dir = tempfile::tempdir().unwrap();
    workflow(
        dir.path(),
        "          setsid sleep 31413 &\n          sleep 31412\n",
    );
    let mut run = Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the step to start", Duration::from_secs(20), || {
        !sleeping(31412).is_empty() && !sleeping(31413).is_empty()
    });
    run.kill().unwrap();
    run.wait().unwrap();
    wait_until(
        "no process of the job left",
        Duration::from_secs(10),
        || sleeping(31412).is_empty() && sleeping(31413).is_empty(),
    );
}

#[test]
fn kill_9_of_hangar_serve_takes_its_jobs_processes_with_it() {
    let _sweep = Sweep(&[31414, 31415]);
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let data = tempfile::tempdir().unwrap();
    let mut serve = Command::new(BIN)
        .current_dir(data.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--poll-ms",
            "100",
            "--data",
        ])
        .arg(data.path())
        .arg("--repo")
        .arg(repo.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.contains("listening on ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    workflow(
        repo.path(),
        "          setsid sleep 31415 &\n          sleep 31414\n",
    );
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "ci"]);
    wait_until("the job's step to start", Duration::from_secs(30), || {
        !sleeping(31414).is_empty() && !sleeping(31415).is_empty()
    });
    serve.kill().unwrap();
    serve.wait().unwrap();
    wait_until(
        "no process of the job left",
        Duration::from_secs(10),
        || sleeping(31414).is_empty() && sleeping(31415).is_empty(),
    );
}
