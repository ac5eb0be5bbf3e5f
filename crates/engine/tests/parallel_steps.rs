//! GitHub's parallel steps (`background`, `wait`, `wait-all`, `cancel`,
//! `parallel:` groups) run by the engine with real processes. Overlap is
//! proven from the start and end times the engine records for each step,
//! not from wall-clock thresholds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_engine::report::MemoryReporter;
use hangar_engine::{
    CancellationToken, Conclusion, Engine, Event, RunContext, RunOptions, Workflow,
};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs a one-job workflow made of `steps` (YAML lines under `steps:`).
    fn run(&self, steps: &str) -> (hangar_engine::RunSummary, Arc<MemoryReporter>) {
        self.run_with(Engine::new(), steps)
    }

    fn run_with(
        &self,
        engine: Engine,
        steps: &str,
    ) -> (hangar_engine::RunSummary, Arc<MemoryReporter>) {
        let text = format!("on: push\njobs:\n  a:\n    steps:\n{steps}");
        let wf = Arc::new(Workflow::parse(&self.dir.path().join("w.yml"), &text).unwrap());
        let mut run = RunContext::new(self.dir.path(), "push", None);
        run.data_dir = self.dir.path().join(".data");
        let reporter = Arc::new(MemoryReporter::default());
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

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

/// Each step's recorded (start, end) in milliseconds, by name.
fn times(r: &MemoryReporter) -> HashMap<String, (u64, u64)> {
    let events = r.events.lock().unwrap();
    let mut names = HashMap::new();
    let mut out = HashMap::new();
    for e in events.iter() {
        match e {
            Event::StepStarted { step, name, ts, .. } => {
                names.insert(*step, (name.clone(), *ts));
            }
            Event::StepFinished { step, ts, .. } => {
                let (name, start) = names[step].clone();
                out.insert(name, (start, *ts));
            }
            _ => {}
        }
    }
    out
}

fn conclusions(r: &MemoryReporter) -> HashMap<String, (Conclusion, Conclusion)> {
    r.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::StepFinished {
                name,
                outcome,
                conclusion,
                ..
            } => Some((name.clone(), (*outcome, *conclusion))),
            _ => None,
        })
        .collect()
}

/// Log lines of the step named `name`.
fn log_of(r: &MemoryReporter, name: &str) -> Vec<String> {
    let events = r.events.lock().unwrap();
    let number = events.iter().find_map(|e| match e {
        Event::StepStarted { step, name: n, .. } if n == name => Some(*step),
        _ => None,
    });
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { step, line, .. } if *step == number => Some(line.clone()),
            _ => None,
        })
        .collect()
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn background_steps_overlap_and_wait_all_waits_for_them() {
    let f = Fixture::new();
    let (s, rep) = f.run(concat!(
        "      - {name: one, id: one, run: 'sleep 1; echo one done', background: true}\n",
        "      - {name: two, id: two, run: 'sleep 1; echo two done', background: true}\n",
        "      - {name: between, run: 'echo between'}\n",
        "      - {name: all, wait-all: }\n",
        "      - {name: after, run: 'echo after'}\n",
    ));
    assert!(s.success, "{:?}", conclusions(&rep));
    let t = times(&rep);
    let (one, two, between, all, after) = (t["one"], t["two"], t["between"], t["all"], t["after"]);
    // Both sleeps ran at the same time, and the step after them did not wait.
    assert!(overlap(one, two), "{t:?}");
    assert!(overlap(one, between) && overlap(two, between), "{t:?}");
    // Each step's own record says it slept; the wait ended after both.
    assert!(one.1 - one.0 >= 1000 && two.1 - two.0 >= 1000, "{t:?}");
    assert!(
        all.1 >= one.1 && all.1 >= two.1 && after.0 >= all.1,
        "{t:?}"
    );
    // Two one-second steps in less than two seconds of job time.
    assert!(after.1 - one.0 < 1800, "{t:?}");
    // A separate log per step.
    assert_eq!(log_of(&rep, "one"), ["one done"]);
    assert_eq!(log_of(&rep, "two"), ["two done"]);
    assert_eq!(log_of(&rep, "between"), ["between"]);
}

