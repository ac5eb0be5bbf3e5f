//! Failure paths of execution, with real processes: failing steps, step and job
//! timeouts, cancellation, `needs` cycles, bad expressions, masking of secrets
//! split across writes.

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

    fn workflow(&self, text: &str) -> Arc<Workflow> {
        Arc::new(Workflow::parse(&self.dir.path().join("w.yml"), text).unwrap())
    }

    fn run(
        &self,
        text: &str,
        secrets: &[(&str, &str)],
        cancel: CancellationToken,
    ) -> (
        Result<hangar_engine::RunSummary, String>,
        Arc<MemoryReporter>,
    ) {
        let wf = self.workflow(text);
        let mut run = RunContext::new(self.dir.path(), "push", None);
        run.data_dir = self.dir.path().join(".data");
        for (k, v) in secrets {
            run.secrets.insert(k.to_string(), v.to_string());
        }
        let reporter = Arc::new(MemoryReporter::default());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(Engine::new().run_workflows(
            Arc::new(run),
            vec![wf],
            RunOptions::default(),
            reporter.clone(),
            cancel,
        ));
        (r, reporter)
    }
}

fn step_results(r: &MemoryReporter) -> Vec<(String, Conclusion)> {
    events_of(r, |e| match e {
        Event::StepFinished {
            name, conclusion, ..
        } => Some((name.clone(), *conclusion)),
        _ => None,
    })
}

/// What `pick` takes from each event the run reported, in order.
fn events_of<T>(r: &MemoryReporter, pick: impl Fn(&Event) -> Option<T>) -> Vec<T> {
    r.events.lock().unwrap().iter().filter_map(pick).collect()
}

/// The step named `name` ended with `conclusion` (the list is printed otherwise).
fn expect_step(steps: &[(String, Conclusion)], name: &str, conclusion: Conclusion) {
    assert!(
        steps.iter().any(|(n, c)| n == name && *c == conclusion),
        "expected step `{name}` to end {conclusion:?}: {steps:?}"
    );
}

fn result_of(s: &hangar_engine::RunSummary, key: &str) -> Conclusion {
    s.jobs
        .iter()
        .find(|j| j.key == key)
        .map(|j| j.result)
        .unwrap_or_else(|| panic!("no job {key}: {:?}", s.jobs))
}

#[test]
fn failing_step_fails_the_job_skips_the_rest_and_dependents() {
    let f = Fixture::new();
    let (r, rep) = f.run(
        "on: push\njobs:\n  a:\n    steps:\n      - {name: bad, run: 'exit 3'}\n      - {name: later, run: 'echo never'}\n      - {name: on-failure, if: failure(), run: 'echo cleanup'}\n  b:\n    needs: a\n    steps: [{run: 'echo b'}]\n  c:\n    needs: a\n    if: always()\n    steps: [{run: 'echo c'}]\n",
        &[],
        CancellationToken::new(),
    );
    let s = r.unwrap();
    assert!(!s.success);
    assert_eq!(result_of(&s, "a"), Conclusion::Failure);
    assert_eq!(result_of(&s, "b"), Conclusion::Skipped);
    assert_eq!(result_of(&s, "c"), Conclusion::Success);
    let steps = step_results(&rep);
    assert!(steps.contains(&("bad".into(), Conclusion::Failure)));
    assert!(steps.contains(&("later".into(), Conclusion::Skipped)));
    assert!(steps.contains(&("on-failure".into(), Conclusion::Success)));
    assert!(rep.lines().contains(&"cleanup".to_string()));
}

