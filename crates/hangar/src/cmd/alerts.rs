//! `hangar alerts`: the alert rules of hangar.yml as the environment's
//! controller last evaluated them, and silences. The work is
//! `hangar_deploy::alerts`'s; silences are a file, so no controller need run.

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::{Args as ClapArgs, Subcommand};
use hangar_deploy::alerts::{self, AlertPhase};
use hangar_deploy::state::EnvFiles;

#[derive(ClapArgs)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
    hangar alerts                              # every environment's rules and where they stand\n  \
    hangar alerts prod\n  \
    hangar alerts silence prod api-errors --for 1h\n  \
    hangar alerts unsilence prod api-errors"
)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// The environment to list [default: every environment with alert rules].
    #[arg(value_name = "ENV")]
    env: Option<String>,
    #[command(flatten)]
    at: super::ProjectArgs,
}

#[derive(Subcommand)]
enum Action {
    /// Mute a rule's notifications for a while (it is still evaluated and listed).
    Silence {
        env: String,
        rule: String,
        /// How long (`30m`, `1h`, `2d`).
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
    },
    /// Lift a rule's silence.
    Unsilence { env: String, rule: String },
}

fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then) / 1000;
    match s {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s => format!("{}h ago", s / 3600),
    }
}

/// Time left, rounded to the nearest unit shown.
fn left(now: u64, until: u64) -> String {
    let s = (until.saturating_sub(now) + 500) / 1000;
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", (s + 30) / 60),
        s => format!("{}h", (s + 1800) / 3600),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (dir, data) = args.at.resolve()?;
    let (_, project) = hangar_project::load(&dir).map_err(|e| anyhow!("{e}"))?;
    let env_known = |env: &str| -> anyhow::Result<&hangar_project::Environment> {
        match project.environments.get(env) {
            Some(e) => Ok(&e.value),
            None => {
                let known: Vec<&str> = project.environments.keys().map(String::as_str).collect();
                bail!(
                    "unknown environment `{env}`{}",
                    match hangar_diag::did_you_mean(env, known.iter().copied()) {
                        Some(k) => format!(": did you mean `{k}`?"),
                        None => format!(" (hangar.yml defines {})", known.join(", ")),
                    }
                )
            }
        }
    };
    let rule_known = |env: &str, rule: &str| -> anyhow::Result<()> {
        let rules: Vec<&str> = env_known(env)?
            .alerts
            .as_ref()
            .map(|a| a.rules.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if rules.contains(&rule) {
            return Ok(());
        }
        bail!(
            "environment `{env}` has no alert rule `{rule}`{}",
            match hangar_diag::did_you_mean(rule, rules.iter().copied()) {
                Some(k) => format!(": did you mean `{k}`?"),
                None if rules.is_empty() => " (it has no `alerts: rules:` in hangar.yml)".into(),
                None => format!(" (its rules: {})", rules.join(", ")),
            }
        )
    };
    let now = hangar_deploy::supervisor::now_unix_ms();
    match args.action {
        Some(Action::Silence {
            env,
            rule,
            duration,
        }) => {
            rule_known(&env, &rule)?;
            let d = hangar_project::parse_duration(&duration)
                .map_err(|e| anyhow!("--for {duration}: {e}"))?;
            if d.is_zero() {
                bail!(
                    "--for must be more than 0 (`hangar alerts unsilence {env} {rule}` lifts a silence)"
                );
            }
            alerts::silence(&EnvFiles::new(&data, &env).dir, &rule, d)?;
            println!(
                "`{rule}` in `{env}` is silenced for {duration}: it is still evaluated, and notifies nothing until then"
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Action::Unsilence { env, rule }) => {
            rule_known(&env, &rule)?;
            alerts::silence(
                &EnvFiles::new(&data, &env).dir,
                &rule,
                std::time::Duration::ZERO,
            )?;
            println!("`{rule}` in `{env}` notifies again");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let envs: Vec<String> = match &args.env {
                Some(env) => {
                    env_known(env)?;
                    vec![env.clone()]
                }
                None => project
                    .environments
                    .iter()
                    .filter(|(_, e)| e.value.alerts.as_ref().is_some_and(|a| !a.rules.is_empty()))
                    .map(|(n, _)| n.clone())
                    .collect(),
            };
            let mut json = Vec::new();
            let mut firing = 0;
            for env in &envs {
                let rules: Vec<String> = project.environments[env.as_str()]
                    .value
                    .alerts
                    .as_ref()
                    .map(|a| a.rules.keys().cloned().collect())
                    .unwrap_or_default();
                let (records, silences) = alerts::list(&EnvFiles::new(&data, env).dir);
                let silences: Vec<(String, u64)> =
                    silences.into_iter().filter(|(_, u)| *u > now).collect();
                firing += records
                    .iter()
                    .filter(|r| r.phase == AlertPhase::Firing)
                    .count();
                if args.at.json {
                    json.push(serde_json::json!({
                        "env": env, "rules": rules, "alerts": records,
                        "silences": silences.iter().map(|(r, u)| serde_json::json!({"rule": r, "until_ms": u})).collect::<Vec<_>>(),
                    }));
                    continue;
                }
                println!("{env}");
                // Alerts of no rule of hangar.yml's (the scheduled backups'
                // `backup` and `backup-rpo`) are listed after the rules'.
                let mut rules = rules;
                for r in &records {
                    if !rules.contains(&r.rule) {
                        rules.push(r.rule.clone());
                    }
                }
                if rules.is_empty() {
                    println!(
                        "  no alert rules (add `alerts: rules:` to the environment in hangar.yml)"
                    );
                    continue;
                }
                println!(
                    "  {:<16} {:<10} {:<9} {:<14} {:<22} {:<9} SINCE",
                    "RULE", "SERVICE", "STATE", "VALUE", "THRESHOLD", "SEVERITY"
                );
                for rule in &rules {
                    let silenced = silences
                        .iter()
                        .find(|(r, _)| r == rule)
                        .map(|(_, u)| format!("  (silenced, {} left)", left(now, *u)))
                        .unwrap_or_default();
                    let mine: Vec<_> = records.iter().filter(|r| &r.rule == rule).collect();
                    if mine.is_empty() {
                        println!(
                            "  {rule:<16} {:<10} not evaluated yet (the controller evaluates rules while `hangar up` runs){silenced}",
                            "-"
                        );
                    }
                    for r in mine {
                        let state = match r.phase {
                            AlertPhase::Inactive => "ok",
                            AlertPhase::Pending => "pending",
                            AlertPhase::Firing => "FIRING",
                            AlertPhase::Resolved => "resolved",
                        };
                        let since = match r.phase {
                            AlertPhase::Resolved => r.resolved_ms,
                            AlertPhase::Firing => r.fired_ms,
                            _ => r.since_ms,
                        }
                        .map(|t| ago(now, t))
                        .unwrap_or_default();
                        println!(
                            "  {:<16} {:<10} {:<9} {:<14} {:<22} {:<9} {since}{silenced}",
                            r.rule,
                            r.service,
                            state,
                            r.value,
                            r.threshold,
                            format!("{:?}", r.severity).to_lowercase(),
                        );
                    }
                }
            }
            if args.at.json {
                println!("{}", serde_json::to_string_pretty(&json)?);
            } else if envs.is_empty() {
                println!(
                    "no environment has alert rules (add `alerts: rules:` to one in hangar.yml)"
                );
            }
            // Like `hangar status` for scripts: 1 when something fires.
            Ok(if firing > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
