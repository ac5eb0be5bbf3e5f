//! The cache and artifact services that `hangar run` serves its steps, used by
//! the real clients: `actions/cache@v4` from the bundles in
//! `../shared/actions/` (its own compiled code, unchanged) and
//! `@actions/artifact` from npm (what `upload-artifact@v4` and
//! `download-artifact@v4` are built on).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;

fn shared() -> Option<PathBuf> {
    hangar_testkit::shared("actions/actions/cache.bundle")
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("!!! SKIPPING: {tool} not found");
    }
    ok
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A checkout of `OWNER/REPO` at `tag` from its bundle.
fn action(shared: &Path, repo: &str, tag: &str, into: &Path) -> PathBuf {
    let dir = into.join(repo.replace('/', "-"));
    let bundle = shared.join("actions").join(format!("{repo}.bundle"));
    git(
        into,
        &[
            "clone",
            "-q",
            "--end-of-options",
            bundle.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    git(&dir, &["checkout", "-q", tag]);
    dir
}

/// A forge as a folder of bare repositories, over file://, holding the real
/// `actions/cache` (from the shared bundles): its URL.
fn cache_forge(shared: &Path, root: &Path) -> String {
    let forge = root.join("forge");
    std::fs::create_dir_all(forge.join("actions")).unwrap();
    let bundle = shared.join("actions/actions/cache.bundle");
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            "--end-of-options",
            bundle.to_str().unwrap(),
            forge.join("actions/cache.git").to_str().unwrap(),
        ],
    );
    format!("file://{}", forge.display())
}

/// A repository on `main` holding `workflow`.
fn repo(root: &Path, workflow: &str) -> PathBuf {
    let dir = root.join("repo");
    std::fs::create_dir_all(dir.join(".github/workflows")).unwrap();
    std::fs::write(dir.join(".github/workflows/w.yml"), workflow).unwrap();
    std::fs::write(dir.join("lock.txt"), "v1\n").unwrap();
    git(&dir, &["init", "-q"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "init"]);
    dir
}