#[test]
fn step_timeout_kills_the_step() {
    let f = Fixture::new();
    let t = Instant::now();
    let (r, rep) = f.run(
        "on: push\njobs:\n  a:\n    steps:\n      - {name: slow, run: 'sleep 30', timeout-minutes: 0.01}\n      - {name: after, if: always(), run: 'echo after'}\n",
        &[],
        CancellationToken::new(),
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    let s = r.unwrap();
    assert_eq!(result_of(&s, "a"), Conclusion::Failure);
    assert!(step_results(&rep).contains(&("slow".into(), Conclusion::Failure)));
    assert!(rep.lines().contains(&"after".to_string()));
}

#[test]
fn job_timeout_fails_the_job() {
    let f = Fixture::new();
    let t = Instant::now();
    let (r, _) = f.run(
        "on: push\njobs:\n  a:\n    timeout-minutes: 0.01\n    steps:\n      - run: 'sleep 30'\n",
        &[],
        CancellationToken::new(),
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(result_of(&r.unwrap(), "a"), Conclusion::Failure);
}

#[test]
fn cancel_stops_the_running_step_and_runs_always_steps() {
    let f = Fixture::new();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        c2.cancel();
    });
    let t = Instant::now();
    let (r, rep) = f.run(
        "on: push\njobs:\n  a:\n    steps:\n      - {name: long, run: 'sleep 30'}\n      - {name: normal, run: 'echo normal'}\n      - {name: always, if: always(), run: 'echo always ran'}\n      - {name: when-cancelled, if: cancelled(), run: 'echo saw cancel'}\n",
        &[],
        cancel,
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    let s = r.unwrap();
    assert!(!s.success);
    assert_eq!(result_of(&s, "a"), Conclusion::Cancelled);
    let lines = rep.lines();
    assert!(lines.contains(&"always ran".to_string()), "{lines:?}");
    assert!(lines.contains(&"saw cancel".to_string()), "{lines:?}");
    assert!(!lines.contains(&"normal".to_string()));
}

#[test]
fn needs_cycle_is_a_planning_error() {
    let f = Fixture::new();
    let (r, _) = f.run(
        "on: push\njobs:\n  a: {needs: b, steps: [{run: x}]}\n  b: {needs: a, steps: [{run: x}]}\n",
        &[],
        CancellationToken::new(),
    );
    let e = r.unwrap_err();
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn bad_expression_fails_the_step_with_a_message() {
    let f = Fixture::new();
    let (r, rep) = f.run(
        "on: push\njobs:\n  a:\n    steps:\n      - {name: bad, run: 'echo ${{ github.sha == }}'}\n      - {name: bad-if, if: 'github.sha ==', run: 'echo x'}\n",
        &[],
        CancellationToken::new(),
    );
    assert_eq!(result_of(&r.unwrap(), "a"), Conclusion::Failure);
    let errors: Vec<String> = rep
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Annotation { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        errors.iter().any(|m| m.contains("github.sha ==")),
        "{errors:?}"
    );
    assert!(step_results(&rep).contains(&("bad".into(), Conclusion::Failure)));
}

#[test]
fn a_step_that_fails_before_it_runs_is_annotated_recorded_and_finished() {
    let f = Fixture::new();
    let (r, rep) = f.run(
        "on: push\njobs:\n  a:\n    steps:\n      - {id: e, name: bad-env, env: {X: '${{ fromJSON(1, 2) }}'}, run: 'echo never-env'}\n      - {id: t, name: bad-timeout, if: always(), timeout-minutes: '${{ github.sha == }}', run: 'echo never-timeout'}\n      - {name: report, if: always(), run: 'echo \"e=${{ steps.e.outcome }} t=${{ steps.t.conclusion }}\"'}\n",
        &[],
        CancellationToken::new(),
    );
    assert_eq!(result_of(&r.unwrap(), "a"), Conclusion::Failure);
    let steps = step_results(&rep);
    expect_step(&steps, "bad-env", Conclusion::Failure);
    expect_step(&steps, "bad-timeout", Conclusion::Failure);
    let lines = rep.lines();
    assert!(
        lines.contains(&"e=failure t=failure".to_string()),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("never")), "{lines:?}");
    let annotated = rep
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Annotation {
                    step: Some(0 | 1),
                    ..
                }
            )
        })
        .count();
    assert_eq!(annotated, 2);
}

#[test]
fn secrets_are_masked_even_split_across_writes() {
    let f = Fixture::new();
    let (r, rep) = f.run(
        "on: push\njobs:\n  a:\n    steps:\n      - run: |\n          printf 'value=top-'; sleep 0.2; printf 'secret\\n'\n          echo \"multi: line-one and line-two\"\n          echo '::add-mask::dynamic123'\n          echo \"later dynamic123\"\n          echo '::error title=top-secret::top-secret in an annotation'\n",
        &[("S", "top-secret"), ("M", "line-one\nline-two")],
        CancellationToken::new(),
    );
    assert!(r.unwrap().success);
    let all = format!("{:?}", rep.events.lock().unwrap());
    assert!(!all.contains("top-secret"), "{all}");
    assert!(
        !all.contains("line-one") && !all.contains("line-two"),
        "{all}"
    );
    assert!(!all.contains("dynamic123"), "{all}");
    let lines = rep.lines();
    assert!(lines.contains(&"value=***".to_string()), "{lines:?}");
    assert!(
        lines.contains(&"multi: *** and ***".to_string()),
        "{lines:?}"
    );
}

