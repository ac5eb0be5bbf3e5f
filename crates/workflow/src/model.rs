//! The typed workflow model: a workflow file read once into triggers, jobs and
//! steps, every value with the position it is written at, and every value that
//! may hold `${{ }}` kept as a parsed expression ([`LoE`]: a literal or an
//! expression, the shape zizmor's `github-actions-models` gives such values).
//!
//! It is built from the positioned tree of [`crate::yaml`], never from serde:
//! a wrong shape is a [`ModelError`] at the line and column of the value, and
//! all of them are reported at once. The model checks shapes only (what a
//! reader needs to be able to use a value); GitHub's finer rules (unknown
//! keys, context availability, permissions) are [`crate::validate`]'s.
//!
//! Free-form values (a matrix, `with:` of a called workflow, `services:`) stay
//! positioned YAML nodes: their readers expand or forward them as they are.

use std::fmt;

use hangar_expr::{Condition, SyntaxError, Template};

use crate::yaml::{self, Key, Kind, Node, Pos};

/// A value and where it is written.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

/// A literal or an expression: what a value is when it may be written either way.
#[derive(Debug, Clone)]
pub enum LoE<T> {
    Literal(T),
    Expr(Expression),
}

/// `${{ }}` text, parsed. A syntax error is kept rather than refused here: the
/// validator reports it with GitHub's wording, and a run fails where it is met.
#[derive(Debug, Clone)]
pub struct Expression {
    /// The text as written.
    pub text: String,
    pub parsed: Result<Template, SyntaxError>,
}

impl Expression {
    fn new(text: &str) -> Expression {
        Expression {
            text: text.to_string(),
            parsed: Template::parse(text),
        }
    }
}

/// A string value (any scalar, in GitHub's string form), with `${{ }}` parsed.
pub type Text = Spanned<LoE<String>>;

impl Text {
    /// The text as written, expression or not.
    pub fn raw(&self) -> &str {
        match &self.value {
            LoE::Literal(s) => s,
            LoE::Expr(e) => &e.text,
        }
    }

    /// The text when it holds no expression.
    pub fn literal(&self) -> Option<&str> {
        match &self.value {
            LoE::Literal(s) => Some(s),
            LoE::Expr(_) => None,
        }
    }
}

impl<T> Spanned<LoE<T>> {
    pub fn literal_value(&self) -> Option<&T> {
        match &self.value {
            LoE::Literal(v) => Some(v),
            LoE::Expr(_) => None,
        }
    }
}

/// An `if:` condition: its text (a boolean or number written bare becomes its
/// string form, as GitHub reads it) and the parsed [`Condition`].
#[derive(Debug, Clone)]
pub struct If {
    pub text: String,
    pub condition: Result<Condition, SyntaxError>,
}

/// A shape the model cannot use, where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.column, self.message)
    }
}

/// A workflow file.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: Option<Text>,
    pub run_name: Option<Text>,
    /// `on:` in file order, one entry per event whatever the spelling.
    pub on: Vec<Trigger>,
    pub env: Option<Env>,
    pub defaults: Option<Defaults>,
    pub concurrency: Option<Spanned<Concurrency>>,
    pub permissions: Option<Spanned<Permissions>>,
    /// In file order.
    pub jobs: Vec<Job>,
    /// The positioned tree the model was read from (for readers of free-form
    /// values and for positions of keys the model does not type).
    pub root: Node,
}

/// One event of `on:` with its configuration (all empty for `on: push`).
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    pub event: Spanned<String>,
    pub branches: Option<Vec<Spanned<String>>>,
    pub branches_ignore: Option<Vec<Spanned<String>>>,
    pub tags: Option<Vec<Spanned<String>>>,
    pub tags_ignore: Option<Vec<Spanned<String>>>,
    pub paths: Option<Vec<Spanned<String>>>,
    pub paths_ignore: Option<Vec<Spanned<String>>>,
    /// Activity types (`pull_request: {types: [opened]}`).
    pub types: Option<Vec<Spanned<String>>>,
    /// `workflow_dispatch` and `workflow_call` inputs, in file order.
    pub inputs: Vec<Input>,
    /// `workflow_call` outputs.
    pub outputs: Vec<CallOutput>,
    /// `workflow_call` secrets.
    pub secrets: Vec<CallSecret>,
    /// `schedule` entries.
    pub schedules: Vec<Schedule>,
    /// `workflow_run: {workflows: [...]}`.
    pub workflows: Option<Vec<Spanned<String>>>,
}

/// One entry of `on.schedule`.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    pub cron: Spanned<String>,
    /// The IANA time zone the cron is read in (`America/New_York`); UTC
    /// when absent. Checked against the time zone database by `validate`.
    pub timezone: Option<Spanned<String>>,
}

impl Default for Spanned<String> {
    fn default() -> Self {
        Spanned {
            value: String::new(),
            pos: Pos::default(),
        }
    }
}

/// Declared type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    String,
    Boolean,
    Number,
    Choice,
    Environment,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Boolean => "boolean",
            InputType::Number => "number",
            InputType::Choice => "choice",
            InputType::Environment => "environment",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Input {
    pub name: Key,
    pub description: Option<Text>,
    pub required: bool,
    /// `string` when not written.
    pub kind: InputType,
    pub default: Option<Node>,
    /// `choice` options.
    pub options: Vec<Spanned<String>>,
}

#[derive(Debug, Clone)]
pub struct CallOutput {
    pub name: Key,
    pub description: Option<Text>,
    pub value: Option<Text>,
}

#[derive(Debug, Clone)]
pub struct CallSecret {
    pub name: Key,
    pub required: bool,
}

/// `env:`: variables, or one expression giving them.
pub type Env = Spanned<LoE<Vec<(Key, Text)>>>;

#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub shell: Option<Text>,
    pub working_directory: Option<Text>,
}

#[derive(Debug, Clone)]
pub struct Concurrency {
    pub group: Text,
    pub cancel_in_progress: Option<Spanned<LoE<bool>>>,
}

#[derive(Debug, Clone)]
pub enum Permissions {
    /// `read-all`, `write-all` (or an expression, which GitHub refuses later).
    Preset(Text),
    /// Scope to `read`/`write`/`none`.
    Scopes(Vec<(Key, Spanned<String>)>),
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: Key,
    /// The job's mapping.
    pub pos: Pos,
    pub name: Option<Text>,
    pub needs: Vec<Spanned<String>>,
    pub cond: Option<Spanned<If>>,
    pub runs_on: Option<Spanned<RunsOn>>,
    pub environment: Option<Spanned<Environment>>,
    pub concurrency: Option<Spanned<Concurrency>>,
    /// A mapping, or one expression giving it.
    pub strategy: Option<Spanned<LoE<Strategy>>>,
    pub steps: Vec<Step>,
    /// A call of a reusable workflow.
    pub uses: Option<Text>,
    /// Inputs of the called workflow (typed values: kept as nodes).
    pub with: Vec<(Key, Node)>,
    pub secrets: Option<Spanned<CallSecrets>>,
    pub outputs: Vec<(Key, Text)>,
    pub timeout_minutes: Option<Spanned<LoE<f64>>>,
    pub continue_on_error: Option<Spanned<LoE<bool>>>,
    pub permissions: Option<Spanned<Permissions>>,
    pub defaults: Option<Defaults>,
    pub env: Option<Env>,
    pub services: Option<Node>,
    pub container: Option<Node>,
}

