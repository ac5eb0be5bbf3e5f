//! `hangar scan coverage`: the coverage gate.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  hangar scan coverage lcov.info --min 80\n  \
    hangar scan coverage coverage.xml --diff-min 90 --base origin/main --annotate"
)]
pub struct Args {
    /// Coverage reports: lcov, Cobertura XML, JaCoCo XML, Go cover profiles (merged).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Fail when the total line coverage is below this percentage.
    #[arg(long, value_name = "PERCENT")]
    min: Option<f64>,
    /// Fail when the lines the change adds (since --base) are covered below this percentage.
    #[arg(long, value_name = "PERCENT", requires = "base")]
    diff_min: Option<f64>,
    /// Branch or commit the change is compared with (`git diff BASE...HEAD` plus uncommitted changes).
    #[arg(long)]
    base: Option<String>,
    /// Repository the report's paths are relative to.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Print a workflow annotation for every uncovered added line.
    #[arg(long)]
    annotate: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let o = hangar_coverage::gate(
        &args.files,
        &args.dir,
        args.min,
        args.diff_min,
        args.base.as_deref(),
    )?;
    if args.json {
        let v = serde_json::json!({
            "total": {"lines": o.total.lines, "covered": o.total.covered, "percent": o.total.percent()},
            "added": o.diff.as_ref().map(|d| {
                let t = d.total();
                serde_json::json!({
                    "lines": t.lines, "covered": t.covered, "percent": t.percent(),
                    "uncovered": d.files.iter().map(|f| serde_json::json!({"file": f.path, "lines": f.uncovered})).collect::<Vec<_>>(),
                })
            }),
            "failures": o.failures,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", o.summary);
        if args.annotate {
            for a in &o.annotations {
                println!("{a}");
            }
        }
        for f in &o.failures {
            eprintln!("error: {f}");
        }
    }
    // In a workflow, the table goes to the job summary too.
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY")
        && !path.is_empty()
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
    {
        let _ = writeln!(f, "{}", o.summary);
    }
    Ok(if o.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
