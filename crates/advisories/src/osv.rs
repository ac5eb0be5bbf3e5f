//! An offline OSV advisory directory: every `*.json` file under it (any depth),
//! each one OSV record. This reads OSV's per-ecosystem `all.zip` exports
//! unzipped, and the `osv` branch of the RustSec advisory-db (`crates/*.json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::Ecosystem;

#[derive(Debug, Clone, Deserialize)]
pub struct Advisory {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub severity: Vec<Severity>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Affected {
    #[serde(default)]
    pub package: Option<AffectedPackage>,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AffectedPackage {
    pub ecosystem: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub introduced: Option<String>,
    pub fixed: Option<String>,
    pub last_affected: Option<String>,
    pub limit: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Severity {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

/// Advisories indexed by (ecosystem, normalised package name).
pub struct Database {
    by_package: HashMap<(Ecosystem, String), Vec<(usize, usize)>>,
    advisories: Vec<Advisory>,
    pub withdrawn: usize,
}

impl Database {
    pub fn open(dir: &Path) -> Result<Database> {
        Self::open_for(dir, &std::collections::HashSet::new())
    }

    /// Loads only the advisories of `ecosystems` (all when empty). A record
    /// whose text names none of them is not parsed at all.
    pub fn open_for(
        dir: &Path,
        ecosystems: &std::collections::HashSet<Ecosystem>,
    ) -> Result<Database> {
        let wanted: Vec<String> = ecosystems
            .iter()
            .map(|e| format!("\"{}\"", e.osv_name()))
            .collect();
        let files = list(dir)?;
        let mut db = Database {
            by_package: HashMap::new(),
            advisories: Vec::new(),
            withdrawn: 0,
        };
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            if !wanted.is_empty() && !wanted.iter().any(|w| text.contains(w.as_str())) {
                continue;
            }
            let mut adv: Advisory = match serde_json::from_str(&text) {
                Ok(a) => a,
                // Other JSON (an index, a schema) may sit beside the records.
                Err(_) if !text.contains("\"affected\"") => continue,
                Err(e) => anyhow::bail!(
                    "{}:{}:{}: not an OSV record: {e}",
                    file.display(),
                    e.line(),
                    e.column()
                ),
            };
            if adv.withdrawn.is_some() {
                db.withdrawn += 1;
                continue;
            }
            adv.source = file;
            let index = db.advisories.len();
            for (ai, affected) in adv.affected.iter().enumerate() {
                let Some(pkg) = &affected.package else {
                    continue;
                };
                let Some(eco) = Ecosystem::from_osv(&pkg.ecosystem) else {
                    continue;
                };
                if !ecosystems.is_empty() && !ecosystems.contains(&eco) {
                    continue;
                }
                db.by_package
                    .entry((eco, eco.normalize(&pkg.name)))
                    .or_default()
                    .push((index, ai));
            }
            db.advisories.push(adv);
        }
        Ok(db)
    }

    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// The advisories' `affected` entries that name this package.
    pub fn lookup(
        &self,
        eco: Ecosystem,
        name: &str,
    ) -> impl Iterator<Item = (&Advisory, &Affected)> {
        self.by_package
            .get(&(eco, eco.normalize(name)))
            .into_iter()
            .flatten()
            .map(|&(a, i)| (&self.advisories[a], &self.advisories[a].affected[i]))
    }
}

/// The advisory files under `dir`, or an error that says how to get some.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        anyhow::bail!(
            "advisory database {} is not a directory (fetch one: see `hangar scan deps --help`)",
            dir.display()
        );
    }
    let mut files = Vec::new();
    let mut markdown = 0usize;
    collect(dir, &mut files, &mut markdown)?;
    if files.is_empty() {
        if markdown > 0 {
            anyhow::bail!(
                "{} holds Markdown advisories (RustSec's main branch); hangar reads OSV JSON: \
                     clone the `osv` branch instead (git clone --depth 1 -b osv https://github.com/rustsec/advisory-db)",
                dir.display()
            );
        }
        anyhow::bail!("{}: no OSV JSON advisories found", dir.display());
    }
    Ok(files)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>, markdown: &mut usize) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            collect(&path, files, markdown)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        } else if path.extension().is_some_and(|e| e == "md") {
            *markdown += 1;
        }
    }
    Ok(())
}
