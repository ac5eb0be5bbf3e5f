//! Whether a deploying action may act on a protected environment, decided
//! once for every path that deploys: `hangar deploy|rollback|promote`,
//! `hangar up ENV` and the `hangar/deploy@v1` step of a workflow.
//!
//! hangar.yml's `protection:` (reviewers, a wait timer) is enforced by a
//! hangar server, which asks the reviewers and waits. Without one the action
//! is refused, unless the caller sets the protection aside explicitly with a
//! reason, which is recorded in the environment's history before the action
//! runs (`overrides.jsonl`, shown by `hangar history ENV`).

use std::path::Path;

use anyhow::{Context, bail};

use crate::state::{EnvFiles, ProtectionOverride};

/// Who is asking, so that the refusal names the ways on in the caller's own
/// terms (command-line flags, or the step's inputs).
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// `hangar <command> ENV` (`deploy`, `rollback`, `promote`, `up`).
    Cli(&'a str),
    /// `uses: hangar/deploy@v1` in a workflow.
    Step,
}

impl Caller<'_> {
    fn command(&self) -> &str {
        match self {
            Caller::Cli(c) => c,
            Caller::Step => "hangar/deploy",
        }
    }
}

/// How the caller may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    /// The environment has no reviewers and no wait timer: act directly.
    Open,
    /// Protected, and a server is configured: the action must go through
    /// it, which asks the reviewers and waits. (A caller given a server may
    /// go through it for an open environment too; that is its choice.)
    Server,
    /// Protected, no server, overridden: the override is on the record; act.
    /// The text says so, for the caller to print.
    Overridden(String),
}

/// What the caller brings: a server to go through, or an override.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    /// A hangar server is configured (`--server`, `HANGAR_SERVER`, the step's `server` input).
    pub server: bool,
    /// `--override-protection` / the step's `override-protection: true`.
    pub override_protection: bool,
    /// `--reason` / the step's `reason`.
    pub reason: Option<String>,
    /// Who overrides (recorded); `None`: `HANGAR_ACTOR`, else the login name.
    pub actor: Option<String>,
    /// A server already decided this environment's protection for the
    /// action: an agent's job runs only once the reviewers of the job's own
    /// `environment:` approved it and its wait timer passed.
    pub approved: bool,
}

/// What hangar.yml's `protection:` asks of a direct action on `env`, as text
/// (`reviewers: sre; wait: 60s`), or `None` when nothing: reviewers and wait
/// timers are decided by a server; `branches` only applies to workflow runs.
pub fn rules(dir: &Path, env: &str) -> anyhow::Result<Option<String>> {
    let (_, project) = hangar_project::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Environment names compare without case, as on the server.
    let Some(p) = project
        .environments
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(env))
        .and_then(|(_, e)| e.value.protection.as_ref())
    else {
        return Ok(None);
    };
    let mut rules = Vec::new();
    if !p.reviewers.is_empty() {
        rules.push(format!("reviewers: {}", p.reviewers.join(", ")));
    }
    if let Some(w) = p.wait.as_ref().filter(|w| !w.0.is_zero()) {
        rules.push(format!("wait: {}s", w.0.as_secs()));
    }
    Ok((!rules.is_empty()).then(|| rules.join("; ")))
}

/// The one decision: `dir` holds hangar.yml, `files` are the environment's
/// files where an override is recorded. An `Err` is the refusal, saying both
/// ways on in the caller's terms.
pub fn decide(
    dir: &Path,
    files: &EnvFiles,
    env: &str,
    caller: Caller<'_>,
    ask: &Ask,
) -> anyhow::Result<Way> {
    let Some(rules) = rules(dir, env)? else {
        return Ok(Way::Open);
    };
    if ask.approved {
        return Ok(Way::Open);
    }
    if ask.server {
        return Ok(Way::Server);
    }
    if !ask.override_protection {
        match caller {
            Caller::Cli(command) => bail!(
                "environment `{env}` is protected ({rules}): `hangar {command} {env}` does not act on it directly.\n\
                 Either go through a hangar server that watches this project, which asks the reviewers and waits:\n  \
                 hangar {command} {env} --server URL --token TOKEN   (or HANGAR_SERVER and HANGAR_TOKEN)\n\
                 or, with no server, set the protection aside on the record:\n  \
                 hangar {command} {env} --override-protection --reason \"why\"   (kept in `hangar history {env}`)"
            ),
            Caller::Step => bail!(
                "environment `{env}` is protected ({rules}): hangar/deploy does not deploy to it directly.\n\
                 Either go through a hangar server that watches this project, which asks the reviewers and waits:\n  \
                 with: {{ server: URL, token: ${{{{ secrets.HANGAR_TOKEN }}}} }}   (or HANGAR_SERVER and HANGAR_TOKEN in the step's env)\n\
                 or, with no server, set the protection aside on the record:\n  \
                 with: {{ override-protection: true, reason: \"why\" }}   (kept in `hangar history {env}`)"
            ),
        }
    }
    let reason = ask.reason.clone().unwrap_or_default();
    if reason.trim().is_empty() {
        match caller {
            Caller::Cli(_) => bail!("--override-protection needs a --reason that says why"),
            Caller::Step => {
                bail!(
                    "hangar/deploy: `override-protection: true` needs a `reason` input that says why"
                )
            }
        }
    }
    let by = ask
        .actor
        .clone()
        .filter(|a| !a.trim().is_empty())
        .or_else(|| std::env::var("HANGAR_ACTOR").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    files
        .record_override(&ProtectionOverride {
            at_ms,
            by: by.clone(),
            command: caller.command().into(),
            reason: reason.clone(),
            rules: rules.clone(),
        })
        .with_context(|| format!("recording the override in {}", files.dir.display()))?;
    Ok(Way::Overridden(format!(
        "protection of `{env}` ({rules}) overridden by {by}: {reason}"
    )))
}
