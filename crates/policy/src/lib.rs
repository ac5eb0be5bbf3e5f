//! Policy-as-code: Rego evaluation over YAML, JSON, TOML and Dockerfiles.
//!
//! Conftest conventions: in each namespace (default `main`), rules named
//! `deny`, `violation` (failures) and `warn` (warnings), and any
//! `deny_<suffix>`, `violation_<suffix>`, `warn_<suffix>`, are evaluated
//! against every input document. A message is a string, or an object with a
//! `msg` (and optionally `id`, `locate`: text whose line the finding points at).
//! The bundled policies (package `hangar.*`) run on the file kinds they understand.

mod applied;
pub mod config;
pub mod dockerfile;
pub mod input;
pub mod suggest;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use regorus::Engine;
use serde_json::Value;

/// The policies compiled into the binary: (virtual path, Rego).
pub const BUNDLED: &[(&str, &str)] = &[
    (
        "bundled/kubernetes.rego",
        include_str!("../policies/kubernetes.rego"),
    ),
    (
        "bundled/dockerfile.rego",
        include_str!("../policies/dockerfile.rego"),
    ),
    (
        "bundled/workflows.rego",
        include_str!("../policies/workflows.rego"),
    ),
];
const BUNDLED_NAMESPACES: &[&str] = &["hangar.kubernetes", "hangar.dockerfile", "hangar.workflows"];

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Files (or directories, searched for inputs) to check; `-` is `stdin`.
    pub files: Vec<PathBuf>,
    /// Policy directories; empty means `./policy` when it exists.
    pub policy_dirs: Vec<PathBuf>,
    /// Namespaces to evaluate (`*`, `?` and `[...]` wildcards as conftest
    /// matches them); empty means `main`.
    pub namespaces: Vec<String>,
    pub all_namespaces: bool,
    pub no_bundled: bool,
    /// JSON, YAML or TOML files, or directories of them, merged into `data`.
    pub data: Vec<PathBuf>,
    /// Evaluate every document of every input at once, as one array of
    /// `{"path", "contents"}` (conftest's `--combine`).
    pub combine: bool,
    /// Parse every input as this kind (`--parser`), whatever its name.
    pub parser: Option<input::Kind>,
    /// The text of `-` when it is among `files`.
    pub stdin: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A rule an `exception` rule switched off for this document.
    Exception,
    Warning,
    Failure,
}

/// One message of one rule about one input document.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub level: Level,
    pub file: PathBuf,
    /// Index of the document within a multi-document YAML file.
    pub document: usize,
    pub line: usize,
    pub namespace: String,
    /// The rule that produced it (`deny`, `warn_images`, ...).
    pub rule: String,
    /// The bundled rule id (`K8S001`, ...) or one the policy gave.
    pub id: Option<String>,
    pub msg: String,
    /// The full message object when the policy returned an object.
    pub metadata: Option<Value>,
}

impl Outcome {
    /// The rule id shown to users: the bundled id (`K8S001`) or `namespace.rule`.
    pub fn rule_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{}.{}", self.namespace, self.rule))
    }

    /// The shared shape for SARIF and annotations; paths relative to `root` when under it.
    pub fn to_finding(&self, root: Option<&std::path::Path>) -> hangar_findings::Finding {
        let mut properties = serde_json::Map::new();
        properties.insert("namespace".into(), self.namespace.clone().into());
        properties.insert("rule".into(), self.rule.clone().into());
        properties.insert("document".into(), self.document.into());
        hangar_findings::Finding {
            rule_id: self.rule_id(),
            level: match self.level {
                Level::Failure => hangar_findings::Level::Error,
                Level::Warning => hangar_findings::Level::Warning,
                Level::Exception => hangar_findings::Level::Note,
            },
            message: self.msg.clone(),
            location: Some(hangar_findings::Location::line_in(
                &self.file, root, self.line,
            )),
            fingerprint: None,
            properties,
        }
    }
}

