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
            let nodes = hangar_workflow::yaml::parse_stream(text).map_err(|errors| {
                let e = &errors[0];
                anyhow!(
                    "{file}:{}:{}: invalid YAML: {}",
                    e.pos.line,
                    e.pos.column,
                    e.message
                )
            })?;
            Ok(nodes
                .iter()
                .enumerate()
                // Empty documents (a trailing `---`) carry nothing to check.
                .filter(|(_, node)| node.kind != hangar_workflow::yaml::Kind::Null)
                .map(|(index, node)| Document {
                    value: node.to_json(),
                    index,
                    line: starts.get(index).copied().unwrap_or(1),
                })
                .collect())
        }
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