#[test]
fn outputs_and_env_of_a_background_step_are_seen_after_its_wait() {
    let f = Fixture::new();
    let (s, rep) = f.run(concat!(
        "      - name: producer\n",
        "        id: p\n",
        "        background: true\n",
        "        run: |\n",
        "          sleep 0.5\n",
        "          echo 'x=42' >> \"$GITHUB_OUTPUT\"\n",
        "          echo 'FROM_BG=yes' >> \"$GITHUB_ENV\"\n",
        "      - {name: early, run: 'echo \"early=${{ steps.p.outputs.x }} ${FROM_BG:-unset}\"'}\n",
        "      - wait: p\n",
        "      - {name: late, run: 'echo \"late=${{ steps.p.outputs.x }} ${{ steps.p.outcome }} $FROM_BG\"'}\n",
    ));
    assert!(s.success, "{:?}", conclusions(&rep));
    assert_eq!(log_of(&rep, "early"), ["early= unset"]);
    assert_eq!(log_of(&rep, "late"), ["late=42 success yes"]);
    // The wait step is reported as a step of its own.
    assert!(conclusions(&rep).contains_key("Wait for p"));
}

#[test]
fn a_parallel_group_runs_its_steps_together_and_ends_when_all_have() {
    let f = Fixture::new();
    let (s, rep) = f.run(concat!(
        "      - parallel:\n",
        "          - {name: left, id: l, run: 'sleep 1; echo \"v=L\" >> $GITHUB_OUTPUT'}\n",
        "          - {name: right, id: r, run: 'sleep 1; echo \"v=R\" >> $GITHUB_OUTPUT'}\n",
        "      - {name: after, run: 'echo ${{ steps.l.outputs.v }}${{ steps.r.outputs.v }}'}\n",
    ));
    assert!(s.success, "{:?}", conclusions(&rep));
    let t = times(&rep);
    assert!(overlap(t["left"], t["right"]), "{t:?}");
    assert!(
        t["after"].0 >= t["left"].1 && t["after"].0 >= t["right"].1,
        "{t:?}"
    );
    assert_eq!(log_of(&rep, "after"), ["LR"]);
}