/// What was checked in one input file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputSummary {
    pub file: PathBuf,
    pub documents: usize,
    /// conftest's "tests", summed over documents: findings, plus passes
    /// (one per rule name that found nothing, and the rule bodies left over).
    pub tests: usize,
    /// Tests with no failure, warning or exception.
    pub passed: usize,
    /// Of the user's rules (not hangar's bundled ones), summed over
    /// documents: how many there were, and how many had anything to look at
    /// (see [`applied`]).
    pub user_rules: usize,
    pub applied: usize,
    /// `input` paths the user's rules read that none of the documents has,
    /// when no rule applied: what to tell the user.
    pub missing_paths: Vec<String>,
}

impl InputSummary {
    /// User rules were loaded, yet none had anything to look at here.
    pub fn nothing_applied(&self) -> bool {
        self.applied == 0 && self.user_policies_loaded()
    }
    fn user_policies_loaded(&self) -> bool {
        self.user_rules > 0 || self.tests == 0
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub files: usize,
    pub documents: usize,
    /// Per input, in the order read.
    pub inputs: Vec<InputSummary>,
    /// Whether any policy of the user's own was loaded (not only the bundled set).
    pub user_policies: bool,
}

impl Report {
    fn count(&self, level: Level) -> usize {
        self.outcomes.iter().filter(|o| o.level == level).count()
    }
    pub fn failures(&self) -> usize {
        self.count(Level::Failure)
    }
    pub fn warnings(&self) -> usize {
        self.count(Level::Warning)
    }
    pub fn exceptions(&self) -> usize {
        self.count(Level::Exception)
    }
    /// conftest's "tests" (see [`InputSummary::tests`]).
    pub fn tests(&self) -> usize {
        self.inputs.iter().map(|i| i.tests).sum()
    }
    pub fn passed(&self) -> usize {
        self.inputs.iter().map(|i| i.passed).sum()
    }
    /// Inputs the user's policies had nothing to say about.
    pub fn unapplied(&self) -> impl Iterator<Item = &InputSummary> {
        self.inputs
            .iter()
            .filter(move |i| self.user_policies && i.nothing_applied())
    }
}

/// Loads the policies and evaluates every input document.
pub fn scan(opts: &Options) -> Result<Report> {
    let mut policy = Policy::load(opts)?;
    let mut report = Report {
        user_policies: policy.user_modules > 0,
        ..Report::default()
    };
    let mut inputs: Vec<(PathBuf, String, Vec<input::Document>)> = Vec::new();
    for file in input_files(&opts.files)? {
        let text = if file.as_os_str() == "-" {
            opts.stdin.clone().unwrap_or_default()
        } else {
            std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
        };
        let docs = match opts.parser {
            Some(kind) => input::parse_as(kind, &file, &text)?,
            // Standard input is YAML unless told otherwise, as in conftest.
            None if file.as_os_str() == "-" => input::parse_as(input::Kind::Yaml, &file, &text)?,
            None => input::parse(&file, &text)?,
        };
        report.files += 1;
        report.documents += docs.len();
        inputs.push((file, text, docs));
    }
    if opts.combine {
        // One document: every document of every file, sorted by path as conftest sorts them.
        let mut all: Vec<(String, Value)> = Vec::new();
        for (file, _, docs) in &inputs {
            for doc in docs {
                all.push((file.display().to_string(), doc.value.clone()));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let combined = input::Document {
            value: Value::Array(
                all.into_iter()
                    .map(|(path, contents)| serde_json::json!({"path": path, "contents": contents}))
                    .collect(),
            ),
            index: 0,
            line: 1,
        };
        let file = PathBuf::from("Combined");
        let (outcomes, summary) = policy.check(&file, "", &[combined])?;
        report.outcomes.extend(outcomes);
        report.inputs.push(summary);
        return Ok(report);
    }
    for (file, text, docs) in &inputs {
        let (outcomes, summary) = policy.check(file, text, docs)?;
        report.outcomes.extend(outcomes);
        report.inputs.push(summary);
    }
    Ok(report)
}

/// One rule definition of a namespace: its name and the `input` paths its text reads.
struct RuleDef {
    name: String,
    paths: Vec<Vec<applied::Segment>>,
}

/// What a namespace declares that conftest queries.
#[derive(Default)]
struct Namespace {
    name: String,
    bundled: bool,
    /// Failure and warning rule definitions, in source order.
    defs: Vec<RuleDef>,
    /// The distinct names of `defs`, queried one by one as conftest does
    /// (querying the whole package let regorus return a partial value when
    /// several modules share it, and rules were lost).
    rules: Vec<String>,
    has_exception: bool,
}

/// A compiled set of policies and the namespaces to query.
pub struct Policy {
    engine: Engine,
    namespaces: Vec<Namespace>,
    /// `data` as the user gave it; `data.conftest.file` is added per input.
    base_data: regorus::Value,
    user_modules: usize,
    /// `input` paths read anywhere in the user's policies: the fallback for a
    /// rule that reads none itself (it asks helpers that do).
    all_user_paths: Vec<Vec<applied::Segment>>,
}

/// Namespace patterns match as Go's `path.Match` does (conftest's rule).
fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

impl Policy {
    pub fn load(opts: &Options) -> Result<Policy> {
        let mut engine = Engine::new();
        let dirs: Vec<PathBuf> = if opts.policy_dirs.is_empty() {
            let default = PathBuf::from("policy");
            if default.is_dir() {
                vec![default]
            } else {
                Vec::new()
            }
        } else {
            opts.policy_dirs.clone()
        };
        let mut user_files = 0;
        let mut user_text = String::new();
        for dir in &dirs {
            if !dir.exists() {
                bail!("policy directory {} does not exist", dir.display());
            }
            for file in rego_files(dir, false)? {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                add_policy(&mut engine, &file.display().to_string(), &text)?;
                user_text.push_str(&text);
                user_text.push('\n');
                user_files += 1;
            }
        }
        if !opts.no_bundled {
            for (path, text) in BUNDLED {
                add_policy(&mut engine, path, text)?;
            }
        } else if user_files == 0 {
            bail!(
                "no policies: no .rego files in {} and --no-bundled given",
                display_dirs(&dirs)
            );
        }
        let base_data = load_data(&opts.data)?;
        engine
            .add_data(base_data.clone())
            .map_err(|e| anyhow!("data: {e}"))?;
        let declared = declared_namespaces(&mut engine)?;
        let user_packages: Vec<&str> = declared
            .iter()
            .filter(|n| !n.bundled)
            .map(|n| n.name.as_str())
            .collect();
        let mut wanted: Vec<String> = Vec::new();
        if opts.all_namespaces {
            wanted.extend(user_packages.iter().map(|s| s.to_string()));
        } else if opts.namespaces.is_empty() {
            wanted.push("main".to_string());
        } else {
            for pattern in &opts.namespaces {
                if has_wildcard(pattern) {
                    let glob = globset::GlobBuilder::new(pattern)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| anyhow!("--namespace {pattern}: {e}"))?
                        .compile_matcher();
                    wanted.extend(
                        user_packages
                            .iter()
                            .filter(|p| glob.is_match(p))
                            .map(|s| s.to_string()),
                    );
                    continue;
                }
                // A namespace asked for by name that no policy declares is a typo, not a pass.
                if !declared.iter().any(|n| &n.name == pattern) {
                    let known: Vec<&str> = declared.iter().map(|n| n.name.as_str()).collect();
                    let mut msg = format!(
                        "no policy declares `package {pattern}` (known: {})",
                        known.join(", ")
                    );
                    if let Some(s) = hangar_diag::did_you_mean(pattern, known.iter().copied()) {
                        msg.push_str(&format!("\nhelp: did you mean `--namespace {s}`?"));
                    }
                    bail!(msg);
                }
                wanted.push(pattern.clone());
            }
        }
        if !opts.no_bundled {
            wanted.extend(BUNDLED_NAMESPACES.iter().map(|s| s.to_string()));
        }
        // A namespace named twice (or by `--all-namespaces` and a pattern) is queried once.
        let mut seen = std::collections::HashSet::new();
        wanted.retain(|n| seen.insert(n.clone()));
        let mut by_name: std::collections::HashMap<String, Namespace> =
            declared.into_iter().map(|n| (n.name.clone(), n)).collect();
        let namespaces = wanted
            .into_iter()
            .map(|name| {
                by_name.remove(&name).unwrap_or(Namespace {
                    name,
                    ..Namespace::default()
                })
            })
            .collect();
        Ok(Policy {
            engine,
            namespaces,
            base_data,
            user_modules: user_files,
            all_user_paths: applied::input_paths(&user_text),
        })
    }

    /// Evaluates every rule of every namespace against the documents of one input.
    pub fn check(
        &mut self,
        file: &Path,
        text: &str,
        docs: &[input::Document],
    ) -> Result<(Vec<Outcome>, InputSummary)> {
        self.set_file(file)?;
        let mut out = Vec::new();
        let mut summary = InputSummary {
            file: file.to_path_buf(),
            documents: docs.len(),
            ..InputSummary::default()
        };
        let mut missing: Vec<String> = Vec::new();
        for doc in docs {
            let (outcomes, applied_here) = self.evaluate_counted(file, text, doc, &mut summary)?;
            if applied_here == 0 {
                for p in &self.all_user_paths {
                    if !applied::reaches(&doc.value, p) {
                        let shown = applied::display(p);
                        if !missing.contains(&shown) {
                            missing.push(shown);
                        }
                    }
                }
            }
            out.extend(outcomes);
        }
        if summary.applied == 0 {
            summary.missing_paths = missing;
        }
        Ok((out, summary))
    }

    /// `data.conftest.file`: the input's name and directory, as conftest gives them.
    fn set_file(&mut self, file: &Path) -> Result<()> {
        let abs = if file.as_os_str() == "-" {
            file.to_path_buf()
        } else {
            std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf())
        };
        let info = serde_json::json!({"conftest": {"file": {
            "name": abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            "dir": abs.parent().map(|d| d.display().to_string()).unwrap_or_default(),
        }}});
        self.engine.clear_data();
        self.engine
            .add_data(self.base_data.clone())
            .map_err(|e| anyhow!("data: {e}"))?;
        self.engine
            .add_data(to_regorus(&info)?)
            .map_err(|e| anyhow!("data.conftest: {e}"))?;
        Ok(())
    }

    /// Evaluates the failure and warning rules of every namespace against one document.
    pub fn evaluate(
        &mut self,
        file: &Path,
        text: &str,
        doc: &input::Document,
    ) -> Result<Vec<Outcome>> {
        let mut summary = InputSummary::default();
        Ok(self.evaluate_counted(file, text, doc, &mut summary)?.0)
    }

    fn evaluate_counted(
        &mut self,
        file: &Path,
        text: &str,
        doc: &input::Document,
        summary: &mut InputSummary,
    ) -> Result<(Vec<Outcome>, usize)> {
        self.engine.set_input(to_regorus(&doc.value)?);
        let mut out = Vec::new();
        let mut applied_here = 0;
        for ns in &self.namespaces {
            let exceptions: Vec<String> = if ns.has_exception {
                let value = query(
                    &mut self.engine,
                    &format!("data.{ns}.exception", ns = ns.name),
                )
                .map_err(|e| explain(&e.to_string(), file, doc))?;
                messages(&value)
                    .iter()
                    .flat_map(|v| match v {
                        Value::Array(items) => items.clone(),
                        other => vec![other.clone()],
                    })
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            } else {
                Vec::new()
            };
            let mut found = 0;
            let mut successes = 0;
            let mut fired: Vec<&str> = Vec::new();
            for rule in &ns.rules {
                let level = rule_level(rule).unwrap_or(Level::Failure);
                let suffix = rule_suffix(rule);
                if exceptions.iter().any(|e| e == suffix) {
                    found += 1;
                    fired.push(rule);
                    out.push(Outcome {
                        level: Level::Exception,
                        file: file.to_path_buf(),
                        document: doc.index,
                        line: doc.line,
                        namespace: ns.name.clone(),
                        rule: rule.clone(),
                        id: None,
                        msg: format!("data.{}.exception[_][_] == {suffix:?}", ns.name),
                        metadata: None,
                    });
                    continue;
                }
                let value = query(&mut self.engine, &format!("data.{}.{rule}", ns.name))
                    .map_err(|e| explain(&e.to_string(), file, doc))?;
                let msgs = messages(&value);
                if msgs.is_empty() {
                    // conftest: a rule whose set is empty is one passed result.
                    successes += 1;
                } else {
                    fired.push(rule);
                }
                for message in msgs {
                    found += 1;
                    out.push(outcome(level, file, text, doc, &ns.name, rule, message));
                }
            }
            // conftest's arithmetic (policy/engine.go `check`): results are the
            // findings plus one pass per rule name that returned nothing; when
            // there are fewer results than rule bodies, the rest passed too.
            successes += ns.defs.len().saturating_sub(found + successes);
            summary.tests += found + successes;
            summary.passed += successes;
            if !ns.bundled {
                summary.user_rules += ns.defs.len();
                for def in &ns.defs {
                    let paths = if def.paths.is_empty() {
                        &self.all_user_paths
                    } else {
                        &def.paths
                    };
                    let applies = fired.contains(&def.name.as_str())
                        || paths.is_empty()
                        || paths.iter().any(|p| applied::reaches(&doc.value, p));
                    if applies {
                        summary.applied += 1;
                        applied_here += 1;
                    }
                }
            }
        }
        out.sort_by(|a, b| (b.level, a.line, &a.msg).cmp(&(a.level, b.line, &b.msg)));
        Ok((out, applied_here))
    }
}

fn outcome(
    level: Level,
    file: &Path,
    text: &str,
    doc: &input::Document,
    namespace: &str,
    rule: &str,
    message: Value,
) -> Outcome {
    let (msg, id, locate, metadata) = match &message {
        Value::String(s) => (s.clone(), None, None, None),
        Value::Object(o) => (
            o.get("msg")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| message.to_string()),
            o.get("id").and_then(Value::as_str).map(str::to_string),
            o.get("locate").and_then(Value::as_str).map(str::to_string),
            Some(message.clone()),
        ),
        other => (other.to_string(), None, None, None),
    };
    let line = locate
        .and_then(|needle| find_line(text, doc.line, &needle))
        .unwrap_or(doc.line);
    Outcome {
        level,
        file: file.to_path_buf(),
        document: doc.index,
        line,
        namespace: namespace.to_string(),
        rule: rule.to_string(),
        id,
        msg,
        metadata,
    }
}