#[test]
fn container_jobs_fail_with_a_clear_error() {
    let f = Fixture::new();
    let (r, rep) = f.run(
        "on: push\njobs:\n  box:\n    container: alpine\n    steps: [{run: 'echo hi'}]\n",
        &[],
        CancellationToken::new(),
    );
    assert_eq!(result_of(&r.unwrap(), "box"), Conclusion::Failure);
    let all = format!("{:?}", rep.events.lock().unwrap());
    assert!(all.contains("job 'box' uses `container:`"), "{all}");
}

#[test]
fn env_files_outputs_and_shells() {
    let f = Fixture::new();
    let (r, rep) = f.run(
        r##"on: push
env: {LEVEL: workflow, W: w}
jobs:
  a:
    env: {LEVEL: job}
    outputs:
      out: ${{ steps.one.outputs.x }}
    steps:
      - id: one
        run: |
          echo "x=1" >> "$GITHUB_OUTPUT"
          echo "FROM_FILE<<EOF" >> "$GITHUB_ENV"
          echo "a=b" >> "$GITHUB_ENV"
          echo "EOF" >> "$GITHUB_ENV"
          mkdir -p "$RUNNER_TEMP/bin" && printf '#!/bin/sh\necho tool-ran\n' > "$RUNNER_TEMP/bin/mytool" && chmod +x "$RUNNER_TEMP/bin/mytool"
          echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
          echo "# Summary" >> "$GITHUB_STEP_SUMMARY"
      - env: {LEVEL: step}
        shell: bash
        run: |
          echo "level=$LEVEL w=$W file=$FROM_FILE ci=$CI ws=${GITHUB_WORKSPACE:+set}"
          mytool
          set -o | grep pipefail
      - shell: sh
        run: echo "sh ${{ env.LEVEL }} ${{ steps.one.outputs.x }}"
      - shell: python
        run: import os; print("python", os.environ["LEVEL"])
  b:
    needs: a
    steps:
      - run: echo "got ${{ needs.a.outputs.out }} ${{ needs.a.result }}"
"##,
        &[],
        CancellationToken::new(),
    );
    assert!(r.unwrap().success, "{:?}", rep.lines());
    let lines = rep.lines();
    assert!(
        lines.contains(&"level=step w=w file=a=b ci=true ws=set".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"tool-ran".to_string()), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pipefail") && l.ends_with("on")),
        "{lines:?}"
    );
    assert!(lines.contains(&"sh job 1".to_string()), "{lines:?}");
    assert!(lines.contains(&"python job".to_string()), "{lines:?}");
    assert!(lines.contains(&"got 1 success".to_string()), "{lines:?}");
}

