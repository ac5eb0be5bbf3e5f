//! The bubblewrap jail of an agent's jobs, with real processes: a job's steps
//! share one PID namespace, as a job's steps share a machine on GitHub (a
//! `server &` of one step serves the next), and ending the job ends every
//! process in it, even one that left its session and emptied its environment.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hangar_engine::process::{Sandbox, SandboxMode};
use hangar_engine::report::MemoryReporter;
use hangar_engine::{CancellationToken, Engine, Event, RunContext, RunOptions, Workflow};

/// The jailing sandbox, or `None` (said loudly) where bubblewrap cannot run;
/// under CI=1 that is a failure.
fn jail() -> Option<Sandbox> {
    hangar_testkit::required_tool(
        "the bubblewrap jail",
        Sandbox::for_agent(SandboxMode::Bwrap, vec![]).map(|(sandbox, _)| sandbox),
    )
}

fn run(
    dir: &Path,
    sandbox: Sandbox,
    steps: &str,
) -> (hangar_engine::RunSummary, Arc<MemoryReporter>) {
    let text = format!("on: push\njobs:\n  a:\n    steps:\n{steps}");
    let wf = Arc::new(Workflow::parse(&dir.join("w.yml"), &text).unwrap());
    let mut run = RunContext::new(dir, "push", None);
    run.data_dir = dir.join(".data");
    let reporter = Arc::new(MemoryReporter::default());
    let mut engine = Engine::new();
    engine.set_sandbox(sandbox);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(engine.run_workflows(
        Arc::new(run),
        vec![wf],
        RunOptions::default(),
        reporter.clone(),
        CancellationToken::new(),
    ));
    (r.unwrap(), reporter)
}

fn log(r: &MemoryReporter) -> String {
    r.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Log { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the counter a loop writes to `file` still moves.
fn moving(file: &Path) -> bool {
    let a = std::fs::read_to_string(file).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(600));
    let b = std::fs::read_to_string(file).unwrap_or_default();
    a != b
}

#[test]
fn a_jailed_jobs_background_process_serves_its_later_steps_and_ends_with_the_job() {
    let Some(sandbox) = jail() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().display().to_string();
    let steps = format!(
        r#"      - run: |
          (i=0; while :; do i=$((i+1)); echo $i > "{ws}/beat"; sleep 0.05; done) &
      - run: |
          setsid env -i /bin/sh -c 'i=0; while :; do i=$((i+1)); echo $i > "{ws}/daemon"; sleep 0.05; done' &
          sleep 0.3
      - run: |
          a=$(cat "{ws}/beat"); sleep 0.5; b=$(cat "{ws}/beat")
          test "$a" != "$b" || {{ echo "step 1's background loop is gone"; exit 1; }}
          a=$(cat "{ws}/daemon"); sleep 0.5; b=$(cat "{ws}/daemon")
          test "$a" != "$b" || {{ echo "step 2's daemon is gone"; exit 1; }}
          echo both alive
"#
    );
    let (summary, reporter) = run(dir.path(), sandbox, &steps);
    let log = log(&reporter);
    assert!(summary.success, "{log}");
    assert!(log.contains("both alive"), "{log}");
    // The job is over: its namespace is gone, and everything in it.
    assert!(
        !moving(&dir.path().join("beat")),
        "the background loop outlived its job"
    );
    assert!(
        !moving(&dir.path().join("daemon")),
        "a daemon without RUNNER_TRACKING_ID outlived its job"
    );
    assert!(
        log.contains("Cleaning up orphan processes: terminated"),
        "the job's log says what was ended: {log}"
    );
}

#[test]
fn each_job_has_its_own_namespace() {
    let Some(sandbox) = jail() else { return };
    let dir = tempfile::tempdir().unwrap();
    // In a namespace of its own, the job sees only its own processes: not
    // this test's, nor the agent's.
    let me = std::process::id();
    let steps = format!(
        "      - run: |\n          ls /proc | grep -qx {me} && {{ echo sees the agent; exit 1; }}\n          echo own namespace\n"
    );
    let (summary, reporter) = run(dir.path(), sandbox, &steps);
    let log = log(&reporter);
    assert!(summary.success, "{log}");
    assert!(log.contains("own namespace"), "{log}");
}
