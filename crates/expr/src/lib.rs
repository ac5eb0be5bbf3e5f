//! The GitHub Actions expression language, as GitHub evaluates it.
//!
//! ```
//! use hangar_expr::{Contexts, DefaultHost, Template, Value, parse};
//! use serde_json::json;
//!
//! let contexts = Contexts::from_json(&json!({
//!     "github": {"ref": "refs/heads/main"},
//!     "matrix": {"os": "linux"},
//! }));
//! // Parse once, evaluate many times.
//! let expr = parse("github.ref == 'refs/heads/main' && matrix.os != 'windows'").unwrap();
//! assert_eq!(expr.eval(&contexts, &DefaultHost).unwrap(), Value::Bool(true));
//!
//! // `${{ }}` templates: text, or the typed value of a lone expression.
//! let t = Template::parse("os=${{ matrix.OS }}").unwrap();
//! assert_eq!(t.eval_to_string(&contexts, &DefaultHost).unwrap(), "os=linux");
//! let t = Template::parse("${{ fromJSON('[1, 2]') }}").unwrap();
//! assert_eq!(t.eval_to_value(&contexts, &DefaultHost).unwrap().to_json(), json!([1, 2]));
//!
//! // Syntax errors carry a byte offset and GitHub's wording.
//! let err = parse("1 2").unwrap_err();
//! assert_eq!((err.message.as_str(), err.offset), ("Unexpected symbol: '2'", 2));
//! ```
//!
//! # API
//! - [`parse`] → [`Expr`] (or [`SyntaxError`] with `kind`, `message`, byte
//!   `offset`); [`parse_with_named_values`] also rejects unknown contexts as
//!   GitHub's parser does (`Unrecognized named-value: 'x'`).
//! - [`Expr::eval`]`(&Contexts, &dyn Host)` → [`Value`] or [`EvalError`]
//!   (message + byte offset); [`Expr::eval_bool`] for `if:`.
//! - [`Contexts`]: case-insensitive map from context name to [`Value`];
//!   [`Contexts::from_json`] builds it from `{"github": {...}, ...}`.
//! - [`Host`]: the caller answers `success()`/`always()`/`cancelled()`/
//!   `failure()` and `hashFiles()`; this crate does no I/O. [`DefaultHost`]
//!   answers as a healthy run with no files.
//! - [`Template`]: `${{ }}` splitting with offsets, `eval_to_string`,
//!   `eval_to_value` (typed when the template is one expression);
//!   [`is_single_expression`] without parsing.
//! - [`Condition`]: an `if:` value with or without `${{ }}`, empty meaning
//!   `success()`, and GitHub's implicit `success() && (...)` unless the
//!   condition calls a status function.
//! - [`Value`]: `Null`, `Bool`, `Number(f64)`, `String`, `Array`, `Object`
//!   (ordered, case-insensitive keys); `is_truthy`, `to_display_string` (GitHub's
//!   string coercion), `to_number`, `loose_eq`/`loose_cmp` (GitHub's `==`/`<`),
//!   `to_json_pretty` (`toJSON`), and `From`/`to_json` for `serde_json::Value`.
//! - Analysis for validators: [`Expr::named_values`], [`Expr::calls`],
//!   [`Expr::paths`] (all with offsets), the [`FUNCTIONS`] table with arity
//!   ([`FunctionSpec::check_arity`]), and [`parse_for_analysis`], which accepts
//!   unknown functions and wrong arity so that every one can be reported.
//!
//! # Semantics
//! Literals `null`, `true`, `false`, numbers (`1`, `-.5`, `1e3`, `0xff`, `0o17`,
//! `NaN`, `Infinity`), `'strings'` with `''` escapes. Precedence, high to low:
//! `.`/`[]`/calls, `!`, `< <= > >=`, `== !=`, `&&`, `||`. `&&`/`||` return an
//! operand, not a boolean. Operands of different primitive kinds compare as
//! numbers; strings compare ignoring case; arrays and objects by reference.
//! `.*` and `[*]` filter into arrays and later `.x`/`[i]` apply to each item.
//! Expressions deeper than 50 levels are rejected, and text built by one
//! evaluation is bounded by [`MAX_MEMORY_BYTES`], as on GitHub.
//!
//! # Why our own parser
//! The field crate `github-actions-expressions` (zizmor) was evaluated first. It
//! parses faithfully for static analysis, but it has no evaluator over runtime
//! contexts (only constant folding of literals), its values have no reference
//! identity and unordered objects, its syntax errors do not use GitHub's wording
//! and positions, and it has no `${{ }}` template handling. The engine needs all
//! of those, so this crate has its own small lexer and parser; the conformance
//! suite in `tests/` holds it to GitHub's shared test corpus.

