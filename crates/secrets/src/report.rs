//! One scan from options to report, and its text and JSON renderings (SARIF
//! is `hangar-findings`' job). Shared by `hangar scan secrets` and the
//! `hangar/scan@v1` step so both say the same thing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Baseline, Finding, RuleSet, ScanError, Target, redact, redact_in};

/// Everything a scan needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// gitleaks-format TOML. Default: `.gitleaks.toml` at the scanned root if
    /// present, else hangar's default rules.
    pub config: Option<PathBuf>,
    /// A JSON report whose findings are accepted.
    pub baseline: Option<PathBuf>,
    pub threads: usize,
}

pub struct Report {
    pub findings: Vec<Finding>,
    /// Findings dropped because a baseline or `.gitleaksignore` accepts them.
    pub accepted: usize,
    pub files: u64,
    pub bytes: u64,
    pub commits: u64,
    pub errors: Vec<String>,
    pub elapsed: Duration,
    /// Which configuration was used, for the summary.
    pub config: String,
    pub rules: RuleSet,
}

fn root_of(target: &Target) -> &Path {
    match target {
        Target::Tree(p) | Target::Staged(p) => p,
        Target::Git { repo, .. } => repo,
    }
}

pub fn run(opts: &Options) -> Result<Report, ScanError> {
    let started = Instant::now();
    let root = root_of(&opts.target);
    let dir = if root.is_file() {
        root.parent().unwrap_or(Path::new("."))
    } else {
        root
    };
    let auto = dir.join(".gitleaks.toml");
    let (rules, config) = match &opts.config {
        Some(path) => (crate::load_file(path)?, path.display().to_string()),
        None if auto.is_file() => (crate::load_file(&auto)?, auto.display().to_string()),
        None => (crate::default_rules(), "hangar default rules".to_string()),
    };
    let mut baseline = Baseline::default();
    if let Some(path) = &opts.baseline {
        baseline.read_report(path)?;
    }
    let ignore = dir.join(".gitleaksignore");
    if ignore.is_file() {
        baseline.read_gitleaksignore(&ignore)?;
    }
    let scanned = crate::scan(&opts.target, &rules, opts.threads)?;
    let total = scanned.findings.len();
    let findings: Vec<Finding> = scanned
        .findings
        .into_iter()
        .filter(|f| !baseline.accepts(f))
        .collect();
    Ok(Report {
        accepted: total - findings.len(),
        findings,
        files: scanned.files,
        bytes: scanned.bytes,
        commits: scanned.commits,
        errors: scanned.errors,
        elapsed: started.elapsed(),
        config,
        rules,
    })
}

impl Report {
    /// One paragraph per finding: where, which rule, the line (redacted), and
    /// for history scans the commit that added it.
    pub fn text(&self, redacted: bool) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{}:{}:{}: {}: {}\n",
                f.path, f.line, f.column, f.rule_id, f.description
            ));
            let line = shown(&f.line_text, &f.secret, redacted);
            for l in line.lines().take(3) {
                out.push_str(&format!("    {}\n", truncate(l.trim_end(), 160)));
            }
            if let Some(c) = &f.commit {
                out.push_str(&format!(
                    "    commit {} by {} <{}> on {}\n",
                    &c.sha[..c.sha.len().min(12)],
                    c.author,
                    c.email,
                    c.date
                ));
            }
        }
        out
    }

    /// The summary line printed after the findings.
    pub fn summary(&self) -> String {
        let scanned = if self.commits > 0 {
            format!(
                "{} commits, {} file patches, {}",
                self.commits,
                self.files,
                megabytes(self.bytes)
            )
        } else {
            format!("{} files, {}", self.files, megabytes(self.bytes))
        };
        let files: std::collections::BTreeSet<&str> =
            self.findings.iter().map(|f| f.path.as_str()).collect();
        let mut s = match self.findings.len() {
            0 => "no secrets found".to_string(),
            1 => "1 secret found".to_string(),
            n => format!("{n} secrets found in {} files", files.len()),
        };
        s.push_str(&format!(
            " ({scanned} in {:.2} s; rules: {})",
            self.elapsed.as_secs_f64(),
            self.config
        ));
        if self.accepted > 0 {
            s.push_str(&format!("; {} accepted by the baseline", self.accepted));
        }
        if !self.errors.is_empty() {
            s.push_str(&format!("; {} files could not be read", self.errors.len()));
        }
        s
    }

    pub fn json(&self, redacted: bool) -> Value {
        json!({
            "findings": self.findings.iter().map(|f| finding_json(f, redacted)).collect::<Vec<_>>(),
            "summary": {
                "findings": self.findings.len(),
                "accepted": self.accepted,
                "files": self.files,
                "bytes": self.bytes,
                "commits": self.commits,
                "seconds": self.elapsed.as_secs_f64(),
                "config": self.config,
                "errors": self.errors,
            },
        })
    }

    pub fn sarif(&self, redacted: bool) -> Value {
        let rules: Vec<hangar_findings::RuleInfo> = self
            .rules
            .rules
            .iter()
            .map(|r| hangar_findings::RuleInfo {
                id: r.id.clone(),
                description: r.description.clone(),
                help_uri: None,
            })
            .collect();
        let findings: Vec<hangar_findings::Finding> = self
            .findings
            .iter()
            .map(|f| f.to_finding(redacted))
            .collect();
        hangar_findings::sarif(
            &hangar_findings::Tool {
                name: "hangar-secrets",
                version: env!("CARGO_PKG_VERSION"),
            },
            &rules,
            &findings,
        )
    }
}

fn finding_json(f: &Finding, redacted: bool) -> Value {
    let mut v = json!({
        "rule": f.rule_id,
        "description": f.description,
        "file": f.path,
        "line": f.line,
        "column": f.column,
        "end_line": f.end_line,
        "end_column": f.end_column,
        "secret": if redacted { redact(&f.secret) } else { f.secret.clone() },
        "match": shown(&f.matched, &f.secret, redacted),
        "entropy": f.entropy,
        "tags": f.tags,
        "fingerprint": f.fingerprint,
    });
    if let Some(c) = &f.commit {
        v["commit"] = json!(c.sha);
        v["author"] = json!(c.author);
        v["email"] = json!(c.email);
        v["date"] = json!(c.date);
        v["message"] = json!(c.message);
    }
    v
}

fn shown(text: &str, secret: &str, redacted: bool) -> String {
    if redacted {
        redact_in(text, secret)
    } else {
        text.to_string()
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