#[derive(Debug, Clone, Default)]
pub struct RunsOn {
    /// Labels; one expression is one label here, to evaluate.
    pub labels: Vec<Text>,
    pub group: Option<Text>,
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub name: Text,
    pub url: Option<Text>,
}

#[derive(Debug, Clone, Default)]
pub struct Strategy {
    /// The matrix as written (its readers expand it once its expressions,
    /// if any, are evaluated).
    pub matrix: Option<Node>,
    pub fail_fast: Option<Spanned<LoE<bool>>>,
    pub max_parallel: Option<Spanned<LoE<f64>>>,
}

#[derive(Debug, Clone)]
pub enum CallSecrets {
    Inherit,
    Map(Vec<(Key, Text)>),
}

#[derive(Debug, Clone)]
pub struct Step {
    /// The step's mapping.
    pub pos: Pos,
    pub id: Option<Text>,
    pub name: Option<Text>,
    pub cond: Option<Spanned<If>>,
    pub body: StepBody,
    pub env: Option<Env>,
    pub timeout_minutes: Option<Spanned<LoE<f64>>>,
    pub continue_on_error: Option<Spanned<LoE<bool>>>,
    /// `background: true`: the step starts and the job moves on; its result
    /// counts once a `wait`, `wait-all`, `cancel` or the job's end waits for it.
    pub background: Option<Spanned<LoE<bool>>>,
}

/// What a step does. The last four are GitHub's parallel steps (June 2026):
/// steps of their own that only wait for or stop background steps, or run a
/// group of steps at once.
#[derive(Debug, Clone)]
pub enum StepBody {
    Run {
        run: Text,
        shell: Option<Text>,
        working_directory: Option<Text>,
    },
    Uses {
        uses: Text,
        with: Vec<(Key, Text)>,
    },
    /// `wait: ID` or `wait: [IDS]`: waits for those background steps.
    Wait {
        ids: Vec<Spanned<String>>,
    },
    /// `wait-all:` (bare or `true`): waits for every background step so far.
    WaitAll,
    /// `cancel: ID`: stops a background step and waits for it.
    Cancel {
        id: Spanned<String>,
    },
    /// `parallel:` a list of `run`/`uses` steps started together; the group
    /// ends when all of them have.
    Parallel {
        steps: Vec<Step>,
    },
}

/// The keys that say what a step does; a step has exactly one of them.
pub const STEP_KINDS: &[&str] = &["run", "uses", "wait", "wait-all", "cancel", "parallel"];

impl Workflow {
    /// Reads a workflow's text: YAML errors and shape errors together, in
    /// file order.
    pub fn parse(text: &str) -> Result<Workflow, Vec<ModelError>> {
        let root = yaml::parse(text).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| ModelError {
                    pos: e.pos,
                    message: e.message,
                })
                .collect::<Vec<_>>()
        })?;
        Workflow::from_node(root)
    }

    /// Builds the model from a positioned tree.
    pub fn from_node(root: Node) -> Result<Workflow, Vec<ModelError>> {
        let mut r = Reader::default();
        let wf = r.workflow(&root);
        match wf {
            Some(wf) if r.errors.is_empty() => Ok(Workflow { root, ..wf }),
            _ => {
                let mut errors = r.errors;
                errors.sort_by_key(|e| (e.pos.line, e.pos.column));
                Err(errors)
            }
        }
    }

    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id.name == id)
    }

    pub fn trigger(&self, event: &str) -> Option<&Trigger> {
        self.on.iter().find(|t| t.event.value == event)
    }

    /// Event names of `on:`, in file order.
    pub fn events(&self) -> impl Iterator<Item = &str> {
        self.on.iter().map(|t| t.event.value.as_str())
    }

    /// The `on:` of a file that is wrong somewhere (its errors at
    /// `error_lines`), read alone: whether an invalid workflow would have
    /// been triggered, which is when GitHub shows its failed run (a file
    /// with no `on:` is triggered by nothing, as `hangar run` reads it).
    /// `None` when that cannot be known: the text is not YAML or not a
    /// mapping, or an error lies within `on:` (from its key's line to the
    /// next top-level key's).
    pub fn triggers_despite_errors(text: &str, error_lines: &[usize]) -> Option<Vec<Trigger>> {
        let root = yaml::parse(text).ok()?;
        let Kind::Map(m) = &root.kind else {
            return None;
        };
        let Some(at) = m.iter().position(|(k, _)| k.name == "on") else {
            return Some(Vec::new());
        };
        let from = m[at].0.pos.line;
        let to = m.get(at + 1).map_or(usize::MAX, |(k, _)| k.pos.line);
        if error_lines.iter().any(|l| (from..to).contains(l)) {
            return None;
        }
        let mut r = Reader::default();
        let on = r.triggers(&m[at].1);
        r.errors.is_empty().then_some(on)
    }
}

impl Job {
    /// `needs:` as job ids.
    pub fn needs_ids(&self) -> impl Iterator<Item = &str> {
        self.needs.iter().map(|n| n.value.as_str())
    }
}

impl Strategy {
    /// Whether the matrix holds `${{ }}` anywhere (its legs are known only
    /// once those are evaluated).
    pub fn matrix_has_expressions(&self) -> bool {
        fn any(n: &Node) -> bool {
            match &n.kind {
                Kind::Str(s) => s.contains("${{"),
                Kind::Seq(items) => items.iter().any(any),
                Kind::Map(m) => m.iter().any(|(k, v)| k.name.contains("${{") || any(v)),
                _ => false,
            }
        }
        self.matrix.as_ref().is_some_and(any)
    }
}

/// The string GitHub reads from a scalar (`true`, `3`, `1.5`, text); `None`
/// for null, sequences and mappings.
fn scalar_text(n: &Node) -> Option<String> {
    match &n.kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Bool(b) => Some(b.to_string()),
        Kind::Number(_) => Some(n.to_json().to_string()),
        _ => None,
    }
}

/// Collects every shape error while reading; a reader method returns `None`
/// (and records why) when the value cannot be used.
#[derive(Default)]
struct Reader {
    errors: Vec<ModelError>,
}

