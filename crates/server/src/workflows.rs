//! What the server needs from a workflow file before any job runs: which events
//! trigger it (with branch, tag, path and type filters), its `workflow_dispatch`
//! inputs, its cron schedules, its concurrency group, and its jobs (`needs`,
//! `runs-on` labels, `environment`, matrix combinations).
//!
//! This reads the YAML as plain data. Running a job (steps, expressions) is the
//! engine's business on the agent side; the agent receives the workflow text too.

use serde_json::{Map, Value, json};

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use hangar_engine::context::GithubFacts;
use hangar_store::{NewJob, Run};
use hangar_workflow::model::{Input, InputType, LoE, Spanned, Trigger, Workflow as Model};

/// The key of a planned job's spec that holds its leg's `strategy`
/// context (built by the engine's one builder when the leg is planned).
pub(crate) const STRATEGY_CONTEXT: &str = "strategy_context";

/// The key of a planned leg's spec that holds the key `hangar run` gives
/// the leg (`call (a, 1)`): a called workflow's jobs are named after it.
pub(crate) const LEG_KEY: &str = "leg_key";

/// An event normalised across forges.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// `push`, `pull_request`, `pull_request_target`, `workflow_dispatch` or `schedule`.
    pub name: String,
    /// Full ref: `refs/heads/main`, `refs/tags/v1`, `refs/pull/3/merge`.
    pub git_ref: String,
    pub sha: String,
    pub before: String,
    /// For pull requests: the base branch (filters match it) and the action.
    pub base_ref: Option<String>,
    pub action: Option<String>,
    pub changed_files: Option<Vec<String>>,
    pub deleted: bool,
    pub payload: Value,
    pub actor: String,
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub path: String,
    pub name: String,
    pub text: String,
    /// The job specs the store keeps are cut from this JSON form.
    pub doc: Value,
    /// What the server reads: triggers, concurrency, jobs.
    pub model: Model,
}

/// A commit's workflows: each file's path, and its parsed workflow or what is
/// wrong with it.
pub type CommitWorkflows = Arc<Vec<(String, Result<Arc<Workflow>, Arc<Invalid>>)>>;

/// The most errors kept of one file: a file of a million wrong keys is shown
/// by its first ones, and says how many more there were.
pub(crate) const MAX_FILE_ERRORS: usize = 50;
/// The most characters kept of one error's message (the message may quote
/// the file's text, which is anyone's).
pub(crate) const MAX_ERROR_CHARS: usize = 1000;

