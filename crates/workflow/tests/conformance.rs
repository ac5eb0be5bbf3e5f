//! GitHub's workflow-parser corpus (actions/languageservices) and nektos/act's
//! workflows, read from `../shared/conformance/` at test time.
//!
//! Comparison: a case whose expected output has `errors` must get at least one
//! error from `hangar validate` (and we count how often our first error is on the
//! expected line); a case with a converted template must validate clean. Cases
//! with callee documents (reusable workflows) give the validator those
//! documents as the callees their `uses:` names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("HANGAR_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if p.join("conformance").is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "../shared/conformance is missing in CI"
    );
    eprintln!("SKIPPED: ../shared/conformance not found (set HANGAR_SHARED)");
    None
}

#[derive(Default, Debug)]
struct Counts {
    error_found: usize,
    error_line_matched: usize,
    error_missed: usize,
    clean_ok: usize,
    false_positive: usize,
    skipped: usize,
}

#[test]
fn workflow_parser_corpus() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("conformance/workflow-parser/reader");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut by_prefix: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    let mut fps = Vec::new();
    let mut misses = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<String> = text.split("\n---\n").map(String::from).collect();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let prefix = name
            .split('-')
            .take(if name.starts_with("errors-") { 2 } else { 1 })
            .collect::<Vec<_>>()
            .join("-");
        let c = by_prefix.entry(prefix).or_default();
        // header, workflow, (callee name, callee text)*, expected result
        if docs.len() < 3 || docs.len().is_multiple_of(2) {
            c.skipped += 1;
            total.skipped += 1;
            continue;
        }
        let callees: BTreeMap<String, String> = docs[2..docs.len() - 1]
            .chunks(2)
            .map(|pair| (pair[0].trim().to_string(), pair[1].clone()))
            .collect();
        let expected: serde_json::Value = match serde_json::from_str(docs[docs.len() - 1].trim()) {
            Ok(v) => v,
            Err(_) => {
                c.skipped += 1;
                total.skipped += 1;
                continue;
            }
        };
        // The case's header may set the repository's default token permissions.
        let policy = if docs[0].contains("permissions-policy: Write") {
            hangar_workflow::PermissionsPolicy::Write
        } else {
            hangar_workflow::PermissionsPolicy::LimitedRead
        };
        let diags = hangar_workflow::validate_with_policy(
            &format!(".github/workflows/{name}"),
            &docs[1],
            &|uses: &str| callees.get(uses).cloned(),
            policy,
        );
        if let Some(errors) = expected.get("errors") {
            if diags.is_empty() {
                c.error_missed += 1;
                total.error_missed += 1;
                misses.push(name.clone());
            } else {
                c.error_found += 1;
                total.error_found += 1;
                let msg = errors[0]["Message"].as_str().unwrap_or("");
                if let Some(line) = msg
                    .split("(Line: ")
                    .nth(1)
                    .and_then(|s| s.split(',').next())
                    .and_then(|l| l.parse::<usize>().ok())
                    && diags[0].line == line
                {
                    c.error_line_matched += 1;
                    total.error_line_matched += 1;
                }
            }
        } else if diags.is_empty() {
            c.clean_ok += 1;
            total.clean_ok += 1;
        } else {
            c.false_positive += 1;
            total.false_positive += 1;
            fps.push(format!("{name}: {}", diags[0]));
        }
    }
    for (p, c) in &by_prefix {
        eprintln!("{p:28} {c:?}");
    }
    eprintln!("TOTAL {total:?}");
    eprintln!("false positives:\n  {}", fps.join("\n  "));
    eprintln!("missed errors:\n  {}", misses.join("\n  "));
    // Ratchet: raise these as the validator learns more of GitHub's rules.
    assert!(
        total.clean_ok >= 105,
        "fewer valid workflows accepted: {total:?}"
    );
    assert!(
        total.false_positive <= 3,
        "valid workflows rejected: {total:?}"
    );
    assert!(
        total.error_found >= 69,
        "invalid workflows caught: {total:?}"
    );
}

#[test]
fn every_act_workflow_validates_or_errors_with_a_position_never_panics() {
    let Some(shared) = shared() else { return };
    let mut n = 0;
    let mut stack = vec![shared.join("conformance/act-testdata")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml")
                && p.file_stem().is_none_or(|s| s != "action")
            {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for d in hangar_workflow::validate(&p.display().to_string(), &text) {
                    assert!(d.line >= 1 && d.column >= 1);
                }
                n += 1;
            }
        }
    }
    eprintln!("{n} act workflows validated without a panic");
    assert!(n > 100);
}
