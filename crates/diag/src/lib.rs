//! Diagnostics with a file, a line and a column, rendered cargo-style with the
//! source line and a caret. Every parser in hangar reports through this.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    /// What the user can do about it.
    pub help: Option<String>,
    pub severity: Severity,
}

impl Diagnostic {
    pub fn error(file: &str, line: usize, column: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            line: line.max(1),
            column: column.max(1),
            message: message.into(),
            help: None,
            severity: Severity::Error,
        }
    }

    /// What GitHub accepts but is almost surely a mistake: shown as
    /// `warning:`, failing nothing unless warnings are denied.
    pub fn warning(
        file: &str,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, line, column, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// `file:line:col: message`, then the source line with a caret, then the help.
    pub fn render(&self, source: &str) -> String {
        let mut out = format!("{self}\n");
        if let Some(text) = source.lines().nth(self.line - 1) {
            let gutter = self.line.to_string().len();
            let (text, caret) = snippet_window(text, self.column);
            out.push_str(&format!(
                "{:gutter$} |\n{} | {text}\n{:gutter$} | {}^\n",
                "",
                self.line,
                "",
                " ".repeat(caret)
            ));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("  = help: {help}\n"));
        }
        out
    }
}

/// The widest source line shown under a diagnostic, in characters.
const SNIPPET_WIDTH: usize = 120;

/// The part of `line` to show and the caret's offset in it: the whole line
/// when it is short, else a window around `column` with `…` where it was cut
/// (a minified JSON value or a 20,000-character `run:` would fill the screen).
fn snippet_window(line: &str, column: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    let at = column.saturating_sub(1).min(chars.len());
    if chars.len() <= SNIPPET_WIDTH {
        return (line.to_string(), at);
    }
    let start = at.saturating_sub(SNIPPET_WIDTH / 2);
    let end = (start + SNIPPET_WIDTH).min(chars.len());
    let start = end.saturating_sub(SNIPPET_WIDTH).min(start);
    let mut shown: String = chars[start..end].iter().collect();
    let mut caret = at - start;
    if start > 0 {
        shown.insert(0, '…');
        caret += 1;
    }
    if end < chars.len() {
        shown.push('…');
    }
    (shown, caret)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// The closest candidate within an edit distance of 2 (or a third of the word), for "did you mean".
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = word.len().div_ceil(3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| {
            (
                distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_caret() {
        let d = Diagnostic::error("ci.yml", 2, 5, "unknown key `runs_on`")
            .with_help("did you mean `runs-on`?");
        let text = d.render("jobs:\n    runs_on: x\n");
        assert_eq!(
            text,
            "ci.yml:2:5: error: unknown key `runs_on`\n  |\n2 |     runs_on: x\n  |     ^\n  = help: did you mean `runs-on`?\n"
        );
    }

    #[test]
    fn warnings_render_and_serialize_as_warnings() {
        let d = Diagnostic::warning("ci.yml", 1, 5, "`matrix.os` is null");
        assert!(!d.is_error());
        assert_eq!(
            d.render("on: push\n"),
            "ci.yml:1:5: warning: `matrix.os` is null\n  |\n1 | on: push\n  |     ^\n"
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["severity"], "warning");
        assert!(Diagnostic::error("ci.yml", 1, 1, "x").is_error());
    }

    #[test]
    fn long_lines_are_shown_around_the_column() {
        // The column's character is a `Y` in a sea of `x`.
        let line = format!("run: {}Y{}", "x".repeat(19_994), "x".repeat(10_000));
        let d = Diagnostic::error("ci.yml", 1, 20_000, "too long");
        let text = d.render(&line);
        let shown = text.lines().nth(2).unwrap();
        assert!(
            shown.starts_with("1 | …") && shown.ends_with('…'),
            "{shown}"
        );
        assert!(shown.chars().count() < 130);
        // The caret still sits under the column's character.
        let caret = text.lines().nth(3).unwrap().find('^').unwrap();
        assert_eq!(shown.chars().nth(caret), Some('Y'));
        // Short lines are shown whole.
        let d = Diagnostic::error("ci.yml", 1, 3, "x");
        assert_eq!(d.render("abcdef").lines().nth(2), Some("1 | abcdef"));
        // At the start of a long line, no leading cut.
        let d = Diagnostic::error("ci.yml", 1, 1, "x");
        assert!(
            d.render(&line)
                .lines()
                .nth(2)
                .unwrap()
                .starts_with("1 | run: x")
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("runs_on", ["runs-on", "needs"]),
            Some("runs-on")
        );
        assert_eq!(did_you_mean("stpes", ["steps", "env"]), Some("steps"));
        assert_eq!(did_you_mean("zzz", ["steps"]), None);
    }
}
