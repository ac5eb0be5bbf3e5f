//! Runtime values and GitHub's coercion rules.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use indexmap::{Equivalent, IndexMap};

use crate::fold;

/// A value of the expression language.
///
/// Strings, arrays and objects are reference-counted: cloning a value is cheap,
/// and arrays and objects keep an identity, because GitHub compares them by
/// reference (`a == a` is true, two equal-looking objects are not equal).
#[derive(Clone, Debug, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(f64),
    String(Arc<str>),
    Array(Arc<Vec<Value>>),
    Object(Arc<Object>),
}

/// The kind of a [`Value`], named as GitHub names them in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Null => "Null",
            ValueKind::Boolean => "Boolean",
            ValueKind::Number => "Number",
            ValueKind::String => "String",
            ValueKind::Array => "Array",
            ValueKind::Object => "Object",
        })
    }
}

impl Value {
    pub fn string(s: impl Into<Arc<str>>) -> Value {
        Value::String(s.into())
    }

    pub fn array(items: Vec<Value>) -> Value {
        Value::Array(Arc::new(items))
    }

    pub fn object(object: Object) -> Value {
        Value::Object(Arc::new(object))
    }

    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Null => ValueKind::Null,
            Value::Bool(_) => ValueKind::Boolean,
            Value::Number(_) => ValueKind::Number,
            Value::String(_) => ValueKind::String,
            Value::Array(_) => ValueKind::Array,
            Value::Object(_) => ValueKind::Object,
        }
    }

    /// Null, booleans, numbers and strings; not arrays or objects.
    pub fn is_primitive(&self) -> bool {
        !matches!(self, Value::Array(_) | Value::Object(_))
    }

    /// GitHub's truthiness: `null`, `false`, `0`, `-0`, `NaN` and `''` are false;
    /// everything else (including empty arrays and objects) is true.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
            Value::Array(_) | Value::Object(_) => true,
        }
    }

    /// GitHub's number coercion: null → 0, booleans → 0/1, strings parsed
    /// (trimmed; empty is 0; decimal, `0x` hex, `0o` octal, `Infinity`), anything
    /// unparsable and arrays/objects → NaN.
    pub fn to_number(&self) -> f64 {
        match self {
            Value::Null => 0.0,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Number(n) => *n,
            Value::String(s) => parse_number(s),
            Value::Array(_) | Value::Object(_) => f64::NAN,
        }
    }

    /// GitHub's string coercion: null → `''`, numbers without a trailing `.0`
    /// (15 significant digits), arrays → `Array`, objects → `Object`.
    pub fn to_display_string(&self) -> Cow<'_, str> {
        match self {
            Value::Null => Cow::Borrowed(""),
            Value::Bool(true) => Cow::Borrowed("true"),
            Value::Bool(false) => Cow::Borrowed("false"),
            Value::Number(n) => Cow::Owned(format_number(*n)),
            Value::String(s) => Cow::Borrowed(s),
            Value::Array(_) => Cow::Borrowed("Array"),
            Value::Object(_) => Cow::Borrowed("Object"),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Case-insensitive property lookup on an object (`None` for other kinds).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    /// GitHub's `==`: values of different primitive kinds are compared as
    /// numbers; strings ignore case; arrays and objects compare by reference and
    /// never equal a value of another kind.
    pub fn loose_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::String(a), Value::String(b)) => fold::eq_ignore_case(a, b),
            (Value::Array(a), Value::Array(b)) => Arc::ptr_eq(a, b),
            (Value::Object(a), Value::Object(b)) => Arc::ptr_eq(a, b),
            (a, b) if a.is_primitive() && b.is_primitive() => a.to_number() == b.to_number(),
            _ => false,
        }
    }

    /// GitHub's ordering for `<`, `<=`, `>`, `>=`: `None` when the operands are
    /// not comparable (NaN, arrays, objects, or an array/object against anything
    /// else), in which case every ordering operator yields false.
    pub fn loose_cmp(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
            (Value::String(a), Value::String(b)) => Some(fold::cmp_ignore_case(a, b)),
            (a, b) if a.is_primitive() && b.is_primitive() => {
                a.to_number().partial_cmp(&b.to_number())
            }
            _ => None,
        }
    }

    /// Structural conversion to `serde_json::Value`. NaN and the infinities,
    /// which JSON cannot hold, become their display strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::String(s) => serde_json::Value::String(s.to_string()),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Object(object) => serde_json::Value::Object(
                object
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// GitHub's `toJSON` text: two-space indentation, `"key": value`, `[]`/`{}`
    /// for empty containers, integers without a fraction.
    pub fn to_json_pretty(&self) -> String {
        let mut out = String::new();
        write_pretty(self, 0, &mut out);
        out
    }
}

