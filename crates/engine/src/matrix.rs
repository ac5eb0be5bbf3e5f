//! Matrix expansion with GitHub's `include` / `exclude` rules.
//!
//! As GitHub builds a matrix: the cross product of the vectors (every key
//! but `include` and `exclude`), minus the combinations an `exclude` entry
//! matches; then each `include` entry is split into filter values (keys that
//! are vectors of the matrix) and extra values (other keys). An entry whose
//! filter matches a combination adds its extra values to it (a later entry's
//! extra values replace an earlier one's; the product's own values are never
//! replaced, since those keys are filters); an entry that matches no
//! combination becomes a combination of its own, filter values first.
//! Matching compares each leaf of an entry (into nested mappings and
//! sequences) with `==` as expressions do: strings ignore case, values of
//! different kinds compare as numbers.

use hangar_expr::Value as EValue;
use serde_json::{Map, Value};

/// One combination: its `matrix` context and the values that name it.
#[derive(Clone, Debug, PartialEq)]
pub struct Leg {
    pub matrix: Map<String, Value>,
    /// The scalars of the product values (an include's extra values added to
    /// a product combination are not part of its name), depth first.
    pub segments: Vec<String>,
}

/// Expands an evaluated `strategy.matrix` into legs (each a map of values).
/// `None` / empty matrix: one leg with no values (the caller runs the job once).
/// GitHub's limit on the legs of one job's matrix.
pub const MAX_LEGS: usize = 256;
/// Combinations looked at before `exclude`: bounds the work a hostile matrix
/// (six vectors of a hundred values) can ask for.
const MAX_COMBINATIONS: usize = 65_536;

pub fn expand(matrix: Option<&Value>) -> Result<Vec<Map<String, Value>>, String> {
    Ok(legs(matrix)?.into_iter().map(|l| l.matrix).collect())
}

