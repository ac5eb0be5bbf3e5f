//! `hangar validate`: the mistakes GitHub would reject, found before a push.
//!
//! Keys are checked against GitHub's workflow syntax (with "did you mean"),
//! values against their types, jobs against each other (`needs` targets,
//! cycles), steps against their job (ids, `run` xor `uses`), and every
//! `${{ }}` is parsed with `hangar-expr` and its contexts and functions checked
//! against GitHub's context-availability table for the key it sits in.

use std::collections::{HashMap, HashSet};

use hangar_diag::{Diagnostic, did_you_mean};
use hangar_expr::{Template, lookup_function};

pub use crate::limits::Limits;
use crate::yaml::{Key, Kind, Node, Pos};

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "run-name",
    "on",
    "env",
    "defaults",
    "permissions",
    "concurrency",
    "jobs",
];
const JOB_KEYS: &[&str] = &[
    "name",
    "needs",
    "if",
    "runs-on",
    "environment",
    "outputs",
    "env",
    "defaults",
    "strategy",
    "continue-on-error",
    "timeout-minutes",
    "container",
    "services",
    "steps",
    "permissions",
    "concurrency",
    "uses",
    "with",
    "secrets",
    "cancel-timeout-minutes",
    "snapshot",
];
const CALL_JOB_KEYS: &[&str] = &[
    "name",
    "needs",
    "if",
    "uses",
    "with",
    "secrets",
    "strategy",
    "permissions",
    "concurrency",
];
const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "if",
    "uses",
    "run",
    "shell",
    "with",
    "env",
    "working-directory",
    "continue-on-error",
    "timeout-minutes",
    "background",
    "wait",
    "wait-all",
    "cancel",
    "parallel",
];
/// What a `wait`, `wait-all` or `cancel` step may have besides its own key.
const CONTROL_STEP_KEYS: &[&str] = &["id", "name", "if", "continue-on-error"];
const STRATEGY_KEYS: &[&str] = &["matrix", "fail-fast", "max-parallel"];
const EVENTS: &[&str] = &[
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "gollum",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "milestone",
    "page_build",
    "project",
    "project_card",
    "project_column",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_target",
    "push",
    "registry_package",
    "release",
    "repository_dispatch",
    "schedule",
    "status",
    "watch",
    "workflow_call",
    "workflow_dispatch",
    "workflow_run",
    "image_version",
];
const PUSH_KEYS: &[&str] = &[
    "branches",
    "branches-ignore",
    "tags",
    "tags-ignore",
    "paths",
    "paths-ignore",
];
const PULL_REQUEST_KEYS: &[&str] = &[
    "branches",
    "branches-ignore",
    "paths",
    "paths-ignore",
    "types",
];
const WORKFLOW_RUN_KEYS: &[&str] = &["workflows", "types", "branches", "branches-ignore"];
const FILTER_KEYS: &[&str] = &[
    "branches",
    "branches-ignore",
    "tags",
    "tags-ignore",
    "paths",
    "paths-ignore",
    "types",
    "workflows",
    "inputs",
    "outputs",
    "secrets",
    "names",
    "versions",
];

/// Contexts GitHub allows at each place (its "context availability" table).
#[derive(Clone, Copy)]
struct Allowed {
    contexts: &'static [&'static str],
    status_functions: bool,
    hash_files: bool,
}

const RUN_NAME: Allowed = Allowed {
    contexts: &["github", "inputs", "vars"],
    status_functions: false,
    hash_files: false,
};
const WORKFLOW_ENV: Allowed = Allowed {
    contexts: &["github", "secrets", "inputs", "vars"],
    status_functions: false,
    hash_files: false,
};
const JOB_IF: Allowed = Allowed {
    contexts: &["github", "needs", "vars", "inputs"],
    status_functions: true,
    hash_files: false,
};
const JOB_LEVEL: Allowed = Allowed {
    contexts: &["github", "needs", "strategy", "matrix", "vars", "inputs"],
    status_functions: false,
    hash_files: false,
};
const JOB_ENV: Allowed = Allowed {
    contexts: &[
        "github", "needs", "strategy", "matrix", "vars", "secrets", "inputs",
    ],
    status_functions: false,
    hash_files: false,
};
const JOB_CONTAINER: Allowed = Allowed {
    contexts: &[
        "github", "needs", "strategy", "matrix", "env", "vars", "secrets", "inputs",
    ],
    status_functions: false,
    hash_files: false,
};
const ENVIRONMENT_URL: Allowed = Allowed {
    contexts: &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "steps", "inputs",
    ],
    status_functions: false,
    hash_files: false,
};
const JOB_STRATEGY: Allowed = Allowed {
    contexts: &["github", "needs", "vars", "inputs"],
    status_functions: false,
    hash_files: false,
};
const JOB_OUTPUTS: Allowed = Allowed {
    contexts: &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets",
        "steps", "inputs",
    ],
    status_functions: false,
    hash_files: false,
};
/// `on.workflow_call.outputs.<id>.value`.
const CALL_OUTPUT: Allowed = Allowed {
    contexts: &["github", "jobs", "vars", "inputs"],
    status_functions: false,
    hash_files: false,
};
const STEP: Allowed = Allowed {
    contexts: &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets",
        "steps", "inputs",
    ],
    status_functions: false,
    hash_files: true,
};
const STEP_IF: Allowed = Allowed {
    contexts: &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "steps", "inputs",
    ],
    status_functions: true,
    hash_files: true,
};

struct Checker<'a> {
    file: &'a str,
    out: Vec<Diagnostic>,
    /// The text of a called workflow (`uses:` of a job), when it can be read.
    resolve: &'a dyn Fn(&str) -> Option<String>,
    /// The workflow's own `permissions:` (what a job without any gets).
    workflow_permissions: Option<Node>,
    policy: PermissionsPolicy,
    limits: Limits,
    /// GitHub's memory accounting for the workflow and every called workflow read so far.
    bytes: usize,
    /// Distinct reusable workflows referenced so far, nested ones included.
    called: Vec<String>,
    /// Jobs so far, in this workflow and the workflows it calls.
    jobs: usize,
    /// A limit on the calls was hit: GitHub stops loading there, and so do we.
    walk_stopped: bool,
    /// What the expressions being checked may refer to.
    scope: Scope,
    /// Inputs the workflow declares, when every trigger is one that declares
    /// them (`workflow_call`, `workflow_dispatch`): for any other event
    /// `inputs` is empty, so an undeclared name cannot be told from a default.
    inputs: Option<Vec<String>>,
    /// Secrets a called workflow declares, when `workflow_call` is its only
    /// trigger and it declares some (without a `secrets:` list, a caller's
    /// `secrets: inherit` passes every secret).
    secrets: Option<Vec<String>>,
    /// Where `inputs` are declared, for messages.
    inputs_where: &'static str,
    /// Each job's declared outputs (`None`: not known, e.g. a remote callee's).
    job_outputs: HashMap<String, Option<Vec<String>>>,
}

/// What the job and step being checked define, for the reference rules.
/// `None`: not known here, so not checked.
#[derive(Default, Clone)]
struct Scope {
    /// The job checked; empty in a composite action.
    job: String,
    /// The job's `needs`, as written.
    needs: Option<Vec<String>>,
    /// Step ids defined before the expression being checked (every id of the
    /// job in its `outputs`).
    steps: Option<Vec<String>>,
    /// Every step id of the job, to tell "later" from "nowhere".
    all_steps: Vec<String>,
    /// The id of the step being checked.
    current: Option<String>,
    /// The matrix's keys; `None` when the matrix is computed (`fromJSON`).
    matrix: Option<Vec<String>>,
    /// Job ids, in `on.workflow_call.outputs.*.value`.
    jobs: Option<Vec<String>>,
}

/// How to validate: the repository's settings and the installation's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub policy: PermissionsPolicy,
    pub limits: Limits,
}

/// The repository's default `GITHUB_TOKEN` permissions (a repository setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PermissionsPolicy {
    /// `contents` and `packages` read, nothing else: GitHub's default.
    #[default]
    LimitedRead,
    /// Every scope write (the permissive setting).
    Write,
}

impl Checker<'_> {
    fn err(&mut self, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.out
            .push(Diagnostic::error(self.file, pos.line, pos.column, msg));
        let last = self.out.len() - 1;
        &mut self.out[last]
    }

    /// What GitHub accepts but is almost surely a mistake (a reference that
    /// evaluates to null at run time): reported, not failing the check.
    fn warn(&mut self, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.out
            .push(Diagnostic::warning(self.file, pos.line, pos.column, msg));
        let last = self.out.len() - 1;
        &mut self.out[last]
    }

    fn keys(&mut self, node: &Node, known: &[&str], what: &str) {
        for (k, _) in node.entries() {
            if !known.contains(&k.name.as_str()) {
                let help = did_you_mean(&k.name, known.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("valid keys: {}", known.join(", ")));
                self.err(k.pos, format!("unknown key `{}` in {what}", k.name))
                    .help = Some(help);
            }
        }
    }

    fn expect_map(&mut self, node: &Node, what: &str) -> bool {
        if matches!(node.kind, Kind::Map(_)) {
            return true;
        }
        self.err(
            node.pos,
            format!("{what} must be a mapping, found {}", node.type_name()),
        );
        false
    }

    /// Checks every `${{ }}` in a scalar (and in nested values) against `allowed`.
    fn exprs(&mut self, node: &Node, allowed: Allowed, bare: bool) {
        match &node.kind {
            Kind::Str(s) => self.expr_text(node, s, allowed, bare),
            Kind::Seq(items) => items.iter().for_each(|i| self.exprs(i, allowed, false)),
            Kind::Map(m) => m.iter().for_each(|(_, v)| self.exprs(v, allowed, false)),
            _ => {}
        }
    }

    fn expr_text(&mut self, node: &Node, text: &str, allowed: Allowed, bare: bool) {
        // `if:` may be written without `${{ }}`.
        let wrapped;
        let (source, shift) = if bare && !text.contains("${{") {
            wrapped = format!("${{{{ {text} }}}}");
            (wrapped.as_str(), -4i64)
        } else {
            (text, 0)
        };
        let at = |offset: usize| -> Pos {
            let offset = (offset as i64 + shift).max(0) as usize;
            let before = &text[..offset.min(text.len())];
            let newlines = before.matches('\n').count();
            let col_in_line = before
                .rsplit('\n')
                .next()
                .map(|l| l.chars().count())
                .unwrap_or(0);
            Pos {
                line: node.pos.line + newlines,
                // Block scalars: `node.pos` is already the first content line's indentation.
                column: node.pos.column + col_in_line,
            }
        };
        // `${{ }}`: the template parser reads it as null; GitHub rejects it.
        let mut from = if shift != 0 { source.len() } else { 0 };
        while let Some(i) = source[from..].find("${{") {
            let start = from + i + 3;
            if source[start..].trim_start().starts_with("}}") {
                let p = at(start + source[start..].len() - source[start..].trim_start().len());
                self.err(p, "An expression was expected");
                return;
            }
            from = start;
        }
        let template = match Template::parse(source) {
            Ok(t) => t,
            Err(e) => {
                let p = at(e.offset);
                self.err(p, format!("invalid expression: {}", e.message));
                return;
            }
        };
        for (expr, _, offset) in template.expressions() {
            for path in expr.paths() {
                self.reference(&path, &|o| at(offset + o));
            }
            for nv in expr.named_values() {
                let name = nv.name.to_ascii_lowercase();
                if !hangar_expr::KNOWN_CONTEXTS.contains(&name.as_str()) {
                    let help = did_you_mean(&name, hangar_expr::KNOWN_CONTEXTS.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"));
                    let d = self.err(
                        at(offset + nv.offset),
                        format!("unknown context `{}`", nv.name),
                    );
                    d.help = help;
                } else if !allowed.contexts.contains(&name.as_str()) {
                    self.err(
                        at(offset + nv.offset),
                        format!("context `{name}` is not available here"),
                    )
                    .help = Some(format!("available here: {}", allowed.contexts.join(", ")));
                }
            }
            for call in expr.calls() {
                let Some(spec) = lookup_function(call.name) else {
                    self.err(
                        at(offset + call.offset),
                        format!("unknown function `{}`", call.name),
                    );
                    continue;
                };
                if let Err(why) = spec.check_arity(call.arg_count) {
                    self.err(
                        at(offset + call.offset),
                        format!("{why} to `{}` ({} given)", spec.name, call.arg_count),
                    );
                }
                if call.function.and_then(|f| f.status()).is_some() && !allowed.status_functions {
                    self.err(
                        at(offset + call.offset),
                        format!("`{}()` is only available in `if:` conditions", spec.name),
                    );
                }
                if spec.name.eq_ignore_ascii_case("hashFiles") && !allowed.hash_files {
                    self.err(
                        at(offset + call.offset),
                        "`hashFiles()` is only available in steps",
                    );
                }
            }
        }
    }
}

