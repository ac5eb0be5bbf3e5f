//! The converted workflow template: what GitHub's workflow parser hands the
//! runner service after reading a workflow, in the JSON shape of its
//! `WorkflowTemplate` (actions/runner `WorkflowParser`, mirrored by
//! actions/languageservices `workflow-parser`).
//!
//! The rules follow GitHub's converter: jobs keep source order; a job's
//! `name` defaults to its id; `if` becomes an expression, defaulting to
//! `success()` and wrapped as `success() && (...)` when it calls no status
//! function; steps without an id get a generated one (`__run`,
//! `__actions_checkout`, `__alpine_latest`, `_2` on collisions); called
//! workflows are read and their jobs inlined under the calling job; root
//! `permissions` flow down to jobs that set none. Values stay template
//! tokens: `${{ }}` becomes an expression (text around it becomes
//! `format(...)`), and a scalar where GitHub's schema wants a string is
//! coerced to its text the way the parser does (`5` → `"5"`, `null` → `""`).
//!
//! Serialisation matches the parser's: a literal without source information
//! is plain JSON; mappings, sequences and expressions are
//! `{"type": 2, "map": [{"Key", "Value"}]}`, `{"type": 1, "seq": [...]}`,
//! `{"type": 3, "expr": "..."}`; with [`Options::include_source`] every token
//! read from a file also carries `file` (1-based index into `file-table`),
//! `line` and `col`.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::yaml::{Key, Kind, Node, Pos};

#[derive(Debug, Clone)]
pub struct Options {
    /// Keep `file`/`line`/`col` on tokens read from a file, and emit `file-table`.
    pub include_source: bool,
    /// Leave `uses:` jobs unexpanded (no callee is read).
    pub skip_reusable_workflows: bool,
    /// How deep called workflows may call others (validation's limit).
    pub max_nested_depth: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            include_source: false,
            skip_reusable_workflows: false,
            max_nested_depth: crate::limits::Limits::default().max_nested_depth,
        }
    }
}

/// Why a workflow could not be converted. Validation reports the same
/// problems with positions; conversion is meant for workflows that validate.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertError {
    pub file: String,
    pub message: String,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl std::error::Error for ConvertError {}

/// Converts the workflow `text` (named `file`) into GitHub's converted
/// workflow template. `resolve` returns the text of a called workflow from
/// its `uses:` value, as for validation.
pub fn convert(
    file: &str,
    text: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
    opts: &Options,
) -> Result<Value, ConvertError> {
    let root = parse(file, text)?;
    let mut c = Converter {
        opts,
        resolve,
        files: vec![file.to_string()],
        file: 1,
    };
    c.workflow(&root)
}

