//! Running whole workflows: the `needs` graph in parallel up to a limit,
//! job `if:`, matrix legs with `max-parallel` and `fail-fast`, called
//! (reusable) workflows, and skipping of dependents.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use hangar_expr::{Condition, Contexts, Host, StatusFunction, Value as EValue};
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::Engine;
use crate::compiled::CompiledJob;
use crate::context::RunContext;
use crate::evaluate::eval_tree;
use crate::job::JobOutcome;
use crate::matrix;
use crate::plan;
use crate::report::{Conclusion, Event, Level, Reporter, now_ms};
use crate::schedule::{Decision, Graph, State, StatusHost};
use crate::workflow::{Workflow, scalar_string};

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Jobs (matrix legs) running at once.
    pub parallel: usize,
    /// Only this job (and the jobs it needs).
    pub only_job: Option<String>,
    /// Plan and report the steps without running anything.
    pub dry_run: bool,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            parallel: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            only_job: None,
            dry_run: false,
        }
    }
}

/// One finished job or matrix leg.
#[derive(Clone, Debug)]
pub struct JobSummary {
    pub key: String,
    pub workflow: String,
    pub result: Conclusion,
    pub duration_ms: u64,
}

/// The result of [`Engine::run_workflows`].
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub jobs: Vec<JobSummary>,
    /// No job failed or was cancelled.
    pub success: bool,
}

/// Aggregate result of a job node (all its legs).
#[derive(Clone, Debug)]
struct NodeResult {
    result: Conclusion,
    outputs: BTreeMap<String, String>,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct Shared {
    engine: Engine,
    run: Arc<RunContext>,
    reporter: Arc<dyn Reporter>,
    cancel: CancellationToken,
    slots: Arc<Semaphore>,
    opts: RunOptions,
    summary: std::sync::Mutex<Vec<JobSummary>>,
}

impl Engine {
    /// Runs `workflows` (already filtered to the event) to completion. Errors
    /// are planning errors (unknown `needs`, cycles); job failures are in the
    /// summary.
    pub async fn run_workflows(
        &self,
        run: Arc<RunContext>,
        workflows: Vec<Arc<Workflow>>,
        opts: RunOptions,
        reporter: Arc<dyn Reporter>,
        cancel: CancellationToken,
    ) -> Result<RunSummary, String> {
        for wf in &workflows {
            plan::stages(wf, opts.only_job.as_deref())?;
        }
        let shared = Arc::new(Shared {
            engine: self.clone(),
            run,
            reporter,
            cancel,
            slots: Arc::new(Semaphore::new(opts.parallel.max(1))),
            opts,
            summary: std::sync::Mutex::new(Vec::new()),
        });
        let multi = workflows.len() > 1;
        let mut tasks = Vec::new();
        for wf in workflows {
            let prefix = if multi {
                let stem = wf
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("{stem}/")
            } else {
                String::new()
            };
            let only = shared.opts.only_job.clone();
            let chain = vec![format!("./{}", crate::workflow::repo_path(&wf.path))];
            tasks.push(tokio::spawn(run_graph(
                shared.clone(),
                wf,
                prefix,
                only,
                None,
                None,
                chain,
            )));
        }
        let mut ok = true;
        for t in tasks {
            match t.await {
                Ok(Ok(results)) => {
                    ok &= results
                        .values()
                        .all(|r| matches!(r.result, Conclusion::Success | Conclusion::Skipped));
                }
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(format!("a workflow task failed: {e}")),
            }
        }
        let jobs = std::mem::take(&mut *shared.summary.lock().unwrap_or_else(|e| e.into_inner()));
        let ok = ok
            && !shared.cancel.is_cancelled()
            // A dry run passes only if every job could be planned.
            && !(shared.opts.dry_run && jobs.iter().any(|j| j.result == Conclusion::Failure));
        shared.run.cleanup();
        Ok(RunSummary { jobs, success: ok })
    }
}

/// Status functions of a job as the scheduler answers them, and `hashFiles`
/// over the workspace.
struct NeedsHost<'a> {
    status: StatusHost,
    workspace: &'a std::path::Path,
}

