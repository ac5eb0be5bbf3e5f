//! Evaluating `${{ }}` inside workflow values: strings, and whole trees (matrix
//! definitions, `with:` maps), including GitHub's `${{ insert }}` merge key.

use hangar_expr::{Contexts, Host, Template, Value as EValue};
use serde_json::{Map, Value};

/// Evaluates a string template to text; plain text is returned as is.
pub fn eval_string(text: &str, cx: &Contexts, host: &dyn Host) -> Result<String, String> {
    if !text.contains("${{") {
        return Ok(text.to_string());
    }
    let t =
        Template::parse(text).map_err(|e| format!("{}: in {text:?}", e.github_message(text)))?;
    t.eval_to_string(cx, host)
        .map_err(|e| format!("{e}: in {text:?}"))
}

/// Evaluates a string keeping the type of a single `${{ }}` (a `fromJSON`
/// gives an object or array).
pub fn eval_typed(text: &str, cx: &Contexts, host: &dyn Host) -> Result<Value, String> {
    if !text.contains("${{") {
        return Ok(Value::String(text.to_string()));
    }
    let t =
        Template::parse(text).map_err(|e| format!("{}: in {text:?}", e.github_message(text)))?;
    t.eval_to_value(cx, host)
        .map(|v| v.to_json())
        .map_err(|e| format!("{e}: in {text:?}"))
}

/// A job's `environment:` (`NAME` or `{name: NAME, url: ...}`, as the
/// workflow's JSON tree holds it) evaluated to the environment's name: the
/// one reading of it for `hangar run` and the server, over the contexts
/// GitHub offers `jobs.<id>.environment` (`github`, `inputs`, `matrix`,
/// `needs`, `strategy`, `vars`). `Ok(None)`: no environment. Else the name
/// evaluated and trimmed (empty when it evaluated to nothing: the server
/// reads that as no environment, `hangar run` refuses it) and as written.
pub fn environment_name(
    environment: &Value,
    cx: &Contexts,
    host: &dyn Host,
) -> Result<Option<(String, String)>, String> {
    let raw = match environment {
        Value::Object(m) => match m.get("name") {
            Some(v) => v,
            None => return Ok(None),
        },
        v => v,
    };
    let written = match raw {
        Value::String(s) => s.clone(),
        Value::Null => return Ok(None),
        other => other.to_string(),
    };
    let name = eval_scalar(raw, cx, host)?.trim().to_string();
    Ok(Some((name, written)))
}

