//! Findings shared by hangar's scanners (secrets, policy, dependencies), and
//! the renderings every one of them offers: a `file:line:col` text line, a
//! workflow-command annotation, and SARIF 2.1.0 for code-scanning UIs.
//!
//! Each scanner keeps its own JSON report (its fields differ) and maps its
//! results onto [`Finding`] for the shared renderings, so SARIF is written in
//! exactly one place.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// How serious a finding is, in SARIF's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Note,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// Where a finding is. Lines and columns are 1-based; `line` 0 means the
/// finding is about the file as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Relative to the scan root, `/`-separated.
    pub path: String,
    pub line: u32,
    pub column: Option<u32>,
    pub end_line: Option<u32>,
    pub end_column: Option<u32>,
}

impl Location {
    /// A whole-line location in `file`, relative to `root` when it lies under it.
    pub fn line_in(
        file: &std::path::Path,
        root: Option<&std::path::Path>,
        line: usize,
    ) -> Location {
        let file = root.and_then(|r| file.strip_prefix(r).ok()).unwrap_or(file);
        Location {
            path: file.display().to_string().replace('\\', "/"),
            line: u32::try_from(line.max(1)).unwrap_or(u32::MAX),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule_id: String,
    pub level: Level,
    pub message: String,
    pub location: Option<Location>,
    /// Stable identity across runs (baselines, code-scanning deduplication).
    pub fingerprint: Option<String>,
    /// Scanner-specific facts (commit, package, namespace, …).
    pub properties: Map<String, Value>,
}

/// A rule as code-scanning UIs list it.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    pub id: String,
    pub description: String,
    pub help_uri: Option<String>,
}

/// The scanner that produced a report.
pub struct Tool<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

/// `path:line:col: level[rule]: message`, the shape editors and terminals link.
pub fn text_line(f: &Finding) -> String {
    let place = match &f.location {
        Some(l) if l.line > 0 => match l.column {
            Some(c) => format!("{}:{}:{}: ", l.path, l.line, c),
            None => format!("{}:{}: ", l.path, l.line),
        },
        Some(l) => format!("{}: ", l.path),
        None => String::new(),
    };
    format!("{place}{}[{}]: {}", f.level.as_str(), f.rule_id, f.message)
}

/// A GitHub workflow command (`::error file=…,line=…,col=…,title=…::message`):
/// how a finding becomes an annotation in a run.
pub fn annotation(f: &Finding) -> String {
    let mut props = Vec::new();
    if let Some(l) = &f.location {
        props.push(format!("file={}", escape_property(&l.path)));
        if l.line > 0 {
            props.push(format!("line={}", l.line));
            if let Some(c) = l.column {
                props.push(format!("col={c}"));
            }
            if let Some(e) = l.end_line {
                props.push(format!("endLine={e}"));
            }
        }
    }
    props.push(format!("title={}", escape_property(&f.rule_id)));
    let cmd = match f.level {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Note => "notice",
    };
    format!("::{cmd} {}::{}", props.join(","), escape_data(&f.message))
}

/// Escaping of a workflow command's message, as the runner defines it.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escaping of a workflow command's property values.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// A SARIF 2.1.0 log with one run. Rules not given in `rules` but used by a
/// finding are listed with their id only, so every `ruleIndex` resolves.
pub fn sarif(tool: &Tool, rules: &[RuleInfo], findings: &[Finding]) -> Value {
    let mut listed: Vec<RuleInfo> = Vec::new();
    for f in findings {
        if listed.iter().any(|r| r.id == f.rule_id) {
            continue;
        }
        listed.push(
            rules
                .iter()
                .find(|r| r.id == f.rule_id)
                .cloned()
                .unwrap_or(RuleInfo {
                    id: f.rule_id.clone(),
                    description: String::new(),
                    help_uri: None,
                }),
        );
    }
    let sarif_rules: Vec<Value> = listed
        .iter()
        .map(|r| {
            let mut o = Map::new();
            o.insert("id".into(), json!(r.id));
            o.insert("name".into(), json!(r.id));
            if !r.description.is_empty() {
                o.insert("shortDescription".into(), json!({"text": r.description}));
            }
            if let Some(u) = &r.help_uri {
                o.insert("helpUri".into(), json!(u));
            }
            Value::Object(o)
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut o = Map::new();
            o.insert("ruleId".into(), json!(f.rule_id));
            let index = listed.iter().position(|r| r.id == f.rule_id).unwrap_or(0);
            o.insert("ruleIndex".into(), json!(index));
            o.insert("level".into(), json!(f.level.as_str()));
            o.insert("message".into(), json!({"text": f.message}));
            if let Some(l) = &f.location {
                let mut region = Map::new();
                if l.line > 0 {
                    region.insert("startLine".into(), json!(l.line));
                    if let Some(c) = l.column {
                        region.insert("startColumn".into(), json!(c));
                    }
                    if let Some(e) = l.end_line {
                        region.insert("endLine".into(), json!(e));
                    }
                    if let Some(e) = l.end_column {
                        region.insert("endColumn".into(), json!(e));
                    }
                }
                let mut physical = Map::new();
                physical.insert(
                    "artifactLocation".into(),
                    json!({"uri": l.path.replace('\\', "/")}),
                );
                if !region.is_empty() {
                    physical.insert("region".into(), Value::Object(region));
                }
                o.insert(
                    "locations".into(),
                    json!([{"physicalLocation": Value::Object(physical)}]),
                );
            }
            if let Some(fp) = &f.fingerprint {
                o.insert(
                    "partialFingerprints".into(),
                    json!({"hangarFingerprint/v1": fp}),
                );
            }
            if !f.properties.is_empty() {
                o.insert("properties".into(), Value::Object(f.properties.clone()));
            }
            Value::Object(o)
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": tool.name,
                "version": tool.version,
                "rules": sarif_rules,
            }},
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            rule_id: "aws-access-key-id".into(),
            level: Level::Error,
            message: "AWS access key, 50% sure\nsecond line".into(),
            location: Some(Location {
                path: "src/a,b.py".into(),
                line: 3,
                column: Some(7),
                end_line: Some(3),
                end_column: Some(27),
            }),
            fingerprint: Some("abc".into()),
            properties: Map::new(),
        }
    }

    #[test]
    fn annotations_escape_as_the_runner_expects() {
        assert_eq!(
            annotation(&finding()),
            "::error file=src/a%2Cb.py,line=3,col=7,endLine=3,title=aws-access-key-id::AWS access key, 50%25 sure%0Asecond line"
        );
    }

    #[test]
    fn text_lines_link_to_the_position() {
        assert_eq!(
            text_line(&finding()),
            "src/a,b.py:3:7: error[aws-access-key-id]: AWS access key, 50% sure\nsecond line"
        );
    }

    #[test]
    fn sarif_indexes_every_rule_used() {
        let mut other = finding();
        other.rule_id = "unlisted".into();
        other.location = None;
        let log = sarif(
            &Tool {
                name: "hangar",
                version: "0",
            },
            &[RuleInfo {
                id: "aws-access-key-id".into(),
                description: "AWS".into(),
                help_uri: None,
            }],
            &[finding(), other],
        );
        let run = &log["runs"][0];
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 2);
        assert_eq!(run["results"][1]["ruleIndex"], 1);
        assert_eq!(
            run["results"][0]["locations"][0]["physicalLocation"]["region"]["startColumn"],
            7
        );
        assert!(run["results"][1].get("locations").is_none());
    }
}
