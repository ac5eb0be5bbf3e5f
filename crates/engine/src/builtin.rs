//! Built-in actions: `uses:` references the engine answers itself, without
//! downloading anything. Other crates plug theirs in (`hangar/deploy`,
//! `hangar/release`, `hangar/scan`) with [`crate::Engine::register`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::context::RunContext;

/// Where a built-in action writes its log: lines are masked and reported as the
/// step's output, like a process's stdout.
#[derive(Clone)]
pub struct OutputSink {
    inner: Arc<dyn Fn(&str) + Send + Sync>,
}

impl OutputSink {
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> OutputSink {
        OutputSink { inner: Arc::new(f) }
    }

    /// One line of log (workflow commands such as `::warning::` are honoured).
    pub fn line(&self, line: &str) {
        for l in line.split('\n') {
            (self.inner)(l);
        }
    }

    pub fn warning(&self, message: &str) {
        self.line(&format!("::warning::{message}"));
    }

    pub fn error(&self, message: &str) {
        self.line(&format!("::error::{message}"));
    }
}

/// Everything a built-in action gets for one invocation.
pub struct ActionCall {
    /// `owner/name` as written in `uses:` (lowercase), without `@ref`.
    pub name: String,
    /// The `@ref` part (`v1`), empty when absent.
    pub version: String,
    /// `with:` values after evaluation, plus defaults the action declared.
    pub inputs: BTreeMap<String, String>,
    /// The step's environment (workflow → job → step, `GITHUB_*` included).
    pub env: BTreeMap<String, String>,
    pub workspace: PathBuf,
    pub run: Arc<RunContext>,
    /// The job's `environment:` name, evaluated (`hangar/deploy`'s default target).
    pub environment: Option<String>,
    /// Values the main part saved (for `post`), empty for `main`.
    pub state: BTreeMap<String, String>,
    /// Did the job succeed so far (for `post` parts that only act on success).
    pub job_succeeded: bool,
    pub output: OutputSink,
    pub cancel: CancellationToken,
}

impl ActionCall {
    pub fn input(&self, name: &str) -> &str {
        self.inputs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// What a built-in action reports back.
#[derive(Debug, Default, Clone)]
pub struct ActionResult {
    pub success: bool,
    pub outputs: BTreeMap<String, String>,
    /// Saved for the `post` part (as `::save-state::`).
    pub state: BTreeMap<String, String>,
    /// Run [`BuiltinAction::post`] when the job ends.
    pub wants_post: bool,
}

impl ActionResult {
    pub fn ok() -> ActionResult {
        ActionResult {
            success: true,
            ..ActionResult::default()
        }
    }

    pub fn failed() -> ActionResult {
        ActionResult::default()
    }
}

/// A `uses:` the engine runs in-process. `run` executes on a blocking thread;
/// long-running actions should look at `call.cancel`.
pub trait BuiltinAction: Send + Sync {
    /// `owner/name` matched case-insensitively against `uses:` (without `@ref`).
    fn name(&self) -> &str;

    fn run(&self, call: &ActionCall) -> ActionResult;

    /// The post part, run in reverse order after the job's steps when `run`
    /// asked for it.
    fn post(&self, call: &ActionCall) -> ActionResult {
        let _ = call;
        ActionResult::ok()
    }
}

/// The actions every engine has: checkout, cache, upload/download-artifact.
pub fn defaults() -> Vec<Arc<dyn BuiltinAction>> {
    vec![
        Arc::new(Checkout),
        Arc::new(Cache),
        Arc::new(UploadArtifact),
        Arc::new(DownloadArtifact),
    ]
}

/// `actions/checkout`: the workspace already is the repository (as act does
/// in host mode); with `path:` the repository is cloned there at the event's sha.
struct Checkout;

impl BuiltinAction for Checkout {
    fn name(&self) -> &str {
        "actions/checkout"
    }

    fn run(&self, call: &ActionCall) -> ActionResult {
        let repository = call.input("repository");
        if !repository.is_empty() && !repository.eq_ignore_ascii_case(&call.run.repository) {
            call.output.error(&format!(
                "actions/checkout of another repository ({repository}) needs the network; \
                 hangar runs offline: check it out yourself or provide it with --action-dir"
            ));
            return ActionResult::failed();
        }
        let path = call.input("path").trim();
        if path.is_empty() || path == "." {
            call.output.line(&format!(
                "The workspace is the repository ({}); nothing to check out",
                call.workspace.display()
            ));
            return ActionResult::ok();
        }
        let dest = call.workspace.join(path);
        let r = call.input("ref");
        let rev = if r.is_empty() {
            call.run.sha.as_str()
        } else {
            r
        };
        call.output
            .line(&format!("Cloning the workspace into {path} at {rev}"));
        let ok = git(
            &call.workspace,
            &["clone", "--quiet", "--shared", "--no-checkout", ".", path],
            &call.output,
        ) && git(
            &dest,
            &["checkout", "--quiet", "--detach", rev],
            &call.output,
        );
        if ok {
            ActionResult::ok()
        } else {
            ActionResult::failed()
        }
    }
}

fn git(dir: &Path, args: &[&str], out: &OutputSink) -> bool {
    run_tool(dir, "git", args, out)
}

fn run_tool(dir: &Path, program: &str, args: &[&str], out: &OutputSink) -> bool {
    match Command::new(program).args(args).current_dir(dir).output() {
        Ok(o) => {
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                out.line(l);
            }
            for l in String::from_utf8_lossy(&o.stderr).lines() {
                out.line(l);
            }
            o.status.success()
        }
        Err(e) => {
            out.error(&format!("cannot run {program}: {e}"));
            false
        }
    }
}

/// Multi-line `path:` inputs with `~` expanded and globs resolved.
fn expand_paths(call: &ActionCall, text: &str) -> Vec<String> {
    let home = std::env::var("HOME").unwrap_or_default();
    let mut out = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('!'))
    {
        let line = match line.strip_prefix("~/") {
            Some(rest) => format!("{home}/{rest}"),
            None => line.to_string(),
        };
        if line.contains(['*', '?', '[']) {
            let pattern = if Path::new(&line).is_absolute() {
                line.clone()
            } else {
                call.workspace.join(&line).to_string_lossy().into_owned()
            };
            if let Ok(paths) = glob::glob(&pattern) {
                for p in paths.flatten() {
                    out.push(p.to_string_lossy().into_owned());
                }
            }
        } else {
            out.push(line);
        }
    }
    out
}

