//! The evaluator. Results borrow from the contexts and the syntax tree where they
//! can (`github.ref` is a reference into the caller's `github` object), so the
//! common `if:` conditions evaluate without allocating.

use std::sync::Arc;

use crate::ast::{CmpOp, Expr, Node, NodeKind};
use crate::error::EvalError;
use crate::fold;
use crate::functions::{self, Function, Memory, StatusFunction};
use crate::value::{Value, parse_number};

/// The named values (contexts) an expression is evaluated against: `github`,
/// `env`, `matrix`, ... Names are case-insensitive.
#[derive(Clone, Debug, Default)]
pub struct Contexts {
    /// (name as given, value); a handful of entries, so a case-insensitive
    /// scan beats hashing.
    entries: Vec<(Box<str>, Value)>,
}

impl Contexts {
    pub fn new() -> Contexts {
        Contexts::default()
    }

    /// Sets (or replaces) a named value.
    pub fn insert(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        match self
            .entries
            .iter_mut()
            .find(|(n, _)| fold::eq_ignore_case(n, name))
        {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.into(), value)),
        }
    }

    /// Builder form of [`Contexts::insert`].
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Contexts {
        self.insert(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(n, _)| fold::eq_ignore_case(n, name))
            .map(|(_, v)| v)
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self
            .entries
            .iter()
            .position(|(n, _)| fold::eq_ignore_case(n, name))?;
        Some(self.entries.remove(i).1)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The contexts as (name, value) pairs, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(n, v)| (&**n, v))
    }

    /// Builds contexts from a JSON object (`{"github": {...}, "matrix": {...}}`);
    /// anything else gives no contexts.
    pub fn from_json(json: &serde_json::Value) -> Contexts {
        let mut contexts = Contexts::new();
        if let Some(map) = json.as_object() {
            for (name, value) in map {
                contexts.insert(name, Value::from(value));
            }
        }
        contexts
    }
}

impl From<serde_json::Value> for Contexts {
    fn from(json: serde_json::Value) -> Contexts {
        Contexts::from_json(&json)
    }
}

/// What evaluation needs from its surroundings: the job status for
/// `success()`/`always()`/`cancelled()`/`failure()`, and file hashing for
/// `hashFiles()`. The expression crate does no I/O itself.
pub trait Host {
    /// The answer of a status function. Default: a run where nothing failed and
    /// nothing was cancelled.
    fn status(&self, function: StatusFunction) -> bool {
        matches!(function, StatusFunction::Success | StatusFunction::Always)
    }

    /// `success('job', ...)` / `failure('job', ...)` in a job's `if:`: the status
    /// of just those dependencies. Default: as [`Host::status`].
    fn status_of(&self, function: StatusFunction, jobs: &[String]) -> bool {
        let _ = jobs;
        self.status(function)
    }

    /// `hashFiles(patterns...)`: the hex SHA-256 GitHub computes, or a message.
    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        let _ = patterns;
        Err("hashFiles() is not available here".into())
    }
}

/// A host for tests and `hangar expr`: status as in a healthy run, no files.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultHost;

impl Host for DefaultHost {}

/// An intermediate result: borrowed where possible, and remembering whether it
/// came out of a `*` filter (GitHub then applies further `.x`/`[i]` to each item).
enum Out<'a> {
    Ref(&'a Value),
    Owned(Value),
    /// Always holds a `Value::Array`.
    Filtered(Value),
}

impl Out<'_> {
    fn value(&self) -> &Value {
        match self {
            Out::Ref(v) => v,
            Out::Owned(v) | Out::Filtered(v) => v,
        }
    }

    fn into_value(self) -> Value {
        match self {
            Out::Ref(v) => v.clone(),
            Out::Owned(v) | Out::Filtered(v) => v,
        }
    }
}

struct Cx<'a> {
    contexts: &'a Contexts,
    host: &'a dyn Host,
    memory: Memory,
}

impl Expr {
    /// Evaluates against `contexts`, asking `host` for status functions and
    /// `hashFiles`.
    pub fn eval(&self, contexts: &Contexts, host: &dyn Host) -> Result<Value, EvalError> {
        let cx = Cx {
            contexts,
            host,
            memory: Memory::default(),
        };
        eval(&self.root, &cx).map(Out::into_value)
    }

