//! Problem matchers (`::add-matcher::PATH`, `::remove-matcher owner=…::`): a
//! step registers regexes that turn matching output lines into annotations,
//! as GitHub's runner does for compilers and linters. The format is the
//! toolkit's: `{"problemMatcher": [{"owner", "severity"?, "pattern": [...]}]}`,
//! each pattern with a `regexp` and the group numbers of `file`, `line`,
//! `column`, `severity`, `code` and `message`; several patterns match
//! consecutive lines, and the last may `loop` over the lines that follow.
//! Registered matchers last for the rest of the job.

use regex::Regex;
use serde::Deserialize;

use crate::report::{Level, Location};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    problem_matcher: Vec<MatcherConfig>,
}

#[derive(Deserialize)]
struct MatcherConfig {
    owner: String,
    #[serde(default)]
    severity: Option<String>,
    pattern: Vec<PatternConfig>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatternConfig {
    regexp: String,
    file: Option<usize>,
    from_path: Option<usize>,
    line: Option<usize>,
    column: Option<usize>,
    severity: Option<usize>,
    code: Option<usize>,
    message: Option<usize>,
    #[serde(default, rename = "loop")]
    repeat: bool,
}

#[derive(Clone)]
struct Pattern {
    regex: Regex,
    config: PatternConfig,
}

#[derive(Clone)]
struct Matcher {
    owner: String,
    default_level: Level,
    patterns: Vec<Pattern>,
    /// Multi-line matching: the next pattern to try, and what the earlier
    /// ones captured.
    next: usize,
    partial: Fields,
}

#[derive(Clone, Default)]
struct Fields {
    file: Option<String>,
    from_path: Option<String>,
    line: Option<String>,
    column: Option<String>,
    severity: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

impl Fields {
    fn capture(&mut self, config: &PatternConfig, caps: &regex::Captures) {
        let group = |n: Option<usize>| {
            n.and_then(|n| caps.get(n))
                .map(|m| m.as_str().to_string())
                .filter(|s| !s.is_empty())
        };
        let set = |slot: &mut Option<String>, n: Option<usize>| {
            if let Some(v) = group(n) {
                *slot = Some(v);
            }
        };
        set(&mut self.file, config.file);
        set(&mut self.from_path, config.from_path);
        set(&mut self.line, config.line);
        set(&mut self.column, config.column);
        set(&mut self.severity, config.severity);
        set(&mut self.code, config.code);
        set(&mut self.message, config.message);
    }
}

/// A problem found in a line of output.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub level: Level,
    pub message: String,
    pub location: Location,
}

/// The matchers registered in a job, newest first (a background step
/// works on a copy: what it registers stays its own).
#[derive(Clone, Default)]
pub struct Matchers {
    list: Vec<Matcher>,
}

impl Matchers {
    /// Registers the matchers of a config file's text; a matcher with the
    /// owner of one already registered replaces it. The whole file is
    /// refused when any part is invalid, with what to fix.
    pub fn add(&mut self, text: &str) -> Result<(), String> {
        let file: ConfigFile =
            serde_json::from_str(text).map_err(|e| format!("invalid problem matcher file: {e}"))?;
        let mut added = Vec::new();
        for m in file.problem_matcher {
            if m.owner.trim().is_empty() {
                return Err("a problem matcher needs an `owner`".into());
            }
            if m.pattern.is_empty() {
                return Err(format!("problem matcher `{}`: no `pattern`", m.owner));
            }
            let last = m.pattern.len() - 1;
            let mut patterns = Vec::new();
            for (i, p) in m.pattern.into_iter().enumerate() {
                if p.repeat && (i != last || last == 0) {
                    return Err(format!(
                        "problem matcher `{}`: only the last of several patterns may `loop`",
                        m.owner
                    ));
                }
                let regex = Regex::new(&p.regexp)
                    .map_err(|e| format!("problem matcher `{}`: invalid regexp: {e}", m.owner))?;
                patterns.push(Pattern { regex, config: p });
            }
            if !patterns.iter().any(|p| p.config.message.is_some()) {
                return Err(format!(
                    "problem matcher `{}`: no pattern sets `message`",
                    m.owner
                ));
            }
            let default_level = match m.severity.as_deref().map(str::to_ascii_lowercase) {
                Some(s) if s == "warning" => Level::Warning,
                Some(s) if s == "notice" => Level::Notice,
                _ => Level::Error,
            };
            added.push(Matcher {
                owner: m.owner,
                default_level,
                patterns,
                next: 0,
                partial: Fields::default(),
            });
        }
        for m in added {
            self.remove(&m.owner);
            self.list.insert(0, m);
        }
        Ok(())
    }

    /// Unregisters the matcher of `owner` (no error when there is none).
    pub fn remove(&mut self, owner: &str) {
        self.list.retain(|m| m.owner != owner);
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Offers one output line to the matchers, newest first; the first that
    /// completes a match reports its issue.
    pub fn line(&mut self, line: &str) -> Option<Issue> {
        self.list.iter_mut().find_map(|m| m.line(line))
    }
}

impl Matcher {
    fn line(&mut self, line: &str) -> Option<Issue> {
        let last = self.patterns.len() - 1;
        if self.next > 0 {
            let pattern = &self.patterns[self.next];
            if let Some(caps) = pattern.regex.captures(line) {
                if self.next < last {
                    self.partial.capture(&pattern.config, &caps);
                    self.next += 1;
                    return None;
                }
                // The last pattern: an issue on top of what the earlier ones
                // captured. A looping one stays, for the lines that follow.
                let mut fields = self.partial.clone();
                fields.capture(&pattern.config, &caps);
                if !pattern.config.repeat {
                    self.next = 0;
                    self.partial = Fields::default();
                }
                return self.issue(fields);
            }
            // The sequence is broken: this line may start a new one.
            self.next = 0;
            self.partial = Fields::default();
        }
        let first = &self.patterns[0];
        let caps = first.regex.captures(line)?;
        let mut fields = Fields::default();
        fields.capture(&first.config, &caps);
        if last == 0 {
            return self.issue(fields);
        }
        self.partial = fields;
        self.next = 1;
        None
    }