impl Checker<'_> {
    /// The reference rules: `needs.X`, `steps.X`, `matrix.X`, `inputs.X`,
    /// `secrets.X` and `jobs.X` naming something the place does not define.
    /// GitHub accepts all of these (poetry's CI has one and runs daily) and
    /// evaluates them to null, so they are warnings; what is checked is only
    /// what can be known from the file (a computed matrix is not).
    fn reference(&mut self, path: &hangar_expr::PathRef, at: &dyn Fn(usize) -> Pos) {
        let [ctx, name, rest @ ..] = path.segments.as_slice() else {
            return;
        };
        let name = *name;
        let pos = at(path.segment_offsets[1]);
        let has = |list: &[String], name: &str| list.iter().any(|x| x.eq_ignore_ascii_case(name));
        let job = self.scope.job.clone();
        let suggest = |name: &str, list: &[String], what: &str| {
            did_you_mean(name, list.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    if list.is_empty() {
                        format!("there are no {what} here")
                    } else {
                        format!("{what}: {}", list.join(", "))
                    }
                })
        };
        match ctx.to_ascii_lowercase().as_str() {
            "needs" => {
                let Some(needs) = self.scope.needs.clone() else {
                    return;
                };
                if has(&needs, name) {
                    self.output_reference("needs", name, rest, path, at);
                    return;
                }
                let exists = self
                    .job_outputs
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case(name));
                let help = if exists {
                    format!("add `{name}` to the `needs:` of job `{job}`")
                } else {
                    suggest(name, &needs, "jobs it needs")
                };
                let msg = if exists {
                    format!("job `{job}` does not need `{name}`, so `needs.{name}` is null")
                } else {
                    format!("there is no job `{name}`, so `needs.{name}` is null")
                };
                self.warn(pos, msg).help = Some(help);
            }
            "jobs" => {
                let Some(jobs) = self.scope.jobs.clone() else {
                    return;
                };
                if has(&jobs, name) {
                    self.output_reference("jobs", name, rest, path, at);
                    return;
                }
                let help = suggest(name, &jobs, "jobs");
                self.warn(
                    pos,
                    format!("there is no job `{name}`, so `jobs.{name}` is null"),
                )
                .help = Some(help);
            }
            "steps" => {
                let Some(before) = self.scope.steps.clone() else {
                    return;
                };
                if has(&before, name) {
                    return;
                }
                if self
                    .scope
                    .current
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(name))
                {
                    self.warn(
                        pos,
                        format!(
                            "a step cannot read its own outputs, so `steps.{name}` is null here"
                        ),
                    )
                    .help =
                        Some("its outputs are set when it ends: read them in a later step".into());
                } else if has(&self.scope.all_steps, name) {
                    self.warn(
                        pos,
                        format!(
                            "step `{name}` runs after this point, so `steps.{name}` is null here"
                        ),
                    )
                    .help = Some("a step sees only the steps before it: move one of them".into());
                } else {
                    let help = suggest(name, &before, "step ids before this point");
                    self.warn(
                        pos,
                        format!(
                            "{} has no step with id `{name}`, so `steps.{name}` is null",
                            self.scope.owner()
                        ),
                    )
                    .help = Some(help);
                }
            }
            "matrix" => {
                let Some(keys) = self.scope.matrix.clone() else {
                    return;
                };
                if has(&keys, name) {
                    return;
                }
                let msg = if keys.is_empty() {
                    format!("job `{job}` has no matrix, so `matrix.{name}` is null")
                } else {
                    format!(
                        "the matrix of job `{job}` has no key `{name}`, so `matrix.{name}` is null"
                    )
                };
                let help = if keys.is_empty() {
                    format!("define `{name}` under `strategy.matrix`, or fix the name")
                } else {
                    suggest(name, &keys, "matrix keys")
                };
                self.warn(pos, msg).help = Some(help);
            }
            "inputs" => {
                let Some(inputs) = self.inputs.clone() else {
                    return;
                };
                if has(&inputs, name) {
                    return;
                }
                let help = suggest(name, &inputs, "declared inputs");
                self.warn(
                    pos,
                    format!(
                        "input `{name}` is not declared {}, so `inputs.{name}` is null",
                        self.inputs_where
                    ),
                )
                .help = Some(help);
            }
            "secrets" => {
                let Some(secrets) = self.secrets.clone() else {
                    return;
                };
                if has(&secrets, name) || name.eq_ignore_ascii_case("GITHUB_TOKEN") {
                    return;
                }
                let help = did_you_mean(name, secrets.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        format!(
                            "declare it under `on.workflow_call.secrets` (declared: {})",
                            secrets.join(", ")
                        )
                    });
                self.warn(
                    pos,
                    format!("secret `{name}` is not declared under `on.workflow_call.secrets`: a caller can pass it only with `secrets: inherit`"),
                )
                .help = Some(help);
            }
            _ => {}
        }
    }

    /// `needs.X.outputs.Y` / `jobs.X.outputs.Y` where job X declares no output Y.
    fn output_reference(
        &mut self,
        ctx: &str,
        job: &str,
        rest: &[&str],
        path: &hangar_expr::PathRef,
        at: &dyn Fn(usize) -> Pos,
    ) {
        let (Some(outputs_key), Some(output)) = (rest.first(), rest.get(1)) else {
            return;
        };
        if !outputs_key.eq_ignore_ascii_case("outputs") {
            return;
        }
        let Some(Some(declared)) = self
            .job_outputs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(job))
            .map(|(_, v)| v.clone())
        else {
            return;
        };
        if declared.iter().any(|o| o.eq_ignore_ascii_case(output)) {
            return;
        }
        let help = did_you_mean(output, declared.iter().map(String::as_str))
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| {
                if declared.is_empty() {
                    format!("job `{job}` has no `outputs:`")
                } else {
                    format!("its outputs: {}", declared.join(", "))
                }
            });
        self.warn(
            at(path.segment_offsets[3]),
            format!(
                "job `{job}` has no output `{output}`, so `{ctx}.{job}.outputs.{output}` is null"
            ),
        )
        .help = Some(help);
    }
}

impl Scope {
    /// Who owns the steps, for messages: a job, or the action.
    fn owner(&self) -> String {
        if self.job.is_empty() {
            "this action".into()
        } else {
            format!("job `{}`", self.job)
        }
    }
}

/// Where a composite action's expressions are checked: GitHub evaluates
/// them on the runner, so only their syntax, functions and references are
/// checked here, not which contexts a key may use.
const ACTION_STEP: Allowed = Allowed {
    contexts: hangar_expr::KNOWN_CONTEXTS,
    status_functions: true,
    hash_files: true,
};

/// Validates a composite action's `action.yml`: its YAML, and in its steps
/// and outputs, expressions and the references they make (`steps.X` with no
/// step `X` before the use, `inputs.X` the action does not declare).
/// Other kinds of action (JavaScript, Docker) have no expressions to check.
pub fn validate_action(file: &str, text: &str) -> Vec<Diagnostic> {
    let root = match crate::yaml::parse(text) {
        Ok(r) => r,
        Err(errors) => {
            return errors
                .iter()
                .map(|e| {
                    Diagnostic::error(
                        file,
                        e.pos.line,
                        e.pos.column,
                        format!("YAML: {}", e.message),
                    )
                })
                .collect();
        }
    };
    let composite = root
        .get("runs")
        .and_then(|r| r.get("using"))
        .and_then(Node::as_str)
        .is_some_and(|u| u.eq_ignore_ascii_case("composite"));
    let Some(Kind::Seq(steps)) = root
        .get("runs")
        .and_then(|r| r.get("steps"))
        .map(|s| &s.kind)
    else {
        return Vec::new();
    };
    if !composite {
        return Vec::new();
    }
    let none = |_: &str| None;
    let mut c = Checker {
        file,
        out: Vec::new(),
        resolve: &none,
        workflow_permissions: None,
        policy: PermissionsPolicy::default(),
        limits: Limits::default(),
        bytes: 0,
        called: Vec::new(),
        jobs: 0,
        walk_stopped: false,
        scope: Scope::default(),
        inputs: Some(
            root.get("inputs")
                .map(Node::entries)
                .unwrap_or_default()
                .iter()
                .map(|(k, _)| k.name.clone())
                .collect(),
        ),
        secrets: None,
        inputs_where: "under the action's `inputs:`",
        job_outputs: HashMap::new(),
    };
    let mut all = Vec::new();
    steps.iter().for_each(|s| collect_ids(s, &mut all));
    c.scope.all_steps = all.clone();
    let mut before: Vec<String> = Vec::new();
    for step in steps {
        c.scope.steps = Some(before.clone());
        c.scope.current = step.get("id").and_then(Node::as_str).map(String::from);
        for (k, v) in step.entries() {
            if !["id", "uses", "shell"].contains(&k.name.as_str()) {
                c.exprs(v, ACTION_STEP, k.name == "if");
            }
        }
        if let Some(n) = step.get("if") {
            check_if_template(&mut c, n);
        }
        if let Some(id) = step.get("id").and_then(Node::as_str) {
            before.push(id.to_string());
        }
    }
    // The action's outputs are read after all its steps ran.
    c.scope.steps = Some(all);
    c.scope.current = None;
    for (_, output) in root.get("outputs").map(Node::entries).unwrap_or_default() {
        if let Some(v) = output.get("value") {
            c.exprs(v, ACTION_STEP, false);
        }
    }
    by_position(c.out)
}

/// Validates one workflow file's text.
pub fn validate(file: &str, text: &str) -> Vec<Diagnostic> {
    validate_with(file, text, &|_| None)
}

/// Reads the text of a local reusable workflow (`./.github/workflows/x.yml`)
/// relative to `root`, for [`validate_with`]. Remote ones are not fetched.
pub fn local_callee(root: &std::path::Path) -> impl Fn(&str) -> Option<String> + '_ {
    move |uses: &str| {
        let rel = uses
            .strip_prefix("./")
            .or_else(|| uses.strip_prefix("$/"))?;
        std::fs::read_to_string(root.join(rel)).ok()
    }
}

