//! Compiled rules and allowlists, and the keyword prefilter over them.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::Regex;

/// One detection rule (a gitleaks `[[rules]]` entry, compiled).
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    /// `None` for a path-only rule: the file's presence is the finding.
    pub regex: Option<Regex>,
    /// Capture group holding the secret; 0 means "the first non-empty group, else the match".
    pub secret_group: usize,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    pub entropy: Option<f64>,
    /// Lower-case keywords; the rule runs only on fragments containing one of them.
    pub keywords: Vec<String>,
    pub path: Option<Regex>,
    pub tags: Vec<String>,
    pub allowlists: Vec<Allowlist>,
    /// Used only as a building block; never reported (gitleaks' `skipReport`).
    pub skip_report: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Allowed when any criterion matches.
    Or,
    /// Allowed when every criterion given matches.
    And,
}

/// What an allowlist's `regexes` are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegexTarget {
    Secret,
    Match,
    Line,
}

#[derive(Debug, Clone)]
pub struct Allowlist {
    pub condition: Condition,
    pub target: RegexTarget,
    pub regexes: Vec<Regex>,
    pub paths: Vec<Regex>,
    pub commits: Vec<String>,
    /// Lower-case; a secret containing one is allowed.
    pub stopwords: Vec<String>,
    pub target_rules: Vec<String>,
}

/// What an allowlist is asked about one candidate finding.
pub struct Candidate<'a> {
    pub path: &'a str,
    pub commit: Option<&'a str>,
    pub secret: &'a [u8],
    pub matched: &'a [u8],
    pub line: &'a [u8],
}

impl Allowlist {
    /// True when the candidate is allowed (not reported).
    pub fn allows(&self, c: &Candidate) -> bool {
        let target = match self.target {
            RegexTarget::Secret => c.secret,
            RegexTarget::Match => c.matched,
            RegexTarget::Line => c.line,
        };
        let checks: [Option<bool>; 4] = [
            (!self.commits.is_empty()).then(|| {
                c.commit
                    .is_some_and(|sha| self.commits.iter().any(|a| sha.starts_with(a.as_str())))
            }),
            (!self.paths.is_empty()).then(|| self.paths_allow(c.path)),
            (!self.regexes.is_empty()).then(|| self.regexes.iter().any(|r| r.is_match(target))),
            (!self.stopwords.is_empty()).then(|| {
                let lower = c.secret.to_ascii_lowercase();
                self.stopwords
                    .iter()
                    .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some())
            }),
        ];
        let mut given = checks.iter().flatten().peekable();
        if given.peek().is_none() {
            return false;
        }
        match self.condition {
            Condition::Or => given.any(|&b| b),
            Condition::And => given.all(|&b| b),
        }
    }

    pub fn paths_allow(&self, path: &str) -> bool {
        self.paths.iter().any(|r| r.is_match(path.as_bytes()))
    }

    /// True when this allowlist excludes a whole fragment by its path alone
    /// (so the fragment need not be scanned).
    pub fn excludes_path(&self, path: &str) -> bool {
        let only_paths =
            self.commits.is_empty() && self.regexes.is_empty() && self.stopwords.is_empty();
        (only_paths || self.condition == Condition::Or) && self.paths_allow(path)
    }
}

/// A compiled configuration: rules, global allowlists and the keyword automaton.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub global: Vec<Allowlist>,
    /// One automaton over every rule's keywords (ASCII case-insensitive).
    keywords: Option<AhoCorasick>,
    /// For each automaton pattern, the rules that listed that keyword.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords: they run on every fragment.
    always: Vec<usize>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>, global: Vec<Allowlist>) -> RuleSet {
        let mut patterns: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.keywords.is_empty() {
                always.push(i);
            }
            for k in &rule.keywords {
                match patterns.iter().position(|p| p == k) {
                    Some(p) => keyword_rules[p].push(i),
                    None => {
                        patterns.push(k.clone());
                        keyword_rules.push(vec![i]);
                    }
                }
            }
        }
        let keywords = (!patterns.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .expect("keyword automaton builds")
        });
        RuleSet {
            rules,
            global,
            keywords,
            keyword_rules,
            always,
        }
    }

    /// Marks in `selected` the rules that must run on `text`: those without
    /// keywords and those with a keyword present. Returns how many were marked.
    pub fn select(&self, text: &[u8], selected: &mut Vec<bool>) -> usize {
        selected.clear();
        selected.resize(self.rules.len(), false);
        let mut count = 0;
        for &i in &self.always {
            selected[i] = true;
            count += 1;
        }
        let Some(ac) = &self.keywords else {
            return count;
        };
        let mut seen = vec![false; self.keyword_rules.len()];
        let mut remaining = self.keyword_rules.len();
        for m in ac.find_overlapping_iter(text) {
            let p = m.pattern().as_usize();
            if seen[p] {
                continue;
            }
            seen[p] = true;
            for &r in &self.keyword_rules[p] {
                if !selected[r] {
                    selected[r] = true;
                    count += 1;
                }
            }
            remaining -= 1;
            if remaining == 0 {
                break;
            }
        }
        count
    }

    /// True when a global allowlist excludes this path entirely.
    pub fn path_excluded(&self, path: &str) -> bool {
        self.global.iter().any(|a| a.excludes_path(path))
    }
}