    fn issue(&self, fields: Fields) -> Option<Issue> {
        let message = fields.message?;
        let level = match fields.severity.as_deref().map(str::to_ascii_lowercase) {
            Some(s) if s.starts_with("warn") => Level::Warning,
            Some(s) if s == "notice" || s == "info" => Level::Notice,
            Some(s) if s == "error" => Level::Error,
            _ => self.default_level,
        };
        let number = |v: &Option<String>| v.as_deref().and_then(|s| s.trim().parse::<u32>().ok());
        let file = fields.file.map(|f| match &fields.from_path {
            // `fromPath` names the file (often a project file) that `file` is
            // relative to.
            Some(from) if !f.starts_with('/') => std::path::Path::new(from)
                .parent()
                .map(|dir| dir.join(&f).to_string_lossy().into_owned())
                .unwrap_or(f),
            _ => f,
        });
        Some(Issue {
            level,
            message: match fields.code {
                Some(code) => format!("{message} ({code})"),
                None => message,
            },
            location: Location {
                file,
                line: number(&fields.line),
                col: number(&fields.column),
                ..Location::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESLINT: &str = r#"{"problemMatcher": [{"owner": "eslint-compact", "pattern": [{
        "regexp": "^(.+):\\sline\\s(\\d+),\\scol\\s(\\d+),\\s(Error|Warning|Info)\\s-\\s(.+)\\s\\((.+)\\)$",
        "file": 1, "line": 2, "column": 3, "severity": 4, "message": 5, "code": 6}]}]}"#;

    const STYLISH: &str = r#"{"problemMatcher": [{"owner": "eslint-stylish", "severity": "warning", "pattern": [
        {"regexp": "^([^\\s].*)$", "file": 1},
        {"regexp": "^\\s+(\\d+):(\\d+)\\s+(error|warning|info)\\s+(.*)\\s\\s+(.*)$",
         "line": 1, "column": 2, "severity": 3, "message": 4, "code": 5, "loop": true}]}]}"#;

    #[test]
    fn a_single_line_matcher_turns_a_line_into_an_issue() {
        let mut m = Matchers::default();
        m.add(ESLINT).unwrap();
        let issue = m
            .line("badFile.js: line 50, col 11, Error - 'myVar' is defined but never used. (no-unused-vars)")
            .unwrap();
        assert_eq!(issue.level, Level::Error);
        assert_eq!(
            issue.message,
            "'myVar' is defined but never used. (no-unused-vars)"
        );
        assert_eq!(issue.location.file.as_deref(), Some("badFile.js"));
        assert_eq!(
            (issue.location.line, issue.location.col),
            (Some(50), Some(11))
        );
        assert!(
            m.line("badFile.js: line 1, col 1, Warning - w (x)")
                .unwrap()
                .level
                == Level::Warning
        );
        assert_eq!(m.line("all good"), None);
        m.remove("eslint-compact");
        assert!(m.is_empty());
    }

    #[test]
    fn a_looping_multi_line_matcher_reports_each_line_of_a_file() {
        let mut m = Matchers::default();
        m.add(STYLISH).unwrap();
        assert_eq!(m.line("test.js"), None);
        let a = m.line("  1:0   error  Missing semicolon  semi").unwrap();
        let b = m.line("  2:0   warning  Unexpected var  no-var").unwrap();
        assert_eq!(a.location.file.as_deref(), Some("test.js"));
        assert_eq!(a.location.line, Some(1));
        assert_eq!(a.message, "Missing semicolon (semi)");
        assert_eq!(a.level, Level::Error);
        assert_eq!(b.location.file.as_deref(), Some("test.js"));
        assert_eq!(b.level, Level::Warning);
        // A line the loop does not match starts over: a new file.
        assert_eq!(m.line("other.js"), None);
        let c = m.line("  9:3   info  Note  x").unwrap();
        assert_eq!(c.location.file.as_deref(), Some("other.js"));
        assert_eq!(c.level, Level::Notice);
    }

    #[test]
    fn the_same_owner_replaces_and_bad_files_are_refused_whole() {
        let mut m = Matchers::default();
        m.add(ESLINT).unwrap();
        m.add(ESLINT).unwrap();
        assert_eq!(m.list.len(), 1);
        for (bad, why) in [
            ("{", "invalid problem matcher file"),
            (
                r#"{"problemMatcher": [{"owner": "", "pattern": [{"regexp": "x", "message": 1}]}]}"#,
                "owner",
            ),
            (
                r#"{"problemMatcher": [{"owner": "o", "pattern": [{"regexp": "(", "message": 1}]}]}"#,
                "invalid regexp",
            ),
            (
                r#"{"problemMatcher": [{"owner": "o", "pattern": [{"regexp": "x", "message": 1, "loop": true}]}]}"#,
                "loop",
            ),
            (
                r#"{"problemMatcher": [{"owner": "o", "pattern": [{"regexp": "x"}]}]}"#,
                "message",
            ),
        ] {
            let e = m.add(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(m.list.len(), 1);
    }
}