    /// Evaluates and applies GitHub's truthiness (what an `if:` needs).
    pub fn eval_bool(&self, contexts: &Contexts, host: &dyn Host) -> Result<bool, EvalError> {
        let cx = Cx {
            contexts,
            host,
            memory: Memory::default(),
        };
        eval(&self.root, &cx).map(|out| out.value().is_truthy())
    }
}

fn eval<'a>(node: &'a Node, cx: &Cx<'a>) -> Result<Out<'a>, EvalError> {
    Ok(match &node.kind {
        NodeKind::Literal(value) => Out::Ref(value),
        NodeKind::NamedValue { name } => match cx.contexts.get(name) {
            Some(value) => Out::Ref(value),
            None => Out::Owned(Value::Null),
        },
        NodeKind::Property { target, key } => index(eval(target, cx)?, key),
        NodeKind::Index { target, index: key } => {
            let target = eval(target, cx)?;
            let key = eval(key, cx)?;
            index(target, key.value())
        }
        NodeKind::Wildcard { target } => wildcard(eval(target, cx)?),
        NodeKind::Not(inner) => Out::Owned(Value::Bool(!eval(inner, cx)?.value().is_truthy())),
        NodeKind::And(items) => {
            let (last, rest) = items.split_last().expect("&& has operands");
            for item in rest {
                let out = eval(item, cx)?;
                if !out.value().is_truthy() {
                    return Ok(out);
                }
            }
            eval(last, cx)?
        }
        NodeKind::Or(items) => {
            let (last, rest) = items.split_last().expect("|| has operands");
            for item in rest {
                let out = eval(item, cx)?;
                if out.value().is_truthy() {
                    return Ok(out);
                }
            }
            eval(last, cx)?
        }
        NodeKind::Compare { op, left, right } => {
            let left = eval(left, cx)?;
            let right = eval(right, cx)?;
            let (l, r) = (left.value(), right.value());
            let result = match op {
                CmpOp::Eq => l.loose_eq(r),
                CmpOp::Ne => !l.loose_eq(r),
                CmpOp::Lt => l.loose_cmp(r).is_some_and(|o| o.is_lt()),
                CmpOp::Le => l.loose_cmp(r).is_some_and(|o| o.is_le()),
                CmpOp::Gt => l.loose_cmp(r).is_some_and(|o| o.is_gt()),
                CmpOp::Ge => l.loose_cmp(r).is_some_and(|o| o.is_ge()),
            };
            Out::Owned(Value::Bool(result))
        }
        NodeKind::Call {
            function: Some(function),
            args,
            ..
        } if function.spec().check_arity(args.len()).is_ok() => {
            call(*function, args, node.offset, cx)?
        }
        // Only trees from `parse_for_analysis` get here.
        NodeKind::Call {
            function: None,
            name,
            ..
        } => {
            return Err(EvalError::new(
                format!("Unrecognized function: '{name}'"),
                node.offset,
            ));
        }
        NodeKind::Call { name, .. } => {
            return Err(EvalError::new(
                format!("Wrong number of parameters supplied: '{name}'"),
                node.offset,
            ));
        }
    })
}

/// GitHub's indexing: objects by the key's string form (ignoring case), arrays
/// by the key's number form (truncated; out of range, NaN or negative → null),
/// anything else → null. On a filtered array, applies to each item and keeps
/// the hits.
fn index<'a>(target: Out<'a>, key: &Value) -> Out<'a> {
    match target {
        Out::Filtered(items) => {
            let items = items.as_array().unwrap_or_default();
            let hits = items
                .iter()
                .filter_map(|item| lookup(item, key))
                .cloned()
                .collect();
            Out::Filtered(Value::array(hits))
        }
        Out::Ref(value) => lookup(value, key).map_or(Out::Owned(Value::Null), Out::Ref),
        Out::Owned(value) => Out::Owned(lookup(&value, key).cloned().unwrap_or_default()),
    }
}

