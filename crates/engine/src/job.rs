//! Running one job on the host: contexts, steps (scripts, local composite and
//! JavaScript actions, built-ins), env files, post steps and job outputs.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hangar_expr::{Condition, Contexts, Host, StatusFunction, Value as EValue};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::Engine;
use crate::builtin::{ActionCall, ActionResult, BuiltinAction, OutputSink};
use crate::compiled::CompiledJob;
use crate::context::RunContext;
use crate::envfile;
use crate::evaluate::{eval_scalar, eval_string};
use crate::mask::Masker;
use crate::output::StepSink;
use crate::process::{self, Spec};
use crate::report::{Conclusion, Event, Level, Location, Reporter, now_ms};
use crate::shell;
use crate::workflow::{scalar_string, steps as job_steps};

/// What a job ended with.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    pub result: Conclusion,
    pub outputs: BTreeMap<String, String>,
}

/// Status functions and `hashFiles` for step conditions.
pub(crate) struct StepHost<'a> {
    pub failed: bool,
    pub cancelled: bool,
    pub workspace: &'a Path,
}

impl Host for StepHost<'_> {
    fn status(&self, f: StatusFunction) -> bool {
        match f {
            StatusFunction::Success => !self.failed && !self.cancelled,
            StatusFunction::Failure => self.failed && !self.cancelled,
            StatusFunction::Cancelled => self.cancelled,
            StatusFunction::Always => true,
        }
    }

    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        crate::hashfiles::hash_files(self.workspace, patterns)
    }
}

#[derive(Clone)]
struct Files {
    env: PathBuf,
    path: PathBuf,
    output: PathBuf,
    state: PathBuf,
    summary: PathBuf,
}

/// A step list being executed: the job's, or a composite action's.
#[derive(Default, Clone)]
struct Scope {
    steps: Map<String, Value>,
    failed: bool,
    /// Composite: its `inputs` context.
    inputs: Option<Value>,
    /// Composite: the calling step's environment.
    env: IndexMap<String, String>,
    action_path: Option<PathBuf>,
    composite: bool,
    depth: usize,
}

enum Post {
    Js {
        name: String,
        runtime: crate::actions::node::Runtime,
        dir: PathBuf,
        file: String,
        condition: String,
        env: IndexMap<String, String>,
        state_key: String,
    },
    Builtin {
        name: String,
        action: Arc<dyn BuiltinAction>,
        call: Box<PostCall>,
    },
}

struct PostCall {
    action_name: String,
    version: String,
    inputs: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    state: BTreeMap<String, String>,
}

/// Who a step is, for reporting its end.
struct StepEnd {
    id: Option<String>,
    number: usize,
    name: String,
    started: Instant,
    /// When a background step's process ended (its end is reported later,
    /// when it is waited for, with the time it really ended).
    ended: Option<(Instant, u64)>,
}

/// A `background: true` step (or a member of a `parallel:` group) whose
/// process is running while the job goes on.
///
/// Semantics (GitHub's parallel steps, June 2026), as implemented here:
/// - the step's `if`, `env`, `continue-on-error` and `timeout-minutes` are
///   evaluated when it starts; its process then runs concurrently with the
///   steps after it, with its own log (events carry its step number) and its
///   own `GITHUB_OUTPUT`/`GITHUB_ENV`/`GITHUB_PATH`/`GITHUB_STATE`/summary files;
/// - its outcome, outputs and `GITHUB_ENV`/`GITHUB_PATH` changes become
///   visible to the steps after the `wait`, `wait-all` or `cancel` that waits
///   for it (a failure then fails the job and skips the steps after, unless
///   `continue-on-error`), never before;
/// - `cancel:` stops its process group (SIGINT, then SIGTERM, then SIGKILL,
///   `process::GRACE` apart) and waits for it; it ends `cancelled`, which
///   does not fail the job: stopping a service is what `cancel` is for;
/// - a composite action or a built-in action runs in the background too:
///   a copy of the job ([`Job::fork`]) runs it on a task of its own, with the
///   step's own files, and its env, PATH, state and post steps are taken in
///   when it is waited for; `cancel:` stops the step it is running and the
///   composite's later steps are skipped;
/// - a `parallel:` group starts its members as background steps and waits
///   for all of them at its end;
/// - the job waits for the background steps still running when its steps
///   are done, before its post steps, and fails if any of them failed.
struct Background {
    end: StepEnd,
    continue_on_error: bool,
    /// Cancels this step's process only (a child of the job's token).
    cancel: CancellationToken,
    /// `cancel:` stopped it: it ends cancelled rather than failed.
    stopped: bool,
    files: Files,
    handle: BackgroundWork,
    /// A JavaScript action's: where what it saves with `GITHUB_STATE` goes
    /// (its `post` reads it), as [`Job::run_node`] keys it.
    state_key: Option<String>,
}

type BackgroundTask = tokio::task::JoinHandle<(StepSink, process::Exit, Instant, u64)>;

/// What runs in the background for a step: one process (a `run:` step, a
/// JavaScript action's main), or a composite or built-in action run by a
/// copy of the job ([`Job::fork`]).
enum BackgroundWork {
    Process(BackgroundTask),
    Steps(tokio::task::JoinHandle<Forked>),
}

/// What a copy of the job that ran a background `uses:` step hands back when
/// it is waited for: the step's result and the job state its steps changed.
struct Forked {
    result: Result<StepResult, String>,
    /// The job's env and added PATH entries as the fork left them, and what
    /// they were when it started (only its own changes are taken).
    env: IndexMap<String, String>,
    env_before: IndexMap<String, String>,
    path_prepend: Vec<String>,
    path_before: usize,
    states: BTreeMap<String, BTreeMap<String, String>>,
    post: Vec<Post>,
    fetched: HashMap<String, Result<crate::actions::Fetched, String>>,
    ended: (Instant, u64),
}

/// A JavaScript action's main started in the background by [`Job::run_uses`].
struct StartedAction {
    files: Files,
    cancel: CancellationToken,
    handle: BackgroundTask,
    state_key: String,
}

/// What a step reads and changes of its job: held by the job, and cloned
/// (with the step's own files, directory and cancel token) by the copy of
/// the job that runs a background composite or built-in step
/// ([`Job::fork`]). One struct for both, so a copy never misses a field.
#[derive(Clone)]
struct JobState {
    run: Arc<RunContext>,
    spec: CompiledJob,
    doc: Value,
    reporter: Arc<dyn Reporter>,
    masker: Masker,
    /// The job's temporary directory, kept while any copy lives.
    _tmp: Arc<tempfile::TempDir>,
    /// Where steps write their scripts (a copy has a directory of its own).
    tmp: PathBuf,
    /// The job's jail (its PID namespace and bubblewrap's options) when the
    /// engine's sandbox jails steps.
    jail: Option<Arc<process::JobJail>>,
    files: Files,
    base_env: IndexMap<String, String>,
    env: IndexMap<String, String>,
    path_prepend: Vec<String>,
    base_cx: Contexts,
    /// The next step number: shared with the copies of this job that run
    /// a background composite or built-in step ([`Job::fork`]), so every
    /// step of the job, wherever it runs, has a number of its own.
    counter: Arc<AtomicUsize>,
    /// The running step's id as GitHub names it (`github.action`,
    /// `GITHUB_ACTION`): its own `id`, or a generated `__run`, `__run_2`,
    /// `__actions_checkout`…
    action: String,
    /// Problem matchers registered by earlier steps.
    matchers: crate::matcher::Matchers,
    /// The running step's index in the job's `steps:` (none inside a
    /// composite action, whose steps are in another file).
    step_index: Option<usize>,
    cancel: CancellationToken,
    /// Never cancelled: `always()` steps after a cancel run to completion.
    no_cancel: CancellationToken,
    states: BTreeMap<String, BTreeMap<String, String>>,
    debug: bool,
    /// The job's `environment:` name, evaluated before the first step.
    environment: Option<String>,
    /// Remote `uses:` of this job already resolved (or that failed to), by
    /// `owner/repo@ref`: resolved once per job, as GitHub's "Set up job" does.
    fetched: HashMap<String, Result<crate::actions::Fetched, String>>,
    /// `RUNNER_TRACKING_ID` of this job's processes: what is killed when the
    /// job ends (its orphans).
    tracking_id: String,
}

/// How a step runs: in order, or started in the background into the list.
enum Mode<'b> {
    Foreground,
    Background(&'b mut Vec<Background>),
}

struct StepResult {
    success: bool,
    cancelled: bool,
    outputs: BTreeMap<String, String>,
}

impl StepResult {
    fn failed() -> StepResult {
        StepResult {
            success: false,
            cancelled: false,
            outputs: BTreeMap::new(),
        }
    }
}

type Pairs = BTreeMap<String, String>;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub(crate) struct Job<'e> {
    engine: &'e Engine,
    /// What its steps read and change; a copy running a background step
    /// has a clone of it.
    state: JobState,
    /// A step of the job (not only of the composite being run) has failed.
    job_failed: bool,
    post: Vec<Post>,
    /// The step being started is a `background` `uses:` step: [`Job::run_uses`]
    /// takes this on entry, so a composite's own steps never see it.
    background_request: bool,
    /// What [`Job::run_uses`] started in the background, for the step to list.
    started: Option<StartedAction>,
    /// [`Job::run_uses`] found a composite or built-in action asked to run
    /// in the background: the step runs it in a copy of the job instead.
    fork_wanted: bool,
}

/// Entry point used by [`Engine::run_job`].
pub(crate) async fn run_job(
    engine: &Engine,
    run: Arc<RunContext>,
    spec: CompiledJob,
    reporter: Arc<dyn Reporter>,
    cancel: CancellationToken,
) -> JobOutcome {
    let started = Instant::now();
    let key = spec.key.clone();
    let display = spec.display_name();
    reporter.event(Event::JobStarted {
        job: key.clone(),
        name: display,
        ts: now_ms(),
    });
    // A job that calls a reusable workflow is expanded into the called
    // workflow's jobs by whoever schedules the run (`run::call_workflow`
    // locally, the server's `calls`), never run as a job itself. Compiled
    // alone it has no steps: running it would "succeed" with nothing run,
    // so it fails, saying why.
    let called = spec.job.get("uses").and_then(Value::as_str).map(|uses| {
        (
            format!(
                "job '{}' calls the reusable workflow `{uses}`: its jobs run as jobs of the run \
                 (`hangar run` and `hangar serve` expand it), so this job alone has nothing to run \
                 and fails rather than pass with nothing run",
                spec.job_id
            ),
            spec.location(None, "uses"),
        )
    });
    let job = match called {
        Some((message, location)) => Err((message, location)),
        None => Job::new(engine, run, spec, reporter.clone(), cancel.clone())
            .map_err(|e| (e, Location::default())),
    };
    let outcome = match job {
        Ok(mut job) => {
            let outcome = job.execute(cancel).await;
            job.clean_up_orphans();
            outcome
        }
        Err((message, location)) => {
            reporter.event(Event::Annotation {
                job: key.clone(),
                step: None,
                level: Level::Error,
                message,
                location,
                ts: now_ms(),
            });
            JobOutcome {
                result: Conclusion::Failure,
                outputs: BTreeMap::new(),
            }
        }
    };
    if !outcome.outputs.is_empty() {
        reporter.event(Event::JobOutputs {
            job: key.clone(),
            outputs: outcome.outputs.clone(),
            ts: now_ms(),
        });
    }
    reporter.event(Event::JobFinished {
        job: key,
        result: outcome.result,
        duration_ms: started.elapsed().as_millis() as u64,
        ts: now_ms(),
    });
    reporter.flush();
    outcome
}

/// Writes `bytes` to a file only its owner can read and write.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

fn to_evalue(v: &Value) -> EValue {
    EValue::from(v)
}

fn map_value(m: &IndexMap<String, String>) -> EValue {
    let mut o = hangar_expr::Object::with_capacity(m.len());
    for (k, v) in m {
        o.insert(k.as_str(), EValue::string(v.as_str()));
    }
    EValue::object(o)
}