/// Structural equality (for tests and callers); GitHub's `==` is [`Value::loose_eq`].
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b || (a.is_nan() && b.is_nan()),
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_display_string())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Number(n)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s.into())
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Value {
        Value::array(items)
    }
}

impl From<Object> for Value {
    fn from(object: Object) -> Value {
        Value::object(object)
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Value {
        Value::from(&json)
    }
}

impl From<&serde_json::Value> for Value {
    fn from(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s.as_str().into()),
            serde_json::Value::Array(items) => {
                Value::array(items.iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => {
                let mut object = Object::with_capacity(map.len());
                for (k, v) in map {
                    object.insert(k.as_str(), Value::from(v));
                }
                Value::object(object)
            }
        }
    }
}

impl From<Value> for serde_json::Value {
    fn from(value: Value) -> serde_json::Value {
        value.to_json()
    }
}

/// An object: insertion-ordered, with case-insensitive keys (the first spelling
/// of a key is kept; a later insert with another case replaces the value).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object {
    map: IndexMap<Key, Value>,
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }

    pub fn with_capacity(n: usize) -> Object {
        Object {
            map: IndexMap::with_capacity(n),
        }
    }

    pub fn insert(&mut self, key: impl Into<Arc<str>>, value: Value) {
        self.map.insert(Key(key.into()), value);
    }

    /// Case-insensitive lookup; allocation-free.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(&KeyRef(key))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.map.iter().map(|(k, v)| (&*k.0, v))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.map.keys().map(|k| &*k.0)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> {
        self.map.values()
    }
}

impl<K: Into<Arc<str>>> FromIterator<(K, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Object {
        let mut object = Object::new();
        for (k, v) in iter {
            object.insert(k, v);
        }
        object
    }
}

/// An object key: hashes and compares by its case-folded form.
#[derive(Clone, Debug)]
struct Key(Arc<str>);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        fold::hash_folded(&self.0, state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        fold::eq_ignore_case(&self.0, &other.0)
    }
}

impl Eq for Key {}

/// A borrowed lookup key, so lookups never allocate.
struct KeyRef<'a>(&'a str);

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        fold::hash_folded(self.0, state);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        fold::eq_ignore_case(self.0, &key.0)
    }
}

/// GitHub's string-to-number conversion (.NET `ExpressionUtility.ParseNumber`):
/// trimmed; empty → 0; a decimal with optional sign, fraction and exponent, or
/// `Infinity`/`NaN`; `0x` hex and `0o` octal as 32-bit signed integers; else NaN.
pub fn parse_number(s: &str) -> f64 {
    let s = s.trim();
    if s.is_empty() {
        return 0.0;
    }
    if let Some(n) = parse_decimal(s) {
        return n;
    }
    let radix_digits = |prefix: &str, radix: u32| {
        let digits = s.strip_prefix(prefix)?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        // .NET parses these as Int32: 0xFFFFFFFF is -1, more digits overflow.
        u32::from_str_radix(digits, radix)
            .ok()
            .map(|n| f64::from(n as i32))
    };
    radix_digits("0x", 16)
        .or_else(|| radix_digits("0o", 8))
        .unwrap_or(f64::NAN)
}

/// A .NET-invariant decimal: `[+-]?(d+(.d*)?|.d+)([eE][+-]?d+)?` or a signed
/// `Infinity`/`NaN` (any case). Rust's parser alone would also take `inf`.
fn parse_decimal(s: &str) -> Option<f64> {
    let bytes = s.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let body = &s[i..];
    if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("nan") {
        let n = if body.len() == 3 {
            f64::NAN
        } else {
            f64::INFINITY
        };
        return Some(if bytes[0] == b'-' { -n } else { n });
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return None;
    }
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        i += 1;
        if i < bytes.len() && matches!(bytes[i], b'+' | b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    s.parse().ok()
}

/// GitHub's number-to-string conversion (.NET `ToString("G15")`): at most 15
/// significant digits, no trailing zeros, `-0` is `0`, exponent form (`1E+15`)
/// from 1e15 up and below 1e-4.
pub fn format_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if n == 0.0 {
        return "0".into();
    }
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{}", n as i64);
    }
    // `{:.14e}` rounds correctly to 15 significant digits: "d.dddddddddddddde-x".
    let sci = format!("{:.14e}", n);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::with_capacity(24);
    if negative {
        out.push('-');
    }
    if !(-4..15).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "E{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

