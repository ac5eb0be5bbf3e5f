//! `${{ }}` templates: text with zero or more embedded expressions.

use crate::ast::Expr;
use crate::error::{EvalError, SyntaxError};
use crate::eval::{Contexts, Host};
use crate::lexer::find_template_end;
use crate::parser;
use crate::value::Value;

/// A parsed template. Offsets are bytes into the template text.
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
pub enum Part {
    /// Literal text, copied as is.
    Text { text: String, offset: usize },
    /// `${{ source }}`: `offset` is where `source` (the text between the braces)
    /// starts, so an error offset inside the expression plus `offset` points
    /// into the template.
    Expr {
        expr: Expr,
        source: String,
        offset: usize,
    },
}

impl Template {
    /// Splits `text` into literal and `${{ }}` parts, parsing each expression.
    /// A `}}` inside a string literal (`${{ format('}}') }}`) does not close.
    pub fn parse(text: &str) -> Result<Template, SyntaxError> {
        Template::parse_inner(text, None)
    }

    /// As [`Template::parse`], rejecting named values for which `allowed` is false.
    pub fn parse_with_named_values(
        text: &str,
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<Template, SyntaxError> {
        Template::parse_inner(text, Some(allowed))
    }

    fn parse_inner(
        text: &str,
        allowed: parser::NamedValueFilter<'_>,
    ) -> Result<Template, SyntaxError> {
        let mut parts = Vec::new();
        for span in spans(text) {
            match span? {
                Span::Text(start, end) => parts.push(Part::Text {
                    text: text[start..end].to_string(),
                    offset: start,
                }),
                Span::Expr(start, end) => {
                    let source = &text[start..end];
                    let expr = parser::parse(source, allowed).map_err(|e| e.shifted(start))?;
                    parts.push(Part::Expr {
                        expr,
                        source: source.to_string(),
                        offset: start,
                    });
                }
            }
        }
        Ok(Template { parts })
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// No `${{ }}` at all: the template is plain text.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text { .. }))
    }

    /// The template is exactly one `${{ }}` (whitespace around it allowed): its
    /// value keeps its type (an `if:` gets a boolean, a matrix `fromJSON` an object).
    pub fn is_single_expression(&self) -> bool {
        self.single_expression().is_some()
    }

    /// The expression of a single-expression template.
    pub fn single_expression(&self) -> Option<&Expr> {
        let mut found = None;
        for part in &self.parts {
            match part {
                Part::Text { text, .. } if text.trim().is_empty() => {}
                Part::Expr { expr, .. } if found.is_none() => found = Some(expr),
                _ => return None,
            }
        }
        found
    }

    /// All embedded expressions with their offsets (for validation).
    pub fn expressions(&self) -> impl Iterator<Item = (&Expr, &str, usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr {
                expr,
                source,
                offset,
            } => Some((expr, source.as_str(), *offset)),
            Part::Text { .. } => None,
        })
    }

    /// Evaluates to text: each expression's value in GitHub's string form.
    /// Error offsets point into the template.
    pub fn eval_to_string(
        &self,
        contexts: &Contexts,
        host: &dyn Host,
    ) -> Result<String, EvalError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text { text, .. } => out.push_str(text),
                Part::Expr { expr, offset, .. } => {
                    let value = expr.eval(contexts, host).map_err(|e| e.shifted(*offset))?;
                    out.push_str(&value.to_display_string());
                }
            }
        }
        Ok(out)
    }

    /// Evaluates keeping the type when the template is a single expression;
    /// otherwise the text of [`Template::eval_to_string`].
    pub fn eval_to_value(&self, contexts: &Contexts, host: &dyn Host) -> Result<Value, EvalError> {
        if let Some(expr) = self.single_expression() {
            let offset = self.expressions().next().map_or(0, |(_, _, offset)| offset);
            return expr.eval(contexts, host).map_err(|e| e.shifted(offset));
        }
        self.eval_to_string(contexts, host).map(Value::from)
    }
}

enum Span {
    Text(usize, usize),
    Expr(usize, usize),
}

/// Splits text into literal spans and expression spans (without the braces).
fn spans(text: &str) -> impl Iterator<Item = Result<Span, SyntaxError>> + '_ {
    let mut pos = 0;
    let mut pending: Option<Span> = None;
    std::iter::from_fn(move || {
        if let Some(span) = pending.take() {
            return Some(Ok(span));
        }
        if pos >= text.len() {
            return None;
        }
        let Some(rel) = text[pos..].find("${{") else {
            let span = Span::Text(pos, text.len());
            pos = text.len();
            return Some(Ok(span));
        };
        let open = pos + rel;
        let inner = open + 3;
        let Some(close) = find_template_end(text, inner) else {
            pos = text.len();
            return Some(Err(SyntaxError::parsing(
                "Unclosed expression: '${{' has no matching '}}'".into(),
                open,
            )));
        };
        let expr = Span::Expr(inner, close);
        let text_span = (open > pos).then_some(Span::Text(pos, open));
        pos = close + 2;
        match text_span {
            Some(t) => {
                pending = Some(expr);
                Some(Ok(t))
            }
            None => Some(Ok(expr)),
        }
    })
}

/// True when `text` contains `${{`.
pub fn has_expressions(text: &str) -> bool {
    text.contains("${{")
}

/// True when `text` is exactly one `${{ }}` expression (surrounding whitespace
/// allowed), without parsing the expression.
pub fn is_single_expression(text: &str) -> bool {
    single_expression_source(text).is_some()
}

/// For a single-expression template, the expression text between the braces
/// and its byte offset in `text`.
pub fn single_expression_source(text: &str) -> Option<(&str, usize)> {
    let start = text.len() - text.trim_start().len();
    let rest = &text[start..];
    if !rest.starts_with("${{") {
        return None;
    }
    let close = find_template_end(text, start + 3)?;
    if !text[close + 2..].trim().is_empty() {
        return None;
    }
    Some((&text[start + 3..close], start + 3))
}