mod ast;
mod condition;
mod error;
mod eval;
mod fold;
mod functions;
mod lexer;
mod parser;
mod template;
mod value;

pub use ast::{CallRef, Expr, NamedValueRef, PathRef};
pub use condition::Condition;
pub use error::{Error, EvalError, SyntaxError, SyntaxErrorKind, column_of};
pub use eval::{Contexts, DefaultHost, Host};
pub use fold::{cmp_ignore_case, eq_ignore_case};
pub use functions::{
    FUNCTIONS, Function, FunctionSpec, MAX_MEMORY_BYTES, StatusFunction, lookup_function,
};
pub use parser::MAX_DEPTH;
pub use template::{
    Part, Template, has_expressions, is_single_expression, single_expression_source,
};
pub use value::{Object, Value, ValueKind, format_number, parse_number};

/// The contexts GitHub defines for workflows (which ones are allowed depends on
/// the workflow key; validators decide that).
pub const KNOWN_CONTEXTS: &[&str] = &[
    "github", "env", "vars", "secrets", "inputs", "matrix", "strategy", "needs", "steps", "job",
    "runner", "jobs",
];

/// Parses an expression (the text inside `${{ }}`, or a bare `if:`). Any named
/// value is accepted; see [`parse_with_named_values`] to restrict them.
pub fn parse(source: &str) -> Result<Expr, SyntaxError> {
    parser::parse(source, None)
}

/// Parses, rejecting named values for which `allowed` returns false with
/// GitHub's `Unrecognized named-value: 'x'` at the name's offset.
pub fn parse_with_named_values(
    source: &str,
    allowed: &dyn Fn(&str) -> bool,
) -> Result<Expr, SyntaxError> {
    parser::parse(source, Some(allowed))
}

/// Parses for analysis only: unknown functions and wrong argument counts are
/// accepted (and listed by [`Expr::calls`]) so a validator can report each one
/// with [`lookup_function`] and [`FunctionSpec::check_arity`]; other syntax
/// errors are reported as by [`parse`]. Such a tree fails if evaluated.
pub fn parse_for_analysis(source: &str) -> Result<Expr, SyntaxError> {
    parser::parse_lenient(source)
}

/// Parses and evaluates in one go.
pub fn evaluate(source: &str, contexts: &Contexts, host: &dyn Host) -> Result<Value, Error> {
    Ok(parse(source)?.eval(contexts, host)?)
}

/// Fuzzing entry point: parses `input` as an expression and as a template and
/// evaluates both against small sample contexts. Must never panic, whatever
/// the input; errors are expected and ignored.
pub fn fuzz_parse_and_eval(input: &str) {
    let contexts = Contexts::from_json(&serde_json::json!({
        "github": {"ref": "refs/heads/main", "event": {"commits": [{"message": "x"}, {"message": "y"}]}},
        "matrix": {"os": "linux", "n": [1, 2, 3]},
        "env": {"A": "1"},
    }));
    if let Ok(expr) = parse_for_analysis(input) {
        let _ = expr.eval(&contexts, &DefaultHost);
    }
    if let Ok(expr) = parse(input) {
        let _ = expr.eval(&contexts, &DefaultHost);
        let _ = expr.named_values();
        let _ = expr.calls();
        let _ = expr.paths();
    }
    if let Ok(condition) = Condition::parse(input) {
        let _ = condition.eval(&contexts, &DefaultHost);
    }
    if let Ok(template) = Template::parse(input) {
        let _ = template.eval_to_string(&contexts, &DefaultHost);
        let _ = template.eval_to_value(&contexts, &DefaultHost);
    }
    let _ = single_expression_source(input);
}
