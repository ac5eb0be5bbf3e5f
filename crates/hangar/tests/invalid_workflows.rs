//! GitHub's "Invalid workflow file" on a real `hangar serve`: commits to a
//! watched repository holding workflow files the validator refuses (act's
//! `uses-github-noref`, a YAML syntax error, an unknown key whose name is
//! HTML, a file over GitHub's 1 MiB) each show one failed run named after
//! the file, with no jobs and the errors at their lines, while the valid
//! file of the same commit runs; headless Chromium shows the errors on the
//! run page as text, never as markup, and offers no re-run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::browser::{Cdp, chromium, serve};
use crate::common::{http_json, wait_until_watched};

const BIN: &str = env!("CARGO_BIN_EXE_hangar");

#[test]
fn invalid_workflow_files_are_failed_runs_shown_escaped_on_the_run_page() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    hangar_testkit::git(&repo, &["init", "-q", "-b", "main"]);
    hangar_testkit::commit(&repo, &[("README", "x\n")]);
    let data = tmp.path().join("data");
    let repo_arg = repo.display().to_string();
    let (_serve, url, admin) = serve(
        BIN,
        &data,
        &["--repo", &repo_arg, "--poll-ms", "100", "--sandbox", "none"],
    );
    let base = url
        .trim_end_matches('/')
        .trim_end_matches("/ui")
        .to_string();
    wait_until_watched(&base, &admin, 1);

    let hostile = "<img src=x onerror=window.__xss=1>";
    let unknown = format!(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    '{hostile}': 1\n    steps: [{{run: echo}}]\n"
    );
    let big = format!("on: push\n# {}\n", "x".repeat(1100 * 1024));
    let sha = hangar_testkit::commit(
        &repo,
        &[
            (
                ".github/workflows/ok.yml",
                "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: echo fine}]\n",
            ),
            (
                ".github/workflows/noref.yml",
                "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout\n",
            ),
            (
                ".github/workflows/syntax.yml",
                "on: push\njobs:\n  a:\n    runs-on: [ubuntu-latest\n    steps: {run: x\n",
            ),
            (".github/workflows/unknown.yml", &unknown),
            (".github/workflows/big.yml", &big),
        ],
    );

    // Five runs, all completed: ok.yml's and one per invalid file.
    let start = Instant::now();
    let runs = loop {
        let (_, v) = http_json("GET", &format!("{base}/api/v1/runs"), &admin, "");
        let runs = v.as_array().cloned().unwrap_or_default();
        if runs.len() >= 5 && runs.iter().all(|r| r["status"] == "completed") {
            break runs;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{v:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(runs.len(), 5, "{runs:#?}");
    let mut by_path = std::collections::BTreeMap::new();
    for r in &runs {
        let (code, full) = http_json(
            "GET",
            &format!("{base}/api/v1/runs/{}", r["id"]),
            &admin,
            "",
        );
        assert_eq!(code, 200);
        assert!(
            full.to_string().len() < 16 * 1024,
            "a run's errors are bounded: {} bytes",
            full.to_string().len()
        );
        assert_eq!(full["run"]["sha"], sha.as_str());
        by_path.insert(r["workflow_path"].as_str().unwrap().to_string(), full);
    }
    assert_eq!(
        by_path[".github/workflows/ok.yml"]["run"]["conclusion"],
        "success"
    );
    for (file, line) in [("noref", 6), ("syntax", 0), ("unknown", 5), ("big", 1)] {
        let path = format!(".github/workflows/{file}.yml");
        let r = &by_path[&path];
        assert_eq!(r["run"]["workflow_name"], path.as_str(), "{r:#}");
        assert_eq!(r["run"]["conclusion"], "failure", "{r:#}");
        assert_eq!(r["jobs"], json!([]), "{r:#}");
        assert_eq!(r["errors"][0]["file"], path.as_str(), "{r:#}");
        if line > 0 {
            assert_eq!(r["errors"][0]["line"], line, "{r:#}");
        }
    }
    assert!(
        by_path[".github/workflows/big.yml"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("maximum file size"),
        "{:#}",
        by_path[".github/workflows/big.yml"]
    );
    let unknown_run = by_path[".github/workflows/unknown.yml"]["run"]["id"]
        .as_i64()
        .unwrap();

    let Some(chrome) =
        chromium("invalid_workflow_files_are_failed_runs_shown_escaped_on_the_run_page")
    else {
        return;
    };
    let mut cdp = Cdp::launch(
        &chrome,
        tmp.path(),
        &format!("{url}#/runs/{unknown_run}?token={admin}"),
    );
    cdp.wait(
        "the run's errors",
        30,
        "document.querySelector('#run-errors li')",
    );
    let seen: Value = serde_json::from_str(
        cdp.eval(
            "JSON.stringify({title: document.querySelector('#run-errors h2')?.innerText || '', \
             where: document.querySelector('#run-errors .where')?.innerText || '', \
             text: document.querySelector('#run-errors').innerText, \
             markup: document.querySelectorAll('#run-errors img, #main img').length, \
             xss: window.__xss === 1, \
             rerun: [...document.querySelectorAll('button')].some((b) => b.innerText.includes('Re-run')), \
             status: document.querySelector('#run-status')?.dataset.conclusion || ''})",
        )
        .as_str()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        seen["title"], "Invalid workflow file: .github/workflows/unknown.yml#L5",
        "{seen:#}"
    );
    assert!(
        seen["where"]
            .as_str()
            .unwrap()
            .starts_with(".github/workflows/unknown.yml:5:"),
        "{seen:#}"
    );
    assert!(seen["text"].as_str().unwrap().contains(hostile), "{seen:#}");
    assert_eq!(
        seen["markup"], 0,
        "the file's text is never markup: {seen:#}"
    );
    assert_eq!(seen["xss"], false, "{seen:#}");
    assert_eq!(
        seen["rerun"], false,
        "a refused run offers no re-run: {seen:#}"
    );
    assert_eq!(seen["status"], "failure", "{seen:#}");
}