impl<'e> Job<'e> {
    /// GitHub's "Cleaning up orphan processes": whatever the job's steps left
    /// running is killed when the job ends, and said so in its log.
    ///
    /// In the jail, ending the job's PID namespace ends them all (a daemon
    /// that emptied its environment included) with no scan of `/proc`;
    /// without it, they are found by their `RUNNER_TRACKING_ID`.
    fn clean_up_orphans(&mut self) {
        let killed = match &self.state.jail {
            Some(jail) => jail.end(),
            None => process::kill_job_processes(&self.state.tracking_id),
        };
        process::unwatch(&self.state.tracking_id);
        if !killed.is_empty() {
            self.state.reporter.event(Event::Log {
                job: self.state.spec.key.clone(),
                step: None,
                line: format!(
                    "Cleaning up orphan processes: terminated {} ({})",
                    killed.len(),
                    killed
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                ts: now_ms(),
            });
        }
    }

    /// A job (or a copy of one) over `state`, no step of it run yet.
    fn with_state(engine: &'e Engine, state: JobState) -> Job<'e> {
        Job {
            engine,
            state,
            job_failed: false,
            post: Vec::new(),
            background_request: false,
            started: None,
            fork_wanted: false,
        }
    }

    fn new(
        engine: &'e Engine,
        run: Arc<RunContext>,
        spec: CompiledJob,
        reporter: Arc<dyn Reporter>,
        cancel: CancellationToken,
    ) -> Result<Job<'e>, String> {
        if let Some(e) = &spec.error {
            return Err(e.clone());
        }
        let doc = spec.job.clone();
        if !doc.is_object() {
            return Err(format!(
                "job '{}' not found in {}",
                spec.job_id, spec.workflow.path
            ));
        }
        for key in ["container", "services"] {
            if doc.get(key).is_some_and(|v| !v.is_null()) {
                return Err(format!(
                    "job '{}' uses `{key}:`, which needs a container engine; hangar runs jobs on the host without Docker. Remove `{key}:` or run this job on GitHub",
                    spec.key
                ));
            }
        }
        // 0700: the step scripts, env files and event payload are the job's alone.
        let tmp = tempfile::Builder::new()
            .prefix("hangar-job-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let t = tmp.path().to_path_buf();
        let files = Files {
            env: t.join("set_env"),
            path: t.join("add_path"),
            output: t.join("set_output"),
            state: t.join("save_state"),
            summary: t.join("step_summary"),
        };
        for f in [
            &files.env,
            &files.path,
            &files.output,
            &files.state,
            &files.summary,
        ] {
            std::fs::write(f, "").map_err(|e| format!("cannot create {}: {e}", f.display()))?;
        }
        let masker = Masker::new();
        let secrets = spec.secrets.clone().unwrap_or_else(|| run.secrets.clone());
        for v in secrets.values() {
            masker.add(v);
        }
        let debug = run.debug
            || secrets
                .get("ACTIONS_STEP_DEBUG")
                .is_some_and(|v| v == "true")
            || run
                .vars
                .get("ACTIONS_STEP_DEBUG")
                .is_some_and(|v| v == "true");
        let (ref_name, ref_type) = run.ref_name_and_type();
        let owner = run.repository.split('/').next().unwrap_or("").to_string();
        let workspace = run.workspace.to_string_lossy().into_owned();
        let event_path = run.event_path().to_string_lossy().into_owned();
        let wf_path = spec.workflow.path.clone();
        // Numeric ids from the payload (GitHub sends them as strings in the
        // context and the environment); "0" for a payload built locally.
        let id_at = |pointer: &str| -> String {
            match run.event.pointer(pointer) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => "0".to_string(),
            }
        };
        let actor_id = id_at("/sender/id");
        let repository_id = id_at("/repository/id");
        let owner_id = id_at("/repository/owner/id");
        let files_of = |p: &Path| p.to_string_lossy().into_owned();
        let runner_files = crate::context::RunnerFiles {
            env: files_of(&files.env),
            event_path: event_path.clone(),
            output: files_of(&files.output),
            path: files_of(&files.path),
            state: files_of(&files.state),
            step_summary: files_of(&files.summary),
            token: secrets.get("GITHUB_TOKEN").cloned().unwrap_or_default(),
            workspace: workspace.clone(),
        };
        let mut github = crate::context::github_context(
            &run.github_facts_for(&spec.workflow, &spec.job_id),
            Some(&runner_files),
        );

        let arch = match std::env::consts::ARCH {
            "x86_64" => "X64",
            "aarch64" => "ARM64",
            "arm" => "ARM",
            "x86" => "X86",
            other => other,
        };
        let tool_cache = crate::toolcache::dir(&run.data_dir);
        // The setup actions write into it; it outlives the run.
        let _ = std::fs::create_dir_all(&tool_cache);
        let tool_cache = tool_cache.to_string_lossy().into_owned();
        let mut runner = json!({
            "os": "Linux",
            "arch": arch,
            "name": "hangar",
            "environment": "self-hosted",
            "temp": t.to_string_lossy(),
            "tool_cache": tool_cache,
            "workspace": run.workspace.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
        });
        if debug {
            runner["debug"] = json!("1");
        }

        // hangar's own variables (an agent's HANGAR_TOKEN, HANGAR_DATA...) are
        // the agent's, not the job's: a step never sees them.
        // An agent's sandbox passes only its allow-list of the agent's own variables.
        let clean_env = engine.sandbox().clean_env();
        let mut base_env: IndexMap<String, String> = std::env::vars()
            .filter(|(k, _)| !k.starts_with("HANGAR_"))
            .filter(|(k, _)| !clean_env || crate::process::env_allowed(k))
            .collect();
        for (k, v) in &run.env {
            base_env.insert(k.clone(), v.clone());
        }
        let mut set = |k: &str, v: &str| {
            base_env.insert(k.to_string(), v.to_string());
        };
        set("CI", "true");
        // Unique per job on this machine: the job's temporary directory is.
        let tracking_id = format!(
            "hangar_{}_{}",
            std::process::id(),
            t.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("job")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
        );
        set(process::TRACKING_VAR, &tracking_id);
        set("GITHUB_ACTIONS", "true");
        set("GITHUB_ACTOR", &run.actor);
        set("GITHUB_ACTOR_ID", &actor_id);
        set("GITHUB_API_URL", "https://api.github.com");
        set("GITHUB_EVENT_NAME", &run.event_name);
        set("GITHUB_EVENT_PATH", &event_path);
        set("GITHUB_GRAPHQL_URL", "https://api.github.com/graphql");
        set("GITHUB_JOB", &spec.job_id);
        set("GITHUB_REF", &run.git_ref);
        set("GITHUB_REF_NAME", &ref_name);
        set("GITHUB_REF_PROTECTED", "false");
        set("GITHUB_REF_TYPE", ref_type);
        set("GITHUB_REPOSITORY", &run.repository);
        set("GITHUB_REPOSITORY_ID", &repository_id);
        set("GITHUB_REPOSITORY_OWNER", &owner);
        set("GITHUB_REPOSITORY_OWNER_ID", &owner_id);
        set("GITHUB_RETENTION_DAYS", "0");
        set("GITHUB_RUN_ATTEMPT", &run.run_attempt);
        set("GITHUB_RUN_ID", &run.run_id);
        set("GITHUB_RUN_NUMBER", &run.run_number);
        set("GITHUB_SERVER_URL", &run.server_url);
        set("GITHUB_SHA", &run.sha);
        set("GITHUB_TRIGGERING_ACTOR", &run.actor);
        set("GITHUB_WORKFLOW", &spec.workflow.name);
        set(
            "GITHUB_WORKFLOW_REF",
            &format!("{}/{}@{}", run.repository, wf_path, run.git_ref),
        );
        set("GITHUB_WORKFLOW_SHA", &run.sha);
        set("GITHUB_WORKSPACE", &workspace);
        set("GITHUB_ENV", &files.env.to_string_lossy());
        set("GITHUB_PATH", &files.path.to_string_lossy());
        set("GITHUB_OUTPUT", &files.output.to_string_lossy());
        set("GITHUB_STATE", &files.state.to_string_lossy());
        set("GITHUB_STEP_SUMMARY", &files.summary.to_string_lossy());
        set("RUNNER_OS", "Linux");
        set("RUNNER_ARCH", arch);
        set("RUNNER_NAME", "hangar");
        set("RUNNER_ENVIRONMENT", "self-hosted");
        set("RUNNER_TEMP", &t.to_string_lossy());
        set("RUNNER_TOOL_CACHE", &tool_cache);
        set(
            "RUNNER_WORKSPACE",
            runner["workspace"].as_str().unwrap_or(""),
        );
        if debug {
            set("RUNNER_DEBUG", "1");
        } else {
            // Not inherited from the host either: only a debug run has it.
            base_env.shift_remove("RUNNER_DEBUG");
        }
        if let Some(services) = &run.services {
            for (k, v, secret) in services.job_env(&run, &spec.key) {
                if secret {
                    masker.add(&v);
                }
                base_env.insert(k, v);
            }
        }
        // GitHub sets the head and base refs only for pull request events.
        if matches!(
            run.event_name.as_str(),
            "pull_request" | "pull_request_target"
        ) {
            base_env.insert("GITHUB_HEAD_REF".into(), run.head_ref.clone());
            base_env.insert("GITHUB_BASE_REF".into(), run.base_ref.clone());
        } else {
            base_env.shift_remove("GITHUB_HEAD_REF");
            base_env.shift_remove("GITHUB_BASE_REF");
        }

        let mut secrets_obj = Map::new();
        for (k, v) in &secrets {
            secrets_obj.insert(k.clone(), json!(v));
        }
        let mut vars_obj = Map::new();
        for (k, v) in &run.vars {
            vars_obj.insert(k.clone(), json!(v));
        }
        let inputs = spec.inputs.clone().unwrap_or_else(|| run.inputs.clone());
        if !spec.called
            && run.event_name == "workflow_dispatch"
            && let Some(Value::Object(event)) = github.get_mut("event")
        {
            // A dispatch carries every input, defaults included, as strings:
            // `inputs.flag` is a boolean, `github.event.inputs.flag` is "true".
            let given = event
                .entry("inputs")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(given) = given {
                for (k, v) in &inputs {
                    let text = scalar_string(v).unwrap_or_else(|| v.to_string());
                    given.entry(k.clone()).or_insert(Value::String(text));
                }
            }
        }
        let mut cx = Contexts::new();
        cx.insert("github", to_evalue(&Value::Object(github.clone())));
        cx.insert("runner", to_evalue(&runner));
        cx.insert("vars", to_evalue(&Value::Object(vars_obj)));
        cx.insert("secrets", to_evalue(&Value::Object(secrets_obj)));
        cx.insert("inputs", to_evalue(&Value::Object(inputs)));
        cx.insert("matrix", to_evalue(&Value::Object(spec.matrix.clone())));
        cx.insert("strategy", to_evalue(&Value::Object(spec.strategy.clone())));
        cx.insert("needs", to_evalue(&Value::Object(spec.needs.clone())));
        cx.insert(
            "job",
            to_evalue(&json!({"status": "success", "container": {}, "services": {}})),
        );
        cx.insert("steps", EValue::object(hangar_expr::Object::new()));
        cx.insert("env", EValue::object(hangar_expr::Object::new()));

        // Created now so a jail can bind it (read-only) before the first `uses:` fills it.
        let actions_dir = run.data_dir.join("actions");
        let _ = std::fs::create_dir_all(&actions_dir);
        let mut job = Job::with_state(
            engine,
            JobState {
                run: run.clone(),
                spec,
                doc,
                reporter,
                masker,
                _tmp: Arc::new(tmp),
                jail: {
                    let mut readable =
                        vec![actions_dir.clone(), crate::toolcache::dir(&run.data_dir)];
                    readable.extend(git_alternates(&run.workspace));
                    let readable: Vec<&std::path::Path> =
                        readable.iter().map(|p| p.as_path()).collect();
                    engine
                        .sandbox()
                        .jail(&[&run.workspace, &run.run_dir, &t], &readable)?
                },
                tmp: t,
                files,
                base_env,
                // The run's extra env (`.env`) is the lowest layer of the env context.
                env: run
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                path_prepend: Vec::new(),
                base_cx: cx,
                counter: Arc::new(AtomicUsize::new(0)),
                action: String::new(),
                matchers: Default::default(),
                step_index: None,
                cancel,
                no_cancel: CancellationToken::new(),
                states: BTreeMap::new(),
                debug,
                environment: None,
                fetched: HashMap::new(),
                tracking_id,
            },
        );
        process::watch(&job.state.tracking_id);
        // The environment's own secrets and variables (`hangar run`) over
        // the run's, as on GitHub: in place before the job's `env:` is
        // evaluated, which may read them. The name is read again, with its
        // error if it has one, when the job starts.
        if let Ok(Some(name)) = job.job_environment() {
            job.overlay_environment(&name, &secrets);
        }
        // env: workflow env, then job env, each evaluated against what came before.
        let wf_env = job.state.spec.workflow.env.clone();
        let job_env = job.state.doc.get("env").cloned();
        for layer in [wf_env, job_env].into_iter().flatten() {
            job.apply_env_layer(&layer)?;
        }
        Ok(job)
    }

    fn apply_env_layer(&mut self, layer: &Value) -> Result<(), String> {
        let host = self.host(false, false);
        let mut cx = self.state.base_cx.clone();
        cx.insert("env", map_value(&self.state.env));
        match layer {
            Value::Object(m) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    out.push((k.clone(), eval_scalar(v, &cx, &host)?));
                }
                self.state.env.extend(out);
            }
            Value::String(s) => {
                if let Value::Object(m) = crate::evaluate::eval_typed(s, &cx, &host)? {
                    for (k, v) in m {
                        self.state
                            .env
                            .insert(k, scalar_string(&v).unwrap_or_else(|| v.to_string()));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn host(&self, failed: bool, cancelled: bool) -> StepHost<'_> {
        StepHost {
            failed,
            cancelled,
            workspace: &self.state.run.workspace,
        }
    }

    fn cancelled(&self) -> bool {
        self.state.cancel.is_cancelled()
    }

    fn next_number(&self) -> usize {
        self.state.counter.fetch_add(1, Ordering::SeqCst)
    }

    fn cx(&self, scope: &Scope, env: &IndexMap<String, String>) -> Contexts {
        let mut cx = self.state.base_cx.clone();
        // `github` differs per step only in `action` (and `action_path` in a
        // composite): a shallow copy of its top level, the payload shared.
        if let Some(EValue::Object(github)) = cx.get("github") {
            let mut github = (**github).clone();
            github.insert("action", EValue::from(self.state.action.as_str()));
            if let Some(p) = &scope.action_path {
                github.insert("action_path", EValue::from(p.to_string_lossy().as_ref()));
            }
            cx.insert("github", EValue::Object(Arc::new(github)));
        }
        // `job.status` turns to failure once a step of the job has failed.
        if self.job_failed || scope.failed || self.cancelled() {
            let status = if self.cancelled() {
                "cancelled"
            } else {
                "failure"
            };
            cx.insert(
                "job",
                to_evalue(&json!({"status": status, "container": {}, "services": {}})),
            );
        }
        cx.insert("env", map_value(env));
        cx.insert("steps", to_evalue(&Value::Object(scope.steps.clone())));
        if let Some(inputs) = &scope.inputs {
            cx.insert("inputs", to_evalue(inputs));
        }
        cx
    }

    fn annotate(&self, step: Option<usize>, level: Level, message: &str) {
        self.annotate_at(step, level, message, Location::default());
    }

    fn annotate_at(&self, step: Option<usize>, level: Level, message: &str, location: Location) {
        self.state.reporter.event(Event::Annotation {
            job: self.state.spec.key.clone(),
            step,
            level,
            message: self.state.masker.mask(message).into_owned(),
            location,
            ts: now_ms(),
        });
    }

    /// Where the running step's `key` is written in the workflow, for an
    /// error about it (as GitHub's `(Line: L, Col: C)`); nothing inside a
    /// composite action.
    fn step_location(&self, key: &str) -> Location {
        match self.state.step_index {
            Some(index) => self.state.spec.location(Some(index), key),
            None => Location::default(),
        }
    }

    /// The job's `timeout-minutes`, evaluated and read by the one checked
    /// parser: GitHub's default when absent, capped at the longest a job may
    /// run (with a warning), an error when it is not a number.
    fn job_timeout(&self) -> Result<Duration, String> {
        let Some(v) = self.state.doc.get("timeout-minutes") else {
            return Ok(hangar_units::DEFAULT_JOB_TIMEOUT);
        };
        let scope = Scope::default();
        let cx = self.cx(&scope, &self.state.env);
        let text = eval_scalar(v, &cx, &self.host(false, false))?;
        let timeout = hangar_units::timeout_minutes(&text)?;
        if let Some(warning) = timeout.warning(&text) {
            let location = self.state.spec.location(None, "timeout-minutes");
            self.annotate_at(None, Level::Warning, &warning, location);
        }
        Ok(timeout.or(hangar_units::DEFAULT_JOB_TIMEOUT))
    }

    /// Lays environment `name`'s own secrets and variables from the run
    /// (`hangar run`'s `.secrets.ENV`, `--environment-secret`…) over the
    /// job's `secrets` and the run's `vars`, its secrets masked. An agent's
    /// run has none: the server sent the job its environment's already.
    fn overlay_environment(&mut self, name: &str, secrets: &BTreeMap<String, String>) {
        let key = name.to_ascii_lowercase();
        let to_context = |all: BTreeMap<String, String>| {
            let obj: Map<String, Value> = all.into_iter().map(|(k, v)| (k, json!(v))).collect();
            to_evalue(&Value::Object(obj))
        };
        if let Some(own) = self.state.run.environment_secrets.get(&key) {
            let mut all = secrets.clone();
            for (k, v) in own {
                self.state.masker.add(v);
                all.insert(k.clone(), v.clone());
            }
            self.state.base_cx.insert("secrets", to_context(all));
        }
        if let Some(own) = self.state.run.environment_vars.get(&key) {
            let mut all = self.state.run.vars.clone();
            all.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            self.state.base_cx.insert("vars", to_context(all));
        }
    }

    /// The job's `environment:` name, evaluated over the job's contexts
    /// before anything uses it (the `hangar/deploy` step's default target,
    /// its protection, the deployment's DORA label). Under `hangar run` an
    /// expression must name an environment hangar.yml defines.
    fn job_environment(&self) -> Result<Option<String>, String> {
        let Some(v) = self.state.doc.get("environment") else {
            return Ok(None);
        };
        let scope = Scope::default();
        let cx = self.cx(&scope, &self.state.env);
        let Some((name, written)) =
            crate::evaluate::environment_name(v, &cx, &self.host(false, false))?
        else {
            return Ok(None);
        };
        let Some(known) = &self.state.run.environments else {
            return Ok((!name.is_empty()).then_some(name));
        };
        if !written.contains("${{") {
            return Ok((!name.is_empty()).then_some(name));
        }
        let listed = || {
            if known.is_empty() {
                String::new()
            } else {
                format!(" (hangar.yml defines: {})", known.join(", "))
            }
        };
        if name.is_empty() {
            return Err(format!(
                "`environment: {written}` evaluated to an empty name: give the input or variable it reads a value{}",
                listed()
            ));
        }
        if !known.is_empty() && !known.iter().any(|k| k.eq_ignore_ascii_case(&name)) {
            return Err(format!(
                "`environment: {written}` evaluated to `{name}`, which is not an environment of hangar.yml{}",
                listed()
            ));
        }
        Ok(Some(name))
    }

    async fn execute(&mut self, outer: CancellationToken) -> JobOutcome {
        // The environment's name decides what the steps may deploy to: read
        // first, and a job whose name cannot be read runs nothing.
        match self.job_environment() {
            Ok(e) => self.state.environment = e,
            Err(message) => {
                let location = self.state.spec.location(None, "environment");
                self.annotate_at(None, Level::Error, &message, location);
                return JobOutcome {
                    result: Conclusion::Failure,
                    outputs: BTreeMap::new(),
                };
            }
        }
        // The job's timeout and the caller's cancel both cancel the steps.
        let timeout = match self.job_timeout() {
            Ok(t) => t,
            Err(message) => {
                // GitHub fails a job whose timeout cannot be read before any step runs.
                let location = self.state.spec.location(None, "timeout-minutes");
                self.annotate_at(None, Level::Error, &message, location);
                return JobOutcome {
                    result: Conclusion::Failure,
                    outputs: BTreeMap::new(),
                };
            }
        };
        let job_cancel = CancellationToken::new();
        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let job_cancel = job_cancel.clone();
            let timed_out = timed_out.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = outer.cancelled() => {}
                    _ = tokio::time::sleep(timeout) => {
                        timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ = job_cancel.cancelled() => {}
                }
                job_cancel.cancel();
            })
        };
        self.state.cancel = job_cancel.clone();
        let steps: Vec<Value> = job_steps(&self.state.doc).to_vec();
        self.prefetch_actions(&steps).await;
        let mut scope = Scope::default();
        self.run_pre_steps(&mut scope, &steps).await;
        self.run_steps(&mut scope, &steps).await;
        self.run_posts(&mut scope).await;
        self.state.reporter.event(Event::JobCompleting {
            job: self.state.spec.key.clone(),
            ts: now_ms(),
        });
        let was_timed_out = timed_out.load(std::sync::atomic::Ordering::SeqCst);
        let was_cancelled = self.state.cancel.is_cancelled() && !was_timed_out;
        job_cancel.cancel();
        let _ = watcher.await;
        if was_timed_out {
            self.annotate(
                None,
                Level::Error,
                &format!(
                    "The job running on runner hangar has exceeded the maximum execution time of {} minutes.",
                    timeout.as_secs_f64() / 60.0
                ),
            );
        }
        let outputs = self.job_outputs(&scope);
        let result = if was_cancelled {
            Conclusion::Cancelled
        } else if scope.failed || was_timed_out {
            Conclusion::Failure
        } else {
            Conclusion::Success
        };
        JobOutcome { result, outputs }
    }