#[test]
fn cancel_interrupts_a_background_step_and_its_process_is_gone() {
    let f = Fixture::new();
    let pid_file = f.path("server.pid");
    let signal_file = f.path("signal");
    let started = Instant::now();
    let (s, rep) = f.run(&format!(
        concat!(
            "      - name: server\n",
            "        id: server\n",
            "        background: true\n",
            "        run: |\n",
            "          trap 'echo INT > {sig}; exit 130' INT\n",
            "          echo $$ > {pid}\n",
            "          while true; do sleep 0.1; done\n",
            "      - {{name: use, run: 'while [ ! -s {pid} ]; do sleep 0.05; done; echo ready'}}\n",
            "      - {{name: stop, cancel: server}}\n",
            "      - {{name: after, run: 'echo after ${{{{ steps.server.outcome }}}}'}}\n",
        ),
        pid = pid_file.display(),
        sig = signal_file.display(),
    ));
    // Stopping a service is what `cancel` is for: the job succeeds.
    assert!(s.success, "{:?}", conclusions(&rep));
    let c = conclusions(&rep);
    assert_eq!(c["server"], (Conclusion::Cancelled, Conclusion::Cancelled));
    assert_eq!(log_of(&rep, "after"), ["after cancelled"]);
    // SIGINT came first (the trap ran), and the process no longer exists.
    assert_eq!(std::fs::read_to_string(&signal_file).unwrap().trim(), "INT");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = std::path::Path::new("/proc").join(pid.trim());
    assert!(!proc_dir.exists(), "process {pid} still exists");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn cancel_escalates_when_sigint_is_ignored() {
    let f = Fixture::new();
    let pid_file = f.path("stubborn.pid");
    let (s, rep) = f.run(&format!(
        concat!(
            "      - name: stubborn\n",
            "        id: stubborn\n",
            "        background: true\n",
            "        run: |\n",
            "          trap '' INT\n",
            "          echo $$ > {pid}\n",
            "          while true; do sleep 0.1; done\n",
            "      - {{run: 'while [ ! -s {pid} ]; do sleep 0.05; done'}}\n",
            "      - cancel: stubborn\n",
        ),
        pid = pid_file.display(),
    ));
    assert!(s.success, "{:?}", conclusions(&rep));
    let t = times(&rep);
    // It outlived SIGINT by the grace period before SIGTERM ended it.
    let (start, end) = t["Cancel stubborn"];
    assert!(end - start >= 2000, "{t:?}");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(!std::path::Path::new("/proc").join(pid.trim()).exists());
}

#[test]
fn a_failed_background_step_fails_the_job_once_waited_for() {
    let f = Fixture::new();
    let (s, rep) = f.run(concat!(
        "      - {name: bad, id: bad, run: 'sleep 0.3; exit 3', background: true}\n",
        "      - {name: meanwhile, run: 'sleep 0.6; echo meanwhile'}\n",
        "      - wait: [bad]\n",
        "      - {name: skipped, run: 'echo never'}\n",
        "      - {name: cleanup, if: failure(), run: 'echo cleanup'}\n",
    ));
    assert!(!s.success);
    let c = conclusions(&rep);
    assert_eq!(c["bad"].1, Conclusion::Failure);
    // The step running beside it was not affected; those after the wait were.
    assert_eq!(c["meanwhile"].1, Conclusion::Success);
    assert_eq!(c["skipped"].1, Conclusion::Skipped);
    assert_eq!(c["cleanup"].1, Conclusion::Success);
    // The failure is annotated on the background step itself.
    let bad = rep.events.lock().unwrap().iter().any(|e| {
        matches!(e, Event::Annotation { step: Some(_), message, .. } if message == "Process completed with exit code 3.")
    });
    assert!(bad);
}

#[test]
fn the_job_waits_for_background_steps_nobody_waited_for() {
    let f = Fixture::new();
    let marker = f.path("late-marker");
    let (s, rep) = f.run(&format!(
        concat!(
            "      - {{name: slow, run: 'sleep 0.5; echo done > {m}; exit 1', background: true}}\n",
            "      - {{name: quick, run: 'echo quick'}}\n",
            "      - {{name: tolerated, run: 'exit 1', background: true, continue-on-error: true}}\n",
        ),
        m = marker.display(),
    ));
    // The job ended after the step (the marker is written), and failed with it.
    assert!(marker.exists());
    assert!(!s.success);
    let c = conclusions(&rep);
    assert_eq!(c["slow"].1, Conclusion::Failure);
    assert_eq!(c["quick"].1, Conclusion::Success);
    assert_eq!(c["tolerated"], (Conclusion::Failure, Conclusion::Success));
}

#[test]
fn an_expression_decides_background_when_the_step_starts() {
    let f = Fixture::new();
    // `env.PAR` is set per step: the same expression says yes, then no.
    let (s, rep) = f.run(concat!(
        "      - {name: bg1, id: bg1, run: 'sleep 0.6', env: {PAR: '1'}, background: \"${{ env.PAR == '1' }}\"}\n",
        "      - {name: bg2, id: bg2, run: 'sleep 0.6', env: {PAR: '1'}, background: \"${{ env.PAR == '1' }}\"}\n",
        "      - wait-all:\n",
        "      - {name: fg1, run: 'sleep 0.6', env: {PAR: '0'}, background: \"${{ env.PAR == '1' }}\"}\n",
        "      - {name: fg2, run: 'sleep 0.6', env: {PAR: '0'}, background: \"${{ env.PAR == '1' }}\"}\n",
    ));
    assert!(s.success, "{:?}", conclusions(&rep));
    let t = times(&rep);
    assert!(
        overlap(t["bg1"], t["bg2"]),
        "true runs in the background: {t:?}"
    );
    assert!(
        !overlap(t["fg1"], t["fg2"]) && t["fg2"].0 >= t["fg1"].1,
        "false runs in order: {t:?}"
    );
}

#[test]
fn a_background_expression_that_is_not_a_boolean_fails_the_step() {
    let f = Fixture::new();
    let (s, rep) = f.run(concat!(
        "      - {name: odd, run: 'echo ran', background: \"${{ 'sometimes' }}\"}\n",
        "      - {name: after, run: 'echo after'}\n",
    ));
    assert!(!s.success);
    let c = conclusions(&rep);
    assert_eq!(c["odd"].1, Conclusion::Failure);
    assert_eq!(c["after"].1, Conclusion::Skipped);
    assert!(log_of(&rep, "odd").is_empty(), "the step did not run");
    let said = rep.events.lock().unwrap().iter().any(|e| {
        matches!(e, Event::Annotation { message, .. } if message.contains("`background` must evaluate to true or false, not `sometimes`"))
    });
    assert!(said);
}

/// A local JavaScript action whose main sleeps, then sets an output, an env
/// variable and its state; its post prints the state it finds.
fn js_action(f: &Fixture) {
    let dir = f.path("sleepy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("action.yml"),
        "name: sleepy\ninputs:\n  tag: {required: true}\noutputs:\n  said: {description: x}\nruns:\n  using: node20\n  main: main.js\n  post: post.js\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("main.js"),
        r#"const fs = require("fs");
const tag = process.env.INPUT_TAG;
setTimeout(() => {
  fs.appendFileSync(process.env.GITHUB_OUTPUT, `said=hello ${tag}\n`);
  fs.appendFileSync(process.env.GITHUB_ENV, `FROM_${tag}=yes\n`);
  fs.appendFileSync(process.env.GITHUB_STATE, `tag=${tag}\n`);
  console.log(`main ${tag} done`);
}, 800);
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("post.js"),
        "console.log(`post sees ${process.env.STATE_tag}`);\n",
    )
    .unwrap();
}

fn have_node() -> bool {
    hangar_engine::shell::which("node", None).is_some()
}

#[test]
fn a_javascript_action_runs_in_the_background_like_a_run_step() {
    if !have_node() {
        eprintln!("!!! skipping: node is not installed");
        return;
    }
    let f = Fixture::new();
    js_action(&f);
    let (s, rep) = f.run(concat!(
        "      - {name: a, id: a, uses: ./sleepy, with: {tag: A}, background: true}\n",
        "      - {name: b, id: b, uses: ./sleepy, with: {tag: B}, background: true}\n",
        "      - {name: early, run: 'echo \"early=${{ steps.a.outputs.said }} ${FROM_A:-unset}\"'}\n",
        "      - wait: [a, b]\n",
        "      - {name: late, run: 'echo \"${{ steps.a.outputs.said }}/${{ steps.b.outputs.said }} $FROM_A $FROM_B\"'}\n",
    ));
    assert!(s.success, "{:?}", conclusions(&rep));
    let t = times(&rep);
    assert!(overlap(t["a"], t["b"]), "{t:?}");
    assert!(
        t["a"].1 - t["a"].0 >= 800,
        "its record covers its process: {t:?}"
    );
    // Seen only after the wait, each from its own files.
    assert_eq!(log_of(&rep, "early"), ["early= unset"]);
    assert_eq!(log_of(&rep, "late"), ["hello A/hello B yes yes"]);
    assert_eq!(log_of(&rep, "a"), ["main A done"]);
    // Each post step reads the state its own main saved.
    assert_eq!(log_of(&rep, "Post a"), ["post sees A"]);
    assert_eq!(log_of(&rep, "Post b"), ["post sees B"]);
    // No "runs in order" warning any more.
    let warned = rep.events.lock().unwrap().iter().any(
        |e| matches!(e, Event::Annotation { message, .. } if message.contains("in the background")),
    );
    assert!(!warned);
}

/// Waits (in the shell) for a marker file of the workspace for up to 20 s.
const AWAIT: &str = "for i in $(seq 400); do [ -e \"$GITHUB_WORKSPACE/$1\" ] && break; sleep 0.05; done; [ -e \"$GITHUB_WORKSPACE/$1\" ]";

/// A composite action marked `background: true` runs beside the steps after
/// it: its first step waits for a marker file that only the next step of
/// the job writes, after seeing the composite's own marker, so neither can
/// finish unless both run at once. Its env and outputs are seen after its
/// `wait`, not before, as for a `run:` step.
#[test]
fn a_composite_action_marked_background_runs_beside_the_next_steps() {
    let f = Fixture::new();
    let dir = f.path("comp");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("action.yml"),
        format!(
            concat!(
                "name: comp\noutputs:\n  said: {{value: '${{{{ steps.s.outputs.said }}}}'}}\n",
                "runs:\n  using: composite\n  steps:\n",
                "    - name: comp-meets\n      shell: bash\n      run: |\n",
                "        touch \"$GITHUB_WORKSPACE/comp-started\"\n",
                "        set -- next-ran; if {await}; then echo comp saw next; else echo comp ran alone; exit 1; fi\n",
                "    - name: comp-sets\n      id: s\n      shell: bash\n      run: |\n",
                "        echo COMP_ENV=from-comp >> \"$GITHUB_ENV\"\n",
                "        echo said=42 >> \"$GITHUB_OUTPUT\"\n",
            ),
            await = AWAIT
        ),
    )
    .unwrap();
    let (s, rep) = f.run(&format!(
        concat!(
            "      - {{name: c, id: c, uses: ./comp, background: true}}\n",
            "      - name: next\n        run: |\n",
            "          set -- comp-started; {await}\n",
            "          touch \"$GITHUB_WORKSPACE/next-ran\"\n",
            "          echo \"early ${{COMP_ENV:-unset}} [${{{{ steps.c.outputs.said }}}}]\"\n",
            "      - wait: c\n",
            "      - {{name: late, run: 'echo \"late $COMP_ENV [${{{{ steps.c.outputs.said }}}}]\"'}}\n",
        ),
        await = AWAIT
    ));
    assert!(
        s.success,
        "{:?} {:?}",
        conclusions(&rep),
        rep.events.lock().unwrap()
    );
    assert_eq!(log_of(&rep, "comp-meets"), ["comp saw next"]);
    assert_eq!(log_of(&rep, "next"), ["early unset []"]);
    assert_eq!(
        log_of(&rep, "late"),
        ["late from-comp [42]"],
        "{:?}",
        rep.events.lock().unwrap()
    );
    let c = conclusions(&rep);
    assert_eq!(c["c"], (Conclusion::Success, Conclusion::Success));
    // Every step has a number of its own, the composite's inner steps too.
    let events = rep.events.lock().unwrap();
    let mut numbers: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    let n = numbers.len();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), n, "step numbers repeat");
    // No "runs in order" warning any more.
    assert!(!events.iter().any(
        |e| matches!(e, Event::Annotation { message, .. } if message.contains("ran before the next step"))
    ));
}