/// As [`validate`]; calls of reusable workflows that `resolve` can read are
/// checked against what the callee declares (`with:` inputs and their types,
/// required inputs and secrets, undeclared secrets).
pub fn validate_with(
    file: &str,
    text: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Vec<Diagnostic> {
    validate_with_policy(file, text, resolve, PermissionsPolicy::default())
}

/// As [`validate_with`], for a repository whose default token permissions
/// are `policy` (what a called workflow may request when the caller says nothing).
pub fn validate_with_policy(
    file: &str,
    text: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
    policy: PermissionsPolicy,
) -> Vec<Diagnostic> {
    validate_with_options(
        file,
        text,
        resolve,
        &Options {
            policy,
            ..Options::default()
        },
    )
}

/// As [`validate_with`], with the repository's token policy and the
/// installation's limits given.
pub fn validate_with_options(
    file: &str,
    text: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
    options: &Options,
) -> Vec<Diagnostic> {
    let at = |e: &crate::yaml::YamlError, message: String| {
        Diagnostic::error(file, e.pos.line, e.pos.column, message)
    };
    // Limits first: GitHub reads nothing of a file past them.
    let measured = crate::limits::measure(text, &options.limits);
    if let Some(e) = &measured.fatal {
        return vec![at(e, e.message.clone())];
    }
    // GitHub's tag rules are a workflow's, not YAML's: checked here, not in the reader.
    let mut errors = crate::tags::check(text);
    let root = match crate::yaml::parse(text) {
        Ok(r) if errors.is_empty() => r,
        parsed => {
            errors.extend(parsed.err().unwrap_or_default());
            errors.sort_by_key(|e| (e.pos.line, e.pos.column));
            return errors
                .iter()
                .map(|e| at(e, format!("YAML: {}", e.message)))
                .collect();
        }
    };
    let mut c = Checker {
        file,
        out: Vec::new(),
        resolve,
        workflow_permissions: root.get("permissions").cloned(),
        policy: options.policy,
        limits: options.limits,
        bytes: measured.bytes,
        called: Vec::new(),
        jobs: 0,
        walk_stopped: false,
        scope: Scope::default(),
        inputs: None,
        secrets: None,
        inputs_where: "under `on.workflow_call` or `on.workflow_dispatch`",
        job_outputs: HashMap::new(),
    };
    (c.inputs, c.secrets) = declared_interface(root.get("on"));
    c.job_outputs = job_outputs(&root, resolve);
    for e in &measured.long_expressions {
        c.out.push(at(e, e.message.clone()));
    }
    if !c.expect_map(&root, "a workflow") {
        return by_position(c.out);
    }
    c.keys(&root, TOP_KEYS, "the workflow");
    match root.get("on") {
        None => {
            c.err(root.pos, "the workflow has no `on:` trigger").help =
                Some("add e.g. `on: push`".into());
        }
        Some(on) => check_on(&mut c, on),
    }
    if let Some(n) = root.get("run-name") {
        c.exprs(n, RUN_NAME, false);
    }
    if let Some(n) = root.get("env") {
        c.exprs(n, WORKFLOW_ENV, false);
    }
    if let Some(n) = root.get("concurrency") {
        c.exprs(n, RUN_NAME, false);
        check_concurrency(&mut c, n);
    }
    if let Some(p) = root.get("permissions") {
        check_permissions(&mut c, p);
    }
    for k in ["name", "run-name"] {
        if let Some(n) = root.get(k)
            && matches!(n.kind, Kind::Seq(_) | Kind::Map(_))
        {
            c.err(
                n.pos,
                format!("`{k}` must be a string, found {}", n.type_name()),
            );
        }
    }
    // The workflow's `name` is shown as written: no context is available to it.
    if let Some(n) = root.get("name")
        && n.as_str().is_some_and(|s| s.contains("${{"))
    {
        c.err(n.pos, "A template expression is not allowed in this context")
            .help = Some(
            "the workflow's `name` is not evaluated: use `run-name:` for a name built from `github`, `inputs` or `vars`".into(),
        );
    }
    let Some(jobs) = root.get("jobs") else {
        c.err(root.pos, "the workflow has no `jobs:`");
        return by_position(c.out);
    };
    if !c.expect_map(jobs, "`jobs`") {
        return by_position(c.out);
    }
    if jobs.entries().is_empty() {
        c.err(jobs.pos, "`jobs` must define at least one job");
    }
    let ids: Vec<&str> = jobs
        .entries()
        .iter()
        .map(|(k, _)| k.name.as_str())
        .collect();
    // Job ids are case-insensitive: `build` and `BUILD` are the same job.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (k, _) in jobs.entries() {
        match seen.get(&k.name.to_ascii_lowercase()) {
            Some(line) => {
                c.err(k.pos, format!("'{}' is already defined", k.name))
                    .help = Some(format!(
                    "job ids are case-insensitive; the first is at line {line}: rename one"
                ));
            }
            None => {
                seen.insert(k.name.to_ascii_lowercase(), k.pos.line);
            }
        }
    }
    c.jobs = jobs.entries().len();
    if let Some(max) = c.limits.max_jobs
        && let Some((k, _)) = jobs.entries().get(max)
    {
        c.walk_stopped = true;
        c.err(
            k.pos,
            format!("Workflows may not contain more than {max} jobs across all referenced files"),
        )
        .help = Some("merge jobs, or split the workflow into several".into());
    }
    let mut graph: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, job) in jobs.entries() {
        check_job(&mut c, key, job, &ids, &mut graph);
    }
    if let Some((first, _)) = jobs.entries().first()
        && graph.len() == jobs.entries().len()
        && graph.values().all(|needs| !needs.is_empty())
    {
        c.err(
            first.pos,
            "The workflow must contain at least one job with no dependencies",
        )
        .help = Some("every job `needs` another, so none can start: break the cycle below".into());
    }
    if let Some(cycle) = find_cycle(&ids, &graph) {
        // At the `needs` entry that closes the cycle, as GitHub reports it.
        let needs = jobs.get(cycle[0]).and_then(|j| j.get("needs"));
        let at = needs
            .and_then(|n| match &n.kind {
                Kind::Seq(items) => items.iter().find(|i| i.as_str() == Some(cycle[1])),
                _ => Some(n),
            })
            .map(|n| n.pos)
            .unwrap_or(jobs.pos);
        c.err(
            at,
            format!(
                "Job '{}' depends on job '{}' which creates a cycle in the dependency graph: {}",
                cycle[0],
                cycle[1],
                cycle.join(" -> ")
            ),
        )
        .help = Some("remove one of the `needs` edges".into());
    }
    by_position(c.out)
}

/// Diagnostics in source order, whichever check found them first.
fn by_position(mut out: Vec<Diagnostic>) -> Vec<Diagnostic> {
    out.sort_by_key(|d| (d.line, d.column));
    out
}

/// A schedule entry's `timezone:`: a name of the time zone database, the
/// one the server's scheduler reads it with (`hangar_units::cron::zone`).
fn schedule_timezone(c: &mut Checker, item: &Node) {
    let Some(zone) = item.get("timezone") else {
        return;
    };
    let Some(name) = zone.as_str() else {
        c.err(
            zone.pos,
            format!(
                "`timezone` must be a string, found {}: write an IANA name such as `America/New_York`",
                zone.type_name()
            ),
        );
        return;
    };
    if let Err(e) = hangar_units::cron::zone(name) {
        c.err(zone.pos, e.message).help =
            close_zone(name).map(|close| format!("did you mean `{close}`?"));
    }
}

/// A zone of the database close to `name`: a slip of a few letters
/// (`America/New_Yrok`), or the city alone (`Kolkata` for `Asia/Kolkata`).
fn close_zone(name: &str) -> Option<String> {
    let names = hangar_units::cron::zone_names();
    if let Some(close) = did_you_mean(name, names.iter().map(String::as_str)) {
        return Some(close.to_string());
    }
    let city = name.rsplit('/').next().unwrap_or(name);
    let mut same_city = names.iter().filter(|n| {
        n.rsplit('/')
            .next()
            .is_some_and(|c| c.eq_ignore_ascii_case(city))
    });
    // Only an answer that is one name.
    match (same_city.next(), same_city.next()) {
        (Some(one), None) => Some(one.clone()),
        _ => None,
    }
}

fn check_on(c: &mut Checker, on: &Node) {
    let check_event = |c: &mut Checker, k: &Key| {
        if k.name.contains("${{") {
            c.err(
                k.pos,
                "A template expression is not allowed in this context",
            )
            .help = Some(
                "GitHub reads the triggers before any expression: write the event name out".into(),
            );
        } else if !EVENTS.contains(&k.name.as_str()) {
            let help = did_you_mean(&k.name, EVENTS.iter().copied())
                .map(|s| format!("did you mean `{s}`?"));
            c.err(k.pos, format!("unknown event `{}`", k.name)).help = help;
        }
    };
    match &on.kind {
        Kind::Str(s) => check_event(
            c,
            &Key {
                name: s.clone(),
                pos: on.pos,
            },
        ),
        Kind::Seq(items) => {
            for i in items {
                match i.as_str() {
                    Some(s) => check_event(
                        c,
                        &Key {
                            name: s.to_string(),
                            pos: i.pos,
                        },
                    ),
                    None => {
                        c.err(
                            i.pos,
                            format!("an event name must be a string, found {}", i.type_name()),
                        );
                    }
                }
            }
        }
        Kind::Map(m) => {
            for (k, v) in m {
                check_event(c, k);
                if k.name == "schedule" {
                    for item in v.items() {
                        // GitHub's `cron-mapping`: these two keys, others refused.
                        c.keys(item, &["cron", "timezone"], "a schedule entry");
                        schedule_timezone(c, item);
                        let cron = item.get("cron");
                        match cron.and_then(|n| Some((n.pos, n.as_str()?))) {
                            // The parser the server's schedules run on: what
                            // validates here is what fires there.
                            Some((pos, text)) => {
                                if let Err(e) = hangar_units::cron::parse(
                                    text,
                                    hangar_units::cron::Seconds::Refused,
                                ) {
                                    c.err(pos, e);
                                }
                            }
                            None => {
                                c.err(item.pos, "each schedule entry needs a `cron:` string");
                            }
                        }
                    }
                } else if matches!(v.kind, Kind::Map(_)) {
                    match k.name.as_str() {
                        // GitHub ignores unknown keys directly under workflow_dispatch
                        // (not under its inputs).
                        "workflow_dispatch" => {}
                        "workflow_call" => {
                            c.keys(v, &["inputs", "outputs", "secrets"], "`on.workflow_call`")
                        }
                        "push" => c.keys(v, PUSH_KEYS, "`on.push`"),
                        "pull_request" | "pull_request_target" => {
                            c.keys(v, PULL_REQUEST_KEYS, &format!("`on.{}`", k.name))
                        }
                        "workflow_run" => c.keys(v, WORKFLOW_RUN_KEYS, "`on.workflow_run`"),
                        _ => c.keys(v, FILTER_KEYS, &format!("`on.{}`", k.name)),
                    }
                    check_call_interface(c, &k.name, v);
                    let filtered =
                        ["push", "pull_request", "pull_request_target"].contains(&k.name.as_str());
                    for f in ["branches", "tags", "paths"] {
                        if filtered && v.get(f).is_some() && v.get(&format!("{f}-ignore")).is_some()
                        {
                            c.err(
                                k.pos,
                                format!(
                                    "`{f}` and `{f}-ignore` cannot be used together for `{}`",
                                    k.name
                                ),
                            );
                        }
                    }
                    if let Some(inputs) = v.get("inputs") {
                        for (name, spec) in inputs.entries() {
                            if let Some(t) = spec.get("type").and_then(Node::as_str)
                                && !["string", "boolean", "number", "choice", "environment"]
                                    .contains(&t)
                            {
                                c.err(
                                    spec.get("type").map(|n| n.pos).unwrap_or(name.pos),
                                    format!("input `{}` has unknown type `{t}`", name.name),
                                )
                                .help = Some(
                                    "use string, boolean, number, choice or environment".into(),
                                );
                            }
                            if let Some(d) = spec.get("default") {
                                c.exprs(d, RUN_NAME, false);
                            }
                        }
                    }
                }
            }
        }
        _ => {
            c.err(
                on.pos,
                format!(
                    "`on` must be an event name, a list or a mapping, found {}",
                    on.type_name()
                ),
            );
        }
    }
}

/// `workflow_dispatch` / `workflow_call` inputs, outputs and secrets: their
/// keys, and the properties GitHub requires (`type` of a called workflow's
/// input, `value` of its output).
fn check_call_interface(c: &mut Checker, event: &str, v: &Node) {
    let (input_keys, needs_type): (&[&str], bool) = match event {
        "workflow_dispatch" => (
            &["description", "required", "default", "type", "options"],
            false,
        ),
        "workflow_call" => (&["description", "required", "default", "type"], true),
        _ => return,
    };
    if let Some(inputs) = v.get("inputs") {
        for (name, spec) in inputs.entries() {
            if !matches!(spec.kind, Kind::Map(_)) {
                continue;
            }
            c.keys(spec, input_keys, &format!("input `{}`", name.name));
            if needs_type && spec.get("type").is_none() {
                c.err(spec.pos, "Required property is missing: type").help =
                    Some("a called workflow's input needs `type: string|boolean|number`".into());
            }
        }
    }
    if event == "workflow_call" {
        for (name, spec) in v.get("outputs").map(Node::entries).unwrap_or_default() {
            if matches!(spec.kind, Kind::Map(_)) {
                c.keys(
                    spec,
                    &["description", "value"],
                    &format!("output `{}`", name.name),
                );
                match spec.get("value") {
                    None => {
                        c.err(spec.pos, "Required property is missing: value").help =
                            Some("set `value: ${{ jobs.<job>.outputs.<name> }}`".into());
                    }
                    Some(value) => {
                        let mut jobs: Vec<String> = c.job_outputs.keys().cloned().collect();
                        jobs.sort();
                        let saved = std::mem::take(&mut c.scope);
                        c.scope.jobs = Some(jobs);
                        c.exprs(value, CALL_OUTPUT, false);
                        c.scope = saved;
                    }
                }
            }
        }
        for (name, spec) in v.get("secrets").map(Node::entries).unwrap_or_default() {
            if matches!(spec.kind, Kind::Map(_)) {
                c.keys(
                    spec,
                    &["description", "required"],
                    &format!("secret `{}`", name.name),
                );
            }
        }
    }
}