    fn job_outputs(&self, scope: &Scope) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(Value::Object(defs)) = self.state.doc.get("outputs") else {
            return out;
        };
        let cx = self.cx(scope, &self.state.env);
        let host = self.host(scope.failed, self.cancelled());
        for (k, v) in defs {
            match eval_scalar(v, &cx, &host) {
                Ok(value) => {
                    if self.state.masker.mask(&value) != value {
                        self.annotate(
                            None,
                            Level::Warning,
                            &format!("Skip output '{k}' since it may contain secret."),
                        );
                    } else {
                        out.insert(k.clone(), value);
                    }
                }
                Err(e) => self.annotate(None, Level::Error, &format!("output '{k}': {e}")),
            }
        }
        out
    }

    fn run_steps<'a>(&'a mut self, scope: &'a mut Scope, steps: &'a [Value]) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let actions = hangar_workflow::template::step_ids(steps.iter().map(|step| {
                hangar_workflow::template::StepIdSource {
                    id: step.get("id").and_then(Value::as_str),
                    uses: step.get("uses").and_then(Value::as_str),
                    run: step.get("run").is_some(),
                }
            }));
            let outer = self.state.step_index;
            let mut background: Vec<Background> = Vec::new();
            for (i, (step, action)) in steps.iter().zip(actions).enumerate() {
                self.state.action = action;
                self.state.step_index = (!scope.composite).then_some(i);
                if step.get("wait").is_some()
                    || step.get("wait-all").is_some()
                    || step.get("cancel").is_some()
                {
                    self.control_step(scope, step, &mut background).await;
                } else if let Some(Value::Array(members)) = step.get("parallel") {
                    let mut group = Vec::new();
                    for member in members {
                        self.run_step(scope, member, Mode::Background(&mut group))
                            .await;
                    }
                    for bg in group {
                        self.finish_background(scope, bg).await;
                    }
                } else if step.get("background").is_some_and(maybe_true) {
                    self.run_step(scope, step, Mode::Background(&mut background))
                        .await;
                } else {
                    self.run_step(scope, step, Mode::Foreground).await;
                }
            }
            // The step list ends by waiting for what still runs in the background.
            for bg in background {
                self.finish_background(scope, bg).await;
            }
            self.state.step_index = outer;
        })
    }

    fn default_name(step: &Value) -> String {
        if let Some(run) = step.get("run").and_then(scalar_string) {
            let first = run
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            format!("Run {first}")
        } else if let Some(uses) = step.get("uses").and_then(scalar_string) {
            format!("Run {uses}")
        } else {
            "step".into()
        }
    }

    async fn run_step(&mut self, scope: &mut Scope, step: &Value, mode: Mode<'_>) {
        let number = self.next_number();
        let key = self.state.spec.key.clone();
        let id = step.get("id").and_then(scalar_string);
        let started = Instant::now();
        let is_cancelled = self.cancelled();

        // The step's environment: job env, the composite caller's env, then the
        // step's own env (evaluated against the env before it).
        let mut env = self.state.env.clone();
        env.extend(scope.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let has_exprs = step_has_expressions(step);
        let mut cx = if has_exprs || step.get("if").is_some() {
            Some(self.cx(scope, &env))
        } else {
            None
        };

        let name = match step.get("name").and_then(scalar_string) {
            Some(n) if n.contains("${{") => {
                let cx = cx.get_or_insert_with(|| self.cx(scope, &env));
                eval_string(&n, cx, &self.host(scope.failed, is_cancelled)).unwrap_or(n)
            }
            Some(n) => n,
            None => Self::default_name(step),
        };
        let name = self.state.masker.mask(&name).into_owned();

        let condition = match step.get("if") {
            None => Ok(!scope.failed && !is_cancelled),
            Some(v) => {
                let text = scalar_string(v).unwrap_or_default();
                let cx = cx.get_or_insert_with(|| self.cx(scope, &env));
                match Condition::parse(&text) {
                    Ok(c) => c
                        .eval(cx, &self.host(scope.failed, is_cancelled))
                        .map_err(|e| format!("The step's `if: {text}` cannot be evaluated: {e}")),
                    Err(e) => Err(format!(
                        "The step's `if: {text}` is invalid: {}",
                        e.github_message(&text)
                    )),
                }
            }
        };
        self.state.reporter.event(Event::StepStarted {
            job: key,
            step: number,
            name: name.clone(),
            ts: now_ms(),
        });
        let end = StepEnd {
            id: id.clone(),
            number,
            name: name.clone(),
            started,
            ended: None,
        };
        match condition {
            Ok(true) => {}
            Ok(false) => {
                self.end_step(
                    scope,
                    &end,
                    Conclusion::Skipped,
                    Conclusion::Skipped,
                    &BTreeMap::new(),
                );
                return;
            }
            Err(e) => return self.fail_before_run(scope, &end, "if", &e),
        }

        let host_failed = scope.failed;
        // Step env, continue-on-error and timeout.
        let mut warnings: Vec<String> = Vec::new();
        let prepared: Result<(bool, Option<Duration>, bool), (&str, String)> = (|| {
            if let Some(Value::Object(step_env)) = step.get("env") {
                let cx0 = cx.get_or_insert_with(|| self.cx(scope, &env));
                let mut evaluated = Vec::new();
                for (k, v) in step_env {
                    evaluated.push((
                        k.clone(),
                        eval_scalar(v, cx0, &self.host(host_failed, is_cancelled))
                            .map_err(|e| ("env", e))?,
                    ));
                }
                env.extend(evaluated);
                cx = Some(self.cx(scope, &env));
            }
            let host = self.host(host_failed, is_cancelled);
            let mut eval = |v: &Value| -> Result<String, String> {
                let cx = cx.get_or_insert_with(|| self.cx(scope, &env));
                eval_scalar(v, cx, &host)
            };
            let coe = match step.get("continue-on-error") {
                Some(v) => {
                    let s = eval(v).map_err(|e| ("continue-on-error", e))?;
                    s == "true"
                }
                None => false,
            };
            let timeout = match step.get("timeout-minutes") {
                Some(v) => {
                    let text = eval(v).map_err(|e| ("timeout-minutes", e))?;
                    let t =
                        hangar_units::timeout_minutes(&text).map_err(|e| ("timeout-minutes", e))?;
                    if let Some(warning) = t.warning(&text) {
                        warnings.push(warning);
                    }
                    match t {
                        hangar_units::Timeout::Ignored => None,
                        t => Some(t.or(Duration::ZERO)),
                    }
                }
                None => None,
            };
            // `background: ${{ expr }}` is decided when the step starts, with
            // the step's contexts (its `env` included), as its other settings.
            let background = match step.get("background") {
                Some(v) if v.as_str().is_some_and(|s| s.contains("${{")) => {
                    match eval(v).map_err(|e| ("background", e))?.as_str() {
                        "true" => true,
                        "false" | "" => false,
                        other => {
                            return Err((
                                "background",
                                format!(
                                    "`background` must evaluate to true or false, not `{other}`"
                                ),
                            ));
                        }
                    }
                }
                _ => true,
            };
            Ok((coe, timeout, background))
        })();
        let (continue_on_error, timeout, background) = match prepared {
            Ok(p) => p,
            Err((key, e)) => return self.fail_before_run(scope, &end, key, &e),
        };
        for warning in warnings {
            let location = self.step_location("timeout-minutes");
            self.annotate_at(Some(number), Level::Warning, &warning, location);
        }
        let mut cx = cx.unwrap_or_else(|| self.cx(scope, &env));

        let cancel = if is_cancelled {
            self.state.no_cancel.clone()
        } else {
            self.state.cancel.clone()
        };
        let mode = if background { mode } else { Mode::Foreground };
        let mut bg_list = None;
        if let Mode::Background(list) = mode {
            if step.get("run").is_some() {
                match self.start_background(
                    scope,
                    step,
                    &env,
                    &cx,
                    end,
                    timeout,
                    &cancel,
                    host_failed,
                ) {
                    Ok(mut bg) => {
                        bg.continue_on_error = continue_on_error;
                        list.push(bg);
                    }
                    Err((end, e)) => {
                        self.fail_step_start(scope, &end, "run", &e, continue_on_error)
                    }
                }
                return;
            }
            bg_list = Some(list);
        }
        let result = if step.get("run").is_some() {
            self.run_script(
                scope,
                step,
                &env,
                &cx,
                number,
                timeout,
                &cancel,
                host_failed,
            )
            .await
        } else {
            let with_cx = &mut cx;
            self.background_request = bg_list.is_some();
            let r = self
                .run_uses(scope, step, &env, with_cx, number, timeout, &cancel, &name)
                .await;
            self.background_request = false;
            let fork = std::mem::take(&mut self.fork_wanted);
            if let Some(list) = bg_list {
                if let Some(started) = self.started.take() {
                    list.push(Background {
                        end,
                        continue_on_error,
                        cancel: started.cancel,
                        stopped: false,
                        files: started.files,
                        handle: BackgroundWork::Process(started.handle),
                        state_key: Some(started.state_key),
                    });
                    return;
                }
                if fork {
                    // A composite or built-in action: its steps run in a copy
                    // of the job, concluded like any background step.
                    match self.fork(scope, step, &env, &cx, number, timeout, &cancel, &name) {
                        Ok((own, files, handle)) => list.push(Background {
                            end,
                            continue_on_error,
                            cancel: own,
                            stopped: false,
                            files,
                            handle: BackgroundWork::Steps(handle),
                            state_key: None,
                        }),
                        Err(e) => self.fail_step_start(scope, &end, "uses", &e, continue_on_error),
                    }
                    return;
                }
            }
            r
        };
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                let key = if step.get("run").is_some() {
                    "run"
                } else {
                    "uses"
                };
                let location = self.step_location(key);
                self.annotate_at(Some(number), Level::Error, &e, location);
                StepResult::failed()
            }
        };
        let outcome = if result.success {
            Conclusion::Success
        } else if result.cancelled || (self.cancelled() && !is_cancelled) {
            Conclusion::Cancelled
        } else {
            Conclusion::Failure
        };
        let conclusion = if outcome == Conclusion::Failure && continue_on_error {
            Conclusion::Success
        } else {
            outcome
        };
        if conclusion != Conclusion::Success {
            scope.failed = true;
            // A composite's inner failure counts once its own step concludes.
            self.job_failed |= !scope.composite;
        }
        self.end_step(scope, &end, outcome, conclusion, &result.outputs);
    }

    /// A step that failed before it ran (its `if:`, `env:`, `continue-on-error:`
    /// or `timeout-minutes:` could not be evaluated): the error is annotated on
    /// the step, and the job goes on as after any failed step.
    fn fail_before_run(&mut self, scope: &mut Scope, end: &StepEnd, key: &str, message: &str) {
        self.fail_step_start(scope, end, key, message, false);
    }

    /// A step that could not start: the error at its `key`, and the step
    /// concluded failed, or, under `continue-on-error`, a success whose
    /// outcome is a failure (as GitHub reports it).
    fn fail_step_start(
        &mut self,
        scope: &mut Scope,
        end: &StepEnd,
        key: &str,
        message: &str,
        continue_on_error: bool,
    ) {
        let location = self.step_location(key);
        self.annotate_at(Some(end.number), Level::Error, message, location);
        let conclusion = if continue_on_error {
            Conclusion::Success
        } else {
            scope.failed = true;
            self.job_failed |= !scope.composite;
            Conclusion::Failure
        };
        self.end_step(
            scope,
            end,
            Conclusion::Failure,
            conclusion,
            &BTreeMap::new(),
        );
    }

    /// Records a step's result in `steps.<id>` and reports it finished.
    fn end_step(
        &self,
        scope: &mut Scope,
        end: &StepEnd,
        outcome: Conclusion,
        conclusion: Conclusion,
        outputs: &BTreeMap<String, String>,
    ) {
        if let Some(id) = &end.id {
            scope.steps.insert(
                id.clone(),
                json!({"outputs": outputs, "outcome": outcome.as_str(), "conclusion": conclusion.as_str()}),
            );
        }
        self.state.reporter.event(Event::StepFinished {
            job: self.state.spec.key.clone(),
            step: end.number,
            name: end.name.clone(),
            outcome,
            conclusion,
            duration_ms: end
                .ended
                .map_or_else(|| end.started.elapsed(), |(at, _)| at - end.started)
                .as_millis() as u64,
            ts: end.ended.map_or_else(now_ms, |(_, ts)| ts),
        });
        self.state.reporter.flush();
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_script(
        &mut self,
        scope: &mut Scope,
        step: &Value,
        env: &IndexMap<String, String>,
        cx: &Contexts,
        number: usize,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        failed: bool,
    ) -> Result<StepResult, String> {
        let spec = self.script_spec(scope, step, env, cx, failed, cancel, None)?;
        self.exec(spec, number, timeout, cancel, env).await
    }

    /// The process of a `run:` step. A background step (`own` files) gets its
    /// own script file and its own env files, so that it and the steps
    /// running beside it never read or empty each other's.
    #[allow(clippy::too_many_arguments)]
    fn script_spec(
        &self,
        scope: &Scope,
        step: &Value,
        env: &IndexMap<String, String>,
        cx: &Contexts,
        failed: bool,
        cancel: &CancellationToken,
        own: Option<(usize, &Files)>,
    ) -> Result<Spec, String> {
        let host = self.host(failed, cancel.is_cancelled());
        let script = eval_scalar(step.get("run").unwrap_or(&Value::Null), cx, &host)?;
        let defaults_run = |key: &str| -> Option<Value> {
            if scope.composite {
                return None;
            }
            self.state
                .doc
                .pointer(&format!("/defaults/run/{key}"))
                .or_else(|| {
                    self.state
                        .spec
                        .workflow
                        .defaults
                        .as_ref()
                        .and_then(|d| d.pointer(&format!("/run/{key}")))
                })
                .cloned()
        };
        let shell_v = step.get("shell").cloned().or_else(|| defaults_run("shell"));
        let shell_text = match shell_v {
            Some(v) => Some(eval_scalar(&v, cx, &host)?),
            None => None,
        };
        let wd_v = step
            .get("working-directory")
            .cloned()
            .or_else(|| defaults_run("working-directory"));
        let cwd = match wd_v {
            Some(v) => {
                let wd = eval_scalar(&v, cx, &host)?;
                self.state.run.workspace.join(wd)
            }
            None => self.state.run.workspace.clone(),
        };
        let mut extra = vec![("GITHUB_ACTION".to_string(), self.state.action.clone())];
        if let Some((_, files)) = own {
            for (k, p) in [
                ("GITHUB_ENV", &files.env),
                ("GITHUB_PATH", &files.path),
                ("GITHUB_OUTPUT", &files.output),
                ("GITHUB_STATE", &files.state),
                ("GITHUB_STEP_SUMMARY", &files.summary),
            ] {
                extra.push((k.to_string(), p.to_string_lossy().into_owned()));
            }
        }
        if let Some(p) = &scope.action_path {
            extra.push((
                "GITHUB_ACTION_PATH".to_string(),
                p.to_string_lossy().into_owned(),
            ));
        }
        let process_env = self.process_env(env, &extra);
        let shell = shell::resolve(
            shell_text.as_deref(),
            process_env.get("PATH").map(String::as_str),
        )?;
        // One script file per job and extension, rewritten for each step:
        // creating a new inode per step costs more than the step itself on
        // ext4 (its allocator scans for recently deleted inodes), and a step's
        // script is done with once its process has exited.
        let script_path = match own {
            Some((number, _)) => self
                .state
                .tmp
                .join(format!("step-{number}{}", shell.extension)),
            None => self.state.tmp.join(format!("step{}", shell.extension)),
        };
        // 0600 in the job's 0700 temporary directory: another user of the
        // machine can neither read the script (it may hold evaluated secrets)
        // nor swap it before it runs.
        write_private(&script_path, script.as_bytes())
            .map_err(|e| format!("cannot write the step's script: {e}"))?;
        let (program, args) = shell.command_for(&script_path);
        let mut process_env = process_env;
        if matches!(program.as_str(), "bash" | "sh") {
            // $SHELL names the shell running the step (act's containers behave so).
            if let Some(p) = shell::which(&program, process_env.get("PATH").map(String::as_str)) {
                process_env.insert("SHELL".into(), p.to_string_lossy().into_owned());
            }
        }
        Ok(Spec {
            program,
            args,
            cwd,
            env: process_env.into_iter().collect(),
            jail: self.state.jail.clone(),
        })
    }

    /// Starts a background `run:` step's process; on error, gives back the
    /// step's end to report it failed.
    #[allow(clippy::too_many_arguments)]
    fn start_background(
        &mut self,
        scope: &Scope,
        step: &Value,
        env: &IndexMap<String, String>,
        cx: &Contexts,
        end: StepEnd,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        failed: bool,
    ) -> Result<Background, (StepEnd, String)> {
        let number = end.number;
        let files = match self.background_files(number) {
            Ok(files) => files,
            Err(e) => return Err((end, e)),
        };
        let spec =
            match self.script_spec(scope, step, env, cx, failed, cancel, Some((number, &files))) {
                Ok(spec) => spec,
                Err(e) => return Err((end, e)),
            };
        let (own, handle) = self.spawn_background(spec, number, env, timeout, cancel);
        Ok(Background {
            end,
            continue_on_error: false,
            cancel: own,
            stopped: false,
            files,
            handle: BackgroundWork::Process(handle),
            state_key: None,
        })
    }

    /// A background step's own env, path, output, state and summary files,
    /// so that it and the steps running beside it never read or empty
    /// each other's.
    fn background_files(&self, number: usize) -> Result<Files, String> {
        let dir = self.state.tmp.join(format!("step-{number}"));
        let files = Files {
            env: dir.join("set_env"),
            path: dir.join("add_path"),
            output: dir.join("set_output"),
            state: dir.join("save_state"),
            summary: dir.join("step_summary"),
        };
        std::fs::create_dir_all(&dir)
            .and_then(|()| {
                [
                    &files.env,
                    &files.path,
                    &files.output,
                    &files.state,
                    &files.summary,
                ]
                .into_iter()
                .try_for_each(|f| write_private(f, b""))
            })
            .map_err(|e| format!("cannot create the step's files: {e}"))?;
        Ok(files)
    }

    /// Starts a background step's process as a task of its own, cancellable
    /// alone (`cancel:`) or with the job.
    fn spawn_background(
        &self,
        spec: Spec,
        number: usize,
        env: &IndexMap<String, String>,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
    ) -> (CancellationToken, BackgroundTask) {
        let mut sink = self.step_sink(number, env);
        sink.matchers = self.state.matchers.clone();
        let own = cancel.child_token();
        let token = own.clone();
        let handle = tokio::spawn(async move {
            let (sink, exit) = process::run(spec, sink, &token, timeout).await;
            (sink, exit, Instant::now(), now_ms())
        });
        (own, handle)
    }

    /// Waits for a background step and concludes it as a step that ran in
    /// order would conclude at this point: its outputs, outcome and env
    /// changes are seen from here on.
    async fn finish_background(&mut self, scope: &mut Scope, bg: Background) {
        let Background {
            mut end,
            continue_on_error,
            stopped,
            files,
            handle,
            state_key,
            ..
        } = bg;
        let number = end.number;
        let handle = match handle {
            BackgroundWork::Process(handle) => handle,
            BackgroundWork::Steps(handle) => {
                let result = match handle.await {
                    Ok(forked) => {
                        end.ended = Some(forked.ended);
                        self.take_forked(number, forked, stopped)
                    }
                    Err(e) => {
                        self.annotate(
                            Some(number),
                            Level::Error,
                            &format!("the step's task failed: {e}"),
                        );
                        StepResult::failed()
                    }
                };
                return self.conclude_background(scope, &end, result, continue_on_error, stopped);
            }
        };
        let result = match handle.await {
            Ok((sink, exit, at, ts)) => {
                end.ended = Some((at, ts));
                if stopped && exit.cancelled {
                    // `cancel:` asked for it: not a failure of the step's own.
                    let mut sink = sink;
                    sink.finish();
                    StepResult {
                        success: false,
                        cancelled: true,
                        outputs: BTreeMap::new(),
                    }
                } else {
                    let r = self.finish_exec(sink, exit, number, &files, false);
                    if let Some(key) = state_key
                        && let Some(saved) = self.state.states.remove(&number.to_string())
                    {
                        self.state.states.entry(key).or_default().extend(saved);
                    }
                    r
                }
            }
            Err(e) => {
                self.annotate(
                    Some(number),
                    Level::Error,
                    &format!("the step's task failed: {e}"),
                );
                StepResult::failed()
            }
        };
        self.conclude_background(scope, &end, result, continue_on_error, stopped);
    }

    /// A background step's end, as a step that ran in order would end here.
    fn conclude_background(
        &mut self,
        scope: &mut Scope,
        end: &StepEnd,
        result: StepResult,
        continue_on_error: bool,
        stopped: bool,
    ) {
        let outcome = if result.success {
            Conclusion::Success
        } else if result.cancelled {
            Conclusion::Cancelled
        } else {
            Conclusion::Failure
        };
        let conclusion = if outcome == Conclusion::Failure && continue_on_error {
            Conclusion::Success
        } else {
            outcome
        };
        if conclusion == Conclusion::Failure || (conclusion == Conclusion::Cancelled && !stopped) {
            scope.failed = true;
            self.job_failed |= !scope.composite;
        }
        self.end_step(scope, end, outcome, conclusion, &result.outputs);
    }

    /// Starts a composite or built-in `uses:` step in the background: a copy
    /// of the job runs it as [`Job::run_uses`] would in order, with the
    /// step's own env, path, output, state and summary files (as a
    /// background `run:` step has) and a cancel token of its own, on a task
    /// of its own; step numbers come from the job's one counter.
    #[allow(clippy::too_many_arguments)]
    fn fork(
        &mut self,
        scope: &Scope,
        step: &Value,
        env: &IndexMap<String, String>,
        cx: &Contexts,
        number: usize,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        name: &str,
    ) -> Result<(CancellationToken, Files, tokio::task::JoinHandle<Forked>), String> {
        let files = self.background_files(number)?;
        // A temporary directory of its own: steps that run in order write
        // their script to one file per directory, rewritten for each step.
        let tmp = self.state.tmp.join(format!("fork-{number}"));
        std::fs::create_dir_all(&tmp)
            .map_err(|e| format!("cannot create the step's directory: {e}"))?;
        // The job's env names its files: the copy's steps write to the step's.
        let mut base_env = self.state.base_env.clone();
        for (k, p) in [
            ("GITHUB_ENV", &files.env),
            ("GITHUB_PATH", &files.path),
            ("GITHUB_OUTPUT", &files.output),
            ("GITHUB_STATE", &files.state),
            ("GITHUB_STEP_SUMMARY", &files.summary),
        ] {
            base_env.insert(k.to_string(), p.to_string_lossy().into_owned());
        }
        let own = cancel.child_token();
        let state = JobState {
            tmp,
            files: files.clone(),
            base_env,
            cancel: own.clone(),
            ..self.state.clone()
        };
        let engine = self.engine.clone();
        let (mut scope, step, env, mut cx) = (scope.clone(), step.clone(), env.clone(), cx.clone());
        let name = name.to_string();
        let token = own.clone();
        let handle = tokio::spawn(async move {
            let mut job = Job::with_state(&engine, state);
            let env_before = job.state.env.clone();
            let path_before = job.state.path_prepend.len();
            let result = job
                .run_uses(
                    &mut scope, &step, &env, &mut cx, number, timeout, &token, &name,
                )
                .await;
            Forked {
                result,
                env: std::mem::take(&mut job.state.env),
                env_before,
                path_prepend: std::mem::take(&mut job.state.path_prepend),
                path_before,
                states: std::mem::take(&mut job.state.states),
                post: std::mem::take(&mut job.post),
                fetched: std::mem::take(&mut job.state.fetched),
                ended: (Instant::now(), now_ms()),
            }
        });
        Ok((own, files, handle))
    }

    /// Takes in what a background composite or built-in step's copy of the
    /// job changed, now that it is waited for: its env and PATH changes,
    /// the state and post steps of the actions it ran, and its result.
    fn take_forked(&mut self, number: usize, forked: Forked, stopped: bool) -> StepResult {
        for (k, v) in forked.env {
            if forked.env_before.get(&k) != Some(&v) {
                self.state.env.insert(k, v);
            }
        }
        // Entries it added went to the front of its list.
        let added = forked.path_prepend.len().saturating_sub(forked.path_before);
        for p in forked.path_prepend.into_iter().take(added).rev() {
            self.state.path_prepend.insert(0, p);
        }
        for (k, v) in forked.states {
            self.state.states.entry(k).or_default().extend(v);
        }
        self.post.extend(forked.post);
        for (k, v) in forked.fetched {
            self.state.fetched.entry(k).or_insert(v);
        }
        match forked.result {
            // `cancel:` asked for it: not a failure of the step's own.
            _ if stopped => StepResult {
                success: false,
                cancelled: true,
                outputs: BTreeMap::new(),
            },
            Ok(r) => r,
            Err(e) => {
                let location = self.step_location("uses");
                self.annotate_at(Some(number), Level::Error, &e, location);
                StepResult::failed()
            }
        }
    }

    /// `wait: ID | [IDS]`, `wait-all:` and `cancel: ID`: a step of their own
    /// (reported as one, so its place in the log shows what it waited for).
    async fn control_step(
        &mut self,
        scope: &mut Scope,
        step: &Value,
        background: &mut Vec<Background>,
    ) {
        let ids: Option<Vec<String>> = match (step.get("wait"), step.get("cancel")) {
            (Some(Value::Array(items)), _) => {
                Some(items.iter().filter_map(scalar_string).collect())
            }
            (Some(v), _) | (None, Some(v)) => Some(scalar_string(v).into_iter().collect()),
            (None, None) => None,
        };
        let cancel = step.get("cancel").is_some();
        let number = self.next_number();
        let name = match (step.get("name").and_then(scalar_string), &ids) {
            (Some(n), _) => n,
            (None, Some(ids)) if cancel => format!("Cancel {}", ids.join(", ")),
            (None, Some(ids)) => format!("Wait for {}", ids.join(", ")),
            (None, None) => "Wait for all background steps".to_string(),
        };
        self.state.reporter.event(Event::StepStarted {
            job: self.state.spec.key.clone(),
            step: number,
            name: name.clone(),
            ts: now_ms(),
        });
        let end = StepEnd {
            id: step.get("id").and_then(scalar_string),
            number,
            name,
            started: Instant::now(),
            ended: None,
        };
        let mut chosen = Vec::new();
        let mut missing = Vec::new();
        match &ids {
            None => chosen.append(background),
            Some(ids) => {
                for id in ids {
                    match background
                        .iter()
                        .position(|b| b.end.id.as_deref() == Some(id.as_str()))
                    {
                        Some(i) => chosen.push(background.remove(i)),
                        None => missing.push(id.clone()),
                    }
                }
            }
        }
        if cancel {
            for bg in &mut chosen {
                bg.stopped = true;
                bg.cancel.cancel();
            }
        }
        for bg in chosen {
            self.finish_background(scope, bg).await;
        }
        // `hangar validate` refuses these; at run time an id may name a step
        // that was skipped by its `if:`, or one already waited for: GitHub
        // has nothing to wait for then either.
        for id in missing {
            self.annotate(
                Some(number),
                Level::Warning,
                &format!("no background step `{id}` is running: nothing to wait for"),
            );
        }
        self.end_step(
            scope,
            &end,
            Conclusion::Success,
            Conclusion::Success,
            &BTreeMap::new(),
        );
    }

    /// The complete environment of a step process.
    fn process_env(
        &self,
        env: &IndexMap<String, String>,
        extra: &[(String, String)],
    ) -> IndexMap<String, String> {
        let mut out = self.state.base_env.clone();
        for (k, v) in env {
            out.insert(k.clone(), v.clone());
        }
        for (k, v) in extra {
            out.insert(k.clone(), v.clone());
        }
        if !self.state.path_prepend.is_empty() {
            let base = out.get("PATH").cloned().unwrap_or_default();
            let mut parts = self.state.path_prepend.clone();
            if !base.is_empty() {
                parts.push(base);
            }
            out.insert("PATH".into(), parts.join(":"));
        }
        out
    }

    /// Runs a process, then applies what it wrote to the env files.
    async fn exec(
        &mut self,
        spec: Spec,
        number: usize,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        env: &IndexMap<String, String>,
    ) -> Result<StepResult, String> {
        let mut sink = self.step_sink(number, env);
        sink.matchers = std::mem::take(&mut self.state.matchers);
        let (sink, exit) = process::run(spec, sink, cancel, timeout).await;
        let files = self.state.files.clone();
        Ok(self.finish_exec(sink, exit, number, &files, true))
    }

    /// Where a step's output goes: its own log, masked, with its workflow commands.
    fn step_sink(&self, number: usize, env: &IndexMap<String, String>) -> StepSink {
        let mut sink = StepSink::new(
            &self.state.spec.key,
            number,
            self.state.reporter.clone(),
            self.state.masker.clone(),
        );
        let allowed = |name: &str| {
            env.get(name)
                .or_else(|| self.state.base_env.get(name))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        sink.allow_unsecure = allowed("ACTIONS_ALLOW_UNSECURE_COMMANDS");
        sink.allow_unsecure_stop = allowed("ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS");
        sink.debug = self.state.debug;
        sink.workspace = self.state.run.workspace.clone();
        sink
    }

    /// After a step's process: its annotations, what it wrote to its env
    /// files and commands. A step that ran in order hands its problem
    /// matchers on (`keep_matchers`); a background step's stay its own.
    fn finish_exec(
        &mut self,
        mut sink: StepSink,
        exit: process::Exit,
        number: usize,
        files: &Files,
        keep_matchers: bool,
    ) -> StepResult {
        sink.finish();
        if keep_matchers {
            self.state.matchers = std::mem::take(&mut sink.matchers);
        }
        if let Some(e) = &exit.error {
            self.annotate(Some(number), Level::Error, e);
        }
        if exit.timed_out {
            self.annotate(Some(number), Level::Error, "The action has timed out.");
        } else if let Some(code) = exit.code.filter(|c| *c != 0) {
            if !exit.cancelled {
                self.annotate(
                    Some(number),
                    Level::Error,
                    &format!("Process completed with exit code {code}."),
                );
            }
        } else if exit.code.is_none() && exit.error.is_none() && !exit.cancelled {
            self.annotate(
                Some(number),
                Level::Error,
                "The process was killed by a signal.",
            );
        }
        let mut success = exit.success();
        for e in &sink.errors {
            self.annotate(Some(number), Level::Error, e);
            success = false;
        }
        for (k, v) in sink.env.drain(..) {
            self.state.env.insert(k, v);
        }
        for p in sink.paths.drain(..) {
            self.prepend_path(p);
        }
        let mut outputs = std::mem::take(&mut sink.outputs);
        let state = std::mem::take(&mut sink.state);
        match self.collect_files(number, files) {
            Ok((file_outputs, file_state)) => {
                outputs.extend(file_outputs);
                self.state.states.insert(
                    format!("{number}"),
                    state.into_iter().chain(file_state).collect(),
                );
            }
            Err(e) => {
                self.annotate(Some(number), Level::Error, &e);
                success = false;
            }
        }
        StepResult {
            success,
            cancelled: exit.cancelled,
            outputs,
        }
    }

    fn prepend_path(&mut self, p: String) {
        self.state.path_prepend.retain(|x| *x != p);
        self.state.path_prepend.insert(0, p);
    }

    /// Reads and empties the env files after a process.
    fn collect_files(&mut self, number: usize, files: &Files) -> Result<(Pairs, Pairs), String> {
        let take = |p: &Path| -> Result<Option<String>, String> {
            // One stat for the common case of an untouched file.
            if std::fs::metadata(p).map(|m| m.len() == 0).unwrap_or(true) {
                return Ok(None);
            }
            let text = std::fs::read_to_string(p).unwrap_or_default();
            if text.is_empty() {
                return Ok(None);
            }
            std::fs::write(p, "").map_err(|e| format!("cannot reset {}: {e}", p.display()))?;
            Ok(Some(text))
        };
        // As the runner's FileCommandManager: a file that cannot be read
        // fails the step, naming the file command.
        let failed = |name: &str, e: String| {
            format!("Unable to process file command '{name}' successfully. {e}")
        };
        if let Some(text) = take(&files.env)? {
            for (k, v) in envfile::parse_key_values(&text).map_err(|e| failed("env", e))? {
                // GitHub refuses NODE_OPTIONS from GITHUB_ENV (an error
                // annotation; the step goes on).
                if k.eq_ignore_ascii_case("NODE_OPTIONS") {
                    self.annotate(
                        Some(number),
                        Level::Error,
                        "Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command.",
                    );
                    continue;
                }
                self.state.env.insert(k, v);
            }
        }
        if let Some(text) = take(&files.path)? {
            for p in envfile::parse_paths(&text) {
                self.prepend_path(p);
            }
        }
        let mut outputs = BTreeMap::new();
        if let Some(text) = take(&files.output)? {
            outputs.extend(envfile::parse_key_values(&text).map_err(|e| failed("output", e))?);
        }
        let mut state = BTreeMap::new();
        if let Some(text) = take(&files.state)? {
            state.extend(envfile::parse_key_values(&text).map_err(|e| failed("state", e))?);
        }
        if let Some(text) = take(&files.summary)? {
            self.state.reporter.event(Event::Summary {
                job: self.state.spec.key.clone(),
                step: number,
                markdown: self.state.masker.mask(&text).into_owned(),
                ts: now_ms(),
            });
        }
        Ok((outputs, state))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_uses(
        &mut self,
        scope: &mut Scope,
        step: &Value,
        env: &IndexMap<String, String>,
        cx: &mut Contexts,
        number: usize,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        name: &str,
    ) -> Result<StepResult, String> {
        // Only this action's main may start in the background, not the
        // steps of a composite it runs.
        let background = std::mem::take(&mut self.background_request);
        let host = self.host(scope.failed, cancel.is_cancelled());
        let uses = eval_scalar(step.get("uses").unwrap_or(&Value::Null), cx, &host)?;
        let mut with = IndexMap::new();
        if let Some(Value::Object(w)) = step.get("with") {
            for (k, v) in w {
                with.insert(k.clone(), eval_scalar(v, cx, &host)?);
            }
        }
        if let Some(image) = uses.strip_prefix("docker://") {
            return Err(format!(
                "step `uses: docker://{image}` needs a container engine; hangar runs steps on the host without Docker"
            ));
        }
        let (dir, action_ref) = if uses.starts_with("./") || uses.starts_with('/') {
            (self.state.run.workspace.join(&uses), uses.clone())
        } else if let Some(rest) = uses.strip_prefix("$/") {
            // GitHub's self-repository syntax: the action in this repository
            // at the workflow's commit, which is the workspace hangar runs in.
            (
                crate::actions::self_path(&self.state.run.workspace, rest, &uses)?,
                uses.clone(),
            )
        } else {
            let (path, version) = uses
                .split_once('@')
                .ok_or_else(|| format!("`uses: {uses}`: expected {{owner}}/{{repo}}[/path]@ref"))?;
            let lower = path.to_ascii_lowercase();
            let mut parts = lower.splitn(3, '/');
            let owner = parts.next().unwrap_or("");
            let repo = parts.next().unwrap_or("");
            let sub = parts.next().unwrap_or("");
            let base = format!("{owner}/{repo}");
            // A local copy given for an action overrides hangar's built-in
            // look-alike of it: with the cache and artifact services in place
            // the real `actions/cache` runs as itself.
            let builtin = self
                .engine
                .builtin(&lower)
                .or_else(|| self.engine.builtin(&base))
                .filter(|_| self.engine.action_dir(&base, version).is_none());
            if let Some(b) = builtin {
                if background {
                    // Run by a copy of the job (see `Job::fork`).
                    self.fork_wanted = true;
                    return Ok(StepResult::failed());
                }
                return self
                    .run_builtin(b, &lower, version, with, env, number, timeout, cancel, name)
                    .await;
            }
            match self.engine.action_dir(&base, version) {
                Some(dir) => (
                    if sub.is_empty() {
                        dir
                    } else {
                        dir.join(&path[base.len() + 1..])
                    },
                    uses.clone(),
                ),
                None => {
                    let r = crate::actions::RemoteRef::parse(&uses)?;
                    let fetched = self.fetch_action(&uses).await?;
                    (fetched.path(&r), uses.clone())
                }
            }
        };
        let action = load_action(&dir)?;
        let using = action
            .pointer("/runs/using")
            .and_then(scalar_string)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let inputs = action_inputs(&action, &with);
        match using.as_str() {
            "composite" if background => {
                // Run by a copy of the job (see `Job::fork`).
                self.fork_wanted = true;
                Ok(StepResult::failed())
            }
            "composite" => {
                let mut inner = Scope {
                    inputs: None,
                    env: env.clone(),
                    action_path: Some(dir.clone()),
                    composite: true,
                    depth: scope.depth + 1,
                    failed: false,
                    steps: Map::new(),
                };
                if inner.depth > 20 {
                    return Err(format!(
                        "`uses: {uses}`: composite actions nested more than 20 deep"
                    ));
                }
                // Input defaults may use expressions; evaluate them in the
                // composite's context.
                let mut input_values = Map::new();
                {
                    let cx2 = self.cx(&inner, env);
                    let host = self.host(false, false);
                    for (k, v) in &inputs {
                        let value = match v {
                            InputValue::Given(s) => s.clone(),
                            InputValue::Default(d) => eval_scalar(d, &cx2, &host)?,
                        };
                        input_values.insert(k.clone(), json!(value));
                    }
                }
                inner.inputs = Some(Value::Object(input_values));
                let steps: Vec<Value> = action
                    .pointer("/runs/steps")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                self.run_steps(&mut inner, &steps).await;
                let mut outputs = BTreeMap::new();
                if let Some(Value::Object(defs)) = action.get("outputs") {
                    let mut out_env = self.state.env.clone();
                    out_env.extend(inner.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                    let cx2 = self.cx(&inner, &out_env);
                    let host = self.host(inner.failed, self.cancelled());
                    for (k, def) in defs {
                        if let Some(v) = def.get("value") {
                            outputs.insert(k.clone(), eval_scalar(v, &cx2, &host)?);
                        }
                    }
                }
                Ok(StepResult {
                    success: !inner.failed,
                    cancelled: false,
                    outputs,
                })
            }
            u if u.starts_with("node") => {
                let runtime = crate::actions::node::Runtime::parse(u)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                let mut action_env = env.clone();
                for (k, v) in &inputs {
                    let value = match v {
                        InputValue::Given(s) => s.clone(),
                        InputValue::Default(d) => eval_scalar(d, cx, &self.host(false, false))?,
                    };
                    action_env.insert(input_env_name(k), value);
                }
                self.set_action_env(&mut action_env, &dir, &action_ref);
                let runs = action.get("runs").cloned().unwrap_or(Value::Null);
                // Pre, main and post of one action share its state
                // (`GITHUB_STATE` → `STATE_*`); a step of the job's own list
                // is keyed by its index, since its `pre` ran before any step.
                let state_key = match (self.state.step_index, scope.composite) {
                    (Some(i), false) => format!("step-{i}"),
                    _ => format!("{number}"),
                };
                let local = is_local_uses(&action_ref);
                if let Some(pre) = runs.get("pre").and_then(scalar_string) {
                    if local {
                        // As the runner: `pre` of a local action never runs
                        // (it would run before the checkout that brings it).
                        self.annotate(
                            Some(number),
                            Level::Warning,
                            &format!("`pre` execution is not supported for local action from '{action_ref}'"),
                        );
                    } else if self.state.step_index.is_none() || scope.composite {
                        // Inside a composite there is no job start to run it
                        // at: it runs right before its main.
                        let cond = runs
                            .get("pre-if")
                            .and_then(scalar_string)
                            .unwrap_or_else(|| "always()".into());
                        if self.eval_action_condition(&cond, scope, env)? {
                            let r = self
                                .run_node(
                                    runtime,
                                    &dir,
                                    &pre,
                                    &action_env,
                                    number,
                                    timeout,
                                    cancel,
                                    &state_key,
                                )
                                .await?;
                            if !r.success {
                                return Ok(r);
                            }
                        }
                    }
                }
                let main = runs
                    .get("main")
                    .and_then(scalar_string)
                    .ok_or_else(|| format!("{}: `runs.main` is missing", dir.display()))?;
                let result = if background {
                    let files = self.background_files(number)?;
                    let spec = self.node_spec(
                        runtime,
                        &dir,
                        &main,
                        &action_env,
                        number,
                        &state_key,
                        Some(&files),
                    )?;
                    let (own, handle) =
                        self.spawn_background(spec, number, &action_env, timeout, cancel);
                    self.started = Some(StartedAction {
                        files,
                        cancel: own,
                        handle,
                        state_key: state_key.clone(),
                    });
                    // Concluded when it is waited for.
                    StepResult {
                        success: true,
                        cancelled: false,
                        outputs: BTreeMap::new(),
                    }
                } else {
                    self.run_node(
                        runtime,
                        &dir,
                        &main,
                        &action_env,
                        number,
                        timeout,
                        cancel,
                        &state_key,
                    )
                    .await?
                };
                if let Some(post) = runs.get("post").and_then(scalar_string) {
                    let cond = runs
                        .get("post-if")
                        .and_then(scalar_string)
                        .unwrap_or_else(|| "always()".into());
                    self.post.push(Post::Js {
                        name: format!("Post {name}"),
                        runtime,
                        dir: dir.clone(),
                        file: post,
                        condition: cond,
                        env: action_env,
                        state_key,
                    });
                }
                Ok(result)
            }
            "docker" => Err(format!(
                "the action at {} runs in Docker (`runs.using: docker`), which needs a container engine; hangar runs on the host",
                dir.display()
            )),
            other => Err(format!(
                "{}: unsupported `runs.using: {other}` (expected composite, node12/16/20/24 or docker)",
                dir.display()
            )),
        }
    }

    /// Resolves every remote `uses:` of the job's steps at once, in parallel,
    /// before the first step (as GitHub's "Set up job"), so a job of six
    /// actions waits for the slowest forge answer, not the sum of six.
    async fn prefetch_actions(&mut self, steps: &[Value]) {
        let mut wanted: Vec<String> = Vec::new();
        for step in steps {
            let Some(uses) = step.get("uses").and_then(Value::as_str) else {
                continue;
            };
            if uses.contains("${{")
                || !self.is_fetched_remote(uses)
                || wanted.iter().any(|w| w == uses)
            {
                continue;
            }
            wanted.push(uses.to_string());
        }
        if wanted.is_empty() {
            return;
        }
        let cache = crate::actions::ActionCache::new(&self.state.run.data_dir);
        let tasks: Vec<_> = wanted
            .iter()
            .map(|uses| {
                let (cache, source, uses) = (
                    cache.clone(),
                    self.engine.action_source().clone(),
                    uses.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    let r = crate::actions::RemoteRef::parse(&uses)?;
                    cache.fetch(&source, &r)
                })
            })
            .collect();
        for (uses, task) in wanted.into_iter().zip(tasks) {
            let r = task
                .await
                .unwrap_or_else(|e| Err(format!("fetching `{uses}` stopped: {e}")));
            self.record_fetch(&uses, &r);
            self.state.fetched.insert(uses, r);
        }
    }

    /// The `pre:` of every remote JavaScript action of the job, before its
    /// first step and in step order, as GitHub runs them ("Pre Run X"): with
    /// the step's inputs evaluated at job start and `pre-if` (default
    /// `always()`) deciding; state it saves reaches the action's main and post.
    async fn run_pre_steps(&mut self, scope: &mut Scope, steps: &[Value]) {
        let ids = hangar_workflow::template::step_ids(steps.iter().map(|step| {
            hangar_workflow::template::StepIdSource {
                id: step.get("id").and_then(Value::as_str),
                uses: step.get("uses").and_then(Value::as_str),
                run: step.get("run").is_some(),
            }
        }));
        for (i, (step, action_id)) in steps.iter().zip(ids).enumerate() {
            let Some(uses) = step.get("uses").and_then(Value::as_str) else {
                continue;
            };
            let (Some(Ok(fetched)), Ok(r)) = (
                self.state.fetched.get(uses).cloned(),
                crate::actions::RemoteRef::parse(uses),
            ) else {
                continue;
            };
            let dir = fetched.path(&r);
            let Ok(action) = load_action(&dir) else {
                continue;
            };
            let runs = action.get("runs").cloned().unwrap_or(Value::Null);
            let using = runs
                .get("using")
                .and_then(scalar_string)
                .unwrap_or_default();
            let (Ok(runtime), Some(pre)) = (
                crate::actions::node::Runtime::parse(&using),
                runs.get("pre").and_then(scalar_string),
            ) else {
                continue;
            };
            self.state.action = action_id;
            self.state.step_index = Some(i);
            let cond = runs
                .get("pre-if")
                .and_then(scalar_string)
                .unwrap_or_else(|| "always()".into());
            let env = self.state.env.clone();
            let number = self.state.counter.load(Ordering::SeqCst);
            let started = Instant::now();
            let name = format!(
                "Pre {}",
                step.get("name")
                    .and_then(scalar_string)
                    .filter(|n| !n.contains("${{"))
                    .unwrap_or_else(|| Self::default_name(step))
            );
            let prepared = (|| -> Result<Option<IndexMap<String, String>>, String> {
                if !self.eval_action_condition(&cond, scope, &env)? {
                    return Ok(None);
                }
                let cx = self.cx(scope, &env);
                let host = self.host(scope.failed, self.cancelled());
                let mut with = IndexMap::new();
                if let Some(Value::Object(w)) = step.get("with") {
                    for (k, v) in w {
                        with.insert(k.clone(), eval_scalar(v, &cx, &host)?);
                    }
                }
                let mut action_env = env.clone();
                for (k, v) in action_inputs(&action, &with) {
                    let value = match v {
                        InputValue::Given(s) => s,
                        InputValue::Default(d) => eval_scalar(&d, &cx, &host)?,
                    };
                    action_env.insert(input_env_name(&k), value);
                }
                self.set_action_env(&mut action_env, &dir, uses);
                Ok(Some(action_env))
            })();
            let action_env = match prepared {
                Ok(None) => continue,
                Ok(Some(e)) => Ok(e),
                Err(e) => Err(e),
            };
            self.next_number();
            self.state.reporter.event(Event::StepStarted {
                job: self.state.spec.key.clone(),
                step: number,
                name: name.clone(),
                ts: now_ms(),
            });
            let cancel = self.state.cancel.clone();
            let result = match action_env {
                Ok(action_env) => self
                    .run_node(
                        runtime,
                        &dir,
                        &pre,
                        &action_env,
                        number,
                        None,
                        &cancel,
                        &format!("step-{i}"),
                    )
                    .await
                    .map(|r| r.success),
                Err(e) => Err(e),
            };
            let ok = result.unwrap_or_else(|e| {
                self.annotate(Some(number), Level::Error, &e);
                false
            });
            let c = if ok {
                Conclusion::Success
            } else {
                Conclusion::Failure
            };
            if !ok {
                scope.failed = true;
                self.job_failed = true;
            }
            self.state.reporter.event(Event::StepFinished {
                job: self.state.spec.key.clone(),
                step: number,
                name,
                outcome: c,
                conclusion: c,
                duration_ms: started.elapsed().as_millis() as u64,
                ts: now_ms(),
            });
        }
        self.state.step_index = None;
    }

    /// A `uses:` that names a remote action hangar fetches (not a local path,
    /// Docker image, built-in or `--action-dir` override).
    fn is_fetched_remote(&self, uses: &str) -> bool {
        if uses.starts_with("./")
            || uses.starts_with('/')
            || uses.starts_with("$/")
            || uses.starts_with("docker://")
        {
            return false;
        }
        let Some((path, version)) = uses.split_once('@') else {
            return false;
        };
        let lower = path.to_ascii_lowercase();
        let base: String = lower.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
        self.engine.builtin(&lower).is_none()
            && self.engine.builtin(&base).is_none()
            && self.engine.action_dir(&base, version).is_none()
    }

    async fn fetch_action(&mut self, uses: &str) -> Result<crate::actions::Fetched, String> {
        if let Some(r) = self.state.fetched.get(uses) {
            return r.clone();
        }
        let cache = crate::actions::ActionCache::new(&self.state.run.data_dir);
        let source = self.engine.action_source().clone();
        let owned = uses.to_string();
        let r = tokio::task::spawn_blocking(move || {
            let r = crate::actions::RemoteRef::parse(&owned)?;
            cache.fetch(&source, &r)
        })
        .await
        .unwrap_or_else(|e| Err(format!("fetching `{uses}` stopped: {e}")));
        self.record_fetch(uses, &r);
        self.state.fetched.insert(uses.to_string(), r.clone());
        r
    }

    fn record_fetch(&self, uses: &str, r: &Result<crate::actions::Fetched, String>) {
        if let Ok(f) = r {
            self.state.reporter.event(Event::ActionResolved {
                job: self.state.spec.key.clone(),
                uses: uses.to_string(),
                commit: f.commit.clone(),
                source: self.engine.action_source().display_url(),
                cached: f.cached,
                ts: now_ms(),
            });
        }
    }

    fn eval_action_condition(
        &self,
        cond: &str,
        scope: &Scope,
        env: &IndexMap<String, String>,
    ) -> Result<bool, String> {
        let cx = self.cx(scope, env);
        let c =
            Condition::parse(cond).map_err(|e| format!("`{cond}`: {}", e.github_message(cond)))?;
        c.eval(&cx, &self.host(scope.failed, self.cancelled()))
            .map_err(|e| format!("`{cond}`: {e}"))
    }

    /// `GITHUB_ACTION_PATH`, `GITHUB_ACTION`, and for a remote action its
    /// `GITHUB_ACTION_REPOSITORY` and `GITHUB_ACTION_REF` (empty for a local
    /// one, as on GitHub).
    fn set_action_env(&self, action_env: &mut IndexMap<String, String>, dir: &Path, uses: &str) {
        action_env.insert(
            "GITHUB_ACTION_PATH".into(),
            dir.to_string_lossy().into_owned(),
        );
        action_env.insert("GITHUB_ACTION".into(), self.state.action.clone());
        let (repository, git_ref) = if is_local_uses(uses) {
            (String::new(), String::new())
        } else {
            let (path, r) = uses.rsplit_once('@').unwrap_or((uses, ""));
            let repo: Vec<&str> = path.splitn(3, '/').take(2).collect();
            (repo.join("/"), r.to_string())
        };
        action_env.insert("GITHUB_ACTION_REPOSITORY".into(), repository);
        action_env.insert("GITHUB_ACTION_REF".into(), git_ref);
    }

    /// Runs one of a JavaScript action's files with the node chosen for its
    /// runtime; what it saves with `GITHUB_STATE` joins the action's state.
    #[allow(clippy::too_many_arguments)]
    async fn run_node(
        &mut self,
        runtime: crate::actions::node::Runtime,
        dir: &Path,
        file: &str,
        env: &IndexMap<String, String>,
        number: usize,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        state_key: &str,
    ) -> Result<StepResult, String> {
        let spec = self.node_spec(runtime, dir, file, env, number, state_key, None)?;
        let r = self.exec(spec, number, timeout, cancel, env).await;
        if let Some(saved) = self.state.states.remove(&number.to_string()) {
            self.state
                .states
                .entry(state_key.to_string())
                .or_default()
                .extend(saved);
        }
        r
    }

    /// The process of one of a JavaScript action's files: the node chosen
    /// for its runtime, the action's saved state as `STATE_*`, and for a
    /// background step (`own`), its own env files.
    #[allow(clippy::too_many_arguments)]
    fn node_spec(
        &self,
        runtime: crate::actions::node::Runtime,
        dir: &Path,
        file: &str,
        env: &IndexMap<String, String>,
        number: usize,
        state_key: &str,
        own: Option<&Files>,
    ) -> Result<Spec, String> {
        let node = self.engine.node_for(
            runtime,
            self.process_env(env, &[]).get("PATH").map(String::as_str),
        )?;
        if let Some(w) = node.warning(runtime) {
            self.annotate(Some(number), Level::Warning, &w);
        }
        let state = self
            .state
            .states
            .get(state_key)
            .cloned()
            .unwrap_or_default();
        let mut extra: Vec<(String, String)> = state
            .iter()
            .map(|(k, v)| (format!("STATE_{k}"), v.clone()))
            .collect();
        if let Some(files) = own {
            for (k, p) in [
                ("GITHUB_ENV", &files.env),
                ("GITHUB_PATH", &files.path),
                ("GITHUB_OUTPUT", &files.output),
                ("GITHUB_STATE", &files.state),
                ("GITHUB_STEP_SUMMARY", &files.summary),
            ] {
                extra.push((k.to_string(), p.to_string_lossy().into_owned()));
            }
        }
        let process_env = self.process_env(env, &extra);
        Ok(Spec {
            program: node.program.to_string_lossy().into_owned(),
            args: vec![dir.join(file).to_string_lossy().into_owned()],
            cwd: self.state.run.workspace.clone(),
            env: process_env.into_iter().collect(),
            jail: self.state.jail.clone(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_builtin(
        &mut self,
        action: Arc<dyn BuiltinAction>,
        name: &str,
        version: &str,
        with: IndexMap<String, String>,
        env: &IndexMap<String, String>,
        number: usize,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        display: &str,
    ) -> Result<StepResult, String> {
        let call_env: BTreeMap<String, String> = self.process_env(env, &[]).into_iter().collect();
        let post = PostCall {
            action_name: name.to_string(),
            version: version.to_string(),
            inputs: with.into_iter().collect(),
            env: call_env,
            state: BTreeMap::new(),
        };
        let (result, errors) = self
            .call_builtin(action.clone(), &post, number, timeout, cancel, false)
            .await;
        for e in errors {
            self.annotate(Some(number), Level::Error, &e);
        }
        if result.wants_post {
            self.post.push(Post::Builtin {
                name: format!("Post {display}"),
                action,
                call: Box::new(PostCall {
                    state: result.state.clone(),
                    ..post
                }),
            });
        }
        Ok(StepResult {
            success: result.success,
            cancelled: false,
            outputs: result.outputs,
        })
    }

    async fn call_builtin(
        &mut self,
        action: Arc<dyn BuiltinAction>,
        call: &PostCall,
        number: usize,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        post: bool,
    ) -> (ActionResult, Vec<String>) {
        let sink = Arc::new(Mutex::new(StepSink::new(
            &self.state.spec.key,
            number,
            self.state.reporter.clone(),
            self.state.masker.clone(),
        )));
        let sink2 = sink.clone();
        let output = OutputSink::new(move |line: &str| {
            let mut s = sink2.lock().unwrap_or_else(|e| e.into_inner());
            s.line(line);
        });
        let call = ActionCall {
            name: call.action_name.clone(),
            version: call.version.clone(),
            inputs: call.inputs.clone(),
            env: call.env.clone(),
            workspace: self.state.run.workspace.clone(),
            run: self.state.run.clone(),
            environment: self.state.environment.clone(),
            state: call.state.clone(),
            job_succeeded: true,
            output,
            cancel: cancel.clone(),
        };
        let handle = tokio::task::spawn_blocking(move || {
            if post {
                action.post(&call)
            } else {
                action.run(&call)
            }
        });
        let result = match timeout {
            Some(t) => match tokio::time::timeout(t, handle).await {
                Ok(r) => r.ok(),
                Err(_) => {
                    cancel.cancel();
                    None
                }
            },
            None => handle.await.ok(),
        };
        let errors = sink.lock().map(|s| s.errors.clone()).unwrap_or_default();
        (result.unwrap_or_else(ActionResult::failed), errors)
    }

    async fn run_posts(&mut self, scope: &mut Scope) {
        let posts = std::mem::take(&mut self.post);
        for post in posts.into_iter().rev() {
            let number = self.next_number();
            let started = Instant::now();
            let (name, result) = match post {
                Post::Js {
                    name,
                    runtime,
                    dir,
                    file,
                    condition,
                    env,
                    state_key,
                } => {
                    let run = match self.eval_action_condition(&condition, scope, &env) {
                        Ok(r) => r,
                        Err(e) => {
                            self.annotate(Some(number), Level::Error, &e);
                            scope.failed = true;
                            continue;
                        }
                    };
                    if !run {
                        continue;
                    }
                    self.state.reporter.event(Event::StepStarted {
                        job: self.state.spec.key.clone(),
                        step: number,
                        name: name.clone(),
                        ts: now_ms(),
                    });
                    let token = self.state.no_cancel.clone();
                    let r = self
                        .run_node(runtime, &dir, &file, &env, number, None, &token, &state_key)
                        .await;
                    (name, r.map(|r| r.success).unwrap_or(false))
                }
                Post::Builtin { name, action, call } => {
                    self.state.reporter.event(Event::StepStarted {
                        job: self.state.spec.key.clone(),
                        step: number,
                        name: name.clone(),
                        ts: now_ms(),
                    });
                    let token = self.state.no_cancel.clone();
                    let failed = scope.failed;
                    let mut call = *call;
                    call.env
                        .insert("HANGAR_JOB_FAILED".into(), failed.to_string());
                    let (mut r, errors) = {
                        let action2 = action.clone();
                        let mut c = PostCall { ..call };
                        c.state
                            .insert("__job_succeeded".into(), (!failed).to_string());
                        self.call_builtin_post(action2, &c, number, &token, !failed)
                            .await
                    };
                    for e in errors {
                        self.annotate(Some(number), Level::Error, &e);
                        r.success = false;
                    }
                    (name, r.success)
                }
            };
            let c = if result {
                Conclusion::Success
            } else {
                Conclusion::Failure
            };
            if !result {
                scope.failed = true;
            }
            self.state.reporter.event(Event::StepFinished {
                job: self.state.spec.key.clone(),
                step: number,
                name,
                outcome: c,
                conclusion: c,
                duration_ms: started.elapsed().as_millis() as u64,
                ts: now_ms(),
            });
        }
    }

    async fn call_builtin_post(
        &mut self,
        action: Arc<dyn BuiltinAction>,
        call: &PostCall,
        number: usize,
        cancel: &CancellationToken,
        job_succeeded: bool,
    ) -> (ActionResult, Vec<String>) {
        let sink = Arc::new(Mutex::new(StepSink::new(
            &self.state.spec.key,
            number,
            self.state.reporter.clone(),
            self.state.masker.clone(),
        )));
        let sink2 = sink.clone();
        let output = OutputSink::new(move |line: &str| {
            sink2.lock().unwrap_or_else(|e| e.into_inner()).line(line);
        });
        let mut state = call.state.clone();
        state.remove("__job_succeeded");
        let call = ActionCall {
            name: call.action_name.clone(),
            version: call.version.clone(),
            inputs: call.inputs.clone(),
            env: call.env.clone(),
            workspace: self.state.run.workspace.clone(),
            run: self.state.run.clone(),
            environment: self.state.environment.clone(),
            state,
            job_succeeded,
            output,
            cancel: cancel.clone(),
        };
        let r = tokio::task::spawn_blocking(move || action.post(&call)).await;
        let errors = sink.lock().map(|s| s.errors.clone()).unwrap_or_default();
        (r.unwrap_or_else(|_| ActionResult::failed()), errors)
    }
}

/// Whether any string in the step mentions `${{`: steps without expressions
/// skip building contexts altogether (the common, fast case).
/// `background: true` (GitHub also reads the string `'true'`), or an
/// expression, which the step decides when it starts.
fn maybe_true(v: &Value) -> bool {
    v.as_bool() == Some(true) || v.as_str().is_some_and(|s| s == "true" || s.contains("${{"))
}

fn step_has_expressions(step: &Value) -> bool {
    match step {
        Value::String(s) => s.contains("${{"),
        Value::Array(a) => a.iter().any(step_has_expressions),
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k.contains("${{") || step_has_expressions(v)),
        _ => false,
    }
}

enum InputValue {
    Given(String),
    Default(Value),
}

/// Declared inputs (given or defaulted) plus undeclared `with:` keys, in order.
fn action_inputs(action: &Value, with: &IndexMap<String, String>) -> IndexMap<String, InputValue> {
    let mut out = IndexMap::new();
    if let Some(Value::Object(defs)) = action.get("inputs") {
        for (k, def) in defs {
            let given = with
                .iter()
                .find(|(w, _)| w.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone());
            let v = match given {
                Some(v) => InputValue::Given(v),
                None => InputValue::Default(
                    def.get("default")
                        .cloned()
                        .unwrap_or(Value::String(String::new())),
                ),
            };
            out.insert(k.clone(), v);
        }
    }
    for (k, v) in with {
        if !out.keys().any(|o| o.eq_ignore_ascii_case(k)) {
            out.insert(k.clone(), InputValue::Given(v.clone()));
        }
    }
    out
}

/// A `uses:` of an action in this repository (`./x`, `/abs`, `$/x`).
fn is_local_uses(uses: &str) -> bool {
    uses.starts_with("./") || uses.starts_with('/') || uses.starts_with("$/")
}

/// `INPUT_<NAME>` as the actions toolkit reads it: upper case, spaces as `_`.
pub fn input_env_name(name: &str) -> String {
    format!("INPUT_{}", name.replace(' ', "_").to_ascii_uppercase())
}

/// Reads `action.yml` / `action.yaml` from an action directory.
pub fn load_action(dir: &Path) -> Result<Value, String> {
    for name in ["action.yml", "action.yaml"] {
        let p = dir.join(name);
        if p.is_file() {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let v = crate::workflow::load_yaml(&p, &text)?;
            if v.get("runs").is_none() {
                return Err(format!("{}: `runs:` is missing", p.display()));
            }
            return Ok(v);
        }
    }
    Err(format!(
        "can't find 'action.yml' or 'action.yaml' in {} (is the path right, relative to the repository root?)",
        dir.display()
    ))
}

/// The object directories a workspace borrows (an agent's checkout shares its
/// mirror's objects): a jail shows them read-only, or git in the step finds
/// no commit.
fn git_alternates(workspace: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_to_string(workspace.join(".git/objects/info/alternates"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}