impl Host for NeedsHost<'_> {
    fn status(&self, f: StatusFunction) -> bool {
        self.status.status(f)
    }

    fn status_of(&self, f: StatusFunction, jobs: &[String]) -> bool {
        self.status.status_of(f, jobs)
    }

    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        crate::hashfiles::hash_files(self.workspace, patterns)
    }
}

/// Runs the jobs of one workflow as the scheduler decides; returns each job's
/// aggregate result.
fn run_graph(
    shared: Arc<Shared>,
    wf: Arc<Workflow>,
    prefix: String,
    only: Option<String>,
    inputs: Option<Map<String, Value>>,
    secrets: Option<BTreeMap<String, String>>,
    chain: Vec<String>,
) -> BoxFut<Result<HashMap<String, NodeResult>, String>> {
    Box::pin(async move {
        let called = inputs.is_some();
        let inputs = Some(match inputs {
            Some(i) => i,
            None => top_level_inputs(&wf, &shared.run),
        });
        let graph = plan::graph(&wf, only.as_deref())?;
        let mut results: HashMap<String, NodeResult> = HashMap::new();
        let mut states: BTreeMap<String, State> = BTreeMap::new();
        let mut running = tokio::task::JoinSet::new();
        loop {
            let cancelled = shared.cancel.is_cancelled();
            let decisions = graph.decide(&mut states, cancelled, &mut |id, host| {
                job_condition(
                    &shared,
                    &wf,
                    id,
                    &needs_of(&graph, id, &results),
                    &inputs,
                    host,
                )
            });
            for (id, decision) in decisions {
                let key = format!("{prefix}{id}");
                match decision {
                    Decision::Wait(_) => {}
                    Decision::Skip(_) => {
                        let result = Conclusion::Skipped;
                        shared.reporter.event(Event::JobStarted {
                            job: key.clone(),
                            name: key.clone(),
                            ts: now_ms(),
                        });
                        shared.reporter.event(Event::JobFinished {
                            job: key.clone(),
                            result,
                            duration_ms: 0,
                            ts: now_ms(),
                        });
                        record(&shared, &wf, &key, result, 0);
                        results.insert(
                            id,
                            NodeResult {
                                result,
                                outputs: BTreeMap::new(),
                            },
                        );
                    }
                    Decision::Fail(e) => {
                        let r = node_error(&shared, &wf, &key, (&id, "if"), e);
                        results.insert(id, r);
                    }
                    Decision::Run => {
                        let fut = run_node(
                            shared.clone(),
                            wf.clone(),
                            id.clone(),
                            key,
                            needs_of(&graph, &id, &results),
                            status_host(&graph, &id, &results, cancelled),
                            Given {
                                inputs: inputs.clone(),
                                secrets: secrets.clone(),
                                called,
                                chain: chain.clone(),
                            },
                        );
                        running.spawn(async move { (id, fut.await) });
                    }
                }
            }
            match running.join_next().await {
                Some(Ok((id, r))) => {
                    states.insert(id.clone(), State::Done(r.result));
                    results.insert(id, r);
                }
                Some(Err(e)) => return Err(format!("a job task failed: {e}")),
                None => break,
            }
        }
        Ok(results)
    })
}

/// The results of the jobs `id` needs.
fn needs_of(
    graph: &Graph,
    id: &str,
    results: &HashMap<String, NodeResult>,
) -> BTreeMap<String, NodeResult> {
    graph
        .needs(id)
        .iter()
        .filter_map(|n| results.get(n).map(|r| (n.clone(), r.clone())))
        .collect()
}

/// Status functions for job `id` from the results so far (as the scheduler
/// built them when it decided the job).
fn status_host(
    graph: &Graph,
    id: &str,
    results: &HashMap<String, NodeResult>,
    cancelled: bool,
) -> StatusHost {
    let of = |ids: &[String]| {
        ids.iter()
            .filter_map(|n| results.get(n).map(|r| (n.clone(), r.result)))
            .collect()
    };
    StatusHost {
        needs: of(graph.needs(id)),
        ancestors: of(graph.ancestors(id)),
        cancelled,
    }
}

