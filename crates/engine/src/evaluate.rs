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
