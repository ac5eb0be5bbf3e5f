//! Reading gitleaks-format TOML configuration into a compiled [`RuleSet`].
//!
//! Teams bring the `.gitleaks.toml` they already have, so the file format is
//! gitleaks' own (v8.25+): `[[rules]]` with `regex`, `secretGroup`, `entropy`,
//! `keywords`, `path`, per-rule `[[rules.allowlists]]` (and the older single
//! `[rules.allowlist]`), a global `[allowlist]` / `[[allowlists]]`, and
//! `[extend]` with `useDefault`, `path` and `disabledRules`. hangar's own default
//! rules (`rules/default.toml`) are written in the same format, so the defaults
//! are one more configuration file, not a second code path.
//!
//! Unknown keys are errors with their position: a misspelt `secretgroup`
//! silently ignored would mean a rule that quietly reports the wrong thing.

use std::path::{Path, PathBuf};

use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;
use toml::Spanned;

use crate::rules::{Allowlist, Condition, RegexTarget, Rule, RuleSet};

/// hangar's default rule set, in gitleaks' format.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// A configuration that could not be read, with where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    extend: Option<RawExtend>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default)]
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExtend {
    #[serde(default)]
    use_default: bool,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    disabled_rules: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    regex: Option<Spanned<String>>,
    #[serde(default)]
    secret_group: Option<usize>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    skip_report: bool,
    #[serde(default)]
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
    #[serde(default)]
    required: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAllowlist {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    condition: Option<Spanned<String>>,
    #[serde(default)]
    regex_target: Option<Spanned<String>>,
    #[serde(default)]
    regexes: Vec<Spanned<String>>,
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    commits: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    target_rules: Vec<String>,
}

/// Where a configuration comes from: its name (for errors) and its text.
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
    /// Directory `[extend] path` is relative to.
    pub dir: Option<&'a Path>,
}

/// hangar's default rules.
pub fn default_rules() -> RuleSet {
    load(&Source {
        name: "hangar default rules",
        text: DEFAULT_RULES,
        dir: None,
    })
    .expect("the default rules compile (pinned by a test)")
}

/// Reads a gitleaks-format configuration file.
pub fn load_file(path: &Path) -> Result<RuleSet, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: path.display().to_string(),
        source,
    })?;
    let name = path.display().to_string();
    load(&Source {
        name: &name,
        text: &text,
        dir: path.parent(),
    })
}

/// Compiles a configuration, following `[extend]`.
pub fn load(src: &Source) -> Result<RuleSet, ConfigError> {
    let mut parts = Parts::default();
    collect(src, &mut parts, 0)?;
    Ok(RuleSet::new(parts.rules, parts.global))
}

#[derive(Default)]
struct Parts {
    rules: Vec<Rule>,
    global: Vec<Allowlist>,
}

fn collect(src: &Source, parts: &mut Parts, depth: usize) -> Result<(), ConfigError> {
    let at = |span: std::ops::Range<usize>, message: String| {
        let (line, column) = line_col(src.text, span.start);
        ConfigError::At {
            file: src.name.to_string(),
            line,
            column,
            message,
        }
    };
    let raw: RawConfig = toml::from_str(src.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        at(span, e.message().trim().to_string())
    })?;
    let _ = (&raw.title, &raw.description, &raw.min_version);

    // Extended configurations come first so this file's rules override theirs by id,
    // as gitleaks does.
    let mut disabled = Vec::new();
    if let Some(ext) = &raw.extend {
        if depth > 4 {
            return Err(at(0..0, "`[extend]` nests more than 4 levels deep".into()));
        }
        if ext.url.is_some() {
            return Err(at(
                0..0,
                "`[extend] url` is not supported: hangar scans offline; download the file and use `[extend] path`".into(),
            ));
        }
        if ext.use_default {
            let default = Source {
                name: "hangar default rules",
                text: DEFAULT_RULES,
                dir: None,
            };
            collect(&default, parts, depth + 1)?;
        }
        if let Some(path) = &ext.path {
            let full: PathBuf = match src.dir {
                Some(d) => d.join(path),
                None => PathBuf::from(path),
            };
            let text = std::fs::read_to_string(&full).map_err(|source| ConfigError::Io {
                file: full.display().to_string(),
                source,
            })?;
            let name = full.display().to_string();
            collect(
                &Source {
                    name: &name,
                    text: &text,
                    dir: full.parent(),
                },
                parts,
                depth + 1,
            )?;
        }
        disabled.clone_from(&ext.disabled_rules);
    }
    parts.rules.retain(|r| !disabled.contains(&r.id));

    for allow in raw.allowlist.iter().chain(&raw.allowlists) {
        parts.global.push(allowlist(allow, &at)?);
    }
    for spanned in &raw.rules {
        let span = spanned.span();
        let r = spanned.get_ref();
        if let Some(req) = &r.required {
            return Err(at(
                req.span(),
                format!(
                    "rule `{}`: composite rules (`[[rules.required]]`) are not supported; split it into separate rules",
                    r.id.get_ref()
                ),
            ));
        }
        if r.regex.is_none() && r.path.is_none() {
            return Err(at(
                span,
                format!(
                    "rule `{}` has neither `regex` nor `path`: give it at least one",
                    r.id.get_ref()
                ),
            ));
        }
        let regex = match &r.regex {
            Some(re) => Some(compile(re, &at, r.id.get_ref())?),
            None => None,
        };
        if let (Some(group), Some(re)) = (r.secret_group, &regex)
            && group >= re.captures_len()
        {
            return Err(at(
                span,
                format!(
                    "rule `{}`: secretGroup = {group} but the regex has only {} capture group(s)",
                    r.id.get_ref(),
                    re.captures_len() - 1
                ),
            ));
        }
        let path = match &r.path {
            Some(p) => Some(compile(p, &at, r.id.get_ref())?),
            None => None,
        };
        let mut allowlists = Vec::new();
        for allow in r.allowlist.iter().chain(&r.allowlists) {
            allowlists.push(allowlist(allow, &at)?);
        }
        let rule = Rule {
            id: r.id.get_ref().clone(),
            description: r.description.clone().unwrap_or_default(),
            regex,
            secret_group: r.secret_group.unwrap_or(0),
            entropy: r.entropy,
            keywords: r.keywords.iter().map(|k| k.to_ascii_lowercase()).collect(),
            path,
            tags: r.tags.clone(),
            allowlists,
            skip_report: r.skip_report,
        };
        // A later definition of an id replaces the earlier one (extension overrides).
        match parts.rules.iter_mut().find(|x| x.id == rule.id) {
            Some(existing) => *existing = rule,
            None => parts.rules.push(rule),
        }
    }
    // Global allowlists that name target rules belong to those rules.
    let (targeted, global): (Vec<Allowlist>, Vec<Allowlist>) = std::mem::take(&mut parts.global)
        .into_iter()
        .partition(|a| !a.target_rules.is_empty());
    parts.global = global;
    for allow in targeted {
        for rule in parts
            .rules
            .iter_mut()
            .filter(|r| allow.target_rules.contains(&r.id))
        {
            rule.allowlists.push(allow.clone());
        }
    }
    Ok(())
}

