//! `on: workflow_run`: which workflows wait for a run, and the event they get.
//!
//! One reading for `hangar run --follow-workflow-run` and the server, so a
//! local chain and a served one trigger the same workflows with the same
//! `github.event.workflow_run`.
//!
//! GitHub's rules kept here: `workflows:` names the triggering workflow by its
//! `name:` (a workflow without one is known by its file path, as GitHub shows
//! it); `types:` defaults to `requested` and `completed`; `branches` /
//! `branches-ignore` match the triggering run's head branch; a chain stops
//! after [`MAX_DEPTH`] levels of `workflow_run`.

use serde_json::{Value, json};

use hangar_workflow::model::{Spanned, Trigger};

/// A workflow started by `workflow_run` may itself start others, three levels
/// deep at most: in A → B → C → D → E only B, C and D run (GitHub's limit).
pub const MAX_DEPTH: u32 = 3;

/// The activity types GitHub sends for `workflow_run`.
pub const TYPES: &[&str] = &["requested", "in_progress", "completed"];

/// What GitHub tells about the triggering run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggeringRun {
    pub id: i64,
    /// The triggering workflow's `name:`, or its path when it has none.
    pub name: String,
    /// `.github/workflows/ci.yml`.
    pub path: String,
    pub head_branch: String,
    pub head_sha: String,
    /// The event that started the triggering run (`push`, `pull_request`...).
    pub event: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// `success`, `failure`, `cancelled`, `skipped`... once completed.
    pub conclusion: Option<String>,
    pub run_number: i64,
    pub run_attempt: i64,
    pub workflow_id: i64,
    /// `https://github.com` or the server's own URL.
    pub server_url: String,
    /// The triggering run's `repository` object (`full_name`, `default_branch`...).
    pub repository: Value,
    pub actor: String,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

/// Does a workflow whose `on.workflow_run` is `trigger` start for `action`
/// (`requested`, `in_progress`, `completed`) of `run`?
pub fn follows(trigger: &Trigger, run: &TriggeringRun, action: &str) -> bool {
    if trigger.event.value != "workflow_run" {
        return false;
    }
    // GitHub runs nothing for a `workflow_run` without `workflows:`.
    let Some(workflows) = &trigger.workflows else {
        return false;
    };
    if !workflows
        .iter()
        .any(|w| w.value == run.name || w.value == run.path)
    {
        return false;
    }
    let type_ok = match &trigger.types {
        Some(types) if !types.is_empty() => types.iter().any(|t| t.value == action),
        _ => action == "requested" || action == "completed",
    };
    type_ok
        && branch_ok(
            &trigger.branches,
            &trigger.branches_ignore,
            &run.head_branch,
        )
}

fn branch_ok(
    include: &Option<Vec<Spanned<String>>>,
    ignore: &Option<Vec<Spanned<String>>>,
    branch: &str,
) -> bool {
    let listed = |list: &[Spanned<String>]| {
        // Later `!pattern` entries exclude what earlier ones included.
        let mut hit = false;
        for p in list {
            match p.value.strip_prefix('!') {
                Some(neg) if pattern_match(neg, branch) => hit = false,
                Some(_) => {}
                None if pattern_match(&p.value, branch) => hit = true,
                None => {}
            }
        }
        hit
    };
    match (include, ignore) {
        (Some(inc), _) => listed(inc),
        (None, Some(exc)) => !listed(exc),
        (None, None) => true,
    }
}

/// GitHub's filter patterns: `*` within a path segment, `**` across them.
fn pattern_match(pattern: &str, value: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    glob::Pattern::new(pattern)
        .map(|p| p.matches_with(value, opts))
        .unwrap_or(pattern == value)
}

