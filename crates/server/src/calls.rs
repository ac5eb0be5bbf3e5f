//! Reusable workflows on the server, as GitHub runs them and as `hangar run`
//! does (the rules are the engine's `call`): a job that `uses:` a workflow
//! is expanded, when the scheduler decides it runs, into the called
//! workflow's jobs, stored as job rows of the run keyed `caller / callee`
//! (`caller (a) / callee` for a matrix leg of the caller), their `needs`
//! inside the callee. The caller's row stays in the run's graph, so its
//! `needs` and `if:` gate the whole callee and its dependents wait for it:
//! it is `running` (never leased: no agent runs it) until its called jobs
//! are all done, then takes their conclusion and the called workflow's
//! `outputs`. A called job's row carries what it needs to be compiled and
//! leased like any other: the called file's text, its `inputs`, and the
//! chain of `secrets:` mappings from the triggered workflow down, evaluated
//! only when it is leased, over what the run may hold (a fork's pull
//! request holds nothing, so passes nothing on).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use hangar_engine::schedule::StatusHost;
use hangar_store::{Conclusion, Job, JobUpdate, NewJob, Run, Status, now_ms};

use crate::app::{App, needs_context, status_host_of};

/// The key of a called job's spec holding its call (see the module doc).
pub(crate) const CALL: &str = "call";
/// The key of a caller's spec, once expanded, holding what settling it needs.
const CALLING: &str = "calling";

/// A caller's row is running exactly while its called jobs run: no agent
/// holds it, so it has no lease.
pub(crate) fn is_running_caller(job: &Job) -> bool {
    job.status == Status::Running && job.lease_owner.is_none()
}

/// The workflow a job is written in: `(path, text, id of the job in it)`.
/// A called job's is its called file; any other's the run's workflow.
fn defined_in(run: &Run, run_text: &str, job: &Job, spec: &Value) -> (String, String, String) {
    match spec.get(CALL) {
        Some(call) => (
            call["path"].as_str().unwrap_or_default().to_string(),
            call["text"].as_str().unwrap_or_default().to_string(),
            call["job"].as_str().unwrap_or_default().to_string(),
        ),
        None => (
            run.workflow_path.clone(),
            run_text.to_string(),
            job.key.clone(),
        ),
    }
}

/// `path:line:col: ` of `key` of `job` (a called job's in its called file),
/// `run_text` being the run's workflow.
pub(crate) fn key_place(run: &Run, run_text: &str, job: &Job, spec: &Value, key: &str) -> String {
    let (path, text, id) = defined_in(run, run_text, job, spec);
    place(&path, &text, &id, key)
}

/// `path:line:col: ` of `key` of job `id` in `text`, when it reads.
fn place(path: &str, text: &str, id: &str, key: &str) -> String {
    let Ok(wf) = hangar_engine::Workflow::parse(Path::new(path), text) else {
        return format!("{path}: ");
    };
    let at = wf.location(id, None, key);
    match (at.file, at.line, at.col) {
        (Some(f), Some(l), Some(c)) => format!("{f}:{l}:{c}: "),
        _ => format!("{path}: "),
    }
}

/// The key prefix (`caller / `) of the called jobs of a caller that was
/// expanded; `None` for any other job.
pub(crate) fn called_prefix(spec: &Value) -> Option<String> {
    spec.get(CALLING)?.get("prefix")?.as_str().map(String::from)
}

/// The spec without the keys the server adds: the job's own mapping.
pub(crate) fn own_mapping(spec: &Value) -> Value {
    let mut s = spec.clone();
    if let Value::Object(m) = &mut s {
        m.remove(CALL);
        m.remove(CALLING);
    }
    s
}

/// Waiting called jobs whose caller is not running (see
/// [`App::called_jobs_waiting_on_callers`]).
#[derive(Default)]
pub(crate) struct CalledWaiting<'j> {
    /// Their caller has not started yet: they wait for it.
    pub(crate) held: Vec<i64>,
    /// Their caller ended without running them: each with why it is skipped.
    pub(crate) orphaned: Vec<(&'j Job, String)>,
}

