//! Workflow and action files as the engine reads them: YAML turned into a JSON
//! tree (ordered maps), with the few accessors execution needs. Validation with
//! positions is `hangar-workflow`'s job; here a malformed file still gets a
//! positioned message and never a panic.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A loaded workflow file.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// Path as given (used in messages; `repo_path` gives GitHub's form).
    pub path: PathBuf,
    /// `name:` or the file path, as GitHub shows it.
    pub name: String,
    pub doc: Value,
    /// The same document with a position on every node, for errors met
    /// while running (`doc` is what the engine reads values from).
    pub tree: std::sync::Arc<hangar_workflow::yaml::Node>,
    /// The typed model (triggers, needs, strategies...) the planner reads.
    pub model: std::sync::Arc<hangar_workflow::model::Workflow>,
}

impl Workflow {
    /// Where `key` of a job (or of its step number `step`) is written, as
    /// 1-based line and column; the job's or step's own position when the
    /// key is absent.
    pub fn position(&self, job: &str, step: Option<usize>, key: &str) -> Option<(usize, usize)> {
        let jobs = self.tree.get("jobs")?;
        let mut node = &jobs.entries().iter().find(|(k, _)| k.name == job)?.1;
        if let Some(i) = step {
            node = node.get("steps")?.items().get(i)?;
        }
        let at = node.get(key).map_or(node.pos, |n| n.pos);
        Some((at.line, at.column))
    }

