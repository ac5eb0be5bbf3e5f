//! hangar's own steps for workflows: `uses: hangar/release@v1`,
//! `uses: hangar/deploy@v1` and `uses: hangar/scan@v1`, as engine built-in actions. Thin adapters: the work
//! is done by `hangar-release` and `hangar-deploy`; this crate only maps `with:`
//! inputs to their options and their results to step outputs. Both the local
//! `hangar run` and the server's agents register [`all`].

use std::path::PathBuf;
use std::sync::Arc;

use hangar_engine::builtin::{ActionCall, ActionResult, BuiltinAction};

/// Every hangar built-in, for `Engine::register`.
pub fn all() -> Vec<Arc<dyn BuiltinAction>> {
    vec![Arc::new(Release), Arc::new(Deploy), Arc::new(Scan)]
}

fn truthy(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
}

/// `hangar/release@v1`: inputs `dry-run`, `pre`, `as`, `package`, `no-commit`, `no-tag`;
/// outputs `released` (`true` only when a release was made: never in a dry
/// run, so a publishing step gated on it does not run for a preview),
/// `would-release` (a release is due, dry run or not), `version`, `tag`, `notes`.
struct Release;

impl BuiltinAction for Release {
    fn name(&self) -> &str {
        "hangar/release"
    }

    fn run(&self, call: &ActionCall) -> ActionResult {
        let force = match call.input("as").trim() {
            "" => None,
            v => match semver::Version::parse(v.trim_start_matches('v')) {
                Ok(v) => Some(v),
                Err(e) => {
                    call.output.error(&format!(
                        "hangar/release: input `as` is not a semantic version: {e}"
                    ));
                    return ActionResult::failed();
                }
            },
        };
        let opts = hangar_release::Options {
            dir: call.workspace.clone(),
            dry_run: truthy(call.input("dry-run")),
            pre: Some(call.input("pre").trim().to_string()).filter(|p| !p.is_empty()),
            force,
            package: Some(call.input("package").trim().to_string()).filter(|p| !p.is_empty()),
            no_commit: truthy(call.input("no-commit")),
            no_tag: truthy(call.input("no-tag")),
        };
        let outcomes = match hangar_release::run(&opts) {
            Ok(o) => o,
            Err(e) => {
                call.output.error(&format!("hangar/release: {e:#}"));
                return ActionResult::failed();
            }
        };
        let mut result = ActionResult::ok();
        let first = outcomes.iter().find(|o| o.released).or(outcomes.first());
        for o in &outcomes {
            for n in &o.nonconforming {
                call.output.warning(&format!(
                    "commit {} is not a Conventional Commit: {}",
                    &n.sha[..7.min(n.sha.len())],
                    n.subject
                ));
            }
            match (&o.version, o.released) {
                (Some(v), true) => {
                    // A dry run released nothing: say so, as `hangar release --dry-run` does.
                    let verb = if opts.dry_run {
                        "would release"
                    } else {
                        "released"
                    };
                    call.output.line(&format!(
                        "{}{verb} {v} ({})",
                        o.package
                            .as_deref()
                            .map(|p| format!("{p}: "))
                            .unwrap_or_default(),
                        o.tag.as_deref().unwrap_or("")
                    ));
                    for e in &o.explain {
                        call.output.line(&format!("  note: {e}"));
                    }
                }
                _ => call.output.line(&format!(
                    "nothing to release: {}",
                    o.reason.as_deref().unwrap_or("")
                )),
            }
        }
        let due = outcomes.iter().any(|o| o.released);
        result
            .outputs
            .insert("released".into(), (due && !opts.dry_run).to_string());
        result
            .outputs
            .insert("would-release".into(), due.to_string());
        if let Some(o) = first {
            result
                .outputs
                .insert("version".into(), o.version.clone().unwrap_or_default());
            result
                .outputs
                .insert("tag".into(), o.tag.clone().unwrap_or_default());
            result.outputs.insert("notes".into(), o.notes.clone());
        }
        result
    }
}

