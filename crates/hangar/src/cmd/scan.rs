//! `hangar scan secrets|policy|deps|coverage`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{scan_coverage, scan_deps, scan_policy, scan_secrets};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(Subcommand)]
enum Kind {
    /// Find credentials in the working tree, git history or staged changes.
    Secrets(scan_secrets::Args),
    /// Evaluate Rego policies (conftest conventions) over configuration files.
    Policy(scan_policy::Args),
    /// Match lock files against an offline OSV advisory database.
    Deps(scan_deps::Args),
    /// Gate on test coverage: the total and the lines a change adds (lcov, Cobertura, JaCoCo, Go).
    Coverage(scan_coverage::Args),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.kind {
        Kind::Secrets(args) => scan_secrets::run(args),
        Kind::Policy(args) => scan_policy::run(args),
        Kind::Deps(args) => scan_deps::run(args),
        Kind::Coverage(args) => scan_coverage::run(args),
    }
}