/// A job that calls a reusable workflow, against what the callee declares
/// under `on.workflow_call`, with GitHub's wording.
fn check_call(c: &mut Checker, key_pos: Pos, job: &Node) {
    if let Some(secrets) = job.get("secrets")
        && let Some(v) = secrets.as_str()
        && v != "inherit"
    {
        c.err(secrets.pos, format!("Unexpected value '{v}'")).help =
            Some("`secrets:` is `inherit` or a mapping of the callee's secrets".into());
    }
    let Some(uses_node) = job.get("uses") else {
        return;
    };
    let Some(uses) = uses_node.as_str() else {
        return;
    };
    let Some(text) = (c.resolve)(uses) else {
        return;
    };
    let Ok(callee) = crate::yaml::parse(&text) else {
        return; // its own validation reports it
    };
    let call = match callee.get("on") {
        Some(on) => match &on.kind {
            Kind::Str(s) if s == "workflow_call" => Some(None),
            Kind::Seq(items) if items.iter().any(|i| i.as_str() == Some("workflow_call")) => {
                Some(None)
            }
            Kind::Map(_) => on.get("workflow_call").map(Some),
            _ => None,
        },
        None => None,
    };
    let Some(call) = call else {
        c.err(
            uses_node.pos,
            format!("`{uses}` is not a reusable workflow: its `on` has no `workflow_call`"),
        );
        return;
    };
    check_called_permissions(c, job, key_pos, uses, &callee);
    let declared = |what: &str| -> Vec<(String, &Node)> {
        call.and_then(|n| n.get(what))
            .map(|m| {
                m.entries()
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v))
                    .collect()
            })
            .unwrap_or_default()
    };
    let required = |spec: &Node| {
        matches!(
            spec.get("required").map(|r| &r.kind),
            Some(Kind::Bool(true))
        ) && spec.get("default").is_none()
    };
    let inputs = declared("inputs");
    let with = job.get("with");
    for (name, value) in with.map(Node::entries).unwrap_or_default() {
        let Some((_, spec)) = inputs.iter().find(|(n, _)| *n == name.name) else {
            c.err(
                name.pos,
                format!(
                    "Invalid input, {} is not defined in the referenced workflow.",
                    name.name
                ),
            );
            continue;
        };
        let ty = spec.get("type").and_then(Node::as_str).unwrap_or("string");
        let ok = match (&value.kind, ty) {
            (Kind::Str(s), _) if s.contains("${{") => true,
            (Kind::Bool(_), "boolean") => true,
            (Kind::Number(_), "number") => true,
            (Kind::Str(s), "number") => s.trim().parse::<f64>().is_ok(),
            (_, "boolean" | "number") => false,
            _ => true,
        };
        if !ok {
            let shown = match &value.kind {
                Kind::Str(s) => s.clone(),
                other => format!("{other:?}"),
            };
            c.err(value.pos, format!("Unexpected value '{shown}'")).help =
                Some(format!("input `{}` is a {ty}", name.name));
        }
    }
    for (name, spec) in &inputs {
        if required(spec) && with.and_then(|w| w.get(name)).is_none() {
            c.err(
                uses_node.pos,
                format!("Input {name} is required, but not provided while calling."),
            );
        }
    }
    let secrets = declared("secrets");
    match job.get("secrets") {
        Some(s) if s.as_str() == Some("inherit") => {}
        given => {
            for (name, _) in given.map(Node::entries).unwrap_or_default() {
                if !secrets.iter().any(|(n, _)| *n == name.name) {
                    c.err(
                        name.pos,
                        format!(
                            "Invalid secret, {} is not defined in the referenced workflow.",
                            name.name
                        ),
                    );
                }
            }
            // A `secrets:` that is neither `inherit` nor a mapping is reported
            // above; which secrets it lacks would only repeat that.
            let is_string = given.is_some_and(|g| g.as_str().is_some());
            for (name, spec) in &secrets {
                if !is_string && required(spec) && given.and_then(|g| g.get(name)).is_none() {
                    c.err(
                        uses_node.pos,
                        format!("Secret {name} is required, but not provided while calling."),
                    );
                }
            }
        }
    }
}

/// `none` < `read` < `write`.
fn level_rank(level: &str) -> u8 {
    match level {
        "write" => 2,
        "read" => 1,
        _ => 0,
    }
}

/// A `permissions:` value as scope → level for every scope (`None`: not given).
fn permission_levels(p: &Node) -> Option<Vec<(&'static str, String)>> {
    let all = |level: &str| {
        PERMISSION_SCOPES
            .iter()
            .map(|s| (*s, level.to_string()))
            .collect::<Vec<_>>()
    };
    match &p.kind {
        Kind::Str(s) if s == "read-all" => Some(all("read")),
        Kind::Str(s) if s == "write-all" => Some(all("write")),
        Kind::Map(_) | Kind::Null => Some(
            PERMISSION_SCOPES
                .iter()
                .map(|s| {
                    let level = p.get(s).and_then(Node::as_str).unwrap_or("none");
                    (*s, level.to_string())
                })
                .collect(),
        ),
        _ => None,
    }
}

type Levels = Vec<(&'static str, String)>;

/// What a calling job grants the workflow it calls: its own `permissions`,
/// else its workflow's, else what it was granted itself (at the top, the
/// repository's default).
fn granted_levels(
    job: &Node,
    workflow: Option<&Node>,
    inherited: impl FnOnce() -> Levels,
) -> Levels {
    job.get("permissions")
        .or(workflow)
        .and_then(permission_levels)
        .unwrap_or_else(inherited)
}

/// The repository's default token permissions, for a top-level job that sets none.
fn policy_levels(policy: PermissionsPolicy) -> Levels {
    PERMISSION_SCOPES
        .iter()
        .map(|s| {
            let level = match (policy, *s) {
                (PermissionsPolicy::Write, _) => "write",
                (PermissionsPolicy::LimitedRead, "contents" | "packages") => "read",
                _ => "none",
            };
            (*s, level.to_string())
        })
        .collect()
}

/// For each job of a called workflow that asks more of a scope than
/// `granted`: who asks (the job, or the workflow for a job without its own
/// `permissions`), what it asks and what it may have.
fn excess_permissions(
    uses: &str,
    callee: &Node,
    granted: &Levels,
) -> Vec<(String, String, String)> {
    let callee_default = callee.get("permissions");
    let mut out = Vec::new();
    for (id, job) in callee.get("jobs").map(Node::entries).unwrap_or_default() {
        let (requested, who) = match job.get("permissions") {
            Some(p) => {
                let name = job.get("name").and_then(Node::as_str).unwrap_or(&id.name);
                (permission_levels(p), format!("nested job '{name}'"))
            }
            None => (
                callee_default.and_then(permission_levels),
                format!("workflow '{uses}'"),
            ),
        };
        let Some(requested) = requested else { continue };
        if let Some(((scope, want), (_, have))) = requested
            .iter()
            .zip(granted)
            .find(|((_, want), (_, have))| level_rank(want) > level_rank(have))
        {
            out.push((who, format!("{scope}: {want}"), format!("{scope}: {have}")));
        }
    }
    out
}

/// The jobs of a called workflow may not request more token permissions than
/// the calling job has: its own `permissions`, else the workflow's, else the
/// repository's default.
fn check_called_permissions(
    c: &mut Checker,
    caller: &Node,
    key_pos: Pos,
    uses: &str,
    callee: &Node,
) {
    let policy = c.policy;
    let granted = granted_levels(caller, c.workflow_permissions.as_ref(), || {
        policy_levels(policy)
    });
    for (who, want, have) in excess_permissions(uses, callee, &granted) {
        c.err(
            key_pos,
            format!(
                "Error calling workflow '{uses}'. The {who} is requesting '{want}', but is only allowed '{have}'."
            ),
        )
        .help = Some(format!(
            "grant it in the calling job: `permissions: {{ {want} }}`"
        ));
    }
}

/// A top-level job that calls a reusable workflow, for errors found further down.
#[derive(Clone, Copy)]
struct TopCall {
    key: Pos,
    uses: Pos,
}

/// Follows one call of a reusable workflow and the calls it makes in turn,
/// as GitHub loads them: each level deeper than the limit, each distinct
/// workflow past the limit, every job and every byte read counts against
/// the whole run. Errors from further down are reported at the top-level
/// job, naming the called file and the place in it.
fn walk_call(c: &mut Checker, top: TopCall, uses: &str, granted: &Levels, depth: usize) {
    if c.walk_stopped {
        return;
    }
    let limits = c.limits;
    if depth > limits.max_nested_depth {
        c.walk_stopped = true;
        c.err(
            top.uses,
            format!(
                "Nested reusable workflow depth exceeded {}: `{uses}` is called {depth} levels below this workflow",
                limits.max_nested_depth
            ),
        )
        .help = Some(format!(
            "GitHub runs the caller and at most {} levels of reusable workflows below it: call fewer levels deep, or turn a level into a composite action",
            limits.max_nested_depth
        ));
        return;
    }
    if !c.called.iter().any(|u| u == uses) {
        c.called.push(uses.to_string());
        if c.called.len() > limits.max_called_workflows {
            c.walk_stopped = true;
            c.err(
                top.uses,
                format!(
                    "too many reusable workflows are referenced: `{uses}` is number {}, the limit is {}",
                    c.called.len(),
                    limits.max_called_workflows
                ),
            )
            .help = Some("the limit counts distinct workflows across every level of calls: merge some of them".into());
            return;
        }
    }
    let Some(text) = (c.resolve)(uses) else {
        return;
    };
    let measured = crate::limits::measure(&text, &limits);
    let from = |e: &crate::yaml::YamlError| {
        format!(
            "Error from called workflow {uses} ({}:{}): {}",
            e.pos.line, e.pos.column, e.message
        )
    };
    if let Some(e) = &measured.fatal {
        c.walk_stopped = true;
        let msg = from(e);
        c.err(top.uses, msg);
        return;
    }
    c.bytes += measured.bytes;
    if c.bytes > limits.max_result_size {
        c.walk_stopped = true;
        c.err(
            top.uses,
            format!("Error from called workflow {uses}: Maximum object size exceeded"),
        )
        .help = Some(format!(
            "GitHub reads at most {} bytes of workflow for a run, every called workflow included (each call reads it again): call fewer or smaller workflows",
            limits.max_result_size
        ));
        return;
    }
    let Ok(callee) = crate::yaml::parse(&text) else {
        return; // its own validation reports it
    };
    let jobs = callee.get("jobs").map(Node::entries).unwrap_or_default();
    c.jobs += jobs.len();
    if let Some(max) = limits.max_jobs
        && c.jobs > max
    {
        c.walk_stopped = true;
        c.err(
            top.uses,
            format!("Workflows may not contain more than {max} jobs across all referenced files"),
        )
        .help = Some(format!(
            "`{uses}` brings the count to {}: every job of every called workflow counts",
            c.jobs
        ));
        return;
    }
    let callee_permissions = callee.get("permissions");
    for (key, job) in jobs {
        let Some(nested) = job.get("uses").and_then(Node::as_str) else {
            continue;
        };
        let granted_here = granted_levels(job, callee_permissions, || granted.clone());
        if let Some(nested_text) = (c.resolve)(nested)
            && let Ok(nested_callee) = crate::yaml::parse(&nested_text)
        {
            for (who, want, have) in excess_permissions(nested, &nested_callee, &granted_here) {
                c.err(
                    top.key,
                    format!(
                        "{uses} ({}:{}): Error calling workflow '{nested}'. The {who} is requesting '{want}', but is only allowed '{have}'.",
                        key.pos.line, key.pos.column
                    ),
                )
                .help = Some(format!(
                    "a called workflow gets at most what its caller has: grant `{want}` at each level of the calls, or request less"
                ));
            }
        }
        walk_call(c, top, nested, &granted_here, depth + 1);
        if c.walk_stopped {
            return;
        }
    }
}

const CONTAINER_KEYS: &[&str] = &["image", "credentials", "env", "ports", "volumes", "options"];

/// The scopes a `permissions:` mapping may name, as GitHub documents them.
const PERMISSION_SCOPES: &[&str] = &[
    "actions",
    "attestations",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "id-token",
    "issues",
    "models",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
];

/// `permissions`: `read-all`, `write-all`, `{}` or scope → `read|write|none`.
fn check_permissions(c: &mut Checker, p: &Node) {
    match &p.kind {
        Kind::Str(s) if s == "read-all" || s == "write-all" => {}
        Kind::Str(s) => {
            c.err(p.pos, format!("Unexpected value '{s}'")).help =
                Some("use read-all, write-all, or a mapping of scopes".into());
        }
        Kind::Map(entries) => {
            c.keys(p, PERMISSION_SCOPES, "`permissions`");
            for (k, v) in entries {
                let ok = matches!(v.as_str(), Some("read" | "write" | "none"));
                if !ok && PERMISSION_SCOPES.contains(&k.name.as_str()) {
                    let shown = v
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.type_name().into());
                    c.err(v.pos, format!("Unexpected value '{shown}'")).help =
                        Some("a permission is read, write or none".into());
                }
            }
        }
        Kind::Null => {}
        _ => {
            c.err(p.pos, format!("`permissions` cannot be {}", p.type_name()));
        }
    }
}