/// `hangar/deploy@v1`: inputs `environment` (default: the job's
/// `environment:`, evaluated), `service`, `artifact`, `no-build`, `with-dependencies`; `server`,
/// `token` and `project` (or `HANGAR_SERVER`/`HANGAR_TOKEN` in the step's
/// env) to deploy through a hangar server; `override-protection` and
/// `reason` to set a protected environment's rules aside on the record.
/// Outputs `version`, `outcome`. A protected environment is decided by
/// `hangar_deploy::protection`, as for `hangar deploy`. Directly, the
/// deployment runs in the environment's controller (started in the
/// background if none runs), so it outlives the job. In a job a server
/// leased (`RunContext::job_deploy`), no `server` means the server that
/// leased it: the job's own environment of the server's watched checkout,
/// at the job's commit, with the key the server gave that attempt (the
/// workspace ends with the job, so nothing may live there).
struct Deploy;

impl BuiltinAction for Deploy {
    fn name(&self) -> &str {
        "hangar/deploy"
    }

    fn run(&self, call: &ActionCall) -> ActionResult {
        let env = match call.input("environment").trim() {
            "" => call.environment.clone().unwrap_or_default(),
            e => e.to_string(),
        };
        if env.is_empty() {
            call.output.error("hangar/deploy: the `environment` input is required when the job has no `environment:` (e.g. `with: { environment: staging }`)");
            return ActionResult::failed();
        }
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                call.output.error(&format!("hangar/deploy: {e}"));
                return ActionResult::failed();
            }
        };
        let from_input_or_env = |input: &str, var: &str| {
            Some(call.input(input).trim().to_string())
                .filter(|s| !s.is_empty())
                .or_else(|| call.env.get(var).map(|v| v.trim().to_string()))
                .filter(|s| !s.is_empty())
        };
        let server = from_input_or_env("server", "HANGAR_SERVER");
        // A server's job without `server:` deploys through the server that
        // leased it: its workspace ends with the job, so a controller started
        // there would serve from a deleted directory (see `JobDeploy`).
        let via_job = match (&server, &call.run.job_deploy) {
            (None, Some(hangar_engine::JobDeploy::Refused(why))) => {
                call.output.error(&format!(
                    "hangar/deploy: this job cannot deploy `{env}` through the server that runs it: {why}"
                ));
                return ActionResult::failed();
            }
            (
                None,
                Some(hangar_engine::JobDeploy::Server {
                    url, job_id, key, ..
                }),
            ) => Some(hangar_deploy::client::ServerClient::for_job(
                url, *job_id, key,
            )),
            _ => None,
        };
        // A direct deployment outlives the job: under `hangar run`'s private
        // copy it belongs to the user's checkout (see `RunContext::deploy_home`).
        let dir = match &call.run.deploy_home {
            Some(home) if home != &call.workspace => {
                call.output.line(&format!(
                    "hangar/deploy: deploying the project in {} (the run's private copy ends with the run; --bind runs in place)",
                    home.display()
                ));
                home.clone()
            }
            _ => call.workspace.clone(),
        };
        let data = dir.join(".hangar");
        if via_job.is_none() {
            let ask = hangar_deploy::protection::Ask {
                server: server.is_some(),
                override_protection: truthy(call.input("override-protection")),
                reason: Some(call.input("reason").trim().to_string()).filter(|r| !r.is_empty()),
                actor: None,
                // An agent's job runs once the server decided its environment.
                approved: call.run.environment_approved
                    && call
                        .environment
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(&env)),
            };
            let files = hangar_deploy::state::EnvFiles::new(&data, &env);
            match hangar_deploy::protection::decide(
                &dir,
                &files,
                &env,
                hangar_deploy::protection::Caller::Step,
                &ask,
            ) {
                Ok(hangar_deploy::protection::Way::Overridden(line)) => call.output.warning(&line),
                Ok(_) => {}
                Err(e) => {
                    call.output.error(&format!("{e:#}"));
                    return ActionResult::failed();
                }
            }
        }
        let no_build = truthy(call.input("no-build"));
        let sha = call.env.get("GITHUB_SHA").cloned();
        let with_dependencies = truthy(call.input("with-dependencies"));
        let service = Some(call.input("service").trim().to_string()).filter(|s| !s.is_empty());
        let artifact = Some(call.input("artifact").trim().to_string()).filter(|s| !s.is_empty());
        if via_job.is_some() || server.is_some() {
            // The server deploys its own checkout of the project: an
            // artifact path of this workspace means nothing there.
            if artifact.is_some() {
                call.output.error("hangar/deploy: `artifact` cannot go through a server (it builds from its own checkout); leave it out or deploy directly");
                return ActionResult::failed();
            }
        }
        // The one deployment request, sent three ways below: what differs is
        // the artifact (a direct deployment only) and whether the commit is
        // built from itself (the server's own checkout) or is the workspace.
        let request =
            |artifact: Option<String>, from_commit: bool| hangar_deploy::control::Request::Deploy {
                service: service.clone(),
                artifact,
                commit: sha.clone(),
                commit_time: None,
                no_build,
                from_commit,
                with_dependencies,
            };
        let result = match (&via_job, &server) {
            (Some(client), _) => {
                call.output.line(&format!(
                    "hangar/deploy: deploying `{env}` through the server that runs this job (its watched checkout, at the job's commit)"
                ));
                // The server deploys the job's own commit, whatever is sent.
                let req = request(None, true);
                rt.block_on(client.deploy(&env, &req, |e| call.output.line(e)))
            }
            (None, Some(server)) => {
                let project = from_input_or_env("project", "HANGAR_PROJECT").unwrap_or_else(|| {
                    call.run
                        .repository
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                });
                let client = hangar_deploy::client::ServerClient::new(
                    server,
                    from_input_or_env("token", "HANGAR_TOKEN"),
                    &project,
                );
                let req = request(None, false);
                rt.block_on(client.deploy(&env, &req, |e| call.output.line(e)))
            }
            (None, None) => {
                // A path of the job's workspace, where earlier steps built it;
                // the workspace is the checkout of the commit already.
                let req = request(
                    artifact
                        .as_ref()
                        .map(|a| call.workspace.join(a).display().to_string()),
                    false,
                );
                let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hangar"));
                let client = hangar_deploy::client::EnvClient::new(&exe, &dir, &data, &env);
                rt.block_on(client.deploy(&req, |e| call.output.line(e)))
            }
        };
        match result {
            Ok(recs) => {
                let recs: Vec<serde_json::Value> = recs
                    .iter()
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect();
                let ok = recs.iter().all(|r| r["outcome"] == "succeeded");
                let mut res = if ok {
                    ActionResult::ok()
                } else {
                    ActionResult::failed()
                };
                if let Some(last) = recs.last() {
                    res.outputs.insert(
                        "version".into(),
                        last["version"].as_str().unwrap_or_default().to_string(),
                    );
                    res.outputs.insert(
                        "outcome".into(),
                        last["outcome"].as_str().unwrap_or_default().to_string(),
                    );
                }
                if !ok {
                    call.output.error(&format!("hangar/deploy: the deployment to `{env}` did not succeed (rolled back or failed); see the log above"));
                }
                res
            }
            Err(e) => {
                call.output.error(&format!("hangar/deploy: {e:#}"));
                ActionResult::failed()
            }
        }
    }
}

