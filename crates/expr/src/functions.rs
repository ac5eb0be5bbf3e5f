//! The built-in functions: the table the parser and validators check names and
//! arity against, and their implementations.

use crate::error::EvalError;
use crate::fold;
use crate::value::Value;

/// A built-in function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
    HashFiles,
    Success,
    Always,
    Cancelled,
    Failure,
    Case,
}

/// One of the four job-status functions, answered by the [`crate::Host`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusFunction {
    Success,
    Always,
    Cancelled,
    Failure,
}

/// A function's canonical name and how many arguments it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    pub function: Function,
    /// Canonical spelling, as GitHub documents it (calls ignore case).
    pub name: &'static str,
    pub min_args: usize,
    /// `usize::MAX` for functions taking any number of arguments.
    pub max_args: usize,
}

const ANY: usize = usize::MAX;

/// Every built-in function with its arity.
pub const FUNCTIONS: &[FunctionSpec] = &[
    spec(Function::Contains, "contains", 2, 2),
    spec(Function::StartsWith, "startsWith", 2, 2),
    spec(Function::EndsWith, "endsWith", 2, 2),
    spec(Function::Format, "format", 1, ANY),
    spec(Function::Join, "join", 1, 2),
    spec(Function::ToJson, "toJSON", 1, 1),
    spec(Function::FromJson, "fromJSON", 1, 1),
    spec(Function::HashFiles, "hashFiles", 1, ANY),
    // In a job's `if:`, GitHub also takes job names: `success('build', 'test')`
    // asks about those dependencies only (see `Host::status_of`).
    spec(Function::Success, "success", 0, ANY),
    spec(Function::Always, "always", 0, 0),
    spec(Function::Cancelled, "cancelled", 0, 0),
    spec(Function::Failure, "failure", 0, ANY),
    // case(pred1, val1, pred2, val2, ..., default): an odd count, at least 3.
    spec(Function::Case, "case", 3, ANY),
];

const fn spec(
    function: Function,
    name: &'static str,
    min_args: usize,
    max_args: usize,
) -> FunctionSpec {
    FunctionSpec {
        function,
        name,
        min_args,
        max_args,
    }
}

/// Looks a function up by name, ignoring case.
pub fn lookup_function(name: &str) -> Option<&'static FunctionSpec> {
    FUNCTIONS.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

impl FunctionSpec {
    /// GitHub's complaint about calling this function with `count` arguments,
    /// if any (`Too few parameters supplied`, ...), without the name.
    pub fn check_arity(&self, count: usize) -> Result<(), &'static str> {
        if count < self.min_args {
            Err("Too few parameters supplied")
        } else if count > self.max_args {
            Err("Too many parameters supplied")
        } else if self.function == Function::Case && count.is_multiple_of(2) {
            Err("Even number of parameters supplied, requires an odd number of parameters")
        } else {
            Ok(())
        }
    }
}

impl Function {
    pub fn spec(self) -> &'static FunctionSpec {
        FUNCTIONS
            .iter()
            .find(|f| f.function == self)
            .expect("every function is in FUNCTIONS")
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The status function this is, if it is one.
    pub fn status(self) -> Option<StatusFunction> {
        match self {
            Function::Success => Some(StatusFunction::Success),
            Function::Always => Some(StatusFunction::Always),
            Function::Cancelled => Some(StatusFunction::Cancelled),
            Function::Failure => Some(StatusFunction::Failure),
            _ => None,
        }
    }
}

/// Upper bound on the text a single evaluation may build (format, join, toJSON
/// results), counted as GitHub counts it (UTF-16, two bytes a unit): nested
/// `format` calls could otherwise grow a string exponentially.
pub const MAX_MEMORY_BYTES: usize = 1024 * 1024;

/// Size of `s` as a .NET string, which is what GitHub's limit measures.
fn utf16_bytes(s: &str) -> usize {
    2 * if s.is_ascii() {
        s.len()
    } else {
        s.encode_utf16().count()
    }
}

pub(crate) const MEMORY_EXCEEDED: &str = "The maximum allowed memory size was exceeded";

/// Tracks the text built so far in one evaluation.
#[derive(Default)]
pub(crate) struct Memory {
    used: std::cell::Cell<usize>,
}

impl Memory {
    pub(crate) fn reserve(&self, bytes: usize, offset: usize) -> Result<(), EvalError> {
        let used = self.used.get().saturating_add(bytes);
        if used > MAX_MEMORY_BYTES {
            return Err(EvalError::new(MEMORY_EXCEEDED, offset));
        }
        self.used.set(used);
        Ok(())
    }
}

pub(crate) fn contains(search: &Value, item: &Value) -> bool {
    match search {
        Value::Array(items) => items.iter().any(|i| i.loose_eq(item)),
        Value::Object(_) => false,
        _ if item.is_primitive() => {
            fold::contains_ignore_case(&search.to_display_string(), &item.to_display_string())
        }
        _ => false,
    }
}

pub(crate) fn starts_with(s: &Value, prefix: &Value) -> bool {
    s.is_primitive()
        && prefix.is_primitive()
        && fold::starts_with_ignore_case(&s.to_display_string(), &prefix.to_display_string())
}

pub(crate) fn ends_with(s: &Value, suffix: &Value) -> bool {
    s.is_primitive()
        && suffix.is_primitive()
        && fold::ends_with_ignore_case(&s.to_display_string(), &suffix.to_display_string())
}

