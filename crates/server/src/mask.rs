//! Server-side masking of secrets in logs and outputs, before anything is stored.
//! Agents mask the plain values already; the server also catches the encoded
//! forms (base64, URL- and JSON-escaped), so a step that prints `base64 <<< $TOKEN`
//! does not leak it either.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;

/// Values shorter than this are never masked: masking "1" or "on" would blank logs.
pub const MIN_SECRET_LEN: usize = 4;

pub struct Masker {
    ac: Option<AhoCorasick>,
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Masker {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a String>) -> Masker {
        let mut pats: Vec<String> = Vec::new();
        for s in secrets {
            if s.len() < MIN_SECRET_LEN {
                continue;
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(s);
            let json = serde_json::to_string(s).unwrap_or_default();
            let json = json.trim_matches('"').to_string();
            for form in [
                s.clone(),
                b64.trim_end_matches('=').to_string(),
                b64,
                url_encode(s),
                url_encode(s).to_lowercase(),
                json,
            ] {
                if form.len() >= MIN_SECRET_LEN && !pats.contains(&form) {
                    pats.push(form);
                }
            }
            // Multi-line secrets are also masked line by line, as lines are stored separately.
            for line in s.lines() {
                let line = line.trim();
                if line.len() >= MIN_SECRET_LEN && !pats.iter().any(|p| p == line) {
                    pats.push(line.to_string());
                }
            }
        }
        let ac = (!pats.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&pats)
                .expect("literal patterns build")
        });
        Masker { ac }
    }

    pub fn mask(&self, text: &str) -> String {
        match &self.ac {
            None => text.to_string(),
            Some(ac) => ac.replace_all(text, &vec!["***"; ac.patterns_len()]),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_and_encoded_forms() {
        let s = "p@ss w/rd\"x".to_string();
        let m = Masker::new([&s]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&s);
        let line = format!(
            "plain={s} b64={b64} url={} json={}",
            url_encode(&s),
            serde_json::to_string(&s).unwrap()
        );
        let out = m.mask(&line);
        assert!(
            !out.contains(&s) && !out.contains(&b64) && !out.contains(&url_encode(&s)),
            "{out}"
        );
        assert!(!out.contains("p@ss"), "{out}");
    }

    #[test]
    fn short_values_are_not_masked() {
        let s = "on".to_string();
        let m = Masker::new([&s]);
        assert!(m.is_empty());
        assert_eq!(m.mask("turn on"), "turn on");
    }
}