/// One reason a workflow file cannot run, where it is: a `hangar validate`
/// error as the run page and the run API show it. The place is absent for a
/// failed run whose reason is not in a file (a pull request head that could
/// not be fetched).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileError {
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl FileError {
    /// An error without a place in a file, bounded as every error is.
    pub fn unplaced(message: &str) -> FileError {
        FileError {
            file: None,
            line: None,
            column: None,
            message: bounded(message),
        }
    }

    fn at(file: &str, line: usize, column: usize, message: &str) -> FileError {
        FileError {
            file: Some(bounded(file)),
            line: Some(line),
            column: Some(column),
            message: bounded(message),
        }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line, self.column) {
            (Some(file), Some(l), Some(c)) => write!(f, "{file}:{l}:{c}: {}", self.message),
            (Some(file), _, _) => write!(f, "{file}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Errors as GitHub words them under an invalid file's "Invalid workflow
/// file" annotation: `The workflow is not valid. PATH (Line: 7, Col: 13):
/// message`, one error a line; an error with no place as it is.
pub fn errors_text(errors: &[FileError]) -> String {
    let mut out = String::new();
    let mut said = false;
    for e in errors {
        if !out.is_empty() {
            out.push('\n');
        }
        match (&e.file, e.line, e.column) {
            (Some(file), Some(l), Some(c)) => {
                if !std::mem::replace(&mut said, true) {
                    out.push_str("The workflow is not valid. ");
                }
                out.push_str(&format!("{file} (Line: {l}, Col: {c}): {}", e.message));
            }
            (Some(file), _, _) => out.push_str(&format!("{file}: {}", e.message)),
            _ => out.push_str(&e.message),
        }
    }
    out
}

/// `s` cut to [`MAX_ERROR_CHARS`] characters, saying so.
fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        None => s.to_string(),
        Some((end, _)) => format!("{}… (cut at {MAX_ERROR_CHARS} characters)", &s[..end]),
    }
}

/// A workflow file the server refuses (what `hangar validate` refuses): its
/// errors in file order, and its triggers when they could be read apart
/// from what is wrong (GitHub shows an invalid file's failed run for an
/// event that would have triggered it, or when it cannot tell).
#[derive(Debug, Clone)]
pub struct Invalid {
    pub path: String,
    pub errors: Vec<FileError>,
    /// `None`: not known (not YAML, or `on:` itself is wrong).
    pub on: Option<Vec<Trigger>>,
}

impl Invalid {
    fn new(path: &str, text: &str, mut errors: Vec<FileError>) -> Invalid {
        let lines: Vec<usize> = errors.iter().filter_map(|e| e.line).collect();
        let on = Model::triggers_despite_errors(text, &lines);
        if errors.len() > MAX_FILE_ERRORS {
            let more = errors.len() - MAX_FILE_ERRORS;
            errors.truncate(MAX_FILE_ERRORS);
            errors.push(FileError {
                file: Some(bounded(path)),
                line: None,
                column: None,
                message: format!("{more} more errors are not shown"),
            });
        }
        Invalid {
            path: path.to_string(),
            errors,
            on,
        }
    }

    /// Whether `ev` would have started this file, had it been valid: a
    /// push or a pull request its `on:` matches, or any of them when its
    /// `on:` could not be read. Other events never show an invalid file
    /// (a manual dispatch is answered 422 instead).
    pub fn triggered_by(&self, ev: &Event) -> bool {
        if !matches!(
            ev.name.as_str(),
            "push" | "pull_request" | "pull_request_target"
        ) {
            return false;
        }
        match &self.on {
            None => !(ev.name == "push" && ev.deleted),
            Some(on) => trigger_matches(on.iter().find(|t| t.event.value == ev.name), ev),
        }
    }

    /// The first error's line: where GitHub's "Invalid workflow file"
    /// annotation points (`path#L7`).
    pub fn first_line(&self) -> usize {
        self.errors.iter().find_map(|e| e.line).unwrap_or(1)
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// How many commits' workflows are kept.
const CACHED_COMMITS: usize = 256;

/// The workflows of recent commits, read from git and parsed once per
/// (clone URL, commit): a commit's files never change, so an entry is never
/// stale, and a new commit is a new key. Bounded; the oldest entry leaves
/// first. Every webhook of a push, and every `workflow_run` request and
/// completion of its runs, read the same commit.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Entries>,
}

/// The cached commits, and their keys oldest first.
type Entries = (
    HashMap<(String, String), CommitWorkflows>,
    VecDeque<(String, String)>,
);

impl Cache {
    fn get(&self, clone_url: &str, sha: &str) -> Option<CommitWorkflows> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(&(clone_url.to_string(), sha.to_string())).cloned()
    }

    fn put(&self, clone_url: &str, sha: &str, wfs: CommitWorkflows) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (clone_url.to_string(), sha.to_string());
        if g.0.insert(key.clone(), wfs).is_none() {
            g.1.push_back(key);
        }
        while g.1.len() > CACHED_COMMITS {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
    }
}

/// The workflows of `sha` in the repository at `clone_url`, read and parsed
/// at most once while the commit stays in the cache.
pub async fn at_commit(
    cache: &Cache,
    git: &crate::git::GitReader,
    clone_url: &str,
    sha: &str,
) -> anyhow::Result<CommitWorkflows> {
    if let Some(hit) = cache.get(clone_url, sha) {
        return Ok(hit);
    }
    let files = git.workflows_at(clone_url, sha).await?;
    let parsed: CommitWorkflows = Arc::new(
        files
            .into_iter()
            .map(|(path, text)| {
                let wf = parse(&path, &text).map(Arc::new).map_err(Arc::new);
                (path, wf)
            })
            .collect(),
    );
    cache.put(clone_url, sha, parsed.clone());
    Ok(parsed)
}

pub fn parse(path: &str, text: &str) -> Result<Workflow, Invalid> {
    let model = Model::parse(text).map_err(|errors| {
        let errors = errors
            .iter()
            .map(|e| FileError::at(path, e.pos.line, e.pos.column, &e.message))
            .collect();
        Invalid::new(path, text, errors)
    })?;
    // What `hangar run` and `hangar validate` refuse, the server refuses too,
    // at the same line and column (GitHub: "Invalid workflow file"): a file
    // that one side runs and the other does not is two models again.
    let invalid: Vec<FileError> = hangar_workflow::validate(path, text)
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| {
            let message = match &d.help {
                Some(help) => format!("{} ({help})", d.message),
                None => d.message.clone(),
            };
            FileError::at(&d.file, d.line, d.column, &message)
        })
        .collect();
    if !invalid.is_empty() {
        return Err(Invalid::new(path, text, invalid));
    }
    let doc = model.root.to_json();
    let name = model
        .name
        .as_ref()
        .map(|n| n.raw().to_string())
        .unwrap_or_else(|| path.to_string());
    Ok(Workflow {
        path: path.to_string(),
        name,
        text: text.to_string(),
        doc,
        model,
    })
}

impl Workflow {
    pub fn triggered_by(&self, ev: &Event) -> bool {
        trigger_matches(self.model.trigger(&ev.name), ev)
    }