/// The value of one query (`data.main.deny`), `null` when undefined.
fn query(engine: &mut Engine, q: &str) -> Result<Value> {
    let results = engine.eval_query(q.to_string(), false)?;
    match results.result.first().and_then(|r| r.expressions.first()) {
        Some(e) => Ok(serde_json::to_value(&e.value)?),
        None => Ok(Value::Null),
    }
}

/// The namespaces the loaded modules declare, with their failure/warning
/// rules, read from regorus' syntax tree. `regorus::unstable` is the only
/// way to list a module's rules; conftest counts and queries rules by name,
/// which an evaluation of the package cannot give faithfully.
fn declared_namespaces(engine: &mut Engine) -> Result<Vec<Namespace>> {
    use regorus::unstable::{Parser, Rule, RuleHead};
    let packages = engine.get_packages().map_err(|e| anyhow!("{e}"))?;
    let mut out: Vec<Namespace> = Vec::new();
    for (package, module) in packages.iter().zip(engine.get_modules().iter()) {
        let name = package.trim_start_matches("data.").to_string();
        let bundled = module
            .package
            .span
            .source
            .get_path()
            .starts_with("bundled/");
        let at = match out.iter().position(|n| n.name == name) {
            Some(at) => at,
            None => {
                out.push(Namespace {
                    name,
                    bundled,
                    ..Namespace::default()
                });
                out.len() - 1
            }
        };
        let ns = &mut out[at];
        for rule in &module.policy {
            let (head, span) = match rule.as_ref() {
                Rule::Spec { head, span, .. } => match head {
                    RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => (refr, span),
                    RuleHead::Func { .. } => continue,
                },
                Rule::Default { refr, span, .. } => (refr, span),
            };
            let Some(first) = Parser::get_path_ref_components(head)
                .ok()
                .and_then(|c| c.first().map(|s| s.text().to_string()))
            else {
                continue;
            };
            if first == "exception" {
                ns.has_exception = true;
                continue;
            }
            if rule_level(&first).is_none() {
                continue;
            }
            if !ns.rules.contains(&first) {
                ns.rules.push(first.clone());
            }
            ns.defs.push(RuleDef {
                name: first,
                paths: applied::input_paths(span.text()),
            });
        }
    }
    Ok(out)
}

