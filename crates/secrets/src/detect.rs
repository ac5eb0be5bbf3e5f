//! Running a [`RuleSet`] over one fragment of text (a file, or the lines a
//! commit adds to one file).

use crate::rules::{Candidate, RuleSet};

/// Who wrote a fragment, when it comes from git history.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Commit {
    pub sha: String,
    pub author: String,
    pub email: String,
    pub date: String,
    pub message: String,
}

/// Text to scan and where it came from.
pub struct Fragment<'a> {
    /// Path relative to the scan root, with `/` separators.
    pub path: &'a str,
    pub text: &'a [u8],
    pub commit: Option<&'a Commit>,
    /// For patch fragments: the file line number of each line of `text`
    /// (`text` holds only the added lines). `None` means line i is line i.
    pub line_numbers: Option<&'a [u32]>,
}

/// One secret found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub rule_id: String,
    pub description: String,
    pub path: String,
    /// 1-based line and column (bytes) of the secret's start, and its end.
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
    /// The whole regex match and the secret within it (not redacted here).
    #[serde(skip)]
    pub matched: String,
    #[serde(skip)]
    pub secret: String,
    /// The source line(s) the secret is on.
    #[serde(skip)]
    pub line_text: String,
    pub entropy: f64,
    pub tags: Vec<String>,
    pub commit: Option<Commit>,
    pub fingerprint: String,
}

/// Shannon entropy of `data` in bits per byte.
pub fn entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Reusable per-thread scratch space, so scanning a file allocates nothing
/// when it holds no keyword.
#[derive(Default)]
pub struct Scratch {
    selected: Vec<bool>,
}

const INLINE_ALLOW: [&[u8]; 2] = [b"hangar:allow", b"gitleaks:allow"];

impl RuleSet {
    /// Every finding in `fragment`, in order of position.
    pub fn scan(&self, fragment: &Fragment, scratch: &mut Scratch) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.path_excluded(fragment.path) {
            return out;
        }
        let commit_sha = fragment.commit.map(|c| c.sha.as_str());
        if let Some(sha) = commit_sha
            && self.global.iter().any(|a| {
                a.commits.iter().any(|c| sha.starts_with(c.as_str()))
                    && a.regexes.is_empty()
                    && a.paths.is_empty()
                    && a.stopwords.is_empty()
            })
        {
            return out;
        }
        let lines = LineIndex::new(fragment.text);
        // Path-only rules: the file itself is the finding.
        for rule in self.rules.iter().filter(|r| r.regex.is_none()) {
            if rule
                .path
                .as_ref()
                .is_some_and(|p| p.is_match(fragment.path.as_bytes()))
            {
                let cand = Candidate {
                    path: fragment.path,
                    commit: commit_sha,
                    secret: b"",
                    matched: b"",
                    line: b"",
                };
                if rule.allowlists.iter().any(|a| a.allows(&cand)) {
                    continue;
                }
                out.push(make_finding(rule, fragment, &lines, 0, 0, b"", b"", b""));
            }
        }
        if self.select(fragment.text, &mut scratch.selected) == 0 {
            return out;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if !scratch.selected[i] {
                continue;
            }
            let Some(re) = &rule.regex else { continue };
            if let Some(p) = &rule.path
                && !p.is_match(fragment.path.as_bytes())
            {
                continue;
            }
            let generic = rule.id.starts_with("generic");
            for caps in re.captures_iter(fragment.text) {
                let whole = caps.get(0).expect("group 0 always matches");
                let secret = if rule.secret_group > 0 {
                    match caps.get(rule.secret_group) {
                        Some(m) => m,
                        None => continue,
                    }
                } else {
                    (1..caps.len())
                        .filter_map(|g| caps.get(g))
                        .find(|m| !m.is_empty())
                        .unwrap_or(whole)
                };
                let s = secret.as_bytes();
                let e = entropy(s);
                if let Some(min) = rule.entropy {
                    if e < min {
                        continue;
                    }
                    // As gitleaks: a generic match must look random, and words
                    // without a digit rarely are.
                    if generic && !s.iter().any(u8::is_ascii_digit) {
                        continue;
                    }
                }
                let line = lines.lines_of(secret.start(), secret.end());
                if INLINE_ALLOW
                    .iter()
                    .any(|m| memchr::memmem::find(line, m).is_some())
                {
                    continue;
                }
                let cand = Candidate {
                    path: fragment.path,
                    commit: commit_sha,
                    secret: s,
                    matched: whole.as_bytes(),
                    line,
                };
                if rule.allowlists.iter().any(|a| a.allows(&cand))
                    || self.global.iter().any(|a| a.allows(&cand))
                {
                    continue;
                }
                if rule.skip_report {
                    continue;
                }
                let mut f = make_finding(
                    rule,
                    fragment,
                    &lines,
                    secret.start(),
                    secret.end(),
                    whole.as_bytes(),
                    s,
                    line,
                );
                f.entropy = (e * 1000.0).round() / 1000.0;
                out.push(f);
            }
        }
        drop_shadowed(&mut out);
        out.sort_by_key(|f| (f.line, f.column));
        out
    }
}