/// [`expand`], with the values GitHub names each leg by.
pub fn legs(matrix: Option<&Value>) -> Result<Vec<Leg>, String> {
    let Some(matrix) = matrix else {
        return Ok(vec![Leg {
            matrix: Map::new(),
            segments: Vec::new(),
        }]);
    };
    let m = match matrix {
        Value::Object(m) => m,
        Value::Null => {
            return Ok(vec![Leg {
                matrix: Map::new(),
                segments: Vec::new(),
            }]);
        }
        other => return Err(format!("strategy.matrix must be a mapping, got {other}")),
    };
    let mut vectors: Vec<(&String, &Vec<Value>)> = Vec::new();
    for (key, values) in m {
        if key == "include" || key == "exclude" {
            continue;
        }
        match values {
            Value::Array(a) if a.is_empty() => {
                return Err(format!(
                    "strategy.matrix.{key}: the list of values is empty"
                ));
            }
            Value::Array(a) => vectors.push((key, a)),
            other => {
                return Err(format!(
                    "strategy.matrix.{key} must be a sequence of values, got {other}"
                ));
            }
        }
    }
    let excludes = match m.get("exclude") {
        Some(e) => as_list(e, "exclude")?,
        None => Vec::new(),
    };
    for (i, e) in excludes.iter().enumerate() {
        if e.is_empty() {
            return Err(format!(
                "strategy.matrix.exclude[{i}]: an exclude entry must not be empty"
            ));
        }
        if let Some(k) = e.keys().find(|k| !vectors.iter().any(|(v, _)| v == k)) {
            return Err(format!(
                "strategy.matrix.exclude[{i}]: key '{k}' does not match any key within the matrix"
            ));
        }
    }
    // Each include entry as (filter, extra).
    let mut includes: Vec<(Map<String, Value>, Map<String, Value>)> = Vec::new();
    if let Some(include) = m.get("include") {
        for (i, entry) in as_list(include, "include")?.into_iter().enumerate() {
            if entry.is_empty() {
                return Err(format!(
                    "strategy.matrix.include[{i}]: an include entry must contain values"
                ));
            }
            let (filter, extra): (Map<String, Value>, Map<String, Value>) = entry
                .into_iter()
                .partition(|(k, _)| vectors.iter().any(|(v, _)| *v == k));
            includes.push((filter, extra));
        }
    }
    let mut matched = vec![false; includes.len()];
    let mut out = Vec::new();
    let size: usize = if vectors.is_empty() {
        0
    } else {
        vectors
            .iter()
            .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()))
            .filter(|n| *n <= MAX_COMBINATIONS)
            .ok_or_else(|| {
                format!(
                    "strategy.matrix: more than {MAX_COMBINATIONS} combinations before exclude; a job has at most {MAX_LEGS} legs"
                )
            })?
    };
    for index in 0..size {
        let mut combo = Map::new();
        let mut block = size;
        for (name, values) in &vectors {
            block /= values.len();
            combo.insert(
                (*name).clone(),
                values[(index / block) % values.len()].clone(),
            );
        }
        if excludes.iter().any(|e| matches(&combo, e)) {
            continue;
        }
        let segments = segments_of(&combo);
        let mut extra = Map::new();
        for (i, (filter, add)) in includes.iter().enumerate() {
            if matches(&combo, filter) {
                matched[i] = true;
                for (k, v) in add {
                    extra.insert(k.clone(), v.clone());
                }
            }
        }
        combo.extend(extra);
        out.push(Leg {
            matrix: combo,
            segments,
        });
    }
    for ((filter, extra), matched) in includes.into_iter().zip(matched) {
        if matched {
            continue;
        }
        let mut combo = filter;
        combo.extend(extra);
        let segments = segments_of(&combo);
        out.push(Leg {
            matrix: combo,
            segments,
        });
    }
    if out.len() > MAX_LEGS {
        return Err(format!(
            "strategy.matrix: {} legs; a job has at most {MAX_LEGS} (GitHub's limit)",
            out.len()
        ));
    }
    if out.is_empty() && vectors.is_empty() {
        out.push(Leg {
            matrix: Map::new(),
            segments: Vec::new(),
        });
    }
    if out.is_empty() {
        return Err(
            "strategy.matrix: every combination is excluded; the job would never run".into(),
        );
    }
    Ok(out)
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

/// Every leaf of `filter` equals (as `==` does) the value at the same path in
/// `combo`; an empty filter matches everything.
fn matches(combo: &Map<String, Value>, filter: &Map<String, Value>) -> bool {
    filter
        .iter()
        .all(|(k, f)| leaf_matches(combo.get(k).unwrap_or(&Value::Null), f))
}

fn leaf_matches(value: &Value, filter: &Value) -> bool {
    match filter {
        Value::Object(fm) => fm.iter().all(|(k, f)| {
            // A path into a non-mapping reads as null, as `matrix.a.b` does.
            let v = match value {
                Value::Object(vm) => vm
                    .iter()
                    .find(|(vk, _)| hangar_expr::eq_ignore_case(vk, k))
                    .map(|(_, v)| v),
                _ => None,
            };
            leaf_matches(v.unwrap_or(&Value::Null), f)
        }),
        Value::Array(fa) => fa.iter().enumerate().all(|(i, f)| {
            let v = match value {
                Value::Array(va) => va.get(i),
                _ => None,
            };
            leaf_matches(v.unwrap_or(&Value::Null), f)
        }),
        literal => EValue::from(value).loose_eq(&EValue::from(literal)),
    }
}

/// The scalar leaves of a combination, depth first, as GitHub names a leg by
/// them (null and empty strings leave no segment).
fn segments_of(combo: &Map<String, Value>) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.values().for_each(|v| walk(v, out)),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Null => {}
            scalar => {
                let s = EValue::from(scalar).to_display_string().into_owned();
                if !s.is_empty() {
                    out.push(s);
                }
            }
        }
    }
    let mut out = Vec::new();
    combo.values().for_each(|v| walk(v, &mut out));
    out
}