/// `actions/cache`: a local store under the data dir, keyed like GitHub's
/// (exact key, then the newest entry whose key starts with a restore key).
///
/// It does not stay as a look-alike of the real action: it is faster (no
/// node start, ~0.4 s per restore and per save) but does not behave
/// identically for every input: it copies directories instead of the
/// toolkit's versioned tar archives, ignores `lookup-only`,
/// `enableCrossOsArchive` and branch scoping, and its entries are invisible
/// to the real action and to other tools using `@actions/cache`. So it goes
/// wherever hangar serves GitHub's cache service (`hangar-results`):
/// `hangar run` and the agents of `hangar serve` unregister it and fetch the
/// real action; it remains for an engine used without the service.
struct Cache;

fn cache_dir(call: &ActionCall) -> PathBuf {
    call.run.data_dir.join("cache")
}

fn key_dir(root: &Path, key: &str) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    root.join(hex)
}

impl BuiltinAction for Cache {
    fn name(&self) -> &str {
        "actions/cache"
    }

    fn run(&self, call: &ActionCall) -> ActionResult {
        let key = call.input("key").to_string();
        if key.is_empty() {
            call.output.error("actions/cache: input `key` is required");
            return ActionResult::failed();
        }
        let root = cache_dir(call);
        let mut result = ActionResult::ok();
        let mut matched: Option<(String, PathBuf)> = None;
        let exact = key_dir(&root, &key);
        if exact.join("data.tar").is_file() {
            matched = Some((key.clone(), exact));
        } else {
            for prefix in call
                .input("restore-keys")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
            {
                let mut best: Option<(std::time::SystemTime, String, PathBuf)> = None;
                for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                    let dir = entry.path();
                    let Ok(k) = std::fs::read_to_string(dir.join("key")) else {
                        continue;
                    };
                    if !k.starts_with(prefix) || !dir.join("data.tar").is_file() {
                        continue;
                    }
                    let t = std::fs::metadata(dir.join("data.tar"))
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    if best.as_ref().is_none_or(|b| t > b.0) {
                        best = Some((t, k, dir));
                    }
                }
                if let Some((_, k, dir)) = best {
                    matched = Some((k, dir));
                    break;
                }
            }
        }
        let hit = matched.as_ref().is_some_and(|(k, _)| *k == key);
        match &matched {
            Some((k, dir)) if call.input("lookup-only") != "true" => {
                call.output.line(&format!("Cache restored from key: {k}"));
                let tar = dir.join("data.tar");
                if !run_tool(
                    &call.workspace,
                    "tar",
                    &["-xPf", &tar.to_string_lossy()],
                    &call.output,
                ) {
                    call.output.warning("restoring the cache failed");
                }
            }
            Some((k, _)) => call.output.line(&format!("Cache found for key: {k}")),
            None => {
                call.output
                    .line(&format!("Cache not found for input keys: {key}"));
                if call.input("fail-on-cache-miss") == "true" {
                    call.output.error(&format!("Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: {key}"));
                    return ActionResult::failed();
                }
            }
        }
        result.outputs.insert("cache-hit".into(), hit.to_string());
        if let Some((k, _)) = &matched {
            result.outputs.insert("cache-matched-key".into(), k.clone());
        }
        result
            .outputs
            .insert("cache-primary-key".into(), key.clone());
        if !hit {
            result.state.insert("key".into(), key);
            result
                .state
                .insert("path".into(), call.input("path").to_string());
            result.wants_post = true;
        }
        result
    }

    fn post(&self, call: &ActionCall) -> ActionResult {
        let Some(key) = call.state.get("key") else {
            return ActionResult::ok();
        };
        if !call.job_succeeded {
            call.output.line("Not saving the cache: the job failed");
            return ActionResult::ok();
        }
        let paths = expand_paths(
            call,
            call.state.get("path").map(String::as_str).unwrap_or(""),
        );
        let existing: Vec<&String> = paths
            .iter()
            .filter(|p| {
                let p = Path::new(p.as_str());
                if p.is_absolute() {
                    p.exists()
                } else {
                    call.workspace.join(p).exists()
                }
            })
            .collect();
        if existing.is_empty() {
            call.output.warning("Path Validation Error: Path(s) specified in the action for caching do(es) not exist, hence no cache is being saved.");
            return ActionResult::ok();
        }
        let dir = key_dir(&cache_dir(call), key);
        if std::fs::create_dir_all(&dir).is_err() {
            call.output
                .warning(&format!("cannot create {}", dir.display()));
            return ActionResult::ok();
        }
        let tmp = dir.join("data.tar.partial");
        let mut args: Vec<String> = vec!["-cPf".into(), tmp.to_string_lossy().into_owned()];
        args.extend(existing.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if run_tool(&call.workspace, "tar", &args, &call.output)
            && std::fs::rename(&tmp, dir.join("data.tar")).is_ok()
            && std::fs::write(dir.join("key"), key).is_ok()
        {
            call.output.line(&format!("Cache saved with key: {key}"));
        } else {
            call.output.warning("saving the cache failed");
        }
        ActionResult::ok()
    }
}

