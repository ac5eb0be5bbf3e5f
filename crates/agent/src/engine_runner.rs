//! The real job runner: `hangar-engine` runs the leased job (one matrix leg) as
//! the server compiled it, in the prepared workspace; no YAML is read here. Engine events
//! become the agent's step reports and log lines; the engine masks secrets before
//! any event leaves it, and the agent's reporter masks again on the way out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hangar_engine::report::{Event, Level};
use hangar_engine::{Engine, RunContext};
use tokio_util::sync::CancellationToken;

use crate::protocol::Assignment;
use crate::reporter::Reporter;
use crate::runner::{BoxFuture, JobOutcome, JobRunner};

#[derive(Clone, Default)]
pub struct EngineRunner {
    engine: Engine,
}

impl EngineRunner {
    pub fn new(engine: Engine) -> EngineRunner {
        EngineRunner { engine }
    }
}

/// Adapts engine events to the agent's reporter.
struct Sink {
    reporter: Reporter,
    /// The job's checkout, which annotation paths are made relative to.
    workspace: PathBuf,
    outputs: Mutex<BTreeMap<String, String>>,
}

impl hangar_engine::Reporter for Sink {
    fn event(&self, event: Event) {
        match event {
            Event::StepStarted { step, name, .. } => self.reporter.step_started(step as i64, &name),
            Event::StepFinished {
                step,
                name,
                conclusion,
                ..
            } => self.reporter.step_finished(step as i64, &name, conclusion),
            // The job's own lines from here on are its "Complete job".
            Event::JobCompleting { .. } => self.reporter.completing(),
            Event::Log { step, line, .. } => self.reporter.line(step_of(step), &line),
            // Workflow-command spelling, which the UI folds and highlights.
            Event::GroupStart { step, title, .. } => self
                .reporter
                .line(step_of(step), &format!("::group::{title}")),
            Event::GroupEnd { step, .. } => self.reporter.line(step_of(step), "::endgroup::"),
            Event::Annotation {
                step,
                level,
                message,
                location,
                ..
            } => {
                let level = match level {
                    Level::Error => "error",
                    Level::Warning => "warning",
                    Level::Notice => "notice",
                };
                // Rendered back as the workflow command, escaped as the runner
                // escapes it, so the server reads the same annotation from the
                // log (its check runs carry them). A file in the workspace is
                // made relative to it, as GitHub's runner does.
                let mut props = Vec::new();
                if let Some(f) = &location.file {
                    let f = Path::new(f)
                        .strip_prefix(&self.workspace)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| f.clone());
                    props.push(format!("file={}", escape_property(&f)));
                }
                for (k, v) in [
                    ("line", location.line),
                    ("endLine", location.end_line),
                    ("col", location.col),
                    ("endColumn", location.end_col),
                ] {
                    if let Some(v) = v {
                        props.push(format!("{k}={v}"));
                    }
                }
                if let Some(t) = &location.title {
                    props.push(format!("title={}", escape_property(t)));
                }
                let props = if props.is_empty() {
                    String::new()
                } else {
                    format!(" {}", props.join(","))
                };
                let message = escape_data(&message);
                self.reporter
                    .line(step_of(step), &format!("::{level}{props}::{message}"));
            }
            // As GitHub's job log says it, so the job page shows which commit
            // each `uses:` ran.
            Event::ActionResolved { uses, commit, .. } => self.reporter.line(
                None,
                &format!("Download action repository '{uses}' (SHA:{commit})"),
            ),
            Event::JobOutputs { outputs, .. } => {
                self.outputs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(outputs);
            }
            _ => {}
        }
    }
}

/// The engine's step number as the protocol's step index.
fn step_of(step: Option<usize>) -> Option<i64> {
    step.and_then(|s| i64::try_from(s).ok())
}

/// `%`, CR and LF as the runner escapes a command's message.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value additionally escapes `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The variables of the server's services, as the server sent them for this
/// job; the runtime token is masked in the job's output.
#[derive(Debug)]
struct ServerServices(BTreeMap<String, String>);

impl hangar_engine::JobServices for ServerServices {
    fn job_env(&self, _run: &RunContext, _job_key: &str) -> Vec<(String, String, bool)> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), k == "ACTIONS_RUNTIME_TOKEN"))
            .collect()
    }
}

/// The run's context from the assignment alone. Built field by field rather than
/// with `RunContext::new`, which reads the repository with several `git` processes
/// per job: the server already resolved the commit, ref and repository.
fn run_context(job: &Assignment, ws: &Path) -> RunContext {
    RunContext {
        workspace: ws.to_path_buf(),
        event_name: job.event_name.clone(),
        event: if job.event.is_object() {
            job.event.clone()
        } else {
            serde_json::json!({})
        },
        sha: job.sha.clone(),
        git_ref: job.git_ref.clone(),
        repository: job.repository.clone(),
        actor: hangar_engine::context::event_actor(&job.event).unwrap_or_default(),
        head_ref: hangar_engine::context::pr_refs(&job.event).0,
        base_ref: hangar_engine::context::pr_refs(&job.event).1,
        run_id: job.run_id.to_string(),
        run_number: job.run_number.unwrap_or(job.run_id).to_string(),
        run_attempt: job.run_attempt.unwrap_or(job.attempt).max(1).to_string(),
        server_url: "https://github.com".into(),
        secrets: job.secrets.clone(),
        vars: job.vars.clone(),
        inputs: job.job.inputs.clone().unwrap_or_default(),
        env: BTreeMap::new(),
        data_dir: hangar_engine::context::default_data_dir(),
        // One directory per job attempt: jobs of one agent run side by side.
        run_dir: crate::runner::run_dir_of(ws),
        debug: false,
        services: if job.services_env.is_empty() {
            None
        } else {
            Some(Arc::new(ServerServices(job.services_env.clone())))
        },
        environments: None,
        // The server sent the environment's secrets and variables in
        // `secrets`/`vars` already.
        environment_secrets: BTreeMap::new(),
        environment_vars: BTreeMap::new(),
        // The server leases a job only once its environment's reviewers and
        // wait timer are satisfied.
        environment_approved: true,
        deploy_home: None,
        // A job's workspace ends with it: its deployments go through the
        // server (or are refused, saying why).
        job_deploy: Some(job.deploy.clone().unwrap_or_else(|| {
            hangar_engine::JobDeploy::Refused(
                "the server that leased this job sent no deployment grant".into(),
            )
        })),
    }
}

impl JobRunner for EngineRunner {
    fn run(
        &self,
        job: Assignment,
        ws: PathBuf,
        reporter: Reporter,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, JobOutcome> {
        let engine = self.engine.clone();
        Box::pin(async move {
            let run = run_context(&job, &ws);
            let run = Arc::new(run);
            let mut spec = job.job.clone();
            spec.key = job.job_name.clone();
            let sink = Arc::new(Sink {
                reporter: reporter.clone(),
                workspace: ws.clone(),
                outputs: Mutex::new(BTreeMap::new()),
            });
            let outcome = engine
                .run_job(run.clone(), spec, sink.clone(), cancel)
                .await;
            // The agent uploads new artifacts from the run directory, then removes it.
            let mut outputs =
                std::mem::take(&mut *sink.outputs.lock().unwrap_or_else(|e| e.into_inner()));
            outputs.extend(outcome.outputs);
            JobOutcome {
                conclusion: outcome.result,
                outputs,
            }
        })
    }
}