/// `github.event` of a run started by `action` of `run`, in GitHub's shape
/// (`action`, `workflow_run`, `workflow`, `repository`, `sender`).
pub fn payload(run: &TriggeringRun, action: &str) -> Value {
    let repo = run
        .repository
        .get("full_name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let base = run.server_url.trim_end_matches('/');
    let api = format!("{base}/api/v3/repos/{repo}");
    let actor = json!({"login": run.actor});
    json!({
        "action": action,
        "workflow_run": {
            "id": run.id,
            "name": run.name,
            "display_title": run.name,
            "path": run.path,
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "event": run.event,
            "status": run.status,
            "conclusion": run.conclusion,
            "run_number": run.run_number,
            "run_attempt": run.run_attempt,
            "workflow_id": run.workflow_id,
            "url": format!("{api}/actions/runs/{}", run.id),
            "html_url": format!("{base}/{repo}/actions/runs/{}", run.id),
            "jobs_url": format!("{api}/actions/runs/{}/jobs", run.id),
            "logs_url": format!("{api}/actions/runs/{}/logs", run.id),
            "workflow_url": format!("{api}/actions/workflows/{}", run.workflow_id),
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "run_started_at": run.created_at,
            "pull_requests": [],
            "actor": actor,
            "triggering_actor": actor,
            "head_commit": {"id": run.head_sha},
            "repository": run.repository,
            "head_repository": run.repository,
        },
        "workflow": {
            "id": run.workflow_id,
            "name": run.name,
            "path": run.path,
            "state": "active",
            "html_url": format!("{base}/{repo}/blob/{}/{}", default_branch(run), run.path),
        },
        "repository": run.repository,
        "sender": actor,
    })
}

/// The branch a started run's workflow file, `github.ref` and `github.sha`
/// come from: the repository's default branch, whatever branch triggered it.
pub fn default_branch(run: &TriggeringRun) -> &str {
    run.repository
        .get("default_branch")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .unwrap_or("main")
}

/// A stable id for a workflow file (GitHub's `workflow_id` is a number).
pub fn workflow_id(path: &str) -> i64 {
    // FNV-1a folded to 31 bits: the same file gets the same id in every run.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::try_from(h & 0x7fff_ffff).unwrap_or(0)
}

/// The conclusion of `workflow`'s run from its jobs' results: failed when
/// one failed, cancelled when one was, skipped when all were, else success.
pub fn conclusion(jobs: &[crate::run::JobSummary], workflow: &str) -> &'static str {
    use crate::report::Conclusion as C;
    let mine: Vec<C> = jobs
        .iter()
        .filter(|j| j.workflow == workflow)
        .map(|j| j.result)
        .collect();
    if mine.contains(&C::Failure) {
        "failure"
    } else if mine.contains(&C::Cancelled) {
        "cancelled"
    } else if !mine.is_empty() && mine.iter().all(|c| *c == C::Skipped) {
        "skipped"
    } else {
        "success"
    }
}

/// The triggering run as `hangar run` knows it: `workflow` of `run`.
pub fn from_local(
    run: &crate::RunContext,
    workflow: &crate::Workflow,
    status: &str,
    conclusion: Option<&str>,
) -> TriggeringRun {
    let path = crate::workflow::repo_path(&workflow.path);
    let now = chrono_now();
    TriggeringRun {
        id: run.run_id.parse().unwrap_or(0),
        name: workflow.name.clone(),
        workflow_id: workflow_id(&path),
        path,
        head_branch: run.ref_name_and_type().0,
        head_sha: run.sha.clone(),
        event: run.event_name.clone(),
        status: status.to_string(),
        conclusion: conclusion.map(str::to_string),
        run_number: run.run_number.parse().unwrap_or(1),
        run_attempt: run.run_attempt.parse().unwrap_or(1),
        server_url: run.server_url.clone(),
        repository: run
            .event
            .get("repository")
            .cloned()
            .unwrap_or_else(|| json!({"full_name": run.repository, "default_branch": "main"})),
        actor: run.actor.clone(),
        created_at: now.clone(),
        updated_at: now,
    }
}