/// A runner group with a scope must say which: `organization/NAME` or `enterprise/NAME`.
fn check_runner_group(c: &mut Checker, node: &Node, group: &str) {
    if group.contains("${{") {
        return;
    }
    if let Some((scope, name)) = group.split_once('/') {
        if !["organization", "org", "enterprise", "ent"].contains(&scope) || name.contains('/') {
            c.err(node.pos, format!("Invalid runs-on group name '{group}'. Please use 'organization/' or 'enterprise/' prefix to target a single runner group."));
        } else if name.is_empty() {
            c.err(node.pos, format!("Invalid runs-on group name '{group}'."));
        }
    }
}

/// `concurrency` is a group name or a mapping with a `group`.
fn check_concurrency(c: &mut Checker, n: &Node) {
    if let Kind::Map(_) = n.kind {
        c.keys(
            n,
            &["group", "cancel-in-progress", "queue"],
            "`concurrency`",
        );
        if n.get("group").is_none() {
            c.err(n.pos, "Required property is missing: group");
        }
        if let Some(v) = n.get("cancel-in-progress") {
            check_bool(c, v, "cancel-in-progress");
        }
    }
}

fn check_job<'a>(
    c: &mut Checker,
    key: &'a Key,
    job: &'a Node,
    ids: &[&'a str],
    graph: &mut HashMap<&'a str, Vec<&'a str>>,
) {
    let id = key.name.as_str();
    c.scope = Scope::default();
    if !id
        .chars()
        .next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        || !id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    {
        c.err(key.pos, format!("invalid job id `{id}`")).help = Some(
            "a job id starts with a letter or `_` and contains only letters, digits, `-` and `_`"
                .into(),
        );
    }
    if id.starts_with("__") {
        c.err(
            key.pos,
            format!("The identifier '{id}' is invalid. IDs starting with '__' are reserved."),
        );
    }
    if !c.expect_map(job, &format!("job `{id}`")) {
        return;
    }
    let is_call = job.get("uses").is_some();
    let both = is_call && job.get("runs-on").is_some();
    let call_keys: Vec<&str> = CALL_JOB_KEYS
        .iter()
        .copied()
        .chain(both.then_some("runs-on"))
        .collect();
    c.keys(
        job,
        if is_call { &call_keys } else { JOB_KEYS },
        &format!("job `{id}`"),
    );
    if both {
        // GitHub takes the job for what its first key says and rejects the second.
        let (first, second) = {
            let mut keys: Vec<&Key> = job
                .entries()
                .iter()
                .map(|(k, _)| k)
                .filter(|k| k.name == "uses" || k.name == "runs-on")
                .collect();
            keys.sort_by_key(|k| (k.pos.line, k.pos.column));
            (keys[0].name.clone(), keys[keys.len() - 1])
        };
        c.err(
            second.pos,
            format!("Unexpected value '{}': job `{id}` has `{first}` already", second.name),
        )
        .help = Some(
            "a job either runs steps on a runner (`runs-on`) or calls a reusable workflow (`uses`), not both"
                .into(),
        );
    }
    if !is_call && job.get("runs-on").is_none() {
        // At the job's mapping, where GitHub reports a missing property.
        c.err(
            job.pos,
            format!("Required property is missing: runs-on (job `{id}`)"),
        )
        .help =
            Some("add `runs-on: ubuntu-latest` (or call a reusable workflow with `uses:`)".into());
    }
    if is_call {
        check_call(c, key.pos, job);
        if let Some(uses) = job.get("uses")
            && let Some(name) = uses.as_str()
        {
            let policy = c.policy;
            let granted = granted_levels(job, c.workflow_permissions.as_ref(), || {
                policy_levels(policy)
            });
            let top = TopCall {
                key: key.pos,
                uses: uses.pos,
            };
            walk_call(c, top, name, &granted, 1);
        }
    }
    let mut needs = Vec::new();
    if let Some(n) = job.get("needs") {
        let list: Vec<&Node> = match &n.kind {
            Kind::Str(_) => vec![n],
            Kind::Seq(items) => items.iter().collect(),
            _ => {
                c.err(n.pos, "`needs` must be a job id or a list of job ids");
                Vec::new()
            }
        };
        for item in list {
            let Some(name) = item.as_str() else { continue };
            if !ids.contains(&name) {
                let help = did_you_mean(name, ids.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("jobs: {}", ids.join(", ")));
                c.err(item.pos, format!("job `{id}` needs unknown job `{name}`"))
                    .help = Some(help);
            } else {
                needs.push(ids[ids.iter().position(|x| *x == name).unwrap_or(0)]);
            }
        }
    }
    graph.insert(id, needs);
    let mut all_steps = Vec::new();
    if let Some(Kind::Seq(items)) = job.get("steps").map(|s| &s.kind) {
        items
            .iter()
            .for_each(|step| collect_ids(step, &mut all_steps));
    }
    c.scope = Scope {
        job: id.to_string(),
        needs: Some(
            job.get("needs")
                .map(|n| match &n.kind {
                    Kind::Seq(items) => items.iter().collect(),
                    _ => vec![n],
                })
                .unwrap_or_default()
                .into_iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect(),
        ),
        steps: None,
        all_steps,
        current: None,
        matrix: matrix_keys(job),
        jobs: None,
    };
    if let Some(n) = job.get("if") {
        c.exprs(n, JOB_IF, true);
        check_if_template(c, n);
    }
    if let Some(n) = job.get("continue-on-error") {
        check_bool(c, n, "continue-on-error");
    }
    if let Some(env) = job.get("environment") {
        match env.get("url") {
            Some(url) => {
                c.exprs(url, ENVIRONMENT_URL, false);
                if let Some(name) = env.get("name") {
                    c.exprs(name, JOB_LEVEL, false);
                }
            }
            None => c.exprs(env, JOB_LEVEL, false),
        }
    }
    for k in ["timeout-minutes", "cancel-timeout-minutes"] {
        if let Some(n) = job.get(k) {
            check_minutes(c, n, k);
        }
    }
    for k in [
        "runs-on",
        "name",
        "timeout-minutes",
        "continue-on-error",
        "concurrency",
        "with",
    ] {
        if let Some(n) = job.get(k) {
            c.exprs(n, JOB_LEVEL, false);
        }
    }
    if let Some(n) = job.get("env") {
        c.exprs(n, JOB_ENV, false);
    }
    // `container`/`services` credentials may use secrets and env.
    for k in ["container", "services"] {
        if let Some(n) = job.get(k) {
            c.exprs(n, JOB_CONTAINER, false);
        }
    }
    for container in job.get("container").into_iter().chain(
        job.get("services")
            .map(Node::entries)
            .unwrap_or_default()
            .iter()
            .map(|(_, v)| v),
    ) {
        if let Kind::Map(_) = container.kind {
            c.keys(container, CONTAINER_KEYS, "a container");
            if let Some(cred) = container.get("credentials") {
                c.keys(cred, &["username", "password"], "container `credentials`");
            }
        }
    }
    if let Some(p) = job.get("permissions") {
        check_permissions(c, p);
    }
    if let Some(group) = job
        .get("runs-on")
        .and_then(|r| r.get("group"))
        .and_then(|g| g.as_str().map(|s| (g, s)))
    {
        check_runner_group(c, group.0, group.1);
    }
    if let Some(n) = job.get("container")
        && let Kind::Map(_) = n.kind
        && n.get("image").is_none()
    {
        c.err(n.pos, "Container image cannot be empty").help =
            Some("give the container an `image:`".into());
    }
    if let Some(services) = job.get("services") {
        for (_, svc) in services.entries() {
            if let Kind::Map(_) = svc.kind
                && svc.get("image").is_none()
            {
                c.err(svc.pos, "Container image cannot be empty").help =
                    Some("give the service an `image:`".into());
            }
        }
    }
    if let Some(n) = job.get("concurrency") {
        check_concurrency(c, n);
    }
    if let Some(n) = job.get("secrets") {
        c.exprs(n, JOB_ENV, false);
    }
    if let Some(n) = job.get("outputs") {
        // A job's outputs are read after all its steps ran.
        c.scope.steps = Some(c.scope.all_steps.clone());
        c.exprs(n, JOB_OUTPUTS, false);
        c.scope.steps = None;
    }
    if let Some(s) = job.get("strategy") {
        if c.expect_map(s, "`strategy`") {
            c.keys(s, STRATEGY_KEYS, "`strategy`");
            if let Some(n) = s.get("fail-fast") {
                check_bool(c, n, "fail-fast");
            }
            if let Some(n) = s.get("max-parallel") {
                check_number(c, n, "max-parallel");
            }
        }
        c.exprs(s, JOB_STRATEGY, false);
        if let Some(m) = s.get("matrix")
            && let Kind::Map(entries) = &m.kind
        {
            for (k, v) in entries {
                if !["include", "exclude"].contains(&k.name.as_str())
                    && matches!(v.kind, Kind::Seq(ref items) if items.is_empty())
                {
                    c.err(k.pos, format!("matrix vector `{}` is empty", k.name));
                }
            }
        }
    }
    if let Some(t) = job.get("timeout-minutes")
        && !matches!(t.kind, Kind::Number(_) | Kind::Str(_))
    {
        c.err(
            t.pos,
            format!(
                "`timeout-minutes` must be a number, found {}",
                t.type_name()
            ),
        );
    }
    // A job without steps parses (GitHub fails it when it runs).
    if let Some(steps) = job.get("steps") {
        check_steps(c, id, steps);
    }
}

/// The workflow's declared inputs and secrets, as far as the reference rules
/// may rely on them (see [`Checker::inputs`] and [`Checker::secrets`]).
fn declared_interface(on: Option<&Node>) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let Some(on) = on else {
        return (None, None);
    };
    let triggers: Vec<String> = match &on.kind {
        Kind::Str(s) => vec![s.clone()],
        Kind::Seq(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(String::from))
            .collect(),
        Kind::Map(m) => m.iter().map(|(k, _)| k.name.clone()).collect(),
        _ => Vec::new(),
    };
    if triggers.is_empty() {
        return (None, None);
    }
    let declared = |event: &str, what: &str| -> Option<Vec<String>> {
        let n = on.get(event)?.get(what)?;
        match &n.kind {
            Kind::Map(m) => Some(m.iter().map(|(k, _)| k.name.clone()).collect()),
            _ => None,
        }
    };
    let inputs = triggers
        .iter()
        .all(|t| t == "workflow_call" || t == "workflow_dispatch")
        .then(|| {
            let mut all = declared("workflow_call", "inputs").unwrap_or_default();
            all.extend(declared("workflow_dispatch", "inputs").unwrap_or_default());
            all
        });
    let secrets = if triggers == ["workflow_call"] {
        declared("workflow_call", "secrets")
    } else {
        None
    };
    (inputs, secrets)
}

