//! Planning (needs DAG, matrix) and execution of workflow jobs and steps on the host.
//!
//! # Using the engine
//!
//! The same API serves `hangar run` (terminal) and the agent (server):
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use std::sync::Arc;
//! use hangar_engine::{Engine, CompiledJob, RunContext, Workflow, report::MemoryReporter};
//! use tokio_util::sync::CancellationToken;
//!
//! let engine = Engine::new();                       // built-ins: checkout, cache, artifacts
//! let workspace = std::path::Path::new(".");
//! let mut run = RunContext::new(workspace, "push", None); // push of HEAD via `git`
//! run.secrets.insert("TOKEN".into(), "s3cret".into());
//! let run = Arc::new(run);
//! let wf = Arc::new(Workflow::load(std::path::Path::new(".github/workflows/ci.yml"))?);
//!
//! // Plan: jobs in stages of the `needs` graph.
//! let stages = hangar_engine::plan::stages(&wf, None)?;
//!
//! // Run ONE job (what an agent does with a leased job). Matrix legs, `needs`
//! // results and outputs come in the CompiledJob; events go to the reporter.
//! let mut spec = CompiledJob::compile(&wf, &stages[0][0])?;
//! spec.needs = serde_json::Map::new();
//! let reporter = Arc::new(MemoryReporter::default());
//! let outcome = engine.run_job(run.clone(), spec, reporter.clone(), CancellationToken::new()).await;
//! println!("{} {:?}", outcome.result, outcome.outputs);
//!
//! // Or a whole run (what `hangar run` does).
//! let summary = engine
//!     .run_workflows(run, vec![wf], Default::default(), reporter, CancellationToken::new())
//!     .await?;
//! # let _ = summary; Ok(()) }
//! ```
//!
//! * [`Engine::run_job`] runs one job (one matrix leg) to completion and returns
//!   its [`report::Conclusion`] and outputs. Cancelling the token sends SIGINT to
//!   the running step's process group, SIGTERM and SIGKILL [`process::GRACE`]
//!   apart; remaining steps are skipped unless their `if:` uses `always()` or
//!   `cancelled()`; the result is `cancelled`.
//! * For the server: [`plan::stages`] gives the job graph, [`matrix::expand`]
//!   the legs of an evaluated `strategy.matrix` (evaluate it with
//!   [`evaluate::eval_tree`] once the needed jobs' outputs are known), and
//!   [`compiled::CompiledJob`] carries `needs` (`{"job": {"result", "outputs"}}`),
//!   `matrix` and `strategy` values.
//! * Every event a [`report::Reporter`] receives is already masked: secrets
//!   (`RunContext::secrets`, or `CompiledJob::secrets`) and `::add-mask::` values
//!   never leave the engine in clear.
//! * Built-in actions: implement [`builtin::BuiltinAction`] and
//!   [`Engine::register`] it; `uses: owner/name@ref` then runs it in-process.

pub mod actions;
pub mod builtin;
pub mod call;
pub mod commands;
pub mod compiled;
pub mod context;
pub mod dotenv;
pub mod envfile;
pub mod evaluate;
pub mod hashfiles;
pub mod job;
pub mod mask;
pub mod matcher;
pub mod matrix;
pub mod output;
pub mod plan;
pub mod process;
pub mod report;
pub mod run;
pub mod schedule;
pub mod shell;
pub mod toolcache;
pub mod workflow;
pub mod workflow_run;
pub mod workspace;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use builtin::{ActionCall, ActionResult, BuiltinAction, OutputSink};
pub use compiled::CompiledJob;
pub use context::{JobDeploy, JobServices, RunContext};
pub use job::JobOutcome;
pub use report::{Conclusion, Event, Reporter};
pub use run::{JobSummary, RunOptions, RunSummary};
pub use tokio_util::sync::CancellationToken;
pub use workflow::Workflow;

/// The executor: built-in actions and local copies of remote actions. Cheap
/// to clone (shared inside).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    builtins: HashMap<String, Arc<dyn BuiltinAction>>,
    /// `owner/repo@ref` (lower case) → directory.
    action_dirs: HashMap<String, PathBuf>,
    /// Where remote actions are fetched from (and whether they may be).
    source: actions::ActionSource,
    /// `--node RUNTIME=PATH`.
    node_runtimes: HashMap<actions::node::Runtime, PathBuf>,
    /// `node --version` of each binary used, read once.
    node_versions: std::sync::Mutex<HashMap<PathBuf, Result<actions::node::Node, String>>>,
    /// How steps are isolated (none unless an agent asks).
    sandbox: process::Sandbox,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new()
    }
}

