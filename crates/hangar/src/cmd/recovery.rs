//! `hangar recovery`: project backups (deployment history and each stateful
//! service's data), restores, and drills that measure RPO and RTO. The work
//! is `hangar_deploy::recovery`'s.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as ClapArgs, Subcommand};
use hangar_deploy::recovery;

#[derive(ClapArgs)]
#[command(after_help = "Examples:\n  \
    hangar recovery backup prod              # history + every service's backup.run\n  \
    hangar recovery list prod\n  \
    hangar recovery drill prod --into drill  # restore the newest into `drill`, report RPO/RTO\n  \
    hangar recovery restore staging --from .hangar/backups/prod/20261204T020000.000Z")]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    at: super::ProjectArgs,
}

#[derive(Subcommand)]
enum Action {
    /// Back up an environment: its deployment history and each service's `backup.run`.
    Backup { env: String },
    /// An environment's backups, newest first.
    List { env: String },
    /// Restore a backup's data into an environment (each service's `backup.restore`).
    Restore {
        env: String,
        /// The backup directory [default: the newest backup of ENV].
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Restore the newest backup of ENV into a scratch environment, start it, and
    /// report the recovery point and time achieved against `recovery.rpo`/`rto`.
    Drill {
        env: String,
        /// The scratch environment (defined in hangar.yml with its own addresses).
        #[arg(long, default_value = "drill")]
        into: String,
        /// Leave the scratch environment running (Ctrl-C stops it).
        #[arg(long)]
        keep: bool,
    },
}

fn ms(ms: u64) -> String {
    match ms {
        m if m < 1_000 => format!("{m} ms"),
        m if m < 120_000 => format!("{:.1} s", m as f64 / 1000.0),
        m if m < 7_200_000 => format!("{:.1} min", m as f64 / 60_000.0),
        m => format!("{:.1} h", m as f64 / 3_600_000.0),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (dir, data) = args.at.resolve()?;
    let (_, project) = hangar_project::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    match args.action {
        Action::Backup { env } => {
            let set = recovery::backup(&dir, &project, &data, &env)?;
            if args.at.json {
                println!("{}", serde_json::to_string_pretty(&set.manifest)?);
            } else {
                println!("backed up `{env}` to {}", set.path.display());
                for (svc, took) in &set.manifest.services {
                    println!("  {svc}: backup.run took {}", ms(*took));
                }
                println!(
                    "  {} files, each with its SHA-256 in manifest.json",
                    set.manifest.files.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::List { env } => {
            let all = recovery::list(&dir, &project, &env)?;
            if args.at.json {
                let v: Vec<_> = all
                    .iter()
                    .map(|s| serde_json::json!({"path": s.path, "manifest": s.manifest}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if all.is_empty() {
                println!("no backups of `{env}` yet (hangar recovery backup {env})");
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                for s in &all {
                    println!(
                        "{}  {} ago  {} services",
                        s.path.display(),
                        ms(now.saturating_sub(s.manifest.created_ms)),
                        s.manifest.services.len()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Restore { env, from } => {
            let path = match from {
                Some(p) => p,
                None => recovery::list(&dir, &project, &env)?
                    .into_iter()
                    .next()
                    .map(|s| s.path)
                    .ok_or_else(|| anyhow::anyhow!("`{env}` has no backup to restore"))?,
            };
            let set = recovery::verify(&path)?;
            recovery::restore_data(&dir, &project, &data, &set, &env)?;
            println!(
                "restored {} into `{env}`; start or redeploy its services to serve it",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Action::Drill { env, into, keep } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async {
                let (report, ctl) =
                    recovery::drill(&dir, &project, &data, &env, &into, keep).await?;
                if args.at.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"report": report, "passed": report.passed()})
                        )?
                    );
                } else {
                    let target = |t: Option<u64>| match t {
                        Some(t) => format!("target {}", ms(t)),
                        None => "no target in hangar.yml".into(),
                    };
                    println!("drill: newest backup of `{env}` restored into `{into}`");
                    println!("  backup: {}", report.backup.display());
                    println!(
                        "  RPO achieved {} ({})",
                        ms(report.rpo_achieved_ms),
                        target(report.rpo_target_ms)
                    );
                    println!(
                        "  RTO achieved {} ({})",
                        ms(report.rto_achieved_ms),
                        target(report.rto_target_ms)
                    );
                    println!("  {}", if report.passed() { "PASSED" } else { "FAILED" });
                }
                if let Some(ctl) = ctl {
                    eprintln!("`{into}` is up; Ctrl-C stops it");
                    let _ = tokio::signal::ctrl_c().await;
                    ctl.shutdown().await;
                }
                Ok(if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            })
        }
    }
}
