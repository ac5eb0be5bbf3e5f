//! `hangar toolcache`: the persistent tool cache the setup actions read.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(clap::Subcommand)]
pub enum Sub {
    /// Seed the cache with a toolchain already on this machine, so
    /// `actions/setup-node` (setup-python, setup-go...) finds it with no network:
    /// `hangar toolcache add node 20.11.1 /usr/local`.
    Add {
        /// node, python, go, java, or any name a setup action looks up.
        tool: String,
        /// The full version the toolchain is (MAJOR.MINOR.PATCH).
        #[arg(value_name = "VERSION")]
        tool_version: String,
        /// The prefix that holds its `bin/` (for /usr/local/bin/node: /usr/local).
        prefix: PathBuf,
    },
    /// List what the cache holds.
    List,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cache = hangar_engine::toolcache::dir(&hangar_engine::context::default_data_dir());
    match args.command {
        Sub::Add {
            tool,
            tool_version,
            prefix,
        } => {
            let e = hangar_engine::toolcache::add(&cache, &tool, &tool_version, &prefix)
                .map_err(anyhow::Error::msg)?;
            println!(
                "{} {} ({}) -> {} in {}",
                e.tool,
                e.version,
                e.arch,
                e.path.display(),
                cache.display()
            );
        }
        Sub::List => {
            for e in hangar_engine::toolcache::list(&cache) {
                println!(
                    "{}\t{}\t{}\t{}",
                    e.tool,
                    e.version,
                    e.arch,
                    e.path.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
