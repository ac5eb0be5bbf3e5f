//! `hangar scan policy` and `hangar scan policy verify`.
//!
//! SARIF and annotations come from `hangar-findings`; the other renderings
//! are this command's own, in conftest's shapes where conftest has them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use hangar_policy::config::FileConfig;
use hangar_policy::verify::{TestResult, TestStatus};
use hangar_policy::{Level, Options, Report};
use serde_json::json;

/// Output of the scanners that offer text, JSON and SARIF.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

/// Output of `scan policy`: conftest's set plus SARIF and GitHub annotations.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Output {
    Text,
    Json,
    Sarif,
    Junit,
    Tap,
    Table,
    /// `::error file=…::` workflow commands, one per finding.
    Github,
}

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "conftest.toml in the working directory (or --config) is read as conftest reads it; flags win.\n\
Examples:\n  hangar scan policy -p policy deploy/            # conftest test -p policy deploy/\n  \
hangar scan policy --namespace 'team.*' k8s.yaml\n  \
cat app.ini | hangar scan policy --parser ini -\n  \
hangar scan policy verify -p policy              # conftest verify"
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Files or directories to check; `-` reads standard input (YAML unless --parser says otherwise).
    files: Vec<PathBuf>,
    /// Directory (or file) of Rego policies; repeatable. Default: ./policy if it exists.
    #[arg(long = "policy", short = 'p')]
    policy: Vec<PathBuf>,
    /// Namespace (Rego package) to evaluate; repeatable; `*`, `?` and `[..]` match several. Default: main.
    #[arg(long = "namespace", short = 'n', conflicts_with = "all_namespaces")]
    namespace: Vec<String>,
    /// Evaluate every package the policies declare.
    #[arg(long)]
    all_namespaces: bool,
    /// Do not run hangar's bundled Kubernetes, Dockerfile and workflow policies.
    #[arg(long)]
    no_bundled: bool,
    /// JSON, YAML or TOML file, or a directory of them, merged into `data`; repeatable.
    #[arg(long, short = 'd')]
    data: Vec<PathBuf>,
    /// Evaluate all inputs at once as `[{"path", "contents"}, ...]`.
    #[arg(long)]
    combine: bool,
    /// Parse every input as this kind (yaml, json, toml, dockerfile, ini, dotenv, properties, xml).
    #[arg(long)]
    parser: Option<String>,
    /// Exit 1 on warnings too.
    #[arg(long)]
    fail_on_warn: bool,
    /// Exit 1 when the policies had nothing to check in an input (no rule applied).
    #[arg(long)]
    fail_on_empty: bool,
    /// conftest settings file. Default: ./conftest.toml when it exists.
    #[arg(long = "config", short = 'c')]
    config: Option<PathBuf>,
    #[arg(long = "output", short = 'o', alias = "format", value_enum)]
    output: Option<Output>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run the policies' Rego unit tests (`test_*` rules, `*_test.rego`), as `conftest verify`.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Directory (or file) of Rego policies and tests; repeatable. Default: ./policy.
    #[arg(long = "policy", short = 'p')]
    policy: Vec<PathBuf>,
    /// JSON, YAML or TOML file, or a directory of them, merged into `data`.
    #[arg(long, short = 'd')]
    data: Vec<PathBuf>,
    /// Only the tests of these packages (`*` wildcards).
    #[arg(long = "namespace", short = 'n')]
    namespace: Vec<String>,
    #[arg(
        long = "output",
        short = 'o',
        alias = "format",
        value_enum,
        default_value = "text"
    )]
    output: Output,
}

