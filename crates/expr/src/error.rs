//! Errors: syntax errors carry a byte offset into the parsed text; evaluation
//! errors carry the offset of the expression node that failed.

use std::fmt;

/// Whether a syntax error was found while splitting the text into tokens or
/// while assembling the tokens into an expression (GitHub reports these kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyntaxErrorKind {
    Lexing,
    Parsing,
}

/// A syntax error: `message` in GitHub's words (`Unexpected symbol: '2'`), and
/// the byte `offset` in the parsed text where the offending token starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub kind: SyntaxErrorKind,
    pub message: String,
    pub offset: usize,
}

impl SyntaxError {
    pub(crate) fn lexing(message: String, offset: usize) -> SyntaxError {
        SyntaxError {
            kind: SyntaxErrorKind::Lexing,
            message,
            offset,
        }
    }

    pub(crate) fn parsing(message: String, offset: usize) -> SyntaxError {
        SyntaxError {
            kind: SyntaxErrorKind::Parsing,
            message,
            offset,
        }
    }

    /// The 1-based column (in characters) of [`SyntaxError::offset`] within `source`.
    pub fn column(&self, source: &str) -> usize {
        column_of(source, self.offset)
    }

    /// The message exactly as GitHub words it:
    /// `<message>. Located at position <column> within expression: <source>`.
    pub fn github_message(&self, source: &str) -> String {
        format!(
            "{}. Located at position {} within expression: {}",
            self.message,
            self.column(source),
            source
        )
    }

    /// Moves the offset by `delta` bytes (used when an expression is embedded
    /// in a larger text, such as a `${{ }}` template).
    pub fn shifted(mut self, delta: usize) -> SyntaxError {
        self.offset += delta;
        self
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for SyntaxError {}

/// An evaluation error, with the byte offset of the failing node in the
/// expression's source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
    pub offset: usize,
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>, offset: usize) -> EvalError {
        EvalError {
            message: message.into(),
            offset,
        }
    }

    pub fn shifted(mut self, delta: usize) -> EvalError {
        self.offset += delta;
        self
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

/// Either kind of error, for callers that parse and evaluate in one go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    Syntax(SyntaxError),
    Eval(EvalError),
}

impl Error {
    pub fn offset(&self) -> usize {
        match self {
            Error::Syntax(e) => e.offset,
            Error::Eval(e) => e.offset,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::Syntax(e) => &e.message,
            Error::Eval(e) => &e.message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Syntax(e) => e.fmt(f),
            Error::Eval(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<SyntaxError> for Error {
    fn from(e: SyntaxError) -> Error {
        Error::Syntax(e)
    }
}

impl From<EvalError> for Error {
    fn from(e: EvalError) -> Error {
        Error::Eval(e)
    }
}

/// 1-based character column of a byte offset (offsets past the end or inside a
/// character are clamped).
pub fn column_of(source: &str, offset: usize) -> usize {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    source[..offset].chars().count() + 1
}
