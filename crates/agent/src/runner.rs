//! What actually runs a job. The agent is generic over [`JobRunner`];
//! [`crate::EngineRunner`] (the workflow engine) is the one `hangar` uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;

use tokio_util::sync::CancellationToken;

use crate::protocol::{Assignment, Conclusion};
use crate::reporter::Reporter;

#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub conclusion: Conclusion,
    pub outputs: BTreeMap<String, String>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub trait JobRunner: Send + Sync + 'static {
    fn run(
        &self,
        job: Assignment,
        workspace: PathBuf,
        reporter: Reporter,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, JobOutcome>;
}

/// The per-job directory beside the workspace where the engine keeps the run's
/// files (event payload, artifacts). The agent fills `artifacts/` with the run's
/// earlier artifacts before the job and uploads new ones after it.
pub fn run_dir_of(workspace: &std::path::Path) -> PathBuf {
    workspace.with_extension("run")
}