/// A job's `if:` (default `success()`: every job it depends on succeeded)
/// over its contexts, for the scheduler.
fn job_condition(
    shared: &Shared,
    wf: &Workflow,
    id: &str,
    needs_results: &BTreeMap<String, NodeResult>,
    inputs: &Option<Map<String, Value>>,
    status: &StatusHost,
) -> Result<bool, String> {
    let cond_text = wf
        .job(id)
        .and_then(|j| j.get("if"))
        .and_then(scalar_string)
        .unwrap_or_default();
    let cond = Condition::parse(&cond_text).map_err(|e| {
        format!(
            "job '{id}': `if: {cond_text}` is invalid: {}",
            e.github_message(&cond_text)
        )
    })?;
    let (cx, _) = job_contexts(shared, wf, id, needs_results, inputs);
    let host = NeedsHost {
        status: status.clone(),
        workspace: &shared.run.workspace,
    };
    match cond.eval(&cx, &host) {
        Err(e) if unknown_until_run(shared, &cond_text) => {
            dry_run_note(
                shared,
                id,
                &format!(
                    "`if: {cond_text}` reads outputs of the jobs it needs, unknown until they run ({e}); planned as if it holds"
                ),
            );
            Ok(true)
        }
        r => r.map_err(|e| format!("job '{id}': `if: {cond_text}`: {e}")),
    }
}

/// In a dry run, jobs produce no outputs: an expression that reads
/// `needs.<job>.outputs` has no value yet, which is not the workflow's fault.
fn unknown_until_run(shared: &Shared, text: &str) -> bool {
    shared.opts.dry_run && text.contains("needs.") && text.contains("outputs")
}

fn dry_run_note(shared: &Shared, job: &str, message: &str) {
    shared.reporter.event(Event::Annotation {
        job: job.to_string(),
        step: None,
        level: Level::Notice,
        message: format!("dry run: {message}"),
        location: Default::default(),
        ts: now_ms(),
    });
}

/// The contexts of job `id`'s own keys (`if:`, `strategy:`, `name:`, a call's
/// `with:`): `github`, `needs`, `vars`, `inputs`; and its `needs` context.
fn job_contexts(
    shared: &Shared,
    wf: &Workflow,
    id: &str,
    needs_results: &BTreeMap<String, NodeResult>,
    inputs: &Option<Map<String, Value>>,
) -> (Contexts, Map<String, Value>) {
    let run = &shared.run;
    let needs_cx = needs_context(needs_results);
    let mut cx = Contexts::new();
    // The job-level `github`: what the server builds for the same job, and
    // the workspace, which `hangar run` knows before any step runs.
    let mut github = crate::context::github_context(&run.github_facts(wf, id), None);
    github.insert("workspace".into(), json!(run.workspace.to_string_lossy()));
    cx.insert("github", EValue::from(&Value::Object(github)));
    cx.insert("needs", EValue::from(&Value::Object(needs_cx.clone())));
    let vars: Map<String, Value> = run
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    cx.insert("vars", EValue::from(&Value::Object(vars)));
    let inputs_v = inputs.clone().unwrap_or_else(|| run.inputs.clone());
    cx.insert("inputs", EValue::from(&Value::Object(inputs_v)));
    (cx, needs_cx)
}

/// `inputs` of a triggered workflow: the given ones (CLI, event payload), then
/// the declared defaults of `on.<event>.inputs`, typed as declared.
pub fn top_level_inputs(wf: &Workflow, run: &RunContext) -> Map<String, Value> {
    inputs_context(wf, &run.event_name, &run.event, &run.inputs)
}

/// [`top_level_inputs`] from the facts themselves: the one builder of the
/// `inputs` context of a triggered workflow, used by `hangar run` and by the
/// server when it compiles a job for an agent.
pub fn inputs_context(
    wf: &Workflow,
    event_name: &str,
    event: &Value,
    given: &Map<String, Value>,
) -> Map<String, Value> {
    use hangar_workflow::model::InputType;
    let mut out = given.clone();
    let from_event = event
        .get("inputs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in from_event {
        out.entry(k).or_insert(v);
    }
    let declared = wf
        .model
        .trigger(event_name)
        .map(|t| t.inputs.as_slice())
        .unwrap_or_default();
    for def in declared {
        let name = &def.name.name;
        let v = out
            .get(name)
            .cloned()
            .or_else(|| def.default.as_ref().map(|d| d.to_json()));
        let Some(v) = v else { continue };
        let typed = match (def.kind, &v) {
            (InputType::Boolean, Value::String(s)) => json!(s == "true"),
            (InputType::Number, Value::String(s)) => {
                s.parse::<f64>().map(|n| json!(n)).unwrap_or(v.clone())
            }
            _ => v,
        };
        out.insert(name.clone(), typed);
    }
    out
}