#[test]
fn matrix_fail_fast_cancels_the_other_legs() {
    let f = Fixture::new();
    let t = Instant::now();
    let (r, _) = f.run(
        "on: push\njobs:\n  m:\n    strategy:\n      matrix:\n        n: [1, 2]\n    steps:\n      - run: 'if [ ${{ matrix.n }} = 1 ]; then exit 1; else sleep 30; fi'\n",
        &[],
        CancellationToken::new(),
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    let s = r.unwrap();
    assert_eq!(result_of(&s, "m (1)"), Conclusion::Failure);
    assert_eq!(result_of(&s, "m (2)"), Conclusion::Cancelled);
}

fn job_names(r: &MemoryReporter) -> Vec<(String, String)> {
    events_of(r, |e| match e {
        Event::JobStarted { job, name, .. } => Some((job.clone(), name.clone())),
        _ => None,
    })
}

/// Legs are named by their product values (an include's extra values are
/// not), `name:` with an expression is evaluated per leg, a leg whose
/// `continue-on-error` is true neither fails the job nor triggers fail-fast,
/// and `success()` looks at every ancestor: a job after an `always()` job
/// whose own need failed is skipped, while `failure()` there is true.
#[test]
fn matrix_legs_continue_on_error_and_ancestor_status() {
    let f = Fixture::new();
    let (r, rep) = f.run(
        "on: push\njobs:\n  legs:\n    continue-on-error: ${{ matrix.exp }}\n    strategy:\n      matrix:\n        n: [1, 2]\n        exp: [false]\n        include:\n          - {n: 1, note: extra}\n          - {n: 3, exp: true}\n    steps:\n      - run: if [ ${{ matrix.n }} = 3 ]; then exit 1; fi; echo leg ${{ matrix.n }} ${{ matrix.note }}\n  named:\n    name: N ${{ matrix.v }}-${{ strategy.job-index }}-${{ github.ref_type }}\n    strategy: {matrix: {v: [x]}}\n    steps: [{run: echo}]\n  literal:\n    name: Lit\n    strategy: {matrix: {v: [y]}}\n    steps: [{run: echo}]\n  after:\n    needs: legs\n    steps: [{run: 'echo after ${{ needs.legs.result }}'}]\n  a:\n    steps: [{run: exit 1}]\n  b:\n    needs: a\n    if: always()\n    steps: [{run: echo b}]\n  c:\n    needs: b\n    steps: [{run: echo c}]\n  d:\n    needs: b\n    if: failure()\n    steps: [{run: echo d}]\n",
        &[],
        CancellationToken::new(),
    );
    let s = r.unwrap();
    assert_eq!(result_of(&s, "legs (3, true)"), Conclusion::Failure);
    assert_eq!(result_of(&s, "legs (1, false)"), Conclusion::Success);
    assert_eq!(result_of(&s, "legs (2, false)"), Conclusion::Success);
    assert_eq!(result_of(&s, "after"), Conclusion::Success);
    assert_eq!(result_of(&s, "b"), Conclusion::Success);
    assert_eq!(result_of(&s, "c"), Conclusion::Skipped);
    assert_eq!(result_of(&s, "d"), Conclusion::Success);
    let lines = rep.lines();
    assert!(lines.contains(&"leg 1 extra".to_string()), "{lines:?}");
    assert!(lines.contains(&"leg 2".to_string()), "{lines:?}");
    assert!(lines.contains(&"after success".to_string()), "{lines:?}");
    let names = job_names(&rep);
    assert!(
        names.contains(&("named (x)".into(), "N x-0-branch".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&("literal (y)".into(), "Lit (y)".into())),
        "{names:?}"
    );
}

/// Numbers a user writes never panic the engine: a huge `timeout-minutes`
/// (GitHub's parser takes even infinities; values show as its expressions
/// format them) is capped at the five days a job
/// may run and said so, zero or negative ones are ignored with a warning, and
/// one that is not a number fails its job or step where it is written.
#[test]
fn hostile_timeouts_are_capped_ignored_or_errors_never_panics() {
    let f = Fixture::new();
    let (r, rep) = f.run(
        "on: push\njobs:\n  huge:\n    timeout-minutes: 1e18\n    steps:\n      - {name: s1, run: 'echo ok', timeout-minutes: 1e300}\n      - {name: s2, run: 'echo ok', timeout-minutes: -3}\n  words:\n    timeout-minutes: ${{ 'soon' }}\n    steps:\n      - run: echo never\n  step-words:\n    steps:\n      - {name: bad, run: 'echo never', timeout-minutes: \"${{ 'later' }}\"}\n",
        &[],
        CancellationToken::new(),
    );
    let s = r.unwrap();
    assert_eq!(result_of(&s, "huge"), Conclusion::Success);
    assert_eq!(result_of(&s, "words"), Conclusion::Failure);
    assert_eq!(result_of(&s, "step-words"), Conclusion::Failure);
    let steps = step_results(&rep);
    expect_step(&steps, "s1", Conclusion::Success);
    expect_step(&steps, "s2", Conclusion::Success);
    expect_step(&steps, "bad", Conclusion::Failure);
    assert!(!rep.lines().contains(&"never".to_string()));
    let notes = annotations(&rep);
    let has = |needle: &str| notes.iter().any(|n| n.contains(needle));
    assert!(
        has("timeout-minutes `1E+18` is above the 7200 minutes"),
        "{notes:?}"
    );
    assert!(has("timeout-minutes `1E+300` is above"), "{notes:?}");
    assert!(
        has("timeout-minutes `-3` is not more than 0 minutes"),
        "{notes:?}"
    );
    assert!(has("must be a number of minutes, not `soon`"), "{notes:?}");
    assert!(has("must be a number of minutes, not `later`"), "{notes:?}");
}

fn annotations(r: &MemoryReporter) -> Vec<String> {
    events_of(r, |e| match e {
        Event::Annotation { message, .. } => Some(message.clone()),
        _ => None,
    })
}

/// Workflow commands as the runner processes them: `echo` shows the
/// commands that follow, `add-mask` hides the value and an empty one is
/// warned about, a long `stop-commands` token is masked and the lines in
/// between are inert, a refused token, a disabled `set-env` or an unclosed
/// heredoc fail the step with GitHub's words, and `NODE_OPTIONS` from
/// `GITHUB_ENV` is refused without failing it.
#[test]
fn workflow_commands_follow_the_runner() {
    let f = Fixture::new();
    let (r, rep) = f.run(
        "on: push\njobs:\n  a:\n    steps:\n      - name: one\n        run: |\n          echo '::echo::on'\n          echo '::set-output name=o::1'\n          echo '::add-mask::sec ret'\n          echo 'sec ret is hidden'\n          echo '::echo::off'\n          echo '::stop-commands::longtoken1'\n          echo '::warning::inert'\n          echo '::longtoken1::'\n          echo '::add-mask::  '\n          echo 'NODE_OPTIONS=--x' >> $GITHUB_ENV\n          echo 'KEPT=yes' >> $GITHUB_ENV\n      - name: two\n        run: echo \"$KEPT/$NODE_OPTIONS/\"\n      - name: three\n        run: echo '::stop-commands::warning'\n      - name: four\n        if: always()\n        run: echo '::set-env name=X::y'\n      - name: five\n        if: always()\n        run: printf 'A<<EOF\\nvalue\\n' >> $GITHUB_OUTPUT\n",
        &[],
        CancellationToken::new(),
    );
    assert_eq!(result_of(&r.unwrap(), "a"), Conclusion::Failure);
    let lines = rep.lines();
    for expected in [
        "::set-output name=o::1",
        "::add-mask::***",
        "*** is hidden",
        "::echo::off",
        "::stop-commands::***",
        "::warning::inert",
        "::***::",
        "yes//",
    ] {
        assert!(
            lines.contains(&expected.to_string()),
            "{expected}: {lines:?}"
        );
    }
    assert!(!lines.iter().any(|l| l.contains("echo::on")), "{lines:?}");
    let notes = annotations(&rep);
    let has = |s: &str| notes.iter().any(|n| n.contains(s));
    assert!(!has("inert"), "{notes:?}");
    assert!(has(
        "Can't add secret mask for empty string in ##[add-mask] command."
    ));
    assert!(has(
        "Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command."
    ));
    assert!(has(
        "Unable to process command '::stop-commands::warning' successfully."
    ));
    assert!(has(
        "Unable to process command '::set-env name=X::y' successfully."
    ));
    assert!(has("The `set-env` command is disabled."));
    assert!(has("Unable to process file command 'output' successfully."));
    let steps = step_results(&rep);
    expect_step(&steps, "one", Conclusion::Success);
    expect_step(&steps, "three", Conclusion::Failure);
    expect_step(&steps, "four", Conclusion::Failure);
    expect_step(&steps, "five", Conclusion::Failure);
}

#[test]
fn dry_run_plans_jobs_whose_if_or_matrix_read_needs_outputs() {
    let f = Fixture::new();
    let wf = f.workflow(
        "on: push\njobs:\n  gen:\n    outputs:\n      m: ${{ steps.s.outputs.m }}\n    steps:\n      - id: s\n        run: echo 'm=[\"a\"]' >> $GITHUB_OUTPUT\n  use:\n    needs: gen\n    if: ${{ fromJSON(needs.gen.outputs.m)[0] == 'a' }}\n    strategy:\n      matrix:\n        x: ${{ fromJSON(needs.gen.outputs.m) }}\n    steps:\n      - run: echo ${{ matrix.x }}\n",
    );
    let mut run = RunContext::new(f.dir.path(), "push", None);
    run.data_dir = f.dir.path().join(".data");
    let reporter = Arc::new(MemoryReporter::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opts = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let s = rt
        .block_on(Engine::new().run_workflows(
            Arc::new(run),
            vec![wf],
            opts,
            reporter.clone(),
            CancellationToken::new(),
        ))
        .unwrap();
    assert!(s.success, "{:?}", annotations(&reporter));
    assert_eq!(result_of(&s, "use"), Conclusion::Success);
    let notes = annotations(&reporter);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("dry run: `if:") && n.contains("unknown until they run")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("dry run: the matrix")),
        "{notes:?}"
    );
}
