//! Secret masking. Output is masked line by line after lines are reassembled from
//! the chunks the pipe delivers, so a secret split across two writes (or two
//! reads) is still caught; a multi-line secret is registered line by line, as
//! GitHub does, so each of its lines is masked wherever it appears.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

/// The replacement GitHub prints for a masked value.
pub const MASK: &str = "***";

/// Shared, growable set of values to hide (`::add-mask::` adds at run time).
#[derive(Clone, Default)]
pub struct Masker {
    inner: Arc<RwLock<Vec<String>>>,
}

impl Masker {
    pub fn new() -> Masker {
        Masker::default()
    }

    /// Registers a value. Multi-line values are registered per line (and whole);
    /// blank values are ignored (masking "" would hide nothing and loop).
    pub fn add(&self, value: &str) {
        let mut values = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut push = |v: &str| {
            let v = v.trim_end_matches('\r');
            if !v.trim().is_empty() && !values.iter().any(|x| x == v) {
                values.push(v.to_string());
            }
        };
        push(value);
        // Each line too, trimmed, as the runner's `add-mask` registers them.
        if value.contains('\n') || value.contains('\r') {
            for line in value.split(['\r', '\n']) {
                push(line.trim());
            }
        }
        // Longest first, so a secret that contains another is hidden whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.inner.read().map(|v| v.is_empty()).unwrap_or(false)
    }

    /// Hides every registered value in `text`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let values = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if values.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }
}

/// Reassembles lines from arbitrary byte chunks. Masking happens on whole lines,
/// which is what makes secrets split across chunk boundaries safe.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

/// A line longer than this is emitted in pieces (binary output without newlines);
/// the piece boundary keeps the last bytes back so a secret straddling it is
/// still masked on the next piece.
const MAX_LINE: usize = 64 * 1024;
const CARRY: usize = 4 * 1024;

impl LineSplitter {
    /// Feeds a chunk and calls `line` for each complete line (without `\n`/`\r\n`).
    pub fn feed(&mut self, chunk: &[u8], mut line: impl FnMut(&str)) {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            if self.partial.is_empty() {
                emit(head, &mut line);
            } else {
                self.partial.extend_from_slice(head);
                let full = std::mem::take(&mut self.partial);
                emit(&full, &mut line);
            }
            rest = &tail[1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE {
            let cut = self.partial.len() - CARRY;
            let head: Vec<u8> = self.partial.drain(..cut).collect();
            emit(&head, &mut line);
        }
    }

    /// Emits a final line without newline, if any.
    pub fn finish(&mut self, mut line: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let full = std::mem::take(&mut self.partial);
            emit(&full, &mut line);
        }
    }
}

fn emit(bytes: &[u8], line: &mut impl FnMut(&str)) {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => line(s),
        Err(_) => line(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_multiline_secrets_per_line() {
        let m = Masker::new();
        m.add("abc");
        m.add("abcdef");
        m.add("line1\nline2");
        assert_eq!(m.mask("x abcdef y abc"), "x *** y ***");
        assert_eq!(m.mask("line2 then line1"), "*** then ***");
        m.add("   ");
        assert_eq!(m.mask("a   b"), "a   b");
    }

    #[test]
    fn secret_split_across_chunks_is_masked() {
        let m = Masker::new();
        m.add("top-secret");
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for chunk in [&b"value: top-"[..], b"sec", b"ret\nnext\r\nlast"] {
            s.feed(chunk, |l| out.push(m.mask(l).into_owned()));
        }
        s.finish(|l| out.push(m.mask(l).into_owned()));
        assert_eq!(out, ["value: ***", "next", "last"]);
    }
}
