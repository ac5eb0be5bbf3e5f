//! The size limits GitHub puts on a workflow file and on what it reads from it.
//!
//! GitHub fails a workflow that is too large in characters, nests mappings
//! and sequences too deep, reads into too much memory (its own accounting:
//! about 24 bytes a node, plus 26 and two bytes a character for each string),
//! replays too many YAML events through anchors, or compiles a value with
//! `${{ }}` into an expression longer than 21000 characters. All of these are
//! measured here on the parser's events, before the tree is built, so a file
//! nested thousands deep is reported rather than walked.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::tags;
use crate::yaml::{Pos, YamlError};

/// GitHub's limits on a workflow and the reusable workflows it calls. The
/// defaults are github.com's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Characters in one file (1 MiB).
    pub max_file_size: usize,
    /// Mappings and sequences nested in one another (50).
    pub max_depth: usize,
    /// Bytes GitHub's reader may hold for the workflow and every workflow it
    /// calls (10 MiB).
    pub max_result_size: usize,
    /// Jobs across the workflow and the workflows it calls, where an
    /// installation sets a limit (github.com sets none).
    pub max_jobs: Option<usize>,
    /// Reusable workflows below the caller: ten levels of workflows in all
    /// on github.com since November 2025 (four before, and on GHES).
    pub max_nested_depth: usize,
    /// Distinct reusable workflows one run may reference, nested ones included (50).
    pub max_called_workflows: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_size: 1024 * 1024,
            max_depth: 50,
            max_result_size: 10 * 1024 * 1024,
            max_jobs: None,
            max_nested_depth: 9,
            max_called_workflows: 50,
        }
    }
}

/// The longest expression GitHub compiles.
pub const MAX_EXPRESSION_LENGTH: usize = 21000;

/// Events GitHub's reader takes from one file, aliases replayed in full.
const MAX_YAML_NODES: usize = 50_000;

/// What GitHub's reader would make of a file.
#[derive(Debug, Default)]
pub(crate) struct Measure {
    /// A limit that stops GitHub reading the file at all.
    pub fatal: Option<YamlError>,
    /// Values whose compiled expression is too long (GitHub reads on).
    pub long_expressions: Vec<YamlError>,
    /// What the file costs in GitHub's memory accounting.
    pub bytes: usize,
}

/// An anchored node, for its aliases.
#[derive(Clone, Copy, Default)]
struct Anchored {
    bytes: usize,
    /// Collections nested in it, itself included.
    height: usize,
    events: usize,
}

struct Open {
    anchor: usize,
    start: Anchored,
    /// Depth of the deepest collection inside, counting from the root.
    deepest: usize,
    is_map: bool,
    /// In a mapping: whether the next node is a key.
    expect_key: bool,
}

const NODE: usize = 24;
const STRING: usize = 26;

fn utf16(s: &str) -> usize {
    s.encode_utf16().count()
}

fn string_bytes(s: &str) -> usize {
    NODE + STRING + 2 * utf16(s)
}

