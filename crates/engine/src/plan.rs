//! Planning: which workflows an event triggers, and the `needs` graph of their
//! jobs in stages (jobs of one stage only need jobs of earlier stages).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::schedule::Graph;
use crate::workflow::{Workflow, needs};

/// Workflow files of `path`: the file itself, or the `*.yml` / `*.yaml` files
/// directly in the directory (not recursive, as act), sorted by name. Files
/// that fail to parse are reported per file.
pub fn workflow_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A workflow file that could not be read, with why.
pub type LoadError = (PathBuf, String);

/// Loads every workflow of `path`; returns the good ones and the files that
/// failed, so a caller can explain each with a snippet.
pub fn load_workflows(path: &Path) -> Result<(Vec<Arc<Workflow>>, Vec<LoadError>), String> {
    let mut good = Vec::new();
    let mut errors = Vec::new();
    for f in workflow_files(path)? {
        match Workflow::load(&f) {
            Ok(w) => good.push(Arc::new(w)),
            Err(e) => errors.push((f, e)),
        }
    }
    Ok((good, errors))
}

/// The jobs of `wf` in stages. With `only`, just that job and what it needs.
/// Unknown `needs` and cycles are errors naming the job.
pub fn stages(wf: &Workflow, only: Option<&str>) -> Result<Vec<Vec<String>>, String> {
    let ids: Vec<String> = wf.jobs().map(|(id, _)| id.to_string()).collect();
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in &wf.model.jobs {
        let id = job.id.name.as_str();
        let n: Vec<String> = job.needs_ids().map(String::from).collect();
        for d in &n {
            if !ids.iter().any(|i| i == d) {
                return Err(format!(
                    "{}: unable to build dependency graph for {id}: job '{id}' needs '{d}', which does not exist",
                    wf.path.display()
                ));
            }
        }
        deps.insert(id.to_string(), n);
    }
    let mut selected: Vec<String> = match only {
        None => ids.clone(),
        Some(j) => {
            if !deps.contains_key(j) {
                return Ok(Vec::new());
            }
            let mut out = Vec::new();
            let mut todo = vec![j.to_string()];
            while let Some(x) = todo.pop() {
                if out.contains(&x) {
                    continue;
                }
                todo.extend(deps[&x].iter().cloned());
                out.push(x);
            }
            out
        }
    };
    selected.sort_by_key(|s| ids.iter().position(|i| i == s));
    // The scheduler's check, so a cycle is named as `hangar validate` names it.
    graph_of(&selected, &deps).map_err(|e| format!("{}: {e}", wf.path.display()))?;
    let mut level: HashMap<String, usize> = HashMap::new();
    let mut remaining = selected.clone();
    let mut out: Vec<Vec<String>> = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<String> = remaining
            .iter()
            .filter(|id| deps[*id].iter().all(|d| level.contains_key(d)))
            .cloned()
            .collect();
        if ready.is_empty() {
            return Err(format!(
                "{}: unable to build dependency graph: the `needs` of {} form a cycle",
                wf.path.display(),
                remaining.join(", ")
            ));
        }
        for r in &ready {
            level.insert(r.clone(), out.len());
        }
        remaining.retain(|r| !ready.contains(r));
        out.push(ready);
    }
    Ok(out)
}

/// The scheduler's graph of `wf`'s jobs (with `only`, just that job and what
/// it needs); unknown `needs` and cycles are errors naming the job.
pub fn graph(wf: &Workflow, only: Option<&str>) -> Result<Graph, String> {
    let selected: Vec<String> = stages(wf, only)?.into_iter().flatten().collect();
    let deps: BTreeMap<String, Vec<String>> = wf
        .jobs()
        .map(|(id, job)| (id.to_string(), needs(job)))
        .collect();
    graph_of(&selected, &deps).map_err(|e| format!("{}: {e}", wf.path.display()))
}

fn graph_of(
    selected: &[String],
    deps: &BTreeMap<String, Vec<String>>,
) -> Result<Graph, crate::schedule::GraphError> {
    Graph::new(
        selected
            .iter()
            .map(|id| (id.clone(), deps.get(id).cloned().unwrap_or_default())),
    )
}

/// Workflows triggered by `event` (all when `event` is `None`).
pub fn for_event(workflows: &[Arc<Workflow>], event: Option<&str>) -> Vec<Arc<Workflow>> {
    workflows
        .iter()
        .filter(|w| event.is_none_or(|e| w.events().iter().any(|x| x == e)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(text: &str) -> Workflow {
        Workflow::parse(Path::new("w.yml"), text).unwrap()
    }

    #[test]
    fn stages_follow_needs() {
        let w = wf(
            "on: push\njobs:\n  c: {needs: [a, b], steps: [{run: x}]}\n  a: {steps: [{run: x}]}\n  b: {needs: a, steps: [{run: x}]}\n",
        );
        assert_eq!(
            stages(&w, None).unwrap(),
            vec![vec!["a"], vec!["b"], vec!["c"]]
        );
        assert_eq!(stages(&w, Some("b")).unwrap(), vec![vec!["a"], vec!["b"]]);
    }

    #[test]
    fn cycles_and_unknown_needs_are_errors() {
        let w = wf(
            "on: push\njobs:\n  a: {needs: b, steps: [{run: x}]}\n  b: {needs: a, steps: [{run: x}]}\n",
        );
        assert!(
            stages(&w, None)
                .unwrap_err()
                .contains("creates a cycle in the dependency graph: a -> b -> a")
        );
        let w = wf("on: push\njobs:\n  a: {needs: nope, steps: [{run: x}]}\n");
        assert!(stages(&w, None).unwrap_err().contains("'nope'"));
    }
}