/// `cancel:` stops a background composite's running step (SIGINT first) and
/// skips the steps it had not reached; the job goes on and succeeds.
#[test]
fn cancel_stops_a_background_composite() {
    let f = Fixture::new();
    let dir = f.path("svc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("action.yml"),
        concat!(
            "name: svc\nruns:\n  using: composite\n  steps:\n",
            "    - name: serve\n      shell: bash\n      run: |\n",
            "        trap 'echo INT > \"$GITHUB_WORKSPACE/signal\"; exit 130' INT\n",
            "        echo $$ > \"$GITHUB_WORKSPACE/svc.pid\"\n",
            "        while true; do sleep 0.1; done\n",
            "    - {name: never, shell: bash, run: 'touch \"$GITHUB_WORKSPACE/never\"'}\n",
        ),
    )
    .unwrap();
    let (s, rep) = f.run(concat!(
        "      - {name: svc, id: svc, uses: ./svc, background: true}\n",
        "      - {name: use, run: 'while [ ! -s svc.pid ]; do sleep 0.05; done; echo ready'}\n",
        "      - {name: stop, cancel: svc}\n",
        "      - {name: after, run: 'echo after ${{ steps.svc.outcome }}'}\n",
    ));
    assert!(s.success, "{:?}", conclusions(&rep));
    let c = conclusions(&rep);
    assert_eq!(c["svc"], (Conclusion::Cancelled, Conclusion::Cancelled));
    assert_eq!(log_of(&rep, "after"), ["after cancelled"]);
    assert_eq!(
        std::fs::read_to_string(f.path("signal")).unwrap().trim(),
        "INT"
    );
    let pid = std::fs::read_to_string(f.path("svc.pid")).unwrap();
    assert!(!std::path::Path::new("/proc").join(pid.trim()).exists());
    assert!(!f.path("never").exists(), "the composite's next step ran");
}

