//! Splits an expression into tokens, the way GitHub's lexer does: a word or
//! number runs up to the next boundary character, so `b@r` or `0x01p2` is one
//! bad token reported whole, and `.` starts a number (`.5`) only where a value
//! may begin.

use std::sync::Arc;

use crate::error::SyntaxError;
use crate::value::parse_number;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Star,
    Not,
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Number(f64),
    /// A string literal, with `''` already unescaped.
    Str(Arc<str>),
    /// An identifier or keyword (`true`, `null`, a context or function name);
    /// the text is `source[start..end]`.
    Word,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

/// Characters that end a word or a number (for numbers, `.` does not).
fn is_boundary(c: char) -> bool {
    matches!(
        c,
        '(' | '[' | ')' | ']' | ',' | '.' | '!' | '>' | '<' | '=' | '&' | '|'
    ) || c.is_whitespace()
}

/// A legal identifier: a letter or `_`, then letters, digits, `_` or `-`.
fn is_legal_word(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut tokens: Vec<Token> = Vec::with_capacity(src.len() / 4 + 1);
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < src.len() {
        let c = src[i..].chars().next().unwrap_or(' ');
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        let next = bytes.get(i + 1).copied();
        let simple = |tok: Tok, len: usize| Some((tok, start + len));
        let found = match c {
            '(' => simple(Tok::LParen, 1),
            ')' => simple(Tok::RParen, 1),
            '[' => simple(Tok::LBracket, 1),
            ']' => simple(Tok::RBracket, 1),
            ',' => simple(Tok::Comma, 1),
            '*' => simple(Tok::Star, 1),
            '!' if next == Some(b'=') => simple(Tok::Ne, 2),
            '!' => simple(Tok::Not, 1),
            '=' if next == Some(b'=') => simple(Tok::Eq, 2),
            '<' if next == Some(b'=') => simple(Tok::Le, 2),
            '<' => simple(Tok::Lt, 1),
            '>' if next == Some(b'=') => simple(Tok::Ge, 2),
            '>' => simple(Tok::Gt, 1),
            '&' if next == Some(b'&') => simple(Tok::And, 2),
            '|' if next == Some(b'|') => simple(Tok::Or, 2),
            '.' if !value_may_start(tokens.last()) => simple(Tok::Dot, 1),
            '.' | '-' | '+' => None,
            c if c.is_ascii_digit() => None,
            '\'' => Some(read_string(src, start)?),
            c if c.is_alphabetic() || c == '_' => {
                let end = run_end(src, start + c.len_utf8(), false);
                if !is_legal_word(&src[start..end]) {
                    return Err(unexpected(src, start, end));
                }
                Some((Tok::Word, end))
            }
            _ => {
                // `=`, `&`, `|` alone, or any other character: one bad token
                // running to the next boundary (`=2`, `@abc`).
                let end = run_end(src, start + c.len_utf8(), false);
                return Err(unexpected(src, start, end));
            }
        };
        let (tok, end) = match found {
            Some(found) => found,
            None => {
                let end = run_end(src, start + c.len_utf8(), true);
                let n = parse_number(&src[start..end]);
                if n.is_nan() {
                    return Err(unexpected(src, start, end));
                }
                (Tok::Number(n), end)
            }
        };
        tokens.push(Token { tok, start, end });
        i = end;
    }
    Ok(tokens)
}

/// A `.` starts a number (`.5`) at the start, or after `(`, `[`, `,` or an operator.
fn value_may_start(last: Option<&Token>) -> bool {
    match last {
        None => true,
        Some(t) => matches!(
            t.tok,
            Tok::LParen
                | Tok::LBracket
                | Tok::Comma
                | Tok::Not
                | Tok::And
                | Tok::Or
                | Tok::Eq
                | Tok::Ne
                | Tok::Lt
                | Tok::Le
                | Tok::Gt
                | Tok::Ge
        ),
    }
}

/// End of a run of non-boundary characters starting at `from`.
fn run_end(src: &str, from: usize, dots_allowed: bool) -> usize {
    src[from..]
        .char_indices()
        .find(|&(_, c)| is_boundary(c) && !(dots_allowed && c == '.'))
        .map_or(src.len(), |(i, _)| from + i)
}

fn read_string(src: &str, start: usize) -> Result<(Tok, usize), SyntaxError> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        let Some(rel) = src[i..].find('\'') else {
            return Err(unexpected(src, start, src.len()));
        };
        i += rel + 1;
        if src.as_bytes().get(i) == Some(&b'\'') {
            escaped = true;
            i += 1;
        } else {
            let body = &src[start + 1..i - 1];
            let value: Arc<str> = if escaped {
                body.replace("''", "'").into()
            } else {
                body.into()
            };
            return Ok((Tok::Str(value), i));
        }
    }
}

fn unexpected(src: &str, start: usize, end: usize) -> SyntaxError {
    SyntaxError::lexing(format!("Unexpected symbol: '{}'", &src[start..end]), start)
}

/// The byte offset just past the `}}` that closes an expression starting at
/// `from` (the first byte after `${{`), skipping `}}` inside string literals;
/// the returned offset is that of the first `}`.
pub(crate) fn find_template_end(src: &str, from: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut i = from;
    let mut in_string = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_string = !in_string,
            b'}' if !in_string && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        tokenize(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn dot_is_a_number_only_where_a_value_may_start() {
        assert_eq!(kinds(".5"), vec![Tok::Number(0.5)]);
        assert_eq!(kinds("!.5"), vec![Tok::Not, Tok::Number(0.5)]);
        assert_eq!(kinds("a.b"), vec![Tok::Word, Tok::Dot, Tok::Word]);
        assert_eq!(kinds("a.*"), vec![Tok::Word, Tok::Dot, Tok::Star]);
    }

    #[test]
    fn strings_unescape_doubled_quotes() {
        assert_eq!(kinds("'it''s'"), vec![Tok::Str("it's".into())]);
        assert_eq!(kinds("''"), vec![Tok::Str("".into())]);
    }

    #[test]
    fn bad_tokens_are_reported_whole() {
        let err = tokenize("1 =2 =3").unwrap_err();
        assert_eq!(
            (err.message.as_str(), err.offset),
            ("Unexpected symbol: '=2'", 2)
        );
        assert_eq!(
            tokenize("foo.b@r").unwrap_err().message,
            "Unexpected symbol: 'b@r'"
        );
        assert_eq!(
            tokenize("-0xFF").unwrap_err().message,
            "Unexpected symbol: '-0xFF'"
        );
        assert_eq!(
            tokenize("'open").unwrap_err().message,
            "Unexpected symbol: ''open'"
        );
        assert_eq!(
            tokenize("😊 x").unwrap_err().message,
            "Unexpected symbol: '😊'"
        );
    }

    #[test]
    fn template_end_skips_braces_in_strings() {
        let src = "${{ format('}}{0}', 1) }} tail";
        assert_eq!(find_template_end(src, 3), Some(23));
        assert_eq!(find_template_end("${{ 'x", 3), None);
    }
}
