//! `hangar up|down|deploy|promote|abort|rollback|status|history|dora`.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Start an environment's services in dependency order, in the foreground.
    Up {},
    /// Deploy a new version of an environment's services.
    Deploy {},
}

pub fn run(_command: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the delivery commands are not built yet")
}
