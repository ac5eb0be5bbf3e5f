//! Server-side masking of secrets in logs and outputs, before anything is stored.
//! Agents mask already; the server masks again on ingest (an agent may be
//! old, or its masker may not know a secret set since), with the same encoded
//! forms as the engine (`hangar_engine::mask::encoded_forms`: base64 at every
//! alignment, hex, URL- and JSON-escaped), so a step that prints
//! `base64 <<< $TOKEN` does not leak it either. One Aho-Corasick automaton
//! over every form keeps that a single pass over each chunk.

use aho_corasick::{AhoCorasick, MatchKind};

/// Values shorter than this are never masked: masking "1" or "on" would blank logs.
pub const MIN_SECRET_LEN: usize = 4;

pub struct Masker {
    ac: Option<AhoCorasick>,
    /// The values it masks (their forms are derived again when extended).
    secrets: Vec<String>,
}

impl Masker {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a String>) -> Masker {
        let mut pats: Vec<String> = Vec::new();
        let mut secrets_kept: Vec<String> = Vec::new();
        for s in secrets {
            if !secrets_kept.contains(s) {
                secrets_kept.push(s.clone());
            }
            if s.len() < MIN_SECRET_LEN {
                continue;
            }
            for form in std::iter::once(s.clone()).chain(hangar_engine::mask::encoded_forms(s)) {
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
        Masker {
            ac,
            secrets: secrets_kept,
        }
    }

    /// This masker and `value` too: what a job's masker becomes when a secret
    /// is set while the job runs (the job may hold the old value and print it).
    pub fn with(&self, value: &str) -> Masker {
        let value = value.to_string();
        Masker::new(self.secrets.iter().chain(std::iter::once(&value)))
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
        use base64::Engine;
        let s = "p@ss w/rd\"x".to_string();
        let m = Masker::new([&s]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&s);
        let shifted = base64::engine::general_purpose::STANDARD.encode(format!("u:{s}"));
        let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        let url = "p%40ss%20w%2Frd%22x";
        let line = format!(
            "plain={s} b64={b64} shifted={shifted} hex={hex} url={url} json={}",
            serde_json::to_string(&s).unwrap()
        );
        let out = m.mask(&line);
        for leak in [s.as_str(), &b64, &shifted, &hex, url, "p@ss"] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
    }

    #[test]
    fn short_values_are_not_masked() {
        let s = "on".to_string();
        let m = Masker::new([&s]);
        assert!(m.is_empty());
        assert_eq!(m.mask("turn on"), "turn on");
    }
}
