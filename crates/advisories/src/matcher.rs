//! Whether an installed version falls in an OSV `affected` entry, per the OSV
//! schema: `versions[]` lists exact versions; in a SEMVER or ECOSYSTEM range,
//! `introduced` is inclusive, `fixed` exclusive, `last_affected` inclusive.

use std::cmp::Ordering;
use std::path::PathBuf;

use crate::osv::{Advisory, Affected, Database};
use crate::version::compare;
use crate::{Ecosystem, Package};

/// One installed package affected by one advisory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vulnerability {
    pub ecosystem: Ecosystem,
    pub package: String,
    pub version: String,
    pub advisory: String,
    pub aliases: Vec<String>,
    pub summary: Option<String>,
    /// The advisory's own label (`HIGH`, ...) when it has one, else its CVSS vector.
    pub severity: Option<String>,
    /// The lowest fixed version above the installed one, if any.
    pub fixed: Option<String>,
    pub file: PathBuf,
    pub line: usize,
    /// RustSec's informational kind (`unmaintained`, `unsound`, `notice`):
    /// a warning, not a vulnerability, unless the gate asks for it.
    pub informational: Option<String>,
    /// The level a gate compares: informational, or from the label or CVSS
    /// vector; `None` when the advisory gives neither.
    pub level: Option<crate::severity::Severity>,
}

impl Vulnerability {
    /// One sentence: package, advisory, aliases, summary and the fix.
    pub fn message(&self) -> String {
        let mut msg = format!(
            "{} {} is affected by {}",
            self.package, self.version, self.advisory
        );
        if !self.aliases.is_empty() {
            msg.push_str(&format!(" ({})", self.aliases.join(", ")));
        }
        if let Some(s) = &self.summary {
            msg.push_str(&format!(": {s}"));
        }
        match &self.fixed {
            Some(f) => msg.push_str(&format!("; fixed in {f}")),
            None => msg.push_str("; no fixed version"),
        }
        msg
    }

    /// The shared shape for SARIF and annotations; paths relative to `root` when under it.
    pub fn to_finding(&self, root: Option<&std::path::Path>) -> hangar_findings::Finding {
        let mut properties = serde_json::Map::new();
        properties.insert("package".into(), self.package.clone().into());
        properties.insert("version".into(), self.version.clone().into());
        properties.insert("aliases".into(), self.aliases.clone().into());
        properties.insert("severity".into(), self.severity.clone().into());
        properties.insert("fixed".into(), self.fixed.clone().into());
        hangar_findings::Finding {
            rule_id: self.advisory.clone(),
            level: if self.informational.is_some() {
                hangar_findings::Level::Warning
            } else {
                hangar_findings::Level::Error
            },
            message: self.message(),
            location: Some(hangar_findings::Location::line_in(
                &self.file, root, self.line,
            )),
            fingerprint: None,
            properties,
        }
    }
}

pub fn check(db: &Database, pkg: &Package) -> Vec<Vulnerability> {
    let Some(version) = pkg.version.as_deref() else {
        return Vec::new();
    };
    let mut out: Vec<Vulnerability> = Vec::new();
    for (adv, affected) in db.lookup(pkg.ecosystem, &pkg.name) {
        let Some(fixed) = affects(pkg.ecosystem, affected, version) else {
            continue;
        };
        if out.iter().any(|v| v.advisory == adv.id) {
            continue;
        }
        let informational = informational(adv, affected);
        let severity = severity(adv, affected);
        let level = if informational.is_some() {
            Some(crate::severity::Severity::Informational)
        } else {
            severity
                .as_deref()
                .and_then(crate::severity::Severity::from_label_or_vector)
        };
        out.push(Vulnerability {
            ecosystem: pkg.ecosystem,
            package: pkg.name.clone(),
            version: version.to_string(),
            advisory: adv.id.clone(),
            aliases: adv.aliases.clone(),
            summary: adv.summary.clone(),
            severity,
            fixed,
            file: pkg.file.clone(),
            line: pkg.line,
            informational,
            level,
        });
    }
    out
}

/// `None` when not affected; `Some(fixed)` when affected, with the first fix above `version`.
pub fn affects(eco: Ecosystem, affected: &Affected, version: &str) -> Option<Option<String>> {
    let eq = |a: &str, b: &str| compare(eco, a, b) == Some(Ordering::Equal) || a == b;
    let listed = affected.versions.iter().any(|v| eq(v, version));
    let mut hit = listed;
    let mut fixed: Option<String> = None;
    for range in &affected.ranges {
        if range.kind != "SEMVER" && range.kind != "ECOSYSTEM" {
            continue; // GIT ranges name commits, not versions.
        }
        // Walk the events in version order; introduced "0" is the lowest.
        let mut events: Vec<(&str, &str)> = Vec::new();
        for e in &range.events {
            if let Some(v) = &e.introduced {
                events.push(("introduced", v));
            }
            if let Some(v) = &e.fixed {
                events.push(("fixed", v));
            }
            if let Some(v) = &e.last_affected {
                events.push(("last_affected", v));
            }
        }
        let key = |v: &str| v == "0";
        events.sort_by(|a, b| match (key(a.1), key(b.1)) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => compare(eco, a.1, b.1).unwrap_or(Ordering::Equal),
        });
        let mut inside = false;
        for (kind, v) in &events {
            let ord = if *v == "0" {
                Some(Ordering::Less)
            } else {
                compare(eco, v, version)
            };
            let Some(ord) = ord else { continue };
            match *kind {
                "introduced" if ord != Ordering::Greater => inside = true,
                "fixed" if ord != Ordering::Greater => inside = false,
                "last_affected" if ord == Ordering::Less => inside = false,
                _ => {}
            }
        }
        if inside {
            hit = true;
            if fixed.is_none() {
                fixed = events
                    .iter()
                    .filter(|(k, v)| {
                        *k == "fixed" && compare(eco, v, version) == Some(Ordering::Greater)
                    })
                    .map(|(_, v)| v.to_string())
                    .next();
            }
        }
    }
    hit.then_some(fixed)
}

/// RustSec marks advisories that are not vulnerabilities (`unmaintained`,
/// `unsound`, `notice`) with `informational` in `database_specific`, at the
/// record's or the affected entry's level.
fn informational(adv: &Advisory, affected: &Affected) -> Option<String> {
    let kind = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v.get("informational"))
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    kind(&affected.database_specific).or_else(|| kind(&adv.database_specific))
}

fn severity(adv: &Advisory, affected: &Affected) -> Option<String> {
    let label = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v.get("severity"))
            .and_then(|s| s.as_str())
            .map(str::to_uppercase)
    };
    label(&adv.database_specific)
        .or_else(|| label(&affected.ecosystem_specific))
        .or_else(|| label(&affected.database_specific))
        .or_else(|| adv.severity.first().map(|s| s.score.clone()))
}