/// `hangar/scan@v1`: inputs `kind` (`secrets`, `policy` or `deps`), `path` (default the workspace),
/// `git` (secrets: `true` or a range scans history), `config` and `baseline` (secrets),
/// `policy` and `namespace` (policy; comma-separated), `db` (deps: OSV directory),
/// `severity` (deps: only findings at or above `low`/`moderate`/`high`/`critical`),
/// `files`, `min`, `diff-min`, `base` (coverage: reports, total and added-lines thresholds),
/// `fail-on` (`error` (default), `warning`, `never`). Findings become annotations
/// (`::error file=,line=::`); output `findings` is their count.
struct Scan;

impl BuiltinAction for Scan {
    fn name(&self) -> &str {
        "hangar/scan"
    }

    fn run(&self, call: &ActionCall) -> ActionResult {
        let list = |name: &str| -> Vec<String> {
            call.input(name)
                .split([',', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let path = match call.input("path").trim() {
            "" => call.workspace.clone(),
            p => call.workspace.join(p),
        };
        let fail_on = match call.input("fail-on").trim() {
            "" | "error" => FailOn::Error,
            "warning" => FailOn::Warning,
            "never" | "none" => FailOn::Never,
            other => {
                call.output.error(&format!(
                    "hangar/scan: `fail-on: {other}` is not one of error, warning, never"
                ));
                return ActionResult::failed();
            }
        };
        let (errors, warnings) = match call.input("kind").trim() {
            "policy" => {
                let opts = hangar_policy::Options {
                    files: vec![path],
                    policy_dirs: list("policy")
                        .into_iter()
                        .map(|p| call.workspace.join(p))
                        .collect(),
                    namespaces: list("namespace"),
                    ..Default::default()
                };
                match hangar_policy::scan(&opts) {
                    Ok(report) => {
                        for o in &report.outcomes {
                            if o.level == hangar_policy::Level::Exception {
                                continue;
                            }
                            call.output.line(&hangar_findings::annotation(
                                &o.to_finding(Some(&call.workspace)),
                            ));
                        }
                        for input in report.unapplied() {
                            // Through `findings`, which escapes the path as a command property.
                            let path = input
                                .file
                                .strip_prefix(&call.workspace)
                                .unwrap_or(&input.file);
                            call.output.line(&hangar_findings::annotation(&hangar_findings::Finding {
                                rule_id: "hangar/scan".into(),
                                level: hangar_findings::Level::Warning,
                                message: "no policy rule applied to this input; check that the policies are written for this kind of file".into(),
                                location: Some(hangar_findings::Location {
                                    path: path.display().to_string(),
                                    line: 0,
                                    ..Default::default()
                                }),
                                fingerprint: None,
                                properties: Default::default(),
                            }));
                        }
                        (report.failures(), report.warnings())
                    }
                    Err(e) => {
                        call.output.error(&format!("hangar/scan: {e:#}"));
                        return ActionResult::failed();
                    }
                }
            }
            "coverage" => {
                let pct = |name: &str| -> Result<Option<f64>, String> {
                    match call.input(name).trim() {
                        "" => Ok(None),
                        v => v
                            .trim_end_matches('%')
                            .parse::<f64>()
                            .map(Some)
                            .map_err(|_| format!("hangar/scan: `{name}: {v}` is not a percentage")),
                    }
                };
                let (min, diff_min) = match (pct("min"), pct("diff-min")) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(e), _) | (_, Err(e)) => {
                        call.output.error(&e);
                        return ActionResult::failed();
                    }
                };
                let files: Vec<std::path::PathBuf> = list("files")
                    .iter()
                    .map(|f| call.workspace.join(f))
                    .collect();
                let base = Some(call.input("base").trim().to_string()).filter(|b| !b.is_empty());
                if diff_min.is_some() && base.is_none() {
                    call.output.error("hangar/scan: `diff-min` needs `base` (the branch the change is compared with)");
                    return ActionResult::failed();
                }
                match hangar_coverage::gate(&files, &call.workspace, min, diff_min, base.as_deref())
                {
                    Ok(gate) => {
                        for line in gate.summary.lines() {
                            call.output.line(line);
                        }
                        for a in &gate.annotations {
                            call.output.line(a);
                        }
                        // The table is also the job's summary, as a workflow step writes it.
                        if let Some(path) = call.env.get("GITHUB_STEP_SUMMARY")
                            && !path.is_empty()
                            && let Ok(mut f) = std::fs::OpenOptions::new()
                                .append(true)
                                .create(true)
                                .open(path)
                        {
                            use std::io::Write;
                            let _ = writeln!(f, "{}", gate.summary);
                        }
                        for f in &gate.failures {
                            call.output.error(&format!("hangar/scan: {f}"));
                        }
                        (gate.failures.len(), gate.annotations.len())
                    }
                    Err(e) => {
                        call.output.error(&format!("hangar/scan: {e:#}"));
                        return ActionResult::failed();
                    }
                }
            }
            "deps" => {
                let db = match call.input("db").trim() {
                    "" => match call.env.get("HANGAR_ADVISORY_DB") {
                        Some(d) => PathBuf::from(d),
                        None => {
                            call.output.error("hangar/scan: `kind: deps` needs `db:` (a directory of OSV advisories) or HANGAR_ADVISORY_DB");
                            return ActionResult::failed();
                        }
                    },
                    d => call.workspace.join(d),
                };
                let severity = match call.input("severity").trim() {
                    "" => None,
                    s => match s.parse::<hangar_advisories::severity::Severity>() {
                        Ok(level) => Some(level),
                        Err(e) => {
                            call.output.error(&format!("hangar/scan: severity: {e}"));
                            return ActionResult::failed();
                        }
                    },
                };
                match hangar_advisories::scan(&hangar_advisories::Options {
                    path,
                    db,
                    ignore_file: None,
                    today: None,
                }) {
                    Ok(report) => {
                        for w in &report.warnings {
                            call.output.warning(w);
                        }
                        // `severity: high` (seed 001's gate): findings below it are not errors.
                        let shown: Vec<&hangar_advisories::Vulnerability> = match severity {
                            Some(min) => report.at_least(min).collect(),
                            None => report.vulnerabilities.iter().collect(),
                        };
                        for v in &shown {
                            call.output.line(&hangar_findings::annotation(
                                &v.to_finding(Some(&call.workspace)),
                            ));
                        }
                        let errors = shown.iter().filter(|v| v.informational.is_none()).count();
                        let warnings = report.unpinned.len() + shown.len() - errors;
                        (errors, warnings)
                    }
                    Err(e) => {
                        call.output.error(&format!("hangar/scan: {e:#}"));
                        return ActionResult::failed();
                    }
                }
            }
            "secrets" => {
                // Findings are relative to `path`; annotations to the workspace.
                let prefix = path
                    .strip_prefix(&call.workspace)
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                let target = match call.input("git").trim() {
                    "" | "false" => hangar_secrets::Target::Tree(path),
                    "true" => hangar_secrets::Target::Git {
                        repo: path,
                        range: None,
                    },
                    range => hangar_secrets::Target::Git {
                        repo: path,
                        range: Some(range.to_string()),
                    },
                };
                let opt_path = |name: &str| match call.input(name).trim() {
                    "" => None,
                    p => Some(call.workspace.join(p)),
                };
                let opts = hangar_secrets::report::Options {
                    target,
                    config: opt_path("config"),
                    baseline: opt_path("baseline"),
                    threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
                };
                match hangar_secrets::report::run(&opts) {
                    Ok(report) => {
                        // Secrets stay redacted in the log: it is kept and shown to everyone.
                        for f in &report.findings {
                            let mut finding = f.to_finding(true);
                            if let Some(l) = finding.location.as_mut() {
                                l.path = prefix.join(&l.path).display().to_string();
                            }
                            call.output.line(&hangar_findings::annotation(&finding));
                        }
                        call.output.line(&report.summary());
                        (report.findings.len(), 0)
                    }
                    Err(e) => {
                        call.output.error(&format!("hangar/scan: {e}"));
                        return ActionResult::failed();
                    }
                }
            }
            other => {
                call.output.error(&format!(
                    "hangar/scan: `kind` must be `secrets`, `policy`, `deps` or `coverage`, got `{other}`"
                ));
                return ActionResult::failed();
            }
        };
        let failed = match fail_on {
            FailOn::Error => errors > 0,
            FailOn::Warning => errors + warnings > 0,
            FailOn::Never => false,
        };
        call.output
            .line(&format!("{errors} error(s), {warnings} warning(s)"));
        let mut res = if failed {
            ActionResult::failed()
        } else {
            ActionResult::ok()
        };
        res.outputs
            .insert("findings".into(), (errors + warnings).to_string());
        res
    }
}

#[derive(Clone, Copy)]
enum FailOn {
    Error,
    Warning,
    Never,
}
