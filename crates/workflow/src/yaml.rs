//! YAML with a position on every node, read with `saphyr` (the maintained
//! successor of yaml-rust; the archived `serde_yaml` keeps no positions).

use saphyr::{MarkedYamlOwned, ScalarOwned, YamlDataOwned, YamlLoader};
use saphyr_parser::{Parser, ScalarStyle, Tag};

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Number(f64),
    /// A string scalar, with the position where its text starts (after a quote,
    /// or on the first content line of a block scalar).
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own positions; source order is kept.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
    /// How a string scalar was written: ' " | > or plain (0).
    pub style: char,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(m) => m.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(Key, Node)] {
        match &self.kind {
            Kind::Map(m) => m,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.kind {
            Kind::Seq(s) => s,
            _ => &[],
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The value as JSON (for `with:`, matrices, event filters).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            Kind::Null => serde_json::Value::Null,
            Kind::Bool(b) => (*b).into(),
            // GitHub reads every number as a double; an integral one is shown
            // (and compared, and passed to actions) without a fraction.
            Kind::Number(n) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => {
                (*n as i64).into()
            }
            Kind::Number(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Kind::Str(s) => s.clone().into(),
            Kind::Seq(items) => items.iter().map(Node::to_json).collect(),
            Kind::Map(m) => m
                .iter()
                .map(|(k, v)| (k.name.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

/// A syntax error with its position.
#[derive(Debug, Clone)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document (the first of the stream). Duplicate mapping keys
/// are errors, as GitHub reports them (`'build' is already defined`).
pub fn parse(text: &str) -> Result<Node, Vec<YamlError>> {
    let mut docs = parse_stream(text)?;
    Ok(if docs.is_empty() {
        Node {
            pos: Pos { line: 1, column: 1 },
            kind: Kind::Null,
            style: '\0',
        }
    } else {
        docs.swap_remove(0)
    })
}

/// Parses every document of a YAML stream (`---`-separated), for inputs such
/// as Kubernetes manifests. Same rules as [`parse`].
pub fn parse_stream(text: &str) -> Result<Vec<Node>, Vec<YamlError>> {
    let text = comments_after_flow_ends(text);
    let text = &*flow_ends_at_their_keys_column(text);
    let (mut errors, too_big) = check_events(text);
    if too_big {
        // Never hand the loader a document it would expand without bound.
        return Err(errors);
    }
    // Scalars are resolved here, not by the loader: it turns a tagged value it
    // cannot parse (`!!int 0xff`) into nothing, and GitHub's reader resolves
    // plain scalars by the YAML 1.2 core schema, which `resolve` spells out.
    let mut loader: YamlLoader<MarkedYamlOwned> = YamlLoader::default();
    loader.early_parse(false);
    let docs = Parser::new_from_str(text)
        .load(&mut loader, true)
        .map(|()| loader.into_documents())
        .map_err(|e| {
            vec![YamlError {
                pos: Pos {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                },
                message: e.info().to_string(),
            }]
        })?;
    let source = Source {
        lines: text.lines().collect(),
        chars: text.chars().count(),
        final_newline: text.ends_with('\n'),
    };
    let nodes: Vec<Node> = docs
        .into_iter()
        .map(|d| convert(d, &source, &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(nodes)
    } else {
        errors.sort_by_key(|e| (e.pos.line, e.pos.column));
        Err(errors)
    }
}

/// GitHub's reader accepts a comment straight after a flow collection's end
/// (`[one]# note`), which YAML requires a space before; GitHub kept it when
/// its YAML library started refusing it, because workflows rely on it. This
/// puts the space in, so the rest of the text keeps its positions (only the
/// comment itself moves).
fn comments_after_flow_ends(text: &str) -> std::borrow::Cow<'_, str> {
    let mut text = std::borrow::Cow::Borrowed(text);
    // Finding them takes a parse of its own: skip it for the texts (nearly
    // all) where no `#` follows a `]` or `}`.
    if !(text.contains("]#") || text.contains("}#")) {
        return text;
    }
    // Each pass fixes the first such comment; a file has a handful at most.
    for _ in 0..1000 {
        let Some(Err(e)) = Parser::new_from_str(&text).find(Result::is_err) else {
            break;
        };
        let at = e.marker().index();
        let mut chars = text.char_indices().skip(at.saturating_sub(1));
        let (Some((_, before)), Some((hash_at, '#'))) = (chars.next(), chars.next()) else {
            break;
        };
        if !matches!(before, ']' | '}') {
            break;
        }
        text.to_mut().insert(hash_at, ' ');
    }
    text
}

/// GitHub's reader accepts a multi-line flow collection whose closing `]` or
/// `}` sits at the column of the key that opened it, which YAML refuses as
/// under-indented:
///
/// ```yaml
///     python: [
///       "3.9",
///     ]
/// ```
///
/// pytest's main workflow has one and runs on GitHub every day. This indents
/// such a line by one space (only that line's columns move), and only where
/// the bracket is at exactly the opening line's indentation, so what GitHub
/// refuses stays refused.
fn flow_ends_at_their_keys_column(text: std::borrow::Cow<'_, str>) -> std::borrow::Cow<'_, str> {
    let mut text = text;
    let closes_a_line = |l: &str| matches!(l.trim_start().chars().next(), Some(']' | '}'));
    if !text.lines().any(closes_a_line) {
        return text;
    }
    for _ in 0..1000 {
        let Some(Err(e)) = Parser::new_from_str(&text).find(Result::is_err) else {
            break;
        };
        if !e.info().contains("indentation") {
            break;
        }
        let lines: Vec<&str> = text.lines().collect();
        let Some(at) = e.marker().line().checked_sub(1) else {
            break;
        };
        let Some(line) = lines.get(at) else { break };
        if !closes_a_line(line) {
            break;
        }
        let indent = line.len() - line.trim_start().len();
        // The nearest line above that opens a flow collection at its end.
        let opener = lines[..at].iter().rev().find(|l| {
            let code = l.split(" #").next().unwrap_or(l).trim_end();
            code.ends_with('[') || code.ends_with('{')
        });
        let Some(opener) = opener else { break };
        if opener.len() - opener.trim_start().len() != indent {
            break;
        }
        // Where line `at` starts (after `at` newlines; `\r\n` counts as one line end).
        let offset = if at == 0 {
            0
        } else {
            match text.match_indices('\n').nth(at - 1) {
                Some((i, _)) => i + 1,
                None => break,
            }
        };
        text.to_mut().insert(offset, ' ');
    }
    text
}

/// The most nodes a document may hold once its aliases are expanded. The
/// loader copies an anchored node for every alias, so a few lines of nested
/// aliases ("billion laughs") would otherwise exhaust memory before any rule
/// could look at them. A workflow with ten thousand jobs of a hundred nodes each
/// stays well inside it.
pub const MAX_EXPANDED_NODES: u64 = 1_000_000;

/// Checks made on the parser's event stream, before the loader builds the tree:
/// - keys defined twice in one mapping (the loader silently keeps the last
///   one), reported at the second definition, naming the first;
/// - the `<<` merge key, which GitHub rejects (anchors and aliases are
///   supported since September 2025, merges are not);
/// - documents whose aliases expand beyond [`MAX_EXPANDED_NODES`]; the sizes
///   are added up per anchor, never expanded.
///
/// On a syntax error it stops: the loader reports those with their position.
fn check_events(text: &str) -> (Vec<YamlError>, bool) {
    use saphyr_parser::{Event, Parser, ScalarStyle};
    use std::collections::HashMap;

    enum Shape {
        /// Keys seen with their line; whether the next node is a key.
        Map(HashMap<String, usize>, bool),
        Seq,
    }
    struct Frame {
        shape: Shape,
        /// Nodes in this collection so far, itself included, aliases expanded.
        size: u64,
        anchor: usize,
    }
    // A node (scalar, alias, or a closed collection) of `size` nodes is
    // complete: count it in its parent, record its anchor, and in a mapping
    // flip between key and value.
    fn done(
        stack: &mut [Frame],
        top: &mut u64,
        sizes: &mut HashMap<usize, u64>,
        anchor: usize,
        size: u64,
    ) {
        if anchor > 0 {
            sizes.insert(anchor, size);
        }
        match stack.last_mut() {
            Some(parent) => {
                parent.size = parent.size.saturating_add(size);
                if let Shape::Map(_, expect_key) = &mut parent.shape {
                    *expect_key = !*expect_key;
                }
            }
            None => *top = top.saturating_add(size),
        }
    }
    let mut errors = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut sizes: HashMap<usize, u64> = HashMap::new();
    let mut top = 0u64;
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else {
            break;
        };
        let pos = Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        match event {
            Event::DocumentStart(_) => {
                stack.clear();
                top = 0;
            }
            Event::Scalar(value, style, anchor, _) => {
                if let Some(Frame {
                    shape: Shape::Map(keys, true),
                    ..
                }) = stack.last_mut()
                {
                    if value == "<<" && style == ScalarStyle::Plain {
                        errors.push(YamlError {
                            pos,
                            message: "the YAML merge key `<<` is not supported by GitHub Actions: anchor and alias the whole mapping, or write its keys out".into(),
                        });
                    }
                    match keys.get(value.as_ref()) {
                        Some(first) => errors.push(YamlError {
                            pos,
                            message: format!(
                                "'{value}' is already defined (first at line {first}); YAML would keep only the last one: remove or rename one"
                            ),
                        }),
                        None => {
                            keys.insert(value.into_owned(), pos.line);
                        }
                    }
                }
                done(&mut stack, &mut top, &mut sizes, anchor, 1);
            }
            Event::Alias(anchor) => {
                let size = sizes.get(&anchor).copied().unwrap_or(1);
                done(&mut stack, &mut top, &mut sizes, 0, size);
                let total = stack
                    .iter()
                    .fold(top, |sum, frame| sum.saturating_add(frame.size));
                if total > MAX_EXPANDED_NODES {
                    errors.push(YamlError {
                        pos,
                        message: format!(
                            "aliases expand this document beyond {MAX_EXPANDED_NODES} nodes: alias smaller pieces, or fewer times"
                        ),
                    });
                    return (errors, true);
                }
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let shape = if matches!(event, Event::MappingStart(..)) {
                    Shape::Map(HashMap::new(), true)
                } else {
                    Shape::Seq
                };
                stack.push(Frame {
                    shape,
                    size: 1,
                    anchor,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(frame) = stack.pop() {
                    done(&mut stack, &mut top, &mut sizes, frame.anchor, frame.size);
                }
            }
            _ => {}
        }
    }
    (errors, false)
}

fn pos_of(n: &MarkedYamlOwned) -> Pos {
    Pos {
        line: n.span.start.line(),
        column: n.span.start.col() + 1,
    }
}

/// What `convert` needs of the text around a node.
struct Source<'a> {
    lines: Vec<&'a str>,
    chars: usize,
    final_newline: bool,
}

fn convert(n: MarkedYamlOwned, source: &Source, errors: &mut Vec<YamlError>) -> Node {
    let mut pos = pos_of(&n);
    let mut style = '\0';
    let ends_the_text = n.span.end.index() >= source.chars;
    let kind = match n.data {
        YamlDataOwned::Representation(text, scalar_style, tag) => {
            let mut kind = resolve(text, scalar_style, tag.as_ref());
            if let Kind::Str(value) = &mut kind {
                // The marker points at the node's first character: a quote, a block
                // indicator, or the text itself. Expression columns are relative to the text.
                let first = source
                    .lines
                    .get(pos.line.wrapping_sub(1))
                    .and_then(|l| l.chars().nth(pos.column - 1))
                    .unwrap_or(' ');
                match first {
                    '\'' | '"' => {
                        style = first;
                        pos.column += 1;
                    }
                    '|' | '>' => {
                        style = first;
                        let next = source.lines.get(pos.line).copied().unwrap_or("");
                        pos = Pos {
                            line: pos.line + 1,
                            column: next.len() - next.trim_start().len() + 1,
                        };
                    }
                    _ => {}
                }
                // A block scalar's last line break is kept only when there is
                // one: at the end of a text without a final newline there is
                // none, whatever the loader added.
                if matches!(scalar_style, ScalarStyle::Literal | ScalarStyle::Folded)
                    && ends_the_text
                    && !source.final_newline
                    && value.ends_with('\n')
                {
                    value.pop();
                }
            }
            kind
        }
        // Only with early parsing, which `parse_stream` turns off.
        YamlDataOwned::Value(scalar) => match scalar {
            ScalarOwned::Null => Kind::Null,
            ScalarOwned::Boolean(b) => Kind::Bool(b),
            ScalarOwned::Integer(i) => Kind::Number(i as f64),
            ScalarOwned::FloatingPoint(f) => Kind::Number(f.into_inner()),
            ScalarOwned::String(s) => Kind::Str(s),
        },
        YamlDataOwned::Sequence(items) => Kind::Seq(
            items
                .into_iter()
                .map(|i| convert(i, source, errors))
                .collect(),
        ),
        YamlDataOwned::Mapping(map) => {
            let mut out: Vec<(Key, Node)> = Vec::new();
            for (k, v) in map {
                let kpos = pos_of(&k);
                let name = match &k.data {
                    // A key is its text whatever it resolves to (`on`, `1`, `true`).
                    YamlDataOwned::Representation(s, _, _) => s.clone(),
                    YamlDataOwned::Value(ScalarOwned::String(s)) => s.clone(),
                    YamlDataOwned::Value(ScalarOwned::Boolean(b)) => b.to_string(),
                    YamlDataOwned::Value(ScalarOwned::Integer(i)) => i.to_string(),
                    YamlDataOwned::Value(ScalarOwned::Null) => "null".into(),
                    _ => {
                        errors.push(YamlError {
                            pos: kpos,
                            message: "a mapping key must be a scalar".into(),
                        });
                        continue;
                    }
                };
                out.push((Key { name, pos: kpos }, convert(v, source, errors)));
            }
            Kind::Map(out)
        }
        YamlDataOwned::Tagged(_, inner) => return convert(*inner, source, errors),
        // The loader resolves every alias to a copy of its anchored node (whose
        // inner positions stay at the anchor); only an alias it could not
        // resolve gets here.
        YamlDataOwned::Alias(_) => {
            errors.push(YamlError {
                pos,
                message: "this alias names no anchor defined before it: define `&name` first"
                    .into(),
            });
            Kind::Null
        }
        YamlDataOwned::BadValue => Kind::Null,
    };
    Node { pos, kind, style }
}

/// A scalar's value as GitHub's reader resolves it: a core-schema tag
/// (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`) says what it is; an
/// untagged quoted or block scalar is a string; an untagged plain one is null,
/// a boolean, an integer (decimal, `0o` octal, `0x` hex) or a float by the
/// YAML 1.2 core schema, else a string. A value its tag does not fit stays a
/// string here; `tags::check` reports it.
fn resolve(text: String, style: ScalarStyle, tag: Option<&Tag>) -> Kind {
    let core = tag.map(|t| format!("{}{}", t.handle, t.suffix));
    let core = core
        .as_deref()
        .map(|t| t.strip_prefix("tag:yaml.org,2002:").unwrap_or("!"));
    let resolved = match core {
        Some("str") | Some("!") => None,
        Some("null") => Some(Kind::Null),
        Some("bool") => core_bool(&text).map(Kind::Bool),
        Some("int") => core_int(&text).map(Kind::Number),
        Some("float") => core_float(&text)
            .or_else(|| core_int(&text))
            .map(Kind::Number),
        Some(_) => None,
        None if style != ScalarStyle::Plain => None,
        None => {
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                Some(Kind::Null)
            } else {
                core_bool(&text)
                    .map(Kind::Bool)
                    .or_else(|| core_int(&text).map(Kind::Number))
                    .or_else(|| core_float(&text).map(Kind::Number))
            }
        }
    };
    resolved.unwrap_or(Kind::Str(text))
}

fn core_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`, as a double (GitHub keeps
/// every number as one).
fn core_int(text: &str) -> Option<f64> {
    let radix = |digits: &str, radix: u32| {
        (!digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))).then(|| {
            digits.chars().fold(0f64, |n, c| {
                n * radix as f64 + c.to_digit(radix).unwrap_or(0) as f64
            })
        })
    };
    if let Some(octal) = text.strip_prefix("0o") {
        return radix(octal, 8);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return radix(hex, 16);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    // Decimal through the float parser: exact rounding for long digit strings.
    (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| text.parse::<f64>().ok())
        .flatten()
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `[-+]?.inf`, `.nan`.
fn core_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == text.len() => return Some(f64::NAN),
        _ => {}
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match fraction {
        // `.5` and `1.` are floats; `.` is not.
        Some(f) => all_digits(whole) && all_digits(f) && !(whole.is_empty() && f.is_empty()),
        None => !whole.is_empty() && all_digits(whole),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    if !(mantissa_ok && exponent_ok) {
        return None;
    }
    text.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_point_at_text() {
        let n = parse("a: 1\nb:\n  c: 'x'\n  d: |\n    line\n").unwrap();
        assert_eq!(n.entries()[0].0.pos, Pos { line: 1, column: 1 });
        let b = n.get("b").unwrap();
        assert_eq!(b.entries()[0].0.pos, Pos { line: 3, column: 3 });
        assert_eq!(b.get("c").unwrap().pos, Pos { line: 3, column: 7 });
        assert_eq!(b.get("d").unwrap().pos, Pos { line: 5, column: 5 });
    }

    #[test]
    fn a_flow_collection_may_close_at_its_keys_column_as_on_github() {
        // pytest's main workflow, shaped down; also with Windows line ends.
        for eol in ["\n", "\r\n"] {
            let text = "jobs:\n  t:\n    strategy:\n      matrix:\n        python: [\n          \"3.9\",\n          \"3.10\",\n        ]\n        os: {\n          a: 1\n        }\n    steps: [{run: x}]\n"
                .replace('\n', eol);
            let n = parse(&text).unwrap();
            let m = n
                .get("jobs")
                .unwrap()
                .get("t")
                .unwrap()
                .get("strategy")
                .unwrap();
            let m = m.get("matrix").unwrap();
            assert_eq!(
                m.get("python").unwrap().to_json(),
                serde_json::json!(["3.9", "3.10"])
            );
            assert_eq!(m.get("os").unwrap().to_json(), serde_json::json!({"a": 1}));
            // Positions of every other line are where they were.
            assert_eq!(
                m.get("python").unwrap().pos,
                Pos {
                    line: 5,
                    column: 17
                }
            );
        }
        // Further left than the key that opened it: refused, as GitHub refuses it.
        let e = parse("a:\n  b: [\n    1,\n ]\n").unwrap_err();
        assert_eq!(e[0].pos.line, 4);
    }

    #[test]
    fn syntax_errors_and_duplicates() {
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e[0].pos.line >= 1);

        let e =
            parse("jobs:\n  build:\n    x: 1\n  test: {}\n  build:\n    y: [a, a]\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].pos, Pos { line: 5, column: 3 });
        assert!(
            e[0].message
                .contains("'build' is already defined (first at line 2)")
        );

        // The same key in sibling mappings, nested keys and sequences of mappings are fine.
        assert!(parse("a: {k: 1}\nb: {k: 2}\nc: [{k: 1}, {k: 2}]\nd:\n  a: 1\n").is_ok());
        let e = parse("steps:\n  - run: a\n    run: b\n").unwrap_err();
        assert_eq!(e[0].pos, Pos { line: 3, column: 5 });
    }

    #[test]
    fn anchors_and_aliases_resolve_as_github_reads_them() {
        let n = parse(
            "env: &env\n  A: 1\n  B: two\njobs:\n  a:\n    env: *env\n    steps:\n      - run: &echo echo hi\n      - run: *echo\n",
        )
        .unwrap();
        let a = n.get("jobs").unwrap().get("a").unwrap();
        assert_eq!(
            a.get("env").unwrap().to_json(),
            serde_json::json!({"A": 1, "B": "two"})
        );
        // The alias itself is positioned where it is written; what it copies
        // keeps the anchor's positions, where the text is.
        assert_eq!(
            a.get("env").unwrap().pos,
            Pos {
                line: 6,
                column: 10
            }
        );
        assert_eq!(
            a.get("env").unwrap().entries()[0].0.pos,
            Pos { line: 2, column: 3 }
        );
        let steps = a.get("steps").unwrap().items();
        assert_eq!(steps[1].get("run").unwrap().as_str(), Some("echo hi"));
    }

    #[test]
    fn merge_keys_are_rejected_where_they_are_written() {
        let e = parse("base: &b {x: 1}\njob:\n  <<: *b\n  y: 2\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].pos, Pos { line: 3, column: 3 });
        assert!(e[0].message.contains("merge key"), "{}", e[0].message);
        // A quoted "<<" is an ordinary key.
        assert!(parse("'<<': 1\n").is_ok());
    }

    #[test]
    fn alias_bombs_are_refused_before_they_are_expanded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let e = parse(&text).unwrap_err();
        assert!(e[0].message.contains("aliases expand"), "{e:?}");
        assert_eq!(e[0].pos.line, 6, "the first alias past the limit: {e:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Many aliases of a small anchor are fine.
        let mut ok = String::from("a: &a {k: v}\nl:\n");
        for _ in 0..1000 {
            ok.push_str("  - *a\n");
        }
        assert_eq!(parse(&ok).unwrap().get("l").unwrap().items().len(), 1000);
    }

    #[test]
    fn integral_numbers_stay_integers_in_json() {
        let n = parse("a: 1\nb: 1.5\nc: 1.0\nd: -3\ne: 1e3\n").unwrap();
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a": 1, "b": 1.5, "c": 1, "d": -3, "e": 1000})
        );
        assert_eq!(n.to_json()["a"].to_string(), "1");
    }

    #[test]
    fn streams_of_documents() {
        let docs = parse_stream("a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 3, "a trailing `---` starts an empty document");
        assert_eq!(docs[2].kind, Kind::Null);
        assert_eq!(docs[1].get("b").unwrap().pos, Pos { line: 3, column: 4 });
        let e = parse_stream("a: 1\n---\nb: 2\nb: 3\n").unwrap_err();
        assert_eq!(e[0].pos.line, 4);
    }

    #[test]
    fn scalars_resolve_by_the_core_schema_and_their_tags() {
        let n = parse(
            "- 0755\n- 0o10\n- 0xFF\n- +1\n- -0\n- 1.\n- .5\n- -1e3\n- .inf\n- 1_000\n- 0x\n- yes\n- ~\n- ''\n- !!int 0xff\n- !!float 1\n- !!str null\n- !!bool FALSE\n- !!null ''\n- !<tag:yaml.org,2002:int> 0o10\n- '1'\n- True\n- .\n",
        )
        .unwrap();
        let values: Vec<_> = n.items().iter().map(|i| i.kind.clone()).collect();
        use Kind::*;
        assert_eq!(
            values,
            [
                Number(755.0),
                Number(8.0),
                Number(255.0),
                Number(1.0),
                Number(-0.0),
                Number(1.0),
                Number(0.5),
                Number(-1000.0),
                Number(f64::INFINITY),
                Str("1_000".into()),
                Str("0x".into()),
                Str("yes".into()),
                Null,
                Str("".into()),
                Number(255.0),
                Number(1.0),
                Str("null".into()),
                Bool(false),
                Null,
                Number(8.0),
                Str("1".into()),
                Bool(true),
                Str(".".into()),
            ]
        );
        // Keys are their text.
        let n = parse("on: 1\n1: a\ntrue: b\n").unwrap();
        let keys: Vec<_> = n.entries().iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(keys, ["on", "1", "true"]);
    }

    #[test]
    fn a_block_scalar_at_the_end_of_a_text_without_a_final_newline_has_none() {
        let n = parse("run: |\n  a\n  b").unwrap();
        assert_eq!(n.get("run").unwrap().as_str(), Some("a\nb"));
        let n = parse("run: |\n  a\n  b\n").unwrap();
        assert_eq!(n.get("run").unwrap().as_str(), Some("a\nb\n"));
        let n = parse("run: |\n  a\nnext: 1").unwrap();
        assert_eq!(n.get("run").unwrap().as_str(), Some("a\n"));
    }

    #[test]
    fn a_comment_right_after_a_flow_end_is_a_comment_as_github_reads_it() {
        let n = parse("a:\n  - [one]#, two ]\n  - {k: v}# c\nb: [x]\n").unwrap();
        let a = n.get("a").unwrap().items();
        assert_eq!(a[0].to_json(), serde_json::json!(["one"]));
        assert_eq!(a[1].to_json(), serde_json::json!({"k": "v"}));
        assert_eq!(n.get("b").unwrap().pos, Pos { line: 4, column: 4 });
        // Inside a plain scalar a `#` is text; other junk after `]` is still an error.
        assert_eq!(
            parse("a: x#y\n").unwrap().get("a").unwrap().as_str(),
            Some("x#y")
        );
        assert!(parse("a: [one]x\n").is_err());
    }
}