impl Reader {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(ModelError {
            pos,
            message: message.into(),
        });
    }

    /// `what` is a key path (`jobs.a.needs`, shown in backticks) or prose
    /// (`a step`).
    fn wrong(&mut self, n: &Node, what: &str, expected: &str) {
        let what = if what.contains(' ') {
            what.to_string()
        } else {
            format!("`{what}`")
        };
        self.err(
            n.pos,
            format!("{what} must be {expected}, found {}", n.type_name()),
        );
    }

    fn text(&mut self, n: &Node, what: &str) -> Option<Text> {
        match scalar_text(n) {
            Some(s) => Some(Spanned {
                value: if s.contains("${{") {
                    LoE::Expr(Expression::new(&s))
                } else {
                    LoE::Literal(s)
                },
                pos: n.pos,
            }),
            None => {
                self.wrong(n, what, "a string");
                None
            }
        }
    }

    /// A literal string (event names, filter patterns, needs).
    fn string(&mut self, n: &Node, what: &str) -> Option<Spanned<String>> {
        match scalar_text(n) {
            Some(value) => Some(Spanned { value, pos: n.pos }),
            None => {
                self.wrong(n, what, "a string");
                None
            }
        }
    }

    /// A string or a sequence of strings.
    fn strings(&mut self, n: &Node, what: &str) -> Vec<Spanned<String>> {
        match &n.kind {
            Kind::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            Kind::Null => Vec::new(),
            _ => self.string(n, what).into_iter().collect(),
        }
    }

    fn texts(&mut self, n: &Node, what: &str) -> Vec<Text> {
        match &n.kind {
            Kind::Seq(items) => items.iter().filter_map(|i| self.text(i, what)).collect(),
            _ => self.text(n, what).into_iter().collect(),
        }
    }

    fn flag(&mut self, n: &Node, what: &str) -> Option<Spanned<LoE<bool>>> {
        let value = match &n.kind {
            Kind::Bool(b) => LoE::Literal(*b),
            Kind::Str(s) if s.contains("${{") => LoE::Expr(Expression::new(s)),
            // GitHub reads the strings too (`continue-on-error: 'true'`).
            Kind::Str(s) if s == "true" || s == "false" => LoE::Literal(s == "true"),
            _ => {
                self.wrong(n, what, "a boolean or an expression");
                return None;
            }
        };
        Some(Spanned { value, pos: n.pos })
    }

    fn number(&mut self, n: &Node, what: &str) -> Option<Spanned<LoE<f64>>> {
        let value = match &n.kind {
            Kind::Number(x) => LoE::Literal(*x),
            Kind::Str(s) if s.contains("${{") => LoE::Expr(Expression::new(s)),
            Kind::Str(s) if s.trim().parse::<f64>().is_ok() => {
                LoE::Literal(s.trim().parse::<f64>().unwrap_or_default())
            }
            _ => {
                self.wrong(n, what, "a number or an expression");
                return None;
            }
        };
        Some(Spanned { value, pos: n.pos })
    }

    fn cond(&mut self, n: &Node, what: &str) -> Option<Spanned<If>> {
        let text = match &n.kind {
            Kind::Null => String::new(),
            _ => scalar_text(n).or_else(|| {
                self.wrong(n, what, "a string or an expression");
                None
            })?,
        };
        let condition = Condition::parse(&text);
        Some(Spanned {
            value: If { text, condition },
            pos: n.pos,
        })
    }

    /// A mapping's entries, or an error naming `what`.
    fn map<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n [(Key, Node)]> {
        match &n.kind {
            Kind::Map(m) => Some(m),
            _ => {
                self.wrong(n, what, "a mapping");
                None
            }
        }
    }

    fn text_map(&mut self, n: &Node, what: &str) -> Vec<(Key, Text)> {
        match &n.kind {
            Kind::Null => Vec::new(),
            _ => self
                .map(n, what)
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, v)| {
                    let what = format!("{what}.{}", k.name);
                    // An empty value is an empty string (`env: {A: }`).
                    let text = match v.kind {
                        Kind::Null => Some(Spanned {
                            value: LoE::Literal(String::new()),
                            pos: v.pos,
                        }),
                        _ => self.text(v, &what),
                    };
                    Some((k.clone(), text?))
                })
                .collect(),
        }
    }

    fn env(&mut self, n: &Node, what: &str) -> Option<Env> {
        if let Kind::Str(s) = &n.kind
            && s.contains("${{")
        {
            return Some(Spanned {
                value: LoE::Expr(Expression::new(s)),
                pos: n.pos,
            });
        }
        Some(Spanned {
            value: LoE::Literal(self.text_map(n, what)),
            pos: n.pos,
        })
    }

    fn defaults(&mut self, n: &Node, what: &str) -> Option<Defaults> {
        self.map(n, what)?;
        let Some(run) = n.get("run") else {
            return Some(Defaults::default());
        };
        self.map(run, &format!("{what}.run"))?;
        Some(Defaults {
            shell: run.get("shell").and_then(|s| self.text(s, "shell")),
            working_directory: run
                .get("working-directory")
                .and_then(|s| self.text(s, "working-directory")),
        })
    }

    fn concurrency(&mut self, n: &Node, what: &str) -> Option<Spanned<Concurrency>> {
        let value = match &n.kind {
            Kind::Map(_) => {
                let Some(group) = n.get("group") else {
                    self.err(n.pos, format!("`{what}` needs a `group`"));
                    return None;
                };
                Concurrency {
                    group: self.text(group, &format!("{what}.group"))?,
                    cancel_in_progress: n
                        .get("cancel-in-progress")
                        .and_then(|c| self.flag(c, "cancel-in-progress")),
                }
            }
            _ => Concurrency {
                group: self.text(n, what)?,
                cancel_in_progress: None,
            },
        };
        Some(Spanned { value, pos: n.pos })
    }

    fn permissions(&mut self, n: &Node) -> Option<Spanned<Permissions>> {
        let value = match &n.kind {
            Kind::Map(m) => Permissions::Scopes(
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.string(v, &k.name)?)))
                    .collect(),
            ),
            _ => Permissions::Preset(self.text(n, "permissions")?),
        };
        Some(Spanned { value, pos: n.pos })
    }

    fn workflow(&mut self, root: &Node) -> Option<Workflow> {
        self.map(root, "a workflow")?;
        let name = root.get("name").and_then(|n| self.text(n, "name"));
        let run_name = root.get("run-name").and_then(|n| self.text(n, "run-name"));
        let on = match root.get("on") {
            Some(on) => self.triggers(on),
            None => Vec::new(),
        };
        let env = root.get("env").and_then(|n| self.env(n, "env"));
        let defaults = root
            .get("defaults")
            .and_then(|n| self.defaults(n, "defaults"));
        let concurrency = root
            .get("concurrency")
            .and_then(|n| self.concurrency(n, "concurrency"));
        let permissions = root.get("permissions").and_then(|n| self.permissions(n));
        let mut jobs = Vec::new();
        if let Some(js) = root.get("jobs")
            && let Some(entries) = self.map(js, "jobs")
        {
            for (id, job) in entries {
                if let Some(j) = self.job(id, job) {
                    jobs.push(j);
                }
            }
        }
        Some(Workflow {
            name,
            run_name,
            on,
            env,
            defaults,
            concurrency,
            permissions,
            jobs,
            root: Node {
                pos: root.pos,
                kind: Kind::Null,
                style: '\0',
            },
        })
    }

    /// `on: push`, `on: [push, pull_request]`, or a mapping of events to
    /// their configuration.
    fn triggers(&mut self, on: &Node) -> Vec<Trigger> {
        match &on.kind {
            Kind::Map(m) => m
                .iter()
                .filter_map(|(event, config)| self.trigger(event, config))
                .collect(),
            Kind::Seq(_) | Kind::Str(_) => self
                .strings(on, "on")
                .into_iter()
                .map(|event| Trigger {
                    event,
                    ..Trigger::default()
                })
                .collect(),
            _ => {
                self.wrong(on, "on", "an event, a list of events or a mapping");
                Vec::new()
            }
        }
    }

    fn trigger(&mut self, event: &Key, config: &Node) -> Option<Trigger> {
        let mut t = Trigger {
            event: Spanned {
                value: event.name.clone(),
                pos: event.pos,
            },
            ..Trigger::default()
        };
        let what = format!("on.{}", event.name);
        if event.name == "schedule" {
            match &config.kind {
                Kind::Seq(items) => {
                    for item in items {
                        let timezone = item
                            .get("timezone")
                            .and_then(|z| self.string(z, "timezone"));
                        match item.get("cron") {
                            Some(c) => t.schedules.extend(
                                self.string(c, "cron")
                                    .map(|cron| Schedule { cron, timezone }),
                            ),
                            None => self.err(
                                item.pos,
                                "a schedule entry needs a `cron`: `- cron: '0 5 * * *'`",
                            ),
                        }
                    }
                }
                _ => self.wrong(config, &what, "a sequence of `- cron:` entries"),
            }
            return Some(t);
        }
        let entries = match &config.kind {
            Kind::Null => return Some(t),
            _ => self.map(config, &what)?,
        };
        for (k, v) in entries {
            let list = |r: &mut Reader| Some(r.strings(v, &k.name));
            match k.name.as_str() {
                "branches" => t.branches = list(self),
                "branches-ignore" => t.branches_ignore = list(self),
                "tags" => t.tags = list(self),
                "tags-ignore" => t.tags_ignore = list(self),
                "paths" => t.paths = list(self),
                "paths-ignore" => t.paths_ignore = list(self),
                "types" => t.types = list(self),
                "workflows" => t.workflows = list(self),
                "inputs" => t.inputs = self.inputs(v, &format!("{what}.inputs")),
                "outputs" => {
                    let entries = match v.kind {
                        Kind::Null => &[][..],
                        _ => self.map(v, "outputs").unwrap_or_default(),
                    };
                    for (name, o) in entries {
                        if self.map(o, &name.name).is_none() {
                            continue;
                        }
                        t.outputs.push(CallOutput {
                            name: name.clone(),
                            description: o
                                .get("description")
                                .and_then(|d| self.text(d, "description")),
                            value: o.get("value").and_then(|d| self.text(d, "value")),
                        });
                    }
                }
                "secrets" => {
                    let entries = match v.kind {
                        Kind::Null => &[][..],
                        _ => self.map(v, "secrets").unwrap_or_default(),
                    };
                    for (name, s) in entries {
                        let required = s
                            .get("required")
                            .and_then(|r| self.flag(r, "required"))
                            .and_then(|r| r.literal_value().copied())
                            .unwrap_or(false);
                        t.secrets.push(CallSecret {
                            name: name.clone(),
                            required,
                        });
                    }
                }
                // Keys GitHub knows for other events, or not at all: the
                // validator's business.
                _ => {}
            }
        }
        Some(t)
    }

    fn inputs(&mut self, n: &Node, what: &str) -> Vec<Input> {
        let entries = match n.kind {
            Kind::Null => return Vec::new(),
            _ => self.map(n, what).unwrap_or_default(),
        };
        let mut out = Vec::new();
        for (name, def) in entries {
            let what = format!("{what}.{}", name.name);
            let empty = Node {
                pos: def.pos,
                kind: Kind::Map(Vec::new()),
                style: '\0',
            };
            let def = match def.kind {
                Kind::Null => &empty,
                _ => def,
            };
            if self.map(def, &what).is_none() {
                continue;
            }
            let kind = match def.get("type") {
                None => InputType::String,
                Some(t) => match t.as_str() {
                    Some("string") => InputType::String,
                    Some("boolean") => InputType::Boolean,
                    Some("number") => InputType::Number,
                    Some("choice") => InputType::Choice,
                    Some("environment") => InputType::Environment,
                    _ => {
                        self.err(
                            t.pos,
                            format!(
                                "`{what}.type` must be one of string, boolean, number, choice, environment"
                            ),
                        );
                        InputType::String
                    }
                },
            };
            let required = def
                .get("required")
                .and_then(|r| self.flag(r, "required"))
                .and_then(|r| r.literal_value().copied())
                .unwrap_or(false);
            out.push(Input {
                name: name.clone(),
                description: def
                    .get("description")
                    .and_then(|d| self.text(d, "description")),
                required,
                kind,
                default: def.get("default").cloned(),
                options: def
                    .get("options")
                    .map(|o| self.strings(o, "options"))
                    .unwrap_or_default(),
            });
        }
        out
    }

    fn job(&mut self, id: &Key, n: &Node) -> Option<Job> {
        if !valid_job_id(&id.name) {
            self.err(
                id.pos,
                format!(
                    "job name '{}' is invalid: names must start with a letter or '_' and contain only alphanumeric characters, '-', or '_'",
                    id.name
                ),
            );
        }
        let what = format!("jobs.{}", id.name);
        self.map(n, &what)?;
        let field = |key: &str| n.get(key);
        let needs = field("needs")
            .map(|v| self.strings(v, "needs"))
            .unwrap_or_default();
        let runs_on = field("runs-on").map(|v| {
            let value = match &v.kind {
                Kind::Map(_) => RunsOn {
                    labels: v
                        .get("labels")
                        .map(|l| self.texts(l, "runs-on.labels"))
                        .unwrap_or_default(),
                    group: v.get("group").and_then(|g| self.text(g, "runs-on.group")),
                },
                _ => RunsOn {
                    labels: self.texts(v, "runs-on"),
                    group: None,
                },
            };
            Spanned { value, pos: v.pos }
        });
        let environment = field("environment").and_then(|v| {
            let value = match &v.kind {
                Kind::Map(_) => {
                    let Some(name) = v.get("name") else {
                        self.err(v.pos, "`environment` needs a `name`");
                        return None;
                    };
                    Environment {
                        name: self.text(name, "environment.name")?,
                        url: v.get("url").and_then(|u| self.text(u, "environment.url")),
                    }
                }
                _ => Environment {
                    name: self.text(v, "environment")?,
                    url: None,
                },
            };
            Some(Spanned { value, pos: v.pos })
        });
        let strategy = field("strategy").and_then(|v| {
            let value = match &v.kind {
                Kind::Str(s) if s.contains("${{") => LoE::Expr(Expression::new(s)),
                Kind::Null => LoE::Literal(Strategy::default()),
                _ => {
                    self.map(v, "strategy")?;
                    LoE::Literal(Strategy {
                        matrix: v.get("matrix").filter(|m| m.kind != Kind::Null).cloned(),
                        fail_fast: v.get("fail-fast").and_then(|f| self.flag(f, "fail-fast")),
                        max_parallel: v
                            .get("max-parallel")
                            .and_then(|f| self.number(f, "max-parallel")),
                    })
                }
            };
            Some(Spanned { value, pos: v.pos })
        });
        let steps = match field("steps") {
            Some(s) => match &s.kind {
                Kind::Seq(items) => items.iter().filter_map(|i| self.step(i)).collect(),
                Kind::Null => Vec::new(),
                _ => {
                    self.wrong(s, "steps", "a sequence");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let with = match field("with") {
            Some(w) if w.kind != Kind::Null => self.map(w, "with").unwrap_or_default().to_vec(),
            _ => Vec::new(),
        };
        let secrets = field("secrets").map(|s| {
            let value = match &s.kind {
                Kind::Str(x) if x == "inherit" => CallSecrets::Inherit,
                _ => CallSecrets::Map(self.text_map(s, "secrets")),
            };
            Spanned { value, pos: s.pos }
        });
        Some(Job {
            id: id.clone(),
            pos: n.pos,
            name: field("name").and_then(|v| self.text(v, "name")),
            needs,
            cond: field("if").and_then(|v| self.cond(v, "if")),
            runs_on,
            environment,
            concurrency: field("concurrency").and_then(|v| self.concurrency(v, "concurrency")),
            strategy,
            steps,
            uses: field("uses").and_then(|v| self.text(v, "uses")),
            with,
            secrets,
            outputs: field("outputs")
                .map(|v| self.text_map(v, "outputs"))
                .unwrap_or_default(),
            timeout_minutes: field("timeout-minutes")
                .and_then(|v| self.number(v, "timeout-minutes")),
            continue_on_error: field("continue-on-error")
                .and_then(|v| self.flag(v, "continue-on-error")),
            permissions: field("permissions").and_then(|v| self.permissions(v)),
            defaults: field("defaults").and_then(|v| self.defaults(v, "defaults")),
            env: field("env").and_then(|v| self.env(v, "env")),
            services: field("services").cloned(),
            container: field("container").cloned(),
        })
    }

    fn step(&mut self, n: &Node) -> Option<Step> {
        self.map(n, "a step")?;
        let field = |key: &str| n.get(key);
        let kinds: Vec<&str> = STEP_KINDS
            .iter()
            .copied()
            .filter(|k| field(k).is_some())
            .collect();
        let body = match kinds.as_slice() {
            [] => {
                self.err(n.pos, "a step needs `run` or `uses`");
                return None;
            }
            ["run", "uses"] => {
                self.err(
                    field("uses").map_or(n.pos, |u| u.pos),
                    "a step has either `run` or `uses`, not both",
                );
                return None;
            }
            [first, second, ..] => {
                self.err(
                    field(second).map_or(n.pos, |u| u.pos),
                    format!("a step has one of `run`, `uses`, `wait`, `wait-all`, `cancel` and `parallel`: this one has `{first}` and `{second}`"),
                );
                return None;
            }
            ["run"] => StepBody::Run {
                run: self.text(field("run")?, "run")?,
                shell: field("shell").and_then(|v| self.text(v, "shell")),
                working_directory: field("working-directory")
                    .and_then(|v| self.text(v, "working-directory")),
            },
            ["uses"] => StepBody::Uses {
                uses: self.text(field("uses")?, "uses")?,
                with: field("with")
                    .map(|v| self.text_map(v, "with"))
                    .unwrap_or_default(),
            },
            ["wait"] => {
                let v = field("wait")?;
                if matches!(v.kind, Kind::Null) {
                    self.wrong(v, "wait", "a step id or a list of step ids");
                    return None;
                }
                StepBody::Wait {
                    ids: self.strings(v, "wait"),
                }
            }
            ["wait-all"] => {
                let v = field("wait-all")?;
                match v.kind {
                    Kind::Null | Kind::Bool(true) => StepBody::WaitAll,
                    _ => {
                        self.wrong(v, "wait-all", "empty or `true`");
                        return None;
                    }
                }
            }
            ["cancel"] => StepBody::Cancel {
                id: self.string(field("cancel")?, "cancel")?,
            },
            ["parallel"] => {
                let v = field("parallel")?;
                let Kind::Seq(items) = &v.kind else {
                    self.wrong(v, "parallel", "a list of steps");
                    return None;
                };
                StepBody::Parallel {
                    steps: items.iter().filter_map(|i| self.step(i)).collect(),
                }
            }
            _ => return None,
        };
        Some(Step {
            pos: n.pos,
            id: field("id").and_then(|v| self.text(v, "id")),
            name: field("name").and_then(|v| self.text(v, "name")),
            cond: field("if").and_then(|v| self.cond(v, "if")),
            body,
            env: field("env").and_then(|v| self.env(v, "env")),
            timeout_minutes: field("timeout-minutes")
                .and_then(|v| self.number(v, "timeout-minutes")),
            continue_on_error: field("continue-on-error")
                .and_then(|v| self.flag(v, "continue-on-error")),
            background: field("background").and_then(|v| self.flag(v, "background")),
        })
    }
}

/// GitHub's rule for job ids.
pub fn valid_job_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(text: &str) -> Workflow {
        Workflow::parse(text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn the_triggers_of_a_file_wrong_elsewhere_are_read_alone() {
        let events = |text: &str, lines: &[usize]| {
            Workflow::triggers_despite_errors(text, lines)
                .map(|on| on.iter().map(|t| t.event.value.clone()).collect::<Vec<_>>())
        };
        // Wrong in its jobs (line 4): its `on:` still says when it runs.
        let jobs_wrong = "name: x\non:\n  workflow_dispatch:\njobs:\n  a:\n    bogus: 1\n";
        assert_eq!(
            events(jobs_wrong, &[6]),
            Some(vec!["workflow_dispatch".to_string()])
        );
        // No `on:`: triggered by nothing.
        assert_eq!(events("jobs: {}\n", &[1]), Some(vec![]));
        // An error within `on:` (or no YAML): not known.
        assert_eq!(events(jobs_wrong, &[3]), None);
        assert_eq!(events("on: [push\njobs: {", &[1]), None);
        assert_eq!(
            events("on: {push: {branches: {a: 1}}}\njobs: {}\n", &[]),
            None
        );
    }

    fn errors(text: &str) -> Vec<ModelError> {
        Workflow::parse(text).expect_err("should be refused")
    }

    fn at(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    fn values(list: &Option<Vec<Spanned<String>>>) -> Vec<&str> {
        list.iter().flatten().map(|s| s.value.as_str()).collect()
    }

    #[test]
    fn on_in_every_spelling() {
        let w = wf("on: push\njobs: {}\n");
        assert_eq!(w.events().collect::<Vec<_>>(), ["push"]);
        assert_eq!(w.on[0].event.pos, at(1, 5));
        let w = wf("on: [push, pull_request]\njobs: {}\n");
        assert_eq!(w.events().collect::<Vec<_>>(), ["push", "pull_request"]);
        let w = wf("on:\n  workflow_dispatch:\n  push: {branches: [main]}\njobs: {}\n");
        assert_eq!(
            w.events().collect::<Vec<_>>(),
            ["workflow_dispatch", "push"]
        );
        assert_eq!(w.on[1].event.pos, at(3, 3));
        assert!(w.trigger("workflow_dispatch").unwrap().inputs.is_empty());
        assert!(w.trigger("nope").is_none());
        // No `on:` at all is the validator's error; the model has no events.
        assert_eq!(wf("jobs: {}\n").on.len(), 0);
    }

    #[test]
    fn trigger_filters_types_crons_and_workflow_run() {
        let w = wf(concat!(
            "on:\n",
            "  push:\n",
            "    branches: [main, 'release/**']\n",
            "    tags-ignore: v0*\n",
            "    paths: ['src/**', '!src/gen/**']\n",
            "  pull_request:\n",
            "    types: [opened, labeled]\n",
            "    branches-ignore: [wip]\n",
            "    paths-ignore: [docs/**]\n",
            "  schedule:\n",
            "    - cron: '0 5 * * *'\n",
            "    - cron: '*/15 * * * 1'\n",
            "      timezone: America/New_York\n",
            "  workflow_run:\n",
            "    workflows: [CI]\n",
            "    types: [completed]\n",
            "    branches: [main]\n",
            "jobs: {}\n",
        ));
        let push = w.trigger("push").unwrap();
        assert_eq!(values(&push.branches), ["main", "release/**"]);
        assert_eq!(values(&push.tags_ignore), ["v0*"]);
        assert_eq!(values(&push.paths), ["src/**", "!src/gen/**"]);
        assert!(push.tags.is_none() && push.branches_ignore.is_none());
        assert_eq!(push.branches.as_ref().unwrap()[1].pos, at(3, 23));
        let pr = w.trigger("pull_request").unwrap();
        assert_eq!(values(&pr.types), ["opened", "labeled"]);
        assert_eq!(values(&pr.branches_ignore), ["wip"]);
        assert_eq!(values(&pr.paths_ignore), ["docs/**"]);
        let schedules = &w.trigger("schedule").unwrap().schedules;
        let crons: Vec<_> = schedules.iter().map(|s| s.cron.value.as_str()).collect();
        assert_eq!(crons, ["0 5 * * *", "*/15 * * * 1"]);
        assert_eq!(schedules[0].cron.pos, at(11, 14));
        assert!(schedules[0].timezone.is_none(), "UTC");
        let zone = schedules[1].timezone.as_ref().unwrap();
        assert_eq!(
            (zone.value.as_str(), zone.pos),
            ("America/New_York", at(13, 17))
        );
        let run = w.trigger("workflow_run").unwrap();
        assert_eq!(values(&run.workflows), ["CI"]);
        assert_eq!(values(&run.types), ["completed"]);
    }

    #[test]
    fn dispatch_and_call_inputs_outputs_secrets() {
        let w = wf(concat!(
            "on:\n",
            "  workflow_dispatch:\n",
            "    inputs:\n",
            "      n: {type: number, required: true}\n",
            "      flag: {type: boolean, default: false}\n",
            "      level: {type: choice, options: [a, b], description: Level}\n",
            "      plain:\n",
            "  workflow_call:\n",
            "    inputs:\n",
            "      target: {type: string, default: '${{ github.ref }}'}\n",
            "    outputs:\n",
            "      version: {description: v, value: '${{ jobs.a.outputs.v }}'}\n",
            "    secrets:\n",
            "      token: {required: true}\n",
            "      other:\n",
            "jobs: {}\n",
        ));
        let d = w.trigger("workflow_dispatch").unwrap();
        let names: Vec<_> = d.inputs.iter().map(|i| i.name.name.as_str()).collect();
        assert_eq!(names, ["n", "flag", "level", "plain"]);
        assert_eq!(d.inputs[0].kind, InputType::Number);
        assert!(d.inputs[0].required);
        assert_eq!(
            d.inputs[1].default.as_ref().unwrap().kind,
            Kind::Bool(false)
        );
        assert_eq!(d.inputs[2].kind, InputType::Choice);
        assert_eq!(d.inputs[2].options.len(), 2);
        assert_eq!(d.inputs[2].description.as_ref().unwrap().raw(), "Level");
        assert_eq!(d.inputs[3].kind, InputType::String);
        assert!(!d.inputs[3].required);
        let c = w.trigger("workflow_call").unwrap();
        assert_eq!(c.inputs[0].name.pos, at(10, 7));
        assert_eq!(c.outputs[0].name.name, "version");
        assert!(matches!(
            c.outputs[0].value.as_ref().unwrap().value,
            LoE::Expr(Expression { parsed: Ok(_), .. })
        ));
        assert_eq!(c.secrets.len(), 2);
        assert!(c.secrets[0].required && !c.secrets[1].required);
    }

    #[test]
    fn jobs_with_their_fields_and_positions() {
        let w = wf(concat!(
            "name: CI\n",
            "on: push\n",
            "env: {A: 1, B: '${{ vars.B }}'}\n",
            "concurrency: ci-${{ github.ref }}\n",
            "permissions: read-all\n",
            "defaults: {run: {shell: bash}}\n",
            "jobs:\n",
            "  build:\n",
            "    name: Build ${{ matrix.os }}\n",
            "    runs-on: [self-hosted, linux]\n",
            "    if: github.ref_name == 'main'\n",
            "    environment: {name: prod, url: '${{ steps.d.outputs.url }}'}\n",
            "    concurrency: {group: g, cancel-in-progress: true}\n",
            "    strategy:\n",
            "      fail-fast: false\n",
            "      max-parallel: 2\n",
            "      matrix: {os: [a, b]}\n",
            "    timeout-minutes: 10\n",
            "    continue-on-error: ${{ matrix.os == 'b' }}\n",
            "    permissions: {contents: read}\n",
            "    outputs: {v: '${{ steps.s.outputs.v }}'}\n",
            "    services: {db: {image: postgres}}\n",
            "    steps:\n",
            "      - id: s\n",
            "        name: Say\n",
            "        if: ${{ always() }}\n",
            "        run: echo hi\n",
            "        shell: sh\n",
            "        working-directory: sub\n",
            "        env: {X: y}\n",
            "        timeout-minutes: 1.5\n",
            "        continue-on-error: true\n",
            "      - uses: actions/checkout@v4\n",
            "        with: {fetch-depth: 0, ref: main}\n",
            "  deploy:\n",
            "    needs: build\n",
            "    environment: staging\n",
            "    runs-on: {group: big, labels: x}\n",
            "    strategy: ${{ fromJSON(needs.build.outputs.v) }}\n",
            "    steps: [{run: x}]\n",
            "  call:\n",
            "    needs: [build, deploy]\n",
            "    uses: ./.github/workflows/reuse.yml\n",
            "    with: {n: 3, flag: true}\n",
            "    secrets: inherit\n",
        ));
        assert_eq!(w.name.as_ref().unwrap().literal(), Some("CI"));
        let LoE::Literal(env) = &w.env.as_ref().unwrap().value else {
            panic!("a map")
        };
        assert_eq!(env[0].1.literal(), Some("1"));
        assert!(matches!(env[1].1.value, LoE::Expr(_)));
        assert!(matches!(
            w.concurrency.as_ref().unwrap().value.group.value,
            LoE::Expr(_)
        ));
        assert!(matches!(
            &w.permissions.as_ref().unwrap().value,
            Permissions::Preset(p) if p.raw() == "read-all"
        ));
        assert_eq!(
            w.defaults.as_ref().unwrap().shell.as_ref().unwrap().raw(),
            "bash"
        );

        let b = w.job("build").unwrap();
        assert_eq!(b.id.pos, at(8, 3));
        assert_eq!(b.pos, at(9, 5));
        assert!(matches!(b.name.as_ref().unwrap().value, LoE::Expr(_)));
        let labels: Vec<_> = b
            .runs_on
            .as_ref()
            .unwrap()
            .value
            .labels
            .iter()
            .map(Text::raw)
            .collect();
        assert_eq!(labels, ["self-hosted", "linux"]);
        let cond = b.cond.as_ref().unwrap();
        assert_eq!(cond.value.text, "github.ref_name == 'main'");
        assert!(cond.value.condition.is_ok());
        assert_eq!(cond.pos, at(11, 9));
        let env = &b.environment.as_ref().unwrap().value;
        assert_eq!(env.name.literal(), Some("prod"));
        assert!(matches!(env.url.as_ref().unwrap().value, LoE::Expr(_)));
        let c = &b.concurrency.as_ref().unwrap().value;
        assert_eq!(c.group.literal(), Some("g"));
        assert_eq!(
            c.cancel_in_progress.as_ref().unwrap().literal_value(),
            Some(&true)
        );
        let LoE::Literal(s) = &b.strategy.as_ref().unwrap().value else {
            panic!("a mapping")
        };
        assert_eq!(s.fail_fast.as_ref().unwrap().literal_value(), Some(&false));
        assert_eq!(s.max_parallel.as_ref().unwrap().literal_value(), Some(&2.0));
        assert_eq!(
            s.matrix.as_ref().unwrap().to_json(),
            serde_json::json!({"os": ["a", "b"]})
        );
        assert!(!s.matrix_has_expressions());
        assert_eq!(
            b.timeout_minutes.as_ref().unwrap().literal_value(),
            Some(&10.0)
        );
        assert!(matches!(
            b.continue_on_error.as_ref().unwrap().value,
            LoE::Expr(_)
        ));
        assert!(
            matches!(&b.permissions.as_ref().unwrap().value, Permissions::Scopes(s) if s[0].1.value == "read")
        );
        assert_eq!(b.outputs[0].0.name, "v");
        assert!(b.services.is_some() && b.container.is_none());

        assert_eq!(b.steps.len(), 2);
        let s0 = &b.steps[0];
        assert_eq!(s0.pos, at(24, 9));
        assert_eq!(s0.id.as_ref().unwrap().raw(), "s");
        assert!(s0.cond.as_ref().unwrap().value.condition.is_ok());
        let StepBody::Run {
            run,
            shell,
            working_directory,
        } = &s0.body
        else {
            panic!("a run step")
        };
        assert_eq!(run.literal(), Some("echo hi"));
        assert_eq!(run.pos, at(27, 14));
        assert_eq!(shell.as_ref().unwrap().raw(), "sh");
        assert_eq!(working_directory.as_ref().unwrap().raw(), "sub");
        assert_eq!(
            s0.timeout_minutes.as_ref().unwrap().literal_value(),
            Some(&1.5)
        );
        assert_eq!(
            s0.continue_on_error.as_ref().unwrap().literal_value(),
            Some(&true)
        );
        let StepBody::Uses { uses, with } = &b.steps[1].body else {
            panic!("a uses step")
        };
        assert_eq!(uses.raw(), "actions/checkout@v4");
        assert_eq!(with[0].1.literal(), Some("0"));

        let d = w.job("deploy").unwrap();
        assert_eq!(d.needs_ids().collect::<Vec<_>>(), ["build"]);
        assert_eq!(
            d.environment.as_ref().unwrap().value.name.literal(),
            Some("staging")
        );
        let runs_on = &d.runs_on.as_ref().unwrap().value;
        assert_eq!(runs_on.group.as_ref().unwrap().raw(), "big");
        assert_eq!(runs_on.labels[0].raw(), "x");
        assert!(matches!(d.strategy.as_ref().unwrap().value, LoE::Expr(_)));

        let call = w.job("call").unwrap();
        assert_eq!(call.needs_ids().collect::<Vec<_>>(), ["build", "deploy"]);
        assert_eq!(
            call.uses.as_ref().unwrap().raw(),
            "./.github/workflows/reuse.yml"
        );
        assert_eq!(call.with.len(), 2);
        assert!(matches!(
            call.secrets.as_ref().unwrap().value,
            CallSecrets::Inherit
        ));
        assert_eq!(
            w.jobs
                .iter()
                .map(|j| j.id.name.as_str())
                .collect::<Vec<_>>(),
            ["build", "deploy", "call"]
        );
    }

    #[test]
    fn expressions_are_parsed_and_their_errors_kept() {
        let w = wf(
            "on: push\njobs:\n  a:\n    if: github.ref ==\n    runs-on: ${{ matrix.os }\n    strategy: {matrix: {os: '${{ fromJSON(inputs.os) }}'}}\n    steps: [{run: x}]\n",
        );
        let a = w.job("a").unwrap();
        assert!(a.cond.as_ref().unwrap().value.condition.is_err());
        let LoE::Expr(e) = &a.runs_on.as_ref().unwrap().value.labels[0].value else {
            panic!("an expression")
        };
        assert!(e.parsed.is_err());
        let LoE::Literal(s) = &a.strategy.as_ref().unwrap().value else {
            panic!()
        };
        assert!(s.matrix_has_expressions());
        // A boolean or an empty `if:` is text too.
        let w = wf("on: push\njobs:\n  a:\n    if: false\n    steps: [{run: x, if: }]\n");
        assert_eq!(w.jobs[0].cond.as_ref().unwrap().value.text, "false");
        assert_eq!(w.jobs[0].steps[0].cond.as_ref().unwrap().value.text, "");
    }

    #[test]
    fn wrong_shapes_are_all_reported_where_they_are_written() {
        let e = errors(concat!(
            "on: push\n",
            "jobs:\n",
            "  1bad:\n",
            "    runs-on: x\n",
            "  a:\n",
            "    needs: {x: 1}\n",
            "    environment: {url: u}\n",
            "    timeout-minutes: soon\n",
            "    steps:\n",
            "      - run: a\n",
            "        uses: b\n",
            "      - name: nothing\n",
            "      - [x]\n",
            "  b: [x]\n",
        ));
        let got: Vec<(Pos, &str)> = e.iter().map(|e| (e.pos, e.message.as_str())).collect();
        assert_eq!(got.len(), 8, "{got:#?}");
        assert_eq!(got[0].0, at(3, 3));
        assert!(got[0].1.contains("'1bad' is invalid"));
        assert_eq!(
            got[1],
            (at(6, 12), "`needs` must be a string, found a mapping")
        );
        assert_eq!(got[2], (at(7, 18), "`environment` needs a `name`"));
        assert_eq!(got[3].0, at(8, 22));
        assert!(got[3].1.contains("a number"));
        assert_eq!(
            got[4],
            (at(11, 15), "a step has either `run` or `uses`, not both")
        );
        assert_eq!(got[5], (at(12, 9), "a step needs `run` or `uses`"));
        assert_eq!(
            got[6],
            (at(13, 9), "a step must be a mapping, found a sequence")
        );
        assert_eq!(
            got[7],
            (at(14, 6), "`jobs.b` must be a mapping, found a sequence")
        );
        let e = errors("- a\n");
        assert_eq!(
            e[0].message,
            "a workflow must be a mapping, found a sequence"
        );
        // YAML errors come through with their positions.
        let e = errors("on: [push\n");
        assert!(e[0].pos.line >= 1);
        let e = errors("on:\n  schedule: {cron: x}\n  push: [main]\njobs: {}\n");
        assert_eq!(e.len(), 2, "{e:?}");
    }

    /// Every typed field given every kind of YAML value: a value or an error,
    /// never a panic.
    #[test]
    fn any_value_in_any_field_never_panics() {
        let values = [
            "~",
            "true",
            "-1",
            "1e300",
            "0.5",
            "x",
            "'${{ a }}'",
            "'${{'",
            "[]",
            "[a, [b]]",
            "{}",
            "{a: {b: c}}",
            "[{cron: 1}]",
        ];
        let job_keys = [
            "name",
            "needs",
            "if",
            "runs-on",
            "environment",
            "concurrency",
            "strategy",
            "steps",
            "uses",
            "with",
            "secrets",
            "outputs",
            "timeout-minutes",
            "continue-on-error",
            "permissions",
            "defaults",
            "env",
            "services",
            "container",
        ];
        let step_keys = [
            "id",
            "name",
            "if",
            "run",
            "uses",
            "with",
            "env",
            "shell",
            "working-directory",
            "timeout-minutes",
            "continue-on-error",
        ];
        let top_keys = [
            "name",
            "run-name",
            "on",
            "env",
            "defaults",
            "concurrency",
            "permissions",
            "jobs",
        ];
        let events = [
            "push",
            "schedule",
            "workflow_dispatch",
            "workflow_call",
            "workflow_run",
        ];
        let event_keys = [
            "branches",
            "types",
            "inputs",
            "outputs",
            "secrets",
            "workflows",
        ];
        let mut texts = Vec::new();
        for v in values {
            for k in top_keys {
                texts.push(format!("{k}: {v}\njobs: {{a: {{steps: [{{run: x}}]}}}}\n"));
            }
            for k in job_keys {
                texts.push(format!("on: push\njobs:\n  a:\n    {k}: {v}\n"));
            }
            for k in step_keys {
                texts.push(format!(
                    "on: push\njobs:\n  a:\n    steps:\n      - run: x\n        {k}: {v}\n"
                ));
            }
            for e in events {
                texts.push(format!("on:\n  {e}: {v}\njobs: {{}}\n"));
                for k in event_keys {
                    texts.push(format!("on:\n  {e}:\n    {k}: {v}\njobs: {{}}\n"));
                    texts.push(format!("on:\n  {e}:\n    {k}:\n      n: {v}\njobs: {{}}\n"));
                }
            }
            for k in ["matrix", "fail-fast", "max-parallel"] {
                texts.push(format!(
                    "on: push\njobs:\n  a:\n    strategy:\n      {k}: {v}\n"
                ));
            }
            for k in ["cron", "timezone"] {
                texts.push(format!(
                    "on:\n  schedule:\n    - cron: '0 5 * * *'\n      {k}: {v}\njobs: {{}}\n"
                ));
            }
        }
        for text in &texts {
            if let Err(errors) = Workflow::parse(text) {
                for e in errors {
                    assert!(e.pos.line >= 1 && e.pos.column >= 1, "{text}: {e:?}");
                    assert!(!e.message.is_empty());
                }
            }
        }
    }

    #[test]
    fn parallel_steps_are_read_into_their_own_bodies() {
        let text = concat!(
            "on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n",
            "      - {id: a, run: a, background: true}\n",
            "      - wait: [a]\n",
            "      - wait-all:\n",
            "      - cancel: a\n",
            "      - parallel: [{run: b}, {uses: ./c}]\n",
            "      - {wait: a, run: x}\n",
        );
        let e = Workflow::parse(text).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].pos.line, e[0].pos.column), (11, 16));
        let text = text.replace("      - {wait: a, run: x}\n", "");
        let wf = Workflow::parse(&text).unwrap();
        let steps = &wf.jobs[0].steps;
        assert!(matches!(
            steps[0].background.as_ref().map(|b| &b.value),
            Some(LoE::Literal(true))
        ));
        assert!(matches!(&steps[1].body, StepBody::Wait { ids } if ids[0].value == "a"));
        assert!(matches!(steps[2].body, StepBody::WaitAll));
        assert!(matches!(&steps[3].body, StepBody::Cancel { id } if id.value == "a"));
        assert!(matches!(&steps[4].body, StepBody::Parallel { steps } if steps.len() == 2));
    }
}