/// A scalar workflow value as text after evaluation (`true`, `3`, templates).
pub fn eval_scalar(v: &Value, cx: &Contexts, host: &dyn Host) -> Result<String, String> {
    match v {
        Value::String(s) => eval_string(s, cx, host),
        Value::Null => Ok(String::new()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(EValue::from(&Value::Number(n.clone()))
            .to_display_string()
            .into_owned()),
        other => Ok(other.to_string()),
    }
}

fn is_insert_key(key: &str) -> bool {
    key.trim()
        .strip_prefix("${{")
        .and_then(|k| k.strip_suffix("}}"))
        .is_some_and(|k| k.trim() == "insert")
}

/// Evaluates every string in a tree; keys too. In a sequence, an element that
/// is a single expression yielding an array is spliced in; `${{ insert }}`
/// merges its mapping into the parent.
pub fn eval_tree(v: &Value, cx: &Contexts, host: &dyn Host) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => eval_typed(s, cx, host)?,
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let spliced =
                    matches!(item, Value::String(s) if hangar_expr::is_single_expression(s));
                match eval_tree(item, cx, host)? {
                    Value::Array(inner) if spliced => out.extend(inner),
                    other => out.push(other),
                }
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, val) in map {
                if is_insert_key(k) {
                    if let Value::Object(m) = eval_tree(val, cx, host)? {
                        out.extend(m);
                    }
                    continue;
                }
                let key = eval_string(k, cx, host)?;
                out.insert(key, eval_tree(val, cx, host)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// What GitHub evaluates of a job (one matrix leg) as it starts, over its
/// job-level contexts (`github`, `needs`, `vars`, `inputs`, `matrix`,
/// `strategy`): the one reading of `name:` and `continue-on-error:` for
/// `hangar run` and the server, so both show the same names and conclude
/// alike. (`timeout-minutes` and `env` are read where the job runs, by the
/// engine on both paths.)
#[derive(Clone, Debug, PartialEq)]
pub struct JobStart {
    /// The name shown: `name:` evaluated when it holds an expression, else
    /// the name planned with the leg (`name (v1, v2)`); `None`: the job id.
    pub name: Option<String>,
    /// A failure of this job (leg) is shown, but neither fails the run nor
    /// the jobs that need it: they see `success`.
    pub continue_on_error: bool,
}

/// A job-level key that could not be evaluated: the key (for its line and
/// column in the workflow) and why, as the job's error.
#[derive(Clone, Debug, PartialEq)]
pub struct JobKeyError {
    pub key: &'static str,
    pub message: String,
}

/// [`JobStart`] of job `job_id` (its mapping `job`, as the workflow's JSON
/// tree holds it), `planned` being the name planned for the leg. An error
/// fails the job before anything runs, at the key it names.
pub fn job_start(
    job: &Value,
    job_id: &str,
    planned: Option<String>,
    cx: &Contexts,
    host: &dyn Host,
) -> Result<JobStart, JobKeyError> {
    let fail = |key: &'static str, e: String| JobKeyError {
        key,
        message: format!("job '{job_id}': `{key}`: {e}"),
    };
    let name = match job.get("name") {
        Some(Value::String(n)) if n.contains("${{") => {
            Some(eval_string(n, cx, host).map_err(|e| fail("name", e))?)
        }
        _ => planned,
    };
    let continue_on_error = match job.get("continue-on-error") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            match eval_typed(s, cx, host).map_err(|e| fail("continue-on-error", e))? {
                Value::Bool(b) => b,
                // `${{ matrix.experimental }}` on a leg that does not set it.
                Value::Null => false,
                Value::String(t) if t.is_empty() || t == "false" => false,
                Value::String(t) if t == "true" => true,
                Value::String(t) => {
                    return Err(fail(
                        "continue-on-error",
                        format!("expected true or false, got `{t}`"),
                    ));
                }
                other => {
                    return Err(fail(
                        "continue-on-error",
                        format!("expected true or false, got `{other}`"),
                    ));
                }
            }
        }
        Some(other) => {
            return Err(fail(
                "continue-on-error",
                format!("expected true or false, got `{other}`"),
            ));
        }
    };
    Ok(JobStart {
        name,
        continue_on_error,
    })
}

#[cfg(test)]
mod job_start_tests {
    use super::*;
    use serde_json::json;

    fn start(job: Value) -> Result<JobStart, JobKeyError> {
        let cx = Contexts::from_json(&json!({
            "matrix": {"os": "linux", "experimental": true},
            "github": {"ref_name": "feature/x"},
        }));
        job_start(
            &job,
            "build",
            Some("planned".into()),
            &cx,
            &hangar_expr::DefaultHost,
        )
    }

    #[test]
    fn names_and_continue_on_error_are_evaluated_per_leg() {
        let s = start(
            json!({"name": "build (${{ matrix.os }}, ${{ github.ref_name }})",
            "continue-on-error": "${{ matrix.experimental }}"}),
        )
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("build (linux, feature/x)"));
        assert!(s.continue_on_error);
        // A plain name keeps the planned one (with the leg's values).
        let s = start(json!({"name": "build", "continue-on-error": false})).unwrap();
        assert_eq!(s.name.as_deref(), Some("planned"));
        assert!(!s.continue_on_error);
        // A leg without the value does not continue on error.
        let s = start(json!({"continue-on-error": "${{ matrix.missing }}"})).unwrap();
        assert!(!s.continue_on_error);
    }

    #[test]
    fn a_key_that_cannot_be_evaluated_is_named() {
        let e = start(json!({"name": "${{ fromJSON('{') }}"})).unwrap_err();
        assert_eq!(e.key, "name");
        assert!(
            e.message.starts_with("job 'build': `name`: "),
            "{}",
            e.message
        );
        let e = start(json!({"continue-on-error": "${{ matrix.os }}"})).unwrap_err();
        assert_eq!(e.key, "continue-on-error");
        assert!(
            e.message.contains("expected true or false, got `linux`"),
            "{}",
            e.message
        );
        let e = start(json!({"continue-on-error": 3})).unwrap_err();
        assert_eq!(e.key, "continue-on-error");
    }
}
