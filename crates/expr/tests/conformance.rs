//! GitHub's shared expression test corpus (actions/languageservices
//! `expressions/testdata`, the "x-lang tests" GitHub's C#, Go and TypeScript
//! implementations share), read at test time from `../shared/conformance/expressions/`.
//!
//! Each case names its contexts; as in the upstream harness those names are the
//! only named values the parser accepts. A `result` case must evaluate to the
//! expected kind and value (compared as JSON, numbers by value); an `err` case
//! must fail at the expected stage (lexing, parsing, evaluation) with a message
//! containing the expected text, in GitHub's `... Located at position N within
//! expression: ...` form for syntax errors.

use std::io::Write;
use std::path::PathBuf;

use hangar_expr::{Contexts, DefaultHost, SyntaxErrorKind, Value, parse_with_named_values};
use serde_json::Value as Json;

fn shared_dir() -> Option<PathBuf> {
    hangar_testkit::shared("conformance/expressions")
}

#[derive(Default)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

enum Outcome {
    Pass,
    Fail(String),
}

/// JSON equality as `JSON.stringify` sees it: numbers by value (`-0` is `0`),
/// object keys in order.
fn same_json(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        _ => a == b,
    }
}

fn run_case(case: &Json) -> Outcome {
    let source = case["expr"].as_str().unwrap_or_default();
    let contexts_json = case
        .get("contexts")
        .cloned()
        .unwrap_or(Json::Object(Default::default()));
    let contexts = Contexts::from_json(&contexts_json);
    let allowed = |name: &str| contexts.contains(name);
    let parsed = parse_with_named_values(source, &allowed);

    if let Some(expected) = case.get("result") {
        let kind = expected["kind"].as_str().unwrap_or_default();
        let expr = match parsed {
            Ok(expr) => expr,
            Err(e) => return Outcome::Fail(format!("syntax error: {}", e.github_message(source))),
        };
        let value: Value = match expr.eval(&contexts, &DefaultHost) {
            Ok(value) => value,
            Err(e) => return Outcome::Fail(format!("evaluation error: {}", e.message)),
        };
        let got = value.to_json();
        if value.kind().to_string() != kind || !same_json(&got, &expected["value"]) {
            return Outcome::Fail(format!(
                "expected {kind} {}, got {} {got}",
                expected["value"],
                value.kind()
            ));
        }
        return Outcome::Pass;
    }

    let Some(err) = case.get("err") else {
        return Outcome::Fail("case has neither result nor err".into());
    };
    let kind = err["kind"].as_str().unwrap_or_default();
    let text = err["value"].as_str().unwrap_or_default();
    let (got_kind, message) = match parsed {
        Err(e) => {
            let kind = match e.kind {
                SyntaxErrorKind::Lexing => "lexing",
                SyntaxErrorKind::Parsing => "parsing",
            };
            (kind, e.github_message(source))
        }
        Ok(expr) => match expr.eval(&contexts, &DefaultHost) {
            Err(e) => ("evaluation", e.message),
            Ok(v) => {
                return Outcome::Fail(format!(
                    "expected {kind} error '{text}', got value {}",
                    v.to_json()
                ));
            }
        },
    };
    if got_kind != kind || !message.contains(text) {
        return Outcome::Fail(format!(
            "expected {kind} error containing '{text}', got {got_kind} error '{message}'"
        ));
    }
    Outcome::Pass
}

#[test]
fn github_expression_corpus() {
    let Some(shared) = shared_dir() else { return };
    let dir = shared.join("conformance/expressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());

    let (mut results, mut results_passed, mut errs, mut errs_passed) = (0, 0, 0, 0);
    let mut total = Counts::default();
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let json: Json =
            serde_json::from_str(&std::fs::read_to_string(file).expect("read corpus file"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut counts = Counts::default();
        for (group, cases) in json.as_object().into_iter().flatten() {
            for case in cases.as_array().into_iter().flatten() {
                let is_result = case.get("result").is_some();
                // A panic is a failure, never an abort of the whole suite.
                let outcome = std::panic::catch_unwind(|| run_case(case))
                    .unwrap_or_else(|_| Outcome::Fail("PANIC".into()));
                let passed = matches!(outcome, Outcome::Pass);
                if is_result {
                    results += 1;
                    results_passed += usize::from(passed);
                } else {
                    errs += 1;
                    errs_passed += usize::from(passed);
                }
                match outcome {
                    Outcome::Pass => counts.passed += 1,
                    Outcome::Fail(why) => {
                        counts.failed += 1;
                        failures.push(format!(
                            "{name} [{group}] {:?}: {why}",
                            case["expr"].as_str().unwrap_or("")
                        ));
                    }
                }
            }
        }
        report.push(format!(
            "expressions/{name}: {} passed, {} failed, {} skipped",
            counts.passed, counts.failed, counts.skipped
        ));
        total.passed += counts.passed;
        total.failed += counts.failed;
        total.skipped += counts.skipped;
    }
    report.extend(failures.iter().map(|f| format!("FAIL {f}")));
    report.push(format!(
        "expressions total: {} passed, {} failed, {} skipped ({results_passed}/{results} result cases, {errs_passed}/{errs} error cases)",
        total.passed, total.failed, total.skipped
    ));
    // Straight to stderr, past the test harness's capture: the counts are the
    // point of this test even when it passes.
    let _ = writeln!(std::io::stderr(), "{}", report.join("\n"));
    assert!(
        results_passed * 100 >= results * 98,
        "only {results_passed}/{results} result cases pass (need 98%)"
    );
    assert_eq!(
        errs_passed, errs,
        "every error case must fail with the expected kind and message"
    );
}
