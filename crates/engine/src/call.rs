//! Calls of reusable workflows (`jobs.<id>.uses: ./.github/workflows/x.yml`
//! or `OWNER/REPO/.github/workflows/x.yml@REF`), once for `hangar run` and
//! for the server: the nesting and cycle check, the called workflow's
//! `inputs` from the caller's `with:`, its `secrets` from the caller's
//! mapping or `inherit`, its `outputs` mapped back from its jobs, and the
//! caller's conclusion from its jobs'. Whoever drives the call (the local
//! run loop, the server's scheduler) fetches the file and runs the jobs.

use std::collections::BTreeMap;

use hangar_expr::{Contexts, Host, Value as EValue};
use serde_json::{Map, Value, json};

use crate::evaluate::{eval_scalar, eval_tree};
use crate::report::Conclusion;
use crate::workflow::Workflow;

/// Levels of reusable workflows below the caller GitHub runs (ten levels of
/// workflows in all), as `hangar validate` checks them.
pub fn max_nested_depth() -> usize {
    hangar_workflow::Limits::default().max_nested_depth
}

/// Whether `uses` may be called from the end of `chain` (the calling
/// workflows, the triggered one first, each as its `uses:` names it): not a
/// workflow already on the chain (a cycle would call for ever), and not
/// deeper than GitHub's limit. The message names the chain.
pub fn check_chain(chain: &[String], uses: &str) -> Result<(), String> {
    let same = |a: &str| a.trim_start_matches("./") == uses.trim_start_matches("./");
    if chain.iter().any(|c| same(c)) {
        let mut path: Vec<&str> = chain.iter().map(String::as_str).collect();
        path.push(uses);
        return Err(format!(
            "`{uses}` calls itself through {}: a cycle of reusable workflows is never run",
            path.join(" -> ")
        ));
    }
    let depth = chain.len();
    let max = max_nested_depth();
    if depth > max {
        return Err(format!(
            "Nested reusable workflow depth exceeded {max}: `{uses}` would be called {depth} levels below the triggered workflow ({})",
            chain.join(" -> ")
        ));
    }
    Ok(())
}

/// A local call names a file of this repository's `.github/workflows`.
pub fn is_local(uses: &str) -> bool {
    uses.starts_with("./")
}

/// The called workflow read from `text`, refused unless it has
/// `on: workflow_call`.
pub fn callee(path: &std::path::Path, text: &str) -> Result<Workflow, String> {
    let wf = Workflow::parse(path, text)?;
    check_callable(&wf)?;
    Ok(wf)
}

/// Refuses a workflow that cannot be called.
pub fn check_callable(wf: &Workflow) -> Result<(), String> {
    if !wf.events().iter().any(|e| e == "workflow_call") {
        return Err(format!(
            "{}: the called workflow has no `on: workflow_call`",
            crate::workflow::repo_path(&wf.path)
        ));
    }
    Ok(())
}

fn call_config(called: &Workflow) -> Value {
    called
        .event_config("workflow_call")
        .cloned()
        .unwrap_or(Value::Null)
}

/// The called workflow's `inputs` context: each declared input from the
/// caller's `with:` (evaluated over the caller's contexts `cx`), else its
/// default, typed as declared (a required one missing is an error naming
/// `key`, the calling job); undeclared `with:` keys are kept as given.
pub fn inputs(
    called: &Workflow,
    with: Option<&Value>,
    cx: &Contexts,
    host: &dyn Host,
    key: &str,
    uses: &str,
) -> Result<Map<String, Value>, String> {
    let cfg = call_config(called);
    let with = with.cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    if let Some(Value::Object(defs)) = cfg.get("inputs") {
        for (name, def) in defs {
            let given = with.as_object().and_then(|w| {
                w.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            });
            let raw = match given {
                Some(v) => eval_tree(&v, cx, host)?,
                None => match def.get("default") {
                    Some(d) => eval_tree(d, cx, host)?,
                    None => {
                        if def.get("required").and_then(Value::as_bool) == Some(true) {
                            return Err(format!(
                                "job '{key}': input '{name}' is required by {uses}"
                            ));
                        }
                        match def.get("type").and_then(Value::as_str) {
                            Some("boolean") => json!(false),
                            Some("number") => json!(0),
                            _ => json!(""),
                        }
                    }
                },
            };
            let typed = match (def.get("type").and_then(Value::as_str), &raw) {
                (Some("boolean"), Value::String(s)) => json!(s == "true"),
                (Some("number"), Value::String(s)) => {
                    s.parse::<f64>().map(|n| json!(n)).unwrap_or(raw.clone())
                }
                _ => raw,
            };
            out.insert(name.clone(), typed);
        }
    }
    if let Value::Object(w) = &with {
        for (k, v) in w {
            if !out.keys().any(|i| i.eq_ignore_ascii_case(k)) {
                out.insert(k.clone(), eval_tree(v, cx, host)?);
            }
        }
    }
    Ok(out)
}