fn parse(file: &str, text: &str) -> Result<Node, ConvertError> {
    let root = crate::yaml::parse(text).map_err(|errors| ConvertError {
        file: file.to_string(),
        message: errors
            .iter()
            .map(|e| {
                format!(
                    "(Line: {}, Col: {}): {}",
                    e.pos.line, e.pos.column, e.message
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    if !matches!(root.kind, Kind::Map(_)) {
        return Err(ConvertError {
            file: file.to_string(),
            message: format!("a workflow must be a mapping, not {}", root.type_name()),
        });
    }
    Ok(root)
}

/// What GitHub's schema allows for a value, as far as conversion needs it:
/// whether a non-string scalar keeps its type or becomes its text.
#[derive(Clone, Copy)]
enum Def {
    /// Every scalar here is a string: null, booleans and numbers become text.
    Str,
    /// Scalars keep their YAML type (numbers, booleans, matrix values).
    Any,
    /// Booleans, numbers and strings keep their type; null becomes `""`
    /// (a called workflow's `with:` values).
    Scalar,
    /// A mapping whose keys have their own definitions (a scalar here is a string).
    Fields(fn(&str) -> Def),
}

fn concurrency_def(key: &str) -> Def {
    match key {
        "cancel-in-progress" => Def::Any,
        _ => Def::Str,
    }
}

fn environment_def(key: &str) -> Def {
    match key {
        // Whether the job creates a deployment: a boolean.
        "deployment" => Def::Any,
        _ => Def::Str,
    }
}

fn strategy_def(_key: &str) -> Def {
    // fail-fast (boolean), max-parallel (number), matrix (any values).
    Def::Any
}

/// `on.workflow_call.inputs.<name>` and `secrets.<name>`: `required` is a
/// boolean and an input's `default` keeps its type.
fn call_parameter_def(_name: &str) -> Def {
    Def::Fields(|key| match key {
        "required" | "default" => Def::Any,
        _ => Def::Str,
    })
}

struct Converter<'a> {
    opts: &'a Options,
    resolve: &'a dyn Fn(&str) -> Option<String>,
    /// Files read so far; a token's `file` is its 1-based index.
    files: Vec<String>,
    /// The file being converted.
    file: usize,
}

impl Converter<'_> {
    fn workflow(&mut self, root: &Node) -> Result<Value, ConvertError> {
        let mut out = Map::new();
        if let Some(on) = root.get("on") {
            out.insert("events".into(), events(on));
        }
        let input_types = dispatch_input_types(root);
        if !input_types.is_empty() {
            out.insert("input-types".into(), Value::Object(input_types));
        }
        if let Some(env) = root.get("env") {
            out.insert("env".into(), self.token(env, Def::Str));
        }
        let permissions = root.get("permissions").map(permissions);
        if let Some(p) = &permissions {
            out.insert("permissions".into(), p.clone());
        }
        if let Some(defaults) = root.get("defaults") {
            out.insert("defaults".into(), self.token(defaults, Def::Str));
        }
        if let Some(concurrency) = root.get("concurrency") {
            out.insert(
                "concurrency".into(),
                self.token(concurrency, Def::Fields(concurrency_def)),
            );
        }
        let mut jobs = match root.get("jobs") {
            Some(jobs) => self.jobs(jobs),
            None => Vec::new(),
        };
        // Root permissions are what every job gets unless it sets its own,
        // called workflows' jobs included (they inherit through the caller).
        if let Some(p) = &permissions {
            for job in &mut jobs {
                if job.get("permissions").is_none() {
                    set_permissions(job, p.clone());
                }
            }
        }
        if !self.opts.skip_reusable_workflows {
            for job in &mut jobs {
                self.inline_callee(job, 1)?;
            }
        }
        out.insert("jobs".into(), Value::Array(jobs));
        if self.opts.include_source {
            out.insert("file-table".into(), json!(self.files));
        }
        Ok(Value::Object(out))
    }

    fn jobs(&mut self, jobs: &Node) -> Vec<Value> {
        jobs.entries()
            .iter()
            .filter(|(_, job)| matches!(job.kind, Kind::Map(_)))
            .map(|(key, job)| self.job(key, job))
            .collect()
    }

    fn job(&mut self, key: &Key, job: &Node) -> Value {
        let id = self.string_literal(&key.name, key.pos);
        let name = match job.get("name") {
            // An empty name (`name:` reads as null, which becomes "") falls back to the id.
            Some(n)
                if !matches!(&n.kind, Kind::Str(s) if s.is_empty())
                    && !matches!(n.kind, Kind::Null)
                    && is_scalar(n) =>
            {
                self.token(n, Def::Str)
            }
            _ => id.clone(),
        };
        let needs: Vec<Value> = match job.get("needs") {
            Some(
                n @ Node {
                    kind: Kind::Str(s), ..
                },
            ) => vec![self.string_literal(s, n.pos)],
            Some(n) => n.items().iter().map(|i| self.token(i, Def::Str)).collect(),
            None => Vec::new(),
        };
        let condition = self.condition(job.get("if"));
        let mut out = Map::new();
        if let Some(uses) = job.get("uses") {
            out.insert("type".into(), "reusableWorkflowJob".into());
            out.insert("id".into(), id);
            out.insert("name".into(), name);
            // A called workflow's job always lists its needs, even none.
            out.insert("needs".into(), Value::Array(needs));
            out.insert("if".into(), condition);
            out.insert("ref".into(), self.token(uses, Def::Str));
            if let Some(p) = job.get("permissions") {
                out.insert("permissions".into(), permissions(p));
            }
            if let Some(with) = job.get("with") {
                // Inputs keep their type: the callee declares boolean, number or string.
                out.insert("input-values".into(), self.token(with, Def::Scalar));
            }
            match job.get("secrets") {
                Some(Node {
                    kind: Kind::Str(s), ..
                }) if s == "inherit" => {
                    out.insert("inherit-secrets".into(), true.into());
                }
                Some(s) => {
                    out.insert("secret-values".into(), self.token(s, Def::Str));
                }
                None => {}
            }
            if let Some(c) = job.get("concurrency") {
                out.insert(
                    "concurrency".into(),
                    self.token(c, Def::Fields(concurrency_def)),
                );
            }
            if let Some(s) = job.get("strategy") {
                out.insert("strategy".into(), self.token(s, Def::Fields(strategy_def)));
            }
            // Filled in when the callee is read.
            out.insert("jobs".into(), json!([]));
            return Value::Object(out);
        }
        out.insert("type".into(), "job".into());
        out.insert("id".into(), id);
        out.insert("name".into(), name);
        if !needs.is_empty() {
            out.insert("needs".into(), Value::Array(needs));
        }
        out.insert("if".into(), condition);
        // The order of GitHub's serialised job.
        let fields: [(&str, Def); 14] = [
            ("strategy", Def::Fields(strategy_def)),
            ("continue-on-error", Def::Any),
            ("timeout-minutes", Def::Any),
            ("cancel-timeout-minutes", Def::Any),
            ("concurrency", Def::Fields(concurrency_def)),
            ("permissions", Def::Str),
            ("env", Def::Str),
            ("environment", Def::Fields(environment_def)),
            ("defaults", Def::Str),
            ("runs-on", Def::Str),
            ("container", Def::Str),
            ("services", Def::Str),
            ("outputs", Def::Str),
            ("steps", Def::Str),
        ];
        for (key, def) in fields {
            let Some(v) = job.get(key) else { continue };
            let value = match key {
                "permissions" => permissions(v),
                "steps" => {
                    let steps = self.steps(v);
                    if steps.is_empty() {
                        continue;
                    }
                    Value::Array(steps)
                }
                _ => self.token(v, def),
            };
            out.insert(key.into(), value);
        }
        if let Some(s) = job.get("snapshot") {
            out.insert("snapshot".into(), self.token(s, Def::Str));
        }
        Value::Object(out)
    }

    fn steps(&mut self, steps: &Node) -> Vec<Value> {
        let maps: Vec<&Node> = steps
            .items()
            .iter()
            .filter(|step| matches!(step.kind, Kind::Map(_)))
            .collect();
        let ids = step_ids(maps.iter().map(|step| StepIdSource {
            id: step.get("id").and_then(Node::as_str),
            uses: step.get("uses").and_then(Node::as_str),
            run: step.get("run").is_some(),
        }));
        let mut out = Vec::new();
        for (step, id) in maps.into_iter().zip(ids) {
            let mut s = Map::new();
            s.insert("id".into(), id.into());
            if let Some(name) = step.get("name") {
                s.insert("name".into(), self.token(name, Def::Str));
            }
            s.insert("if".into(), self.condition(step.get("if")));
            let fields: &[(&str, Def)] = if step.get("run").is_some() {
                &[
                    ("continue-on-error", Def::Any),
                    ("timeout-minutes", Def::Any),
                    ("env", Def::Str),
                    ("working-directory", Def::Str),
                    ("shell", Def::Str),
                    ("run", Def::Str),
                ]
            } else {
                &[
                    ("continue-on-error", Def::Any),
                    ("timeout-minutes", Def::Any),
                    ("env", Def::Str),
                    ("uses", Def::Str),
                    ("with", Def::Str),
                ]
            };
            for (key, def) in fields {
                if let Some(v) = step.get(key) {
                    s.insert((*key).into(), self.token(v, *def));
                }
            }
            out.push(Value::Object(s));
        }
        out
    }

    /// Reads the workflow a `uses:` job calls and inlines it: its
    /// `workflow_call` interface, root `env`/`defaults`/`concurrency`/
    /// `permissions`, and its jobs (recursively).
    fn inline_callee(&mut self, job: &mut Value, depth: usize) -> Result<(), ConvertError> {
        if job["type"] != "reusableWorkflowJob" {
            return Ok(());
        }
        let caller = self.files[self.file - 1].clone();
        let reference = match &job["ref"] {
            Value::String(s) => s.clone(),
            other => other["lit"].as_str().unwrap_or_default().to_string(),
        };
        if depth > self.opts.max_nested_depth {
            return Err(ConvertError {
                file: caller,
                message: format!(
                    "Nested reusable workflow depth exceeded {}.",
                    self.opts.max_nested_depth
                ),
            });
        }
        let Some(text) = (self.resolve)(&reference) else {
            return Err(ConvertError {
                file: caller,
                message: format!("Unable to find reusable workflow '{reference}'"),
            });
        };
        let root = parse(&reference, &text)?;
        let saved = self.file;
        self.file = match self.files.iter().position(|f| *f == reference) {
            Some(i) => i + 1,
            None => {
                self.files.push(reference.clone());
                self.files.len()
            }
        };
        let obj = job.as_object_mut().expect("a job is an object");
        if let Some(call) = workflow_call(&root) {
            for (key, field, def) in [
                (
                    "inputs",
                    "input-definitions",
                    Def::Fields(call_parameter_def),
                ),
                (
                    "secrets",
                    "secret-definitions",
                    Def::Fields(call_parameter_def),
                ),
                ("outputs", "outputs", Def::Str),
            ] {
                if let Some(v) = call.get(key).filter(|v| matches!(v.kind, Kind::Map(_))) {
                    let token = self.token(v, def);
                    obj.insert(field.into(), token);
                }
            }
        }
        if let Some(d) = root.get("defaults") {
            let token = self.token(d, Def::Str);
            obj.insert("defaults".into(), token);
        }
        if let Some(e) = root.get("env") {
            let token = self.token(e, Def::Str);
            obj.insert("env".into(), token);
        }
        if let Some(c) = root.get("concurrency") {
            let token = self.token(c, Def::Fields(concurrency_def));
            obj.insert("embedded-concurrency".into(), token);
        }
        // The callee's root permissions replace what its jobs inherit.
        if let Some(p) = root.get("permissions") {
            obj.insert("permissions".into(), permissions(p));
        }
        let mut jobs = match root.get("jobs") {
            Some(j) => self.jobs(j),
            None => Vec::new(),
        };
        if let Some(p) = obj.get("permissions").cloned() {
            for j in &mut jobs {
                if j.get("permissions").is_none() {
                    set_permissions(j, p.clone());
                }
            }
        }
        for j in &mut jobs {
            self.inline_callee(j, depth + 1)?;
        }
        let obj = order_reusable(std::mem::take(obj), jobs);
        *job = Value::Object(obj);
        self.file = saved;
        Ok(())
    }

    /// `if:` as GitHub stores it: an expression, `success()` when empty, and
    /// `success() && (...)` when no status function is called.
    fn condition(&self, node: Option<&Node>) -> Value {
        let pos = node.map(|n| self.start(n));
        let text = match node.map(|n| &n.kind) {
            None => return json!({"type": 3, "expr": "success()"}),
            Some(Kind::Str(s)) => match split_scalar(s) {
                Scalar::Expression(e) => e,
                Scalar::Literal(l) => l,
                Scalar::Insert => "insert".to_string(),
            },
            Some(_) => literal_text(node.expect("matched")),
        };
        let expr = if text.trim().is_empty() {
            "success()".to_string()
        } else {
            with_status_function(&text)
        };
        self.with_source(json!({"type": 3, "expr": expr}), pos)
    }

    /// A value as a template token, read against its schema definition.
    fn token(&self, n: &Node, def: Def) -> Value {
        let pos = self.start(n);
        match &n.kind {
            Kind::Map(entries) => {
                let map: Vec<Value> = entries
                    .iter()
                    .map(|(k, v)| {
                        let d = match def {
                            Def::Fields(f) => f(&k.name),
                            d => d,
                        };
                        json!({"Key": self.key(k), "Value": self.token(v, d)})
                    })
                    .collect();
                self.container(2, "map", map, pos)
            }
            Kind::Seq(items) => {
                let seq: Vec<Value> = items.iter().map(|i| self.token(i, def)).collect();
                self.container(1, "seq", seq, pos)
            }
            Kind::Str(s) => self.string(s, pos),
            // A called workflow's parameter may be declared with nothing but its name.
            Kind::Null if matches!(def, Def::Fields(_)) => self.null(pos),
            Kind::Bool(_) | Kind::Number(_) if matches!(def, Def::Scalar) => self.typed(n, pos),
            _ if !matches!(def, Def::Any) => self.string_literal(&literal_text(n), pos),
            _ => self.typed(n, pos),
        }
    }

    fn null(&self, pos: Pos) -> Value {
        if self.opts.include_source {
            self.with_source(json!({"type": 7}), Some(pos))
        } else {
            Value::Null
        }
    }

    /// A null, boolean or number literal keeping its type.
    fn typed(&self, n: &Node, pos: Pos) -> Value {
        match &n.kind {
            Kind::Bool(b) => self.literal(5, "bool", (*b).into(), pos),
            Kind::Number(f) => self.literal(6, "num", number(*f), pos),
            Kind::Str(s) => self.string(s, pos),
            _ => self.null(pos),
        }
    }

    fn key(&self, k: &Key) -> Value {
        self.string(&k.name, k.pos)
    }

    /// A string scalar: a literal, an expression, or `format(...)` of both.
    fn string(&self, s: &str, pos: Pos) -> Value {
        match split_scalar(s) {
            Scalar::Literal(l) => self.string_literal(&l, pos),
            Scalar::Expression(e) => self.with_source(json!({"type": 3, "expr": e}), Some(pos)),
            Scalar::Insert => {
                self.with_source(json!({"type": 4, "directive": "insert"}), Some(pos))
            }
        }
    }

    fn string_literal(&self, s: &str, pos: Pos) -> Value {
        self.literal(0, "lit", s.into(), pos)
    }

    fn literal(&self, ty: u8, field: &str, v: Value, pos: Pos) -> Value {
        if !self.opts.include_source {
            return v;
        }
        let mut t = self.with_source(json!({"type": ty}), Some(pos));
        t[field] = v;
        t
    }

    fn container(&self, ty: u8, field: &str, items: Vec<Value>, pos: Pos) -> Value {
        let mut t = self.with_source(json!({"type": ty}), Some(pos));
        t[field] = Value::Array(items);
        t
    }

    /// Adds `file`/`line`/`col` after `type` when sources are kept.
    fn with_source(&self, token: Value, pos: Option<Pos>) -> Value {
        let (Some(pos), true) = (pos, self.opts.include_source) else {
            return token;
        };
        let Value::Object(fields) = token else {
            return token;
        };
        let mut out = Map::new();
        let mut fields = fields.into_iter();
        if let Some((k, v)) = fields.next() {
            out.insert(k, v);
        }
        out.insert("file".into(), self.file.into());
        out.insert("line".into(), pos.line.into());
        out.insert("col".into(), pos.column.into());
        out.extend(fields);
        Value::Object(out)
    }

    /// Where GitHub's YAML reader places a node: on the opening quote of a
    /// quoted scalar (our tree points at the text after it).
    fn start(&self, n: &Node) -> Pos {
        match n.style {
            '\'' | '"' => Pos {
                line: n.pos.line,
                column: n.pos.column.saturating_sub(1).max(1),
            },
            _ => n.pos,
        }
    }
}

fn is_scalar(n: &Node) -> bool {
    !matches!(n.kind, Kind::Map(_) | Kind::Seq(_))
}

fn set_permissions(job: &mut Value, p: Value) {
    let Value::Object(obj) = job else { return };
    let old = std::mem::take(obj);
    // Keep GitHub's field order: permissions come after `if`/`ref`.
    let before: &[&str] = if old.get("type").and_then(Value::as_str) == Some("job") {
        &[
            "type",
            "id",
            "name",
            "needs",
            "if",
            "strategy",
            "continue-on-error",
            "timeout-minutes",
            "cancel-timeout-minutes",
            "concurrency",
        ]
    } else {
        &["type", "id", "name", "needs", "if", "ref"]
    };
    let mut p = Some(p);
    for (k, v) in old {
        if let Some(perm) = p.as_ref()
            && !before.contains(&k.as_str())
        {
            obj.insert("permissions".into(), perm.clone());
            p = None;
        }
        obj.insert(k, v);
    }
    if let Some(perm) = p {
        obj.insert("permissions".into(), perm);
    }
}

/// The fields of a reusable-workflow job in GitHub's order, with its callee's jobs last.
fn order_reusable(mut obj: Map<String, Value>, jobs: Vec<Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in [
        "type",
        "id",
        "name",
        "needs",
        "if",
        "ref",
        "permissions",
        "input-definitions",
        "input-values",
        "secret-definitions",
        "secret-values",
        "inherit-secrets",
        "outputs",
        "defaults",
        "env",
        "concurrency",
        "embedded-concurrency",
        "strategy",
    ] {
        if let Some(v) = obj.remove(key) {
            out.insert(key.into(), v);
        }
    }
    out.extend(obj);
    // Always present, even when the callee is not read (skip-reusable-workflows).
    out.insert("jobs".into(), Value::Array(jobs));
    out
}

/// `on.workflow_call` of a called workflow, when it is a mapping.
fn workflow_call(root: &Node) -> Option<&Node> {
    root.get("on")?
        .get("workflow_call")
        .filter(|n| matches!(n.kind, Kind::Map(_)))
}

/// `on.workflow_dispatch.inputs`: each input's type (`string` when unset).
fn dispatch_input_types(root: &Node) -> Map<String, Value> {
    let inputs = root
        .get("on")
        .and_then(|on| on.get("workflow_dispatch"))
        .and_then(|d| d.get("inputs"));
    inputs
        .map(|i| {
            i.entries()
                .iter()
                .map(|(k, v)| {
                    let ty = v.get("type").and_then(Node::as_str).unwrap_or("string");
                    (k.name.clone(), Value::from(ty))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The scopes `read-all` / `write-all` grant, in the order GitHub serialises
/// them (alphabetical). Newer runners add `artifact-metadata` and
/// `attestations`; the published parser tests predate them.
const ALL_SCOPES: &[&str] = &[
    "actions",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "id-token",
    "issues",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
];

/// Permissions as GitHub stores them: a plain object of granted scopes in
/// alphabetical order, `none` left out; `models` and `vulnerability-alerts`
/// are at most `read`.
fn permissions(p: &Node) -> Value {
    let mut granted: Vec<(String, String)> = match &p.kind {
        Kind::Str(s) => {
            let level = match s.as_str() {
                "read-all" => "read",
                "write-all" => "write",
                _ => return json!({}),
            };
            ALL_SCOPES
                .iter()
                .map(|s| (s.to_string(), level.to_string()))
                .collect()
        }
        _ => p
            .entries()
            .iter()
            .filter_map(|(k, v)| {
                let level = v.as_str()?;
                let level = match (k.name.as_str(), level) {
                    (_, "none") => return None,
                    ("models" | "vulnerability-alerts", "write") => "read",
                    (_, l) => l,
                };
                Some((k.name.clone(), level.to_string()))
            })
            .collect(),
    };
    granted.sort();
    granted.dedup_by(|a, b| a.0 == b.0);
    Value::Object(granted.into_iter().map(|(k, v)| (k, v.into())).collect())
}

/// A number as JSON: integral values as integers, as GitHub writes them;
/// infinities and NaN, which JSON lacks, as their .NET names.
fn number(f: f64) -> Value {
    if !f.is_finite() {
        Value::from(g15(f))
    } else if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// The text GitHub gives a non-string scalar where a string is expected.
fn literal_text(n: &Node) -> String {
    match &n.kind {
        Kind::Null => String::new(),
        Kind::Bool(b) => b.to_string(),
        Kind::Number(f) => g15(*f),
        Kind::Str(s) => s.clone(),
        Kind::Seq(_) | Kind::Map(_) => String::new(),
    }
}

/// .NET's `ToString("G15")`, which GitHub uses to turn numbers into text:
/// 15 significant digits, scientific notation (`1.5E+18`) when the exponent
/// is below -4 or at least 15.
pub(crate) fn g15(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{:.14e}", f);
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if negative { "-" } else { "" };
    if !(-4..15).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}E{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

/// A string scalar after GitHub's template reader looked for `${{ }}`.
#[derive(Debug, PartialEq)]
enum Scalar {
    Literal(String),
    /// The expression text: trimmed, or `format('…{0}…', …)` when text surrounds it.
    Expression(String),
    /// `${{ insert }}`, the directive that splices a mapping into its parent.
    Insert,
}

/// Splits `raw` into literal text and expressions as GitHub's reader does:
/// an expression ends at the first `}}` outside a single-quoted string; a
/// lone expression that is just a string literal (`${{ 'x' }}`) is that
/// literal; several pieces become one `format()` call.
fn split_scalar(raw: &str) -> Scalar {
    if !raw.contains("${{") {
        return Scalar::Literal(raw.to_string());
    }
    enum Piece {
        Text(String),
        Expr(String),
    }
    let bytes = raw.as_bytes();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let Some(start) = raw[i..].find("${{").map(|s| s + i) else {
            push_text(&mut pieces, &raw[i..]);
            break;
        };
        if start > i {
            push_text(&mut pieces, &raw[i..start]);
        }
        let mut j = start + 3;
        let mut in_string = false;
        let mut end = None;
        while j < bytes.len() {
            if bytes[j] == b'\'' {
                in_string = !in_string;
            } else if !in_string && bytes[j] == b'}' && bytes[j - 1] == b'}' {
                end = Some(j);
                break;
            }
            j += 1;
        }
        // Unclosed: validation reports it; the text stays literal.
        let Some(end) = end else {
            return Scalar::Literal(raw.to_string());
        };
        let inner = raw[start + 3..end - 1].trim();
        if inner == "insert" {
            return Scalar::Insert;
        }
        pieces.push(Piece::Expr(inner.to_string()));
        i = end + 1;
    }
    fn push_text(pieces: &mut Vec<Piece>, text: &str) {
        if let Some(Piece::Text(last)) = pieces.last_mut() {
            last.push_str(text);
        } else {
            pieces.push(Piece::Text(text.to_string()));
        }
    }
    if let [Piece::Expr(e)] = pieces.as_slice() {
        return match string_literal_value(e) {
            Some(s) => Scalar::Literal(s),
            None => Scalar::Expression(e.clone()),
        };
    }
    let mut format = String::new();
    let mut args = String::new();
    let mut n = 0;
    for piece in &pieces {
        match piece {
            Piece::Text(t) => {
                format.push_str(&t.replace('\'', "''").replace('{', "{{").replace('}', "}}"))
            }
            Piece::Expr(e) => {
                format.push_str(&format!("{{{n}}}"));
                n += 1;
                args.push_str(", ");
                args.push_str(e);
            }
        }
    }
    Scalar::Expression(format!("format('{format}'{args})"))
}

/// `'it''s'` → `it's`; `None` unless the whole expression is one string literal.
fn string_literal_value(expr: &str) -> Option<String> {
    let mut out = String::new();
    let mut in_string = false;
    for (i, c) in expr.chars().enumerate() {
        if c == '\'' {
            in_string = !in_string;
            if in_string && i != 0 {
                out.push(c);
            }
        } else if !in_string {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// `cond` unchanged when it calls a status function, else `success() && (cond)`.
fn with_status_function(cond: &str) -> String {
    match hangar_expr::parse(cond) {
        Ok(e) if e.uses_status_function() => cond.to_string(),
        // A condition that does not parse is reported by validation; keep it as written.
        Err(_) => cond.to_string(),
        Ok(_) => format!("success() && ({cond})"),
    }
}

/// The triggers as GitHub's parser reads `on:` (its `events`): every event
/// named, with its filters as lists (`branches`, `tags`, `paths` and their
/// `-ignore` twins, `types`, `versions`, `names`, `workflows`), `schedule` as
/// its crons, `workflow_dispatch` inputs typed (`string` unless said
/// otherwise) and `workflow_call` secrets. Not sent to the runner; shown by
/// `hangar validate --template` so a user sees what will trigger the run.
fn events(on: &Node) -> Value {
    let mut out = Map::new();
    match &on.kind {
        Kind::Str(event) => {
            out.insert(event.clone(), json!({}));
        }
        Kind::Seq(items) => {
            for event in items.iter().filter_map(Node::as_str) {
                out.insert(event.to_string(), json!({}));
            }
        }
        Kind::Map(entries) => {
            for (key, config) in entries {
                let value = match (key.name.as_str(), &config.kind) {
                    (_, Kind::Null) => json!({}),
                    ("schedule", _) => schedule(config),
                    ("workflow_dispatch", _) => workflow_dispatch_event(config),
                    ("workflow_call", _) => workflow_call_event(config),
                    _ => {
                        const FILTERS: [&str; 10] = [
                            "branches",
                            "branches-ignore",
                            "tags",
                            "tags-ignore",
                            "paths",
                            "paths-ignore",
                            "types",
                            "versions",
                            "names",
                            "workflows",
                        ];
                        let mut filters = Map::new();
                        for name in FILTERS {
                            if let Some(list) = config.get(name) {
                                filters.insert(name.into(), string_list(list));
                            }
                        }
                        Value::Object(filters)
                    }
                };
                out.insert(key.name.clone(), value);
            }
        }
        _ => {}
    }
    Value::Object(out)
}

/// A string or a list of strings, as a list.
fn string_list(node: &Node) -> Value {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .filter_map(scalar_text)
            .map(Value::String)
            .collect(),
        _ => scalar_text(node)
            .map(|s| json!([s]))
            .unwrap_or_else(|| json!([])),
    }
}

fn scalar_text(node: &Node) -> Option<String> {
    match &node.kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Bool(b) => Some(b.to_string()),
        Kind::Number(_) => Some(node.to_json().to_string()),
        _ => None,
    }
}

/// Each entry as GitHub's converter keeps it: `cron`, and `timezone` when
/// one is written.
fn schedule(config: &Node) -> Value {
    config
        .items()
        .iter()
        .filter_map(|item| {
            let mut entry = Map::new();
            entry.insert("cron".into(), json!(item.get("cron")?.as_str()?));
            if let Some(zone) = item.get("timezone").and_then(Node::as_str) {
                entry.insert("timezone".into(), json!(zone));
            }
            Some(Value::Object(entry))
        })
        .collect()
}

fn workflow_dispatch_event(config: &Node) -> Value {
    let mut out = Map::new();
    if let Some(inputs) = config.get("inputs") {
        out.insert("inputs".into(), inputs_config(inputs));
    }
    Value::Object(out)
}

/// `inputs` of `workflow_dispatch` or `workflow_call`: each typed (`string`
/// unless said otherwise), with its description, whether it is required,
/// its options, and its default as its type says (a boolean for `boolean`,
/// text for `string`, `choice` and `environment`).
fn inputs_config(inputs: &Node) -> Value {
    let mut converted = Map::new();
    for (name, input) in inputs.entries() {
        let kind = input.get("type").and_then(Node::as_str).unwrap_or("string");
        let mut c = Map::new();
        c.insert("type".into(), json!(kind));
        if let Some(d) = input.get("description").and_then(scalar_text) {
            c.insert("description".into(), json!(d));
        }
        if let Some(Kind::Bool(r)) = input.get("required").map(|r| &r.kind) {
            c.insert("required".into(), json!(r));
        }
        if let Some(options) = input.get("options") {
            c.insert("options".into(), string_list(options));
        }
        match (kind, input.get("default").map(|d| &d.kind)) {
            ("boolean", Some(Kind::Bool(b))) => {
                c.insert("default".into(), json!(b));
            }
            ("string" | "choice" | "environment", Some(_)) => {
                if let Some(d) = input.get("default").and_then(scalar_text) {
                    c.insert("default".into(), json!(d));
                }
            }
            _ => {}
        }
        converted.insert(name.name.clone(), Value::Object(c));
    }
    Value::Object(converted)
}

fn workflow_call_event(config: &Node) -> Value {
    let mut out = Map::new();
    if let Some(inputs) = config.get("inputs") {
        out.insert("inputs".into(), inputs_config(inputs));
    }
    if let Some(secrets) = config.get("secrets") {
        let mut converted = Map::new();
        for (name, secret) in secrets.entries() {
            let mut c = Map::new();
            if let Some(d) = secret.get("description").and_then(scalar_text) {
                c.insert("description".into(), json!(d));
            }
            if let Some(Kind::Bool(r)) = secret.get("required").map(|r| &r.kind) {
                c.insert("required".into(), json!(r));
            }
            converted.insert(name.name.clone(), Value::Object(c));
        }
        out.insert("secrets".into(), Value::Object(converted));
    }
    Value::Object(out)
}

/// What a step's id is derived from.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepIdSource<'a> {
    /// The `id:` the author gave, if any.
    pub id: Option<&'a str>,
    pub uses: Option<&'a str>,
    /// Whether the step has `run:`.
    pub run: bool,
}

/// The ids GitHub gives a list of steps, in order: the author's `id`, else a
/// generated one (`__run`, `__run_2`, `__actions_checkout`, …) that avoids
/// every id the author gave. The runner shows it as `github.action` and
/// `GITHUB_ACTION`.
pub fn step_ids<'a>(steps: impl IntoIterator<Item = StepIdSource<'a>> + Clone) -> Vec<String> {
    let mut ids = IdBuilder::default();
    // Ids the author gave are taken first, so generated ones avoid them.
    for step in steps.clone() {
        if let Some(id) = step.id.filter(|id| !id.is_empty()) {
            ids.add_known(id);
        }
    }
    steps
        .into_iter()
        .map(|step| match step.id.filter(|id| !id.is_empty()) {
            Some(id) => id.to_string(),
            None => {
                let segment = step
                    .uses
                    .filter(|_| !step.run)
                    .and_then(generated_step_id)
                    .unwrap_or_else(|| "run".to_string());
                ids.append_segment(&format!("__{segment}"));
                ids.build()
            }
        })
        .collect()
}

/// The id segment GitHub derives from a step's `uses:` (`actions/checkout`
/// from `actions/checkout@v4`, the image from `docker://`, `self` for local
/// actions); `None` falls back to `run`.
fn generated_step_id(uses: &str) -> Option<String> {
    if let Some(image) = uses.strip_prefix("docker://") {
        return Some(image.to_string());
    }
    if uses.starts_with("./") || uses.starts_with(".\\") {
        return Some("self".into());
    }
    if uses.starts_with("$/") {
        return Some("selfRepository".into());
    }
    let mut at = uses.split('@');
    let (path, git_ref) = (at.next()?, at.next()?);
    if at.next().is_some() || git_ref.is_empty() {
        return None;
    }
    let segments: Vec<&str> = path.split(['/', '\\']).filter(|s| !s.is_empty()).collect();
    (segments.len() >= 2).then(|| format!("{}/{}", segments[0], segments[1]))
}

/// GitHub's unique-id generator for steps: illegal characters become `_`,
/// a leading digit or `-` gets a `_` prefix, ids are compared without case,
/// and a taken id gets `_2`, `_3`, … (the whole id kept under 100 characters).
#[derive(Default)]
struct IdBuilder {
    name: String,
    taken: HashSet<String>,
    /// Per generated name, the attempt to start from: a job of a thousand
    /// `run:` steps would otherwise retry every earlier suffix each time.
    next_attempt: std::collections::HashMap<String, usize>,
}

const MAX_ID_LENGTH: usize = 100;

impl IdBuilder {
    fn add_known(&mut self, id: &str) {
        self.taken.insert(id.to_lowercase());
    }

    fn append_segment(&mut self, value: &str) {
        let Some(first) = value.chars().next() else {
            return;
        };
        if self.name.is_empty() {
            if first.is_ascii_digit() || first == '-' {
                self.name.push('_');
            }
        } else {
            self.name.push('_');
        }
        for c in value.chars() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                self.name.push(c);
            } else {
                // One `_` per UTF-16 unit, as the reference implementation counts.
                for _ in 0..c.len_utf16() {
                    self.name.push('_');
                }
            }
        }
    }

    fn build(&mut self) -> String {
        let original = if self.name.is_empty() {
            "job".to_string()
        } else {
            std::mem::take(&mut self.name)
        };
        let first = self.next_attempt.get(&original).copied().unwrap_or(1);
        for attempt in first..1000 {
            let suffix = if attempt == 1 {
                String::new()
            } else {
                format!("_{attempt}")
            };
            let keep = original.len().min(MAX_ID_LENGTH - suffix.len());
            let candidate = format!("{}{suffix}", &original[..keep]);
            if self.taken.insert(candidate.to_lowercase()) {
                self.next_attempt.insert(original, attempt + 1);
                return candidate;
            }
        }
        // 999 steps with the same generated id: fall back to a unique, if long, id.
        format!("{original}_{}", self.taken.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert_str(text: &str) -> Value {
        convert("w.yml", text, &|_| None, &Options::default()).unwrap()
    }

    fn step_ids(v: &Value) -> Vec<String> {
        v["jobs"][0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn generated_step_ids_follow_uses_and_count_collisions() {
        let v = convert_str(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n      - run: a\n      - uses: docker://alpine:latest\n      - uses: ./local\n      - uses: actions/checkout@v3\n      - run: b\n      - uses: bad-ref\n",
        );
        assert_eq!(
            step_ids(&v),
            [
                "__actions_checkout",
                "__run",
                "__alpine_latest",
                "__self",
                "__actions_checkout_2",
                "__run_2",
                "__run_3"
            ]
        );
    }

    #[test]
    fn generated_ids_avoid_given_ids_without_case() {
        let v = convert_str(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: a\n      - id: __RUN\n        run: b\n      - id: ''\n        run: c\n",
        );
        assert_eq!(step_ids(&v), ["__run_2", "__RUN", "__run_3"]);
    }

    #[test]
    fn id_builder_prefixes_digits_and_truncates() {
        let mut b = IdBuilder::default();
        b.append_segment("9lives");
        assert_eq!(b.build(), "_9lives");
        let long = "x".repeat(150);
        b.append_segment(&long);
        assert_eq!(b.build().len(), 100);
        b.append_segment(&long);
        let second = b.build();
        assert_eq!(second.len(), 100);
        assert!(second.ends_with("_2"));
    }

    #[test]
    fn if_defaults_wraps_and_keeps_status_functions() {
        assert_eq!(
            with_status_function("github.ref == 'x'"),
            "success() && (github.ref == 'x')"
        );
        assert_eq!(with_status_function("always() && true"), "always() && true");
        // A status function nested in an argument counts; one in a string does not.
        assert_eq!(
            with_status_function("fromJSON(toJSON(failure()))"),
            "fromJSON(toJSON(failure()))"
        );
        assert_eq!(
            with_status_function("'always()' == x"),
            "success() && ('always()' == x)"
        );
        let v = convert_str(
            "on: push\njobs:\n  a:\n    name:\n    if: ${{ github.x }}\n    runs-on: x\n    steps:\n      - run: a\n        if: ''\n  b:\n    if: true\n    runs-on: x\n    steps: [{run: a}]\n",
        );
        assert_eq!(
            v["jobs"][0]["if"],
            json!({"type": 3, "expr": "success() && (github.x)"})
        );
        assert_eq!(
            v["jobs"][0]["steps"][0]["if"],
            json!({"type": 3, "expr": "success()"})
        );
        assert_eq!(
            v["jobs"][1]["if"],
            json!({"type": 3, "expr": "success() && (true)"})
        );
        assert_eq!(v["jobs"][0]["name"], "a", "a job's name defaults to its id");
    }

    #[test]
    fn tokens_keep_or_coerce_types_by_schema() {
        let v = convert_str(
            "on: push\nenv:\n  n: 5\n  f: 0.5\n  b: true\n  z: null\njobs:\n  a:\n    runs-on: [self-hosted, '${{ matrix.os }}']\n    timeout-minutes: 10\n    continue-on-error: ${{ matrix.x }}\n    strategy:\n      matrix:\n        v: [1, 2.5, true, null]\n    steps:\n      - run: echo ${{ github.sha }} {x} 'q'\n",
        );
        assert_eq!(
            v["env"],
            json!({"type": 2, "map": [
                {"Key": "n", "Value": "5"},
                {"Key": "f", "Value": "0.5"},
                {"Key": "b", "Value": "true"},
                {"Key": "z", "Value": ""},
            ]})
        );
        let job = &v["jobs"][0];
        assert_eq!(
            job["runs-on"],
            json!({"type": 1, "seq": ["self-hosted", {"type": 3, "expr": "matrix.os"}]})
        );
        assert_eq!(job["timeout-minutes"], json!(10));
        assert_eq!(
            job["continue-on-error"],
            json!({"type": 3, "expr": "matrix.x"})
        );
        assert_eq!(
            job["strategy"]["map"][0]["Value"]["map"][0]["Value"],
            json!({"type": 1, "seq": [1, 2.5, true, null]})
        );
        assert_eq!(
            job["steps"][0]["run"],
            json!({"type": 3, "expr": "format('echo {0} {{x}} ''q''', github.sha)"})
        );
    }

    #[test]
    fn scalar_splitting_follows_the_reader() {
        assert_eq!(
            split_scalar("${{ 'a}}b' }}"),
            Scalar::Literal("a}}b".into())
        );
        assert_eq!(split_scalar("${{ insert }}"), Scalar::Insert);
        assert_eq!(
            split_scalar("${{ 'it''s' }}"),
            Scalar::Literal("it's".into())
        );
        assert_eq!(
            split_scalar("${{ a }}${{ b }}"),
            Scalar::Expression("format('{0}{1}', a, b)".into())
        );
        assert_eq!(split_scalar("${{ a "), Scalar::Literal("${{ a ".into()));
    }

    #[test]
    fn numbers_become_text_like_dotnet_g15() {
        assert_eq!(g15(0.845_512_408_225_570_1), "0.84551240822557");
        assert_eq!(g15(123456.0), "123456");
        assert_eq!(g15(1_587_106_672_383_762_434.0), "1.58710667238376E+18");
        assert_eq!(g15(0.000_012_5), "1.25E-05");
        assert_eq!(g15(0.0001), "0.0001");
        assert_eq!(g15(-2.5), "-2.5");
        assert_eq!(g15(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn permissions_flow_to_jobs_and_called_workflows_inline() {
        let callee = "on:\n  workflow_call:\n    inputs:\n      n:\n        type: number\n        default: 3\njobs:\n  inner:\n    runs-on: x\n    steps: [{run: a}]\n";
        let v = convert(
            "w.yml",
            "on: push\npermissions: read-all\njobs:\n  own:\n    permissions:\n      contents: write\n      issues: none\n    runs-on: x\n    steps: [{run: a}]\n  call:\n    uses: o/r/.github/workflows/c.yml@v1\n    with:\n      n: 4\n",
            &|r: &str| (r == "o/r/.github/workflows/c.yml@v1").then(|| callee.to_string()),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(v["jobs"][0]["permissions"], json!({"contents": "write"}));
        let call = &v["jobs"][1];
        assert_eq!(call["type"], "reusableWorkflowJob");
        assert_eq!(call["needs"], json!([]));
        assert_eq!(call["permissions"]["actions"], "read");
        assert_eq!(call["input-values"]["map"][0]["Value"], json!(4));
        assert_eq!(
            call["input-definitions"]["map"][0]["Value"]["map"][1]["Value"],
            json!(3)
        );
        assert_eq!(call["jobs"][0]["id"], "inner");
        assert_eq!(call["jobs"][0]["permissions"]["actions"], "read");

        let err = convert(
            "w.yml",
            "on: push\njobs:\n  call:\n    uses: o/r/.github/workflows/missing.yml@v1\n",
            &|_| None,
            &Options::default(),
        )
        .unwrap_err();
        assert!(err.message.contains("missing.yml@v1"), "{err}");
    }

    #[test]
    fn include_source_positions_tokens_and_lists_files() {
        let v = convert(
            "w.yml",
            "on: push\njobs:\n  a:\n    runs-on: 'x'\n    steps: [{run: a}]\n",
            &|_| None,
            &Options {
                include_source: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(
            v["jobs"][0]["id"],
            json!({"type": 0, "file": 1, "line": 3, "col": 3, "lit": "a"})
        );
        assert_eq!(v["jobs"][0]["runs-on"]["col"], json!(14));
        assert_eq!(v["file-table"], json!(["w.yml"]));
    }

    #[test]
    fn events_list_every_trigger_with_its_filters_as_lists() {
        let text = "on:\n  push:\n    branches: main\n    paths-ignore: [docs/**]\n  pull_request:\n    types: [opened]\n  schedule:\n    - cron: '0 5 * * 1'\n    - cron: '0 6 * * *'\n      timezone: Asia/Tokyo\n  workflow_dispatch:\n    inputs:\n      flag: {type: boolean, default: true, description: Flag}\n      who: {default: 3}\n  issues:\njobs:\n  a: {runs-on: x, steps: [{run: echo}]}\n";
        let v = convert("w.yml", text, &|_: &str| None, &Options::default()).unwrap();
        assert_eq!(
            v["events"],
            json!({
                "push": {"branches": ["main"], "paths-ignore": ["docs/**"]},
                "pull_request": {"types": ["opened"]},
                "schedule": [{"cron": "0 5 * * 1"}, {"cron": "0 6 * * *", "timezone": "Asia/Tokyo"}],
                "workflow_dispatch": {"inputs": {
                    "flag": {"type": "boolean", "description": "Flag", "default": true},
                    "who": {"type": "string", "default": "3"}
                }},
                "issues": {}
            })
        );
        let v = convert(
            "w.yml",
            "on: [push, fork]\njobs: {}\n",
            &|_: &str| None,
            &Options::default(),
        )
        .unwrap();
        assert_eq!(v["events"], json!({"push": {}, "fork": {}}));
    }
}
