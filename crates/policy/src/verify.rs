//! `hangar scan policy verify`: Rego unit tests as `conftest verify` (and
//! `opa test`) run them. Every rule named `test_*` in the loaded modules,
//! including `*_test.rego` files, is a test; it passes when it evaluates to
//! `true`. `todo_test_*` rules are skipped. Data given with `--data` is
//! visible to the tests.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use regorus::Engine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStatus {
    Pass,
    /// Undefined or false; the text says which, or the error.
    Fail(String),
    Skip,
}

#[derive(Debug, Clone)]
pub struct TestResult {
    pub file: PathBuf,
    pub line: usize,
    /// `data.main.test_x`.
    pub name: String,
    pub status: TestStatus,
}

/// Runs the unit tests of the policies under `policy_dirs` whose package
/// matches one of `namespaces` (all when empty; `*` wildcards as in `scan`).
pub fn verify(
    policy_dirs: &[PathBuf],
    data: &[PathBuf],
    namespaces: &[String],
) -> Result<Vec<TestResult>> {
    use regorus::unstable::{Parser, Rule, RuleHead};
    let dirs: Vec<PathBuf> = if policy_dirs.is_empty() {
        vec![PathBuf::from("policy")]
    } else {
        policy_dirs.to_vec()
    };
    let mut engine = Engine::new();
    let mut files = 0;
    for dir in &dirs {
        if !dir.exists() {
            bail!("policy directory {} does not exist", dir.display());
        }
        for file in crate::rego_files(dir, true)? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            crate::add_policy(&mut engine, &file.display().to_string(), &text)?;
            files += 1;
        }
    }
    if files == 0 {
        bail!(
            "no policies: no .rego files in {}",
            crate::display_dirs(&dirs)
        );
    }
    engine
        .add_data(crate::load_data(data)?)
        .map_err(|e| anyhow!("data: {e}"))?;
    let globs: Vec<globset::GlobMatcher> = namespaces
        .iter()
        .map(|p| {
            globset::GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| anyhow!("--namespace {p}: {e}"))
        })
        .collect::<Result<_>>()?;
    let packages = engine.get_packages().map_err(|e| anyhow!("{e}"))?;
    let mut tests: Vec<(PathBuf, usize, String, String)> = Vec::new();
    for (package, module) in packages.iter().zip(engine.get_modules().iter()) {
        let ns = package.trim_start_matches("data.");
        if !globs.is_empty() && !globs.iter().any(|g| g.is_match(ns)) {
            continue;
        }
        let file = PathBuf::from(module.package.span.source.get_path());
        for rule in &module.policy {
            let Rule::Spec { head, span, .. } = rule.as_ref() else {
                continue;
            };
            let (RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. }) = head else {
                continue;
            };
            let Some(name) = Parser::get_path_ref_components(refr)
                .ok()
                .and_then(|c| c.first().map(|s| s.text().to_string()))
            else {
                continue;
            };
            if (name.starts_with("test_") || name.starts_with("todo_test_"))
                && !tests.iter().any(|t| t.2 == ns && t.3 == name)
            {
                tests.push((file.clone(), span.line as usize, ns.to_string(), name));
            }
        }
    }
    let mut out = Vec::new();
    for (file, line, ns, name) in tests {
        let full = format!("data.{ns}.{name}");
        let status = if name.starts_with("todo_test_") {
            TestStatus::Skip
        } else {
            match engine.eval_query(full.clone(), false) {
                Err(e) => TestStatus::Fail(format!("error: {e}")),
                Ok(results) => {
                    let value = results
                        .result
                        .first()
                        .and_then(|r| r.expressions.first())
                        .map(|e| e.value.clone());
                    match value {
                        Some(v) if v == regorus::Value::from(true) => TestStatus::Pass,
                        Some(v) => TestStatus::Fail(format!("evaluated to {v}")),
                        None => TestStatus::Fail("undefined".into()),
                    }
                }
            }
        };
        out.push(TestResult {
            file,
            line,
            name: full,
            status,
        });
    }
    Ok(out)
}