/// `name (v1, v2)` as GitHub names matrix legs, from every scalar of `leg`.
pub fn leg_name(base: &str, leg: &Map<String, Value>) -> String {
    display_name(base, &segments_of(leg))
}

/// `name (s1, s2)`, cut to GitHub's 100 characters with `...`.
pub fn display_name(base: &str, segments: &[String]) -> String {
    let name = if segments.is_empty() {
        base.to_string()
    } else {
        format!("{base} ({})", segments.join(", "))
    };
    if name.chars().count() > 100 {
        let mut cut: String = name.chars().take(97).collect();
        cut.push_str("...");
        cut
    } else {
        name
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

    #[test]
    fn include_never_overwrites_product_values_and_matches_like_expressions() {
        // `os: A` matches `a` (strings ignore case), `v: '1'` matches 1; the
        // product value is kept, the include's extra value added.
        let m = json!({
            "os": ["a", "b"],
            "v": [1],
            "include": [{"os": "A", "v": "1", "extra": "x"}, {"os": "b", "extra": "y"}, {"extra": "z", "os": "c"}]
        });
        let legs = legs(Some(&m)).unwrap();
        let j: Vec<Value> = legs
            .iter()
            .map(|l| Value::Object(l.matrix.clone()))
            .collect();
        assert_eq!(
            j,
            vec![
                json!({"os": "a", "v": 1, "extra": "x"}),
                json!({"os": "b", "v": 1, "extra": "y"}),
                // Unmatched: the filter values (matrix keys) come first.
                json!({"os": "c", "extra": "z"}),
            ]
        );
        // A leg is named by its product values only; a new combination by all.
        assert_eq!(display_name("build", &legs[0].segments), "build (a, 1)");
        assert_eq!(display_name("build", &legs[2].segments), "build (c, z)");
    }

    #[test]
    fn object_values_match_partially_and_name_by_their_scalars() {
        let m = json!({
            "cfg": [{"os": "linux", "ver": [1, 2]}, {"os": "mac", "ver": [3]}],
            "exclude": [{"cfg": {"ver": [3]}}],
            "include": [{"cfg": {"os": "LINUX"}, "tag": "l"}]
        });
        let legs = legs(Some(&m)).unwrap();
        assert_eq!(legs.len(), 1);
        assert_eq!(legs[0].matrix["tag"], "l");
        assert_eq!(display_name("t", &legs[0].segments), "t (linux, 1, 2)");
        let long = display_name("j", &[str::repeat("x", 120)]);
        assert_eq!(long.len(), 100);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn bad_include_and_exclude_entries_are_errors() {
        let e = expand(Some(&json!({"os": ["a"], "exclude": [{"arch": "x"}]}))).unwrap_err();
        assert!(e.contains("'arch' does not match any key"), "{e}");
        assert!(expand(Some(&json!({"os": ["a"], "exclude": [{}]}))).is_err());
        assert!(expand(Some(&json!({"os": ["a"], "include": [{}]}))).is_err());
        let e = expand(Some(&json!({"os": ["a"], "exclude": [{"os": "A"}]}))).unwrap_err();
        assert!(e.contains("every combination is excluded"), "{e}");
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn a_matrix_is_capped_at_256_legs_and_bounded_work() {
        let ok =
            serde_json::json!({"a": (0..16).collect::<Vec<_>>(), "b": (0..16).collect::<Vec<_>>()});
        assert_eq!(legs(Some(&ok)).unwrap().len(), 256);
        let over =
            serde_json::json!({"a": (0..16).collect::<Vec<_>>(), "b": (0..17).collect::<Vec<_>>()});
        assert!(legs(Some(&over)).unwrap_err().contains("at most 256"));
        let v: Vec<i64> = (0..100).collect();
        let huge = serde_json::json!({"a": v, "b": v, "c": v, "d": v, "e": v, "f": v});
        assert!(legs(Some(&huge)).unwrap_err().contains("combinations"));
    }
}
