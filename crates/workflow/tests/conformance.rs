//! GitHub's workflow-parser corpus (actions/languageservices) and nektos/act's
//! workflows, read from `../shared/conformance/` at test time.
//!
//! Comparison: a case whose expected output has `errors` must get at least one
//! error from `hangar validate` (and we count how often our first error is on the
//! expected line); a case with a converted template must validate clean. Cases
//! with callee documents (reusable workflows) give the validator those
//! documents as the callees their `uses:` names. A case with a converted
//! template is also compared, structure for structure, with what
//! `hangar_workflow::template` converts the workflow to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn shared() -> Option<PathBuf> {
    hangar_testkit::shared("conformance/workflow-parser")
}

#[derive(Default, Debug)]
struct Counts {
    error_found: usize,
    error_line_matched: usize,
    error_missed: usize,
    clean_ok: usize,
    false_positive: usize,
    /// Error cases listed in `EXPECTED_DIFFERENCES` that validate clean.
    expected_difference: usize,
}

/// The parser limits a case's header sets (`max-depth: 5`), over GitHub's defaults.
fn header_limits(header: &str) -> hangar_workflow::Limits {
    let mut limits = hangar_workflow::Limits::default();
    for line in header.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let Ok(n) = value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .parse::<usize>()
        else {
            continue;
        };
        match key.trim() {
            "max-depth" => limits.max_depth = n,
            "max-file-size" => limits.max_file_size = n,
            "max-result-size" => limits.max_result_size = n,
            "max-job-limit" => limits.max_jobs = Some(n),
            "max-nested-reusable-workflows-depth" => limits.max_nested_depth = n,
            _ => {}
        }
    }
    limits
}

/// Error cases where GitHub's current, documented behaviour differs from this
/// snapshot of the corpus, or the corpus contradicts itself: hangar follows
/// GitHub, and these are counted apart.
const EXPECTED_DIFFERENCES: &[(&str, &str)] = &[
    (
        "errors-anchor-tag.yml",
        "GitHub accepts YAML anchors and aliases since 18 September 2025",
    ),
    (
        "errors-max-result-size.yml",
        "max-result-size.yml accepts the same workflow at a lower limit (1128 < 1141); GitHub's reader accounts 1028 bytes for it",
    ),
];

#[test]
fn workflow_parser_corpus() {
    let Some(shared) = shared() else { return };
    let mut by_prefix: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    let mut fps = Vec::new();
    let mut misses = Vec::new();
    let mut elsewhere = Vec::new();
    let mut error_cases = Vec::new();
    let mut model_refused = Vec::new();
    let mut warnings = Vec::new();
    for case in reader_cases(&shared) {
        let ReaderCase {
            name,
            header,
            workflow,
            callees,
            expected,
            ..
        } = case;
        let c = by_prefix.entry(prefix_of(&name)).or_default();
        // The case's header may set the repository's default token permissions.
        let policy = if header.contains("permissions-policy: Write") {
            hangar_workflow::PermissionsPolicy::Write
        } else {
            hangar_workflow::PermissionsPolicy::LimitedRead
        };
        let options = hangar_workflow::Options {
            policy,
            limits: header_limits(&header),
        };
        let all = hangar_workflow::validate_with_options(
            &format!(".github/workflows/{name}"),
            &workflow,
            &|uses: &str| callees.get(uses).cloned(),
            &options,
        );
        // Warnings are what GitHub accepts: they neither reject a valid case
        // nor count as catching an invalid one.
        let (diags, warned): (Vec<_>, Vec<_>) = all.into_iter().partition(|d| d.is_error());
        if !warned.is_empty() {
            warnings.push(format!("{name}: {}", warned[0]));
        }
        if let Some(errors) = expected.get("errors") {
            error_cases.push(name.clone());
            if diags.is_empty() && EXPECTED_DIFFERENCES.iter().any(|(n, _)| *n == name) {
                c.expected_difference += 1;
                total.expected_difference += 1;
            } else if diags.is_empty() {
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
                {
                    if diags[0].line == line {
                        c.error_line_matched += 1;
                        total.error_line_matched += 1;
                    } else {
                        elsewhere.push(format!("{name}: expected line {line}, got {}", diags[0]));
                    }
                }
            }
        } else if diags.is_empty() {
            c.clean_ok += 1;
            total.clean_ok += 1;
            // The typed model is never stricter than the validator.
            if let Err(e) = hangar_workflow::model::Workflow::parse(&workflow) {
                model_refused.push(format!("{name}: {}", e[0]));
            }
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
    eprintln!("first error on another line:\n  {}", elsewhere.join("\n  "));
    eprintln!("warned ({}):\n  {}", warnings.len(), warnings.join("\n  "));
    for (case, why) in EXPECTED_DIFFERENCES {
        assert!(
            error_cases.iter().any(|n| n == case),
            "expected difference `{case}` ({why}) is not an error case of the corpus"
        );
    }
    assert!(
        model_refused.is_empty(),
        "valid workflows the model cannot read:\n  {}",
        model_refused.join("\n  ")
    );
    // Ratchet: raise these as the validator learns more of GitHub's rules.
    assert!(
        total.clean_ok >= 106,
        "fewer valid workflows accepted: {total:?}"
    );
    assert!(
        total.false_positive <= 2,
        "valid workflows rejected: {total:?}"
    );
    assert!(
        total.error_found >= 85,
        "invalid workflows caught: {total:?}"
    );
    assert!(
        total.error_line_matched >= 72,
        "first errors on GitHub's line: {total:?}"
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
                let mut diags = hangar_workflow::validate(&p.display().to_string(), &text);
                for d in &diags {
                    assert!(d.line >= 1 && d.column >= 1);
                }
                diags.retain(|d| d.is_error());
                // The typed model reads what the validator accepts, and
                // positions what it refuses.
                match hangar_workflow::model::Workflow::parse(&text) {
                    Ok(_) => {}
                    Err(e) if diags.is_empty() => {
                        panic!("{}: valid, but the model refuses it: {}", p.display(), e[0])
                    }
                    Err(e) => assert!(e.iter().all(|e| e.pos.line >= 1 && e.pos.column >= 1)),
                }
                n += 1;
            }
        }
    }
    eprintln!("{n} act workflows validated without a panic");
    assert!(n > 100);
}

