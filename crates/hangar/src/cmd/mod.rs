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