/// One secret, one finding: a generic rule's finding is noise when a
/// specific rule found the same secret (`api_key = "ghp_..."`), and of two
/// specific rules reporting the very same span the first (in file order) wins.
fn drop_shadowed(out: &mut Vec<Finding>) {
    if out.len() < 2 {
        return;
    }
    let span = |f: &Finding| ((f.line, f.column), (f.end_line, f.end_column));
    let is_generic = |f: &Finding| f.rule_id.starts_with("generic");
    let mut keep = vec![true; out.len()];
    for i in 0..out.len() {
        for j in 0..out.len() {
            if i == j || !keep[j] {
                continue;
            }
            let (a, b) = (span(&out[i]), span(&out[j]));
            let overlap = a.0 <= b.1 && b.0 <= a.1;
            let shadowed = if is_generic(&out[i]) {
                overlap && !is_generic(&out[j])
            } else {
                a == b && j < i && !is_generic(&out[j])
            };
            if shadowed {
                keep[i] = false;
                break;
            }
        }
    }
    let mut k = keep.into_iter();
    out.retain(|_| k.next().unwrap_or(true));
}

#[allow(clippy::too_many_arguments)]
fn make_finding(
    rule: &crate::rules::Rule,
    fragment: &Fragment,
    lines: &LineIndex,
    start: usize,
    end: usize,
    matched: &[u8],
    secret: &[u8],
    line_text: &[u8],
) -> Finding {
    let (line, column) = lines.position(start);
    let (end_line, end_column) = lines.position(end.saturating_sub(1).max(start));
    let map = |l: u32| match fragment.line_numbers {
        Some(nums) => nums.get(l as usize - 1).copied().unwrap_or(l),
        None => l,
    };
    let secret_str = String::from_utf8_lossy(secret).into_owned();
    Finding {
        rule_id: rule.id.clone(),
        description: rule.description.clone(),
        path: fragment.path.to_string(),
        line: map(line),
        column,
        end_line: map(end_line),
        end_column: end_column + 1,
        matched: String::from_utf8_lossy(matched).into_owned(),
        fingerprint: fingerprint(&rule.id, fragment.path, secret),
        secret: secret_str,
        line_text: String::from_utf8_lossy(line_text).into_owned(),
        entropy: 0.0,
        tags: rule.tags.clone(),
        commit: fragment.commit.cloned(),
    }
}

/// Stable identity of a finding for baselines: the rule, the file and the
/// secret, not the line, so edits above a known secret do not resurface it.
pub fn fingerprint(rule: &str, path: &str, secret: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(secret);
    let digest = h.finalize();
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Line starts of a fragment, computed only when a finding needs them.
struct LineIndex<'a> {
    text: &'a [u8],
    starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a [u8]) -> LineIndex<'a> {
        LineIndex {
            text,
            starts: std::cell::OnceCell::new(),
        }
    }

    fn starts(&self) -> &[usize] {
        self.starts.get_or_init(|| {
            std::iter::once(0)
                .chain(memchr::memchr_iter(b'\n', self.text).map(|i| i + 1))
                .collect()
        })
    }

    /// 1-based (line, column) of a byte offset.
    fn position(&self, offset: usize) -> (u32, u32) {
        let starts = self.starts();
        let line = starts.partition_point(|&s| s <= offset).max(1);
        let col = offset - starts[line - 1] + 1;
        (line as u32, col as u32)
    }

    /// The full lines that bytes `start..end` lie on, without the final newline.
    fn lines_of(&self, start: usize, end: usize) -> &'a [u8] {
        let from = memchr::memrchr(b'\n', &self.text[..start]).map_or(0, |i| i + 1);
        let to = memchr::memchr(b'\n', &self.text[end.max(start)..])
            .map_or(self.text.len(), |i| end.max(start) + i);
        &self.text[from..to]
    }
}
