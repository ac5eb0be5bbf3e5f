//! `hangar expr`: evaluate one expression against JSON contexts, for users
//! debugging an `if:`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hangar_expr::{Contexts, DefaultHost, Template, column_of};

#[derive(clap::Args)]
pub struct Args {
    /// The expression, bare (`github.ref == 'refs/heads/main'`) or as a
    /// template (`ref is ${{ github.ref }}`).
    pub expression: String,
    /// JSON file with the contexts: {"github": {...}, "matrix": {...}}; `-` reads stdin.
    #[arg(long, short = 'c', value_name = "FILE.json")]
    pub context: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let contexts = match &args.context {
        None => Contexts::new(),
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading contexts from stdin")?;
                text
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?
            };
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", path.display()))?;
            anyhow::ensure!(
                json.is_object(),
                "{}: expected a JSON object of contexts, like {{\"github\": {{...}}, \"matrix\": {{...}}}}",
                path.display()
            );
            Contexts::from_json(&json)
        }
    };

    let source = args.expression.as_str();
    let result = if hangar_expr::has_expressions(source) {
        Template::parse(source).map(|t| t.eval_to_value(&contexts, &DefaultHost))
    } else {
        hangar_expr::parse(source).map(|e| e.eval(&contexts, &DefaultHost))
    };
    match result {
        Ok(Ok(value)) => {
            println!("{}", value.to_json_pretty());
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(err)) => {
            eprint!("{}", positioned("error", &err.message, source, err.offset));
            Ok(ExitCode::from(1))
        }
        Err(err) => {
            eprint!(
                "{}",
                positioned("syntax error", &err.message, source, err.offset)
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `error: message at column N`, the expression's line, and a caret under the column.
fn positioned(what: &str, message: &str, source: &str, offset: usize) -> String {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    let line_no = source[..line_start].matches('\n').count() + 1;
    let column = column_of(&source[line_start..], offset - line_start);
    let location = if source.contains('\n') {
        format!("line {line_no}, column {column}")
    } else {
        format!("column {column}")
    };
    format!(
        "{what}: {message} (at {location})\n  {}\n  {}^\n",
        &source[line_start..line_end],
        " ".repeat(column - 1)
    )
}

#[cfg(test)]
mod tests {
    use super::positioned;

    #[test]
    fn caret_sits_under_the_offending_column() {
        let text = positioned("syntax error", "Unexpected symbol: '2'", "1 2", 2);
        assert_eq!(
            text,
            "syntax error: Unexpected symbol: '2' (at column 3)\n  1 2\n    ^\n"
        );
    }

    #[test]
    fn multi_line_expressions_show_the_right_line() {
        let text = positioned("syntax error", "bad", "a &&\n  ) b", 7);
        assert_eq!(
            text,
            "syntax error: bad (at line 2, column 3)\n    ) b\n    ^\n"
        );
    }
}