impl App {
    /// The `inputs` context of a job: a called job's from its call, any
    /// other's from the run's inputs through the engine's one builder (the
    /// one `hangar run` uses: given values, the event's, declared defaults,
    /// typed as declared).
    pub(crate) fn job_inputs(&self, run: &Run, spec: &Value) -> anyhow::Result<Value> {
        if let Some(call) = spec.get(CALL) {
            return Ok(call.get("inputs").cloned().unwrap_or(json!({})));
        }
        let ctx = self.store.run_context(run.id)?;
        let given = ctx
            .get("inputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let text = ctx.get("workflow").and_then(Value::as_str).unwrap_or("");
        Ok(
            match hangar_engine::Workflow::parse(Path::new(&run.workflow_path), text) {
                Ok(wf) => {
                    let payload = self.store.run_payload(run.id)?;
                    Value::Object(hangar_engine::run::inputs_context(
                        &wf, &run.event, &payload, &given,
                    ))
                }
                Err(_) => Value::Object(given),
            },
        )
    }

    /// The contexts of a job's own keys (`if:`, `environment`, `concurrency`,
    /// `strategy`, a call's `with:`): `github`, `needs`, `vars`, `inputs`,
    /// `matrix` and `strategy`, each from the builder `hangar run` uses.
    pub(crate) fn job_contexts(
        &self,
        run: &Run,
        job: &Job,
        spec: &Value,
        deps: &[&Job],
    ) -> anyhow::Result<Value> {
        let host = status_host_of(deps);
        // `github.job` is the job's id in its own file: a called job's is
        // the callee's (`build`), not its key in the run (`call / build`).
        let id = spec
            .pointer(&format!("/{CALL}/job"))
            .and_then(Value::as_str)
            .unwrap_or(&job.key);
        Ok(json!({
            "github": self.github_context(run, id)?,
            "needs": needs_context(deps, &host),
            "vars": self.store.variables_for_repo(run.repo_id)?,
            "inputs": self.job_inputs(run, spec)?,
            "matrix": spec.get("matrix").cloned().unwrap_or(json!({})),
            "strategy": spec.get(crate::workflows::STRATEGY_CONTEXT).cloned().unwrap_or(json!({})),
        }))
    }

    /// Expands a caller the scheduler decided to run into its called jobs
    /// and marks it running. `Err` inside: why the call cannot be made (at
    /// the caller's `uses:` line); the caller then fails.
    pub(crate) async fn start_call(
        &self,
        run: &Run,
        job: &Job,
        spec: &Value,
        deps: &[&Job],
    ) -> anyhow::Result<Result<(), String>> {
        let ctx = self.store.run_context(run.id)?;
        let run_text = ctx.get("workflow").and_then(Value::as_str).unwrap_or("");
        let (caller_path, caller_text, caller_id) = defined_in(run, run_text, job, spec);
        let at = place(&caller_path, &caller_text, &caller_id, "uses");
        let uses = spec
            .get("uses")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim();
        let leg_key = spec
            .get(crate::workflows::LEG_KEY)
            .and_then(Value::as_str)
            .unwrap_or(&job.key)
            .to_string();
        let caller_call = spec.get(CALL);
        let chain: Vec<String> = match caller_call.and_then(|c| c.get("chain")) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => vec![format!("./{}", run.workflow_path)],
        };
        if uses.contains("${{") {
            return Ok(Err(format!(
                "{at}`uses: {uses}`: a called workflow is named literally (GitHub evaluates no expression there)"
            )));
        }
        if let Err(e) = hangar_engine::call::check_chain(&chain, uses) {
            return Ok(Err(format!("{at}job '{leg_key}': {e}")));
        }
        let clone_url = ctx.get("clone_url").and_then(Value::as_str).unwrap_or("");
        let (path, text) = match self.called_file(run, clone_url, uses).await {
            Ok(found) => found,
            Err(e) => return Ok(Err(format!("{at}job '{leg_key}': {e}"))),
        };
        let called = match hangar_engine::call::callee(Path::new(&path), &text) {
            Ok(w) => w,
            Err(e) => return Ok(Err(format!("{at}{e}"))),
        };
        let contexts = self.job_contexts(run, job, spec, deps)?;
        let cx = hangar_expr::Contexts::from_json(&contexts);
        let host = status_host_of(deps);
        let inputs = match hangar_engine::call::inputs(
            &called,
            spec.get("with"),
            &cx,
            &host,
            &leg_key,
            uses,
        ) {
            Ok(i) => i,
            Err(e) => return Ok(Err(format!("{at}{e}"))),
        };
        let planned = crate::workflows::parse(&path, &text)
            .map_err(|invalid| invalid.to_string())
            .and_then(|w| {
                let jobs = w.plan_jobs(self.max_attempts)?;
                let mut nodes: Vec<(String, Vec<String>)> = Vec::new();
                for j in &jobs {
                    if !nodes.iter().any(|(k, _)| *k == j.key) {
                        nodes.push((j.key.clone(), j.needs.clone()));
                    }
                }
                hangar_engine::schedule::Graph::new(nodes).map_err(|e| format!("{path}: {e}"))?;
                Ok(jobs)
            });
        let planned = match planned {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("{at}{e}"))),
        };
        let prefix = format!("{leg_key} / ");
        let mut levels: Vec<Value> = match caller_call.and_then(|c| c.get("secrets")) {
            Some(Value::Array(a)) => a.clone(),
            _ => vec![],
        };
        levels.push(json!({
            "mapping": spec.get("secrets").cloned().unwrap_or(Value::Null),
            "contexts": contexts,
        }));
        let mut chain_below = chain.clone();
        chain_below.push(uses.to_string());
        let call = |callee_job: &str| {
            json!({
                "uses": uses,
                "path": path,
                "text": text,
                "job": callee_job,
                "inputs": inputs,
                "secrets": levels,
                "chain": chain_below,
                "caller_name": job.name,
            })
        };
        let existing = self.store.jobs_of_run(run.id)?;
        // A re-run of the caller finds its called jobs there already (each
        // reset or kept as the re-run chose): they are not added twice.
        if !existing.iter().any(|j| j.key.starts_with(&prefix)) {
            let rows: Vec<NewJob> = planned
                .into_iter()
                .map(|nj| {
                    let mut s = nj.spec;
                    if let Value::Object(m) = &mut s {
                        m.insert(CALL.into(), call(&nj.key));
                        if let Some(k) = m.get(crate::workflows::LEG_KEY).and_then(Value::as_str) {
                            let k = format!("{prefix}{k}");
                            m.insert(crate::workflows::LEG_KEY.into(), json!(k));
                        }
                    }
                    NewJob {
                        key: format!("{prefix}{}", nj.key),
                        name: format!("{} / {}", job.name, nj.name),
                        needs: nj.needs.iter().map(|n| format!("{prefix}{n}")).collect(),
                        labels: nj.labels,
                        environment: nj.environment,
                        max_attempts: nj.max_attempts,
                        spec: s,
                    }
                })
                .collect();
            self.store.add_jobs(run.id, &rows)?;
        }
        let mut caller_spec = spec.clone();
        if let Value::Object(m) = &mut caller_spec {
            m.insert(
                CALLING.into(),
                json!({"prefix": prefix, "path": path, "text": text, "contexts": contexts, "inputs": inputs}),
            );
        }
        self.store.set_job_spec(job.id, &job.name, &caller_spec)?;
        self.store.update_job(
            job.id,
            &JobUpdate {
                status: Some(Status::Running),
                waiting_reason: Some(Some(format!("running the jobs of {uses}"))),
                ..Default::default()
            },
        )?;
        self.publish_job(run.id, job.id);
        Ok(Ok(()))
    }

    /// `(path, text)` of the workflow `uses` calls: a local one from the
    /// run's commit, a remote one fetched through the engine's action cache
    /// from the server's action source, as `hangar run` fetches it.
    async fn called_file(
        &self,
        run: &Run,
        clone_url: &str,
        uses: &str,
    ) -> Result<(String, String), String> {
        if let Some(rest) = uses.strip_prefix("./") {
            let rest = rest.split('@').next().unwrap_or(rest);
            if !rest.starts_with(".github/workflows/") {
                return Err(format!(
                    "`uses: {uses}`: a local reusable workflow is a file of .github/workflows"
                ));
            }
            let files = self
                .git
                .workflows_at(clone_url, &run.sha)
                .await
                .map_err(|e| format!("reading {uses} at {}: {e:#}", run.sha))?;
            return files
                .into_iter()
                .find(|(p, _)| p == rest)
                .ok_or_else(|| format!("`uses: {uses}`: no such file at commit {}", run.sha));
        }
        let r = hangar_engine::actions::RemoteRef::parse(uses)?;
        if r.path.is_empty() {
            return Err(format!(
                "`uses: {uses}` names a repository, not a workflow file (expected OWNER/REPO/.github/workflows/FILE.yml@REF)"
            ));
        }
        let cache = hangar_engine::actions::ActionCache::new(&self.data_dir);
        let source = self.actions.clone();
        let r2 = r.clone();
        let fetched = tokio::task::spawn_blocking(move || cache.fetch(&source, &r2))
            .await
            .unwrap_or_else(|e| Err(format!("fetching `{uses}` stopped: {e}")))?;
        let file = fetched.path(&r);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("`uses: {uses}`: cannot read the called workflow: {e}"))?;
        let display = uses.split('@').next().unwrap_or(uses).to_string();
        Ok((display, text))
    }

    /// The waiting called jobs whose caller is not running. A re-run resets called jobs with (or without) their
    /// caller, but the rows stay: `held` ones wait for their caller to start
    /// (its `needs` and `if:` gate them, as they gated the first attempt,
    /// whose rows did not exist before the caller ran); `orphaned` ones have
    /// a caller that ended without running them (skipped by its `if:`,
    /// failed before its call) and are skipped with it.
    pub(crate) fn called_jobs_waiting_on_callers<'j>(
        &self,
        jobs: &'j [Job],
    ) -> anyhow::Result<CalledWaiting<'j>> {
        let waiting: Vec<&Job> = jobs
            .iter()
            .filter(|j| j.status == Status::Waiting && j.key.contains(" / "))
            .collect();
        let mut out = CalledWaiting::default();
        if waiting.is_empty() {
            return Ok(out);
        }
        // A caller is never leased, so never started: only those rows can be.
        let mut callers: Vec<(String, &Job)> = Vec::new();
        for j in jobs.iter().filter(|j| j.started_at.is_none()) {
            if let Some(prefix) = self
                .store
                .get_job(j.id)?
                .and_then(|full| called_prefix(&full.spec))
            {
                callers.push((prefix, j));
            }
        }
        for j in waiting {
            // The nearest caller: a nested call's own, not the one above it.
            let Some((_, caller)) = callers
                .iter()
                .filter(|(p, _)| j.key.starts_with(p.as_str()))
                .max_by_key(|(p, _)| p.len())
            else {
                continue;
            };
            match caller.status {
                Status::Running => {}
                Status::Completed => {
                    let c = caller
                        .conclusion
                        .map_or("without a conclusion".to_string(), |c| c.to_string());
                    out.orphaned.push((
                        j,
                        format!(
                            "skipped: its caller `{}` ended {c} without calling it",
                            caller.name
                        ),
                    ))
                }
                Status::Waiting | Status::Queued => out.held.push(j.id),
            }
        }
        Ok(out)
    }

    /// Completes every running caller whose called jobs are all done, with
    /// their conclusion and the called workflow's outputs. Whether any was.
    pub(crate) fn settle_calls(&self, run: &Run, jobs: &[Job]) -> anyhow::Result<bool> {
        let mut settled = false;
        for caller in jobs.iter().filter(|j| is_running_caller(j)) {
            let Some(spec) = self.store.get_job(caller.id)?.map(|j| j.spec) else {
                continue;
            };
            let Some(calling) = spec.get(CALLING) else {
                continue;
            };
            let prefix = calling["prefix"].as_str().unwrap_or_default();
            let below: Vec<&Job> = jobs.iter().filter(|j| j.key.starts_with(prefix)).collect();
            if below.iter().any(|j| j.status != Status::Completed) {
                continue;
            }
            // The called workflow's own jobs (a nested caller is one; the
            // jobs it called are its business), legs grouped by job.
            let mut direct: BTreeMap<String, (Vec<Conclusion>, Map<String, Value>)> =
                BTreeMap::new();
            for j in &below {
                let id = &j.key[prefix.len()..];
                if id.contains(" / ") {
                    continue;
                }
                let e = direct.entry(id.to_string()).or_default();
                e.0.push(crate::app::scheduled_conclusion(j));
                if let Value::Object(o) = &j.outputs {
                    e.1.extend(o.clone());
                }
            }
            let conclusion = hangar_engine::call::conclusion(
                direct
                    .values()
                    .map(|(c, _)| hangar_engine::schedule::aggregate(c.iter().copied())),
            );
            let jobs_cx: Map<String, Value> = direct
                .iter()
                .map(|(id, (c, o))| {
                    let r = hangar_engine::schedule::aggregate(c.iter().copied());
                    (id.clone(), json!({"result": r.as_str(), "outputs": o}))
                })
                .collect();
            let path = calling["path"].as_str().unwrap_or_default();
            let text = calling["text"].as_str().unwrap_or_default();
            let cx = hangar_expr::Contexts::from_json(&calling["contexts"]);
            let host = StatusHost::default();
            let (conclusion, outputs, reason) =
                match hangar_engine::call::callee(Path::new(path), text).and_then(|w| {
                    let inputs = calling["inputs"].as_object().cloned().unwrap_or_default();
                    hangar_engine::call::outputs(&w, &inputs, jobs_cx, &cx, &host)
                }) {
                    Ok(o) => (
                        conclusion,
                        o,
                        format!("the called workflow {path} concluded {conclusion}"),
                    ),
                    Err(e) => (
                        Conclusion::Failure,
                        BTreeMap::new(),
                        format!("{path}: on.workflow_call.outputs: {e}"),
                    ),
                };
            self.store.update_job(
                caller.id,
                &JobUpdate {
                    status: Some(Status::Completed),
                    conclusion: Some(Some(conclusion)),
                    waiting_reason: Some(Some(reason)),
                    finished_at: Some(now_ms()),
                    outputs: Some(json!(outputs)),
                    ..Default::default()
                },
            )?;
            self.publish_job(run.id, caller.id);
            settled = true;
        }
        Ok(settled)
    }
}