fn needs_context(needs: &BTreeMap<String, NodeResult>) -> Map<String, Value> {
    crate::context::needs_context(needs.iter().map(|(k, r)| {
        let outputs = r
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        (k.clone(), Some(r.result), outputs)
    }))
}

fn record(shared: &Shared, wf: &Workflow, key: &str, result: Conclusion, duration_ms: u64) {
    shared
        .summary
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(JobSummary {
            key: key.to_string(),
            workflow: wf.name.clone(),
            result,
            duration_ms,
        });
}

/// A job that failed before any step ran; the error points at job `id`'s
/// key `at` in the workflow (the job itself when it has no such key).
fn node_error(
    shared: &Shared,
    wf: &Workflow,
    key: &str,
    (id, at): (&str, &str),
    message: String,
) -> NodeResult {
    let location = wf.location(id, None, at);
    shared.reporter.event(Event::JobStarted {
        job: key.to_string(),
        name: key.to_string(),
        ts: now_ms(),
    });
    shared.reporter.event(Event::Annotation {
        job: key.to_string(),
        step: None,
        level: Level::Error,
        message,
        location,
        ts: now_ms(),
    });
    shared.reporter.event(Event::JobFinished {
        job: key.to_string(),
        result: Conclusion::Failure,
        duration_ms: 0,
        ts: now_ms(),
    });
    record(shared, wf, key, Conclusion::Failure, 0);
    NodeResult {
        result: Conclusion::Failure,
        outputs: BTreeMap::new(),
    }
}

/// What the jobs of a workflow are given by whoever started it.
struct Given {
    inputs: Option<Map<String, Value>>,
    secrets: Option<BTreeMap<String, String>>,
    /// Started by a `uses:` job of another workflow.
    called: bool,
    /// The workflows calling this one, the triggered one first.
    chain: Vec<String>,
}