/// The run context of a workflow `hangar run` starts for `action` of
/// `triggering`: the parent's secrets, variables and services, with
/// `github.ref` and `github.sha` of the default branch (its commit when the
/// repository has that branch, else the parent's).
pub fn local_context(
    parent: &crate::RunContext,
    triggering: &TriggeringRun,
    action: &str,
    seq: usize,
) -> crate::RunContext {
    let mut run = crate::RunContext::new(
        &parent.workspace,
        "workflow_run",
        Some(payload(triggering, action)),
    );
    let branch = default_branch(triggering);
    run.git_ref = format!("refs/heads/{branch}");
    // The ref is `refs/heads/...`, never an option; `^{commit}` refuses a tag or tree.
    run.sha = hangar_git::Git::new(&parent.workspace)
        .args(&["rev-parse", "--verify", "-q"])
        .value(format!("refs/heads/{branch}^{{commit}}"))
        .output()
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| s.len() == 40)
        .unwrap_or_else(|| parent.sha.clone());
    run.repository = parent.repository.clone();
    run.actor = parent.actor.clone();
    run.secrets = parent.secrets.clone();
    run.vars = parent.vars.clone();
    run.environment_secrets = parent.environment_secrets.clone();
    run.environment_vars = parent.environment_vars.clone();
    run.env = parent.env.clone();
    run.data_dir = parent.data_dir.clone();
    run.services = parent.services.clone();
    run.server_url = parent.server_url.clone();
    run.debug = parent.debug;
    run.deploy_home = parent.deploy_home.clone();
    run.run_id = format!("{}{seq}", parent.run_id);
    run.run_dir = parent.run_dir.with_file_name(format!(
        "{}-workflow-run-{seq}",
        parent
            .run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    run
}

fn chrono_now() -> String {
    let secs = crate::report::now_ms() / 1000;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_workflow::model::Workflow;

    fn trigger(on: &str) -> Trigger {
        let w = Workflow::parse(&format!("on:\n{on}jobs: {{}}\n")).unwrap();
        w.trigger("workflow_run").unwrap().clone()
    }

    fn ci(branch: &str) -> TriggeringRun {
        TriggeringRun {
            name: "CI".into(),
            path: ".github/workflows/ci.yml".into(),
            head_branch: branch.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_types_and_branches_as_github_reads_them() {
        let t =
            trigger("  workflow_run:\n    workflows: [CI]\n    branches: [main, 'release/**']\n");
        assert!(follows(&t, &ci("main"), "completed"));
        assert!(follows(&t, &ci("main"), "requested"));
        // Default types are requested and completed, not in_progress.
        assert!(!follows(&t, &ci("main"), "in_progress"));
        assert!(follows(&t, &ci("release/1.0"), "completed"));
        assert!(!follows(&t, &ci("feature"), "completed"));
        let mut other = ci("main");
        other.name = "Lint".into();
        other.path = ".github/workflows/lint.yml".into();
        assert!(!follows(&t, &other, "completed"));

        let t = trigger(
            "  workflow_run:\n    workflows: [.github/workflows/ci.yml]\n    types: [in_progress]\n    branches-ignore: ['wip/*']\n",
        );
        assert!(follows(&t, &ci("main"), "in_progress"));
        assert!(!follows(&t, &ci("main"), "completed"));
        assert!(!follows(&t, &ci("wip/x"), "in_progress"));

        // No `workflows:`: GitHub starts nothing.
        assert!(!follows(
            &trigger("  workflow_run: {}\n"),
            &ci("main"),
            "completed"
        ));
    }

    #[test]
    fn payload_has_githubs_fields() {
        let mut run = ci("feature");
        run.id = 42;
        run.conclusion = Some("success".into());
        run.status = "completed".into();
        run.server_url = "http://127.0.0.1:8080".into();
        run.repository = json!({"full_name": "o/r", "default_branch": "trunk"});
        let p = payload(&run, "completed");
        assert_eq!(p["action"], "completed");
        assert_eq!(p["workflow_run"]["conclusion"], "success");
        assert_eq!(p["workflow_run"]["head_branch"], "feature");
        assert_eq!(
            p["workflow_run"]["html_url"],
            "http://127.0.0.1:8080/o/r/actions/runs/42"
        );
        assert_eq!(p["repository"]["full_name"], "o/r");
        assert_eq!(default_branch(&run), "trunk");
        assert_eq!(workflow_id("a.yml"), workflow_id("a.yml"));
        assert_ne!(workflow_id("a.yml"), workflow_id("b.yml"));
    }
}