/// A built-in action that meets the step after it: it writes a marker file
/// and waits for the one the next step writes after seeing it.
struct Rendezvous;

impl hangar_engine::BuiltinAction for Rendezvous {
    fn name(&self) -> &str {
        "hangar/rendezvous"
    }

    fn run(&self, call: &hangar_engine::ActionCall) -> hangar_engine::ActionResult {
        std::fs::write(call.workspace.join("builtin-started"), "").unwrap();
        let start = Instant::now();
        while !call.workspace.join("next-ran").exists() && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let saw = call.workspace.join("next-ran").exists();
        call.output.line(&format!("builtin saw next: {saw}"));
        let mut r = hangar_engine::ActionResult::ok();
        r.outputs.insert("saw".into(), saw.to_string());
        r.success = saw;
        r
    }
}

/// A built-in `uses: hangar/...` step marked `background: true` runs beside
/// the next step (they meet through marker files), and its outputs are seen
/// after `wait-all`.
#[test]
fn a_builtin_action_marked_background_runs_beside_the_next_steps() {
    let f = Fixture::new();
    let mut engine = Engine::new();
    engine.register(Arc::new(Rendezvous));
    let (s, rep) = f.run_with(
        engine,
        &format!(
            concat!(
                "      - {{name: b, id: b, uses: hangar/rendezvous@v1, background: true}}\n",
                "      - name: next\n        run: |\n",
                "          set -- builtin-started; {await}\n",
                "          touch next-ran\n",
                "          echo \"early [${{{{ steps.b.outputs.saw }}}}]\"\n",
                "      - wait-all:\n",
                "      - {{name: late, run: 'echo \"late [${{{{ steps.b.outputs.saw }}}}]\"'}}\n",
            ),
            await = AWAIT
        ),
    );
    assert!(s.success, "{:?}", conclusions(&rep));
    assert_eq!(log_of(&rep, "b"), ["builtin saw next: true"]);
    assert_eq!(log_of(&rep, "next"), ["early []"]);
    assert_eq!(log_of(&rep, "late"), ["late [true]"]);
}
