//! YAML tags and scalar forms GitHub's workflow reader accepts.
//!
//! GitHub reads plain scalars with the YAML 1.2 core schema and knows only the
//! core tags `!!str`, `!!int`, `!!float`, `!!bool` and `!!null`: any other tag
//! (`!!timestamp`, `!custom`) fails the whole file, a core tag other than
//! `!!str` on a quoted or block scalar fails it, and so does a tagged value that
//! is not of its type. Read from the parser's events, where tags and styles
//! are still visible (the loader turns most of these into strings or nulls).

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::yaml::{Pos, YamlError};

const CORE: &str = "tag:yaml.org,2002:";

/// Tag, style and value errors, in source order. Syntax errors are left to
/// the loader, which reports them with better context.
pub(crate) fn check(text: &str) -> Vec<YamlError> {
    let mut errors = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let Event::Scalar(value, style, _, tag) = event else {
            continue;
        };
        let pos = Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        match tag {
            Some(tag) => {
                let full = format!("{}{}", tag.handle, tag.suffix);
                let at = lines
                    .get(pos.line.wrapping_sub(1))
                    .map_or(pos, |line| tag_start(line, pos));
                if let Some(e) = tagged(&full, &value, style, at) {
                    errors.push(e);
                }
            }
            None if style == ScalarStyle::Plain && !int_in_range(&value) => {
                errors.push(invalid(&value, "int", pos));
            }
            None => {}
        }
    }
    errors
}

