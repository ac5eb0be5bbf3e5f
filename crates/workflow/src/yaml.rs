//! YAML with a position on every node, read with `saphyr` (the maintained
//! successor of yaml-rust; the archived `serde_yaml` keeps no positions).

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

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

/// Parses one YAML document. Duplicate mapping keys are errors, as GitHub
/// reports them (`'build' is already defined`).
pub fn parse(text: &str) -> Result<Node, Vec<YamlError>> {
    let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| {
        vec![YamlError {
            pos: Pos {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        }]
    })?;
    let lines: Vec<&str> = text.lines().collect();
    let mut errors = duplicate_keys(text);
    let root = match docs.into_iter().next() {
        Some(d) => convert(d, &lines, &mut errors),
        None => Node {
            pos: Pos { line: 1, column: 1 },
            kind: Kind::Null,
            style: '\0',
        },
    };
    if errors.is_empty() {
        Ok(root)
    } else {
        Err(errors)
    }
}

/// Keys defined twice in one mapping, found on the parser's event stream
/// because the loader silently keeps the last one. Reported at the second
/// definition, naming the first.
fn duplicate_keys(text: &str) -> Vec<YamlError> {
    use saphyr_parser::{Event, Parser};
    use std::collections::HashMap;

    enum Frame {
        /// Keys seen with their line; whether the next node is a key.
        Map(HashMap<String, usize>, bool),
        Seq,
    }
    // A node (scalar, alias, or a closed collection) is complete: in a
    // mapping, keys and values alternate.
    fn done(stack: &mut [Frame]) {
        if let Some(Frame::Map(_, expect_key)) = stack.last_mut() {
            *expect_key = !*expect_key;
        }
    }
    let mut errors = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else {
            break; // the loader reports syntax errors
        };
        match event {
            Event::DocumentStart(_) => stack.clear(),
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map(keys, true)) = stack.last_mut() {
                    let line = span.start.line();
                    match keys.get(value.as_ref()) {
                        Some(first) => errors.push(YamlError {
                            pos: Pos {
                                line,
                                column: span.start.col() + 1,
                            },
                            message: format!(
                                "'{value}' is already defined (first at line {first}); YAML would keep only the last one: remove or rename one"
                            ),
                        }),
                        None => {
                            keys.insert(value.into_owned(), line);
                        }
                    }
                }
                done(&mut stack);
            }
            Event::Alias(_) => done(&mut stack),
            Event::MappingStart(..) => stack.push(Frame::Map(HashMap::new(), true)),
            Event::SequenceStart(..) => stack.push(Frame::Seq),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                done(&mut stack);
            }
            _ => {}
        }
    }
    errors
}

fn pos_of(n: &MarkedYamlOwned) -> Pos {
    Pos {
        line: n.span.start.line(),
        column: n.span.start.col() + 1,
    }
}

fn convert(n: MarkedYamlOwned, lines: &[&str], errors: &mut Vec<YamlError>) -> Node {
    let mut pos = pos_of(&n);
    let mut style = '\0';
    let kind = match n.data {
        YamlDataOwned::Value(s) => match s {
            ScalarOwned::Null => Kind::Null,
            ScalarOwned::Boolean(b) => Kind::Bool(b),
            ScalarOwned::Integer(i) => Kind::Number(i as f64),
            ScalarOwned::FloatingPoint(f) => Kind::Number(f.into_inner()),
            ScalarOwned::String(s) => {
                // The marker points at the node's first character: a quote, a block
                // indicator, or the text itself. Expression columns are relative to the text.
                let first = lines
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
                        let next = lines.get(pos.line).copied().unwrap_or("");
                        pos = Pos {
                            line: pos.line + 1,
                            column: next.len() - next.trim_start().len() + 1,
                        };
                    }
                    _ => {}
                }
                Kind::Str(s)
            }
        },
        YamlDataOwned::Representation(s, _, _) => Kind::Str(s),
        YamlDataOwned::Sequence(items) => Kind::Seq(
            items
                .into_iter()
                .map(|i| convert(i, lines, errors))
                .collect(),
        ),
        YamlDataOwned::Mapping(map) => {
            let mut out: Vec<(Key, Node)> = Vec::new();
            for (k, v) in map {
                let kpos = pos_of(&k);
                let name = match &k.data {
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
                out.push((Key { name, pos: kpos }, convert(v, lines, errors)));
            }
            Kind::Map(out)
        }
        YamlDataOwned::Tagged(_, inner) => return convert(*inner, lines, errors),
        YamlDataOwned::Alias(_) => {
            errors.push(YamlError {
                pos,
                message: "YAML aliases are not supported by GitHub Actions".into(),
            });
            Kind::Null
        }
        YamlDataOwned::BadValue => Kind::Null,
    };
    Node { pos, kind, style }
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
}
