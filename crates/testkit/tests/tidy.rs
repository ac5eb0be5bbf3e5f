//! The "must not" column of docs/ARCHITECTURE.md, enforced: each rule greps the
//! workspace's sources and fails naming the file and line that breaks it (as
//! rust-analyzer's tidy test does). A rule's exceptions are listed with the
//! reason they stand; a new exception needs a reason too.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.rs` file under `crates/*/src`, as (path relative to the workspace, text).
fn sources() -> Vec<(String, String)> {
    let root = workspace();
    let mut out = Vec::new();
    let mut stack = vec![root.join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Tests and benches may do what production code must not.
                let name = entry.file_name();
                if name != "tests" && name != "benches" && name != "target" {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if rel.contains("/src/") {
                    out.push((rel, std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

/// Lines of code (comments and the `#[cfg(test)]` module at a file's end left
/// out) that contain any of `needles`, in files outside `allowed` (path
/// prefixes, each with the reason it is allowed).
fn offenders(needles: &[&str], allowed: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources() {
        if allowed.iter().any(|(prefix, _)| path.starts_with(prefix)) {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("#[cfg(test)]") {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            if needles.iter().any(|needle| code.contains(needle)) {
                found.push(format!("{path}:{}: {code}", n + 1));
            }
        }
    }
    found
}

fn check(rule: &str, found: Vec<String>) {
    assert!(
        found.is_empty(),
        "{rule} (docs/ARCHITECTURE.md), broken at:\n  {}\n\
         Move the code to the crate that owns it, or add an exception with its reason.",
        found.join("\n  ")
    );
}

#[test]
fn only_the_store_holds_sql() {
    check(
        "only `store` holds SQL",
        offenders(
            &[
                "rusqlite",
                "tokio_postgres",
                "\"SELECT ",
                "INSERT INTO",
                "DELETE FROM",
                "CREATE TABLE",
            ],
            &[("crates/store/", "the store")],
        ),
    );
}

#[test]
fn only_the_workflow_crate_reads_yaml() {
    check(
        "only `workflow` reads YAML",
        offenders(
            &["saphyr", "serde_yaml", "yaml_rust"],
            &[
                ("crates/workflow/", "the binary's YAML reader"),
                (
                    "crates/project/",
                    "hangar.yml is deserialised with spans by serde-saphyr; to go behind \
                     workflow::yaml so both files agree on anchors and duplicate keys",
                ),
                (
                    "crates/release/src/config.rs",
                    "the `release:` section of hangar.yml, read as the project crate reads it",
                ),
            ],
        ),
    );
}

/// What reads a workflow's YAML: its reader, the workflow models built from
/// text, and the engine's loaders.
const WORKFLOW_READERS: &[&str] = &[
    "Workflow::parse",
    "Workflow::load",
    "Model::parse",
    "yaml::parse",
    "load_yaml",
    "hangar_workflow::",
];

/// An agent runs the job the server compiled (`hangar_engine::CompiledJob`):
/// reading the workflow again on the agent is how the two once drifted.
#[test]
fn the_agent_never_reads_a_workflow() {
    let found = offenders(WORKFLOW_READERS, &[])
        .into_iter()
        .filter(|o| o.starts_with("crates/agent/src/"))
        .collect();
    check("the agent runs compiled jobs and reads no YAML", found);
}

#[test]
fn processes_are_spawned_by_the_engine_deploy_and_wrappers_only() {
    check(
        "only `engine` (steps) and `deploy` (instances) spawn processes; git runs through `crates/git`",
        offenders(
            &["Command::new", "process::Command"],
            &[
                ("crates/engine/", "runs workflow steps"),
                (
                    "crates/deploy/",
                    "runs service instances and health commands",
                ),
                ("crates/testkit/", "test support"),
                (
                    "crates/git/",
                    "the one git wrapper (`--end-of-options` before user values)",
                ),
                (
                    "crates/release/src/files.rs",
                    "lock files follow a version bump through their own tools (cargo, npm)",
                ),
                ("crates/agent/src/artifacts.rs", "artifact archives (tar)"),
            ],
        ),
    );
}

/// Every `git` hangar spawns goes through `hangar_git::Git`, which keeps user
/// values behind `--end-of-options`. Checked over whole files, unit tests
/// included, with whitespace removed so a call split over lines is seen too.
#[test]
fn git_is_spawned_by_its_wrapper_only() {
    let allowed = [
        "crates/git/src/lib.rs",
        // Builds the tests' fixture repositories; only tests link it.
        "crates/testkit/src/lib.rs",
        // Runs `git http-backend` as the test forge's CGI; only tests link it.
        "crates/testkit/src/git_https.rs",
    ];
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(path, _)| !allowed.contains(&path.as_str()))
        .filter(|(_, text)| {
            let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            squeezed.contains("Command::new(\"git\"")
        })
        .map(|(path, _)| path)
        .collect();
    check(
        "git runs through hangar_git::Git, so user values stay behind --end-of-options",
        found,
    );
}

#[test]
fn annotations_are_written_by_findings() {
    check(
        "only `findings` writes workflow annotations",
        offenders(
            &[
                "\"::error",
                "\"::warning",
                "\"::notice",
                "::error file=",
                "::warning file=",
            ],
            &[
                ("crates/findings/", "writes every annotation"),
                (
                    "crates/coverage/src/lib.rs",
                    "uncovered added lines with endLine; to move onto findings::annotation",
                ),
                (
                    "crates/engine/src/builtin.rs",
                    "the built-in actions' output API, read back by the engine's own command parser",
                ),
            ],
        ),
    );
}

#[test]
fn no_crate_reaches_past_its_layer() {
    // (crate, dependencies it must not have): the code map's layering.
    let forbidden: &[(&str, &[&str])] = &[
        (
            "expr",
            &[
                "hangar-workflow",
                "hangar-engine",
                "hangar-server",
                "hangar-store",
            ],
        ),
        (
            "workflow",
            &["hangar-engine", "hangar-server", "hangar-store", "tokio"],
        ),
        (
            "engine",
            &["hangar-server", "hangar-store", "axum", "rusqlite"],
        ),
        ("store", &["hangar-engine", "hangar-server", "axum"]),
        ("agent", &["hangar-store", "rusqlite"]),
        (
            "findings",
            &["hangar-secrets", "hangar-policy", "hangar-advisories"],
        ),
        ("units", &["hangar-"]),
        ("status", &["hangar-"]),
        ("diag", &["hangar-"]),
    ];
    let mut found = Vec::new();
    for (krate, deps) in forbidden {
        let path = workspace().join("crates").join(krate).join("Cargo.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let normal = text.split("[dev-dependencies]").next().unwrap();
        let normal = normal.split("[[bench]]").next().unwrap();
        for (n, line) in normal.lines().enumerate() {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("");
            if !name.is_empty() && deps.iter().any(|d| name.starts_with(d)) {
                found.push(format!("crates/{krate}/Cargo.toml:{}: {line}", n + 1));
            }
        }
    }
    check("a crate depends only on the layers below it", found);
}

/// The rules must see the code they judge: a rule over no files passes anything.
#[test]
fn the_rules_see_the_sources() {
    let files = sources();
    assert!(files.len() > 100, "only {} source files found", files.len());
    assert!(files.iter().any(|(p, _)| p == "crates/store/src/sqlite.rs"));
    assert!(
        files
            .iter()
            .any(|(p, _)| p == "crates/store/src/postgres.rs")
    );
    assert!(!offenders(&["CREATE TABLE"], &[]).is_empty());
    assert!(!offenders(&["Command::new"], &[]).is_empty());
    // The server compiles jobs from the workflow it reads: the agent rule's
    // needles do find a reader.
    assert!(
        offenders(WORKFLOW_READERS, &[])
            .iter()
            .any(|o| o.starts_with("crates/server/src/agent_api.rs"))
    );
    assert!(
        files
            .iter()
            .any(|(p, t)| p == "crates/git/src/lib.rs" && t.contains("Command::new(\"git\")"))
    );
}

/// `crates/hangar` builds its tests as one binary (`autotests = false`): a test
/// file beside `tests/main.rs` that it does not list would never be compiled,
/// and its tests would pass by not existing.
#[test]
fn every_cli_test_file_is_in_the_one_binary() {
    let dir = workspace().join("crates/hangar/tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let mut missing = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".rs"))
        else {
            continue;
        };
        if stem == "main" {
            continue;
        }
        seen += 1;
        if !main.lines().any(|l| l.trim() == format!("mod {stem};")) {
            missing.push(format!("crates/hangar/tests/{stem}.rs"));
        }
    }
    assert!(seen > 10, "only {seen} test files found");
    assert!(
        missing.is_empty(),
        "not compiled: add `mod NAME;` to crates/hangar/tests/main.rs for\n  {}",
        missing.join("\n  ")
    );
}