fn hangar_run(dir: &Path, data: &Path, args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .arg("run")
        // In place: these tests look at what the steps restored.
        .arg("--bind")
        .args(args)
        .current_dir(dir)
        .env("HANGAR_DATA_DIR", data)
        .env_remove("ACTIONS_RUNTIME_TOKEN")
        .env_remove("ACTIONS_RESULTS_URL")
        .env_remove("ACTIONS_CACHE_URL")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

const CACHE_WORKFLOW: &str = r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/cache@v4
        id: c
        with:
          path: deps
          key: deps-${{ hashFiles('lock.txt') }}
          restore-keys: deps-
      - run: echo "hit=${{ steps.c.outputs.cache-hit }};"
      - if: steps.c.outputs.cache-hit != 'true'
        run: mkdir -p deps && echo "built from $(cat lock.txt)" > deps/out.txt
      - run: cat deps/out.txt
"#;

#[test]
fn the_real_actions_cache_saves_in_one_run_and_hits_in_the_next() {
    let Some(shared) = shared() else { return };
    if !have("node") || !have("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = action(&shared, "actions/cache", "v4", tmp.path());
    let dir = repo(tmp.path(), CACHE_WORKFLOW);
    let data = tmp.path().join("data");
    let action_dir = format!("actions/cache@v4={}", cache.display());
    let args = ["--action-dir", action_dir.as_str()];

    let (out, text) = hangar_run(&dir, &data, &args);
    assert!(out.status.success(), "{text}");
    // A miss leaves `cache-hit` unset, as on GitHub.
    assert!(text.contains("hit=;"), "{text}");
    assert!(text.contains("Cache saved with key: deps-"), "{text}");

    // The next run, with the directory gone, gets it back from the cache.
    std::fs::remove_dir_all(dir.join("deps")).unwrap();
    let (out, text) = hangar_run(&dir, &data, &args);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hit=true;"), "{text}");
    assert!(text.contains("Cache restored from key: deps-"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.join("deps/out.txt")).unwrap(),
        "built from v1\n"
    );
    // The runtime token never shows in the output.
    assert!(!text.contains("eyJ"), "{text}");

    // A changed lock file: the exact key misses, the restore key hits, and
    // the new key is saved for the run after.
    std::fs::write(dir.join("lock.txt"), "v2\n").unwrap();
    let (out, text) = hangar_run(&dir, &data, &args);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hit=false;"), "{text}");
    assert!(text.contains("Cache hit for restore-key: deps-"), "{text}");
    assert!(text.contains("Cache saved with key: deps-"), "{text}");

    // A feature branch reads the default branch's entries.
    git(&dir, &["checkout", "-q", "-b", "feature"]);
    let (out, text) = hangar_run(&dir, &data, &args);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hit=true;"), "{text}");
}

const ARTIFACT_WORKFLOW: &str = r#"on: push
jobs:
  up:
    runs-on: ubuntu-latest
    steps:
      - run: mkdir -p out/sub && echo alpha > out/a.txt && echo beta > out/sub/b.txt
      - run: node up.js
  down:
    runs-on: ubuntu-latest
    needs: up
    steps:
      - run: node down.js
      - run: cat got/a.txt got/sub/b.txt
"#;

const UP_JS: &str = r#"
const { DefaultArtifactClient } = require('@actions/artifact');
(async () => {
  const c = new DefaultArtifactClient();
  const r = await c.uploadArtifact('site', ['out/a.txt', 'out/sub/b.txt'], 'out', { retentionDays: 1 });
  console.log(`uploaded id=${r.id} size=${r.size}`);
  const t = await c.uploadArtifact('scratch', ['out/a.txt'], 'out');
  console.log(`uploaded scratch id=${t.id}`);
})().catch(e => { console.error(`upload failed: ${e.message}`); process.exit(1); });
"#;

const DOWN_JS: &str = r#"
const { DefaultArtifactClient } = require('@actions/artifact');
(async () => {
  const c = new DefaultArtifactClient();
  const { artifacts } = await c.listArtifacts();
  console.log(`listed ${artifacts.map(a => a.name).sort().join(',')}`);
  const { artifact } = await c.getArtifact('site');
  const d = await c.downloadArtifact(artifact.id, { path: 'got', expectedHash: artifact.digest });
  console.log(`downloaded digestMismatch=${d.digestMismatch}`);
  await c.deleteArtifact('scratch');
  const after = await c.listArtifacts();
  console.log(`after delete ${after.artifacts.map(a => a.name).join(',')}`);
})().catch(e => { console.error(`download failed: ${e.message}`); process.exit(1); });
"#;

#[test]
fn the_artifact_client_uploads_lists_downloads_and_deletes_through_v4() {
    if !have("node") || !have("npm") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = repo(tmp.path(), ARTIFACT_WORKFLOW);
    std::fs::write(dir.join("up.js"), UP_JS).unwrap();
    std::fs::write(dir.join("down.js"), DOWN_JS).unwrap();
    // The client library as the v4 actions bundle it (2.x); the registry must be reachable.
    let npm = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "@actions/artifact@2",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    if !npm.status.success() {
        // The registry is outside this machine: its absence skips, loudly, even in CI.
        eprintln!(
            "!!! SKIPPING: npm install @actions/artifact failed: {}",
            String::from_utf8_lossy(&npm.stderr)
        );
        return;
    }
    let keep = tmp.path().join("kept");
    let (out, text) = hangar_run(
        &dir,
        &tmp.path().join("data"),
        &["--artifacts", keep.to_str().unwrap()],
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("uploaded id="), "{text}");
    assert!(text.contains("listed scratch,site"), "{text}");
    assert!(text.contains("downloaded digestMismatch=false"), "{text}");
    assert!(text.contains("after delete site"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.join("got/sub/b.txt")).unwrap(),
        "beta\n"
    );
    // Kept after the run; the deleted one is gone.
    let zip = std::fs::read(keep.join("site.zip")).unwrap();
    assert_eq!(&zip[..2], b"PK");
    assert!(!keep.join("scratch.zip").exists());
}

const RUST_CACHE_WORKFLOW: &str = r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: Swatinem/rust-cache@v2
        id: rc
      - run: echo "rust-cache hit=${{ steps.rc.outputs.cache-hit }};"
      - run: cargo build --offline
"#;

#[test]
fn swatinem_rust_cache_saves_a_crate_build_and_restores_it() {
    let Some(shared) = shared() else { return };
    if !have("node") || !have("cargo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let action_dir = action(&shared, "Swatinem/rust-cache", "v2", tmp.path());
    let dir = repo(tmp.path(), RUST_CACHE_WORKFLOW);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    )
    .unwrap();
    // A committed lock file keeps the action's key stable between runs.
    std::fs::write(
        dir.join("Cargo.lock"),
        "version = 4\n\n[[package]]\nname = \"tiny\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        "fn main() { println!(\"tiny\"); }\n",
    )
    .unwrap();
    std::fs::write(dir.join(".gitignore"), "target\n").unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "crate"]);
    let data = tmp.path().join("data");
    let spec = format!("Swatinem/rust-cache@v2={}", action_dir.display());
    // The action caches CARGO_HOME: a fresh one, beside the toolchain in use.
    let run = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hangar"));
        c.args(["run", "--bind", "--action-dir", &spec])
            .current_dir(&dir)
            .env("HANGAR_DATA_DIR", &data)
            .env("CARGO_HOME", tmp.path().join("cargo-home"));
        if std::env::var_os("RUSTUP_HOME").is_none()
            && let Some(home) = std::env::var_os("HOME")
            && Path::new(&home).join(".rustup").is_dir()
        {
            c.env("RUSTUP_HOME", Path::new(&home).join(".rustup"));
        }
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, text)
    };
    let (out, text) = run();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("rust-cache hit=false;"), "{text}");
    assert!(text.contains("Saving cache"), "{text}");
    std::fs::remove_dir_all(dir.join("target")).unwrap();
    let (out, text) = run();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("full match: true"), "{text}");
    assert!(text.contains("rust-cache hit=true;"), "{text}");
}

