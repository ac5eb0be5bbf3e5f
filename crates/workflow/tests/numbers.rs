//! Every numeric field of a workflow, fed huge, negative, fractional and
//! non-numeric values: the validator and the template converter answer with
//! diagnostics or a template, never a panic. (The engine's side, where the
//! values are enforced, is pinned in the engine's failure-path tests.)

const BASE: &str = "on:
  workflow_dispatch:
    inputs:
      n: {type: number, default: {default}}
jobs:
  a:
    runs-on: ubuntu-latest
    timeout-minutes: {job_timeout}
    cancel-timeout-minutes: {cancel_timeout}
    strategy:
      max-parallel: {max_parallel}
      matrix:
        v: [{matrix}]
    steps:
      - run: echo
        timeout-minutes: {step_timeout}
";

const FIELDS: &[(&str, &str)] = &[
    ("default", "1"),
    ("job_timeout", "10"),
    ("cancel_timeout", "5"),
    ("max_parallel", "2"),
    ("matrix", "1"),
    ("step_timeout", "3"),
];

const HOSTILE: &[&str] = &[
    "1e300",
    "-1e300",
    "1e18",
    "-1",
    "0",
    "0.5",
    "two",
    "''",
    ".nan",
    ".inf",
    "-.inf",
    "99999999999999999999999",
    "1e400",
    "'1e300'",
    "0x7fffffffffffffff",
    "0o777",
    "[1]",
    "{a: 1}",
    "null",
    "true",
    "${{ 1e300 }}",
    "${{ -1 }}",
];

#[test]
fn hostile_numbers_never_panic_the_validator_or_the_converter() {
    let options = hangar_workflow::template::Options::default();
    for (field, _) in FIELDS {
        for value in HOSTILE {
            let text = FIELDS.iter().fold(BASE.to_string(), |doc, (name, good)| {
                let v = if name == field { value } else { good };
                doc.replace(&format!("{{{name}}}"), v)
            });
            let outcome = std::panic::catch_unwind(|| {
                let diags = hangar_workflow::validate::validate("ci.yml", &text);
                let _ = hangar_workflow::template::convert("ci.yml", &text, &|_| None, &options);
                diags
            });
            let Ok(diags) = outcome else {
                panic!("{field}: {value} panicked:\n{text}");
            };
            for d in diags {
                assert!(d.line >= 1 && d.column >= 1, "{field}: {value}: {d:?}");
            }
        }
    }
}
