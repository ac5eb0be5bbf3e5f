//! GitHub's cache service on `hangar serve`: a job on one agent saves with the
//! real `@actions/cache` client (from npm, what `actions/cache` and
//! `Swatinem/rust-cache` are built on), a job on another agent restores it,
//! and a second run hits the same entry: caches are the server's, shared by
//! every agent.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;

const SAVE_JS: &str = r#"
const cache = require('@actions/cache');
const fs = require('fs');
(async () => {
  fs.mkdirSync('dep', { recursive: true });
  fs.writeFileSync('dep/x.txt', `built on ${process.env.AGENT_NAME}`);
  const hit = await cache.restoreCache(['dep'], 'shared-key');
  if (hit) { console.log(`already cached: ${hit}`); return; }
  const id = await cache.saveCache(['dep'], 'shared-key');
  if (id <= 0) { console.error('not saved'); process.exit(1); }
  console.log(`saved entry ${id}`);
})().catch(e => { console.error(`save failed: ${e.message}`); process.exit(1); });
"#;

const RESTORE_JS: &str = r#"
const cache = require('@actions/cache');
const fs = require('fs');
(async () => {
  const key = await cache.restoreCache(['dep'], 'shared-key-missing', ['shared-']);
  if (!key) { console.error('cache miss'); process.exit(1); }
  console.log(`restored ${key}: ${fs.readFileSync('dep/x.txt', 'utf8')}`);
})().catch(e => { console.error(`restore failed: ${e.message}`); process.exit(1); });
"#;

/// `@actions/cache` installed in `dir`, or `None` (skipped loudly) when npm
/// or the registry is not reachable.
fn npm_cache_client(dir: &Path) -> Option<std::path::PathBuf> {
    let out = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "@actions/cache@4",
        ])
        .current_dir(dir)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(dir.join("node_modules")),
        Ok(o) => {
            eprintln!(
                "!!! SKIPPING: npm install @actions/cache failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "npm is required in CI: {e}"
            );
            eprintln!("!!! SKIPPING: npm not found: {e}");
            None
        }
    }
}

#[tokio::test]
async fn a_cache_saved_on_one_agent_is_restored_on_another() {
    let npm_dir = tempfile::tempdir().unwrap();
    let Some(modules) = npm_cache_client(npm_dir.path()) else {
        return;
    };
    let wf = format!(
        "on: push\nenv:\n  NODE_PATH: {modules}\njobs:\n  save:\n    runs-on: one\n    env: {{AGENT_NAME: one}}\n    steps:\n      - run: node save.js\n  restore:\n    needs: save\n    runs-on: two\n    steps:\n      - run: node restore.js\n",
        modules = modules.display()
    );
    let (repo, sha) = repo_with(&[
        (".github/workflows/ci.yml", wf.as_str()),
        ("save.js", SAVE_JS),
        ("restore.js", RESTORE_JS),
    ]);
    let s = start_with(|c| c.embedded_labels = vec!["one".into()]).await;
    let agent = hangar_agent::AgentConfig {
        server: s.server.url(),
        token: s.server.app.internal_token.clone(),
        id: "agent-two".into(),
        name: "two".into(),
        labels: vec!["two".into()],
        capacity: 1,
        work_dir: s.data.path().join("two-work"),
        poll_wait: Duration::from_secs(5),
    };
    let stop = hangar_agent::CancellationToken::new();
    let task = tokio::spawn(hangar_agent::run_agent(
        agent,
        Arc::new(hangar_agent::EngineRunner::default()),
        stop.clone(),
    ));
    s.register("acme/app", repo.path()).await;

    let log_of = async |r: &serde_json::Value, key: &str| {
        let id = r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .unwrap()["id"]
            .clone();
        s.get_text(&format!("/api/v1/jobs/{id}/logs/raw")).await
    };
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let r = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(90))
        .await;
    let (save, restore) = (log_of(&r, "save").await, log_of(&r, "restore").await);
    assert_eq!(r["run"]["conclusion"], "success", "{save}\n{restore}");
    assert!(save.contains("saved entry"), "{save}");
    assert!(
        restore.contains("restored shared-key: built on one"),
        "{restore}"
    );
    assert!(
        !save.contains("eyJ") && !restore.contains("eyJ"),
        "token leaked"
    );

    // The next run finds the entry from the start: it is the server's.
    let sha2 = commit(repo.path(), &[("README", "again")]).unwrap();
    let (_, v) = s.push("acme/app", repo.path(), &sha2, "d2").await;
    let r = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(90))
        .await;
    let save = log_of(&r, "save").await;
    assert_eq!(r["run"]["conclusion"], "success", "{save}");
    assert!(save.contains("already cached: shared-key"), "{save}");
    stop.cancel();
    let _ = task.await;
}

