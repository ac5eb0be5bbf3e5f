//! Whether a rule had anything to look at in a document.
//!
//! conftest counts a rule that produced no message as "passed", so a policy
//! written for another shape of input (an AdmissionReview's
//! `input.request.object` checked against a bare Pod) passes every file
//! while checking nothing. A rule *applies* to a document when it produced a
//! message, or when one of the `input` paths written in it reaches into the
//! document: every segment but the last resolves (the last may be absent:
//! `not input.spec.securityContext.runAsNonRoot` is a check on a Pod that has
//! a `spec`). Paths are read from the rule's text; a segment in brackets that
//! is not a string literal (`[_]`, `[i]`) matches any element.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Any,
}

/// The `input…` paths written in Rego text, in order, without duplicates.
pub(crate) fn input_paths(text: &str) -> Vec<Vec<Segment>> {
    let bytes = text.as_bytes();
    let mut out: Vec<Vec<Segment>> = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("input") {
        let start = i + at;
        i = start + 5;
        let before_ok = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        if !before_ok {
            continue;
        }
        let mut path = Vec::new();
        let mut j = i;
        loop {
            match bytes.get(j) {
                Some(b'.') => {
                    let from = j + 1;
                    let mut k = from;
                    while bytes
                        .get(k)
                        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    {
                        k += 1;
                    }
                    if k == from {
                        break;
                    }
                    path.push(Segment::Key(text[from..k].to_string()));
                    j = k;
                }
                Some(b'[') => {
                    let Some(close) = text[j..].find(']') else {
                        break;
                    };
                    let inner = text[j + 1..j + close].trim();
                    let segment =
                        if inner.len() >= 2 && inner.starts_with('"') && inner.ends_with('"') {
                            Segment::Key(inner[1..inner.len() - 1].to_string())
                        } else {
                            Segment::Any
                        };
                    path.push(segment);
                    j += close + 1;
                }
                _ => break,
            }
        }
        i = j.max(i);
        if !path.is_empty() && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// True when every segment of `path` but the last resolves in `doc`.
pub(crate) fn reaches(doc: &Value, path: &[Segment]) -> bool {
    let Some((_, parent)) = path.split_last() else {
        return true;
    };
    let mut current: Vec<&Value> = vec![doc];
    for segment in parent {
        let mut next = Vec::new();
        for value in current {
            match (segment, value) {
                (Segment::Key(k), Value::Object(o)) => next.extend(o.get(k)),
                (Segment::Key(k), Value::Array(a)) => {
                    next.extend(k.parse::<usize>().ok().and_then(|i| a.get(i)))
                }
                (Segment::Any, Value::Object(o)) => next.extend(o.values()),
                (Segment::Any, Value::Array(a)) => next.extend(a.iter()),
                _ => {}
            }
        }
        if next.is_empty() {
            return false;
        }
        current = next;
    }
    true
}

/// `input.a.b[_]` as written back for messages.
pub(crate) fn display(path: &[Segment]) -> String {
    let mut s = String::from("input");
    for segment in path {
        match segment {
            Segment::Key(k) if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                s.push('.');
                s.push_str(k);
            }
            Segment::Key(k) => s.push_str(&format!("[{k:?}]")),
            Segment::Any => s.push_str("[_]"),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_read_from_rule_text() {
        let paths = input_paths(
            r#"deny[msg] { input.request.kind.kind == "Pod"; c := input.request.object.spec.containers[_]; input.metadata.labels["app.kubernetes.io/name"]; myinput.x; data.input.y }"#,
        );
        let shown: Vec<String> = paths.iter().map(|p| display(p)).collect();
        assert_eq!(
            shown,
            [
                "input.request.kind.kind",
                "input.request.object.spec.containers[_]",
                r#"input.metadata.labels["app.kubernetes.io/name"]"#
            ]
        );
    }

    #[test]
    fn a_path_reaches_a_document_when_its_parent_resolves() {
        let pod = json!({"kind": "Pod", "spec": {"containers": [{"image": "x"}]}});
        let reach = |text: &str| reaches(&pod, &input_paths(text)[0]);
        assert!(reach("input.kind"));
        assert!(reach("input.spec.securityContext"));
        assert!(reach("input.spec.containers[_].securityContext"));
        assert!(!reach("input.request.kind.kind"));
        assert!(!reach("input.spec.securityContext.runAsNonRoot"));
    }
}
