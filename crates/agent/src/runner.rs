//! What actually runs a job. The agent is generic over [`JobRunner`]; the workflow
//! engine provides the real one. [`ShellRunner`] runs the `run:` steps the server
//! planned with `bash`, which is enough for the server's own end-to-end tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::protocol::Assignment;
use crate::reporter::Reporter;

#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub conclusion: String,
    pub outputs: BTreeMap<String, String>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub trait JobRunner: Send + Sync + 'static {
    fn run(
        &self,
        job: Assignment,
        workspace: PathBuf,
        reporter: Reporter,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, JobOutcome>;
}

/// Runs each planned step's `run:` script with `bash -e`, in order, stopping at the
/// first failure; a cancel kills the step's process group. `${{ }}` templates in
/// `run:`, `env:` and `name:` are evaluated with `hangar-expr` over the `github`,
/// `secrets`, `vars`, `inputs`, `matrix`, `needs` and `env` contexts. This is the
/// server's test seam until the workflow engine's runner replaces it: no `uses:`,
/// no `if:`, no workflow commands beyond what the server itself parses from logs.
pub struct ShellRunner;

fn contexts(
    job: &Assignment,
    ws: &std::path::Path,
    env: &BTreeMap<String, String>,
) -> hangar_expr::Contexts {
    hangar_expr::Contexts::from_json(&serde_json::json!({
        "github": {
            "sha": job.sha, "ref": job.git_ref, "event_name": job.event_name, "event": job.event,
            "repository": job.repository, "run_id": job.run_id.to_string(), "job": job.job_key,
            "workspace": ws.to_string_lossy(),
            "ref_name": job.git_ref.rsplit('/').next().unwrap_or(""),
        },
        "secrets": job.secrets,
        "vars": job.vars,
        "inputs": job.inputs,
        "matrix": job.spec.get("matrix").cloned().unwrap_or_default(),
        "needs": job.needs,
        "env": env,
    }))
}

/// Evaluates `${{ }}` in `text`; a bad expression is reported and fails the step.
fn render(text: &str, ctx: &hangar_expr::Contexts) -> Result<String, String> {
    if !text.contains("${{") {
        return Ok(text.to_string());
    }
    let t = hangar_expr::Template::parse(text)
        .map_err(|e| format!("{} (at byte {})", e.message, e.offset))?;
    t.eval_to_string(ctx, &hangar_expr::DefaultHost)
        .map_err(|e| e.to_string())
}

impl JobRunner for ShellRunner {
    fn run(
        &self,
        job: Assignment,
        ws: PathBuf,
        reporter: Reporter,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, JobOutcome> {
        Box::pin(async move {
            let steps = job
                .spec
                .get("steps")
                .and_then(|s| s.as_array())
                .cloned()
                .unwrap_or_default();
            let mut conclusion = "success".to_string();
            for (i, step) in steps.iter().enumerate() {
                let name = step
                    .get("name")
                    .and_then(|v| v.as_str())
                    .map(String::from)
                    .or_else(|| {
                        step.get("run")
                            .and_then(|v| v.as_str())
                            .map(|r| format!("Run {}", r.lines().next().unwrap_or("")))
                    })
                    .unwrap_or_else(|| format!("step {}", i + 1));
                let idx = i as i64;
                if conclusion != "success" {
                    reporter.step_finished(idx, &name, "skipped");
                    continue;
                }
                reporter.step_started(idx, &name);
                let Some(script) = step.get("run").and_then(|v| v.as_str()) else {
                    reporter.line(&format!(
                        "##[warning]step {name:?} has no run: script; the shell runner skips it"
                    ));
                    reporter.step_finished(idx, &name, "skipped");
                    continue;
                };
                let mut env: BTreeMap<String, String> = BTreeMap::new();
                let mut bad = None;
                for scope in [job.spec.get("env"), step.get("env")] {
                    if let Some(obj) = scope.and_then(|e| e.as_object()) {
                        for (k, v) in obj {
                            let raw = v
                                .as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string());
                            match render(&raw, &contexts(&job, &ws, &env)) {
                                Ok(val) => {
                                    env.insert(k.clone(), val);
                                }
                                Err(e) => bad = Some(format!("env {k}: {e}")),
                            }
                        }
                    }
                }
                let script = match (bad, render(script, &contexts(&job, &ws, &env))) {
                    (None, Ok(s)) => s,
                    (Some(e), _) | (None, Err(e)) => {
                        reporter.line(&format!("##[error]{name}: {e}"));
                        reporter.step_finished(idx, &name, "failure");
                        conclusion = "failure".into();
                        continue;
                    }
                };
                let ok = run_script(&script, &ws, &env, &job, &reporter, &cancel).await;
                let c = if cancel.is_cancelled() {
                    "cancelled"
                } else if ok {
                    "success"
                } else {
                    "failure"
                };
                reporter.step_finished(idx, &name, c);
                if c != "success" {
                    conclusion = c.to_string();
                }
            }
            JobOutcome {
                conclusion,
                outputs: BTreeMap::new(),
            }
        })
    }
}

async fn run_script(
    script: &str,
    ws: &std::path::Path,
    env: &BTreeMap<String, String>,
    job: &Assignment,
    reporter: &Reporter,
    cancel: &CancellationToken,
) -> bool {
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("--noprofile")
        .arg("--norc")
        .arg("-eo")
        .arg("pipefail")
        .arg("-c")
        .arg(script);
    cmd.current_dir(ws)
        .envs(env)
        .env("CI", "true")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_SHA", &job.sha)
        .env("GITHUB_REF", &job.git_ref)
        .env("GITHUB_EVENT_NAME", &job.event_name)
        .env("GITHUB_REPOSITORY", &job.repository)
        .env("GITHUB_JOB", &job.job_key)
        .env("GITHUB_RUN_ID", job.run_id.to_string())
        .env("GITHUB_WORKSPACE", ws)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            reporter.line(&format!("##[error]could not start bash: {e}"));
            return false;
        }
    };
    let pid = child.id();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let r1 = reporter.clone();
    let r2 = reporter.clone();
    let t1 = tokio::spawn(async move {
        let mut l = BufReader::new(out).lines();
        while let Ok(Some(line)) = l.next_line().await {
            r1.line(&line);
        }
    });
    let t2 = tokio::spawn(async move {
        let mut l = BufReader::new(err).lines();
        while let Ok(Some(line)) = l.next_line().await {
            r2.line(&line);
        }
    });
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = cancel.cancelled() => {
            if let Some(pid) = pid {
                // Kill the whole process group so grandchildren die too.
                let _ = std::process::Command::new("kill").arg("-KILL").arg(format!("-{pid}")).status();
            }
            let _ = child.kill().await;
            reporter.line("##[error]The operation was canceled.");
            None
        }
    };
    let _ = t1.await;
    let _ = t2.await;
    status.map(|s| s.success()).unwrap_or(false)
}
