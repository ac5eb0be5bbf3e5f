//! `hangar scan secrets`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use hangar_secrets::Target;
use hangar_secrets::report::{Options, Report};

use super::scan_policy::Format;

#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 when nothing is found, 1 on findings, 2 on errors.\n\
Accept known findings with a baseline: `hangar scan secrets --create-baseline .hangar/secrets-baseline.json`,\n\
then `--baseline .hangar/secrets-baseline.json`; or mark a line with a `hangar:allow` comment."
)]
pub struct Args {
    /// Directory or file to scan (for --git and --staged: the repository).
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Scan git history instead of the working tree: the lines each commit adds.
    /// Optional RANGE (e.g. `main..HEAD`, `v1.2.0..`); default: every ref.
    #[arg(long, value_name = "RANGE", num_args = 0..=1, default_missing_value = "", conflicts_with = "staged")]
    git: Option<String>,
    /// Scan what is staged for the next commit (for a pre-commit hook).
    #[arg(long)]
    staged: bool,
    /// gitleaks-format TOML rules. Default: `.gitleaks.toml` in PATH if present,
    /// else hangar's rules (a config can add to them with `[extend] useDefault = true`).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// JSON report of accepted findings (from --create-baseline).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Write the findings as a baseline to FILE and exit 0.
    #[arg(long, value_name = "FILE", conflicts_with = "baseline")]
    create_baseline: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Show secrets in full (they are redacted by default).
    #[arg(long)]
    no_redact: bool,
    /// Worker threads (default: the number of cores).
    #[arg(long, short = 'j')]
    threads: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = if args.staged {
        Target::Staged(args.path.clone())
    } else if let Some(range) = &args.git {
        Target::Git {
            repo: args.path.clone(),
            range: Some(range.clone()).filter(|r| !r.is_empty()),
        }
    } else {
        Target::Tree(args.path.clone())
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let report = match hangar_secrets::report::run(&Options {
        target,
        config: args.config.clone(),
        baseline: args.baseline.clone(),
        threads,
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hangar scan secrets: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(path) = &args.create_baseline {
        // A baseline stores fingerprints and redacted values only.
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report.json(true))? + "\n",
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        eprintln!(
            "wrote a baseline of {} findings to {}",
            report.findings.len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let redacted = !args.no_redact;
    let out = render(&report, args.format, redacted)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, out).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
        }
    }
    for e in &report.errors {
        eprintln!("warning: {e}");
    }
    eprintln!("{}", report.summary());
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn render(report: &Report, format: Format, redacted: bool) -> anyhow::Result<String> {
    Ok(match format {
        Format::Text => report.text(redacted),
        Format::Json => serde_json::to_string_pretty(&report.json(redacted))? + "\n",
        Format::Sarif => serde_json::to_string_pretty(&report.sarif(redacted))? + "\n",
    })
}
