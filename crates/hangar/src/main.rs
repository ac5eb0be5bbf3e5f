//! The `hangar` command line: argument parsing and wiring only.
//!
//! Every subcommand family lives in its own module under `cmd/`, owned by the
//! crate that does the work; this file only lists them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// One binary for a team's whole delivery system.
#[derive(Parser)]
#[command(name = "hangar", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run GitHub Actions workflows on this machine.
    Run(cmd::run::Args),
    /// Check workflows (and hangar.yml) for mistakes, with file:line:col errors.
    Validate(cmd::validate::Args),
    /// Evaluate one GitHub Actions expression against JSON contexts.
    Expr(cmd::expr::Args),
    /// Write a starter hangar.yml from what the project has (Procfile, Cargo.toml, package.json, ...).
    Init(cmd::init::Args),
    #[command(flatten)]
    Server(cmd::serve::Command),
    #[command(flatten)]
    Deploy(cmd::deploy::Command),
    #[command(flatten)]
    Release(cmd::release::Command),
    /// Alert rules of hangar.yml and where they stand; silences.
    Alerts(cmd::alerts::Args),
    /// Project backups, restores and recovery drills (RPO/RTO).
    Recovery(cmd::recovery::Args),
    /// Security gates: secrets, policy, dependencies.
    Scan(cmd::scan::Args),
    /// The tool cache the setup actions read (RUNNER_TOOL_CACHE).
    Toolcache(cmd::toolcache::Args),
    /// An environment's router (its data plane), started by its controller.
    #[command(name = "__router", hide = true)]
    Router {
        /// The environment's state directory.
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Expr(args) => cmd::expr::run(args),
        Command::Init(args) => cmd::init::run(args),
        Command::Server(command) => cmd::serve::run(command),
        Command::Deploy(command) => cmd::deploy::run(command),
        Command::Release(command) => cmd::release::run(command),
        Command::Alerts(args) => cmd::alerts::run(args),
        Command::Recovery(args) => cmd::recovery::run(args),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Toolcache(args) => cmd::toolcache::run(args),
        Command::Router { dir } => hangar_deploy::run_router(&dir).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
