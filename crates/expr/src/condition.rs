//! `if:` conditions as GitHub reads them: with or without `${{ }}`, empty
//! meaning `success()`, and an implicit `success() && (...)` unless the
//! condition calls a status function itself.

use crate::ast::Expr;
use crate::error::{EvalError, SyntaxError};
use crate::eval::{Contexts, Host};
use crate::functions::StatusFunction;
use crate::parser::{self, NamedValueFilter};
use crate::template::{Template, has_expressions, single_expression_source};

/// A parsed `if:` condition.
#[derive(Clone, Debug)]
pub struct Condition {
    body: Body,
    /// GitHub prepends `success() &&` when no status function is called.
    implicit_success: bool,
}

#[derive(Clone, Debug)]
enum Body {
    /// Empty condition: `success()` alone.
    Empty,
    /// A bare expression or a single `${{ }}`; `offset` is where it starts in the text.
    Expr { expr: Expr, offset: usize },
    /// Text mixing literal parts and `${{ }}`: true when the text is non-empty.
    Template(Template),
}

impl Condition {
    /// Parses an `if:` value. Syntax error offsets point into `text`.
    pub fn parse(text: &str) -> Result<Condition, SyntaxError> {
        Condition::parse_inner(text, None)
    }

    /// As [`Condition::parse`], rejecting named values for which `allowed` is false.
    pub fn parse_with_named_values(
        text: &str,
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<Condition, SyntaxError> {
        Condition::parse_inner(text, Some(allowed))
    }

    fn parse_inner(text: &str, allowed: NamedValueFilter<'_>) -> Result<Condition, SyntaxError> {
        let body = if text.trim().is_empty() {
            Body::Empty
        } else if let Some((source, offset)) = single_expression_source(text) {
            let expr = parser::parse(source, allowed).map_err(|e| e.shifted(offset))?;
            Body::Expr { expr, offset }
        } else if has_expressions(text) {
            Body::Template(match allowed {
                Some(allowed) => Template::parse_with_named_values(text, allowed)?,
                None => Template::parse(text)?,
            })
        } else {
            Body::Expr {
                expr: parser::parse(text, allowed)?,
                offset: 0,
            }
        };
        let implicit_success = match &body {
            Body::Empty => true,
            Body::Expr { expr, .. } => !expr.uses_status_function(),
            Body::Template(t) => !t.expressions().any(|(e, _, _)| e.uses_status_function()),
        };
        Ok(Condition {
            body,
            implicit_success,
        })
    }

    /// False when the condition calls a status function itself (then it runs
    /// even after a failure if it says so); true when GitHub adds `success() &&`.
    pub fn has_implicit_success(&self) -> bool {
        self.implicit_success
    }

    /// The expressions in the condition with their offsets in the text (for
    /// validation).
    pub fn expressions(&self) -> Vec<(&Expr, usize)> {
        match &self.body {
            Body::Empty => Vec::new(),
            Body::Expr { expr, offset } => vec![(expr, *offset)],
            Body::Template(t) => t.expressions().map(|(e, _, offset)| (e, offset)).collect(),
        }
    }

    /// Evaluates to run / skip. Evaluation error offsets point into the text.
    pub fn eval(&self, contexts: &Contexts, host: &dyn Host) -> Result<bool, EvalError> {
        if self.implicit_success && !host.status(StatusFunction::Success) {
            return Ok(false);
        }
        match &self.body {
            Body::Empty => Ok(true),
            Body::Expr { expr, offset } => expr
                .eval_bool(contexts, host)
                .map_err(|e| e.shifted(*offset)),
            Body::Template(t) => t.eval_to_value(contexts, host).map(|v| v.is_truthy()),
        }
    }
}