fn run_node(
    shared: Arc<Shared>,
    wf: Arc<Workflow>,
    id: String,
    key: String,
    needs_results: BTreeMap<String, NodeResult>,
    status: StatusHost,
    given: Given,
) -> BoxFut<NodeResult> {
    Box::pin(async move {
        let Given {
            inputs,
            secrets,
            called,
            chain,
        } = given;
        let Some(job) = wf.job(&id).cloned() else {
            return node_error(
                &shared,
                &wf,
                &key,
                (&id, ""),
                format!("job '{id}' not found"),
            );
        };
        // The scheduler decided to run this job: its `if:` held.
        let (cx, needs_cx) = job_contexts(&shared, &wf, &id, &needs_results, &inputs);
        let host = NeedsHost {
            status,
            workspace: &shared.run.workspace,
        };
        // A call of a reusable workflow.
        if let Some(uses) = job.get("uses").and_then(scalar_string) {
            // With a matrix, each leg calls the workflow, named as GitHub
            // names them (`call (a, 1) / build`); the job's result is its
            // legs' and its outputs the last leg's, as on GitHub.
            let legs = match job.get("strategy") {
                Some(st @ (Value::String(_) | Value::Object(_))) => {
                    let planned = eval_tree(st, &cx, &host)
                        .map_err(|e| format!("strategy: {e}"))
                        .and_then(|st| {
                            st.get("matrix")
                                .filter(|m| !m.is_null())
                                .map(|m| matrix::legs(Some(m)))
                                .transpose()
                        });
                    match planned {
                        Ok(legs) => legs,
                        Err(e) => {
                            let message = format!("job '{id}': {e}");
                            return node_error(&shared, &wf, &key, (&id, "strategy"), message);
                        }
                    }
                }
                _ => None,
            };
            let Some(legs) = legs else {
                let call = Call {
                    job: &job,
                    uses: &uses,
                    secrets: secrets.as_ref(),
                    chain: &chain,
                };
                let r = call_workflow(&shared, &call, &key, &cx, &host).await;
                return match r {
                    Ok(r) => r,
                    Err(e) => node_error(&shared, &wf, &key, (&id, "uses"), e),
                };
            };
            let mut conclusions = Vec::new();
            let mut outputs = BTreeMap::new();
            for leg in legs {
                let leg_key = matrix::display_name(&key, &leg.segments);
                let mut leg_cx = cx.clone();
                leg_cx.insert("matrix", EValue::from(&Value::Object(leg.matrix)));
                let call = Call {
                    job: &job,
                    uses: &uses,
                    secrets: secrets.as_ref(),
                    chain: &chain,
                };
                match call_workflow(&shared, &call, &leg_key, &leg_cx, &host).await {
                    Ok(r) => {
                        conclusions.push(r.result);
                        if !r.outputs.is_empty() {
                            outputs = r.outputs;
                        }
                    }
                    Err(e) => {
                        conclusions
                            .push(node_error(&shared, &wf, &leg_key, (&id, "uses"), e).result);
                    }
                }
            }
            return NodeResult {
                result: crate::schedule::aggregate(conclusions),
                outputs,
            };
        }

        // Matrix legs.
        // The strategy evaluates and its matrix expands, or the job fails at `strategy:`.
        let planned = (|| {
            let strategy = match job.get("strategy") {
                Some(s @ (Value::String(_) | Value::Object(_))) => {
                    eval_tree(s, &cx, &host).map_err(|e| format!("strategy: {e}"))?
                }
                _ => Value::Null,
            };
            let legs = matrix::legs(strategy.get("matrix"))?;
            Ok::<_, String>((strategy, legs))
        })();
        let planned = match planned {
            Err(e)
                if unknown_until_run(
                    &shared,
                    &serde_json::to_string(job.get("strategy").unwrap_or(&Value::Null))
                        .unwrap_or_default(),
                ) =>
            {
                dry_run_note(
                    &shared,
                    &key,
                    &format!(
                        "the matrix reads outputs of the jobs it needs, unknown until they run ({e}); planned as one leg"
                    ),
                );
                matrix::legs(None).map(|legs| (Value::Null, legs))
            }
            p => p,
        };
        let (strategy, legs) = match planned {
            Ok(p) => p,
            Err(e) => {
                let message = format!("job '{id}': {e}");
                return node_error(&shared, &wf, &key, (&id, "strategy"), message);
            }
        };
        let compiled = match CompiledJob::compile(&wf, &id) {
            Ok(c) => c,
            Err(e) => return node_error(&shared, &wf, &key, (&id, ""), e),
        };
        let has_matrix = strategy.get("matrix").is_some_and(|m| !m.is_null());
        let total = legs.len();
        let first = crate::context::strategy_context(&strategy, 0, total);
        let fail_fast = first["fail-fast"] == json!(true);
        let max_parallel = first["max-parallel"].as_u64().unwrap_or(1) as usize;
        let leg_limit = Arc::new(Semaphore::new(max_parallel.clamp(1, total.max(1))));
        let legs_cancel = shared.cancel.child_token();
        // GitHub names a leg `name (v1, v2)` by its matrix values, unless
        // `name:` holds an expression: that is evaluated for each leg instead.
        let name_text = job.get("name").and_then(scalar_string);
        let mut keys_used: Vec<String> = Vec::new();
        let mut set = tokio::task::JoinSet::new();
        for (index, leg) in legs.into_iter().enumerate() {
            let matrix::Leg {
                matrix: leg,
                segments,
            } = leg;
            let mut leg_key = if has_matrix {
                matrix::display_name(&key, &segments)
            } else {
                key.clone()
            };
            // Two legs named alike (include entries with the same values)
            // still need distinct keys.
            let base_key = leg_key.clone();
            let mut n = 1;
            while keys_used.contains(&leg_key) {
                n += 1;
                leg_key = format!("{base_key}_{n}");
            }
            keys_used.push(leg_key.clone());
            let strategy_cx = crate::context::strategy_context(&strategy, index, total);
            let mut leg_cx = cx.clone();
            leg_cx.insert("matrix", EValue::from(&Value::Object(leg.clone())));
            leg_cx.insert(
                "strategy",
                EValue::from(&Value::Object(strategy_cx.clone())),
            );
            let planned = match &name_text {
                Some(n) if has_matrix => Some(matrix::display_name(n, &segments)),
                Some(n) => Some(n.clone()),
                None if has_matrix => Some(leg_key.clone()),
                None => None,
            };
            // `name:` and `continue-on-error` are evaluated for each leg
            // (`${{ matrix.experimental }}`), by the reading the server uses;
            // a leg whose keys cannot be read fails at the key.
            let start = match crate::evaluate::job_start(&job, &id, planned, &leg_cx, &host) {
                Ok(s) => s,
                Err(e) => {
                    let failed = node_error(&shared, &wf, &leg_key, (&id, e.key), e.message);
                    if fail_fast {
                        legs_cancel.cancel();
                    }
                    set.spawn(async move {
                        JobOutcome {
                            result: failed.result,
                            outputs: BTreeMap::new(),
                        }
                    });
                    continue;
                }
            };
            let display = start.name;
            // A leg that continues on error failing neither fails the job
            // nor cancels the others.
            let leg_coe = start.continue_on_error;
            // What the server sends an agent for this leg: compiled alike,
            // so a local run and an agent run the same job.
            let spec = CompiledJob {
                key: leg_key.clone(),
                name: display,
                matrix: leg,
                strategy: strategy_cx,
                needs: needs_cx.clone(),
                inputs: inputs.clone(),
                secrets: secrets.clone(),
                called,
                ..compiled.clone()
            };
            let shared = shared.clone();
            // Taken here, in matrix order, not in the leg's task: with
            // `max-parallel` legs start in the order the matrix lists them,
            // as on GitHub (tasks would reach the semaphore in any order).
            let leg_permit = leg_limit.clone().acquire_owned().await.ok();
            let legs_cancel = legs_cancel.clone();
            let wf2 = wf.clone();
            set.spawn(async move {
                let _leg = leg_permit;
                let _slot = shared.slots.clone().acquire_owned().await.ok();
                let started = Instant::now();
                let outcome = if legs_cancel.is_cancelled() {
                    shared.reporter.event(Event::JobStarted {
                        job: leg_key.clone(),
                        name: leg_key.clone(),
                        ts: now_ms(),
                    });
                    shared.reporter.event(Event::JobFinished {
                        job: leg_key.clone(),
                        result: Conclusion::Cancelled,
                        duration_ms: 0,
                        ts: now_ms(),
                    });
                    JobOutcome {
                        result: Conclusion::Cancelled,
                        outputs: BTreeMap::new(),
                    }
                } else if shared.opts.dry_run {
                    dry_run(&shared, &spec)
                } else {
                    shared
                        .engine
                        .run_job(
                            shared.run.clone(),
                            spec,
                            shared.reporter.clone(),
                            legs_cancel.clone(),
                        )
                        .await
                };
                record(
                    &shared,
                    &wf2,
                    &leg_key,
                    outcome.result,
                    started.elapsed().as_millis() as u64,
                );
                if shared.opts.dry_run {
                    // A job that could not be planned is reported as failed,
                    // and its dependents are planned all the same: a dry run
                    // lists everything a run would need.
                    return JobOutcome {
                        result: Conclusion::Success,
                        ..outcome
                    };
                }
                if outcome.result == Conclusion::Failure && leg_coe {
                    return JobOutcome {
                        result: Conclusion::Success,
                        ..outcome
                    };
                }
                if fail_fast && outcome.result == Conclusion::Failure {
                    legs_cancel.cancel();
                }
                outcome
            });
        }
        let mut result = Conclusion::Success;
        let mut outputs = BTreeMap::new();
        while let Some(r) = set.join_next().await {
            let o = match r {
                Ok(o) => o,
                Err(_) => JobOutcome {
                    result: Conclusion::Failure,
                    outputs: BTreeMap::new(),
                },
            };
            result = match (result, o.result) {
                (Conclusion::Failure, _) | (_, Conclusion::Failure) => Conclusion::Failure,
                (Conclusion::Cancelled, _) | (_, Conclusion::Cancelled) => Conclusion::Cancelled,
                _ => Conclusion::Success,
            };
            outputs.extend(o.outputs);
        }
        NodeResult { result, outputs }
    })
}