fn lookup<'v>(target: &'v Value, key: &Value) -> Option<&'v Value> {
    match target {
        Value::Object(object) => match key {
            Value::String(s) => object.get(s),
            Value::Array(_) | Value::Object(_) => None,
            other => object.get(&other.to_display_string()),
        },
        Value::Array(items) => {
            let n = match key {
                Value::String(s) => parse_number(s),
                other => other.to_number(),
            };
            if n.is_finite() && n >= 0.0 {
                items.get(n.trunc() as usize)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `x.*` / `x[*]`: an array's items or an object's values; on a filtered array,
/// the items' items and values, flattened one level.
#[inline(never)]
fn wildcard(target: Out<'_>) -> Out<'static> {
    let mut items = Vec::new();
    match &target {
        Out::Filtered(filtered) => {
            for item in filtered.as_array().unwrap_or_default() {
                match item {
                    Value::Array(inner) => items.extend(inner.iter().cloned()),
                    Value::Object(object) => items.extend(object.values().cloned()),
                    _ => {}
                }
            }
        }
        _ => match target.value() {
            Value::Array(inner) => items.extend(inner.iter().cloned()),
            Value::Object(object) => items.extend(object.values().cloned()),
            _ => {}
        },
    }
    Out::Filtered(Value::Array(Arc::new(items)))
}

// Kept out of line: inlined, its locals would bloat every `eval` frame.
#[inline(never)]
fn call<'a>(
    function: Function,
    args: &'a [Node],
    offset: usize,
    cx: &Cx<'a>,
) -> Result<Out<'a>, EvalError> {
    if let Some(status) = function.status() {
        if args.is_empty() {
            return Ok(Out::Owned(Value::Bool(cx.host.status(status))));
        }
        let mut jobs = Vec::with_capacity(args.len());
        for arg in args {
            jobs.push(eval(arg, cx)?.value().to_display_string().into_owned());
        }
        return Ok(Out::Owned(Value::Bool(cx.host.status_of(status, &jobs))));
    }
    if function == Function::Case {
        return case(args, cx);
    }
    let values: Vec<Out<'a>> = args.iter().map(|a| eval(a, cx)).collect::<Result<_, _>>()?;
    let arg = |i: usize| values[i].value();
    let memory = &cx.memory;
    let result = match function {
        Function::Contains => Value::Bool(functions::contains(arg(0), arg(1))),
        Function::StartsWith => Value::Bool(functions::starts_with(arg(0), arg(1))),
        Function::EndsWith => Value::Bool(functions::ends_with(arg(0), arg(1))),
        Function::Format => {
            let fmt = arg(0).to_display_string();
            let rest: Vec<Value> = values[1..].iter().map(|v| v.value().clone()).collect();
            functions::format(&fmt, &rest, memory, offset)?
        }
        Function::Join => functions::join(arg(0), values.get(1).map(Out::value), memory, offset)?,
        Function::ToJson => functions::to_json(arg(0), memory, offset)?,
        Function::FromJson => functions::from_json(arg(0), offset)?,
        Function::HashFiles => {
            let patterns: Vec<String> = values
                .iter()
                .map(|v| v.value().to_display_string().into_owned())
                .collect();
            let hash = cx
                .host
                .hash_files(&patterns)
                .map_err(|message| EvalError::new(message, offset))?;
            Value::from(hash)
        }
        Function::Success
        | Function::Always
        | Function::Cancelled
        | Function::Failure
        | Function::Case => {
            unreachable!("handled above")
        }
    };
    Ok(Out::Owned(result))
}

/// `case(pred1, value1, pred2, value2, ..., default)`: lazily evaluated; each
/// predicate must be a boolean.
fn case<'a>(args: &'a [Node], cx: &Cx<'a>) -> Result<Out<'a>, EvalError> {
    let (default, pairs) = args.split_last().expect("case has arguments");
    for pair in pairs.chunks(2) {
        let predicate = eval(&pair[0], cx)?;
        match predicate.value() {
            Value::Bool(true) => return eval(&pair[1], cx),
            Value::Bool(false) => {}
            _ => {
                return Err(EvalError::new(
                    "case predicate must evaluate to a boolean value",
                    pair[0].offset,
                ));
            }
        }
    }
    eval(default, cx)
}