#[test]
fn the_real_actions_cache_speaks_the_legacy_protocol_when_v2_is_off() {
    let Some(shared) = shared() else { return };
    if !have("node") || !have("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = action(&shared, "actions/cache", "v4", tmp.path());
    // An empty ACTIONS_CACHE_SERVICE_V2 makes the toolkit use ACTIONS_CACHE_URL
    // (`_apis/artifactcache`), as older runners and toolkits do.
    let wf = CACHE_WORKFLOW.replace(
        "    runs-on: ubuntu-latest\n",
        "    runs-on: ubuntu-latest\n    env:\n      ACTIONS_CACHE_SERVICE_V2: ''\n",
    );
    let dir = repo(tmp.path(), &wf);
    let data = tmp.path().join("data");
    let action_dir = format!("actions/cache@v4={}", cache.display());
    let args = ["--action-dir", action_dir.as_str()];
    let (out, text) = hangar_run(&dir, &data, &args);
    assert!(out.status.success(), "{text}");
    // Only the legacy client says this (the v2 client uploads with the blob SDK).
    assert!(text.contains("Cache saved successfully"), "{text}");
    std::fs::remove_dir_all(dir.join("deps")).unwrap();
    let (out, text) = hangar_run(&dir, &data, &args);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hit=true;"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.join("deps/out.txt")).unwrap(),
        "built from v1\n"
    );
}

const SETUP_NODE_WORKFLOW: &str = r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/setup-node@v4
        id: sn
        with:
          cache: npm
      - run: echo "setup-node cache-hit=${{ steps.sn.outputs.cache-hit }};"
      - run: npm ci --no-audit --no-fund --offline
"#;

#[test]
fn setup_node_caches_npm_through_the_service() {
    let Some(shared) = shared() else { return };
    if !have("node") || !have("npm") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let setup_node = action(&shared, "actions/setup-node", "v4", tmp.path());
    let dir = repo(tmp.path(), SETUP_NODE_WORKFLOW);
    // No dependencies: nothing to fetch, yet npm fills its cache directory.
    std::fs::write(
        dir.join("package.json"),
        r#"{"name":"t","version":"1.0.0","dependencies":{}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("package-lock.json"),
        r#"{"name":"t","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{"":{"name":"t","version":"1.0.0"}}}"#,
    )
    .unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "npm"]);
    let data = tmp.path().join("data");
    let npm_cache = tmp.path().join("npm-cache");
    let spec = format!("actions/setup-node@v4={}", setup_node.display());
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_hangar"))
            .args(["run", "--bind", "--action-dir", &spec])
            .current_dir(&dir)
            .env("HANGAR_DATA_DIR", &data)
            .env("npm_config_cache", &npm_cache)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, text)
    };
    let (out, text) = run();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("setup-node cache-hit=false;"), "{text}");
    assert!(
        text.contains("Cache saved with the key: node-cache-"),
        "{text}"
    );
    std::fs::remove_dir_all(&npm_cache).unwrap();
    let (out, text) = run();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("setup-node cache-hit=true;"), "{text}");
    assert!(npm_cache.is_dir(), "restored");
}