/// One reader case: its options, workflow, called workflows and expected result.
struct ReaderCase {
    name: String,
    /// The options document as written (limits are read from its lines).
    header: String,
    options: hangar_workflow::yaml::Node,
    workflow: String,
    callees: BTreeMap<String, String>,
    expected: serde_json::Value,
}

fn reader_cases(shared: &Path) -> Vec<ReaderCase> {
    let dir = shared.join("conformance/workflow-parser/reader");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let docs: Vec<&str> = text.split("\n---\n").collect();
            assert!(docs.len() >= 3, "{name}: fewer than three documents");
            // Upstream reads callee pairs only for cases named `reusable`.
            let callees = if name.contains("reusable") {
                docs[2..docs.len() - 1]
                    .chunks(2)
                    .filter(|pair| pair.len() == 2)
                    .map(|pair| (pair[0].trim().to_string(), pair[1].to_string()))
                    .collect()
            } else {
                BTreeMap::new()
            };
            ReaderCase {
                header: docs[0].to_string(),
                options: hangar_workflow::yaml::parse(docs[0])
                    .unwrap_or_else(|e| panic!("{name}: options: {e:?}")),
                workflow: docs[1].to_string(),
                callees,
                expected: serde_json::from_str(docs[docs.len() - 1].trim())
                    .unwrap_or_else(|e| panic!("{name}: expected JSON: {e}")),
                name,
            }
        })
        .collect()
}

fn prefix_of(name: &str) -> String {
    name.split('-')
        .take(if name.starts_with("errors-") { 2 } else { 1 })
        .collect::<Vec<_>>()
        .join("-")
}

/// The first place two JSON values differ, as a path (`jobs[0].steps[1].id`).
fn first_difference(path: &str, ours: &serde_json::Value, theirs: &serde_json::Value) -> String {
    use serde_json::Value;
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, bv) in b {
                match a.get(k) {
                    Some(av) if av != bv => {
                        return first_difference(&format!("{path}.{k}"), av, bv);
                    }
                    None => return format!("{path}.{k}: missing (expected {})", short(bv)),
                    _ => {}
                }
            }
            match a.keys().find(|k| !b.contains_key(*k)) {
                Some(k) => format!("{path}.{k}: unexpected {}", short(&a[k])),
                None => format!("{path}: equal"),
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                if av != bv {
                    return first_difference(&format!("{path}[{i}]"), av, bv);
                }
            }
            format!("{path}: {} items, expected {}", a.len(), b.len())
        }
        _ => format!("{path}: {} (expected {})", short(ours), short(theirs)),
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[derive(Default, Debug)]
struct StructureCounts {
    matched: usize,
    differs: usize,
    not_expressible: usize,
}

