//! One module per subcommand family. Each exposes clap argument types and a
//! `run` function returning the process exit code.

pub mod alerts;
pub mod deploy;
pub mod expr;
pub mod follow;
pub mod init;
pub mod recovery;
pub mod release;
pub mod run;
pub mod scan;
pub mod scan_coverage;
pub mod scan_deps;
pub mod scan_policy;
pub mod scan_secrets;
pub mod serve;
pub mod toolcache;
pub mod validate;

/// Where a project and its deployment data are: the flags of the commands
/// that read an environment's files (`hangar alerts`, `hangar recovery`).
#[derive(clap::Args, Clone)]
pub struct ProjectArgs {
    /// Project directory (holding hangar.yml).
    #[arg(long, default_value = ".", global = true)]
    pub dir: std::path::PathBuf,
    /// Data directory for releases, state and logs [default: <dir>/.hangar].
    #[arg(long, global = true)]
    pub data: Option<std::path::PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ProjectArgs {
    /// The project directory, made absolute, and its data directory.
    pub fn resolve(&self) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
        use anyhow::Context;
        let dir = std::fs::canonicalize(&self.dir)
            .with_context(|| format!("project directory {}", self.dir.display()))?;
        let data = self.data.clone().unwrap_or_else(|| dir.join(".hangar"));
        Ok((dir, data))
    }
}