/// What a dry run can say of a step's `uses:` without running or fetching
/// anything: `Ok(note)` when it is there to run, `Err(why)` when it is not.
fn plan_uses(shared: &Shared, uses: &str) -> Result<String, String> {
    if uses.contains("${{") {
        return Ok(format!("`{uses}` is known only when the job runs"));
    }
    if let Some(image) = uses.strip_prefix("docker://") {
        return Err(format!(
            "`docker://{image}` needs a container engine; hangar runs steps on the host"
        ));
    }
    let workspace = &shared.run.workspace;
    if uses.starts_with("./") || uses.starts_with("$/") {
        let path = match uses.strip_prefix("$/") {
            Some(rest) => workspace.join(rest.split('@').next().unwrap_or(rest)),
            None => workspace.join(uses.split('@').next().unwrap_or(uses)),
        };
        return if path.exists() {
            Ok(format!("`{uses}`: local, present"))
        } else {
            Err(format!(
                "`{uses}`: no such file or folder in the repository"
            ))
        };
    }
    let (path, version) = uses.split_once('@').unwrap_or((uses, ""));
    let lower = path.to_ascii_lowercase();
    let base: String = lower.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
    if shared.engine.action_dir(&base, version).is_some() {
        return Ok(format!("`{uses}`: from --action-dir"));
    }
    if shared.engine.builtin(&lower).is_some() || shared.engine.builtin(&base).is_some() {
        return Ok(format!("`{uses}`: built into hangar"));
    }
    let r = crate::actions::RemoteRef::parse(uses)?;
    let source = shared.engine.action_source();
    match crate::actions::ActionCache::new(&shared.run.data_dir).lookup(source, &r) {
        Some(commit) => Ok(format!("`{uses}`: in the action cache at {commit}")),
        None => Err(format!(
            "`{uses}` is not in the action cache: `hangar run` fetches it from {}{}",
            source.display_url(),
            if source.offline {
                " (not with --offline)"
            } else {
                ""
            }
        )),
    }
}