/// Each job's declared outputs (lowercased ids): its `outputs:` keys, or
/// for a job calling a local reusable workflow, the callee's.
fn job_outputs(
    root: &Node,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> HashMap<String, Option<Vec<String>>> {
    let keys = |n: &Node| match &n.kind {
        Kind::Map(m) => Some(m.iter().map(|(k, _)| k.name.clone()).collect()),
        Kind::Null => Some(Vec::new()),
        _ => None,
    };
    let mut out = HashMap::new();
    for (id, job) in root.get("jobs").map(Node::entries).unwrap_or_default() {
        let outputs = match job.get("uses").and_then(Node::as_str) {
            Some(uses) => resolve(uses)
                .and_then(|text| crate::yaml::parse(&text).ok())
                .and_then(|callee| {
                    let call = callee.get("on")?.get("workflow_call")?;
                    Some(call.get("outputs").map_or(Some(Vec::new()), keys))
                })
                .flatten(),
            None => job.get("outputs").map_or(Some(Vec::new()), keys),
        };
        out.insert(id.name.clone(), outputs);
    }
    out
}

/// The keys `matrix.X` may name in a job; `None` when the matrix is computed
/// (`fromJSON`, an `include` from an expression), so any key may exist.
fn matrix_keys(job: &Node) -> Option<Vec<String>> {
    let Some(strategy) = job.get("strategy") else {
        return Some(Vec::new());
    };
    if !matches!(strategy.kind, Kind::Map(_)) {
        return None;
    }
    let Some(m) = strategy.get("matrix") else {
        return Some(Vec::new());
    };
    let Kind::Map(entries) = &m.kind else {
        return None;
    };
    let mut keys = Vec::new();
    for (k, v) in entries {
        match k.name.as_str() {
            "include" => {
                let Kind::Seq(items) = &v.kind else {
                    return None;
                };
                for item in items {
                    let Kind::Map(e) = &item.kind else {
                        return None;
                    };
                    keys.extend(e.iter().map(|(k, _)| k.name.clone()));
                }
            }
            "exclude" => {}
            _ if k.name.contains("${{") => return None,
            _ => keys.push(k.name.clone()),
        }
    }
    keys.dedup();
    Some(keys)
}

/// An `if:` with text around its `${{ }}` is a string template: its value
/// is a non-empty string, which is true, whatever the expression says.
fn check_if_template(c: &mut Checker, n: &Node) {
    let Some(text) = n.as_str() else { return };
    if text.contains("${{") && !hangar_expr::is_single_expression(text) {
        c.warn(
            n.pos,
            "this `if:` is always true: the text around `${{ }}` makes it a string, and a non-empty string is true",
        )
        .help = Some(
            "put the whole condition inside one `${{ }}`, or write it without `${{ }}`".into(),
        );
    }
}

/// A boolean setting: `true`, `false` or an expression. GitHub rejects
/// anything else when it reads the file.
fn check_bool(c: &mut Checker, n: &Node, key: &str) {
    let ok = match &n.kind {
        Kind::Bool(_) => true,
        Kind::Str(s) => s.contains("${{"),
        _ => false,
    };
    if !ok {
        c.err(
            n.pos,
            format!(
                "`{key}` must be `true`, `false` or an expression, found {}",
                shown(n)
            ),
        )
        .help = Some(format!("write `{key}: true` or `{key}: false`"));
    }
}

/// A number setting (`max-parallel`): a number or an expression.
fn check_number(c: &mut Checker, n: &Node, key: &str) {
    let ok = match &n.kind {
        Kind::Number(_) => true,
        Kind::Str(s) => s.contains("${{"),
        _ => false,
    };
    if !ok {
        c.err(
            n.pos,
            format!(
                "`{key}` must be a number or an expression, found {}",
                shown(n)
            ),
        )
        .help = Some(format!("write a number, e.g. `{key}: 2`"));
    }
}

/// A value as an error quotes it: a string as written, else its type.
fn shown(n: &Node) -> String {
    match &n.kind {
        Kind::Str(s) => format!("`{s}`"),
        _ => n.type_name().to_string(),
    }
}

/// `timeout-minutes` and `cancel-timeout-minutes` hold a number of minutes or
/// an expression. Numbers out of the runner's range are GitHub-valid (its
/// corpus has infinities): the engine caps or ignores them with a warning,
/// through the same `hangar_units` reader, so only the type is checked here.
fn check_minutes(c: &mut Checker, n: &Node, key: &str) {
    let ok = match &n.kind {
        Kind::Number(_) => true,
        Kind::Str(s) => s.contains("${{") || hangar_units::timeout_minutes(s).is_ok(),
        _ => false,
    };
    if !ok {
        let found = match &n.kind {
            Kind::Str(s) => format!("`{s}`"),
            _ => n.type_name().to_string(),
        };
        c.err(
            n.pos,
            format!("`{key}` must be a number of minutes, found {found}"),
        )
        .help = Some(format!(
            "write a number, e.g. `{key}: 30`, or an expression"
        ));
    }
}

fn check_steps(c: &mut Checker, job: &str, steps: &Node) {
    let Kind::Seq(items) = &steps.kind else {
        c.err(steps.pos, format!("`steps` of job `{job}` must be a list"));
        return;
    };
    // Every id of the job, for "defined after this step" and did-you-mean.
    let mut all_ids: Vec<String> = Vec::new();
    for step in items {
        collect_ids(step, &mut all_ids);
    }
    c.scope.all_steps = all_ids.clone();
    let mut state = StepState {
        job,
        seen: HashSet::new(),
        all_ids,
        background: Vec::new(),
        before: Vec::new(),
    };
    for step in items {
        check_step(c, &mut state, step, false);
    }
}

/// What the steps before the one being checked define.
struct StepState<'a> {
    job: &'a str,
    seen: HashSet<String>,
    all_ids: Vec<String>,
    /// Ids of background steps before this one (parallel groups' members excluded:
    /// their group already waited for them).
    background: Vec<String>,
    /// Ids of every step before this one.
    before: Vec<String>,
}

fn collect_ids(step: &Node, out: &mut Vec<String>) {
    if let Some(id) = step.get("id").and_then(Node::as_str) {
        out.push(id.to_string());
    }
    if let Some(Kind::Seq(members)) = step.get("parallel").map(|p| &p.kind) {
        for m in members {
            collect_ids(m, out);
        }
    }
}

fn check_step(c: &mut Checker, st: &mut StepState, step: &Node, in_parallel: bool) {
    if !c.expect_map(step, "a step") {
        return;
    }
    c.scope.steps = Some(st.before.clone());
    c.scope.current = step.get("id").and_then(Node::as_str).map(String::from);
    c.keys(step, STEP_KEYS, "a step");
    let kinds: Vec<&str> = crate::model::STEP_KINDS
        .iter()
        .copied()
        .filter(|k| step.get(k).is_some())
        .collect();
    match kinds.as_slice() {
        [] => {
            c.err(step.pos, "a step needs `run` or `uses`").help =
                Some("or, for parallel steps, `wait`, `wait-all`, `cancel` or `parallel`".into());
        }
        ["run", "uses"] => {
            let pos = step.get("uses").map_or(step.pos, |u| u.pos);
            c.err(pos, "a step has either `run` or `uses`, not both");
        }
        [first, second, ..] => {
            let pos = step.get(second).map_or(step.pos, |u| u.pos);
            c.err(
                pos,
                format!("a step has one of `run`, `uses`, `wait`, `wait-all`, `cancel` and `parallel`: this one has `{first}` and `{second}`"),
            );
        }
        [kind] if !["run", "uses"].contains(kind) => {
            if in_parallel {
                c.err(
                    step.pos,
                    format!("a `parallel` group runs `run` and `uses` steps, not `{kind}`"),
                )
                .help = Some(
                    "put this step after the group: the group ends when all its steps have".into(),
                );
            } else if *kind != "parallel" {
                check_control_step(c, st, step, kind);
            }
        }
        _ => {}
    }
    if let Some(u) = step.get("uses")
        && let Some(s) = u.as_str()
        && !s.starts_with("./")
        && !s.starts_with("$/")
        && !s.starts_with("docker://")
        && !s.contains('@')
    {
        c.err(
            u.pos,
            format!("`uses: {s}` needs a version: `{s}@v1` (a tag, branch or commit sha)"),
        );
    }
    let id = step.get("id").and_then(|n| n.as_str().map(|s| (s, n.pos)));
    if let Some((idv, pos)) = id {
        if !idv
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            || !idv
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            c.err(pos, format!("invalid step id `{idv}`")).help = Some("a step id starts with a letter or `_` and contains only letters, digits, `-` and `_`".into());
        }
        if !st.seen.insert(idv.to_ascii_lowercase()) {
            c.err(
                pos,
                format!("the step id `{idv}` is already used in job `{}`", st.job),
            );
        }
    }
    if let Some(b) = step.get("background") {
        match &b.kind {
            Kind::Bool(_) => {}
            Kind::Str(s) if s.contains("${{") => {}
            _ => {
                c.err(
                    b.pos,
                    format!(
                        "`background` must be `true` or `false`, found {}",
                        b.type_name()
                    ),
                );
            }
        }
        let on = matches!(b.kind, Kind::Bool(true));
        if in_parallel && on {
            c.err(
                b.pos,
                "a step of a `parallel` group already runs in the background",
            )
            .help = Some("remove `background: true`".into());
        } else if on && step.get("run").is_none() && step.get("uses").is_none() {
            c.err(
                b.pos,
                "only a `run` or `uses` step can run in the background",
            );
        } else if let Some((idv, _)) = id
            && (on || b.as_str().is_some_and(|s| s.contains("${{")))
        {
            // An expression may put the step in the background when it
            // starts: a `wait` for it is not a mistake.
            st.background.push(idv.to_string());
        }
    }
    if let Some(n) = step.get("timeout-minutes") {
        check_minutes(c, n, "timeout-minutes");
    }
    if let Some(n) = step.get("if") {
        c.exprs(n, STEP_IF, true);
        check_if_template(c, n);
    }
    if let Some(n) = step.get("continue-on-error") {
        check_bool(c, n, "continue-on-error");
    }
    for (k, v) in step.entries() {
        if !["if", "id", "uses", "shell", "parallel", "wait", "cancel"].contains(&k.name.as_str()) {
            c.exprs(v, STEP, false);
        }
    }
    if let Some(p) = step.get("parallel") {
        match &p.kind {
            Kind::Seq(members) if !members.is_empty() => {
                for m in members {
                    check_step(c, st, m, true);
                }
            }
            Kind::Seq(_) => {
                c.err(p.pos, "a `parallel` group needs at least one step");
            }
            _ => {
                c.err(
                    p.pos,
                    format!(
                        "`parallel` must be a list of steps, found {}",
                        p.type_name()
                    ),
                );
            }
        }
    }
    if let Some((idv, _)) = id {
        st.before.push(idv.to_string());
    }
}

/// `wait`, `wait-all` and `cancel`: what they name must be a background step
/// before them, and they take no `run`-step keys.
fn check_control_step(c: &mut Checker, st: &StepState, step: &Node, kind: &str) {
    for (k, _) in step.entries() {
        if k.name != kind
            && STEP_KEYS.contains(&k.name.as_str())
            && !CONTROL_STEP_KEYS.contains(&k.name.as_str())
        {
            c.err(k.pos, format!("a `{kind}` step cannot have `{}`", k.name))
                .help = Some(format!(
                "a `{kind}` step has only `{kind}`, `id`, `name`, `if` and `continue-on-error`"
            ));
        }
    }
    let Some(v) = step.get(kind) else { return };
    let names: Vec<&Node> = match (kind, &v.kind) {
        ("wait-all", Kind::Null | Kind::Bool(true)) => return,
        ("wait-all", _) => {
            c.err(
                v.pos,
                format!(
                    "`wait-all` must be empty or `true`, found {}",
                    v.type_name()
                ),
            )
            .help = Some("write `wait-all:` or `wait-all: true`".into());
            return;
        }
        ("wait", Kind::Seq(items)) if !items.is_empty() => items.iter().collect(),
        (_, Kind::Str(_)) => vec![v],
        _ => {
            let expected = if kind == "wait" {
                "a step id or a list of step ids"
            } else {
                "a step id"
            };
            c.err(
                v.pos,
                format!("`{kind}` must be {expected}, found {}", v.type_name()),
            );
            return;
        }
    };
    for n in names {
        let Some(name) = n.as_str() else {
            c.err(
                n.pos,
                format!("`{kind}` names steps by id, found {}", n.type_name()),
            );
            continue;
        };
        if st.background.iter().any(|b| b == name) {
            continue;
        }
        if name.contains("${{") {
            c.err(
                n.pos,
                format!("`{kind}` names a step by its id; an expression is not allowed here"),
            );
        } else if st.before.iter().any(|b| b == name) {
            c.err(
                n.pos,
                format!("`{kind}: {name}` names a step that does not run in the background"),
            )
            .help = Some(format!(
                "add `background: true` to step `{name}` (a step inside a `parallel` group is waited for at the end of its group)"
            ));
        } else if st.all_ids.iter().any(|b| b == name) {
            c.err(
                n.pos,
                format!("`{kind}: {name}` names a step that comes after this one"),
            )
            .help = Some("move the step before it".into());
        } else {
            let help = did_you_mean(name, st.background.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    if st.background.is_empty() {
                        "no background step with an `id` comes before this step: give the step `background: true` and an `id`".to_string()
                    } else {
                        format!("background steps before this one: {}", st.background.join(", "))
                    }
                });
            c.err(
                n.pos,
                format!(
                    "`{kind}: {name}`: job `{}` has no step with id `{name}`",
                    st.job
                ),
            )
            .help = Some(help);
        }
    }
}