fn artifacts_dir(call: &ActionCall) -> PathBuf {
    call.run.run_dir.join("artifacts")
}

/// `actions/upload-artifact`: copies files into the run's local artifact store.
struct UploadArtifact;

impl BuiltinAction for UploadArtifact {
    fn name(&self) -> &str {
        "actions/upload-artifact"
    }

    fn run(&self, call: &ActionCall) -> ActionResult {
        let name = match call.input("name") {
            "" => "artifact",
            n => n,
        };
        let paths = expand_paths(call, call.input("path"));
        let dest = artifacts_dir(call).join(name);
        let existing: Vec<PathBuf> = paths
            .iter()
            .map(|p| call.workspace.join(p))
            .filter(|p| p.exists())
            .collect();
        if existing.is_empty() {
            let msg = format!(
                "No files were found with the provided path: {}. No artifacts will be uploaded.",
                call.input("path")
            );
            return match call.input("if-no-files-found") {
                "error" => {
                    call.output.error(&msg);
                    ActionResult::failed()
                }
                "ignore" => ActionResult::ok(),
                _ => {
                    call.output.warning(&msg);
                    ActionResult::ok()
                }
            };
        }
        if call.input("overwrite") == "true" {
            let _ = std::fs::remove_dir_all(&dest);
        } else if dest.exists() {
            call.output.error(&format!(
                "an artifact named {name} already exists in this run"
            ));
            return ActionResult::failed();
        }
        if std::fs::create_dir_all(&dest).is_err() {
            call.output
                .error(&format!("cannot create {}", dest.display()));
            return ActionResult::failed();
        }
        for p in &existing {
            let src = if p.is_dir() {
                format!("{}/.", p.display())
            } else {
                p.to_string_lossy().into_owned()
            };
            if !run_tool(
                &call.workspace,
                "cp",
                &["-R", &src, &dest.to_string_lossy()],
                &call.output,
            ) {
                return ActionResult::failed();
            }
        }
        call.output.line(&format!(
            "Artifact {name} stored ({} path(s))",
            existing.len()
        ));
        let mut r = ActionResult::ok();
        r.outputs.insert("artifact-id".into(), name.to_string());
        r
    }
}

/// `actions/download-artifact`: copies from the run's local artifact store.
struct DownloadArtifact;

impl BuiltinAction for DownloadArtifact {
    fn name(&self) -> &str {
        "actions/download-artifact"
    }

    fn run(&self, call: &ActionCall) -> ActionResult {
        let root = artifacts_dir(call);
        let target = match call.input("path") {
            "" => call.workspace.clone(),
            p => call.workspace.join(p),
        };
        let names: Vec<(String, PathBuf)> = match call.input("name") {
            "" => std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    (n.clone(), target.join(n))
                })
                .collect(),
            n => {
                if !root.join(n).is_dir() {
                    call.output
                        .error(&format!("Unable to find an artifact with the name: {n}"));
                    return ActionResult::failed();
                }
                vec![(n.to_string(), target.clone())]
            }
        };
        for (name, dest) in &names {
            let _ = std::fs::create_dir_all(dest);
            let src = format!("{}/.", root.join(name).display());
            if !run_tool(
                &call.workspace,
                "cp",
                &["-R", &src, &dest.to_string_lossy()],
                &call.output,
            ) {
                return ActionResult::failed();
            }
            call.output
                .line(&format!("Artifact {name} downloaded to {}", dest.display()));
        }
        let mut r = ActionResult::ok();
        r.outputs.insert(
            "download-path".into(),
            target.to_string_lossy().into_owned(),
        );
        r
    }
}
