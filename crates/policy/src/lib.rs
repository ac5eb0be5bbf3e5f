//! Policy-as-code: Rego evaluation over YAML, JSON, TOML and Dockerfiles.
//!
//! Conftest conventions: in each namespace (default `main`), rules named
//! `deny`, `violation` (failures) and `warn` (warnings), and any
//! `deny_<suffix>`, `violation_<suffix>`, `warn_<suffix>`, are evaluated
//! against every input document. A message is a string, or an object with a
//! `msg` (and optionally `id`, `locate`: text whose line the finding points at).
//! The bundled policies (package `hangar.*`) run on the file kinds they understand.

pub mod dockerfile;
pub mod input;
pub mod suggest;

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
    /// Files (or directories, searched for inputs) to check.
    pub files: Vec<PathBuf>,
    /// Policy directories; empty means `./policy` when it exists.
    pub policy_dirs: Vec<PathBuf>,
    /// Namespaces to evaluate; empty means `main`.
    pub namespaces: Vec<String>,
    pub all_namespaces: bool,
    pub no_bundled: bool,
    /// JSON or YAML files merged into `data`.
    pub data: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
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

#[derive(Debug, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub files: usize,
    pub documents: usize,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.level == Level::Failure)
            .count()
    }
    pub fn warnings(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.level == Level::Warning)
            .count()
    }
}

/// Loads the policies and evaluates every input document.
pub fn scan(opts: &Options) -> Result<Report> {
    let mut policy = Policy::load(opts)?;
    let mut report = Report::default();
    for file in input_files(&opts.files)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        report.files += 1;
        for doc in input::parse(&file, &text)? {
            report.documents += 1;
            report.outcomes.extend(policy.evaluate(&file, &text, &doc)?);
        }
    }
    Ok(report)
}

/// A compiled set of policies and the namespaces to query.
pub struct Policy {
    engine: Engine,
    namespaces: Vec<String>,
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
        for dir in &dirs {
            if !dir.exists() {
                bail!("policy directory {} does not exist", dir.display());
            }
            for file in rego_files(dir)? {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                add_policy(&mut engine, &file.display().to_string(), &text)?;
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
        for data in &opts.data {
            let text = std::fs::read_to_string(data)
                .with_context(|| format!("reading {}", data.display()))?;
            let docs = input::parse(data, &text)?;
            for doc in docs {
                let value = to_regorus(&doc.value)?;
                engine
                    .add_data(value)
                    .map_err(|e| anyhow!("{}: {e}", data.display()))?;
            }
        }
        let packages = engine.get_packages().map_err(|e| anyhow!("{e}"))?;
        let mut namespaces: Vec<String> = if opts.all_namespaces {
            packages
                .iter()
                .map(|p| p.trim_start_matches("data.").to_string())
                .filter(|p| !p.starts_with("hangar."))
                .collect()
        } else if opts.namespaces.is_empty() {
            vec!["main".to_string()]
        } else {
            opts.namespaces.clone()
        };
        // A namespace asked for by name that no policy declares is a typo, not a pass.
        for ns in &opts.namespaces {
            if !packages.iter().any(|p| p.trim_start_matches("data.") == ns) {
                let known: Vec<&str> = packages
                    .iter()
                    .map(|p| p.trim_start_matches("data."))
                    .collect();
                let mut msg = format!(
                    "no policy declares `package {ns}` (known: {})",
                    known.join(", ")
                );
                if let Some(s) = hangar_diag::did_you_mean(ns, known.iter().copied()) {
                    msg.push_str(&format!("\nhelp: did you mean `--namespace {s}`?"));
                }
                bail!(msg);
            }
        }
        if !opts.no_bundled {
            namespaces.extend(BUNDLED_NAMESPACES.iter().map(|s| s.to_string()));
        }
        namespaces.dedup();
        Ok(Policy { engine, namespaces })
    }

    /// Evaluates the failure and warning rules of every namespace against one document.
    pub fn evaluate(
        &mut self,
        file: &Path,
        text: &str,
        doc: &input::Document,
    ) -> Result<Vec<Outcome>> {
        self.engine.set_input(to_regorus(&doc.value)?);
        let mut out = Vec::new();
        for ns in &self.namespaces {
            let results = self
                .engine
                .eval_query(format!("data.{ns}"), false)
                .map_err(|e| explain(&e.to_string(), file, doc))?;
            let Some(package) = results.result.first().and_then(|r| r.expressions.first()) else {
                continue;
            };
            let package: Value = serde_json::to_value(&package.value)?;
            let Some(rules) = package.as_object() else {
                continue;
            };
            for (rule, value) in rules {
                let Some(level) = rule_level(rule) else {
                    continue;
                };
                for message in messages(value) {
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
                    out.push(Outcome {
                        level,
                        file: file.to_path_buf(),
                        document: doc.index,
                        line,
                        namespace: ns.clone(),
                        rule: rule.clone(),
                        id,
                        msg,
                        metadata,
                    });
                }
            }
        }
        out.sort_by(|a, b| (b.level, a.line, &a.msg).cmp(&(a.level, b.line, &b.msg)));
        Ok(out)
    }
}

/// Adds one Rego module. Rego v1 is tried first; a module that only parses
/// as v0 (`deny[msg] { ... }`, as older conftest policies are written) is
/// accepted as v0, as conftest's `--rego-version v0` would.
fn add_policy(engine: &mut Engine, path: &str, text: &str) -> Result<()> {
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

fn rule_level(rule: &str) -> Option<Level> {
    let base = rule.split_once('_').map(|(b, _)| b).unwrap_or(rule);
    match base {
        "deny" | "violation" => Some(Level::Failure),
        "warn" => Some(Level::Warning),
        _ => None,
    }
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

fn rego_files(dir: &Path) -> Result<Vec<PathBuf>> {
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
            } else if name.ends_with(".rego") && !name.ends_with("_test.rego") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Expands directories into the input files under them (by kind).
fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
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
                    }
                }
            }
        } else if path.exists() {
            out.push(path.clone());
        } else {
            bail!("{}: no such file", path.display());
        }
    }
    out.sort();
    Ok(out)
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "./policy".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