fn find_cycle<'a>(ids: &[&'a str], graph: &HashMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    fn dfs<'a>(
        n: &'a str,
        graph: &HashMap<&'a str, Vec<&'a str>>,
        state: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(n);
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = dfs(d, graph, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut state = HashMap::new();
    ids.iter()
        .find_map(|id| dfs(id, graph, &mut state, &mut Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `line:col message` of every diagnostic, validating `caller` with the
    /// callees in `files` (by their `uses:`) and `limits`.
    fn check(caller: &str, files: &[(&str, &str)], limits: Limits) -> Vec<String> {
        let resolve = |uses: &str| {
            files
                .iter()
                .find(|(name, _)| *name == uses)
                .map(|(_, text)| text.to_string())
        };
        let options = Options {
            policy: PermissionsPolicy::Write,
            limits,
        };
        validate_with_options("ci.yml", caller, &resolve, &options)
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect()
    }

    /// A reusable workflow whose one job calls `next` (or runs steps).
    fn level(next: Option<&str>) -> String {
        match next {
            Some(n) => format!("on: workflow_call\njobs:\n  j:\n    uses: {n}\n"),
            None => {
                "on: workflow_call\njobs:\n  j:\n    runs-on: x\n    steps: [{run: x}]\n".into()
            }
        }
    }

    fn chain(levels: usize) -> Vec<(String, String)> {
        (1..=levels)
            .map(|i| {
                let next = (i < levels).then(|| format!("./l{}.yml", i + 1));
                (format!("./l{i}.yml"), level(next.as_deref()))
            })
            .collect()
    }

    const CALLER: &str = "on: push\njobs:\n  go:\n    uses: ./l1.yml\n";

    #[test]
    fn nested_calls_stop_at_ten_levels_of_workflows() {
        let run = |n: usize| {
            let files = chain(n);
            let refs: Vec<(&str, &str)> = files
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            check(CALLER, &refs, Limits::default())
        };
        // The caller and nine levels below it.
        assert!(run(9).is_empty(), "{:?}", run(9));
        let e = run(10);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("4:11 Nested reusable workflow depth exceeded 9: `./l10.yml` is called 10 levels below"),
            "{e:?}"
        );
        // A workflow that calls itself ends at the limit too.
        let selfish = level(Some("./l1.yml"));
        let e = check(CALLER, &[("./l1.yml", &selfish)], Limits::default());
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn distinct_called_workflows_are_limited_across_levels() {
        let limits = Limits {
            max_called_workflows: 2,
            ..Limits::default()
        };
        let two = chain(2);
        let refs: Vec<(&str, &str)> = two.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert!(check(CALLER, &refs, limits).is_empty());
        // The same workflow twice is one.
        let twice = "on: push\njobs:\n  a:\n    uses: ./l1.yml\n  b:\n    uses: ./l1.yml\n";
        assert!(check(twice, &refs, limits).is_empty());
        let three = chain(3);
        let refs: Vec<(&str, &str)> = three
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let e = check(CALLER, &refs, limits);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(
                "too many reusable workflows are referenced: `./l3.yml` is number 3, the limit is 2"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn jobs_and_bytes_count_across_called_workflows() {
        let callee = level(None);
        let files = [("./l1.yml", callee.as_str())];
        let two_calls = "on: push\njobs:\n  a:\n    uses: ./l1.yml\n  b:\n    uses: ./l1.yml\n";
        let jobs = |n| Limits {
            max_jobs: Some(n),
            ..Limits::default()
        };
        // Two calling jobs and the one job each call brings.
        assert!(check(two_calls, &files, jobs(4)).is_empty());
        let e = check(two_calls, &files, jobs(3));
        assert_eq!(
            e,
            vec!["6:11 Workflows may not contain more than 3 jobs across all referenced files"]
        );
        let e = check(two_calls, &files, jobs(1));
        assert_eq!(
            e,
            vec!["5:3 Workflows may not contain more than 1 jobs across all referenced files"]
        );

        let own = crate::limits::measure(two_calls, &Limits::default()).bytes;
        let each = crate::limits::measure(&callee, &Limits::default()).bytes;
        let bytes = |n| Limits {
            max_result_size: n,
            ..Limits::default()
        };
        assert!(check(two_calls, &files, bytes(own + 2 * each)).is_empty());
        let e = check(two_calls, &files, bytes(own + 2 * each - 1));
        assert_eq!(
            e,
            vec!["6:11 Error from called workflow ./l1.yml: Maximum object size exceeded"]
        );
        // A called file past a limit of its own is reported at the call.
        let e = check(
            two_calls,
            &files,
            Limits {
                max_depth: 3,
                ..Limits::default()
            },
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "4:11 Error from called workflow ./l1.yml (5:12): Maximum object depth exceeded"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn nested_calls_get_no_more_permissions_than_their_caller() {
        let l1 = "on: workflow_call\njobs:\n  mid:\n    permissions:\n      actions: read\n    uses: ./l2.yml\n";
        let l1_workflow =
            "on: workflow_call\npermissions:\n  actions: read\njobs:\n  mid:\n    uses: ./l2.yml\n";
        let l2_job = "on: workflow_call\njobs:\n  deep:\n    permissions:\n      actions: write\n    runs-on: x\n    steps: [{run: x}]\n";
        let l2_workflow = "on: workflow_call\npermissions:\n  actions: write\njobs:\n  deep:\n    runs-on: x\n    steps: [{run: x}]\n";
        let caller = "on: push\npermissions:\n  actions: write\njobs:\n  go:\n    uses: ./l1.yml\n";
        let e = check(
            caller,
            &[("./l1.yml", l1), ("./l2.yml", l2_job)],
            Limits::default(),
        );
        assert_eq!(
            e,
            vec![
                "5:3 ./l1.yml (3:3): Error calling workflow './l2.yml'. The nested job 'deep' is requesting 'actions: write', but is only allowed 'actions: read'."
            ]
        );
        let e = check(
            caller,
            &[("./l1.yml", l1_workflow), ("./l2.yml", l2_workflow)],
            Limits::default(),
        );
        assert_eq!(
            e,
            vec![
                "5:3 ./l1.yml (5:3): Error calling workflow './l2.yml'. The workflow './l2.yml' is requesting 'actions: write', but is only allowed 'actions: read'."
            ]
        );
        // A middle level that sets nothing passes on what it was given.
        let l1_plain = "on: workflow_call\njobs:\n  mid:\n    uses: ./l2.yml\n";
        assert!(
            check(
                caller,
                &[("./l1.yml", l1_plain), ("./l2.yml", l2_job)],
                Limits::default()
            )
            .is_empty()
        );
        let read_caller =
            "on: push\npermissions:\n  actions: read\njobs:\n  go:\n    uses: ./l1.yml\n";
        let e = check(
            read_caller,
            &[("./l1.yml", l1_plain), ("./l2.yml", l2_job)],
            Limits::default(),
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("is only allowed 'actions: read'"), "{e:?}");
    }

    #[test]
    fn a_long_compiled_expression_is_reported_at_its_value() {
        let script = format!("echo ${{{{ github.sha }}}} {}", "x".repeat(21_000));
        let text = format!(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: |\n          {script}\n"
        );
        let e = check(&text, &[], Limits::default());
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("6:14 Exceeded max expression length 21000"),
            "{e:?}"
        );
    }

    #[test]
    fn the_workflow_name_and_its_triggers_take_no_expressions() {
        let e = check(
            "name: Build ${{ github.ref }}\nrun-name: Build ${{ github.ref }}\non:\n  ${{ 'push' }}:\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x}]\n",
            &[],
            Limits::default(),
        );
        assert_eq!(
            e,
            vec![
                "1:7 A template expression is not allowed in this context",
                "4:3 A template expression is not allowed in this context",
            ]
        );
    }

    #[test]
    fn a_job_runs_on_a_runner_or_calls_a_workflow() {
        let e = check(
            "on: push\njobs:\n  a:\n    runs-on: x\n    uses: ./w.yml\n",
            &[],
            Limits::default(),
        );
        assert_eq!(
            e,
            vec!["5:5 Unexpected value 'uses': job `a` has `runs-on` already"]
        );
        let e = check(
            "on: push\njobs:\n  a:\n    uses: ./w.yml\n    runs-on: x\n",
            &[],
            Limits::default(),
        );
        assert_eq!(
            e,
            vec!["5:5 Unexpected value 'runs-on': job `a` has `uses` already"]
        );
    }

    #[test]
    fn a_mistyped_secrets_inherit_is_one_error() {
        let callee = "on:\n  workflow_call:\n    secrets:\n      token:\n        required: true\njobs:\n  j:\n    runs-on: x\n    steps: [{run: x}]\n";
        let e = check(
            "on: push\njobs:\n  a:\n    uses: ./w.yml\n    secrets: inhrit\n",
            &[("./w.yml", callee)],
            Limits::default(),
        );
        assert_eq!(e, vec!["5:14 Unexpected value 'inhrit'"]);
    }

    #[test]
    fn limits_on_bad_input_do_not_panic() {
        let tiny = Limits {
            max_file_size: 0,
            max_depth: 0,
            max_result_size: 0,
            max_jobs: Some(0),
            max_nested_depth: 0,
            max_called_workflows: 0,
        };
        for text in ["", "on: push", "jobs: {a: {uses: x}}", "[", "a: *b", "{{{{"] {
            let _ = check(text, &[("x", "jobs: {b: {uses: x}}")], tiny);
            let _ = check(text, &[("x", "jobs: {b: {uses: x}}")], Limits::default());
        }
    }

    #[test]
    fn timeout_minutes_must_be_numbers_of_any_size() {
        let wf = |job: &str, step: &str| {
            format!(
                "on: push\njobs:\n  a:\n    runs-on: x\n    timeout-minutes: {job}\n    steps:\n      - run: echo\n        timeout-minutes: {step}\n"
            )
        };
        // GitHub's parser takes any number, infinities included.
        for (job, step) in [("10", "1.5"), ("1e18", "-3"), ("${{ matrix.t }}", "'20'")] {
            let mut d = validate("ci.yml", &wf(job, step));
            // `matrix.t` without a matrix is a warning, not the point here.
            d.retain(Diagnostic::is_error);
            assert!(d.is_empty(), "{job} {step}: {d:?}");
        }
        let d = validate("ci.yml", &wf("soon", "[1]"));
        let msgs: Vec<_> = d
            .iter()
            .map(|d| (d.line, d.column, d.message.as_str()))
            .collect();
        assert_eq!(
            msgs,
            [
                (
                    5,
                    22,
                    "`timeout-minutes` must be a number of minutes, found `soon`"
                ),
                (
                    8,
                    26,
                    "`timeout-minutes` must be a number of minutes, found a sequence"
                ),
            ]
        );
    }

    /// Diagnostics (`line:col message | help`) of a job made of `steps`.
    fn steps_check(steps: &str) -> Vec<String> {
        let text = format!("on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n{steps}");
        let options = Options {
            policy: PermissionsPolicy::Write,
            limits: Limits::default(),
        };
        validate_with_options("ci.yml", &text, &|_: &str| None, &options)
            .iter()
            .map(|d| {
                format!(
                    "{}:{} {} | {}",
                    d.line,
                    d.column,
                    d.message,
                    d.help.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn parallel_steps_that_github_runs_validate_clean() {
        let ok = concat!(
            "      - {id: server, run: serve, background: true}\n",
            "      - {id: lint, run: lint, background: true}\n",
            "      - run: work\n",
            "      - wait: lint\n",
            "      - {name: both, wait: [lint, server]}\n",
            "      - wait-all:\n",
            "      - wait-all: true\n",
            "      - parallel:\n",
            "          - {id: a, run: a}\n",
            "          - uses: ./local\n",
            "      - cancel: server\n",
            "      - run: echo ${{ steps.a.outputs.x }}\n",
            "      - {id: maybe, run: m, background: \"${{ github.event_name == 'push' }}\"}\n",
            "      - wait: maybe\n",
        );
        assert_eq!(steps_check(ok), Vec::<String>::new());
    }

    #[test]
    fn parallel_steps_bad_input_is_positioned() {
        // An unknown id, with did-you-mean among the background steps.
        let e =
            steps_check("      - {id: server, run: s, background: true}\n      - wait: sever\n");
        assert_eq!(
            e,
            ["7:15 `wait: sever`: job `j` has no step with id `sever` | did you mean `server`?"]
        );
        // Waiting on a step that does not run in the background.
        let e = steps_check("      - {id: build, run: b}\n      - cancel: build\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("7:17 `cancel: build` names a step that does not run in the background | add `background: true` to step `build`"), "{e:?}");
        // A background step waited on needs an id (here it has none).
        let e = steps_check("      - {run: s, background: true}\n      - wait: [s]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "7:16 `wait: s`: job `j` has no step with id `s` | no background step with an `id`"
            ),
            "{e:?}"
        );
        // Waiting on a step that comes later.
        let e = steps_check("      - wait: later\n      - {id: later, run: s, background: true}\n");
        assert_eq!(
            e,
            ["6:15 `wait: later` names a step that comes after this one | move the step before it"]
        );
        // Wrong types.
        let e = steps_check("      - {run: s, background: yes}\n");
        assert_eq!(
            e,
            ["6:30 `background` must be `true` or `false`, found a string | "]
        );
        let e = steps_check("      - wait-all: 3\n");
        assert_eq!(
            e,
            [
                "6:19 `wait-all` must be empty or `true`, found a number | write `wait-all:` or `wait-all: true`"
            ]
        );
        let e = steps_check("      - wait: {a: b}\n");
        assert_eq!(
            e,
            ["6:15 `wait` must be a step id or a list of step ids, found a mapping | "]
        );
        let e = steps_check("      - parallel: x\n");
        assert_eq!(
            e,
            ["6:19 `parallel` must be a list of steps, found a string | "]
        );
        // Shapes GitHub refuses.
        let e =
            steps_check("      - {id: s, run: s, background: true}\n      - {wait: s, run: x}\n");
        assert_eq!(
            e,
            [
                "7:16 a step has one of `run`, `uses`, `wait`, `wait-all`, `cancel` and `parallel`: this one has `run` and `wait` | "
            ]
        );
        let e = steps_check(
            "      - {id: s, run: s, background: true}\n      - {cancel: s, timeout-minutes: 1}\n",
        );
        assert_eq!(
            e,
            [
                "7:21 a `cancel` step cannot have `timeout-minutes` | a `cancel` step has only `cancel`, `id`, `name`, `if` and `continue-on-error`"
            ]
        );
        let e = steps_check(
            "      - parallel:\n          - {run: a, background: true}\n          - wait-all:\n",
        );
        assert_eq!(
            e,
            [
                "7:34 a step of a `parallel` group already runs in the background | remove `background: true`",
                "8:13 a `parallel` group runs `run` and `uses` steps, not `wait-all` | put this step after the group: the group ends when all its steps have",
            ]
        );
        // A member of a parallel group was waited for by its group.
        let e = steps_check("      - parallel:\n          - {id: a, run: a}\n      - wait: a\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("8:15 `wait: a` names a step that does not run in the background"),
            "{e:?}"
        );
        // Ids inside a group count for duplicates.
        let e = steps_check(
            "      - {id: a, run: a}\n      - parallel:\n          - {id: a, run: a}\n",
        );
        assert_eq!(e, ["8:18 the step id `a` is already used in job `j` | "]);
    }
    /// `line:col severity: message` of every diagnostic of `text`.
    fn diags(text: &str) -> Vec<String> {
        validate_with("ci.yml", text, &|_: &str| None)
            .iter()
            .map(|d| {
                let sev = if d.is_error() { "error" } else { "warning" };
                format!("{}:{} {sev}: {}", d.line, d.column, d.message)
            })
            .collect()
    }

    const CLEAN: &[String] = &[];

    #[test]
    fn needs_references_name_jobs_in_needs_and_their_outputs() {
        let wf = |needs: &str, expr: &str| {
            format!(
                "on: push\njobs:\n  a:\n    runs-on: x\n    outputs:\n      v: ${{{{ steps.s.outputs.v }}}}\n    steps:\n      - {{id: s, run: x}}\n  b:\n    runs-on: x\n{needs}    steps:\n      - run: echo ${{{{ {expr} }}}}\n"
            )
        };
        assert_eq!(
            diags(&wf("", "needs.a.outputs.v")),
            ["12:29 warning: job `b` does not need `a`, so `needs.a` is null"]
        );
        assert_eq!(
            diags(&wf("    needs: a\n", "needs.nope.result")),
            ["13:29 warning: there is no job `nope`, so `needs.nope` is null"]
        );
        assert_eq!(
            diags(&wf("    needs: [a]\n", "needs.a.outputs.w")),
            ["13:39 warning: job `a` has no output `w`, so `needs.a.outputs.w` is null"]
        );
        assert_eq!(diags(&wf("    needs: [a]\n", "needs.A.outputs.V")), CLEAN);
        assert_eq!(diags(&wf("    needs: a\n", "needs.a.result")), CLEAN);
    }

    #[test]
    fn steps_references_name_steps_before_them() {
        let wf = "on: push\njobs:\n  j:\n    runs-on: x\n    outputs:\n      o: ${{ steps.late.outputs.o }}\n    steps:\n      - {id: early, run: x}\n      - run: echo ${{ steps.early.outputs.a }} ${{ steps.late.outputs.b }} ${{ steps.erly.outcome }}\n      - {id: late, run: x}\n";
        assert_eq!(
            diags(wf),
            [
                "9:58 warning: step `late` runs after this point, so `steps.late` is null here",
                "9:86 warning: job `j` has no step with id `erly`, so `steps.erly` is null",
            ]
        );
        let d = validate_with("ci.yml", wf, &|_: &str| None);
        assert_eq!(d[1].help.as_deref(), Some("did you mean `early`?"));
        // A step's own outputs are not there yet either.
        assert_eq!(
            diags(
                "on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n      - id: me\n        run: echo ${{ steps.me.outputs.x }}\n"
            ),
            ["7:29 warning: a step cannot read its own outputs, so `steps.me` is null here"]
        );
    }

    #[test]
    fn inputs_references_name_declared_inputs_when_only_input_events_trigger() {
        let wf = |on: &str| {
            format!(
                "on:\n{on}jobs:\n  j:\n    runs-on: x\n    steps:\n      - run: echo ${{{{ inputs.tag }}}} ${{{{ inputs.tga }}}}\n"
            )
        };
        let declared = "  workflow_dispatch:\n    inputs:\n      tag: {type: string}\n";
        assert_eq!(
            diags(&wf(declared)),
            [
                "9:48 warning: input `tga` is not declared under `on.workflow_call` or `on.workflow_dispatch`, so `inputs.tga` is null"
            ]
        );
        // Declared by the other input event.
        let both = "  workflow_dispatch:\n  workflow_call:\n    inputs:\n      tag: {type: string}\n      tga: {type: string}\n";
        assert_eq!(diags(&wf(both)), CLEAN);
        // On a push, `inputs` is empty: `inputs.x || 'default'` is a pattern, not a mistake.
        assert_eq!(diags(&wf(&format!("  push:\n{declared}"))), CLEAN);
    }

    #[test]
    fn secrets_references_name_declared_secrets_of_a_called_workflow() {
        let wf = |on: &str| {
            format!(
                "on:\n{on}jobs:\n  j:\n    runs-on: x\n    steps:\n      - run: echo ${{{{ secrets.TOKEN }}}} ${{{{ secrets.GITHUB_TOKEN }}}} ${{{{ secrets.NPM }}}}\n"
            )
        };
        let declared = "  workflow_call:\n    secrets:\n      token:\n        required: true\n";
        assert_eq!(
            diags(&wf(declared)),
            [
                "10:80 warning: secret `NPM` is not declared under `on.workflow_call.secrets`: a caller can pass it only with `secrets: inherit`"
            ]
        );
        // No `secrets:` declared: written for `secrets: inherit`.
        assert_eq!(diags(&wf("  workflow_call:\n")), CLEAN);
        // Also run on a push, where the repository's secrets are all there.
        assert_eq!(diags(&wf(&format!("  push:\n{declared}"))), CLEAN);
    }

    #[test]
    fn matrix_references_name_matrix_keys_unless_the_matrix_is_computed() {
        let wf = |matrix: &str| {
            format!(
                "on: push\njobs:\n  j:\n    runs-on: x\n    strategy:\n      matrix:\n{matrix}    steps:\n      - run: echo ${{{{ matrix.os }}}} ${{{{ matrix.rust }}}}\n"
            )
        };
        assert_eq!(
            diags(&wf("        os: [a, b]\n")),
            ["9:47 warning: the matrix of job `j` has no key `rust`, so `matrix.rust` is null"]
        );
        assert_eq!(
            diags(&wf(
                "        os: [a, b]\n        include:\n          - {os: a, rust: beta}\n"
            )),
            CLEAN
        );
        assert_eq!(
            diags(&wf(
                "        os: [a]\n        include: ${{ fromJSON(vars.m) }}\n"
            )),
            CLEAN
        );
        let computed = "on: push\njobs:\n  j:\n    runs-on: x\n    strategy:\n      matrix: ${{ fromJSON('{}') }}\n    steps:\n      - run: echo ${{ matrix.anything }}\n";
        assert_eq!(diags(computed), CLEAN);
    }

    #[test]
    fn workflow_call_outputs_name_jobs_and_are_checked() {
        let wf = |value: &str| {
            format!(
                "on:\n  workflow_call:\n    outputs:\n      v:\n        value: {value}\njobs:\n  build:\n    runs-on: x\n    outputs:\n      v: x\n    steps: [{{run: x}}]\n"
            )
        };
        assert_eq!(diags(&wf("${{ jobs.build.outputs.v }}")), CLEAN);
        assert_eq!(
            diags(&wf("${{ jobs.biuld.outputs.v }}")),
            ["5:25 warning: there is no job `biuld`, so `jobs.biuld` is null"]
        );
        assert_eq!(
            diags(&wf("${{ jobs.build.outputs.x }}")),
            ["5:39 warning: job `build` has no output `x`, so `jobs.build.outputs.x` is null"]
        );
        assert_eq!(
            diags(&wf("${{ steps.s.outputs.v }}")),
            ["5:20 error: context `steps` is not available here"]
        );
    }

    #[test]
    fn an_if_with_text_around_its_expression_is_always_true() {
        let wf = |cond: &str| {
            format!(
                "on: push\njobs:\n  j:\n    runs-on: x\n    if: {cond}\n    steps:\n      - run: x\n        if: {cond}\n"
            )
        };
        assert_eq!(
            diags(&wf("${{ github.ref == 'x' }} && github.actor == 'y'")),
            [
                "5:9 warning: this `if:` is always true: the text around `${{ }}` makes it a string, and a non-empty string is true",
                "8:13 warning: this `if:` is always true: the text around `${{ }}` makes it a string, and a non-empty string is true",
            ]
        );
        assert_eq!(
            diags(&wf("${{ github.ref == 'x' && github.actor == 'y' }}")),
            CLEAN
        );
        assert_eq!(
            diags(&wf("github.ref == 'x' && github.actor == 'y'")),
            CLEAN
        );
        assert_eq!(diags(&wf("\"  ${{ github.ref == 'x' }}  \"")), CLEAN);
    }

    #[test]
    fn booleans_and_numbers_of_settings_are_typed() {
        let wf = |v: &str, n: &str| {
            format!(
                "on: push\nconcurrency:\n  group: g\n  cancel-in-progress: {v}\njobs:\n  j:\n    runs-on: x\n    continue-on-error: {v}\n    strategy:\n      fail-fast: {v}\n      max-parallel: {n}\n      matrix: {{a: [1]}}\n    steps:\n      - run: x\n        continue-on-error: {v}\n"
            )
        };
        for (v, n) in [
            ("true", "2"),
            ("false", "${{ 1 }}"),
            ("${{ github.event_name == 'push' }}", "1.5"),
        ] {
            assert_eq!(diags(&wf(v, n)), CLEAN, "{v} {n}");
        }
        assert_eq!(
            diags(&wf("maybe", "two")),
            [
                "4:23 error: `cancel-in-progress` must be `true`, `false` or an expression, found `maybe`",
                "8:24 error: `continue-on-error` must be `true`, `false` or an expression, found `maybe`",
                "10:18 error: `fail-fast` must be `true`, `false` or an expression, found `maybe`",
                "11:21 error: `max-parallel` must be a number or an expression, found `two`",
                "15:28 error: `continue-on-error` must be `true`, `false` or an expression, found `maybe`",
            ]
        );
    }
    #[test]
    fn a_composite_actions_steps_refer_to_steps_before_them_and_declared_inputs() {
        let text = "name: a\ninputs:\n  tag: {description: t}\noutputs:\n  v:\n    value: ${{ steps.last.outputs.v }}\nruns:\n  using: composite\n  steps:\n    - id: first\n      run: echo ${{ inputs.tag }} ${{ inputs.tga }} ${{ steps.last.outputs.v }}\n      shell: bash\n    - id: last\n      run: echo ${{ steps.first.outputs.x }} ${{ steps.frist.outputs.x }}\n      shell: bash\n      if: ${{ inputs.tag }} == 'x'\n";
        let d: Vec<String> = validate_action("action.yml", text)
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(
            d,
            [
                "11:46 input `tga` is not declared under the action's `inputs:`, so `inputs.tga` is null",
                "11:63 step `last` runs after this point, so `steps.last` is null here",
                "14:56 this action has no step with id `frist`, so `steps.frist` is null",
                "16:11 this `if:` is always true: the text around `${{ }}` makes it a string, and a non-empty string is true",
            ]
        );
        // JavaScript and Docker actions have no steps to check; bad YAML is an error.
        assert!(validate_action("action.yml", "runs:\n  using: node20\n  main: x.js\n").is_empty());
        let e = validate_action("action.yml", "runs: [\n");
        assert!(
            e[0].is_error() && e[0].message.starts_with("YAML:"),
            "{e:?}"
        );
    }
}