fn parse_output(name: &str) -> anyhow::Result<Output> {
    use clap::ValueEnum;
    Output::from_str(name, true).map_err(|_| {
        anyhow::anyhow!(
            "conftest.toml: output = {name:?} is not one of text, json, sarif, junit, tap, table, github"
        )
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => FileConfig::load(path, true)?,
        None => FileConfig::load(Path::new("conftest.toml"), false)?,
    }
    .unwrap_or_default();
    if let Some(Command::Verify(v)) = args.command {
        let policy = if v.policy.is_empty() {
            config.policy.iter().map(|p| config.path(p)).collect()
        } else {
            v.policy
        };
        let data = if v.data.is_empty() {
            config.data.iter().map(|p| config.path(p)).collect()
        } else {
            v.data
        };
        return verify(&policy, &data, &v.namespace, v.output);
    }
    let policy_dirs = if args.policy.is_empty() {
        config.policy.iter().map(|p| config.path(p)).collect()
    } else {
        args.policy
    };
    let data = if args.data.is_empty() {
        config.data.iter().map(|p| config.path(p)).collect()
    } else {
        args.data
    };
    let explicit_ns = !args.namespace.is_empty() || args.all_namespaces;
    let namespaces = if explicit_ns {
        args.namespace
    } else {
        config.namespace.clone()
    };
    let all_namespaces =
        args.all_namespaces || (!explicit_ns && config.all_namespaces == Some(true));
    let parser = match args.parser.as_deref().or(config.parser.as_deref()) {
        Some(name) => Some(hangar_policy::input::Kind::from_parser(name)?),
        None => None,
    };
    let output = match (args.output, &config.output) {
        (Some(o), _) => o,
        (None, Some(name)) => parse_output(name)?,
        (None, None) => Output::Text,
    };
    let files = if args.files.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.files
    };
    let stdin = if files.iter().any(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Some(text)
    } else {
        None
    };
    let report = hangar_policy::scan(&Options {
        files,
        policy_dirs,
        namespaces,
        all_namespaces,
        no_bundled: args.no_bundled,
        data,
        combine: args.combine || config.combine == Some(true),
        parser,
        stdin,
    })?;
    print!("{}", render(&report, output)?);
    for input in report.unapplied() {
        eprintln!("{}", unapplied_warning(input));
    }
    let fail_on_warn = args.fail_on_warn || config.fail_on_warn == Some(true);
    let fail = report.failures() > 0
        || (fail_on_warn && report.warnings() > 0)
        || (args.fail_on_empty && report.unapplied().next().is_some());
    Ok(if fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What to say when a policy had nothing to check in an input.
pub fn unapplied_warning(input: &hangar_policy::InputSummary) -> String {
    let mut msg = format!(
        "warning: {}: no rule applied ({} rules, none found what it reads in this input)",
        input.file.display(),
        input.user_rules
    );
    if !input.missing_paths.is_empty() {
        let shown: Vec<&str> = input
            .missing_paths
            .iter()
            .take(4)
            .map(String::as_str)
            .collect();
        msg.push_str(&format!(
            "\n  the policies read {}{}, which this input does not have",
            shown.join(", "),
            if input.missing_paths.len() > 4 {
                ", ..."
            } else {
                ""
            }
        ));
    }
    msg.push_str("\n  help: check that the policies are written for this kind of file; --fail-on-empty makes this an error");
    msg
}

pub fn render(report: &Report, output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Text => text(report),
        Output::Json => serde_json::to_string_pretty(&json_report(report))? + "\n",
        Output::Sarif => serde_json::to_string_pretty(&sarif(report))? + "\n",
        Output::Junit => junit(report),
        Output::Tap => tap(report),
        Output::Table => table(report),
        Output::Github => github(report),
    })
}

