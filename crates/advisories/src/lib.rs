//! Dependency audit: lock files matched against OSV advisories.
//!
//! `scan` walks a directory (or reads one lock file), reads every lock file it
//! knows, and matches each pinned package against an offline OSV directory.

pub mod ignore;
pub mod lockfile;
pub mod matcher;
pub mod osv;
pub mod sbom;
pub mod severity;
pub mod update;
pub mod version;

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use lockfile::Package;
pub use matcher::Vulnerability;
pub use osv::Database;

/// The ecosystems hangar reads lock files for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    CratesIo,
    Npm,
    PyPI,
    Go,
    /// Gradle's lock files name Maven coordinates (`group:artifact`).
    Maven,
    /// composer.lock.
    Packagist,
    /// Gemfile.lock.
    RubyGems,
}

impl Ecosystem {
    /// The ecosystem's name in OSV records.
    pub fn osv_name(self) -> &'static str {
        match self {
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Npm => "npm",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Go => "Go",
            Ecosystem::Maven => "Maven",
            Ecosystem::Packagist => "Packagist",
            Ecosystem::RubyGems => "RubyGems",
        }
    }

    pub fn from_osv(name: &str) -> Option<Ecosystem> {
        match name {
            "crates.io" => Some(Ecosystem::CratesIo),
            "npm" => Some(Ecosystem::Npm),
            "PyPI" => Some(Ecosystem::PyPI),
            "Go" => Some(Ecosystem::Go),
            "Maven" => Some(Ecosystem::Maven),
            "Packagist" => Some(Ecosystem::Packagist),
            "RubyGems" => Some(Ecosystem::RubyGems),
            _ => None,
        }
    }

    /// Package names as the registry compares them: PyPI per PEP 503
    /// (case-insensitive, runs of `-_.` equal); Packagist case-insensitively
    /// (Composer lower-cases vendor and package names); the others exactly.
    pub fn normalize(self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => {
                let mut out = String::with_capacity(name.len());
                for c in name.chars() {
                    if "-_.".contains(c) {
                        if !out.ends_with('-') {
                            out.push('-');
                        }
                    } else {
                        out.push(c.to_ascii_lowercase());
                    }
                }
                out
            }
            Ecosystem::Packagist => name.to_ascii_lowercase(),
            _ => name.to_string(),
        }
    }
}

/// What to scan.
#[derive(Debug, Clone)]
pub struct Options {
    /// A lock file or a directory searched (recursively, skipping `.git`,
    /// `node_modules`, `target`, `vendor`) for lock files.
    pub path: PathBuf,
    /// The OSV advisory directory.
    pub db: PathBuf,
    /// Advisories to ignore, in osv-scanner's `osv-scanner.toml` shape;
    /// default: `osv-scanner.toml` in the scanned directory when it exists.
    pub ignore_file: Option<PathBuf>,
    /// "Today" for ignore expiry (tests); default the current UTC date.
    pub today: Option<String>,
}

/// The result of a scan.
#[derive(Debug, Default)]
pub struct Report {
    pub vulnerabilities: Vec<Vulnerability>,
    /// Packages without an exact pin (e.g. `flask>=2` in requirements.txt):
    /// their exposure is unknown.
    pub unpinned: Vec<Package>,
    pub lock_files: Vec<PathBuf>,
    pub packages: usize,
    pub advisories: usize,
    /// Every pinned package read, for the SBOM.
    pub pinned: Vec<Package>,
    /// Findings an ignore entry switched off, with its reason.
    pub ignored: Vec<(Vulnerability, String)>,
    /// Problems with the ignore list (expired entries, missing reasons).
    pub warnings: Vec<String>,
}

impl Report {
    /// Findings that are vulnerabilities (not informational).
    pub fn vulnerable(&self) -> impl Iterator<Item = &Vulnerability> {
        self.vulnerabilities
            .iter()
            .filter(|v| v.informational.is_none())
    }

    /// Findings at or above `min` (informational ones only when `min` is
    /// informational). A finding whose advisory gives no severity counts as
    /// failing: an unknown risk does not pass a gate.
    pub fn at_least(&self, min: severity::Severity) -> impl Iterator<Item = &Vulnerability> {
        self.vulnerabilities.iter().filter(move |v| match v.level {
            Some(severity::Severity::Informational) => min == severity::Severity::Informational,
            Some(level) => level >= min,
            None => true,
        })
    }
}

/// The ecosystems of the packages the lock files under `path` pin, in a
/// stable order (what `--update` downloads).
pub fn ecosystems_under(path: &Path) -> Result<Vec<Ecosystem>> {
    let mut out = Vec::new();
    for file in find_lock_files(path)? {
        for p in lockfile::read(&file)? {
            if !out.contains(&p.ecosystem) {
                out.push(p.ecosystem);
            }
        }
    }
    out.sort_by_key(|e| e.osv_name());
    Ok(out)
}

/// Reads the lock files under `opts.path` and matches them against `opts.db`.
pub fn scan(opts: &Options) -> Result<Report> {
    // A database that cannot be read is the first thing to fix.
    osv::list(&opts.db)?;
    let lock_files = find_lock_files(&opts.path)?;
    if lock_files.is_empty() {
        anyhow::bail!(
            "no lock file found under {} (looked for {})",
            opts.path.display(),
            lockfile::LOCK_FILES.join(", ")
        );
    }
    let mut packages = Vec::new();
    for file in &lock_files {
        packages.extend(lockfile::read(file)?);
    }
    // Only the ecosystems present are loaded: a full OSV export is gigabytes.
    let present: std::collections::HashSet<Ecosystem> =
        packages.iter().map(|p| p.ecosystem).collect();
    let db = Database::open_for(&opts.db, &present)?;
    let ignore_file = opts.ignore_file.clone().or_else(|| {
        let dir = if opts.path.is_dir() {
            opts.path.clone()
        } else {
            opts.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        };
        let default = dir.join("osv-scanner.toml");
        default.is_file().then_some(default)
    });
    let ignores = match &ignore_file {
        Some(f) => ignore::IgnoreList::load(f)?,
        None => ignore::IgnoreList::default(),
    };
    let today = opts.today.clone().unwrap_or_else(ignore::today);
    let mut report = Report {
        advisories: db.len(),
        ..Report::default()
    };
    report.warnings.extend(ignores.warnings(&today));
    for pkg in packages {
        report.packages += 1;
        if pkg.version.is_none() {
            report.unpinned.push(pkg);
            continue;
        }
        for v in matcher::check(&db, &pkg) {
            match ignores.reason_for(&v, &today) {
                Some(reason) => report.ignored.push((v, reason)),
                None => report.vulnerabilities.push(v),
            }
        }
        report.pinned.push(pkg);
    }
    report.lock_files = lock_files;
    Ok(report)
}

fn find_lock_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    walk(path, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            if !matches!(
                name.as_str(),
                ".git" | "node_modules" | "target" | "vendor" | ".venv" | "venv"
            ) {
                walk(&entry.path(), out)?;
            }
        } else if lockfile::is_lock_file(&entry.path()) {
            out.push(entry.path());
        }
    }
    Ok(())
}