pub(crate) fn measure(text: &str, limits: &Limits) -> Measure {
    let mut m = Measure::default();
    let size = utf16(text);
    if size > limits.max_file_size {
        m.fatal = Some(YamlError {
            pos: Pos { line: 1, column: 1 },
            message: format!(
                "The maximum file size of {} characters has been exceeded ({size}): move long scripts into files in the repository, or split the workflow into reusable workflows",
                limits.max_file_size
            ),
        });
        return m;
    }
    let mut anchors: HashMap<usize, Anchored> = HashMap::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut events = 0usize;
    let too_deep = |pos: Pos| YamlError {
        pos,
        message: format!(
            "Maximum object depth exceeded: GitHub reads at most {} nested mappings and sequences; flatten this value (a deep matrix can be a JSON string read with fromJSON)",
            limits.max_depth
        ),
    };
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let pos = Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        let is_key = matches!(
            stack.last(),
            Some(Open {
                is_map: true,
                expect_key: true,
                ..
            })
        );
        let before = m.bytes;
        events += 1;
        // Bytes, depth and events of a node that just completed (scalar,
        // alias or closed collection), for its anchor and its parent.
        let mut completed: Option<(usize, Anchored, usize)> = None;
        match event {
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if stack.len() >= limits.max_depth {
                    m.fatal = Some(too_deep(pos));
                    return m;
                }
                m.bytes += NODE;
                stack.push(Open {
                    anchor,
                    start: Anchored {
                        bytes: before,
                        height: stack.len(),
                        events: events - 1,
                    },
                    deepest: stack.len() + 1,
                    is_map: matches!(event, Event::MappingStart(..)),
                    expect_key: true,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(open) = stack.pop() {
                    let node = Anchored {
                        bytes: m.bytes - open.start.bytes,
                        height: open.deepest - open.start.height,
                        events: events - open.start.events,
                    };
                    completed = Some((open.anchor, node, open.deepest));
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                let expression = value.contains("${{").then(|| expression_length(&value));
                if let Some(Some(len)) = expression
                    && len > MAX_EXPRESSION_LENGTH
                {
                    let at = match style {
                        ScalarStyle::Literal | ScalarStyle::Folded => block_header(text, pos),
                        _ => pos,
                    };
                    m.long_expressions.push(YamlError {
                        pos: at,
                        message: format!(
                            "Exceeded max expression length {MAX_EXPRESSION_LENGTH}: a value with ${{{{ }}}} is compiled into one expression ({len} characters here); move the script into a file in the repository, or pass the values through `env:`"
                        ),
                    });
                }
                m.bytes += match expression {
                    Some(Some(len)) => NODE + STRING + 2 * len,
                    _ if is_key || style != ScalarStyle::Plain || tag.is_some() => {
                        string_bytes(&value)
                    }
                    _ if plain_non_string(&value) => NODE,
                    _ => string_bytes(&value),
                };
                let node = Anchored {
                    bytes: m.bytes - before,
                    height: 0,
                    events: 1,
                };
                completed = Some((anchor, node, stack.len()));
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).copied().unwrap_or_default();
                if stack.len() + node.height > limits.max_depth {
                    m.fatal = Some(too_deep(pos));
                    return m;
                }
                m.bytes += node.bytes;
                // The alias event itself stands for the node's first event.
                events += node.events.saturating_sub(1);
                completed = Some((0, node, stack.len() + node.height));
            }
            _ => {}
        }
        if let Some((anchor, node, deepest)) = completed {
            if anchor > 0 {
                anchors.insert(anchor, node);
            }
            if let Some(parent) = stack.last_mut() {
                parent.deepest = parent.deepest.max(deepest);
                if parent.is_map {
                    parent.expect_key = !parent.expect_key;
                }
            }
        }
        if events > MAX_YAML_NODES {
            m.fatal = Some(YamlError {
                pos,
                message: format!(
                    "Maximum YAML nodes exceeded: GitHub reads at most {MAX_YAML_NODES} YAML events from a file, aliases counted in full; split the workflow or use fewer aliases of large anchors"
                ),
            });
            return m;
        }
        if m.bytes > limits.max_result_size && before <= limits.max_result_size {
            m.fatal = Some(YamlError {
                pos,
                message: format!(
                    "Maximum object size exceeded: GitHub reads at most {} bytes of workflow; split the workflow or move long values into files",
                    limits.max_result_size
                ),
            });
            return m;
        }
    }
    m
}

/// Where a block scalar starts: its `|` or `>` on the last non-blank line
/// before its content (the parser's position is the content's).
fn block_header(text: &str, content: Pos) -> Pos {
    let lines: Vec<&str> = text.lines().take(content.line.saturating_sub(1)).collect();
    for (i, line) in lines.iter().enumerate().rev() {
        if line.trim().is_empty() {
            continue;
        }
        let code = line.find(" #").map_or(*line, |c| &line[..c]);
        if let Some(col) = code.rfind(['|', '>']) {
            return Pos {
                line: i + 1,
                column: line[..col].chars().count() + 1,
            };
        }
        break;
    }
    content
}

/// A plain scalar GitHub reads as null, a boolean or a number (YAML 1.2 core schema).
fn plain_non_string(v: &str) -> bool {
    tags::is_null(v) || tags::is_bool(v) || tags::is_int(v) || tags::is_float(v)
}