/// Plans a job without running it: each step, and for each `uses:` whether
/// what it names is here to run. A step whose action is missing is not
/// planned, and neither is its job: a dry run says so rather than "success".
fn dry_run(shared: &Shared, spec: &CompiledJob) -> JobOutcome {
    let r = &shared.reporter;
    r.event(Event::JobStarted {
        job: spec.key.clone(),
        name: spec.key.clone(),
        ts: now_ms(),
    });
    let mut planned = true;
    {
        let job = &spec.job;
        for (i, step) in crate::workflow::steps(job).iter().enumerate() {
            let uses = step.get("uses").and_then(scalar_string);
            let name = step
                .get("name")
                .and_then(scalar_string)
                .or_else(|| uses.as_ref().map(|u| format!("Run {u}")))
                .or_else(|| {
                    step.get("run")
                        .and_then(scalar_string)
                        .map(|r| format!("Run {}", r.lines().next().unwrap_or("").trim()))
                })
                .unwrap_or_else(|| format!("step {i}"));
            r.event(Event::StepStarted {
                job: spec.key.clone(),
                step: i,
                name: name.clone(),
                ts: now_ms(),
            });
            let mut outcome = Conclusion::Success;
            if let Some(u) = &uses {
                let (line, ok) = match plan_uses(shared, u) {
                    Ok(note) => (note, true),
                    Err(why) => (why, false),
                };
                if !ok {
                    outcome = Conclusion::Failure;
                    planned = false;
                }
                r.event(Event::Log {
                    job: spec.key.clone(),
                    step: Some(i),
                    line,
                    ts: now_ms(),
                });
            }
            r.event(Event::StepFinished {
                job: spec.key.clone(),
                step: i,
                name,
                outcome,
                conclusion: outcome,
                duration_ms: 0,
                ts: now_ms(),
            });
        }
    }
    let result = if planned {
        Conclusion::Success
    } else {
        Conclusion::Failure
    };
    r.event(Event::JobFinished {
        job: spec.key.clone(),
        result,
        duration_ms: 0,
        ts: now_ms(),
    });
    JobOutcome {
        result,
        outputs: BTreeMap::new(),
    }
}