/// Where a tagged scalar's tag starts, as GitHub reports it: the parser
/// places the scalar at its value, after its properties (`!tag`, `&anchor`).
fn tag_start(line: &str, value: Pos) -> Pos {
    let chars: Vec<char> = line.chars().collect();
    let mut end = (value.column - 1).min(chars.len());
    let mut found = value;
    loop {
        while end > 0 && chars[end - 1].is_whitespace() {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && !chars[start - 1].is_whitespace() {
            start -= 1;
        }
        match chars.get(start) {
            Some('!') if start < end => found.column = start + 1,
            Some('&') if start < end => {}
            _ => return found,
        }
        end = start;
    }
}

fn tagged(tag: &str, value: &str, style: ScalarStyle, pos: Pos) -> Option<YamlError> {
    let kind = tag.strip_prefix(CORE);
    if kind == Some("str") {
        return None;
    }
    let Some(kind @ ("int" | "float" | "bool" | "null")) = kind else {
        return Some(YamlError {
            pos,
            message: format!(
                "Unexpected tag '{tag}': GitHub Actions reads only the !!str, !!int, !!float, !!bool and !!null tags; remove the tag"
            ),
        });
    };
    if style != ScalarStyle::Plain {
        let name = match style {
            ScalarStyle::SingleQuoted => "SingleQuoted",
            ScalarStyle::DoubleQuoted => "DoubleQuoted",
            ScalarStyle::Literal => "Literal",
            _ => "Folded",
        };
        return Some(YamlError {
            pos,
            message: format!(
                "The scalar style '{name}' is not valid with the tag '{tag}': only !!str may tag a quoted or block scalar; remove the quotes or the tag"
            ),
        });
    }
    let ok = match kind {
        "int" => is_int(value) && int_in_range(value),
        "float" => is_float(value),
        "bool" => is_bool(value),
        _ => is_null(value),
    };
    (!ok).then(|| invalid(value, kind, pos))
}

fn invalid(value: &str, kind: &str, pos: Pos) -> YamlError {
    let expected = match kind {
        "int" => "digits with an optional sign, or 0x/0o digits within 32 bits",
        "float" => "a decimal number such as 1, 1.5, -2e3, .inf or .nan",
        "bool" => "true or false",
        _ => "null, ~ or nothing",
    };
    YamlError {
        pos,
        message: format!(
            "The value '{value}' is invalid for the type '{CORE}{kind}': write {expected}"
        ),
    }
}

pub(crate) fn is_null(v: &str) -> bool {
    matches!(v, "" | "null" | "Null" | "NULL" | "~")
}

pub(crate) fn is_bool(v: &str) -> bool {
    matches!(v, "true" | "True" | "TRUE" | "false" | "False" | "FALSE")
}

fn digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

/// `[-+]?[0-9]+`, `0x[0-9a-fA-F]+` or `0o[0-7]+`.
pub(crate) fn is_int(v: &str) -> bool {
    let unsigned = v.strip_prefix(['-', '+']).unwrap_or(v);
    digits(unsigned, 10)
        || v.strip_prefix("0x").is_some_and(|h| digits(h, 16))
        || v.strip_prefix("0o").is_some_and(|o| digits(o, 8))
}

/// Hex and octal integers are read as 32-bit values (decimal ones as
/// doubles, which never overflow): a wider one fails the file even untagged.
fn int_in_range(v: &str) -> bool {
    let (digits_part, radix) = if let Some(h) = v.strip_prefix("0x") {
        (h, 16)
    } else if let Some(o) = v.strip_prefix("0o") {
        (o, 8)
    } else {
        return true;
    };
    !digits(digits_part, radix) || u32::from_str_radix(digits_part, radix).is_ok()
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` and the infinities and NaN.
pub(crate) fn is_float(v: &str) -> bool {
    if matches!(
        v,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
    ) || matches!(v, ".nan" | ".NaN" | ".NAN")
    {
        return true;
    }
    let s = v.strip_prefix(['-', '+']).unwrap_or(v);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (digits(int, 10) && (frac.is_empty() || digits(frac, 10)))
                || (int.is_empty() && digits(frac, 10))
        }
        None => digits(mantissa, 10),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        check(text)
            .into_iter()
            .map(|e| format!("{}:{} {}", e.pos.line, e.pos.column, e.message))
            .collect()
    }

    #[test]
    fn only_the_core_tags_are_read() {
        let m = messages("a: !!timestamp 2022-10-26\nb: !custom x\nc: !!str 1\n");
        assert_eq!(m.len(), 2, "{m:?}");
        // At the tag, as GitHub reports it.
        assert!(
            m[0].starts_with("1:4 Unexpected tag 'tag:yaml.org,2002:timestamp'"),
            "{m:?}"
        );
        assert!(m[1].starts_with("2:4 Unexpected tag '!custom'"), "{m:?}");
        // Past an anchor, on either side of the tag.
        let m = messages("a: &x !!bool nope\nb: !!bool &y nope\n");
        assert!(m[0].starts_with("1:7 "), "{m:?}");
        assert!(m[1].starts_with("2:4 "), "{m:?}");
        // Verbatim core tags are the same tags.
        assert!(messages("a: !<tag:yaml.org,2002:str> x\nb: !!int 3\n").is_empty());
    }

    #[test]
    fn a_core_tag_other_than_str_needs_a_plain_scalar() {
        let m = messages("a: !!int \"300\"\nb: !!bool 'true'\nc: !!str 'x'\nd: !!float |\n  1.5\n");
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].contains("The scalar style 'DoubleQuoted'"), "{m:?}");
        assert!(m[0].contains("'tag:yaml.org,2002:int'"), "{m:?}");
        assert!(m[1].contains("'SingleQuoted'"), "{m:?}");
        assert!(m[2].contains("'Literal'"), "{m:?}");
    }

    #[test]
    fn tagged_values_must_be_of_their_type() {
        for bad in [
            "!!bool test",
            "!!bool yes",
            "!!int test",
            "!!int 1.5",
            "!!int 0x1ffffffff",
            "!!float test",
            "!!float 1e",
            "!!float .",
            "!!null x",
        ] {
            let m = messages(&format!("a: {bad}\n"));
            assert_eq!(m.len(), 1, "{bad}: {m:?}");
            assert!(m[0].contains("is invalid for the type"), "{m:?}");
        }
        for good in [
            "!!bool TRUE",
            "!!bool false",
            "!!int -12",
            "!!int 0xff",
            "!!int 0xFFFFFFFF",
            "!!int 0o17",
            "!!float 1",
            "!!float -1.5e3",
            "!!float .5",
            "!!float 3.",
            "!!float -.inf",
            "!!float .NaN",
            "!!null ~",
            "!!null",
        ] {
            assert!(messages(&format!("a: {good}\n")).is_empty(), "{good}");
        }
    }

    #[test]
    fn untagged_hex_and_octal_must_fit_32_bits() {
        assert_eq!(messages("a: 0x100000000\n").len(), 1);
        assert_eq!(messages("a: 0o40000000000\n").len(), 1);
        // Not integers at all: strings.
        assert!(messages("a: 0xg\nb: '0x100000000'\nc: 99999999999999999999\n").is_empty());
    }

    #[test]
    fn bad_input_does_not_panic() {
        for text in [
            "!!",
            "a: !",
            "!<>",
            "a: !!int",
            "- !!float -",
            "!!int\n- ",
            "a: !<x",
        ] {
            let _ = check(text);
        }
    }
}
