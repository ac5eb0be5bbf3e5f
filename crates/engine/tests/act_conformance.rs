//! nektos/act's runner cases (read from `../shared/conformance/`, never copied
//! here): every case of class a/b that needs neither Docker nor the network is
//! run on the host, from a temporary copy of act's test workdir, and must end
//! with act's expected outcome (pass / fail). Static cases (act's planner and
//! dry-run tables) load and plan the workflows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hangar_engine::report::NullReporter;
use hangar_engine::{CancellationToken, Engine, RunContext, RunOptions};
use serde_json::Value;

/// Runnable cases that must end with act's outcome; raise as the engine improves.
const MIN_PASSED: usize = 61;

fn shared() -> Option<PathBuf> {
    hangar_testkit::shared("conformance/act-cases.json")
}

/// Values of files act's tests read that were not copied (see MANIFEST §1).
fn extra_inputs(case: &Value, run: &mut RunContext, dir: &Path) {
    let wp = case["workflow_path"].as_str().unwrap_or("");
    if let Some(Value::Object(s)) = case.get("secrets") {
        for (k, v) in s {
            run.secrets
                .insert(k.clone(), v.as_str().unwrap_or("").to_string());
        }
    }
    if let Some(s) = case["secrets"].as_str()
        && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(s)
    {
        for (k, v) in m {
            run.secrets.insert(k, v.as_str().unwrap_or("").to_string());
        }
    }
    if wp == "secrets" {
        for (k, v) in [
            ("MY_SECRET", "top-secret"),
            ("MULTILINE_SECRET", "foo\nbar\nbaz"),
            ("JSON_SECRET", "{\"foo\": \"bar\"}"),
        ] {
            run.secrets.insert(k.into(), v.into());
        }
        run.env.insert("HELLO".into(), "WORLD".into());
        run.env
            .insert("MULTILINE_ENV".into(), "foo\nbar\nbaz".into());
    }
    if wp == "input-from-cli" {
        run.inputs
            .insert("SOME_INPUT".into(), Value::String("input".into()));
        if let Some(o) = run.event.as_object_mut() {
            o.insert("inputs".into(), serde_json::json!({"SOME_INPUT": "input"}));
        }
    }
    let actism = case["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "ACTISM"));
    if actism {
        // act's own defaults, supplied by the harness (not by the engine).
        run.actor = "nektos/act".into();
        run.repository = "nektos/act".into();
        run.env.insert("ACT".into(), "true".into());
    }
    if wp == "workdir" {
        let _ = std::fs::write(dir.join("workdir/canary"), "");
    }
}

/// With `ACT_CASE=<workflow_path>`, events are printed (debugging one case).
struct Stderr;

impl hangar_engine::Reporter for Stderr {
    fn event(&self, event: hangar_engine::Event) {
        eprintln!("{}", serde_json::to_string(&event).unwrap_or_default());
    }
}

fn reporter() -> Arc<dyn hangar_engine::Reporter> {
    if std::env::var_os("ACT_CASE").is_some() {
        Arc::new(Stderr)
    } else {
        Arc::new(NullReporter)
    }
}

fn static_case(root: &Path, case: &Value) -> bool {
    let wp = case["workflow_path"].as_str().unwrap_or("");
    let (wp, recursive) = match wp.strip_suffix(" (recursive)") {
        Some(p) => (p, true),
        None => (wp.strip_suffix(" (no recurse)").unwrap_or(wp), false),
    };
    let path = root.join(wp);
    let mut files = hangar_engine::plan::workflow_files(&path).unwrap_or_default();
    if recursive {
        for e in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                files.extend(hangar_engine::plan::workflow_files(&e.path()).unwrap_or_default());
            }
        }
    }
    let event = case["event"].as_str().unwrap_or("push");
    let mut ok = !files.is_empty();
    for f in files {
        match hangar_engine::Workflow::load(&f) {
            Ok(wf) => {
                let triggered =
                    event == "-" || event == "all" || wf.events().iter().any(|e| e == event);
                if triggered && hangar_engine::plan::stages(&wf, None).is_err() {
                    ok = false;
                }
            }
            Err(_) => ok = false,
        }
    }
    ok
}

