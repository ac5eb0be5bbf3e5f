//! Recursive-descent parser with GitHub's precedence (high to low):
//! `.` `[]` calls, `!`, `< <= > >=`, `== !=`, `&&`, `||`; all left-associative.
//! Error messages and positions follow GitHub's (`Unexpected symbol: 'x'`,
//! `Unexpected end of expression: 'x'`, `Exceeded max expression depth 50`).

use crate::ast::{CmpOp, Expr, Node, NodeKind};
use crate::error::SyntaxError;
use crate::functions::lookup_function;
use crate::lexer::{Tok, Token, tokenize};
use crate::value::Value;

/// GitHub rejects expressions nested deeper than this.
pub const MAX_DEPTH: usize = 50;

/// Bound on parser recursion (parentheses nest without adding tree depth), so
/// hostile input cannot overflow the stack.
const MAX_RECURSION: usize = 4 * MAX_DEPTH;

pub(crate) type NamedValueFilter<'f> = Option<&'f dyn Fn(&str) -> bool>;

pub(crate) fn parse(src: &str, allowed: NamedValueFilter<'_>) -> Result<Expr, SyntaxError> {
    parse_inner(src, allowed, false)
}

/// Parses accepting unknown functions and any argument count, so a validator
/// can list every call; such a tree fails at evaluation instead.
pub(crate) fn parse_lenient(src: &str) -> Result<Expr, SyntaxError> {
    parse_inner(src, None, true)
}

fn parse_inner(
    src: &str,
    allowed: NamedValueFilter<'_>,
    lenient: bool,
) -> Result<Expr, SyntaxError> {
    let tokens = tokenize(src)?;
    if tokens.is_empty() {
        // GitHub evaluates an empty expression to null.
        return Ok(Expr {
            root: Node {
                kind: NodeKind::Literal(Value::Null),
                offset: 0,
            },
        });
    }
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
        allowed,
        lenient,
        recursion: 0,
    };
    let (root, _) = parser.or()?;
    if let Some(token) = parser.peek() {
        return Err(parser.unexpected(token));
    }
    Ok(Expr { root })
}

struct Parser<'s, 'f> {
    src: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    allowed: NamedValueFilter<'f>,
    /// Accept unknown functions and wrong arity (see [`parse_lenient`]).
    lenient: bool,
    recursion: usize,
}

/// A node and the height of its subtree (GitHub's "depth").
type Parsed = (Node, usize);