impl Engine {
    /// An engine with the default built-ins (`actions/checkout`, `actions/cache`,
    /// `actions/upload-artifact`, `actions/download-artifact`).
    pub fn new() -> Engine {
        let mut inner = Inner::default();
        for b in builtin::defaults() {
            inner.builtins.insert(b.name().to_ascii_lowercase(), b);
        }
        Engine {
            inner: Arc::new(inner),
        }
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("configure the engine before cloning it")
    }

    /// Registers a built-in action (replacing one of the same name).
    pub fn register(&mut self, action: Arc<dyn BuiltinAction>) {
        let name = action.name().to_ascii_lowercase();
        self.inner_mut().builtins.insert(name, action);
    }

    /// Drops a built-in, so `uses:` of that action runs the real one.
    pub fn unregister(&mut self, name: &str) {
        self.inner_mut().builtins.remove(&name.to_ascii_lowercase());
    }

    /// `owner/repo@ref=PATH`: use the local directory PATH for that action.
    pub fn add_action_dir(&mut self, spec: &str) -> Result<(), String> {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("--action-dir {spec:?}: expected owner/repo@ref=PATH"))?;
        let (repo, r) = name
            .split_once('@')
            .ok_or_else(|| format!("--action-dir {spec:?}: expected owner/repo@ref=PATH"))?;
        if repo.split('/').count() != 2 || r.is_empty() {
            return Err(format!(
                "--action-dir {spec:?}: expected owner/repo@ref=PATH"
            ));
        }
        let dir = PathBuf::from(path);
        if !dir.is_dir() {
            return Err(format!("--action-dir {spec:?}: {path} is not a directory"));
        }
        self.inner_mut().action_dirs.insert(
            format!("{}@{}", repo.to_ascii_lowercase(), r.to_ascii_lowercase()),
            dir,
        );
        Ok(())
    }

    /// Fetch remote actions and reusable workflows from `source` (default:
    /// `HANGAR_ACTIONS_URL` or GitHub), into `<data_dir>/actions`.
    pub fn set_action_source(&mut self, source: actions::ActionSource) {
        self.inner_mut().source = source;
    }

    /// Run JavaScript actions declaring `runtime` with the node at `program`
    /// (default: the first `node` on the step's PATH).
    pub fn set_node_runtime(&mut self, runtime: actions::node::Runtime, program: PathBuf) {
        self.inner_mut().node_runtimes.insert(runtime, program);
    }

    /// Run every step in `sandbox` (agents: `--sandbox`).
    pub fn set_sandbox(&mut self, sandbox: process::Sandbox) {
        self.inner_mut().sandbox = sandbox;
    }

    pub(crate) fn sandbox(&self) -> &process::Sandbox {
        &self.inner.sandbox
    }

    /// The node for `runtime`: configured, or `node` on `path_var`.
    pub(crate) fn node_for(
        &self,
        runtime: actions::node::Runtime,
        path_var: Option<&str>,
    ) -> Result<actions::node::Node, String> {
        let program = match self.inner.node_runtimes.get(&runtime) {
            Some(p) => p.clone(),
            None => shell::which("node", path_var).ok_or_else(|| {
                format!(
                    "this action runs on {rt}, but no `node` is on PATH: install Node.js {m} \
                     or pass --node {rt}=PATH",
                    rt = runtime.name(),
                    m = runtime.major()
                )
            })?,
        };
        let mut known = self
            .inner
            .node_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        known
            .entry(program.clone())
            .or_insert_with(|| actions::node::Node::probe(&program))
            .clone()
    }

    pub(crate) fn action_source(&self) -> &actions::ActionSource {
        &self.inner.source
    }

    pub(crate) fn builtin(&self, name: &str) -> Option<Arc<dyn BuiltinAction>> {
        self.inner.builtins.get(name).cloned()
    }

    pub(crate) fn action_dir(&self, repo: &str, version: &str) -> Option<PathBuf> {
        self.inner
            .action_dirs
            .get(&format!("{repo}@{}", version.to_ascii_lowercase()))
            .cloned()
    }

    /// Runs one job (one matrix leg) on the host. See the crate docs.
    pub async fn run_job(
        &self,
        run: Arc<RunContext>,
        spec: CompiledJob,
        reporter: Arc<dyn Reporter>,
        cancel: CancellationToken,
    ) -> JobOutcome {
        job::run_job(self, run, spec, reporter, cancel).await
    }
}
