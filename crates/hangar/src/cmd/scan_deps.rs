//! `hangar scan deps`.
//!
//! SARIF comes from `hangar-findings`; text and JSON are this command's own.

use std::path::PathBuf;
use std::process::ExitCode;

use hangar_advisories::severity::Severity;
use hangar_advisories::{Options, Report, Vulnerability};
use serde_json::json;

use super::scan_policy::Format;

#[derive(clap::Args)]
#[command(after_help = "Fetch an advisory database (offline afterwards):\n  \
    git clone --depth 1 -b osv https://github.com/rustsec/advisory-db   (crates.io, OSV JSON)\n  \
    or unzip OSV's per-ecosystem exports (<ecosystem>/all.zip) into one directory,\n  \
    or let `--update` download the exports of the ecosystems your lock files use.")]
pub struct Args {
    /// A lock file, or a directory searched for Cargo.lock, package-lock.json,
    /// npm-shrinkwrap.json, requirements*.txt, requirements/*.txt, poetry.lock and go.sum.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Directory of OSV JSON advisories.
    #[arg(long, env = "HANGAR_ADVISORY_DB")]
    db: PathBuf,
    /// Report and fail only on findings at or above this level
    /// (low, moderate, high, critical). Advisories without a severity count as failing.
    #[arg(long, value_name = "LEVEL")]
    severity: Option<Severity>,
    /// Fail only on findings at or above this level; all are reported.
    /// `informational` also fails on unmaintained/unsound advisories (warnings otherwise).
    #[arg(long, value_name = "LEVEL")]
    fail_on: Option<Severity>,
    /// Accepted advisories with reasons and expiry, osv-scanner's format
    /// ([[IgnoredVulns]] id, ignoreUntil, reason). Default: osv-scanner.toml in PATH.
    #[arg(long, value_name = "FILE")]
    ignore_file: Option<PathBuf>,
    /// Also write a CycloneDX 1.5 SBOM (JSON) of the packages read to this file.
    #[arg(long, value_name = "FILE")]
    sbom: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// First download OSV's exports of the ecosystems the lock files use into
    /// --db (each replaced only once its new copy is complete).
    #[arg(long)]
    update: bool,
    /// Where --update downloads from (`<URL>/<Ecosystem>/all.zip`): OSV's bucket by default,
    /// or a mirror of it.
    #[arg(long, value_name = "URL", env = "HANGAR_OSV_URL", default_value = hangar_advisories::update::DEFAULT_BASE)]
    osv_url: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.update {
        let ecosystems = hangar_advisories::ecosystems_under(&args.path)?;
        let updated = hangar_advisories::update::update(
            &args.db,
            &args.osv_url,
            &ecosystems,
            hangar_advisories::update::Limits::default(),
        )?;
        for u in updated {
            eprintln!(
                "updated {}: {} advisories ({} bytes)",
                u.ecosystem.osv_name(),
                u.records,
                u.bytes
            );
        }
    }
    let mut report = hangar_advisories::scan(&Options {
        path: args.path,
        db: args.db,
        ignore_file: args.ignore_file,
        today: None,
    })?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = &args.sbom {
        let bom = hangar_advisories::sbom::cyclonedx(&report.pinned, env!("CARGO_PKG_VERSION"));
        std::fs::write(path, serde_json::to_string_pretty(&bom)? + "\n")
            .map_err(|e| anyhow::anyhow!("--sbom {}: {e}", path.display()))?;
    }
    // `--severity high`: what is below it is neither shown nor failing (counted).
    let mut below = 0;
    if let Some(min) = args.severity {
        let before = report.vulnerabilities.len();
        let keep: Vec<Vulnerability> = report.at_least(min).cloned().collect();
        below = before - keep.len();
        report.vulnerabilities = keep;
    }
    let out = match args.format {
        Format::Text => {
            let mut t = text(&report);
            if below > 0 {
                t.push_str(&format!(
                    "{below} finding(s) below {} not shown (--severity)\n",
                    args.severity.map(|s| s.as_str()).unwrap_or("")
                ));
            }
            t
        }
        Format::Json => serde_json::to_string_pretty(&json_report(&report))? + "\n",
        Format::Sarif => serde_json::to_string_pretty(&sarif(&report))? + "\n",
    };
    print!("{out}");
    let failing = match args.fail_on.or(args.severity) {
        Some(min) => report.at_least(min).count(),
        // By default vulnerabilities fail and informational advisories warn.
        None => report.vulnerable().count(),
    };
    Ok(if failing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for v in &report.vulnerabilities {
        let sev = match (&v.informational, v.level) {
            (Some(kind), _) => format!("warning: {kind}"),
            (None, Some(level)) => level.as_str().to_string(),
            (None, None) => v.severity.clone().unwrap_or_else(|| "UNKNOWN".into()),
        };
        out.push_str(&format!(
            "{}:{}: [{sev}] {}\n",
            v.file.display(),
            v.line,
            v.message()
        ));
    }
    for (v, reason) in &report.ignored {
        out.push_str(&format!(
            "{}:{}: [ignored] {} {} {}: {reason}\n",
            v.file.display(),
            v.line,
            v.advisory,
            v.package,
            v.version
        ));
    }
    for p in &report.unpinned {
        out.push_str(&format!(
            "{}:{}: [UNKNOWN] {} is not pinned to an exact version (use ==); not checked\n",
            p.file.display(),
            p.line,
            p.name
        ));
    }
    let informational = report.vulnerabilities.len() - report.vulnerable().count();
    out.push_str(&format!(
        "\n{} lock files, {} packages, {} advisories: {} vulnerable, {} informational, {} ignored, {} unpinned\n",
        report.lock_files.len(),
        report.packages,
        report.advisories,
        report.vulnerable().count(),
        informational,
        report.ignored.len(),
        report.unpinned.len()
    ));
    out
}

pub fn json_report(report: &Report) -> serde_json::Value {
    json!({
        "lock_files": report.lock_files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "packages": report.packages,
        "advisories": report.advisories,
        "vulnerabilities": report.vulnerabilities.iter().map(|v| json!({
            "ecosystem": v.ecosystem.osv_name(),
            "package": v.package,
            "version": v.version,
            "advisory": v.advisory,
            "aliases": v.aliases,
            "summary": v.summary,
            "severity": v.severity,
            "level": v.level.map(|l| l.as_str()),
            "informational": v.informational,
            "fixed": v.fixed,
            "file": v.file.display().to_string(),
            "line": v.line,
        })).collect::<Vec<_>>(),
        "ignored": report.ignored.iter().map(|(v, reason)| json!({
            "package": v.package, "version": v.version, "advisory": v.advisory, "reason": reason,
        })).collect::<Vec<_>>(),
        "unpinned": report.unpinned.iter().map(|p| json!({
            "ecosystem": p.ecosystem.osv_name(),
            "package": p.name,
            "file": p.file.display().to_string(),
            "line": p.line,
        })).collect::<Vec<_>>(),
    })
}

pub fn sarif(report: &Report) -> serde_json::Value {
    let findings: Vec<hangar_findings::Finding> = report
        .vulnerabilities
        .iter()
        .map(|v| v.to_finding(None))
        .collect();
    hangar_findings::sarif(
        &hangar_findings::Tool {
            name: "hangar-deps",
            version: env!("CARGO_PKG_VERSION"),
        },
        &[],
        &findings,
    )
}
