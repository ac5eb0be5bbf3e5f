//! `hangar validate [FILES]`: workflows (and hangar.yml) checked before a push.

use std::path::PathBuf;
use std::process::ExitCode;

use hangar_diag::Diagnostic;

#[derive(clap::Args)]
pub struct Args {
    /// Workflow files, and composite actions' `action.yml` [default:
    /// .github/workflows/*.yml|yaml, .github/actions/**/action.yml|yaml, and
    /// hangar.yml when present].
    files: Vec<PathBuf>,
    /// Print diagnostics as JSON (each with its `severity`).
    #[arg(long)]
    json: bool,
    /// Fail on warnings too (what GitHub accepts but is almost surely a
    /// mistake, such as `needs.x` for a job not in `needs`).
    #[arg(long)]
    deny_warnings: bool,
    /// `-D warnings`: as `--deny-warnings`, as cargo and clippy spell it.
    #[arg(short = 'D', value_name = "LINT", value_parser = ["warnings"])]
    deny: Vec<String>,
    /// Print the workflow as GitHub's parser hands it to the runner: jobs with
    /// defaulted names and `if`s, generated step ids, called workflows inlined.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["files", "json"])]
    template: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.template {
        return template(path);
    }
    let mut files = args.files.clone();
    let defaults = files.is_empty();
    if defaults {
        if let Ok(entries) = std::fs::read_dir(".github/workflows") {
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                .collect();
            found.sort();
            files.extend(found);
        }
        let mut actions = Vec::new();
        find_actions(std::path::Path::new(".github/actions"), 0, &mut actions);
        actions.sort();
        files.extend(actions);
        if files.is_empty() && !std::path::Path::new("hangar.yml").exists() {
            anyhow::bail!(
                "no workflows in .github/workflows and no hangar.yml here: pass the files to check"
            );
        }
    }
    let mut all: Vec<(Diagnostic, String)> = Vec::new();
    let mut checked = 0;
    for path in &files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        checked += 1;
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let diags = if file_name == "hangar.yml" || file_name == "hangar.yaml" {
            project_diagnostics(&name, &text)
        } else if file_name == "action.yml" || file_name == "action.yaml" {
            hangar_workflow::validate_action(&name, &text)
        } else {
            // Local reusable workflows are read relative to the repository root (here).
            hangar_workflow::validate_with(
                &name,
                &text,
                &hangar_workflow::local_callee(std::path::Path::new(".")),
            )
        };
        all.extend(diags.into_iter().map(|d| (d, text.clone())));
    }
    if defaults && std::path::Path::new("hangar.yml").exists() {
        let text = std::fs::read_to_string("hangar.yml")?;
        checked += 1;
        all.extend(
            project_diagnostics("hangar.yml", &text)
                .into_iter()
                .map(|d| (d, text.clone())),
        );
    }
    let errors = all.iter().filter(|(d, _)| d.is_error()).count();
    let warnings = all.len() - errors;
    if args.json {
        let v: Vec<&Diagnostic> = all.iter().map(|(d, _)| d).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (d, text) in &all {
            eprint!("{}", d.render(text));
        }
        eprintln!("{checked} file(s) checked, {errors} error(s), {warnings} warning(s)");
    }
    let deny_warnings = args.deny_warnings || !args.deny.is_empty();
    Ok(if errors == 0 && (warnings == 0 || !deny_warnings) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `action.yml` of each local action under `dir` (a few levels deep:
/// `.github/actions/NAME/action.yml`, or grouped one level further).
fn find_actions(dir: &std::path::Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        // Not followed through symbolic links: a link loop would never end.
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() && depth < 3 {
            find_actions(&p, depth + 1, out);
        } else if kind.is_file()
            && p.file_name()
                .is_some_and(|n| n == "action.yml" || n == "action.yaml")
        {
            out.push(p);
        }
    }
}

/// `--template FILE`: validates first (a template of an invalid workflow
/// would mislead), then prints the converted template as JSON on stdout.
fn template(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    // Local reusable workflows are read relative to the repository root (here).
    let resolve = hangar_workflow::local_callee(std::path::Path::new("."));
    let diags = hangar_workflow::validate_with(&name, &text, &resolve);
    for d in &diags {
        eprint!("{}", d.render(&text));
    }
    // Warnings are GitHub-valid: the template is still what GitHub converts.
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        eprintln!("{name}: {errors} error(s); fix them to see the converted template");
        return Ok(ExitCode::FAILURE);
    }
    let options = hangar_workflow::template::Options::default();
    match hangar_workflow::template::convert(&name, &text, &resolve, &options) {
        Ok(t) => {
            println!("{}", serde_json::to_string_pretty(&t)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => anyhow::bail!(
            "{e} (only local called workflows, `uses: ./...`, are read; remote ones are not fetched)"
        ),
    }
}

fn project_diagnostics(name: &str, text: &str) -> Vec<Diagnostic> {
    match hangar_project::parse(name, text) {
        // The `release:` section is the release crate's: checked as
        // `hangar release` and `hangar serve` (`tag_on_merge`) read it.
        Ok(_) => match hangar_release::Config::parse_positioned(text) {
            Ok(_) => Vec::new(),
            Err((line, column, message)) => vec![Diagnostic::error(
                name,
                line,
                column,
                format!("release: {message}"),
            )],
        },
        Err(errs) => errs
            .0
            .into_iter()
            .map(|e| {
                let d = Diagnostic::error(&e.file, e.line as usize, e.column as usize, e.message);
                match e.help {
                    Some(h) => d.with_help(h),
                    None => d,
                }
            })
            .collect(),
    }
}