/// The length of the expression GitHub compiles a value with `${{ }}` into:
/// a lone `${{ x }}` is `x`; text around expressions makes
/// `format('text {0} ...', x, ...)`, with quotes and braces in the text doubled.
/// `None` when the value is not an expression GitHub would compile (an
/// unclosed or empty `${{`, an `insert` directive, a quoted literal), which
/// other checks report or allow.
pub(crate) fn expression_length(raw: &str) -> Option<usize> {
    enum Seg<'a> {
        Text(&'a str),
        Expr(&'a str),
    }
    let bytes = raw.as_bytes();
    let mut segs = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let Some(start) = raw[i..].find("${{").map(|s| s + i) else {
            segs.push(Seg::Text(&raw[i..]));
            break;
        };
        if start > i {
            segs.push(Seg::Text(&raw[i..start]));
        }
        let mut in_string = false;
        let mut end = None;
        for j in start + 3..raw.len() {
            match bytes[j] {
                b'\'' => in_string = !in_string,
                b'}' if !in_string && bytes[j - 1] == b'}' => {
                    end = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        let expr = raw[start + 3..end - 1].trim();
        if expr.is_empty() || expr == "insert" || expr.starts_with("insert ") {
            return None;
        }
        segs.push(Seg::Expr(expr));
        i = end + 1;
    }
    if let [Seg::Expr(e)] = segs.as_slice() {
        let quoted = e.len() >= 2 && e.starts_with('\'') && e.ends_with('\'');
        return (!quoted).then(|| utf16(e));
    }
    let mut len = "format('".len() + "')".len();
    let mut arg = 0usize;
    for seg in &segs {
        match seg {
            Seg::Text(t) => {
                len += t
                    .chars()
                    .map(|c| match c {
                        '\'' | '{' | '}' => 2,
                        c => c.len_utf16(),
                    })
                    .sum::<usize>()
            }
            Seg::Expr(e) => {
                len += format!("{{{arg}}}").len() + ", ".len() + utf16(e);
                arg += 1;
            }
        }
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fatal(text: &str, limits: &Limits) -> Option<String> {
        measure(text, limits)
            .fatal
            .map(|e| format!("{}:{} {}", e.pos.line, e.pos.column, e.message))
    }

    #[test]
    fn file_size_is_counted_in_characters() {
        let limits = Limits {
            max_file_size: 10,
            ..Limits::default()
        };
        assert!(fatal("a: 1234567", &limits).is_none());
        let e = fatal("a: 12345678", &limits).unwrap();
        assert!(
            e.starts_with("1:1 The maximum file size of 10 characters has been exceeded (11)"),
            "{e}"
        );
        // Characters, not bytes.
        assert!(fatal("a: ééééééé", &limits).is_none());
    }

    #[test]
    fn depth_counts_mappings_and_sequences() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        assert!(fatal("a:\n  b:\n    - x\n", &limits).is_none());
        let e = fatal("a:\n  b:\n    - c: x\n", &limits).unwrap();
        assert!(e.starts_with("3:7 Maximum object depth exceeded"), "{e}");
        // An alias brings its anchor's depth along.
        let e = fatal("x: &d {b: {c: 1}}\ny: [*d]\n", &limits).unwrap();
        assert!(e.starts_with("2:5 Maximum object depth exceeded"), "{e}");
        // GitHub's default: 50.
        let deep = format!("{}1{}", "[".repeat(50), "]".repeat(50));
        assert!(fatal(&deep, &Limits::default()).is_none());
        let deeper = format!("{}1{}", "[".repeat(51), "]".repeat(51));
        assert!(fatal(&deeper, &Limits::default()).is_some());
    }

    #[test]
    fn deep_or_broken_input_is_measured_without_recursion_or_panics() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(fatal(&deep, &Limits::default()).is_some());
        // Deeper flow nesting is the parser's own syntax error.
        let _ = measure(&"[".repeat(200_000), &Limits::default());
        for text in [
            "",
            "*a",
            "&a",
            "[*a, &a]",
            "a: &x\nb: *x\n",
            "{",
            "}}",
            "${{",
            "a: '${{",
        ] {
            let _ = measure(text, &Limits::default());
        }
    }

    #[test]
    fn bytes_follow_githubs_accounting() {
        // Mapping 24; key `a` 50 + 2; value `bc` 50 + 4; number 24; key `n` 52.
        assert_eq!(
            measure("a: bc\nn: 1\n", &Limits::default()).bytes,
            24 + 52 + 54 + 52 + 24
        );
        let limits = Limits {
            max_result_size: 206,
            ..Limits::default()
        };
        assert!(fatal("a: bc\nn: 1\n", &limits).is_none());
        let e = fatal("a: bc\nn: 1\nz: 0\n", &limits).unwrap();
        assert!(e.starts_with("3:1 Maximum object size exceeded"), "{e}");
        // Aliases cost what their anchor costs, every time.
        let one = measure("a: &x [1, 2]\n", &Limits::default()).bytes;
        let two = measure("a: &x [1, 2]\nb: *x\n", &Limits::default()).bytes;
        assert_eq!(two - one, 52 + 24 * 3);
    }

    #[test]
    fn aliases_replay_their_events() {
        let items = vec!["0"; 9_000].join(", ");
        let text = format!("a: &x [{items}]\nb: [*x, *x, *x, *x, *x]\n");
        let e = measure(&text, &Limits::default()).fatal.unwrap();
        assert!(
            e.message.starts_with("Maximum YAML nodes exceeded"),
            "{e:?}"
        );
        assert!(
            measure(&format!("a: [{items}]\n"), &Limits::default())
                .fatal
                .is_none()
        );
    }

    #[test]
    fn expression_lengths_are_those_github_compiles() {
        assert_eq!(expression_length("${{ github.sha }}"), Some(10));
        // format('a {0}''s {{x}}', github.sha)
        assert_eq!(
            expression_length("a ${{ github.sha }}'s {x}"),
            Some("format('a {0}''s {{x}}', github.sha)".len())
        );
        assert_eq!(expression_length("${{ 'literal }}' }}"), None);
        assert_eq!(expression_length("${{ github.sha"), None);
        assert_eq!(expression_length("${{ }}"), None);
        assert_eq!(expression_length("${{ insert }}"), None);

        let script = format!("echo ${{{{ github.sha }}}}\n{}", "x".repeat(21_000));
        let text = format!("run: | # a > b\n\n  {}\n", script.replace('\n', "\n  "));
        let m = measure(&text, &Limits::default());
        assert_eq!(m.long_expressions.len(), 1);
        let e = &m.long_expressions[0];
        // At the scalar: the block indicator, where GitHub reports it.
        assert_eq!(e.pos, Pos { line: 1, column: 6 });
        assert!(
            e.message
                .starts_with("Exceeded max expression length 21000")
        );
        // Without an expression the text is a plain string, however long.
        let plain = format!("run: |\n  {}\n", "x".repeat(30_000));
        assert!(
            measure(&plain, &Limits::default())
                .long_expressions
                .is_empty()
        );
    }
}