/// The called workflow's secrets from the caller's `secrets:` (`inherit`:
/// all of `parent`; a mapping: each value evaluated over `cx` plus
/// `secrets` = `parent`; absent: none). `parent` is what the caller itself
/// holds, so a fork's pull request, which holds none, passes none on.
pub fn secrets(
    mapping: Option<&Value>,
    parent: &BTreeMap<String, String>,
    cx: &Contexts,
    host: &dyn Host,
) -> Result<BTreeMap<String, String>, String> {
    match mapping {
        Some(Value::String(s)) if s == "inherit" => Ok(parent.clone()),
        Some(Value::Object(m)) => {
            let mut scx = cx.clone();
            let sec: Map<String, Value> =
                parent.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            scx.insert("secrets", EValue::from(&Value::Object(sec)));
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let value = eval_scalar(v, &scx, host)?;
                // A mapped secret the caller does not hold is absent, as
                // an unset secret is on GitHub.
                if !value.is_empty() {
                    out.insert(k.clone(), value);
                }
            }
            Ok(out)
        }
        _ => Ok(BTreeMap::new()),
    }
}

/// The caller's outputs: `on.workflow_call.outputs.<name>.value` evaluated
/// over the caller's contexts `cx` with the called workflow's own `inputs`
/// and `jobs` (each called job's `result` and `outputs`), as GitHub
/// evaluates them.
pub fn outputs(
    called: &Workflow,
    inputs: &Map<String, Value>,
    jobs: Map<String, Value>,
    cx: &Contexts,
    host: &dyn Host,
) -> Result<BTreeMap<String, String>, String> {
    let cfg = call_config(called);
    let mut out = BTreeMap::new();
    if let Some(Value::Object(defs)) = cfg.get("outputs") {
        let mut ocx = cx.clone();
        ocx.insert("inputs", EValue::from(&Value::Object(inputs.clone())));
        ocx.insert("jobs", EValue::from(&Value::Object(jobs)));
        for (name, def) in defs {
            if let Some(v) = def.get("value") {
                out.insert(name.clone(), eval_scalar(v, &ocx, host)?);
            }
        }
    }
    Ok(out)
}

/// The caller's conclusion from its called jobs': failure over cancelled
/// over success (skipped called jobs do not fail the caller).
pub fn conclusion(jobs: impl IntoIterator<Item = Conclusion>) -> Conclusion {
    let jobs: Vec<Conclusion> = jobs.into_iter().collect();
    if jobs.contains(&Conclusion::Failure) {
        Conclusion::Failure
    } else if jobs.contains(&Conclusion::Cancelled) {
        Conclusion::Cancelled
    } else {
        Conclusion::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_and_too_deep_a_chain_are_refused_naming_the_chain() {
        let chain = vec![
            "./.github/workflows/ci.yml".to_string(),
            "./.github/workflows/a.yml".into(),
        ];
        let e = check_chain(&chain, "./.github/workflows/ci.yml").unwrap_err();
        assert!(
            e.contains("ci.yml -> ./.github/workflows/a.yml -> ./.github/workflows/ci.yml"),
            "{e}"
        );
        assert!(check_chain(&chain, "./.github/workflows/b.yml").is_ok());
        let deep: Vec<String> = (0..=max_nested_depth())
            .map(|i| format!("./w{i}.yml"))
            .collect();
        let e = check_chain(&deep, "./x.yml").unwrap_err();
        assert!(
            e.starts_with("Nested reusable workflow depth exceeded 9"),
            "{e}"
        );
        assert!(check_chain(&deep[..max_nested_depth()], "./x.yml").is_ok());
    }

    #[test]
    fn inputs_are_typed_defaulted_and_required() {
        let wf = callee(
            std::path::Path::new(".github/workflows/r.yml"),
            "on:\n  workflow_call:\n    inputs:\n      n: {type: number, required: true}\n      flag: {type: boolean, default: true}\n      who: {type: string, default: '${{ github.actor }}'}\njobs: {}\n",
        )
        .unwrap();
        let cx = Contexts::from_json(&json!({"github": {"actor": "dev"}, "matrix": {"n": "4"}}));
        let host = hangar_expr::DefaultHost;
        let with = json!({"n": "${{ matrix.n }}"});
        let i = inputs(&wf, Some(&with), &cx, &host, "call", "./r.yml").unwrap();
        assert_eq!(
            Value::Object(i),
            json!({"n": 4.0, "flag": true, "who": "dev"})
        );
        let e = inputs(&wf, None, &cx, &host, "call", "./r.yml").unwrap_err();
        assert_eq!(e, "job 'call': input 'n' is required by ./r.yml");
        let e = callee(std::path::Path::new("x.yml"), "on: push\njobs: {}\n").unwrap_err();
        assert!(e.contains("no `on: workflow_call`"), "{e}");
    }

    #[test]
    fn secrets_pass_only_what_the_caller_holds() {
        let parent = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let cx = Contexts::new();
        let host = hangar_expr::DefaultHost;
        assert_eq!(
            secrets(Some(&json!("inherit")), &parent, &cx, &host).unwrap(),
            parent
        );
        let m = json!({"T": "${{ secrets.A }}", "U": "${{ secrets.NOPE }}"});
        let got = secrets(Some(&m), &parent, &cx, &host).unwrap();
        assert_eq!(got, BTreeMap::from([("T".to_string(), "1".to_string())]));
        assert!(secrets(None, &parent, &cx, &host).unwrap().is_empty());
        assert!(
            secrets(Some(&json!("inherit")), &BTreeMap::new(), &cx, &host)
                .unwrap()
                .is_empty()
        );
    }
}