    /// [`Workflow::position`] as an annotation's location in this file
    /// (empty when the key cannot be found).
    pub fn location(&self, job: &str, step: Option<usize>, key: &str) -> crate::report::Location {
        match self.position(job, step, key) {
            Some((line, col)) => crate::report::Location {
                file: Some(repo_path(&self.path)),
                line: u32::try_from(line).ok(),
                col: u32::try_from(col).ok(),
                ..Default::default()
            },
            None => Default::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Workflow, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Workflow::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Workflow, String> {
        let tree = parse_yaml(path, text)?;
        let doc = tree.to_json();
        if !doc.is_object() {
            return Err(format!("{}: a workflow must be a mapping", path.display()));
        }
        let name = doc
            .get("name")
            .and_then(scalar_string)
            .unwrap_or_else(|| repo_path(path));
        let jobs = doc.get("jobs").and_then(Value::as_object);
        for (id, job) in jobs.into_iter().flat_map(|m| m.iter()) {
            let id = id.as_str();
            if !valid_job_id(id) {
                return Err(format!(
                    "{}: job name '{id}' is invalid. Names must start with a letter or '_' and contain only alphanumeric characters, '-', or '_'",
                    path.display()
                ));
            }
            if !job.is_object() {
                return Err(format!("{}: job '{id}' must be a mapping", path.display()));
            }
            for (i, step) in steps(job).iter().enumerate() {
                match step {
                    Value::Object(s) => {
                        if s.contains_key("run") && s.contains_key("uses") {
                            return Err(format!(
                                "{}: invalid run/uses syntax for job:{id} step:{}: a step has either `run` or `uses`",
                                path.display(),
                                s.get("name")
                                    .and_then(scalar_string)
                                    .unwrap_or(i.to_string())
                            ));
                        }
                        // Parallel steps' `wait`, `wait-all`, `cancel` and
                        // `parallel` are checked by the model below.
                        if !hangar_workflow::model::STEP_KINDS
                            .iter()
                            .any(|k| s.contains_key(*k))
                        {
                            return Err(format!(
                                "{}: invalid step {i} of job '{id}': missing `run` or `uses` key",
                                path.display()
                            ));
                        }
                        if let Some(uses) = s.get("uses").and_then(Value::as_str) {
                            check_uses(uses).map_err(|e| {
                                format!("{}: job '{id}' step {i}: {e}", path.display())
                            })?;
                        }
                    }
                    _ => {
                        return Err(format!(
                            "{}: invalid step {i} of job '{id}': missing `run` or `uses` key",
                            path.display()
                        ));
                    }
                }
            }
        }
        // The engine's own checks above keep their messages; the model
        // reports every other shape it cannot use, where it is written.
        let model =
            hangar_workflow::model::Workflow::from_node(tree.clone()).map_err(|errors| {
                errors
                    .iter()
                    .map(|e| format!("{}:{e}", path.display()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        Ok(Workflow {
            path: path.to_path_buf(),
            name,
            doc,
            tree: std::sync::Arc::new(tree),
            model: std::sync::Arc::new(model),
        })
    }

    /// Jobs in file order.
    pub fn jobs(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.doc
            .get("jobs")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }

    pub fn job(&self, id: &str) -> Option<&Value> {
        self.doc.get("jobs")?.get(id)
    }

    /// Event names in `on:` (string, list or mapping form).
    pub fn events(&self) -> Vec<String> {
        self.model.events().map(String::from).collect()
    }

    /// The configuration under `on.<event>` (e.g. `workflow_dispatch.inputs`).
    pub fn event_config(&self, event: &str) -> Option<&Value> {
        self.doc.get("on")?.as_object()?.get(event)
    }
}

/// `uses:` references must be `./path`, `docker://image` or `owner/repo[/path]@ref`.
pub fn check_uses(uses: &str) -> Result<(), String> {
    if uses.starts_with("./")
        || uses.starts_with("$/")
        || uses.starts_with("docker://")
        || uses.starts_with('/')
    {
        return Ok(());
    }
    if has_expression(uses) {
        return Ok(());
    }
    match uses.split_once('@') {
        Some((repo, r))
            if !r.is_empty() && repo.split('/').filter(|p| !p.is_empty()).count() >= 2 =>
        {
            Ok(())
        }
        _ => Err(format!(
            "`uses: {uses}`: expected format {{org}}/{{repo}}[/path]@ref, ./local/path or docker://image"
        )),
    }
}

fn has_expression(s: &str) -> bool {
    s.contains("${{")
}

pub fn valid_job_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A job's steps (empty for reusable-workflow calls).
pub fn steps(job: &Value) -> &[Value] {
    job.get("steps")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `needs:` as a list of job ids (string or list form).
pub fn needs(job: &Value) -> Vec<String> {
    match job.get("needs") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(scalar_string).collect(),
        _ => Vec::new(),
    }
}

/// A scalar as the string GitHub would see (`true`, `3`, `text`); `None` for
/// null, sequences and mappings.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The workflow file's path as GitHub names it: from the repository root
/// (`.github/workflows/ci.yml`), whatever directory `hangar run` was given.
/// A file outside `.github/workflows` keeps the path it was given.
pub fn repo_path(path: &Path) -> String {
    let text = path.to_string_lossy().replace('\\', "/");
    match text.rfind(".github/workflows/") {
        Some(at) => text[at..].to_string(),
        None => text,
    }
}

/// Parses YAML into JSON with the validator's reader, so `hangar run` and
/// `hangar validate` agree on every value: keys become strings, anchors and
/// aliases resolve, numbers are GitHub's (integral ones without a fraction).
pub fn load_yaml(path: &Path, text: &str) -> Result<Value, String> {
    parse_yaml(path, text).map(|node| node.to_json())
}

/// [`load_yaml`] with the positions kept.
fn parse_yaml(path: &Path, text: &str) -> Result<hangar_workflow::yaml::Node, String> {
    if text.trim().is_empty() {
        return Err(format!("{}: file is empty", path.display()));
    }
    hangar_workflow::yaml::parse(text).map_err(|errors| {
        errors
            .iter()
            .map(|e| {
                format!(
                    "{}:{}:{}: {}",
                    path.display(),
                    e.pos.line,
                    e.pos.column,
                    e.message
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unnamed_workflow_is_named_by_its_repository_path() {
        let text = "on: push\njobs: {}\n";
        let w = Workflow::parse(Path::new("/home/u/repo/.github/workflows/ci.yml"), text).unwrap();
        assert_eq!(w.name, ".github/workflows/ci.yml");
        let w = Workflow::parse(Path::new("other/x.yml"), text).unwrap();
        assert_eq!(w.name, "other/x.yml");
        let w = Workflow::parse(
            Path::new("/r/.github/workflows/ci.yml"),
            "name: CI\non: push\njobs: {}\n",
        )
        .unwrap();
        assert_eq!(w.name, "CI");
    }

    #[test]
    fn events_in_all_forms() {
        let p = Path::new("w.yml");
        let w = Workflow::parse(p, "on: push\njobs: {}\n").unwrap();
        assert_eq!(w.events(), ["push"]);
        let w = Workflow::parse(p, "on: [push, pull_request]\njobs: {}\n").unwrap();
        assert_eq!(w.events(), ["push", "pull_request"]);
        let w = Workflow::parse(
            p,
            "on:\n  workflow_dispatch:\n  push: {branches: [main]}\njobs: {}\n",
        )
        .unwrap();
        assert_eq!(w.events(), ["workflow_dispatch", "push"]);
    }

    /// A shape the planner cannot use is refused where it is written (a
    /// `needs:` mapping once planned a job that waited for nothing).
    #[test]
    fn shapes_the_model_cannot_use_are_refused_at_their_position() {
        let e = Workflow::parse(
            Path::new("w.yml"),
            "on: push\njobs:\n  a: {steps: [{run: x}]}\n  b:\n    needs: {a: 1}\n    steps: [{run: x}]\n",
        )
        .unwrap_err();
        assert_eq!(e, "w.yml:5:12: `needs` must be a string, found a mapping");
    }

    #[test]
    fn bad_input_gets_positioned_errors() {
        let p = Path::new("w.yml");
        let e = Workflow::parse(p, "on: push\njobs:\n  a: [\n").unwrap_err();
        assert!(e.starts_with("w.yml:"), "{e}");
        assert!(Workflow::parse(p, "").unwrap_err().contains("empty"));
        let e = Workflow::parse(
            p,
            "on: push\njobs:\n  1bad:\n    runs-on: x\n    steps: [{run: x}]\n",
        )
        .unwrap_err();
        assert!(e.contains("invalid"), "{e}");
        let e = Workflow::parse(
            p,
            "on: push\njobs:\n  a:\n    steps: [{uses: actions/checkout}]\n",
        )
        .unwrap_err();
        assert!(e.contains("{org}/{repo}"), "{e}");
    }
}
