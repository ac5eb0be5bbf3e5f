//! `hangar.yml`: the services a project runs and the environments it deploys to.
//!
//! The file is read with `serde-saphyr`, which deserialises YAML straight into
//! these types and reports the line and column of any syntax or type error.
//! Rules that serde cannot express (unknown `depends_on`, dependency cycles,
//! canary steps that do not end at 100) are checked afterwards by [`validate`],
//! using the positions kept in [`Spanned`] fields. The `release:` and `scan:`
//! sections are kept as raw JSON values: their crates parse them.

mod duration;
mod model;
pub mod refs;
pub mod starter;
mod validate;

pub use duration::{parse_duration, parse_percent};
pub use model::*;
pub use validate::validate;

use std::fmt;
use std::path::Path;

/// A positioned problem in `hangar.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    /// What the user can do about it.
    pub help: Option<String>,
}

impl fmt::Display for ProjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProjectError {}

/// Every problem found in one file, in source order.
#[derive(Debug, Clone)]
pub struct ProjectErrors(pub Vec<ProjectError>);

impl fmt::Display for ProjectErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProjectErrors {}

/// At most this many type errors are collected from one file: each one costs
/// a parse of the whole file.
const MAX_TYPE_ERRORS: usize = 20;

/// Parses and validates the text of a `hangar.yml`, reporting every problem.
///
/// serde stops at the first error, so after one the offending key (its line
/// and the lines nested under it) is blanked out, which keeps every other
/// line where it was, and the text is read again; the rules of [`validate`]
/// then run on what could be read.
pub fn parse(file: &str, text: &str) -> Result<Project, ProjectErrors> {
    let mut errors = Vec::new();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut blanked: Vec<String> = Vec::new();
    let mut current = text.to_string();
    let project = loop {
        match serde_saphyr::from_str::<Project>(&current) {
            Ok(p) => break Some(p),
            Err(err) => {
                let (line, column) = err
                    .location()
                    .map(|l| (l.line() as u32, l.column() as u32))
                    .unwrap_or((1, 1));
                let raw = first_line(&err.to_string());
                // A key we blanked is not also missing.
                if let Some(missing) = between(&raw, "missing field `", "`")
                    && blanked.iter().any(|k| k == missing)
                {
                    break None;
                }
                let (message, help) = explain(&raw, text, line, column);
                // A strategy written as a block mapping fails on a line
                // under `strategy:`: the error is the `strategy:` line's, and
                // that line (with what is under it) is what is blanked.
                let (line, column) = if message.contains(STRATEGY_SHAPE) {
                    strategy_key_above(&lines, line as usize)
                        .map(|(l, c)| (l as u32, c as u32))
                        .filter(|(l, _)| *l != line)
                        .unwrap_or((line, column))
                } else {
                    (line, column)
                };
                errors.push(ProjectError {
                    file: file.to_string(),
                    line,
                    column,
                    message,
                    help,
                });
                if raw.contains("missing field") || errors.len() >= MAX_TYPE_ERRORS {
                    break None;
                }
                match blank_key(&mut lines, line as usize) {
                    Some(key) => blanked.push(key),
                    None => break None,
                }
                current = lines.join("\n");
            }
        }
    };
    if let Some(project) = &project {
        errors.extend(validate(file, project));
    }
    errors.sort_by_key(|e| (e.line, e.column));
    errors.dedup();
    match project {
        Some(p) if errors.is_empty() => Ok(p),
        _ => Err(ProjectErrors(errors)),
    }
}

/// The message of a `strategy:` that is not one word.
const STRATEGY_SHAPE: &str =
    "`strategy` is one word: `rolling`, `blue-green` or `canary`, not a mapping or a list";

/// The line (1-based) of the `strategy:` key at or above `line`, and the
/// column of its value.
fn strategy_key_above(lines: &[String], line: usize) -> Option<(usize, usize)> {
    let at = line.checked_sub(1)?;
    let limit = indent(lines.get(at)?);
    (0..=at).rev().find_map(|i| {
        let l = &lines[i];
        let own = indent(l);
        (key_of(l) == Some("strategy") && (i == at || own < limit)).then(|| {
            (
                i + 1,
                l.find("strategy:").map_or(own, |c| c + "strategy:".len()) + 2,
            )
        })
    })
}