fn allowlist(
    raw: &RawAllowlist,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<Allowlist, ConfigError> {
    let condition = match raw
        .condition
        .as_ref()
        .map(|c| (c.span(), c.get_ref().to_ascii_uppercase()))
    {
        None => Condition::Or,
        Some((_, c)) if c == "OR" => Condition::Or,
        Some((_, c)) if c == "AND" => Condition::And,
        Some((span, c)) => {
            return Err(at(
                span,
                format!("allowlist condition must be \"OR\" or \"AND\", not \"{c}\""),
            ));
        }
    };
    let target = match raw
        .regex_target
        .as_ref()
        .map(|t| (t.span(), t.get_ref().as_str()))
    {
        None | Some((_, "secret")) | Some((_, "")) => RegexTarget::Secret,
        Some((_, "match")) => RegexTarget::Match,
        Some((_, "line")) => RegexTarget::Line,
        Some((span, other)) => {
            return Err(at(
                span,
                format!("regexTarget must be \"secret\", \"match\" or \"line\", not \"{other}\""),
            ));
        }
    };
    let what = raw.description.as_deref().unwrap_or("allowlist");
    Ok(Allowlist {
        condition,
        target,
        regexes: raw
            .regexes
            .iter()
            .map(|r| compile(r, at, what))
            .collect::<Result<_, _>>()?,
        paths: raw
            .paths
            .iter()
            .map(|r| compile(r, at, what))
            .collect::<Result<_, _>>()?,
        commits: raw.commits.clone(),
        stopwords: raw
            .stopwords
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        target_rules: raw.target_rules.clone(),
    })
}

/// Compiles in bytes mode with Unicode off: gitleaks' rules are byte-oriented
/// and Unicode-aware classes make the same patterns some twenty times slower.
fn compile(
    re: &Spanned<String>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
    owner: &str,
) -> Result<Regex, ConfigError> {
    build(re.get_ref()).map_err(|e| {
        at(
            re.span(),
            format!("`{owner}`: the regular expression does not compile: {e}"),
        )
    })
}

pub(crate) fn build(re: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&go_compatible(re))
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// gitleaks' patterns are Go RE2, where a `{` that does not start a counted
/// repetition (`{2}`, `{2,}`, `{2,5}`) is a literal brace; Rust's `regex`
/// rejects it. Escaping those braces is the only translation the 222 rules
/// of gitleaks' own configuration need.
fn go_compatible(re: &str) -> String {
    let bytes = re.as_bytes();
    let mut out = String::with_capacity(re.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\\' => {
                let end = (i + 2).min(bytes.len());
                out.push_str(&re[i..end]);
                i = end;
                continue;
            }
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'{' if !in_class => {
                match repetition_len(&bytes[i..]) {
                    Some(n) => {
                        out.push_str(&re[i..i + n]);
                        i += n;
                    }
                    None => {
                        out.push_str("\\{");
                        i += 1;
                    }
                }
                continue;
            }
            b'}' if !in_class => {
                out.push_str("\\}");
                i += 1;
                continue;
            }
            _ => {}
        }
        let ch = re[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Length of `{n}`, `{n,}` or `{n,m}` at the start of `s`, if it is one.
fn repetition_len(s: &[u8]) -> Option<usize> {
    let end = s.iter().position(|&b| b == b'}')?;
    let inner = &s[1..end];
    let mut parts = inner.splitn(2, |&b| b == b',');
    let first = parts.next().unwrap_or_default();
    let digits = |p: &[u8]| p.iter().all(u8::is_ascii_digit);
    (!first.is_empty() && digits(first) && parts.next().is_none_or(digits)).then_some(end + 1)
}

#[cfg(test)]
mod tests {
    use super::go_compatible;

    #[test]
    fn literal_braces_are_escaped_as_go_reads_them() {
        assert_eq!(go_compatible(r"^\$(?:\d+|{\d+})$"), r"^\$(?:\d+|\{\d+\})$");
        assert_eq!(go_compatible(r"a{2,5}b{3}c{1,}"), r"a{2,5}b{3}c{1,}");
        assert_eq!(go_compatible(r"[{}]\{x"), r"[{}]\{x");
        assert_eq!(go_compatible(r"\$\{\{[^}]+}}"), r"\$\{\{[^}]+\}\}");
    }
}
