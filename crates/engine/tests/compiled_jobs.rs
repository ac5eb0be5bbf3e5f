//! A job compiled alone, as an agent of `hangar serve` receives it, run by
//! the engine with real processes.

use std::sync::Arc;

use hangar_engine::report::MemoryReporter;
use hangar_engine::{
    CancellationToken, CompiledJob, Conclusion, Engine, Event, RunContext, Workflow,
};

/// A job that calls a reusable workflow has no steps of its own: compiled
/// alone (as no scheduler ever hands it to the engine) it fails
/// at its `uses:` line, never passes with nothing run.
#[test]
fn a_job_calling_a_reusable_workflow_fails_at_its_uses_line_when_compiled_alone() {
    let dir = tempfile::tempdir().unwrap();
    let text = "on: push\njobs:\n  call:\n    uses: ./.github/workflows/reusable.yml\n    with:\n      x: 1\n";
    let wf = Workflow::parse(&dir.path().join(".github/workflows/ci.yml"), text).unwrap();
    let job = CompiledJob::compile(&wf, "call").unwrap();
    let mut run = RunContext::new(dir.path(), "push", None);
    run.data_dir = dir.path().join(".data");
    let reporter = Arc::new(MemoryReporter::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(Engine::new().run_job(
        Arc::new(run),
        job,
        reporter.clone(),
        CancellationToken::new(),
    ));
    assert_eq!(outcome.result, Conclusion::Failure);
    let events = reporter.events.lock().unwrap();
    let (message, location) = events
        .iter()
        .find_map(|e| match e {
            Event::Annotation {
                message, location, ..
            } => Some((message.clone(), location.clone())),
            _ => None,
        })
        .expect("an error annotation");
    assert!(
        message.contains("calls the reusable workflow `./.github/workflows/reusable.yml`")
            && message.contains("nothing to run"),
        "{message}"
    );
    assert_eq!(
        (location.line, location.col),
        (Some(4), Some(11)),
        "{location:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::StepStarted { .. })),
        "no step ran"
    );
}