/// The text between `start` and the next `end` in `s`.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The key a block-style line starts with (`  run: x` -> `run`).
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start_matches(' ').trim_start_matches("- ");
    let (k, _) = t.split_once(':')?;
    let k = k.trim().trim_matches('"').trim_matches('\'');
    (!k.is_empty() && !k.contains(['{', '[', ' ', '#'])).then_some(k)
}

/// Blanks line `line` (1-based) and the lines nested under it; returns its key.
fn blank_key(lines: &mut [String], line: usize) -> Option<String> {
    let i = line.checked_sub(1)?;
    let key = key_of(lines.get(i)?)?.to_string();
    let own = indent(&lines[i]);
    lines[i].clear();
    for l in lines.iter_mut().skip(i + 1) {
        if !l.trim().is_empty() && indent(l) <= own {
            break;
        }
        l.clear();
    }
    // A parent left with nothing under it would read as null, a new error
    // of ours: it becomes an empty mapping, on the same line.
    let parent = lines[..i]
        .iter()
        .rposition(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && indent(l) < own);
    if let Some(pi) = parent {
        let p_indent = indent(&lines[pi]);
        let has_child = lines[pi + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) > p_indent)
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        let trimmed = lines[pi].trim_end().to_string();
        if !has_child && trimmed.ends_with(':') {
            lines[pi] = format!("{trimmed} {{}}");
        }
    }
    Some(key)
}

/// The key whose value is at `column` (1-based) of `line`: the word before
/// the last `:` ahead of it, inside a flow mapping (`{a: 1, b: x}`) too.
fn key_before(line: &str, column: usize) -> Option<String> {
    let prefix: String = line.chars().take(column.saturating_sub(1)).collect();
    let colon = prefix.rfind(':')?;
    let word: String = prefix[..colon]
        .chars()
        .rev()
        .take_while(|c| !matches!(c, '{' | ',' | ' ' | '[' | '-'))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let word = word.trim_matches('"').trim_matches('\'').to_string();
    (!word.is_empty()).then_some(word)
}

/// The keys leading to `line` (1-based), outermost first, read from the
/// indentation of the lines above it; the line's own key is included when
/// the error is in its value (`column` past the key).
fn path_to(text: &str, line: usize, column: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(at) = line.checked_sub(1).filter(|i| *i < lines.len()) else {
        return Vec::new();
    };
    let mut path = Vec::new();
    let mut limit = indent(lines[at]);
    if let Some(k) = key_of(lines[at])
        && column > limit + k.len() + 1
    {
        path.push(k.to_string());
    }
    for l in lines[..at].iter().rev() {
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let i = indent(l);
        if i < limit
            && let Some(k) = key_of(l)
        {
            path.push(k.to_string());
            limit = i;
            if i == 0 {
                break;
            }
        }
    }
    path.reverse();
    path
}

/// The scalar written at `line`:`column` (1-based).
fn value_at(text: &str, line: usize, column: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let rest: String = l.chars().skip(column.saturating_sub(1)).collect();
    let v: String = rest
        .chars()
        .take_while(|c| !matches!(c, ',' | '}' | ']' | '#'))
        .collect();
    let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
    (!v.is_empty()).then_some(v)
}