/// Why a case's expected template is outside what hangar models, if it is.
fn not_expressible(case: &ReaderCase) -> Option<&'static str> {
    if case.options.get("experimental-features").is_some() {
        return Some(
            "assumes an experimental parser feature (background steps) hangar does not run",
        );
    }
    if case.options.get("is-partial-rerun").is_some() {
        return Some("partial-rerun file-table ordering is a server-side rerun detail");
    }
    None
}

/// Compares our converted template with GitHub's for every reader case
/// that expects one, after upstream's normalisation (xlang.test.ts): `events`
/// is only kept for TypeScript-only cases.
#[test]
fn workflow_parser_corpus_structure() {
    let Some(shared) = shared() else { return };
    let mut by_prefix: BTreeMap<String, StructureCounts> = BTreeMap::new();
    let mut total = StructureCounts::default();
    let mut differs = Vec::new();
    let mut skipped = Vec::new();
    for case in reader_cases(&shared) {
        let mut expected = case.expected.clone();
        if expected.get("errors").is_some() {
            continue;
        }
        let skip: Vec<String> = case
            .options
            .get("skip")
            .map(|s| {
                s.items()
                    .iter()
                    .filter_map(|i| i.as_str())
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        let typescript_only = skip.iter().any(|s| s == "go") && skip.iter().any(|s| s == "c#");
        if !typescript_only && let Some(o) = expected.as_object_mut() {
            o.remove("events");
        }
        let c = by_prefix.entry(prefix_of(&case.name)).or_default();
        if let Some(reason) = not_expressible(&case) {
            c.not_expressible += 1;
            total.not_expressible += 1;
            skipped.push(format!("{}: {reason}", case.name));
            continue;
        }
        let flag = |key: &str| {
            matches!(
                case.options.get(key).map(|n| &n.kind),
                Some(hangar_workflow::yaml::Kind::Bool(true))
            )
        };
        let opts = hangar_workflow::template::Options {
            include_source: flag("include-source"),
            skip_reusable_workflows: flag("skip-reusable-workflows"),
            max_nested_depth: match case
                .options
                .get("max-nested-reusable-workflows-depth")
                .map(|n| &n.kind)
            {
                Some(hangar_workflow::yaml::Kind::Number(n)) => *n as usize,
                _ => 4,
            },
        };
        let ours = hangar_workflow::template::convert(
            &format!(".github/workflows/{}", case.name),
            &case.workflow,
            &|uses: &str| case.callees.get(uses).cloned(),
            &opts,
        )
        .map(|mut ours| {
            // Upstream compares `events` only for TypeScript-only cases; the
            // TypeScript parser has no `input-types` (the runner's parsers do).
            if let Some(o) = ours.as_object_mut() {
                o.remove(if typescript_only {
                    "input-types"
                } else {
                    "events"
                });
            }
            ours
        });
        match ours {
            Ok(ours) if ours == expected => {
                c.matched += 1;
                total.matched += 1;
            }
            Ok(ours) => {
                c.differs += 1;
                total.differs += 1;
                differs.push(format!(
                    "{}: {}",
                    case.name,
                    first_difference("", &ours, &expected)
                ));
            }
            Err(e) => {
                c.differs += 1;
                total.differs += 1;
                differs.push(format!("{}: conversion failed: {e}", case.name));
            }
        }
    }
    for (p, c) in &by_prefix {
        eprintln!("{p:28} {c:?}");
    }
    eprintln!("TOTAL {total:?}");
    eprintln!("structure differs:\n  {}", differs.join("\n  "));
    eprintln!("not expressible:\n  {}", skipped.join("\n  "));
    // Ratchet: raise as the converter learns more of GitHub's rules.
    assert!(total.matched >= 106, "fewer templates matched: {total:?}");
    assert!(
        total.matched + total.differs + total.not_expressible == 108,
        "every template case is counted once: {total:?}"
    );
}