#[test]
fn actions_cache_is_fetched_and_runs_as_itself_not_the_look_alike() {
    let Some(shared) = shared() else { return };
    if !have("node") || !have("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = cache_forge(&shared, tmp.path());
    let dir = repo(tmp.path(), CACHE_WORKFLOW);
    let data = tmp.path().join("data");
    let args = ["--actions-url", url.as_str()];
    let (out, text) = hangar_run(&dir, &data, &args);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Cache saved with key: deps-"), "{text}");
    // The real action's own words (the look-alike archives nothing).
    assert!(text.contains("[command]") && text.contains("tar"), "{text}");
    std::fs::remove_dir_all(dir.join("deps")).unwrap();
    let (out, text) = hangar_run(&dir, &data, &args);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Cache restored from key: deps-"), "{text}");
    assert!(text.contains("Cache Size: ~"), "{text}");
    assert!(text.contains("hit=true;"), "{text}");
}

#[test]
fn a_cache_that_cannot_be_opened_warns_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = repo(
        tmp.path(),
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"url=${ACTIONS_RESULTS_URL:-none}\"\n",
    );
    // The data directory is a file: nothing can be created under it.
    let data = tmp.path().join("not-a-dir");
    std::fs::write(&data, "").unwrap();
    let (out, text) = hangar_run(&dir, &data, &[]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("warning: cannot open the cache under"),
        "{text}"
    );
    assert!(text.contains("url=none"), "{text}");
    // Asked to keep artifacts, the run does not start without the service.
    let keep = tmp.path().join("kept");
    let (out, text) = hangar_run(&dir, &data, &["--artifacts", keep.to_str().unwrap()]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("cannot open the cache under"), "{text}");
}

/// `hangar serve --actions-url`: the embedded agent fetches the marketplace
/// action from that forge (the real `actions/cache`, against the server's own
/// cache service), and a URL hangar cannot use stops the server at start, naming the flag.
#[test]
fn serve_fetches_marketplace_actions_from_its_actions_url() {
    use std::time::{Duration, Instant};
    let Some(shared) = shared() else { return };
    if !have("node") || !have("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = cache_forge(&shared, tmp.path());
    let dir = repo(tmp.path(), CACHE_WORKFLOW);
    let bin = env!("CARGO_BIN_EXE_hangar");

    let bad = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--actions-url",
            "ftp://forge",
        ])
        .arg("--data")
        .arg(tmp.path().join("bad"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{err}");
    assert!(
        err.contains("--actions-url") && err.contains("ftp://forge"),
        "{err}"
    );

    let repo_arg = dir.display().to_string();
    let (_serve, ui, admin) = common::browser::serve(
        bin,
        &tmp.path().join("data"),
        &["--repo", &repo_arg, "--actions-url", &url],
    );
    let base = ui.trim_end_matches("/ui/");
    // The server builds what is pushed after it watches.
    common::wait_until_watched(base, &admin, 1);
    std::fs::write(dir.join("README"), "pushed\n").unwrap();
    git(&dir, &["add", "README"]);
    git(&dir, &["commit", "-q", "-m", "push"]);
    let start = Instant::now();
    let run = loop {
        let (_, runs) = common::http_json("GET", &format!("{base}/api/v1/runs"), &admin, "");
        let first = runs[0].clone();
        if first["status"] == "completed" {
            let (_, r) = common::http_json(
                "GET",
                &format!("{base}/api/v1/runs/{}", first["id"]),
                &admin,
                "",
            );
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no run ended: {runs:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let job = &run["jobs"][0];
    let (_, log) = common::browser::http(
        "GET",
        &format!("{base}/api/v1/jobs/{}/logs/raw", job["id"]),
        &admin,
        None,
    );
    assert_eq!(run["run"]["conclusion"], "success", "{run:#}\n{log}");
    assert!(log.contains("Cache saved with key: deps-"), "{log}");
    assert!(log.contains("[command]") && log.contains("tar"), "{log}");
}
