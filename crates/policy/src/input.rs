//! Input files parsed to JSON values, one per document (multi-document YAML
//! yields one per `---` section), each with the line the document starts on.

use std::path::Path;

use anyhow::{Result, anyhow};
use serde_json::Value;

use crate::dockerfile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Yaml,
    Json,
    Toml,
    Dockerfile,
}

pub struct Document {
    pub value: Value,
    /// 0-based index within the file.
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
}

pub fn kind_of(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name == "dockerfile"
        || name == "containerfile"
        || name.starts_with("dockerfile.")
        || name.ends_with(".dockerfile")
    {
        return Some(Kind::Dockerfile);
    }
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "yaml" | "yml" => Some(Kind::Yaml),
        "json" => Some(Kind::Json),
        "toml" => Some(Kind::Toml),
        _ => None,
    }
}

pub fn parse(path: &Path, text: &str) -> Result<Vec<Document>> {
    let kind = kind_of(path).ok_or_else(|| {
        anyhow!(
            "{}: unknown input kind (expected .yaml, .yml, .json, .toml or a Dockerfile)",
            path.display()
        )
    })?;
    let file = path.display();
    match kind {
        Kind::Json => {
            let value = serde_json::from_str(text)
                .map_err(|e| anyhow!("{file}:{}:{}: invalid JSON: {e}", e.line(), e.column()))?;
            Ok(vec![Document {
                value,
                index: 0,
                line: 1,
            }])
        }
        Kind::Toml => {
            let value: Value = toml::from_str(text).map_err(|e| {
                let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
                anyhow!("{file}:{line}:{col}: invalid TOML: {}", e.message())
            })?;
            Ok(vec![Document {
                value,
                index: 0,
                line: 1,
            }])
        }
        Kind::Dockerfile => Ok(vec![Document {
            value: dockerfile::parse(text),
            index: 0,
            line: 1,
        }]),
        Kind::Yaml => {
            let starts = yaml_document_starts(text);
            let mut docs = Vec::new();
            for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
                let value: serde_yaml::Value =
                    serde::Deserialize::deserialize(de).map_err(|e| match e.location() {
                        Some(l) => anyhow!("{file}:{}:{}: invalid YAML: {e}", l.line(), l.column()),
                        None => anyhow!("{file}: invalid YAML: {e}"),
                    })?;
                // Empty documents (a trailing `---`) carry nothing to check.
                if value.is_null() {
                    continue;
                }
                let value = yaml_to_json(value);
                docs.push(Document {
                    value,
                    index,
                    line: starts.get(index).copied().unwrap_or(1),
                });
            }
            Ok(docs)
        }
    }
}

/// serde_yaml's mapping keys may be non-strings; JSON's (and Rego's input) are strings.
fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

fn yaml_document_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    let mut first_content_seen = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") {
            if first_content_seen {
                starts.push(i + 1);
            } else {
                starts[0] = i + 1;
                first_content_seen = true;
            }
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            first_content_seen = true;
        }
    }
    starts
}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|p| p + 1).unwrap_or(0) + 1;
    (line, col)
}