pub(crate) fn join(
    items: &Value,
    separator: Option<&Value>,
    memory: &Memory,
    offset: usize,
) -> Result<Value, EvalError> {
    let separator = match separator {
        Some(s) if s.is_primitive() => s.to_display_string(),
        _ => ",".into(),
    };
    match items {
        Value::Array(items) => {
            let parts: Vec<_> = items.iter().map(Value::to_display_string).collect();
            let size = parts.iter().map(|p| utf16_bytes(p)).sum::<usize>()
                + utf16_bytes(&separator) * parts.len().saturating_sub(1);
            memory.reserve(size, offset)?;
            Ok(Value::from(parts.join(&separator)))
        }
        Value::Object(_) => Ok(Value::from("")),
        primitive => Ok(Value::from(primitive.to_display_string().into_owned())),
    }
}

/// `format('{0} and {{literal}}', x)`: .NET composite formatting restricted to
/// plain indices, with `{{`/`}}` escapes.
pub(crate) fn format(
    fmt: &str,
    args: &[Value],
    memory: &Memory,
    offset: usize,
) -> Result<Value, EvalError> {
    enum Piece<'a> {
        Text(&'a str),
        Arg(usize),
    }
    let invalid = || {
        EvalError::new(
            format!("The following format string is invalid: {fmt}"),
            offset,
        )
    };
    let mut pieces = Vec::new();
    let bytes = fmt.as_bytes();
    let (mut i, mut text_start) = (0, 0);
    let mut max_index: Option<usize> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                pieces.push(Piece::Text(&fmt[text_start..=i]));
                i += 2;
                text_start = i;
            }
            b'{' => {
                pieces.push(Piece::Text(&fmt[text_start..i]));
                let close = fmt[i..].find('}').map(|rel| i + rel).ok_or_else(invalid)?;
                let digits = &fmt[i + 1..close];
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                let index: usize = digits.parse().map_err(|_| invalid())?;
                max_index = max_index.max(Some(index));
                pieces.push(Piece::Arg(index));
                i = close + 1;
                text_start = i;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                pieces.push(Piece::Text(&fmt[text_start..=i]));
                i += 2;
                text_start = i;
            }
            b'}' => return Err(invalid()),
            _ => i += 1,
        }
    }
    pieces.push(Piece::Text(&fmt[text_start..]));
    if let Some(max) = max_index
        && max >= args.len()
    {
        return Err(EvalError::new(
            format!(
                "The following format string references more arguments than were supplied: {fmt}"
            ),
            offset,
        ));
    }
    let rendered: Vec<_> = args.iter().map(Value::to_display_string).collect();
    let sizes: Vec<usize> = rendered.iter().map(|r| utf16_bytes(r)).collect();
    let (len, size) = pieces.iter().fold((0, 0), |(len, size), p| match p {
        Piece::Text(t) => (len + t.len(), size + utf16_bytes(t)),
        Piece::Arg(i) => (len + rendered[*i].len(), size + sizes[*i]),
    });
    memory.reserve(size, offset)?;
    let mut out = String::with_capacity(len);
    for piece in &pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Arg(i) => out.push_str(&rendered[*i]),
        }
    }
    Ok(Value::from(out))
}

pub(crate) fn to_json(value: &Value, memory: &Memory, offset: usize) -> Result<Value, EvalError> {
    let text = value.to_json_pretty();
    memory.reserve(utf16_bytes(&text), offset)?;
    Ok(Value::from(text))
}

pub(crate) fn from_json(value: &Value, offset: usize) -> Result<Value, EvalError> {
    let text = value.to_display_string();
    let text = text.trim();
    if text.is_empty() {
        return Err(EvalError::new(
            "fromJSON: empty input is not valid JSON",
            offset,
        ));
    }
    serde_json::from_str::<serde_json::Value>(text)
        .map(Value::from)
        .map_err(|e| EvalError::new(format!("fromJSON: invalid JSON: {e}"), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: &str, args: &[&str]) -> Result<String, String> {
        let args: Vec<Value> = args.iter().map(|a| Value::from(*a)).collect();
        format(f, &args, &Memory::default(), 0)
            .map(|v| v.to_string())
            .map_err(|e| e.message)
    }

    #[test]
    fn format_escapes_and_errors() {
        assert_eq!(fmt("{{0}}", &["x"]), Ok("{0}".into()));
        assert_eq!(fmt("}}{{}}", &[]), Ok("}{}".into()));
        assert_eq!(fmt("a{1}b{0}", &["x", "y"]), Ok("aybx".into()));
        assert!(
            fmt("{0}}", &["x"])
                .unwrap_err()
                .contains("is invalid: {0}}")
        );
        assert!(fmt("{x}", &["x"]).unwrap_err().contains("is invalid"));
        assert!(
            fmt("{0}{1}", &["x"])
                .unwrap_err()
                .contains("more arguments")
        );
    }

    #[test]
    fn memory_is_bounded() {
        let big = Value::from("x".repeat(MAX_MEMORY_BYTES / 4 + 1));
        let memory = Memory::default();
        let err = format("{0}{0}", &[big], &memory, 3).unwrap_err();
        assert_eq!((err.message.as_str(), err.offset), (MEMORY_EXCEEDED, 3));
    }

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(
            lookup_function("TOJSON").map(|f| f.function),
            Some(Function::ToJson)
        );
        assert_eq!(lookup_function("nope"), None);
    }
}
