//! Remote `uses:` fetched from a forge: real marketplace actions (the bundles in
//! `../shared/actions/`) served over `file://` and over HTTP by `git
//! http-backend`, pinned by tag and by commit id; the action cache shared by
//! concurrent fetches; `--offline`; remote reusable workflows; `$/PATH`; and the
//! bad cases (unknown action, missing ref, a refusing forge), each a clear error
//! on its step with nothing half-written left in the cache.

mod forge;

use std::path::Path;
use std::sync::Arc;

use hangar_engine::actions::{ActionCache, ActionSource, RemoteRef};
use hangar_engine::report::MemoryReporter;
use hangar_engine::{
    CancellationToken, Conclusion, Engine, Event, RunContext, RunOptions, RunSummary, Workflow,
};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

struct Ran {
    summary: RunSummary,
    events: Vec<Event>,
}

impl Ran {
    fn lines(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Log { line, .. } => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    /// `(uses, commit, cached)` of every resolution, in order.
    fn resolved(&self) -> Vec<(String, String, bool)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ActionResolved {
                    uses,
                    commit,
                    cached,
                    ..
                } => Some((uses.clone(), commit.clone(), *cached)),
                _ => None,
            })
            .collect()
    }

    /// Error annotations with the name of the step they are on.
    fn step_errors(&self) -> Vec<(String, String)> {
        let mut names = std::collections::HashMap::new();
        let mut out = Vec::new();
        for e in &self.events {
            match e {
                Event::StepStarted { step, name, .. } => {
                    names.insert(*step, name.clone());
                }
                Event::Annotation {
                    step: Some(s),
                    message,
                    ..
                } => out.push((names.get(s).cloned().unwrap_or_default(), message.clone())),
                _ => {}
            }
        }
        out
    }
}

fn run(root: &Path, data: &Path, source: ActionSource, workflow: &str) -> Ran {
    write(root, ".github/workflows/w.yml", workflow);
    let wf = Arc::new(Workflow::load(&root.join(".github/workflows/w.yml")).unwrap());
    let mut run = RunContext::new(root, "push", None);
    run.data_dir = data.to_path_buf();
    let reporter = Arc::new(MemoryReporter::default());
    let mut engine = Engine::new();
    engine.set_action_source(source);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = rt
        .block_on(engine.run_workflows(
            Arc::new(run),
            vec![wf],
            RunOptions::default(),
            reporter.clone(),
            CancellationToken::new(),
        ))
        .unwrap();
    Ran {
        summary,
        events: reporter.take(),
    }
}

fn has_node() -> bool {
    hangar_engine::shell::which("node", None).is_some()
}

/// Nothing but finished commit trees, ref records and lock files.
fn assert_nothing_half_written(data: &Path) {
    let mut stack = vec![data.join("actions")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".tmp-"),
                "left behind: {}",
                e.path().display()
            );
            if e.path().is_dir() && name.len() != 40 {
                stack.push(e.path());
            }
        }
    }
}