fn number_to_json(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        // -0 prints as 0, as GitHub does.
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(format_number(n)))
    }
}

fn write_pretty(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&format_number(*n)),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Object(object) if object.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                push_indent(indent + 1, out);
                write_pretty(item, indent + 1, out);
            }
            out.push('\n');
            push_indent(indent, out);
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            for (i, (k, v)) in object.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                push_indent(indent + 1, out);
                write_json_string(k, out);
                out.push_str(": ");
                write_pretty(v, indent + 1, out);
            }
            out.push('\n');
            push_indent(indent, out);
            out.push('}');
        }
    }
}

fn push_indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

/// JSON string escaping as Newtonsoft.Json (GitHub's serializer) does it.
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_like_dotnet_g15() {
        for (n, s) in [
            (1.0, "1"),
            (-2.0, "-2"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (-0.5, "-0.5"),
            (123456.789, "123456.789"),
            (0.845_512_408_225_570_1, "0.84551240822557"),
            (1.2e-2, "0.012"),
            (1e15, "1E+15"),
            (1.5e20, "1.5E+20"),
            (1e-5, "1E-05"),
            (0.0001, "0.0001"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(format_number(n), s, "{n}");
        }
    }

    #[test]
    fn strings_parse_like_github() {
        assert_eq!(parse_number(""), 0.0);
        assert_eq!(parse_number("   "), 0.0);
        assert_eq!(parse_number(" +1.2e2 "), 120.0);
        assert_eq!(parse_number(".5"), 0.5);
        assert_eq!(parse_number("5."), 5.0);
        assert_eq!(parse_number(" 0xff "), 255.0);
        assert_eq!(parse_number("0xFFFFFFFF"), -1.0);
        assert_eq!(parse_number("0o10"), 8.0);
        assert_eq!(parse_number(" -Infinity "), f64::NEG_INFINITY);
        assert!(parse_number("inf").is_nan());
        assert!(parse_number("-0xff").is_nan());
        assert!(parse_number("0x").is_nan());
        assert!(parse_number("1e").is_nan());
        assert!(parse_number("abc").is_nan());
        assert!(parse_number("NaN").is_nan());
    }

    #[test]
    fn loose_equality_coerces_primitives_only() {
        let s = |x: &str| Value::from(x);
        assert!(Value::Null.loose_eq(&Value::Number(0.0)));
        assert!(s("").loose_eq(&Value::Bool(false)));
        assert!(s(" 1.0 ").loose_eq(&Value::Bool(true)));
        assert!(s("0").loose_eq(&Value::Null));
        assert!(!s("null").loose_eq(&Value::Null));
        assert!(s("ABC").loose_eq(&s("abc")));
        assert!(!Value::Number(f64::NAN).loose_eq(&Value::Number(f64::NAN)));
        let empty = Value::array(vec![]);
        assert!(empty.loose_eq(&empty.clone()));
        assert!(!empty.loose_eq(&Value::array(vec![])));
        assert!(!s("Array").loose_eq(&empty));
        assert_eq!(empty.loose_cmp(&empty), None);
        assert_eq!(
            Value::Bool(true).loose_cmp(&Value::Number(0.5)),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn truthiness() {
        assert!(!Value::Number(f64::NAN).is_truthy());
        assert!(!Value::Number(-0.0).is_truthy());
        assert!(Value::from("false").is_truthy());
        assert!(Value::array(vec![]).is_truthy());
        assert!(!Value::from("").is_truthy());
    }

    #[test]
    fn objects_look_up_keys_ignoring_case_and_keep_order() {
        let json = serde_json::json!({"Zeta": 1, "alpha": {"Inner": "x"}});
        let value = Value::from(json.clone());
        assert_eq!(value.get("ZETA"), Some(&Value::Number(1.0)));
        assert_eq!(
            value.get("Alpha").and_then(|a| a.get("inner")),
            Some(&Value::from("x"))
        );
        assert_eq!(
            value.as_object().map(|o| o.keys().collect::<Vec<_>>()),
            Some(vec!["Zeta", "alpha"])
        );
        assert_eq!(value.to_json(), json);
    }

    #[test]
    fn pretty_json_matches_github() {
        let value = Value::from(serde_json::json!({"a": [1, 2.5, "q\"\n"], "b": {}, "c": []}));
        assert_eq!(
            value.to_json_pretty(),
            "{\n  \"a\": [\n    1,\n    2.5,\n    \"q\\\"\\n\"\n  ],\n  \"b\": {},\n  \"c\": []\n}"
        );
    }
}