impl Parser<'_, '_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn text(&self, token: &Token) -> &str {
        &self.src[token.start..token.end]
    }

    fn unexpected(&self, token: &Token) -> SyntaxError {
        SyntaxError::parsing(
            format!("Unexpected symbol: '{}'", self.text(token)),
            token.start,
        )
    }

    /// The error for the token at the cursor: a wrong symbol, or the end.
    fn error_here(&self) -> SyntaxError {
        match self.peek() {
            Some(token) => self.unexpected(token),
            None => {
                let last = self
                    .tokens
                    .last()
                    .expect("error_here is called after a token");
                SyntaxError::parsing(
                    format!("Unexpected end of expression: '{}'", self.text(last)),
                    last.start,
                )
            }
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<(), SyntaxError> {
        if self.peek_tok() == Some(&tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    fn node(&self, kind: NodeKind, offset: usize, height: usize) -> Result<Parsed, SyntaxError> {
        if height > MAX_DEPTH {
            return Err(SyntaxError::parsing(
                format!("Exceeded max expression depth {MAX_DEPTH}"),
                offset,
            ));
        }
        Ok((Node { kind, offset }, height))
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.recursion += 1;
        if self.recursion > MAX_RECURSION {
            let offset = self.peek().map_or(self.src.len(), |t| t.start);
            return Err(SyntaxError::parsing(
                format!("Exceeded max expression depth {MAX_DEPTH}"),
                offset,
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Parsed, SyntaxError> {
        self.enter()?;
        let result = self.logical(Tok::Or);
        self.recursion -= 1;
        result
    }

    /// `a || b || c` (or `&&`) as one n-ary node.
    fn logical(&mut self, op: Tok) -> Result<Parsed, SyntaxError> {
        let operand = |p: &mut Self| {
            if op == Tok::Or {
                p.logical(Tok::And)
            } else {
                p.equality()
            }
        };
        let first = operand(self)?;
        if self.peek_tok() != Some(&op) {
            return Ok(first);
        }
        let offset = self.tokens[self.pos].start;
        let mut height = first.1;
        let mut items = vec![first.0];
        while self.peek_tok() == Some(&op) {
            self.pos += 1;
            let (node, h) = operand(self)?;
            height = height.max(h);
            items.push(node);
        }
        let kind = if op == Tok::Or {
            NodeKind::Or(items)
        } else {
            NodeKind::And(items)
        };
        self.node(kind, offset, height + 1)
    }

    fn equality(&mut self) -> Result<Parsed, SyntaxError> {
        let mut left = self.comparison()?;
        loop {
            let op = match self.peek_tok() {
                Some(Tok::Eq) => CmpOp::Eq,
                Some(Tok::Ne) => CmpOp::Ne,
                _ => return Ok(left),
            };
            left = self.binary(op, left, Self::comparison)?;
        }
    }

    fn comparison(&mut self) -> Result<Parsed, SyntaxError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek_tok() {
                Some(Tok::Lt) => CmpOp::Lt,
                Some(Tok::Le) => CmpOp::Le,
                Some(Tok::Gt) => CmpOp::Gt,
                Some(Tok::Ge) => CmpOp::Ge,
                _ => return Ok(left),
            };
            left = self.binary(op, left, Self::unary)?;
        }
    }

    fn binary(
        &mut self,
        op: CmpOp,
        left: Parsed,
        operand: fn(&mut Self) -> Result<Parsed, SyntaxError>,
    ) -> Result<Parsed, SyntaxError> {
        let offset = self.tokens[self.pos].start;
        self.pos += 1;
        let right = operand(self)?;
        let height = left.1.max(right.1) + 1;
        let kind = NodeKind::Compare {
            op,
            left: Box::new(left.0),
            right: Box::new(right.0),
        };
        self.node(kind, offset, height)
    }

    fn unary(&mut self) -> Result<Parsed, SyntaxError> {
        if self.peek_tok() == Some(&Tok::Not) {
            let offset = self.tokens[self.pos].start;
            self.pos += 1;
            self.enter()?;
            let inner = self.unary();
            self.recursion -= 1;
            let (node, height) = inner?;
            return self.node(NodeKind::Not(Box::new(node)), offset, height + 1);
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Parsed, SyntaxError> {
        let (mut node, mut height) = self.primary()?;
        loop {
            match self.peek_tok() {
                Some(Tok::Dot) => {
                    let offset = self.tokens[self.pos].start;
                    self.pos += 1;
                    let kind = match self.peek() {
                        Some(Token { tok: Tok::Star, .. }) => NodeKind::Wildcard {
                            target: Box::new(node),
                        },
                        Some(t @ Token { tok: Tok::Word, .. }) => {
                            let key = Value::from(self.text(t));
                            NodeKind::Property {
                                target: Box::new(node),
                                key,
                            }
                        }
                        _ => return Err(self.error_here()),
                    };
                    self.pos += 1;
                    (node, height) = self.node(kind, offset, height + 1)?;
                }
                Some(Tok::LBracket) => {
                    let offset = self.tokens[self.pos].start;
                    self.pos += 1;
                    let kind = if self.peek_tok() == Some(&Tok::Star) {
                        self.pos += 1;
                        NodeKind::Wildcard {
                            target: Box::new(node),
                        }
                    } else {
                        let (index, index_height) = self.or()?;
                        height = height.max(index_height);
                        NodeKind::Index {
                            target: Box::new(node),
                            index: Box::new(index),
                        }
                    };
                    self.expect(Tok::RBracket)?;
                    (node, height) = self.node(kind, offset, height + 1)?;
                }
                _ => return Ok((node, height)),
            }
        }
    }

    fn primary(&mut self) -> Result<Parsed, SyntaxError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.error_here());
        };
        let literal = |value: Value| {
            Ok((
                Node {
                    kind: NodeKind::Literal(value),
                    offset: token.start,
                },
                1,
            ))
        };
        match token.tok {
            Tok::Number(n) => {
                self.pos += 1;
                literal(Value::Number(n))
            }
            Tok::Str(s) => {
                self.pos += 1;
                literal(Value::String(s))
            }
            Tok::LParen => {
                self.pos += 1;
                let inner = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(inner)
            }
            Tok::Word => {
                self.pos += 1;
                let word = &self.src[token.start..token.end];
                match word {
                    "true" => return literal(Value::Bool(true)),
                    "false" => return literal(Value::Bool(false)),
                    "null" => return literal(Value::Null),
                    "NaN" => return literal(Value::Number(f64::NAN)),
                    "Infinity" => return literal(Value::Number(f64::INFINITY)),
                    _ => {}
                }
                if self.peek_tok() == Some(&Tok::LParen) {
                    return self.call(word, token.start);
                }
                if let Some(allowed) = self.allowed
                    && !allowed(word)
                {
                    return Err(SyntaxError::parsing(
                        format!("Unrecognized named-value: '{word}'"),
                        token.start,
                    ));
                }
                let kind = NodeKind::NamedValue { name: word.into() };
                Ok((
                    Node {
                        kind,
                        offset: token.start,
                    },
                    1,
                ))
            }
            _ => Err(self.unexpected(&token)),
        }
    }

    fn call(&mut self, name: &str, offset: usize) -> Result<Parsed, SyntaxError> {
        let spec = lookup_function(name);
        if spec.is_none() && !self.lenient {
            return Err(SyntaxError::parsing(
                format!("Unrecognized function: '{name}'"),
                offset,
            ));
        }
        self.expect(Tok::LParen)?;
        let mut args = Vec::new();
        let mut height = 0;
        if self.peek_tok() == Some(&Tok::RParen) {
            self.pos += 1;
        } else {
            loop {
                let (arg, h) = self.or()?;
                height = height.max(h);
                args.push(arg);
                match self.peek_tok() {
                    Some(Tok::Comma) => self.pos += 1,
                    Some(Tok::RParen) => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.error_here()),
                }
            }
        }
        if let Some(spec) = spec
            && !self.lenient
            && let Err(what) = spec.check_arity(args.len())
        {
            return Err(SyntaxError::parsing(format!("{what}: '{name}'"), offset));
        }
        let kind = NodeKind::Call {
            function: spec.map(|s| s.function),
            name: name.into(),
            args,
        };
        self.node(kind, offset, height + 1)
    }
}