fn label(level: Level) -> &'static str {
    match level {
        Level::Failure => "FAIL",
        Level::Warning => "WARN",
        Level::Exception => "EXCP",
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// conftest's summary line: `5 tests, 4 passed, 1 warning, 0 failures, 0 exceptions`.
fn summary_line(report: &Report) -> String {
    format!(
        "{}, {} passed, {}, {}, {}",
        plural(report.tests(), "test", "tests"),
        report.passed(),
        plural(report.warnings(), "warning", "warnings"),
        plural(report.failures(), "failure", "failures"),
        plural(report.exceptions(), "exception", "exceptions"),
    )
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for o in &report.outcomes {
        if o.level == Level::Exception {
            out.push_str(&format!(
                "EXCP - {} - {} - {}\n",
                o.file.display(),
                o.namespace,
                o.msg
            ));
            continue;
        }
        out.push_str(&format!(
            "{} - {}:{} - {} - {}\n",
            label(o.level),
            o.file.display(),
            o.line,
            o.rule_id(),
            o.msg
        ));
    }
    out.push('\n');
    if report.user_policies {
        for input in &report.inputs {
            out.push_str(&format!(
                "{}: {} of {} rules applied ({})\n",
                input.file.display(),
                input.applied,
                input.user_rules,
                plural(input.documents, "document", "documents"),
            ));
        }
    }
    out.push_str(&format!(
        "{}\n{}, {}\n",
        summary_line(report),
        plural(report.files, "file", "files"),
        plural(report.documents, "document", "documents"),
    ));
    out
}

pub fn json_report(report: &Report) -> serde_json::Value {
    json!({
        "files": report.files,
        "documents": report.documents,
        "tests": report.tests(),
        "passed": report.passed(),
        "failures": report.failures(),
        "warnings": report.warnings(),
        "exceptions": report.exceptions(),
        "inputs": report.inputs.iter().map(|i| json!({
            "file": i.file.display().to_string(),
            "documents": i.documents,
            "tests": i.tests,
            "passed": i.passed,
            "rules": i.user_rules,
            "applied": i.applied,
            "missing": i.missing_paths,
        })).collect::<Vec<_>>(),
        "results": report.outcomes.iter().map(|o| json!({
            "level": match o.level { Level::Failure => "failure", Level::Warning => "warning", Level::Exception => "exception" },
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

fn github(report: &Report) -> String {
    let mut out = String::new();
    for o in report
        .outcomes
        .iter()
        .filter(|o| o.level != Level::Exception)
    {
        out.push_str(&hangar_findings::annotation(&o.to_finding(None)));
        out.push('\n');
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per finding, and one passing case per input
/// without any, as CI test-report viewers read it.
fn junit(report: &Report) -> String {
    let mut cases = String::new();
    let mut count = 0;
    for o in &report.outcomes {
        count += 1;
        let name = xml_escape(&format!(
            "{} - {} - {}",
            o.file.display(),
            o.namespace,
            o.msg
        ));
        let body = match o.level {
            Level::Failure => format!(
                "<failure message=\"{}\" type=\"{}\"></failure>",
                xml_escape(&o.msg),
                xml_escape(&o.rule_id())
            ),
            Level::Warning => format!("<system-out>WARN: {}</system-out>", xml_escape(&o.msg)),
            Level::Exception => "<skipped message=\"exception\"></skipped>".into(),
        };
        cases.push_str(&format!(
            "    <testcase classname=\"hangar-policy\" name=\"{name}\">{body}</testcase>\n"
        ));
    }
    for input in &report.inputs {
        if !report.outcomes.iter().any(|o| o.file == input.file) {
            count += 1;
            cases.push_str(&format!(
                "    <testcase classname=\"hangar-policy\" name=\"{}\"></testcase>\n",
                xml_escape(&input.file.display().to_string())
            ));
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"hangar-policy\" tests=\"{count}\" failures=\"{}\" skipped=\"{}\">\n{cases}  </testsuite>\n</testsuites>\n",
        report.failures(),
        report.exceptions()
    )
}

/// TAP 13 as conftest writes it: `not ok` per failure, warnings and
/// exceptions as `ok` with a directive, one `ok` per clean input.
fn tap(report: &Report) -> String {
    let mut lines = Vec::new();
    for o in &report.outcomes {
        let desc = format!("{} - {} - {}", o.file.display(), o.namespace, o.msg);
        lines.push(match o.level {
            Level::Failure => format!("not ok {{}} - {desc}"),
            Level::Warning => format!("ok {{}} - {desc} # warn"),
            Level::Exception => format!("ok {{}} - {desc} # SKIP exception"),
        });
    }
    for input in &report.inputs {
        if !report.outcomes.iter().any(|o| o.file == input.file) {
            lines.push(format!("ok {{}} - {} - passed", input.file.display()));
        }
    }
    let mut out = format!("1..{}\n", lines.len());
    for (i, line) in lines.iter().enumerate() {
        out.push_str(&line.replacen("{}", &(i + 1).to_string(), 1));
        out.push('\n');
    }
    out
}

/// conftest's table: RESULT, FILE, NAMESPACE, MESSAGE.
fn table(report: &Report) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "RESULT".into(),
        "FILE".into(),
        "NAMESPACE".into(),
        "MESSAGE".into(),
    ]];
    for o in &report.outcomes {
        rows.push([
            match o.level {
                Level::Failure => "failure",
                Level::Warning => "warning",
                Level::Exception => "exception",
            }
            .into(),
            format!("{}:{}", o.file.display(), o.line),
            o.namespace.clone(),
            o.msg.replace('\n', " "),
        ]);
    }
    for input in &report.inputs {
        if !report.outcomes.iter().any(|o| o.file == input.file) {
            rows.push([
                "success".into(),
                input.file.display().to_string(),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        }
    }
    out
}

fn verify(
    policy: &[PathBuf],
    data: &[PathBuf],
    namespaces: &[String],
    output: Output,
) -> anyhow::Result<ExitCode> {
    let results = hangar_policy::verify::verify(policy, data, namespaces)?;
    let failed = results
        .iter()
        .filter(|r| matches!(r.status, TestStatus::Fail(_)))
        .count();
    let skipped = results
        .iter()
        .filter(|r| r.status == TestStatus::Skip)
        .count();
    let passed = results.len() - failed - skipped;
    let out = match output {
        Output::Text => verify_text(&results, passed, failed, skipped),
        Output::Json => {
            serde_json::to_string_pretty(&json!({
                "tests": results.len(), "passed": passed, "failures": failed, "skipped": skipped,
                "results": results.iter().map(|r| json!({
                    "name": r.name,
                    "file": r.file.display().to_string(),
                    "line": r.line,
                    "status": match &r.status { TestStatus::Pass => "pass", TestStatus::Fail(_) => "fail", TestStatus::Skip => "skip" },
                    "detail": match &r.status { TestStatus::Fail(d) => Some(d.as_str()), _ => None },
                })).collect::<Vec<_>>(),
            }))? + "\n"
        }
        Output::Tap => {
            let mut out = format!("1..{}\n", results.len());
            for (i, r) in results.iter().enumerate() {
                out.push_str(&match &r.status {
                    TestStatus::Pass => format!("ok {} - {}\n", i + 1, r.name),
                    TestStatus::Fail(d) => format!("not ok {} - {} ({d})\n", i + 1, r.name),
                    TestStatus::Skip => format!("ok {} - {} # SKIP todo\n", i + 1, r.name),
                });
            }
            out
        }
        other => bail!(
            "scan policy verify: --output {other:?} is not offered for tests; use text, json or tap"
        ),
    };
    print!("{out}");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn verify_text(results: &[TestResult], passed: usize, failed: usize, skipped: usize) -> String {
    let mut out = String::new();
    for r in results {
        match &r.status {
            TestStatus::Pass => out.push_str(&format!(
                "PASS - {}:{} - {}\n",
                r.file.display(),
                r.line,
                r.name
            )),
            TestStatus::Fail(d) => out.push_str(&format!(
                "FAIL - {}:{} - {} ({d})\n",
                r.file.display(),
                r.line,
                r.name
            )),
            TestStatus::Skip => out.push_str(&format!(
                "SKIP - {}:{} - {}\n",
                r.file.display(),
                r.line,
                r.name
            )),
        }
    }
    out.push_str(&format!(
        "\n{}, {passed} passed, {}, {skipped} skipped\n",
        plural(results.len(), "test", "tests"),
        plural(failed, "failure", "failures"),
    ));
    out
}
