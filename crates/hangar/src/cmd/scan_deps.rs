//! `hangar scan deps`.
//!
//! SARIF comes from `hangar-findings`; text and JSON are this command's own.

use std::path::PathBuf;
use std::process::ExitCode;

use hangar_advisories::{Options, Report};
use serde_json::json;

use super::scan_policy::Format;

#[derive(clap::Args)]
#[command(after_help = "Fetch an advisory database (offline afterwards):\n  \
    git clone --depth 1 -b osv https://github.com/rustsec/advisory-db   (crates.io, OSV JSON)\n  \
    or unzip OSV's per-ecosystem exports (crates.io, npm, PyPI, Go: <ecosystem>/all.zip) into one directory.")]
pub struct Args {
    /// A lock file, or a directory searched for Cargo.lock, package-lock.json,
    /// requirements.txt, poetry.lock and go.sum.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Directory of OSV JSON advisories.
    #[arg(long, env = "HANGAR_ADVISORY_DB")]
    db: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = hangar_advisories::scan(&Options {
        path: args.path,
        db: args.db,
    })?;
    let out = match args.format {
        Format::Text => text(&report),
        Format::Json => serde_json::to_string_pretty(&json_report(&report))? + "\n",
        Format::Sarif => serde_json::to_string_pretty(&sarif(&report))? + "\n",
    };
    print!("{out}");
    Ok(if report.vulnerabilities.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for v in &report.vulnerabilities {
        let sev = v.severity.as_deref().unwrap_or("UNKNOWN");
        out.push_str(&format!(
            "{}:{}: [{sev}] {}\n",
            v.file.display(),
            v.line,
            v.message()
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
    out.push_str(&format!(
        "\n{} lock files, {} packages, {} advisories: {} vulnerable, {} unpinned\n",
        report.lock_files.len(),
        report.packages,
        report.advisories,
        report.vulnerabilities.len(),
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
            "fixed": v.fixed,
            "file": v.file.display().to_string(),
            "line": v.line,
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
