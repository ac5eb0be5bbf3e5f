//! Secret scanning of working trees, git history and the index.
//!
//! The rules are gitleaks-format TOML ([`config`]): hangar's own default set
//! (`rules/default.toml`), a team's `.gitleaks.toml`, or both. Every rule is a
//! `regex::bytes` pattern with Unicode off, gated by one Aho-Corasick automaton
//! over all rules' keywords ([`rules::RuleSet::select`]), so a file is read once
//! and most rules never run on it. Sources: [`tree`] (the working tree, honouring
//! `.gitignore`) and [`git`] (one `git log -p -U0` stream, or the index).
//!
//! Findings can be accepted with a baseline ([`Baseline`]), a `.gitleaksignore`
//! file, or an inline `hangar:allow` / `gitleaks:allow` comment on the line.

pub mod config;
pub mod detect;
pub mod git;
pub mod report;
pub mod rules;
pub mod tree;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use config::{ConfigError, default_rules, load_file};
pub use detect::{Commit, Finding};
pub use rules::RuleSet;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Input(String),
}

/// What to scan.
#[derive(Debug, Clone)]
pub enum Target {
    /// A directory or file on disk.
    Tree(PathBuf),
    /// History of the repository at the path; `None` means every ref.
    Git {
        repo: PathBuf,
        range: Option<String>,
    },
    /// The index of the repository at the path (pre-commit).
    Staged(PathBuf),
}

/// The result of a scan, before baselines are applied.
#[derive(Debug, Default)]
pub struct Scanned {
    pub findings: Vec<Finding>,
    /// Files (or per-commit file patches) scanned, and their bytes.
    pub files: u64,
    pub bytes: u64,
    pub commits: u64,
    /// Files that could not be read; reported, not fatal.
    pub errors: Vec<String>,
}

/// Files above this size are skipped (logs, dumps, vendored archives).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 << 20;

pub fn scan(target: &Target, rules: &RuleSet, threads: usize) -> Result<Scanned, ScanError> {
    let threads = threads.max(1);
    match target {
        Target::Tree(root) => tree::scan(root, rules, DEFAULT_MAX_FILE_BYTES, threads),
        Target::Git { repo, range } => git::scan_history(repo, range.as_deref(), rules, threads),
        Target::Staged(repo) => git::scan_staged(repo, rules, threads),
    }
}

/// Findings already accepted: fingerprints from a baseline report and
/// `.gitleaksignore` entries.
#[derive(Debug, Default)]
pub struct Baseline {
    fingerprints: HashSet<String>,
    /// gitleaks-style `[commit:]path:rule:line` entries.
    gitleaks: HashSet<String>,
}

impl Baseline {
    /// Reads a baseline written by `--create-baseline` (or any `--format json`
    /// report of ours: the `fingerprint` of each finding is what counts).
    pub fn read_report(&mut self, path: &Path) -> Result<(), ScanError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ScanError::Input(format!("{}: cannot read baseline: {e}", path.display()))
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            ScanError::Input(format!(
                "{}:{}:{}: not a hangar JSON report: {e}; create one with `hangar scan secrets --create-baseline {}`",
                path.display(),
                e.line(),
                e.column(),
                path.display()
            ))
        })?;
        let list = value
            .get("findings")
            .and_then(|f| f.as_array())
            .or_else(|| value.as_array())
            .ok_or_else(|| {
                ScanError::Input(format!(
                    "{}: a baseline is a JSON report with a `findings` array",
                    path.display()
                ))
            })?;
        for f in list {
            if let Some(fp) = f.get("fingerprint").and_then(|v| v.as_str()) {
                self.fingerprints.insert(fp.to_string());
            }
        }
        Ok(())
    }

    /// Reads a `.gitleaksignore`: one `path:rule:line` or
    /// `commit:path:rule:line` per line, `#` comments.
    pub fn read_gitleaksignore(&mut self, path: &Path) -> Result<(), ScanError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScanError::Input(format!("{}: {e}", path.display())))?;
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                self.gitleaks.insert(line.to_string());
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty() && self.gitleaks.is_empty()
    }

    pub fn accepts(&self, f: &Finding) -> bool {
        if self.fingerprints.contains(&f.fingerprint) {
            return true;
        }
        if self.gitleaks.is_empty() {
            return false;
        }
        let short = format!("{}:{}:{}", f.path, f.rule_id, f.line);
        match &f.commit {
            Some(c) => self.gitleaks.contains(&format!("{}:{short}", c.sha)),
            None => self.gitleaks.contains(&short),
        }
    }
}

/// Hides a secret for display: the first four characters of a long secret
/// stay (they name the kind, `ghp_`, `AKIA`), the rest become `*`.
pub fn redact(secret: &str) -> String {
    let n = secret.chars().count();
    let keep = if n >= 16 { 4 } else { 0 };
    let shown: String = secret.chars().take(keep).collect();
    format!("{shown}{}", "*".repeat((n - keep).clamp(3, 12)))
}

/// `text` with every occurrence of `secret` redacted.
pub fn redact_in(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    text.replace(secret, &redact(secret))
}

impl Finding {
    /// The shared shape, for SARIF and annotations.
    pub fn to_finding(&self, redacted: bool) -> hangar_findings::Finding {
        let secret = if redacted {
            redact(&self.secret)
        } else {
            self.secret.clone()
        };
        let mut properties = serde_json::Map::new();
        if let Some(c) = &self.commit {
            properties.insert("commit".into(), c.sha.clone().into());
            properties.insert("author".into(), c.author.clone().into());
            properties.insert("email".into(), c.email.clone().into());
            properties.insert("date".into(), c.date.clone().into());
        }
        properties.insert("entropy".into(), self.entropy.into());
        let message = if self.secret.is_empty() {
            self.description.clone()
        } else {
            format!("{} ({secret})", self.description)
        };
        hangar_findings::Finding {
            rule_id: self.rule_id.clone(),
            level: hangar_findings::Level::Error,
            message,
            location: Some(hangar_findings::Location {
                path: self.path.clone(),
                line: self.line,
                column: (self.line > 0).then_some(self.column),
                end_line: (self.line > 0).then_some(self.end_line),
                end_column: (self.line > 0).then_some(self.end_column),
            }),
            fingerprint: Some(self.fingerprint.clone()),
            properties,
        }
    }
}