fn commit_dirs(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![data.join("actions")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.push(name);
                } else {
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

const SETUP_NODE: &str = "on: push\njobs:\n  a:\n    steps:\n      - name: by tag\n        uses: actions/setup-node@v4\n      - name: by commit\n        uses: actions/setup-node@COMMIT\n      - name: path in a repository\n        uses: acme/tools/greet@v1\n        with: {who: forge}\n";

fn forge_with_setup_node(forge: &Path, bundles: &Path) -> (String, String) {
    forge::build(forge, bundles, &["actions/setup-node"]);
    let bare = forge.join("actions/setup-node.git");
    let v4 = forge::git(&bare, &["rev-parse", "v4^{commit}"]);
    let v7 = forge::git(&bare, &["rev-parse", "v7^{commit}"]);
    forge::repo_from_files(
        forge,
        "acme/tools",
        &[(
            "greet/action.yml",
            "inputs:\n  who: {required: true}\nruns:\n  using: composite\n  steps:\n    - run: echo \"hello ${{ inputs.who }} from $(basename $GITHUB_ACTION_PATH)\"\n      shell: bash\n",
        )],
        "v1",
    );
    (v4, v7)
}

fn fetches_pinned_by_tag_and_commit(via_http: bool) {
    let Some(bundles) = forge::bundles() else {
        eprintln!("!!! skipping: ../shared/actions is not there");
        return;
    };
    if !has_node() {
        eprintln!("!!! skipping: node is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let forge_dir = dir.path().join("forge");
    let (v4, v7) = forge_with_setup_node(&forge_dir, &bundles);
    let http;
    let url = if via_http {
        http = forge::Http::git(&forge_dir);
        http.url.clone()
    } else {
        format!("file://{}", forge_dir.display())
    };
    let source = ActionSource::new(&url, false).unwrap();
    let root = dir.path().join("repo");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    let wf = SETUP_NODE.replace("COMMIT", &v7);

    let first = run(&root, &data, source.clone(), &wf);
    assert!(first.summary.success, "{:?}", first.events);
    assert!(
        first
            .lines()
            .contains(&"hello forge from greet".to_string()),
        "{:?}",
        first.lines()
    );
    let resolved = first.resolved();
    assert_eq!(
        resolved
            .iter()
            .map(|(u, c, _)| (u.as_str(), c.as_str()))
            .take(2)
            .collect::<Vec<_>>(),
        vec![
            ("actions/setup-node@v4", v4.as_str()),
            (format!("actions/setup-node@{v7}").as_str(), v7.as_str())
        ]
    );
    assert!(
        resolved.iter().all(|(_, _, cached)| !cached),
        "{resolved:?}"
    );
    assert_eq!(commit_dirs(&data).len(), 3);
    assert_nothing_half_written(&data);

    // Warm: the same commits, from the cache.
    let second = run(&root, &data, source.clone(), &wf);
    assert!(second.summary.success, "{:?}", second.events);
    assert!(
        second.resolved().iter().all(|(_, _, cached)| *cached),
        "{:?}",
        second.resolved()
    );

    // Offline: what was resolved before runs without the forge.
    forge_dir_gone(&forge_dir);
    let third = run(&root, &data, ActionSource::new(&url, true).unwrap(), &wf);
    assert!(third.summary.success, "{:?}", third.events);

    // A tag resolved moments ago is not asked of the forge again (the forge
    // is gone: this run would fail if it were); with no window it is.
    let fresh = run(&root, &data, ActionSource::new(&url, false).unwrap(), &wf);
    assert!(fresh.summary.success, "{:?}", fresh.events);
    let mut always = ActionSource::new(&url, false).unwrap();
    always.ref_ttl = std::time::Duration::ZERO;
    let asked = run(&root, &data, always, &wf);
    assert!(!asked.summary.success);
    assert!(
        asked
            .step_errors()
            .iter()
            .any(|(s, m)| s == "by tag" && m.contains("cannot reach the action repository")),
        "{:?}",
        asked.step_errors()
    );
}

/// Removes the forge, so a run that still reached it would fail.
fn forge_dir_gone(forge_dir: &Path) {
    std::fs::remove_dir_all(forge_dir).unwrap();
}

#[test]
fn fetches_real_actions_over_file_urls() {
    fetches_pinned_by_tag_and_commit(false);
}

#[test]
fn fetches_real_actions_over_http() {
    fetches_pinned_by_tag_and_commit(true);
}

#[test]
fn offline_names_what_is_missing_and_how_to_fetch_it() {
    let Some(bundles) = forge::bundles() else {
        eprintln!("!!! skipping: ../shared/actions is not there");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let forge_dir = dir.path().join("forge");
    forge::build(&forge_dir, &bundles, &["actions/setup-python"]);
    let url = format!("file://{}", forge_dir.display());
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root).unwrap();
    let data = dir.path().join("data");
    let ran = run(
        &root,
        &data,
        ActionSource::new(&url, true).unwrap(),
        "on: push\njobs:\n  a:\n    steps:\n      - name: Set up Python\n        uses: actions/setup-python@v5\n",
    );
    assert_eq!(ran.summary.jobs[0].result, Conclusion::Failure);
    let errors = ran.step_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (step, msg) = &errors[0];
    assert_eq!(step, "Set up Python");
    assert!(
        msg.contains("`actions/setup-python@v5` is not in the action cache"),
        "{msg}"
    );
    assert!(msg.contains("run once without --offline"), "{msg}");
    assert!(commit_dirs(&data).is_empty());
}

#[test]
fn bad_references_fail_their_step_and_leave_nothing_behind() {
    let Some(bundles) = forge::bundles() else {
        eprintln!("!!! skipping: ../shared/actions is not there");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let forge_dir = dir.path().join("forge");
    forge::build(&forge_dir, &bundles, &["actions/setup-node"]);
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root).unwrap();
    let data = dir.path().join("data");
    let url = format!("file://{}", forge_dir.display());
    let wf = "on: push\njobs:\n  a:\n    steps:\n      - name: unknown action\n        uses: nobody/nothing@v1\n        continue-on-error: true\n      - name: missing ref\n        uses: actions/setup-node@v99\n        continue-on-error: true\n      - name: missing commit\n        uses: actions/setup-node@0123456789abcdef0123456789abcdef01234567\n        continue-on-error: true\n";
    let ran = run(&root, &data, ActionSource::new(&url, false).unwrap(), wf);
    let errors = ran.step_errors();
    let find = |step: &str| {
        errors
            .iter()
            .find(|(s, _)| s == step)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("no error on {step}: {errors:?}"))
    };
    let m = find("unknown action");
    assert!(
        m.contains("cannot reach the action repository") && m.contains("nobody/nothing"),
        "{m}"
    );
    let m = find("missing ref");
    assert!(m.contains("has no tag or branch `v99`"), "{m}");
    let m = find("missing commit");
    assert!(
        m.contains("cannot fetch commit 0123456789abcdef0123456789abcdef01234567"),
        "{m}"
    );
    assert!(commit_dirs(&data).is_empty(), "{:?}", commit_dirs(&data));
    assert_nothing_half_written(&data);

    // A forge that refuses (HTTP 403).
    let refusing = forge::Http::refusing();
    let ran = run(
        &root,
        &data,
        ActionSource::new(&refusing.url, false).unwrap(),
        "on: push\njobs:\n  a:\n    steps:\n      - name: refused\n        uses: actions/setup-node@v4\n",
    );
    assert_eq!(ran.summary.jobs[0].result, Conclusion::Failure);
    let errors = ran.step_errors();
    assert_eq!(errors[0].0, "refused", "{errors:?}");
    assert!(
        errors[0].1.contains("cannot reach the action repository"),
        "{errors:?}"
    );
    assert!(errors[0].1.contains("403"), "{errors:?}");
    assert_nothing_half_written(&data);
}

#[test]
fn concurrent_fetches_of_one_commit_download_it_once() {
    let Some(bundles) = forge::bundles() else {
        eprintln!("!!! skipping: ../shared/actions is not there");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let forge_dir = dir.path().join("forge");
    forge::build(&forge_dir, &bundles, &["Swatinem/rust-cache"]);
    let source = ActionSource::new(&format!("file://{}", forge_dir.display()), false).unwrap();
    let cache = ActionCache::new(&dir.path().join("data"));
    let r = RemoteRef::parse("Swatinem/rust-cache@v2").unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| cache.fetch(&source, &r)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let downloaded = results
        .iter()
        .filter(|f| !f.as_ref().unwrap().cached)
        .count();
    assert_eq!(downloaded, 1);
    let root = &results[0].as_ref().unwrap().root;
    assert!(root.join("action.yml").is_file());
    assert!(!root.join(".git").exists());
    assert_nothing_half_written(&dir.path().join("data"));
}

#[test]
fn remote_reusable_workflows_and_self_repository_uses() {
    let dir = tempfile::tempdir().unwrap();
    let forge_dir = dir.path().join("forge");
    let commit = forge::repo_from_files(
        &forge_dir,
        "acme/pipelines",
        &[(
            ".github/workflows/greet.yml",
            "on:\n  workflow_call:\n    inputs:\n      who: {type: string, required: true}\n    outputs:\n      said:\n        value: ${{ jobs.hello.outputs.said }}\njobs:\n  hello:\n    runs-on: ubuntu-latest\n    outputs:\n      said: ${{ steps.s.outputs.said }}\n    steps:\n      - id: s\n        run: echo \"said=hi ${{ inputs.who }}\" >> $GITHUB_OUTPUT\n",
        )],
        "v1",
    );
    let root = dir.path().join("repo");
    write(
        &root,
        "tools/local/action.yml",
        "runs:\n  using: composite\n  steps:\n    - run: echo self-repository action\n      shell: bash\n",
    );
    write(
        &root,
        ".github/workflows/inner.yml",
        "on: workflow_call\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo self-repository workflow\n",
    );
    let data = dir.path().join("data");
    let url = format!("file://{}", forge_dir.display());
    let ran = run(
        &root,
        &data,
        ActionSource::new(&url, false).unwrap(),
        "on: push\njobs:\n  call:\n    uses: acme/pipelines/.github/workflows/greet.yml@v1\n    with: {who: remote}\n  show:\n    needs: call\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"got ${{ needs.call.outputs.said }}\"\n      - uses: $/tools/local\n  mine:\n    uses: $/.github/workflows/inner.yml\n",
    );
    assert!(ran.summary.success, "{:?}", ran.events);
    let lines = ran.lines();
    for want in [
        "got hi remote",
        "self-repository action",
        "self-repository workflow",
    ] {
        assert!(lines.contains(&want.to_string()), "{want}: {lines:?}");
    }
    assert_eq!(
        ran.resolved()
            .iter()
            .map(|(u, c, _)| (u.as_str(), c.as_str()))
            .collect::<Vec<_>>(),
        vec![(
            "acme/pipelines/.github/workflows/greet.yml@v1",
            commit.as_str()
        )]
    );
}

const JS_ACTION: &[(&str, &str)] = &[
    (
        "action.yml",
        "inputs:\n  who:\n    default: world\n  extra words: {}\nruns:\n  using: node24\n  pre: pre.js\n  pre-if: runner.os == 'Linux'\n  main: main.js\n  post: post.js\n  post-if: success()\n",
    ),
    (
        "pre.js",
        "const fs = require('fs');\nconsole.log(`pre for ${process.env.INPUT_WHO}`);\nfs.appendFileSync(process.env.GITHUB_STATE, 'a=1\\n');\n",
    ),
    (
        "main.js",
        "const fs = require('fs');\nconst e = process.env;\nconsole.log(`main ${e.INPUT_WHO} ${e.INPUT_EXTRA_WORDS} a=${e.STATE_a} repo=${e.GITHUB_ACTION_REPOSITORY} ref=${e.GITHUB_ACTION_REF}`);\nfs.appendFileSync(e.GITHUB_STATE, 'b=2\\n');\n",
    ),
    (
        "post.js",
        "console.log(`post a=${process.env.STATE_a} b=${process.env.STATE_b}`);\n",
    ),
];

fn node_major() -> u32 {
    let out = std::process::Command::new("node")
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn javascript_actions_run_pre_main_post_as_github_runs_them() {
    if !has_node() {
        eprintln!("!!! skipping: node is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let forge_dir = dir.path().join("forge");
    forge::repo_from_files(&forge_dir, "acme/js", JS_ACTION, "v1");
    let root = dir.path().join("repo");
    for (p, text) in JS_ACTION {
        write(&root, &format!("local-js/{p}"), text);
    }
    let data = dir.path().join("data");
    let url = format!("file://{}", forge_dir.display());
    let ran = run(
        &root,
        &data,
        ActionSource::new(&url, false).unwrap(),
        "on: push\njobs:\n  a:\n    steps:\n      - run: echo first step\n      - name: remote\n        uses: acme/js@v1\n        with: {who: '${{ github.event_name }}', extra words: more}\n      - name: local\n        uses: ./local-js\n        with: {who: here}\n",
    );
    assert!(ran.summary.success, "{:?}", ran.events);
    let lines = ran.lines();
    let pos = |l: &str| {
        lines
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("{l:?} not in {lines:?}"))
    };
    // The remote action's pre runs at job start, before the first step.
    assert!(pos("pre for push") < pos("first step"));
    assert!(pos("first step") < pos("main push more a=1 repo=acme/js ref=v1"));
    // A local action's pre never runs (a warning says so); its main and
    // post still do, without the remote action's state.
    assert!(!lines.contains(&"pre for here".to_string()), "{lines:?}");
    assert!(
        lines.contains(&"main here  a=undefined repo= ref=".to_string()),
        "{lines:?}"
    );
    // Posts in reverse order, each with its own action's state.
    assert!(pos("post a=undefined b=2") < pos("post a=1 b=2"));
    let names: Vec<String> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            "Pre remote",
            "Run echo first step",
            "remote",
            "local",
            "Post local",
            "Post remote"
        ]
    );
    let warnings: Vec<String> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Annotation { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w == "`pre` execution is not supported for local action from './local-js'"),
        "{warnings:?}"
    );
    let old_node = warnings
        .iter()
        .any(|w| w.contains("declares node24 but runs with node"));
    assert_eq!(old_node, node_major() < 24, "{warnings:?}");
}

#[test]
fn setup_node_finds_a_seeded_tool_cache_with_no_network() {
    let Some(bundles) = forge::bundles() else {
        eprintln!("!!! skipping: ../shared/actions is not there");
        return;
    };
    let Some(node) = hangar_engine::shell::which("node", None) else {
        eprintln!("!!! skipping: node is not installed");
        return;
    };
    let node = node.canonicalize().unwrap();
    let prefix = node.parent().unwrap().parent().unwrap();
    let out = std::process::Command::new(&node)
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches('v')
        .to_string();
    let major = version.split('.').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let forge_dir = dir.path().join("forge");
    forge::build(&forge_dir, &bundles, &["actions/setup-node"]);
    let commit = forge::git(
        &forge_dir.join("actions/setup-node.git"),
        &["rev-parse", "v4"],
    );
    let data = dir.path().join("data");
    let cache = hangar_engine::toolcache::dir(&data);
    hangar_engine::toolcache::add(&cache, "node", &version, prefix).unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{}", forge_dir.display());
    for pin in ["v4", commit.as_str()] {
        let wf = format!(
            "on: push\njobs:\n  a:\n    steps:\n      - uses: actions/setup-node@{pin}\n        with: {{node-version: '{major}'}}\n      - run: echo \"node at $(command -v node) $(node --version)\"\n"
        );
        let ran = run(&root, &data, ActionSource::new(&url, false).unwrap(), &wf);
        assert!(ran.summary.success, "{:?}", ran.events);
        let lines = ran.lines();
        let entry = cache
            .join("node")
            .join(&version)
            .join(hangar_engine::toolcache::arch());
        assert!(
            lines.contains(&format!("Found in cache @ {}", entry.display())),
            "{lines:?}"
        );
        assert!(
            lines.contains(&format!("node at {}/bin/node v{version}", entry.display())),
            "{lines:?}"
        );
    }
}