/// `data` from files and directories of JSON, YAML and TOML, merged.
pub(crate) fn load_data(paths: &[PathBuf]) -> Result<regorus::Value> {
    let mut merged = serde_json::Map::new();
    for path in paths {
        let files = if path.is_dir() {
            let mut files = Vec::new();
            let mut stack = vec![path.clone()];
            while let Some(d) = stack.pop() {
                for entry in
                    std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?
                {
                    let p = entry?.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if matches!(
                        input::kind_of(&p),
                        Some(input::Kind::Json | input::Kind::Yaml | input::Kind::Toml)
                    ) {
                        files.push(p);
                    }
                }
            }
            files.sort();
            files
        } else if path.exists() {
            vec![path.clone()]
        } else {
            bail!("--data {}: no such file or directory", path.display());
        };
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            for doc in input::parse(&file, &text)? {
                let Value::Object(o) = doc.value else {
                    bail!(
                        "{}: data must be an object at the top (its keys become data.KEY)",
                        file.display()
                    );
                };
                merge(&mut merged, o);
            }
        }
    }
    to_regorus(&Value::Object(merged))
}

fn merge(into: &mut serde_json::Map<String, Value>, from: serde_json::Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Adds one Rego module. Rego v1 is tried first; a module that only parses
/// as v0 (`deny[msg] { ... }`, as older conftest policies are written) is
/// accepted as v0, as conftest's `--rego-version v0` would.
pub(crate) fn add_policy(engine: &mut Engine, path: &str, text: &str) -> Result<()> {
    engine.set_rego_v0(false);
    let v1 = match engine.add_policy(path.to_string(), text.to_string()) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    engine.set_rego_v0(true);
    let result = engine.add_policy(path.to_string(), text.to_string());
    engine.set_rego_v0(false);
    // Report the error of the dialect the module appears to be written in.
    let looks_v1 =
        text.contains("import rego.v1") || text.contains(" if ") || text.contains(" if{");
    result.map(|_| ()).map_err(|v0| {
        let err = if looks_v1 {
            v1.to_string()
        } else {
            v0.to_string()
        };
        anyhow!("{}", with_suggestion(&err))
    })
}

/// Adds a "did you mean" to errors about unknown functions, and names the
/// input document the error surfaced on.
fn explain(err: &str, file: &Path, doc: &input::Document) -> anyhow::Error {
    let mut msg = with_suggestion(err);
    msg.push_str(&format!(
        "\n  (while evaluating {} document {})",
        file.display(),
        doc.index + 1
    ));
    anyhow!(msg)
}

fn with_suggestion(err: &str) -> String {
    let mut msg = err.to_string();
    if let Some(rest) = err.split("could not find function ").nth(1) {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        msg = msg.replace(
            &format!("could not find function {name}"),
            &format!("unknown function `{name}`: Rego has no builtin named `{name}`"),
        );
        if let Some(s) = suggest::closest(&name) {
            msg.push_str(&format!("\nhelp: did you mean `{s}`?"));
        }
    }
    msg
}

/// conftest's rule names: `^(deny|violation)(_[a-zA-Z0-9]+)*$` fail,
/// `^warn(_[a-zA-Z0-9]+)*$` warn.
fn rule_level(rule: &str) -> Option<Level> {
    let (base, rest) = match rule.split_once('_') {
        Some((b, r)) => (b, Some(r)),
        None => (rule, None),
    };
    if let Some(rest) = rest
        && !rest
            .split('_')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return None;
    }
    match base {
        "deny" | "violation" => Some(Level::Failure),
        "warn" => Some(Level::Warning),
        _ => None,
    }
}

