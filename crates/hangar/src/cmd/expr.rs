//! `hangar expr`: evaluate one expression against JSON contexts, for users
//! debugging an `if:`.

use std::io::Read;
use std::path::{Path, PathBuf};
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
        Some(path) => load_contexts(path)?,
    };
    match evaluate(&args.expression, &contexts) {
        Ok(json) => {
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprint!("{message}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Reads `{"github": {...}, ...}` from a file, or from stdin for `-`.
fn load_contexts(path: &Path) -> anyhow::Result<Contexts> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading contexts from stdin")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    anyhow::ensure!(
        json.is_object(),
        "{}: expected a JSON object of contexts, like {{\"github\": {{...}}, \"matrix\": {{...}}}}",
        path.display()
    );
    Ok(Contexts::from_json(&json))
}

/// The result as pretty JSON, or the positioned error text.
fn evaluate(source: &str, contexts: &Contexts) -> Result<String, String> {
    let result = if hangar_expr::has_expressions(source) {
        Template::parse(source).map(|t| t.eval_to_value(contexts, &DefaultHost))
    } else {
        hangar_expr::parse(source).map(|e| e.eval(contexts, &DefaultHost))
    };
    match result {
        Ok(Ok(value)) => Ok(value.to_json_pretty()),
        Ok(Err(err)) => Err(positioned("error", &err.message, source, err.offset)),
        Err(err) => Err(positioned("syntax error", &err.message, source, err.offset)),
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
    use super::{evaluate, load_contexts, positioned};

    #[test]
    fn evaluates_against_a_context_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctx.json");
        std::fs::write(
            &path,
            r#"{"github": {"ref": "refs/heads/main"}, "matrix": {"os": "linux"}}"#,
        )
        .unwrap();
        let contexts = load_contexts(&path).unwrap();
        let out = evaluate("github.ref == 'refs/heads/main' && matrix", &contexts);
        assert_eq!(out, Ok("{\n  \"os\": \"linux\"\n}".to_string()));
        assert_eq!(
            evaluate("os: ${{ matrix.os }}", &contexts),
            Ok("\"os: linux\"".to_string())
        );
        assert_eq!(
            evaluate("${{ matrix.missing }}", &contexts),
            Ok("null".to_string())
        );
    }

    #[test]
    fn bad_context_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctx.json");
        std::fs::write(&path, "[1]").unwrap();
        let err = load_contexts(&path).unwrap_err().to_string();
        assert!(err.contains("expected a JSON object of contexts"), "{err}");
        std::fs::write(&path, "{oops").unwrap();
        assert!(
            load_contexts(&path)
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn syntax_and_evaluation_errors_are_positioned() {
        let contexts = hangar_expr::Contexts::new();
        let err = evaluate("1 2", &contexts).unwrap_err();
        assert!(
            err.starts_with("syntax error: Unexpected symbol: '2' (at column 3)"),
            "{err}"
        );
        let err = evaluate("x ${{ format('{1}', 1) }}", &contexts).unwrap_err();
        assert!(
            err.contains("(at column 7)\n  x ${{ format('{1}', 1) }}\n        ^"),
            "{err}"
        );
    }

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
