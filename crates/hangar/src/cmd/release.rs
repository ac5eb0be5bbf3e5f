//! `hangar release` and `hangar commitlint`.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Cut a release from conventional commits: version, changelog, tag.
    Release {},
    /// Check commit messages against Conventional Commits.
    Commitlint {},
}

pub fn run(_command: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the release commands are not built yet")
}