fn shared() -> Option<std::path::PathBuf> {
    hangar_testkit::shared("actions/actions/cache.bundle")
}

/// The real `actions/cache@v4`, as both agents' engines run it.
fn engine_with_real_cache(action: &Path) -> Arc<dyn hangar_agent::JobRunner> {
    let mut engine = hangar_engine::Engine::new();
    engine.unregister("actions/cache");
    engine
        .add_action_dir(&format!("actions/cache@v4={}", action.display()))
        .unwrap();
    Arc::new(hangar_agent::EngineRunner::new(engine))
}

#[tokio::test]
async fn the_real_actions_cache_saves_on_one_agent_and_hits_on_another() {
    let Some(shared) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let action = tmp.path().join("cache");
    let bundle = shared.join("actions/actions/cache.bundle");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--end-of-options",
            bundle.to_str().unwrap(),
            action.to_str().unwrap(),
        ],
    );
    git(
        &action,
        &["-c", "advice.detachedHead=false", "checkout", "-q", "v4"],
    );
    let wf = "on: push\njobs:\n  save:\n    runs-on: one\n    steps:\n      - uses: actions/cache@v4\n        id: c\n        with: {path: deps, key: 'deps-${{ hashFiles(''lock.txt'') }}'}\n      - run: echo \"hit=${{ steps.c.outputs.cache-hit }};\"\n      - run: mkdir -p deps && echo built-on-one > deps/out.txt\n  restore:\n    needs: save\n    runs-on: two\n    steps:\n      - uses: actions/cache@v4\n        id: c\n        with: {path: deps, key: 'deps-${{ hashFiles(''lock.txt'') }}'}\n      - run: echo \"hit=${{ steps.c.outputs.cache-hit }};\"; cat deps/out.txt\n";
    let (repo, sha) = repo_with(&[(".github/workflows/ci.yml", wf), ("lock.txt", "v1\n")]);
    let runner = engine_with_real_cache(&action);
    let r2 = runner.clone();
    let s = start_with(move |c| {
        c.embedded_labels = vec!["one".into()];
        c.runner = r2;
    })
    .await;
    let agent = hangar_agent::AgentConfig {
        server: s.server.url(),
        token: s.server.app.internal_token.clone(),
        id: "agent-two".into(),
        name: "two".into(),
        labels: vec!["two".into()],
        capacity: 1,
        work_dir: s.data.path().join("two-work"),
        poll_wait: Duration::from_secs(5),
    };
    let stop = hangar_agent::CancellationToken::new();
    let task = tokio::spawn(hangar_agent::run_agent(agent, runner, stop.clone()));
    s.register("acme/app", repo.path()).await;
    let log_of = async |r: &serde_json::Value, key: &str| {
        let id = r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["key"] == key)
            .unwrap()["id"]
            .clone();
        s.get_text(&format!("/api/v1/jobs/{id}/logs/raw")).await
    };
    let (_, v) = s.push("acme/app", repo.path(), &sha, "d1").await;
    let r = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(90))
        .await;
    let (save, restore) = (log_of(&r, "save").await, log_of(&r, "restore").await);
    assert_eq!(r["run"]["conclusion"], "success", "{save}\n{restore}");
    assert!(save.contains("Cache saved with key: deps-"), "{save}");
    assert!(restore.contains("hit=true;"), "{restore}");
    assert!(restore.contains("built-on-one"), "{restore}");
    // The next run hits on the first agent too: the entry is the server's.
    let sha2 = commit(repo.path(), &[("README", "again")]).unwrap();
    let (_, v) = s.push("acme/app", repo.path(), &sha2, "d2").await;
    let r = s
        .wait_run(v["runs"][0].as_i64().unwrap(), Duration::from_secs(90))
        .await;
    let save = log_of(&r, "save").await;
    assert_eq!(r["run"]["conclusion"], "success", "{save}");
    assert!(save.contains("hit=true;"), "{save}");
    stop.cancel();
    let _ = task.await;
}