    /// The `schedule:` entries: each cron with the IANA time zone it is read
    /// in (`None`: UTC).
    pub fn schedules(&self) -> Vec<(String, Option<String>)> {
        self.model
            .trigger("schedule")
            .map(|t| {
                t.schedules
                    .iter()
                    .map(|s| {
                        (
                            s.cron.value.clone(),
                            s.timezone.as_ref().map(|z| z.value.clone()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `workflow_dispatch` inputs, when the workflow has that trigger.
    pub fn dispatch_inputs(&self) -> Option<&[Input]> {
        self.model
            .trigger("workflow_dispatch")
            .map(|t| t.inputs.as_slice())
    }

    /// The dispatch inputs as the API and UI show them: name → `{type,
    /// required, default, options, description}`.
    pub fn dispatch_inputs_json(&self) -> Option<Value> {
        let inputs = self.dispatch_inputs()?;
        let map: Map<String, Value> = inputs
            .iter()
            .map(|i| {
                let mut d = Map::new();
                d.insert("type".into(), json!(i.kind.as_str()));
                d.insert("required".into(), json!(i.required));
                if let Some(v) = &i.default {
                    d.insert("default".into(), v.to_json());
                }
                if !i.options.is_empty() {
                    let options: Vec<&str> = i.options.iter().map(|o| o.value.as_str()).collect();
                    d.insert("options".into(), json!(options));
                }
                if let Some(t) = &i.description {
                    d.insert("description".into(), json!(t.raw()));
                }
                (i.name.name.clone(), Value::Object(d))
            })
            .collect();
        Some(Value::Object(map))
    }

    /// `(group, cancel-in-progress)` with the common `${{ github.* }}` references filled in.
    pub fn concurrency(&self, ev: &Event, repo: &str) -> Option<(String, bool)> {
        let c = &self.model.concurrency.as_ref()?.value;
        let cancel = c
            .cancel_in_progress
            .as_ref()
            .and_then(|c| c.literal_value().copied())
            .unwrap_or(false);
        Some((substitute_github(c.group.raw(), ev, repo, self), cancel))
    }

    /// The workflow's jobs, one per matrix combination, in file order.
    pub fn plan_jobs(&self, max_attempts: i64) -> Result<Vec<NewJob>, String> {
        if self.model.root.get("jobs").is_none() {
            return Err(format!(
                "{}: the workflow has no `jobs:` mapping",
                self.path
            ));
        }
        let mut out = Vec::new();
        for job in &self.model.jobs {
            let key = &job.id.name;
            let needs: Vec<String> = job.needs_ids().map(String::from).collect();
            for n in &needs {
                if self.model.job(n).is_none() {
                    return Err(format!(
                        "{}: job `{key}` needs `{n}`, which is not a job in this workflow",
                        self.path
                    ));
                }
            }
            let labels: Vec<String> = job
                .runs_on
                .iter()
                .flat_map(|r| r.value.labels.iter().map(|l| l.raw().to_string()))
                .collect();
            let environment = job
                .environment
                .as_ref()
                .map(|e| e.value.name.raw().to_string());
            let base_name = job
                .name
                .as_ref()
                .map_or(key.as_str(), |n| n.raw())
                .to_string();
            let job_json = self
                .doc
                .get("jobs")
                .and_then(|j| j.get(key))
                .cloned()
                .unwrap_or(Value::Null);
            let strategy = match job.strategy.as_ref().map(|s| &s.value) {
                Some(LoE::Literal(s)) => Some(s),
                _ => None,
            };
            if strategy.is_some_and(|s| s.matrix_has_expressions()) {
                // The legs depend on expressions (often `fromJSON(needs.x.outputs.y)`):
                // one placeholder now, expanded by the scheduler when the job is ready.
                let mut spec = job_json;
                if let Value::Object(m) = &mut spec {
                    m.insert("matrix_deferred".into(), Value::Bool(true));
                }
                out.push(NewJob {
                    key: key.clone(),
                    name: base_name.clone(),
                    needs: needs.clone(),
                    labels: labels.clone(),
                    environment: environment.clone(),
                    max_attempts,
                    spec,
                });
                continue;
            }
            // The engine's matrix: the legs and names `hangar run` gives.
            let matrix = strategy
                .and_then(|s| s.matrix.as_ref())
                .map(|m| m.to_json());
            let legs = hangar_engine::matrix::legs(matrix.as_ref())
                .map_err(|e| format!("{}: job `{key}`: {e}", self.path))?;
            let total = legs.len();
            let strategy_json = job_json.get("strategy").cloned().unwrap_or(Value::Null);
            for (index, leg) in legs.into_iter().enumerate() {
                let name = hangar_engine::matrix::display_name(&base_name, &leg.segments);
                let combo = leg.matrix;
                let mut spec = job_json.clone();
                if let Value::Object(m) = &mut spec {
                    m.insert(
                        LEG_KEY.into(),
                        json!(hangar_engine::matrix::display_name(key, &leg.segments)),
                    );
                    m.insert("matrix".into(), Value::Object(combo.clone()));
                    m.insert(
                        STRATEGY_CONTEXT.into(),
                        Value::Object(hangar_engine::context::strategy_context(
                            &strategy_json,
                            index,
                            total,
                        )),
                    );
                }
                out.push(NewJob {
                    key: key.clone(),
                    name,
                    needs: needs.clone(),
                    labels: labels.clone(),
                    environment: environment.clone(),
                    max_attempts,
                    spec,
                });
            }
        }
        Ok(out)
    }
}

/// Whether `ev` passes `filter`, its workflow's entry for the event (none:
/// the workflow does not listen to it): refs, paths and activity types as
/// GitHub filters them.
fn trigger_matches(filter: Option<&Trigger>, ev: &Event) -> bool {
    let Some(filter) = filter else {
        return false;
    };
    match ev.name.as_str() {
        "push" => {
            if ev.deleted {
                return false;
            }
            let (kind, short) = split_ref(&ev.git_ref);
            let has_branch = filter.branches.is_some() || filter.branches_ignore.is_some();
            let has_tag = filter.tags.is_some() || filter.tags_ignore.is_some();
            let ref_ok = match kind {
                "branch" if has_tag && !has_branch => false,
                "tag" if has_branch && !has_tag => false,
                "branch" => ref_filter(&filter.branches, &filter.branches_ignore, short),
                "tag" => ref_filter(&filter.tags, &filter.tags_ignore, short),
                _ => true,
            };
            ref_ok && (kind == "tag" || path_filter(filter, ev.changed_files.as_deref()))
        }
        "pull_request" | "pull_request_target" => {
            let action = ev.action.clone().unwrap_or_default();
            let type_ok = match &filter.types {
                Some(types) if !types.is_empty() => types.iter().any(|t| t.value == action),
                _ => ["opened", "synchronize", "reopened"].contains(&action.as_str()),
            };
            type_ok
                && ref_filter(
                    &filter.branches,
                    &filter.branches_ignore,
                    ev.base_ref.as_deref().unwrap_or(""),
                )
                && path_filter(filter, ev.changed_files.as_deref())
        }
        _ => true,
    }
}

fn split_ref(r: &str) -> (&'static str, &str) {
    if let Some(b) = r.strip_prefix("refs/heads/") {
        ("branch", b)
    } else if let Some(t) = r.strip_prefix("refs/tags/") {
        ("tag", t)
    } else {
        ("other", r)
    }
}

pub fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

/// GitHub's filter-pattern matching: `*` stays within a path segment, `**` crosses
/// them, and later `!pattern` entries exclude what earlier ones included.
pub fn pattern_match(pattern: &str, value: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    glob::Pattern::new(pattern)
        .map(|p| p.matches_with(value, opts))
        .unwrap_or(pattern == value)
}

fn matches_list(patterns: &[String], value: &str) -> bool {
    let mut hit = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if pattern_match(neg, value) {
                hit = false;
            }
        } else if pattern_match(p, value) {
            hit = true;
        }
    }
    hit
}

fn patterns(list: &[Spanned<String>]) -> Vec<String> {
    list.iter().map(|p| p.value.clone()).collect()
}

fn ref_filter(
    include: &Option<Vec<Spanned<String>>>,
    ignore: &Option<Vec<Spanned<String>>>,
    value: &str,
) -> bool {
    if let Some(inc) = include {
        return matches_list(&patterns(inc), value);
    }
    if let Some(exc) = ignore {
        return !matches_list(&patterns(exc), value);
    }
    true
}

fn path_filter(filter: &Trigger, files: Option<&[String]>) -> bool {
    let Some(files) = files else { return true };
    if let Some(inc) = &filter.paths {
        let pats = patterns(inc);
        return files.iter().any(|f| matches_list(&pats, f));
    }
    if let Some(exc) = &filter.paths_ignore {
        let pats = patterns(exc);
        return files.iter().any(|f| !matches_list(&pats, f));
    }
    true
}

/// The facts of a job of `run` for the engine's `github` context builder
/// (the one `hangar run` uses). The agent is given the same ids.
pub fn github_facts(run: &Run, repository: &str, payload: Value, job: &str) -> GithubFacts {
    let (head_ref, base_ref) = hangar_engine::context::pr_refs(&payload);
    GithubFacts {
        event_name: run.event.clone(),
        event: payload,
        git_ref: run.git_ref.clone(),
        sha: run.sha.clone(),
        repository: repository.to_string(),
        actor: run.actor.clone(),
        head_ref,
        base_ref,
        run_id: run.id.to_string(),
        run_number: run.run_number.to_string(),
        run_attempt: run.attempt.to_string(),
        server_url: "https://github.com".into(),
        workflow: run.workflow_name.clone(),
        workflow_path: hangar_engine::workflow::repo_path(Path::new(&run.workflow_path)),
        job: job.to_string(),
    }
}

/// Evaluates `${{ }}` in a workflow's concurrency group with `hangar-expr`
/// over the `github` and `inputs` contexts known before the run starts (no
/// run id yet); a bad expression leaves the text as written (the group still
/// serialises runs that share it).
fn substitute_github(template: &str, ev: &Event, repo: &str, wf: &Workflow) -> String {
    if !template.contains("${{") {
        return template.to_string();
    }
    let (head_ref, base_ref) = hangar_engine::context::pr_refs(&ev.payload);
    let facts = GithubFacts {
        event_name: ev.name.clone(),
        event: ev.payload.clone(),
        git_ref: ev.git_ref.clone(),
        sha: ev.sha.clone(),
        repository: repo.to_string(),
        actor: ev.actor.clone(),
        head_ref,
        base_ref,
        server_url: "https://github.com".into(),
        workflow: wf.name.clone(),
        workflow_path: hangar_engine::workflow::repo_path(Path::new(&wf.path)),
        ..GithubFacts::default()
    };
    let ctx = hangar_expr::Contexts::from_json(&json!({
        "github": hangar_engine::context::github_context(&facts, None),
        "inputs": ev.payload.get("inputs").cloned().unwrap_or(json!({})),
    }));
    hangar_expr::Template::parse(template)
        .ok()
        .and_then(|t| t.eval_to_string(&ctx, &hangar_expr::DefaultHost).ok())
        .unwrap_or_else(|| template.to_string())
}

/// Checks dispatch inputs against the workflow's declared types; fills defaults.
pub fn check_inputs(declared: &[Input], given: &Map<String, Value>) -> Result<Value, String> {
    for k in given.keys() {
        if !declared.iter().any(|d| d.name.name == *k) {
            return Err(format!(
                "unknown input `{k}`; declared inputs: {}",
                declared
                    .iter()
                    .map(|d| d.name.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let mut out = Map::new();
    for decl in declared {
        let name = &decl.name.name;
        let value = match given
            .get(name)
            .cloned()
            .or_else(|| decl.default.as_ref().map(|d| d.to_json()))
        {
            Some(v) => v,
            None if decl.required => return Err(format!("input `{name}` is required")),
            None => continue,
        };
        let value = match decl.kind {
            InputType::Boolean => match &value {
                Value::Bool(_) => value,
                Value::String(s) if s == "true" || s == "false" => Value::Bool(s == "true"),
                _ => return Err(format!("input `{name}` must be a boolean, got {value}")),
            },
            InputType::Number => match &value {
                Value::Number(_) => value,
                Value::String(s) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                    .ok_or_else(|| format!("input `{name}` must be a number, got {s:?}"))?,
                _ => return Err(format!("input `{name}` must be a number, got {value}")),
            },
            InputType::Choice => {
                let s = value
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| value.to_string());
                if !decl.options.iter().any(|o| o.value == s) {
                    let opts: Vec<&str> = decl.options.iter().map(|o| o.value.as_str()).collect();
                    return Err(format!(
                        "input `{name}` must be one of {}, got {s:?}",
                        opts.join(", ")
                    ));
                }
                Value::String(s)
            }
            InputType::String | InputType::Environment => Value::String(
                value
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| value.to_string()),
            ),
        };
        out.insert(name.clone(), value);
    }
    Ok(json!(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(text: &str) -> Workflow {
        parse("ci.yml", text).unwrap()
    }

    fn push(r: &str, files: &[&str]) -> Event {
        Event {
            name: "push".into(),
            git_ref: r.into(),
            changed_files: Some(files.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn push_filters() {
        let w = wf(
            "on:\n  push:\n    branches: [main, 'release/**', '!release/old']\n    paths: ['src/**']\njobs: {a: {runs-on: x, steps: []}}",
        );
        assert!(w.triggered_by(&push("refs/heads/main", &["src/a.rs"])));
        assert!(!w.triggered_by(&push("refs/heads/main", &["README.md"])));
        assert!(w.triggered_by(&push("refs/heads/release/1/x", &["src/a.rs"])));
        assert!(!w.triggered_by(&push("refs/heads/release/old", &["src/a.rs"])));
        assert!(!w.triggered_by(&push("refs/heads/dev", &["src/a.rs"])));
        // Only branches are filtered, so tags do not trigger.
        assert!(!w.triggered_by(&push("refs/tags/v1", &[])));
        let t = wf("on:\n  push:\n    tags: ['v*']\njobs:\n  a: {runs-on: x, steps: [{run: x}]}");
        assert!(t.triggered_by(&push("refs/tags/v1.2", &[])));
        assert!(!t.triggered_by(&push("refs/heads/main", &[])));
    }

    #[test]
    fn pull_request_types() {
        let w = wf(
            "on:\n  pull_request:\n    types: [opened, labeled]\n    branches: [main]\njobs:\n  a: {runs-on: x, steps: [{run: x}]}",
        );
        let mut ev = Event {
            name: "pull_request".into(),
            action: Some("labeled".into()),
            base_ref: Some("main".into()),
            ..Default::default()
        };
        assert!(w.triggered_by(&ev));
        ev.action = Some("synchronize".into());
        assert!(!w.triggered_by(&ev));
        let d = wf("on: pull_request\njobs:\n  a: {runs-on: x, steps: [{run: x}]}");
        assert!(d.triggered_by(&ev));
    }

    #[test]
    fn matrix_and_needs_plan() {
        let w = wf(
            "on: push\njobs:\n  build:\n    runs-on: [self-hosted, linux]\n    strategy:\n      matrix:\n        os: [a, b]\n        v: [1, 2]\n        exclude: [{os: b, v: 2}]\n    steps: [{run: 'true'}]\n  deploy:\n    needs: build\n    environment: prod\n    runs-on: x\n    steps: []\n",
        );
        let jobs = w.plan_jobs(1).unwrap();
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].labels, vec!["self-hosted", "linux"]);
        assert_eq!(jobs[3].needs, vec!["build"]);
        assert_eq!(jobs[3].environment.as_deref(), Some("prod"));
        // Refused as `hangar validate` refuses it, before any planning.
        let bad = parse(
            "ci.yml",
            "on: push\njobs:\n  a:\n    needs: nope\n    runs-on: x\n",
        );
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("ci.yml:4:12: job `a` needs unknown job `nope`")
        );
    }

    /// The server plans the legs `hangar run` runs: GitHub's include rules and
    /// leg names (an include's extra values are not part of the name).
    #[test]
    fn matrix_legs_and_names_are_the_engines() {
        let w = wf(
            "on: push\njobs:\n  build:\n    runs-on: x\n    strategy:\n      matrix:\n        os: [a, b]\n        include: [{os: A, extra: e}, {os: c, n: 1}]\n    steps: [{run: 'true'}]\n",
        );
        let jobs = w.plan_jobs(1).unwrap();
        let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["build (a)", "build (b)", "build (c, 1)"]);
        assert_eq!(
            jobs[0].spec["matrix"],
            serde_json::json!({"os": "a", "extra": "e"})
        );
        let bad = wf(
            "on: push\njobs:\n  build:\n    runs-on: x\n    strategy:\n      matrix:\n        os: [a]\n        exclude: [{arch: x}]\n    steps: []\n",
        );
        let e = bad.plan_jobs(1).unwrap_err();
        assert!(e.contains("job `build`"), "{e}");
    }

    #[test]
    fn typed_inputs() {
        let w = wf(
            "on:\n  workflow_dispatch:\n    inputs:\n      n: {type: number, required: true}\n      flag: {type: boolean, default: false}\n      level: {type: choice, options: [a, b]}\njobs:\n  a: {runs-on: x, steps: [{run: x}]}",
        );
        let decl = w.dispatch_inputs().unwrap();
        let ok = check_inputs(decl, json!({"n": "3", "level": "a"}).as_object().unwrap()).unwrap();
        assert_eq!(ok["flag"], json!(false));
        assert_eq!(ok["n"], json!(3.0));
        assert!(
            check_inputs(decl, json!({}).as_object().unwrap())
                .unwrap_err()
                .contains("required")
        );
        assert!(check_inputs(decl, json!({"n": 1, "level": "z"}).as_object().unwrap()).is_err());
        assert!(check_inputs(decl, json!({"n": 1, "zz": 1}).as_object().unwrap()).is_err());
    }

    #[test]
    fn concurrency_group_substitution() {
        let w = wf(
            "on: push\nconcurrency:\n  group: ci-${{ github.ref }}\n  cancel-in-progress: true\njobs:\n  a: {runs-on: x, steps: [{run: x}]}",
        );
        let (g, c) = w.concurrency(&push("refs/heads/main", &[]), "r").unwrap();
        assert_eq!(g, "ci-refs/heads/main");
        assert!(c);
        let w = wf(
            "on: push\nconcurrency: ${{ github.workflow }}-${{ github.head_ref || github.ref }}\njobs:\n  a: {runs-on: x, steps: [{run: x}]}",
        );
        let (g, c) = w.concurrency(&push("refs/heads/dev", &[]), "r").unwrap();
        assert_eq!(g, "ci.yml-refs/heads/dev");
        assert!(!c);
    }

    /// A shape the server cannot use is refused where it is written, rather
    /// than read as nothing (a `needs:` mapping once planned a job that
    /// waited for nothing).
    #[test]
    fn wrong_shapes_are_refused_with_their_positions() {
        let e = parse(
            "ci.yml",
            "on: push\njobs:\n  a:\n    runs-on: x\n  b:\n    needs: {a: 1}\n    runs-on: x\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "ci.yml:6:12: `needs` must be a string, found a mapping");
        let e = parse(
            "ci.yml",
            "on:\n  push:\n    branches: {main: 1}\njobs: {}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("ci.yml:3:15: "), "{e}");
    }

    #[test]
    fn dispatch_inputs_as_the_ui_reads_them() {
        let w = wf(
            "on:\n  workflow_dispatch:\n    inputs:\n      level: {type: choice, options: [a, b], default: a, description: L}\n      plain:\njobs:\n  a: {runs-on: x, steps: [{run: x}]}",
        );
        assert_eq!(
            w.dispatch_inputs_json().unwrap(),
            json!({
                "level": {"type": "choice", "required": false, "default": "a", "options": ["a", "b"], "description": "L"},
                "plain": {"type": "string", "required": false},
            })
        );
        assert!(
            wf("on: push\njobs:\n  a: {runs-on: x, steps: [{run: x}]}")
                .dispatch_inputs_json()
                .is_none()
        );
    }

    /// The same workflow and event give the same `github` context under
    /// `hangar run` and on the server: each side's facts, from the payload
    /// as each reads it, through the one builder, compared field by field.
    #[test]
    fn local_and_server_github_contexts_agree_field_by_field() {
        let text = "name: CI\non: [push, pull_request]\njobs:\n  build:\n    runs-on: x\n    steps: [{run: x}]\n";
        let sha = "a".repeat(40);
        let push = json!({
            "ref": "refs/heads/feature/x", "before": "0".repeat(40), "after": sha,
            "repository": {"full_name": "acme/app", "id": 9, "owner": {"login": "acme", "id": 5}},
            "pusher": {"name": "Dev Eloper"}, "sender": {"login": "dev", "id": 42},
        });
        let pr = json!({
            "action": "opened", "number": 7,
            "pull_request": {"number": 7, "head": {"sha": sha, "ref": "feature/x"}, "base": {"ref": "main"}},
            "repository": {"full_name": "acme/app"}, "sender": {"login": "dev"},
        });
        let workspace = tempfile::tempdir().unwrap();
        for (event_name, payload) in [("push", push), ("pull_request", pr)] {
            // The server: the webhook read into an event, the run it creates.
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("x-github-event", event_name.parse().unwrap());
            headers.insert("x-github-delivery", "d".parse().unwrap());
            let body = serde_json::to_vec(&payload).unwrap();
            let ev = crate::webhook::parse(crate::webhook::Forge::GitHub, &headers, &body)
                .unwrap()
                .event
                .unwrap();
            let wf = parse(".github/workflows/ci.yml", text).unwrap();
            let run = Run {
                id: 12,
                repo_id: 1,
                workflow_path: wf.path.clone(),
                workflow_name: wf.name.clone(),
                event: ev.name.clone(),
                git_ref: ev.git_ref.clone(),
                sha: ev.sha.clone(),
                status: hangar_store::Status::Queued,
                conclusion: None,
                waiting_reason: None,
                concurrency_group: None,
                cancel_in_progress: false,
                attempt: 1,
                run_number: 3,
                created_at: 0,
                started_at: None,
                finished_at: None,
                actor: ev.actor.clone(),
            };
            let server = github_facts(&run, "acme/app", ev.payload.clone(), "build");
            // `hangar run` with the same payload; run ids are the server's.
            let mut local =
                hangar_engine::RunContext::new(workspace.path(), event_name, Some(payload.clone()));
            local.run_id = "12".into();
            local.run_number = "3".into();
            local.run_attempt = "1".into();
            let local_wf = hangar_engine::Workflow::parse(
                &workspace.path().join(".github/workflows/ci.yml"),
                text,
            )
            .unwrap();
            let local = local.github_facts(&local_wf, "build");
            let a = hangar_engine::context::github_context(&local, None);
            let b = hangar_engine::context::github_context(&server, None);
            let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
            let differing: Vec<String> = keys
                .into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| format!("{k}: local {:?}, server {:?}", a.get(k), b.get(k)))
                .collect();
            assert!(
                differing.is_empty(),
                "{event_name}:\n{}",
                differing.join("\n")
            );
            assert_eq!(
                b["ref_name"],
                if event_name == "push" {
                    "feature/x"
                } else {
                    "7/merge"
                }
            );
        }
    }

    #[test]
    fn yaml_errors_have_positions() {
        let e = parse("ci.yml", "on: [push\njobs:").unwrap_err().to_string();
        assert!(e.starts_with("ci.yml:"), "{e}");
    }

    /// GitHub shows an invalid file's failed run for an event that would
    /// have triggered it, or when its `on:` cannot be read.
    #[test]
    fn an_invalid_file_counts_as_triggered_by_what_its_on_would_match() {
        let invalid = |text: &str| parse(".github/workflows/ci.yml", text).unwrap_err();
        let main = push("refs/heads/main", &["src/a.rs"]);
        // Wrong in its jobs, `on:` readable: its filters decide.
        let only_dev = invalid("on:\n  push:\n    branches: [dev]\njobs:\n  a:\n    bogus: 1\n");
        assert!(only_dev.on.is_some());
        assert!(!only_dev.triggered_by(&main));
        assert!(only_dev.triggered_by(&push("refs/heads/dev", &["x"])));
        let dispatch_only = invalid("on: workflow_dispatch\njobs:\n  a:\n    bogus: 1\n");
        assert!(!dispatch_only.triggered_by(&main));
        // Not YAML, or `on:` itself wrong: not known, so shown.
        assert!(invalid("on: [push\njobs: {").triggered_by(&main));
        // No `on:`: nothing triggers it (as `hangar run` reads it).
        assert!(
            !invalid("jobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n").triggered_by(&main)
        );
        let on_wrong = invalid("on:\n  push:\n    branches: {main: 1}\njobs: {}\n");
        assert!(on_wrong.on.is_none() && on_wrong.triggered_by(&main));
        // Never for another event, nor for a deleted branch.
        let mut cron = main.clone();
        cron.name = "schedule".into();
        assert!(!on_wrong.triggered_by(&cron));
        let mut gone = main.clone();
        gone.deleted = true;
        assert!(!on_wrong.triggered_by(&gone));
    }

    #[test]
    fn errors_are_worded_as_github_words_them_and_bounded() {
        let e = parse(
            ".github/workflows/ci.yml",
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout\n",
        )
        .unwrap_err();
        assert_eq!(e.first_line(), 6);
        let text = errors_text(&e.errors);
        assert!(
            text.starts_with("The workflow is not valid. .github/workflows/ci.yml (Line: 6, Col: "),
            "{text}"
        );
        // A file of many wrong keys, each a long one: the first 50 errors,
        // each cut, and how many more there were.
        let mut text = "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n".to_string();
        for i in 0..80 {
            // YAML's simple keys end at 1024 characters.
            text.push_str(&format!("    k{i}{}: 1\n", "x".repeat(1010)));
        }
        let e = parse("ci.yml", &text).unwrap_err();
        assert_eq!(e.errors.len(), MAX_FILE_ERRORS + 1, "{e}");
        assert!(
            e.errors[0]
                .message
                .ends_with(&format!("(cut at {MAX_ERROR_CHARS} characters)"))
        );
        assert!(
            e.errors
                .iter()
                .all(|e| e.message.chars().count() < MAX_ERROR_CHARS + 50)
        );
        assert_eq!(
            e.errors[MAX_FILE_ERRORS].message,
            "30 more errors are not shown"
        );
    }

    /// A commit's workflows are read from git and parsed once: the second
    /// read is the same parsed value and needs no repository (here, deleted);
    /// another commit is read afresh; the oldest commit leaves past the bound.
    #[tokio::test]
    async fn workflows_are_read_once_per_commit() {
        let ci = "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: 'true'}]\n";
        let (repo, first) = hangar_testkit::repo_with(&[(".github/workflows/ci.yml", ci)]);
        let second = hangar_testkit::commit(repo.path(), &[(".github/workflows/bad.yml", "on: [")]);
        let mirrors = tempfile::tempdir().unwrap();
        let git = crate::git::GitReader::new(mirrors.path().to_path_buf());
        let cache = Cache::default();
        let url = repo.path().to_str().unwrap().to_string();
        let a = at_commit(&cache, &git, &url, &first).await.unwrap();
        let b = at_commit(&cache, &git, &url, &second).await.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(b.len(), 2, "a new commit is read afresh");
        assert!(b.iter().any(|(p, w)| p.ends_with("bad.yml") && w.is_err()));
        drop(repo);
        let again = at_commit(&cache, &git, &url, &first).await.unwrap();
        assert!(Arc::ptr_eq(&a, &again), "served from the cache");
        for i in 0..CACHED_COMMITS {
            cache.put("other", &format!("{i:040x}"), Arc::new(vec![]));
        }
        assert!(
            cache.get(&url, &first).is_none(),
            "bounded: the oldest left"
        );
        assert!(
            at_commit(&cache, &git, &url, &first).await.is_err(),
            "read again from git, which no longer has it"
        );
    }
}
