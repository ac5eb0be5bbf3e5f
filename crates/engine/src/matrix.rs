//! Matrix expansion with GitHub's `include` / `exclude` rules.

use serde_json::{Map, Value};

/// Expands an evaluated `strategy.matrix` into legs (each a map of values).
/// `None` / empty matrix: one leg with no values (the caller runs the job once).
pub fn expand(matrix: Option<&Value>) -> Result<Vec<Map<String, Value>>, String> {
    let Some(matrix) = matrix else {
        return Ok(vec![Map::new()]);
    };
    let m = match matrix {
        Value::Object(m) => m,
        Value::Null => return Ok(vec![Map::new()]),
        other => return Err(format!("strategy.matrix must be a mapping, got {other}")),
    };
    let mut combos: Vec<Map<String, Value>> = vec![Map::new()];
    let mut has_dims = false;
    for (key, values) in m {
        if key == "include" || key == "exclude" {
            continue;
        }
        let values = match values {
            Value::Array(a) => a.clone(),
            other => {
                return Err(format!(
                    "strategy.matrix.{key} must be a sequence of values, got {other}"
                ));
            }
        };
        if values.is_empty() {
            return Err(format!(
                "strategy.matrix.{key}: the list of values is empty"
            ));
        }
        has_dims = true;
        let mut next = Vec::with_capacity(combos.len() * values.len());
        for combo in &combos {
            for v in &values {
                let mut c = combo.clone();
                c.insert(key.clone(), v.clone());
                next.push(c);
            }
        }
        combos = next;
    }
    if !has_dims {
        combos.clear();
    }
    if let Some(exclude) = m.get("exclude") {
        let excludes = as_list(exclude, "exclude")?;
        combos.retain(|c| !excludes.iter().any(|e| partial_match(c, e)));
    }
    // Values from the product are protected; include entries may only add keys
    // or overwrite values added by earlier includes.
    let originals: Vec<Map<String, Value>> = combos.clone();
    if let Some(include) = m.get("include") {
        for entry in as_list(include, "include")? {
            let mut added = false;
            for (i, combo) in combos.iter_mut().enumerate().take(originals.len()) {
                let original = &originals[i];
                let conflicts = entry
                    .iter()
                    .any(|(k, v)| original.get(k).is_some_and(|o| o != v));
                if !conflicts {
                    for (k, v) in &entry {
                        combo.insert(k.clone(), v.clone());
                    }
                    added = true;
                }
            }
            if !added {
                combos.push(entry.clone());
            }
        }
    }
    if combos.is_empty() && !has_dims {
        combos.push(Map::new());
    }
    if combos.is_empty() {
        return Err(
            "strategy.matrix: every combination is excluded; the job would never run".into(),
        );
    }
    Ok(combos)
}

fn as_list(v: &Value, what: &str) -> Result<Vec<Map<String, Value>>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Object(m) => Ok(m.clone()),
                other => Err(format!(
                    "strategy.matrix.{what}: entries must be mappings, got {other}"
                )),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(format!(
            "strategy.matrix.{what} must be a sequence, got {other}"
        )),
    }
}

/// Every key of `pattern` matches `combo` (nested mappings compared partially).
fn partial_match(combo: &Map<String, Value>, pattern: &Map<String, Value>) -> bool {
    pattern.iter().all(|(k, pv)| match (combo.get(k), pv) {
        (Some(Value::Object(cv)), Value::Object(pm)) => partial_match(cv, pm),
        (Some(cv), pv) => loosely_equal(cv, pv),
        (None, _) => false,
    })
}

fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::String(y)) | (Value::String(y), Value::Number(x)) => {
            x.to_string() == *y
        }
        _ => a == b,
    }
}

/// `name (v1, v2)` as GitHub names matrix legs.
pub fn leg_name(base: &str, leg: &Map<String, Value>) -> String {
    if leg.is_empty() {
        return base.to_string();
    }
    let parts: Vec<String> = leg.values().map(flat).collect();
    format!("{base} ({})", parts.join(", "))
}

fn flat(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m.values().map(flat).collect::<Vec<_>>().join(", "),
        Value::Array(a) => a.iter().map(flat).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn github_documented_include_example() {
        let m = json!({
            "fruit": ["apple", "pear"],
            "animal": ["cat", "dog"],
            "include": [
                {"color": "green"},
                {"color": "pink", "animal": "cat"},
                {"fruit": "apple", "shape": "circle"},
                {"fruit": "banana"},
                {"fruit": "banana", "animal": "cat"}
            ]
        });
        let legs = expand(Some(&m)).unwrap();
        let j: Vec<Value> = legs.into_iter().map(Value::Object).collect();
        assert_eq!(
            j,
            vec![
                json!({"fruit":"apple","animal":"cat","color":"pink","shape":"circle"}),
                json!({"fruit":"apple","animal":"dog","color":"green","shape":"circle"}),
                json!({"fruit":"pear","animal":"cat","color":"pink"}),
                json!({"fruit":"pear","animal":"dog","color":"green"}),
                json!({"fruit":"banana"}),
                json!({"fruit":"banana","animal":"cat"}),
            ]
        );
    }

    #[test]
    fn exclude_and_include_only() {
        let m = json!({"os": ["a", "b"], "v": [1, 2], "exclude": [{"os": "a", "v": 2}]});
        assert_eq!(expand(Some(&m)).unwrap().len(), 3);
        let m = json!({"include": [{"x": 1}, {"x": 2}]});
        assert_eq!(expand(Some(&m)).unwrap().len(), 2);
        assert_eq!(expand(None).unwrap().len(), 1);
        assert!(expand(Some(&json!({"os": []}))).is_err());
    }
}
