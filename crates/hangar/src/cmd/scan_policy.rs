//! `hangar scan policy`.
//!
//! SARIF comes from `hangar-findings`; text and JSON are this command's own.

use std::path::PathBuf;
use std::process::ExitCode;

use hangar_policy::{Level, Options, Report};
use serde_json::json;

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

#[derive(clap::Args)]
pub struct Args {
    /// Files or directories to check (YAML, JSON, TOML, Dockerfiles).
    #[arg(default_value = ".")]
    files: Vec<PathBuf>,
    /// Directory (or file) of Rego policies; repeatable. Default: ./policy if it exists.
    #[arg(long = "policy", short = 'p')]
    policy: Vec<PathBuf>,
    /// Namespace (Rego package) to evaluate; repeatable. Default: main.
    #[arg(long = "namespace", short = 'n', conflicts_with = "all_namespaces")]
    namespace: Vec<String>,
    /// Evaluate every package the policies declare.
    #[arg(long)]
    all_namespaces: bool,
    /// Do not run hangar's bundled Kubernetes, Dockerfile and workflow policies.
    #[arg(long)]
    no_bundled: bool,
    /// JSON or YAML file merged into `data`; repeatable.
    #[arg(long)]
    data: Vec<PathBuf>,
    /// Exit 1 on warnings too.
    #[arg(long)]
    fail_on_warn: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = hangar_policy::scan(&Options {
        files: args.files,
        policy_dirs: args.policy,
        namespaces: args.namespace,
        all_namespaces: args.all_namespaces,
        no_bundled: args.no_bundled,
        data: args.data,
    })?;
    let out = match args.format {
        Format::Text => text(&report),
        Format::Json => serde_json::to_string_pretty(&json_report(&report))? + "\n",
        Format::Sarif => serde_json::to_string_pretty(&sarif(&report))? + "\n",
    };
    print!("{out}");
    let fail = report.failures() > 0 || (args.fail_on_warn && report.warnings() > 0);
    Ok(if fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn label(level: Level) -> &'static str {
    match level {
        Level::Failure => "FAIL",
        Level::Warning => "WARN",
    }
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for o in &report.outcomes {
        out.push_str(&format!(
            "{} - {}:{} - {} - {}\n",
            label(o.level),
            o.file.display(),
            o.line,
            o.rule_id(),
            o.msg
        ));
    }
    out.push_str(&format!(
        "\n{} files, {} documents: {} failures, {} warnings\n",
        report.files,
        report.documents,
        report.failures(),
        report.warnings()
    ));
    out
}

pub fn json_report(report: &Report) -> serde_json::Value {
    json!({
        "files": report.files,
        "documents": report.documents,
        "failures": report.failures(),
        "warnings": report.warnings(),
        "results": report.outcomes.iter().map(|o| json!({
            "level": if o.level == Level::Failure { "failure" } else { "warning" },
            "file": o.file.display().to_string(),
            "line": o.line,
            "document": o.document,
            "namespace": o.namespace,
            "rule": o.rule,
            "id": o.rule_id(),
            "msg": o.msg,
            "metadata": o.metadata,
        })).collect::<Vec<_>>(),
    })
}

pub fn sarif(report: &Report) -> serde_json::Value {
    let findings: Vec<hangar_findings::Finding> =
        report.outcomes.iter().map(|o| o.to_finding(None)).collect();
    hangar_findings::sarif(
        &hangar_findings::Tool {
            name: "hangar-policy",
            version: env!("CARGO_PKG_VERSION"),
        },
        &[],
        &findings,
    )
}