/// The lines the run graph draws into each job shown, by id: its `needs`,
/// where an expanded caller (not shown: it is no job of its own, as on
/// GitHub) stands for the jobs it called. A job that needs a caller is
/// drawn from the called jobs that end the called workflow (those no other
/// job of it needs; a nested caller among them, from its own), and a
/// called job that needs nothing in its workflow is drawn from what its
/// caller needs. `hidden`: each expanded caller with its called jobs'
/// key prefix.
pub(crate) fn graph_needs(jobs: &[Job], hidden: &[(&Job, String)]) -> BTreeMap<i64, Vec<String>> {
    // Nesting is bounded by GitHub's ten levels; the bound here only keeps
    // a key that happens to look nested (a matrix value with ` / `) finite.
    const DEPTH: usize = 12;
    fn push(out: &mut Vec<String>, key: String) {
        if !out.contains(&key) {
            out.push(key);
        }
    }
    // The keys drawn for one `needs` entry.
    fn drawn(
        jobs: &[Job],
        hidden: &[(&Job, String)],
        need: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        let callers: Vec<&String> = hidden
            .iter()
            .filter(|(c, _)| c.key == need)
            .map(|(_, p)| p)
            .collect();
        if callers.is_empty() || depth == 0 {
            push(out, need.to_string());
            return;
        }
        for prefix in callers {
            // The called workflow's own jobs (legs share a key).
            let own: Vec<&Job> = jobs
                .iter()
                .filter(|j| {
                    j.key
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| !rest.contains(" / "))
                })
                .collect();
            for end in own
                .iter()
                .filter(|j| !own.iter().any(|o| o.needs.contains(&j.key)))
            {
                drawn(jobs, hidden, &end.key, depth - 1, out);
            }
        }
    }
    // The keys drawn into a job (or a caller) with these `needs`.
    fn into(
        jobs: &[Job],
        hidden: &[(&Job, String)],
        key: &str,
        needs: &[String],
        depth: usize,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if depth == 0 {
            return out;
        }
        for n in needs {
            drawn(jobs, hidden, n, DEPTH, &mut out);
        }
        if needs.is_empty()
            && let Some((caller, _)) = hidden
                .iter()
                .filter(|(_, p)| key.starts_with(p.as_str()))
                .max_by_key(|(_, p)| p.len())
        {
            out = into(jobs, hidden, &caller.key, &caller.needs, depth - 1);
        }
        out
    }
    jobs.iter()
        .filter(|j| !hidden.iter().any(|(c, _)| c.id == j.id))
        .map(|j| (j.id, into(jobs, hidden, &j.key, &j.needs, DEPTH)))
        .collect()
}

/// The secrets a called job holds: `base` (what the run may give, nothing
/// for a fork's pull request) passed down each level's `secrets:` mapping
/// (or `inherit`) from the triggered workflow to its called file. A job
/// that is not called holds `base`.
pub(crate) fn called_secrets(
    spec: &Value,
    base: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let Some(levels) = spec.pointer("/call/secrets").and_then(Value::as_array) else {
        return base;
    };
    let mut held = base;
    for level in levels {
        let cx = hangar_expr::Contexts::from_json(&level["contexts"]);
        let mapping = level.get("mapping").filter(|m| !m.is_null());
        held = match hangar_engine::call::secrets(mapping, &held, &cx, &StatusHost::default()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("a called job's secrets mapping failed: {e}");
                BTreeMap::new()
            }
        };
    }
    held
}