/// The part of a rule's name an `exception` names (`deny_run_as_root` → `run_as_root`).
fn rule_suffix(rule: &str) -> &str {
    rule.split_once('_').map(|(_, s)| s).unwrap_or("")
}

/// A rule's messages: a set/array of messages, or a single one (`deny := "x"`
/// style complete rules; `false`/`true` booleans carry no message).
fn messages(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Bool(false) | Value::Null => Vec::new(),
        Value::Bool(true) => vec![Value::String("denied".into())],
        other => vec![other.clone()],
    }
}

fn find_line(text: &str, from_line: usize, needle: &str) -> Option<usize> {
    let offset: usize = text
        .split_inclusive('\n')
        .take(from_line.saturating_sub(1))
        .map(str::len)
        .sum();
    let at = text[offset..].find(needle)?;
    Some(input::line_col(text, offset + at).0)
}

fn to_regorus(v: &Value) -> Result<regorus::Value> {
    regorus::Value::from_json_str(&v.to_string()).map_err(|e| anyhow!("{e}"))
}

/// The `.rego` files under `dir` (or `dir` itself); `*_test.rego` only when
/// `tests` (they hold unit tests, not rules to enforce).
pub(crate) fn rego_files(dir: &Path, tests: bool) -> Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".rego") && (tests || !name.ends_with("_test.rego")) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Expands directories into the input files under them (by kind). A
/// directory with nothing hangar reads is an error: a gate that checked
/// nothing must not pass.
fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str().is_empty() {
            continue;
        }
        if path.as_os_str() == "-" {
            out.push(path.clone());
        } else if path.is_dir() {
            let before = out.len();
            let mut unsupported: Vec<String> = Vec::new();
            let mut stack = vec![path.clone()];
            while let Some(d) = stack.pop() {
                for entry in
                    std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?
                {
                    let p = entry?.path();
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    if p.is_dir() {
                        if !(name.starts_with('.') && name != ".github")
                            && name != "node_modules"
                            && name != "target"
                        {
                            stack.push(p);
                        }
                    } else if input::kind_of(&p).is_some() {
                        out.push(p);
                    } else if let Some(kind) = input::unsupported_kind(&p)
                        && unsupported.len() < 5
                    {
                        unsupported.push(format!("{} ({kind})", p.display()));
                    }
                }
            }
            if out.len() == before {
                let mut msg = format!(
                    "{}: no input hangar reads in this directory (YAML, JSON, TOML, INI, .env, .properties, XML, Dockerfiles)",
                    path.display()
                );
                if !unsupported.is_empty() {
                    msg.push_str(&format!(
                        "; found only formats hangar has no parser for: {}",
                        unsupported.join(", ")
                    ));
                }
                bail!(msg);
            }
        } else if path.exists() {
            out.push(path.clone());
        } else {
            bail!("{}: no such file", path.display());
        }
    }
    if out.is_empty() {
        bail!("no input files given");
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub(crate) fn display_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "./policy".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
