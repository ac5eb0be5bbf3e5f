//! Secret masking. Output is masked line by line after lines are reassembled from
//! the chunks the pipe delivers, so a secret split across two writes (or two
//! reads) is still caught; a multi-line secret is registered line by line, as
//! GitHub does, so each of its lines is masked wherever it appears. A value's
//! encoded forms ([`encoded_forms`]: base64 at each of its three alignments,
//! hex, URL- and JSON-escaped) are masked with it, as the runner's value
//! encoders do; the server's masker takes the same forms from here.

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
        for form in encoded_forms(value) {
            push(&form);
        }
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

/// Shortest value whose encoded forms are masked, and shortest encoded
/// fragment: hiding every 4-character run of base64 would blank ordinary text.
const MIN_ENCODED: usize = 6;

/// The forms `value` takes when a step encodes it: base64 wherever it starts
/// in a longer stream (the stream's alignment shifts which characters encode
/// it: for each of the three, the characters that depend on `value` alone,
/// standard and URL-safe alphabets), hex in both cases, URL-escaped and
/// JSON-escaped. `value` itself is not among them.
pub fn encoded_forms(value: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let bytes = value.as_bytes();
    let mut out: Vec<String> = Vec::new();
    if value.trim().len() < 4 {
        return out;
    }
    let mut push = |form: String| {
        if form.len() >= MIN_ENCODED && form != value && !out.contains(&form) {
            out.push(form);
        }
    };
    // The whole value encoded on its own, padding included.
    push(STANDARD.encode(bytes));
    for shift in 0..3usize {
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(bytes);
        let enc = STANDARD_NO_PAD.encode(&padded);
        // Character i covers bits [6i, 6i+6); the value's bits are
        // [8·shift, 8·(shift+n)).
        let start = (8 * shift).div_ceil(6);
        let end = (8 * (shift + bytes.len()) / 6).min(enc.len());
        if end > start {
            let fragment = &enc[start..end];
            push(fragment.to_string());
            push(fragment.replace('+', "-").replace('/', "_"));
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    push(hex.to_ascii_uppercase());
    push(hex);
    let mut url = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    push(url.to_lowercase());
    push(url);
    let json = serde_json::to_string(value).unwrap_or_default();
    push(json.trim_matches('"').to_string());
    out
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
    fn base64_at_every_alignment_and_hex_are_masked() {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD;
        let secret = "hunter2-s3cret!";
        let m = Masker::new();
        m.add(secret);
        // The secret inside a longer stream, starting at each byte offset
        // mod 3: `printf 'x%s' "$S" | base64` and the like.
        for prefix in ["", "x", "xy", "user:", "Basic ab"] {
            for suffix in ["", "\n", "z", "!!"] {
                let encoded = STANDARD.encode(format!("{prefix}{secret}{suffix}"));
                let out = m.mask(&encoded).into_owned();
                assert!(
                    out.contains(MASK),
                    "{prefix:?}+secret+{suffix:?} as {encoded} not masked: {out}"
                );
                let decoded_leak = STANDARD
                    .decode(out.replace(MASK, "").trim_end_matches('='))
                    .map(|b| String::from_utf8_lossy(&b).contains("s3cret"))
                    .unwrap_or(false);
                assert!(!decoded_leak, "{out}");
            }
        }
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(m.mask(&format!("dump {hex}")), "dump ***");
        assert_eq!(m.mask(&format!("DUMP {}", hex.to_uppercase())), "DUMP ***");
        // Short values keep their encodings visible (ordinary text would be hit).
        assert!(encoded_forms("abc").is_empty());
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