fn run_case(root: &Path, case: &Value) -> Result<bool, String> {
    let wp = case["workflow_path"].as_str().unwrap_or("");
    let event = case["event"].as_str().unwrap_or("push");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    hangar_testkit::copy_dir(root, tmp.path());
    let ws = tmp.path();
    let path = ws.join(wp);
    let event_json = std::fs::read_to_string(path.join("event.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut run = RunContext::new(ws, event, event_json);
    run.data_dir = ws.join(".hangar-data");
    extra_inputs(case, &mut run, ws);
    let (wfs, errors) = hangar_engine::plan::load_workflows(&path)?;
    if !errors.is_empty() {
        return Ok(false);
    }
    let selected = hangar_engine::plan::for_event(&wfs, Some(event));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::new();
    let opts = RunOptions {
        parallel: 4,
        ..RunOptions::default()
    };
    let summary = rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(120),
            engine.run_workflows(
                Arc::new(run),
                selected,
                opts,
                reporter(),
                CancellationToken::new(),
            ),
        )
        .await
    });
    match summary {
        Err(_) => Err("timed out".into()),
        Ok(Err(_plan_error)) => Ok(false),
        Ok(Ok(s)) => Ok(s.success),
    }
}

#[test]
fn act_runner_cases() {
    let Some(shared) = shared() else { return };
    let conf = shared.join("conformance");
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(conf.join("act-cases.json")).unwrap())
            .unwrap();
    let only = std::env::var("ACT_CASE").ok();
    let mut seen = BTreeSet::new();
    let (mut ran, mut passed, mut failed, mut skipped) = (0, 0, 0, 0);
    let (mut actism_ran, mut actism_passed) = (0, 0);
    let mut failures = Vec::new();
    for case in cases["cases"].as_array().unwrap() {
        let cls = case["cls"].as_str().unwrap_or("c");
        if cls == "c" {
            continue;
        }
        let test = case["test"].as_str().unwrap_or("");
        let wp = case["workflow_path"].as_str().unwrap_or("");
        let event = case["event"].as_str().unwrap_or("");
        let workdir = case["workdir"].as_str().unwrap_or("");
        let is_static =
            test.contains("(dry-run)") || test.contains("(planner)") || test.contains("(model)");
        if !seen.insert((
            workdir.to_string(),
            wp.to_string(),
            event.to_string(),
            is_static,
        )) {
            continue;
        }
        if only.as_deref().is_some_and(|o| o != wp) {
            continue;
        }
        let flags: Vec<&str> = case["flags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        let label = format!("{wp}@{event}");
        if let Some(reason) = [
            ("JS", "its JavaScript files were not copied into the corpus"),
            ("PWSH", "needs PowerShell"),
            ("WINDOWS", "Windows host only"),
            ("NET", "needs the network"),
        ]
        .iter()
        .find(|(f, _)| flags.contains(f))
        .map(|(_, r)| *r)
        {
            eprintln!("skip {label}: {reason}");
            skipped += 1;
            continue;
        }
        let expect_pass = case["expect"].as_str().unwrap_or("").starts_with("pass");
        let root = conf.join("act-testdata").join(workdir);
        let outcome = if is_static {
            Ok(static_case(&root, case))
        } else {
            run_case(&root, case)
        };
        let actism = flags.contains(&"ACTISM");
        let good = matches!(outcome, Ok(p) if p == expect_pass);
        eprintln!(
            "{} {label}{}: expected {}, got {:?}",
            if good { "ok  " } else { "FAIL" },
            if actism { " [ACTISM]" } else { "" },
            if expect_pass { "pass" } else { "fail" },
            outcome.as_ref().map(|p| if *p { "pass" } else { "fail" })
        );
        if actism {
            actism_ran += 1;
            actism_passed += good as usize;
            continue;
        }
        ran += 1;
        if good {
            passed += 1;
        } else {
            failed += 1;
            failures.push(label);
        }
    }
    eprintln!(
        "act conformance: ran {ran}, passed {passed}, failed {failed}, skipped {skipped} (with reason above); ACTISM (act-specific defaults) ran {actism_ran}, matched act {actism_passed}"
    );
    if !failures.is_empty() {
        eprintln!("not matching act: {}", failures.join(", "));
    }
    if only.is_none() {
        assert!(
            passed >= MIN_PASSED,
            "only {passed} act cases matched (ratchet {MIN_PASSED})"
        );
    }
}
