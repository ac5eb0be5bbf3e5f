//! `hangar run`: run GitHub Actions workflows on this machine.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use hangar_engine::report::{Event, Level};
use hangar_engine::{
    CancellationToken, Conclusion, Engine, Reporter, RunContext, RunOptions, Workflow,
};

#[derive(clap::Args)]
pub struct Args {
    /// The event to run (`push`, `pull_request`, `workflow_dispatch`...).
    #[arg(default_value = "push")]
    pub event: String,
    /// Workflow file, or directory of workflow files.
    #[arg(short = 'W', long = "workflows", default_value = ".github/workflows")]
    pub workflows: PathBuf,
    /// Run only this job (and the jobs it needs).
    #[arg(short = 'j', long = "job")]
    pub job: Option<String>,
    /// A secret, NAME=VALUE (or NAME to take it from the environment).
    #[arg(short = 's', long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,
    /// Secrets in dotenv format (default: `.secrets` when it exists).
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// A configuration variable (`vars` context), NAME=VALUE.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Variables in dotenv format (default: `.vars` when it exists).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_file: Option<PathBuf>,
    /// A secret of one environment, ENV:NAME=VALUE (or ENV:NAME to take it
    /// from the environment): a job with `environment: ENV` sees it over the
    /// repository's secret of that name, as on GitHub. Each environment's
    /// secrets are also read from the secret file's name plus `.ENV`
    /// (`.secrets.prod`).
    #[arg(long = "environment-secret", value_name = "ENV:NAME=VALUE")]
    pub environment_secrets: Vec<String>,
    /// A variable of one environment, ENV:NAME=VALUE, over the repository's
    /// for a job with `environment: ENV`; also read from `.vars.ENV`.
    #[arg(long = "environment-var", value_name = "ENV:NAME=VALUE")]
    pub environment_vars: Vec<String>,
    /// Environment for every step in dotenv format (default: `.env` when it exists).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// An input of `workflow_dispatch` / `workflow_call`, NAME=VALUE.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// The event payload (JSON); default: a push of HEAD.
    #[arg(short = 'e', long = "eventpath", value_name = "FILE")]
    pub eventpath: Option<PathBuf>,
    /// List workflows, jobs and their events; run nothing.
    #[arg(short = 'l', long)]
    pub list: bool,
    /// Print the job graph by stages; run nothing.
    #[arg(short = 'g', long)]
    pub graph: bool,
    /// Show what would run without running it.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Emit events as JSON lines instead of the terminal view.
    #[arg(long)]
    pub json: bool,
    /// Run even when `hangar validate` finds errors in the selected workflows.
    #[arg(long)]
    pub no_validate: bool,
    /// Jobs running at once (default: number of cores).
    #[arg(long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Use a local directory for a remote action: owner/repo@ref=PATH.
    #[arg(long = "action-dir", value_name = "OWNER/REPO@REF=PATH")]
    pub action_dirs: Vec<String>,
    /// Keep the artifacts that steps upload (`upload-artifact@v4`+) in DIR
    /// after the run, as NAME.zip; default: removed with the run.
    #[arg(long = "artifacts", value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Total size of a repository's cache entries (`actions/cache`) before the
    /// least recently used go: 10GB, 500MB, 2GiB...
    #[arg(long = "cache-size", value_name = "SIZE", default_value = "10GB")]
    pub cache_size: String,
    /// Forge remote actions and reusable workflows are fetched from (default:
    /// `actions.url` in hangar.yml, else https://github.com). GitHub Enterprise,
    /// Gitea, Forgejo, a mirror, or file:///path/to/forge.
    #[arg(long = "actions-url", value_name = "URL", env = "HANGAR_ACTIONS_URL")]
    pub actions_url: Option<String>,
    /// Use only actions already in the cache; never contact the forge.
    #[arg(long)]
    pub offline: bool,
    /// The node that runs JavaScript actions declaring RUNTIME (node12,
    /// node16, node20, node24); default: `node` on PATH.
    #[arg(long = "node", value_name = "RUNTIME=PATH")]
    pub node: Vec<String>,
    /// Then run the workflows that wait for the finished ones through
    /// `on: workflow_run` (matching `workflows:`, `types:` and branch
    /// filters), with GitHub's `github.event.workflow_run`, on the default
    /// branch's ref and commit, up to GitHub's three levels. Locally they run
    /// after the workflow they follow, `requested` ones first.
    #[arg(long = "follow-workflow-run")]
    pub follow_workflow_run: bool,
    /// Repository root; default: the current directory. Steps run in a
    /// private copy of it (see --bind).
    #[arg(short = 'C', long = "directory", value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Run the steps in the repository itself instead of a private copy:
    /// what they commit, tag, delete or build then happens to it.
    #[arg(long, conflicts_with_all = ["copy_ignored", "keep_workspace"])]
    pub bind: bool,
    /// Copy ignored files (target/, node_modules/...) into the private copy too.
    #[arg(long)]
    pub copy_ignored: bool,
    /// Leave the private copy on disk after the run and print where it is.
    #[arg(long)]
    pub keep_workspace: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let workspace = match &args.directory {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let wf_path = if args.workflows.is_absolute() {
        args.workflows.clone()
    } else {
        workspace.join(&args.workflows)
    };
    if !wf_path.exists() {
        bail!(
            "{} does not exist: no workflows to run (use -W to point at a workflow file or directory)",
            args.workflows.display()
        );
    }
    let (workflows, errors) =
        hangar_engine::plan::load_workflows(&wf_path).map_err(anyhow::Error::msg)?;
    for (path, e) in &errors {
        report_load_error(path, e, &workspace, args.no_validate);
    }
    if args.list {
        list(&workflows, &workspace);
        return Ok(if errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let selected = hangar_engine::plan::for_event(&workflows, Some(&args.event));
    if args.graph {
        return graph(&selected, args.job.as_deref(), &workspace);
    }
    if !errors.is_empty() {
        return Ok(ExitCode::from(1));
    }
    if !args.no_validate && !validate_first(&selected, &workspace) {
        return Ok(ExitCode::from(1));
    }
    if selected.is_empty() {
        eprintln!(
            "no workflow in {} runs on `{}`",
            args.workflows.display(),
            args.event
        );
        return Ok(ExitCode::SUCCESS);
    }

    let event = match &args.eventpath {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(
                serde_json::from_str::<serde_json::Value>(&text)
                    .with_context(|| format!("{}: invalid JSON", p.display()))?,
            )
        }
        None => None,
    };
    let mut run = RunContext::new(&workspace, &args.event, event);
    load_pairs(
        &workspace,
        args.secret_file.as_deref(),
        ".secrets",
        &mut run.secrets,
    )?;
    for s in &args.secrets {
        let (k, v) = match s.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (s.clone(), std::env::var(s).unwrap_or_default()),
        };
        run.secrets.insert(k, v);
    }
    load_pairs(&workspace, args.var_file.as_deref(), ".vars", &mut run.vars)?;
    for s in &args.vars {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--var {s}: expected NAME=VALUE"))?;
        run.vars.insert(k.to_string(), v.to_string());
    }
    let known = environments(&workspace);
    load_environment_pairs(
        &workspace,
        args.secret_file.as_deref(),
        ".secrets",
        &args.environment_secrets,
        "--environment-secret",
        &known,
        &mut run.environment_secrets,
    )?;
    load_environment_pairs(
        &workspace,
        args.var_file.as_deref(),
        ".vars",
        &args.environment_vars,
        "--environment-var",
        &known,
        &mut run.environment_vars,
    )?;
    load_pairs(&workspace, args.env_file.as_deref(), ".env", &mut run.env)?;
    for s in &args.inputs {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--input {s}: expected NAME=VALUE"))?;
        run.inputs
            .insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    if (!args.inputs.is_empty() || args.event == "workflow_dispatch")
        && let Some(obj) = run.event.as_object_mut()
    {
        obj.insert(
            "inputs".into(),
            serde_json::Value::Object(run.inputs.clone()),
        );
    }
    run.environments = Some(known);
    // Steps run in a private copy of the working tree (uncommitted and
    // untracked files included), as act does, so what they commit, tag,
    // clean or build stays out of the user's repository. Removed when
    // `_copy` drops, after the run.
    let mut _copy = None;
    if !args.bind && !args.dry_run {
        let parent = run.data_dir.join("workspaces");
        let opts = hangar_engine::workspace::CopyOptions {
            ignored: args.copy_ignored,
        };
        // Under the data directory (usually on the repository's filesystem,
        // where reflinks and hard links work), else the temporary directory.
        let mut ws = hangar_engine::workspace::prepare(&workspace, &parent, opts)
            .or_else(|e| {
                let tmp = std::env::temp_dir().join("hangar-workspaces");
                hangar_engine::workspace::prepare(&workspace, &tmp, opts)
                    .map_err(|e2| e2.context(format!("{e:#}")))
            })
            .context("cannot copy the working tree for the run (--bind runs in place)")?;
        if args.keep_workspace {
            ws.keep();
            eprintln!(
                "hangar: the run's workspace is kept in {}",
                ws.path().display()
            );
        }
        run.workspace = ws.path().to_path_buf();
        run.deploy_home = Some(workspace.clone());
        _copy = Some(ws);
    }
    let mut engine = Engine::new();
    for action in hangar_builtins::all() {
        engine.register(action);
    }
    // The run serves GitHub's cache service, so `actions/cache` runs as
    // itself (fetched like any action); the look-alike is not identical
    // (see the engine's `builtin::Cache`).
    engine.unregister("actions/cache");
    for d in &args.action_dirs {
        engine.add_action_dir(d).map_err(anyhow::Error::msg)?;
    }
    engine.set_action_source(action_source(&args, &workspace)?);
    for spec in &args.node {
        let (runtime, path) =
            hangar_engine::actions::node::parse_node_flag(spec).map_err(anyhow::Error::msg)?;
        engine.set_node_runtime(runtime, path);
    }
    let parallel = args
        .jobs
        .unwrap_or_else(|| RunOptions::default().parallel)
        .max(1);
    // `[job] ` prefixes only when several jobs (or matrix legs) may interleave.
    let job_count: usize = selected
        .iter()
        .map(|w| {
            let stages = hangar_engine::plan::stages(w, args.job.as_deref()).unwrap_or_default();
            stages
                .iter()
                .flatten()
                .map(|id| match w.job(id).and_then(|j| j.get("strategy")) {
                    Some(_) => 2,
                    None => 1,
                })
                .sum::<usize>()
        })
        .sum();
    let reporter: Arc<dyn Reporter> = if args.json {
        Arc::new(JsonReporter::default())
    } else {
        Arc::new(TerminalReporter::new(job_count > 1 && parallel > 1))
    };
    let opts = RunOptions {
        parallel,
        only_job: args.job.clone(),
        dry_run: args.dry_run,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(parallel.clamp(1, 4))
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let cancel = CancellationToken::new();
    let cache_size = parse_size(&args.cache_size)?;
    // GitHub's cache and artifact services for this run's steps, on loopback.
    // A run whose cache cannot be opened still runs, without them (a step
    // using the cache then warns, as on GitHub when the service is down);
    // one asked to keep artifacts somewhere does not.
    let results = if args.dry_run {
        None
    } else {
        let start = || -> anyhow::Result<hangar_results::Running> {
            let artifact_dir = match &args.artifacts {
                Some(d) => d.clone(),
                None => run.run_dir.join("artifacts"),
            };
            let mut cfg = hangar_results::Config::new(artifact_dir);
            cfg.max_total_bytes = cache_size;
            let store = hangar_results::DirStore::open(&run.data_dir.join("results-cache"))
                .with_context(|| {
                    format!("cannot open the cache under {}", run.data_dir.display())
                })?;
            let svc = hangar_results::Service::new(Arc::new(store), cfg)?;
            rt.block_on(svc.start(([127, 0, 0, 1], 0).into()))
        };
        match start() {
            Ok(running) => {
                run.services = Some(Arc::new(ResultsEnv(running.service.clone())));
                Some(running)
            }
            Err(e) if args.artifacts.is_none() => {
                eprintln!("warning: {e:#}; steps run without the cache and artifact services");
                None
            }
            Err(e) => return Err(e),
        }
    };
    let run = Arc::new(run);
    let summary = rt.block_on(async {
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nhangar: cancelling (Ctrl-C again to stop at once)");
                c.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let first = engine
            .run_workflows(
                run.clone(),
                selected.clone(),
                opts.clone(),
                reporter.clone(),
                cancel.clone(),
            )
            .await?;
        if !args.follow_workflow_run || args.dry_run {
            return Ok(first);
        }
        follow_workflow_runs(
            &engine, &workflows, run, &selected, first, &opts, &reporter, &cancel,
        )
        .await
    });
    reporter.flush();
    if let Some(r) = &results {
        r.service.discard_unfinished();
    }
    drop(results);
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if !args.json {
        print_summary(&summary);
    }
    rt.shutdown_background();
    Ok(if cancel.is_cancelled() {
        ExitCode::from(130)
    } else if summary.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `--follow-workflow-run`: after `selected` ran in `run`, the workflows
/// whose `on.workflow_run` matches each of them, level by level (GitHub's
/// three at most), each in a run of its own; their jobs join the summary.
#[allow(clippy::too_many_arguments)]
async fn follow_workflow_runs(
    engine: &Engine,
    all: &[Arc<Workflow>],
    run: Arc<RunContext>,
    selected: &[Arc<Workflow>],
    first: hangar_engine::RunSummary,
    opts: &RunOptions,
    reporter: &Arc<dyn Reporter>,
    cancel: &CancellationToken,
) -> Result<hangar_engine::RunSummary, String> {
    use hangar_engine::workflow_run as wr;
    let mut summary = first;
    // (finished workflow, its run, the jobs of that run, its depth in the chain)
    let mut finished: Vec<(Arc<Workflow>, Arc<RunContext>, usize)> = selected
        .iter()
        .map(|w| (w.clone(), run.clone(), 0))
        .collect();
    let mut jobs_of: Vec<Vec<hangar_engine::JobSummary>> =
        vec![summary.jobs.clone(); finished.len()];
    let mut seq = 0;
    while !finished.is_empty() && !cancel.is_cancelled() {
        let mut next = Vec::new();
        let mut next_jobs = Vec::new();
        for ((wf, parent, depth), jobs) in finished.iter().zip(&jobs_of) {
            let conclusion = wr::conclusion(jobs, &wf.name);
            let requested = wr::from_local(parent, wf, "queued", None);
            let completed = wr::from_local(parent, wf, "completed", Some(conclusion));
            for (action, triggering) in [("requested", &requested), ("completed", &completed)] {
                for follower in all.iter().filter(|f| {
                    f.model
                        .trigger("workflow_run")
                        .is_some_and(|t| wr::follows(t, triggering, action))
                }) {
                    if *depth as u32 >= wr::MAX_DEPTH {
                        eprintln!(
                            "hangar: `{}` waits for `{}` but is not started: workflow_run chains stop after {} levels (as on GitHub)",
                            follower.name,
                            wf.name,
                            wr::MAX_DEPTH
                        );
                        continue;
                    }
                    seq += 1;
                    eprintln!(
                        "hangar: workflow_run: starting `{}` ({action} `{}` on {}{})",
                        follower.name,
                        wf.name,
                        triggering.head_branch,
                        if action == "completed" {
                            format!(", {conclusion}")
                        } else {
                            String::new()
                        }
                    );
                    let child = Arc::new(wr::local_context(parent, triggering, action, seq));
                    let s = engine
                        .run_workflows(
                            child.clone(),
                            vec![follower.clone()],
                            opts.clone(),
                            reporter.clone(),
                            cancel.clone(),
                        )
                        .await?;
                    child.cleanup();
                    summary.success &= s.success;
                    summary.jobs.extend(s.jobs.iter().cloned());
                    next.push((follower.clone(), child, depth + 1));
                    next_jobs.push(s.jobs);
                }
            }
        }
        finished = next;
        jobs_of = next_jobs;
    }
    Ok(summary)
}

/// Hands each job a runtime token scoped as GitHub scopes caches: its own
/// ref, a pull request's base branch, the default branch.
#[derive(Debug)]
struct ResultsEnv(hangar_results::Service);

impl hangar_engine::JobServices for ResultsEnv {
    fn job_env(&self, run: &RunContext, job_key: &str) -> Vec<(String, String, bool)> {
        let base = (!run.base_ref.is_empty()).then_some(run.base_ref.as_str());
        let default = run
            .event
            .pointer("/repository/default_branch")
            .and_then(serde_json::Value::as_str);
        let grant = hangar_results::Grant::for_ref(
            &run.repository,
            &run.run_id,
            job_key,
            &run.git_ref,
            base,
            default,
        );
        self.0
            .job_env(&grant)
            .into_iter()
            .map(|(k, v)| {
                let secret = k == "ACTIONS_RUNTIME_TOKEN";
                (k, v, secret)
            })
            .collect()
    }
}

/// `10GB`, `500MB`, `2GiB`, `1048576`: a size in bytes.
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("--cache-size {text:?}: expected a size like 10GB or 500MB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => bail!(
            "--cache-size {text:?}: unknown unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB)"
        ),
    };
    Ok((n * mult) as u64)
}

/// The environments hangar.yml defines, which a job's `environment:`
/// expression must name (none without a hangar.yml, or one that does not
/// load: `hangar validate` and the deploying steps say what is wrong with it).
fn environments(workspace: &Path) -> Vec<String> {
    let has_file = ["hangar.yml", "hangar.yaml"]
        .iter()
        .any(|f| workspace.join(f).is_file());
    if !has_file {
        return Vec::new();
    }
    hangar_project::load(workspace)
        .map(|(_, p)| p.environments.keys().cloned().collect())
        .unwrap_or_default()
}

/// `--actions-url` / `HANGAR_ACTIONS_URL`, then `actions.url` in hangar.yml,
/// then GitHub.
fn action_source(
    args: &Args,
    workspace: &Path,
) -> anyhow::Result<hangar_engine::actions::ActionSource> {
    let configured = match &args.actions_url {
        Some(u) if !u.trim().is_empty() => Some(("--actions-url".to_string(), u.clone())),
        _ => {
            let has_file = ["hangar.yml", "hangar.yaml"]
                .iter()
                .any(|f| workspace.join(f).is_file());
            if has_file {
                let (path, project) =
                    hangar_project::load(workspace).map_err(|e| anyhow::anyhow!("{e}"))?;
                project
                    .actions
                    .and_then(|a| a.url)
                    .map(|u| (path.display().to_string(), u))
            } else {
                None
            }
        }
    };
    let (from, url) = configured.unwrap_or_else(|| {
        (
            "default".into(),
            hangar_engine::actions::DEFAULT_URL.to_string(),
        )
    });
    hangar_engine::actions::ActionSource::new(&url, args.offline)
        .map_err(|e| anyhow::anyhow!("{from}: {e}"))
}

fn load_pairs(
    workspace: &Path,
    file: Option<&Path>,
    default: &str,
    into: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let p = workspace.join(default);
            if !p.is_file() {
                return Ok(());
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    for (k, v) in hangar_engine::dotenv::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    {
        into.insert(k, v);
    }
    Ok(())
}

/// Each environment's own secrets (or variables): the files named as the
/// run-wide one plus `.ENV` (`.secrets.prod` beside `.secrets`, or
/// `FILE.prod` beside `--secret-file FILE`), then the `ENV:NAME=VALUE`
/// flags. Environment names are kept in lower case, as GitHub compares them.
fn load_environment_pairs(
    workspace: &Path,
    file: Option<&Path>,
    default: &str,
    flags: &[String],
    flag: &str,
    known: &[String],
    into: &mut BTreeMap<String, BTreeMap<String, String>>,
) -> anyhow::Result<()> {
    let base = file.map_or_else(|| workspace.join(default), Path::to_path_buf);
    let (Some(parent), Some(name)) = (base.parent(), base.file_name()) else {
        return Ok(());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let env = n.strip_prefix(&prefix)?.to_string();
            (!env.is_empty()).then(|| (env, e.path()))
        })
        .collect();
    files.sort();
    for (env, path) in files {
        load_pairs(
            workspace,
            Some(&path),
            default,
            into.entry(env.to_ascii_lowercase()).or_default(),
        )?;
    }
    for s in flags {
        let (env, pair) = s
            .split_once(':')
            .filter(|(e, p)| !e.is_empty() && !p.is_empty())
            .with_context(|| format!("{flag} {s}: expected ENV:NAME=VALUE"))?;
        let (k, v) = match pair.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (pair.to_string(), std::env::var(pair).unwrap_or_default()),
        };
        if !known.is_empty() && !known.iter().any(|e| e.eq_ignore_ascii_case(env)) {
            eprintln!(
                "warning: {flag} {env}:{k}: hangar.yml defines no environment `{env}` ({}); only a job naming it sees the value",
                known.join(", ")
            );
        }
        into.entry(env.to_ascii_lowercase())
            .or_default()
            .insert(k, v);
    }
    Ok(())
}

/// A workflow that did not load (YAML syntax, a duplicate key, a merge key) is
/// shown as `hangar validate` shows it: relative path, line, column, snippet.
fn report_load_error(path: &Path, error: &str, workspace: &Path, no_validate: bool) {
    if !no_validate && let Ok(text) = std::fs::read_to_string(path) {
        let diags = hangar_workflow::validate(&rel(path, workspace), &text);
        if diags
            .iter()
            .any(|d| d.severity == hangar_diag::Severity::Error)
        {
            for d in &diags {
                eprint!("{}", d.render(&text));
            }
            return;
        }
    }
    eprintln!("error: {error}");
}

/// Checks the workflows about to run as `hangar validate` does, so a typo is
/// reported at its line before any step has run. Warnings are printed and do not
/// stop the run; errors do. Returns whether the run may go on.
fn validate_first(workflows: &[Arc<Workflow>], workspace: &Path) -> bool {
    let mut errors = 0;
    for wf in workflows {
        let Ok(text) = std::fs::read_to_string(&wf.path) else {
            continue;
        };
        let name = rel(&wf.path, workspace);
        let callee = hangar_workflow::local_callee(workspace);
        for d in hangar_workflow::validate_with(&name, &text, &callee) {
            if d.severity == hangar_diag::Severity::Error {
                errors += 1;
            }
            eprint!("{}", d.render(&text));
        }
    }
    if errors > 0 {
        eprintln!(
            "{errors} error(s): nothing was run; fix them, or pass --no-validate to run anyway"
        );
    }
    errors == 0
}

fn rel(p: &Path, base: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

fn list(workflows: &[Arc<Workflow>], workspace: &Path) {
    let mut rows = vec![[
        "Stage".to_string(),
        "Job ID".into(),
        "Job name".into(),
        "Workflow name".into(),
        "Workflow file".into(),
        "Events".into(),
    ]];
    for wf in workflows {
        let events = wf.events().join(",");
        let stages = hangar_engine::plan::stages(wf, None).unwrap_or_default();
        for (i, stage) in stages.iter().enumerate() {
            for id in stage {
                let name = wf
                    .job(id)
                    .and_then(|j| j.get("name"))
                    .and_then(hangar_engine::workflow::scalar_string)
                    .unwrap_or_else(|| id.clone());
                rows.push([
                    i.to_string(),
                    id.clone(),
                    name,
                    wf.name.clone(),
                    rel(&wf.path, workspace),
                    events.clone(),
                ]);
            }
        }
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

fn graph(
    workflows: &[Arc<Workflow>],
    only: Option<&str>,
    workspace: &Path,
) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for wf in workflows {
        println!("{} ({})", wf.name, rel(&wf.path, workspace));
        match hangar_engine::plan::stages(wf, only) {
            Ok(stages) => {
                for (i, stage) in stages.iter().enumerate() {
                    let jobs: Vec<String> = stage
                        .iter()
                        .map(|id| {
                            let needs = wf
                                .job(id)
                                .map(hangar_engine::workflow::needs)
                                .unwrap_or_default();
                            if needs.is_empty() {
                                id.clone()
                            } else {
                                format!("{id} <- {}", needs.join(", "))
                            }
                        })
                        .collect();
                    println!("  stage {i}: {}", jobs.join("  |  "));
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

fn print_summary(summary: &hangar_engine::RunSummary) {
    let mut out = std::io::stdout().lock();
    let w = summary
        .jobs
        .iter()
        .map(|j| j.key.chars().count())
        .max()
        .unwrap_or(3)
        .max(3);
    let _ = writeln!(out, "\n{:<w$}  {:<9}  duration", "job", "result");
    for j in &summary.jobs {
        let _ = writeln!(
            out,
            "{:<w$}  {:<9}  {}",
            j.key,
            j.result.as_str(),
            fmt_ms(j.duration_ms)
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if summary.success {
            "run succeeded"
        } else {
            "run failed"
        }
    );
}

/// Live terminal view: lines grouped under their step, `[job] ` prefixes when
/// several jobs run, buffered and written once per chunk of output.
struct TerminalReporter {
    prefix: bool,
    out: Mutex<std::io::BufWriter<std::io::Stdout>>,
    /// Steps started and not yet finished, by job and step number: while a
    /// job has more than one (background and parallel steps), each log line
    /// carries its step's name so interleaved output stays readable.
    running: Mutex<std::collections::HashMap<(String, usize), String>>,
}

impl TerminalReporter {
    fn new(prefix: bool) -> TerminalReporter {
        TerminalReporter {
            prefix,
            out: Mutex::new(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stdout(),
            )),
            running: Mutex::default(),
        }
    }
}

impl Reporter for TerminalReporter {
    fn event(&self, event: Event) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let p = if self.prefix {
            format!("[{}] ", event.job())
        } else {
            String::new()
        };
        let _ = match &event {
            Event::JobStarted { name, job, .. } => {
                if name != job {
                    writeln!(out, "{p}Job {name}")
                } else {
                    writeln!(out, "{p}Job started")
                }
            }
            Event::StepStarted {
                name, job, step, ..
            } => {
                let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                running.insert((job.clone(), *step), name.clone());
                writeln!(out, "{p}> {name}")
            }
            Event::StepFinished {
                name,
                conclusion,
                outcome,
                duration_ms,
                job,
                step,
                ..
            } => {
                let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                running.remove(&(job.clone(), *step));
                let mark = match conclusion {
                    Conclusion::Success if *outcome == Conclusion::Failure => {
                        "ok (continue-on-error)"
                    }
                    Conclusion::Success => "ok",
                    Conclusion::Failure => "FAILED",
                    Conclusion::Cancelled => "cancelled",
                    Conclusion::Skipped => "skipped",
                };
                writeln!(out, "{p}< {name}: {mark} [{}]", fmt_ms(*duration_ms))
            }
            // GitHub's last section of a job's log.
            Event::JobCompleting { .. } => writeln!(out, "{p}> Complete job"),
            Event::Log {
                line, job, step, ..
            } => {
                let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                let concurrent = running.keys().filter(|(j, _)| j == job).count() > 1;
                match step.and_then(|n| running.get(&(job.clone(), n))) {
                    Some(name) if concurrent => writeln!(out, "{p}  | [{name}] {line}"),
                    _ => writeln!(out, "{p}  | {line}"),
                }
            }
            Event::Annotation {
                level,
                message,
                location,
                ..
            } => {
                let l = match level {
                    Level::Error => "error",
                    Level::Warning => "warning",
                    Level::Notice => "notice",
                };
                let mut at = String::new();
                if let Some(f) = &location.file {
                    at = format!(" ({f}");
                    if let Some(line) = location.line {
                        at.push_str(&format!(":{line}"));
                        if let Some(c) = location.col {
                            at.push_str(&format!(":{c}"));
                        }
                    }
                    at.push(')');
                }
                let title = location
                    .title
                    .as_deref()
                    .map(|t| format!("{t}: "))
                    .unwrap_or_default();
                writeln!(out, "{p}  {l}: {title}{message}{at}")
            }
            Event::GroupStart { title, .. } => writeln!(out, "{p}  ▸ {title}"),
            Event::GroupEnd { .. } => Ok(()),
            Event::Summary { markdown, .. } => {
                let mut r = Ok(());
                for l in markdown.lines() {
                    r = writeln!(out, "{p}  (summary) {l}");
                }
                r
            }
            Event::ActionResolved {
                uses,
                commit,
                cached,
                ..
            } => {
                let how = if *cached { "cached" } else { "downloaded" };
                writeln!(
                    out,
                    "{p}Download action repository '{uses}' (SHA:{commit}) [{how}]"
                )
            }
            Event::JobOutputs { outputs, .. } => {
                let keys: Vec<&str> = outputs.keys().map(String::as_str).collect();
                writeln!(out, "{p}outputs: {}", keys.join(", "))
            }
            Event::JobFinished {
                result,
                duration_ms,
                ..
            } => {
                let r = writeln!(
                    out,
                    "{p}Job {} in {}",
                    result.as_str(),
                    fmt_ms(*duration_ms)
                );
                let _ = out.flush();
                r
            }
        };
    }

    fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }
}

/// `--json`: one event per line.
#[derive(Default)]
struct JsonReporter {
    out: Mutex<Option<std::io::BufWriter<std::io::Stdout>>>,
}

impl Reporter for JsonReporter {
    fn event(&self, event: Event) {
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let out = guard.get_or_insert_with(|| std::io::BufWriter::new(std::io::stdout()));
        if let Ok(s) = serde_json::to_string(&event) {
            let _ = writeln!(out, "{s}");
        }
    }

    fn flush(&self) {
        if let Some(out) = self.out.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = out.flush();
        }
    }
}
