//! `hangar serve`, `hangar agent`, `hangar backup`, `hangar restore`.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Run the CI server: web UI, API, webhooks, scheduler and an embedded agent.
    Serve {},
    /// Take jobs from a hangar server and run them on this machine.
    Agent {},
}

pub fn run(_command: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the server commands are not built yet")
}