/// Where the called workflow's file is: `./PATH` and `$/PATH` in this
/// repository, `OWNER/REPO/PATH@REF` fetched into the action cache.
async fn called_workflow_path(
    shared: &Arc<Shared>,
    uses: &str,
    key: &str,
) -> Result<std::path::PathBuf, String> {
    if uses.starts_with("./") {
        return Ok(shared
            .run
            .workspace
            .join(uses.split('@').next().unwrap_or(uses)));
    }
    if let Some(rest) = uses.strip_prefix("$/") {
        return crate::actions::self_path(&shared.run.workspace, rest, uses);
    }
    let r = crate::actions::RemoteRef::parse(uses).map_err(|e| format!("job '{key}': {e}"))?;
    if r.path.is_empty() {
        return Err(format!(
            "job '{key}': `uses: {uses}` names a repository, not a workflow file \
             (expected OWNER/REPO/.github/workflows/FILE.yml@REF)"
        ));
    }
    let cache = crate::actions::ActionCache::new(&shared.run.data_dir);
    let source = shared.engine.action_source().clone();
    let r2 = r.clone();
    let fetched = tokio::task::spawn_blocking(move || cache.fetch(&source, &r2))
        .await
        .unwrap_or_else(|e| Err(format!("fetching `{uses}` stopped: {e}")))
        .map_err(|e| format!("job '{key}': {e}"))?;
    shared.reporter.event(Event::ActionResolved {
        job: key.to_string(),
        uses: uses.to_string(),
        commit: fetched.commit.clone(),
        source: shared.engine.action_source().display_url(),
        cached: fetched.cached,
        ts: now_ms(),
    });
    Ok(fetched.path(&r))
}

/// A `uses:` job's call: what it calls, with what, from where.
struct Call<'a> {
    job: &'a Value,
    uses: &'a str,
    /// The caller's own secrets (`None`: the run's).
    secrets: Option<&'a BTreeMap<String, String>>,
    /// The workflows calling the caller's, the triggered one first, the
    /// caller's last.
    chain: &'a [String],
}

/// `jobs.<id>.uses: ./.github/workflows/x.yml`: runs the called workflow's jobs
/// with `with:` as `inputs` and the given (or inherited) secrets; its
/// `on.workflow_call.outputs` become this job's outputs (the rules are
/// `call`'s, the server's too).
async fn call_workflow(
    shared: &Arc<Shared>,
    call: &Call<'_>,
    key: &str,
    cx: &Contexts,
    host: &NeedsHost<'_>,
) -> Result<NodeResult, String> {
    let Call {
        job,
        uses,
        secrets,
        chain,
    } = *call;
    crate::call::check_chain(chain, uses).map_err(|e| format!("job '{key}': {e}"))?;
    let path = called_workflow_path(shared, uses, key).await?;
    let called = Arc::new(crate::workflow::Workflow::load(&path)?);
    crate::call::check_callable(&called)?;
    let inputs = crate::call::inputs(&called, job.get("with"), cx, host, key, uses)?;
    let parent = secrets.unwrap_or(&shared.run.secrets);
    let secrets = crate::call::secrets(job.get("secrets"), parent, cx, host)?;
    let mut chain = chain.to_vec();
    chain.push(uses.to_string());
    let results = run_graph(
        shared.clone(),
        called.clone(),
        format!("{key} / "),
        None,
        Some(inputs.clone()),
        Some(secrets),
        chain,
    )
    .await?;
    let result = crate::call::conclusion(results.values().map(|r| r.result));
    let jobs: Map<String, Value> = results
        .iter()
        .map(|(k, r)| {
            (
                k.clone(),
                json!({"result": r.result.as_str(), "outputs": r.outputs}),
            )
        })
        .collect();
    let outputs = crate::call::outputs(&called, &inputs, jobs, cx, host)?;
    Ok(NodeResult { result, outputs })
}