/// Turns serde's wording into the user's: the service or environment named,
/// types explained, a did-you-mean for keys and values.
fn explain(raw: &str, text: &str, line: u32, column: u32) -> (String, Option<String>) {
    let (line, column) = (line as usize, column as usize);
    // serde-saphyr repeats the position at the start of its message.
    let raw = match raw.strip_prefix("line ") {
        Some(rest) if rest.contains(" column ") => rest.split_once(": ").map_or(raw, |(_, m)| m),
        _ => raw,
    };
    let path = path_to(text, line, column);
    let value = value_at(text, line, column).unwrap_or_default();
    let key = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| key_before(l, column))
        .or_else(|| path.last().cloned())
        .unwrap_or_else(|| "this value".into());
    // `strategy:` is one word; its settings have keys of their own. serde's
    // words for any other shape ("externally tagged enum", "unit enum
    // variant") say nothing a user can act on.
    let strategy_line = text.lines().nth(line.saturating_sub(1)).is_some_and(|l| {
        l.trim_start()
            .trim_start_matches("- ")
            .starts_with("strategy:")
    });
    let written_as = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.split_once("strategy:"))
        .map(|(_, v)| v.trim_start().to_string())
        .unwrap_or_default();
    let in_strategy = path.iter().any(|k| k == "strategy") || (strategy_line && key == "strategy");
    let (message, help) = if in_strategy
        && (!raw.contains("unknown variant") || written_as.starts_with(['{', '[']))
    {
        (
            STRATEGY_SHAPE.to_string(),
            Some(
                "write the strategy's settings under their own key of the environment, e.g.\n    strategy: blue-green\n    blue_green: { scale_down_delay: 30s }\n(or `rolling: { max_surge: 1 }`, `canary: { steps: [10, 50, 100] }`)"
                    .into(),
            ),
        )
    } else if let Some(field) = between(raw, "unknown field `", "`")
        && matches!(field, "strategy" | "rolling" | "blue_green" | "canary")
        && path.first().is_some_and(|s| s == "services")
    {
        (
            format!("`{field}` is not a key of a service"),
            Some(
                "a deployment strategy is set per environment (`environments: { prod: { strategy: blue-green } }`); a service holding data is marked `stateful: true` instead, and is restarted in place, never blue-greened or canaried"
                    .to_string(),
            ),
        )
    } else if let Some(field) = between(raw, "unknown field `", "`") {
        let known: Vec<&str> = raw
            .split_once("expected one of ")
            .map(|(_, l)| l.split(", ").map(|k| k.trim_matches('`')).collect())
            .unwrap_or_default();
        (
            format!("unknown key `{field}`"),
            Some(
                match hangar_diag::did_you_mean(field, known.iter().copied()) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => format!("the keys allowed here are: {}", known.join(", ")),
                },
            ),
        )
    } else if let Some(variant) = between(raw, "unknown variant `", "`") {
        let known: Vec<&str> = raw
            .split_once("expected one of ")
            .map(|(_, l)| l.split(", ").map(|k| k.trim_matches('`')).collect())
            .unwrap_or_default();
        (
            format!("`{variant}` is not a valid `{key}`"),
            Some(
                match hangar_diag::did_you_mean(variant, known.iter().copied()) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => format!("use one of: {}", known.join(", ")),
                },
            ),
        )
    } else if let Some(field) = between(raw, "missing field `", "`") {
        (
            format!("`{field}` is required here"),
            (field == "run").then(|| {
                "`run:` is the shell command that starts one instance, listening on $PORT".into()
            }),
        )
    } else if [
        "invalid u8",
        "invalid u16",
        "invalid u32",
        "invalid u64",
        "invalid usize",
        "invalid i32",
        "invalid i64",
    ]
    .iter()
    .any(|t| raw.starts_with(t))
    {
        (
            format!("`{key}` must be a whole number, not `{value}`"),
            Some(format!("for example `{key}: 2`")),
        )
    } else if raw.starts_with("invalid boolean") {
        (
            format!("`{key}` must be true or false, not `{value}`"),
            None,
        )
    } else if raw.starts_with("invalid f32") || raw.starts_with("invalid f64") {
        (format!("`{key}` must be a number, not `{value}`"), None)
    } else if raw.contains("expected mapping") {
        (
            format!("`{key}` must be a mapping of keys to values"),
            Some(format!(
                "write `{key}:` followed by indented `key: value` lines, or `{key}: {{ key: value }}`"
            )),
        )
    } else if raw.contains("expected sequence") {
        (
            format!("`{key}` must be a list"),
            Some(format!(
                "write `{key}: [a, b]`, or `- item` lines under `{key}:`"
            )),
        )
    } else {
        (raw.to_string(), None)
    };
    let owner = match path.as_slice() {
        [section, name, ..] if section == "services" => format!("service `{name}`: "),
        [section, name, ..] if section == "environments" => format!("environment `{name}`: "),
        _ => String::new(),
    };
    (format!("{owner}{message}"), help)
}

/// Reads `hangar.yml` (or `hangar.yaml`) from a project directory.
pub fn load(
    dir: &Path,
) -> Result<(std::path::PathBuf, Project), Box<dyn std::error::Error + Send + Sync>> {
    for name in ["hangar.yml", "hangar.yaml"] {
        let path = dir.join(name);
        if path.is_file() {
            let text = std::fs::read_to_string(&path)?;
            let project = parse(&path.display().to_string(), &text)?;
            return Ok((path, project));
        }
    }
    Err(format!(
        "no hangar.yml in {}: create one with a `services:` section, e.g. `services: {{ web: {{ run: ./server --port $PORT }} }}`",
        dir.display()
    )
    .into())
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    // Drop a leading "error: " or a location prefix the library may add.
    line.trim_start_matches("error: ").to_string()
}
