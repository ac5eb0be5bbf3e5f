//! `hangar.yml`: the services a project runs and the environments it deploys to.
//!
//! The file is read with `serde-saphyr`, which deserialises YAML straight into
//! these types and reports the line and column of any syntax or type error.
//! Rules that serde cannot express (unknown `depends_on`, dependency cycles,
//! canary steps that do not end at 100) are checked afterwards by [`validate`],
//! using the positions kept in [`Spanned`] fields. The `release:` and `scan:`
//! sections are kept as raw JSON values: their crates parse them.

mod duration;
mod model;
mod validate;

pub use duration::{parse_duration, parse_percent};
pub use model::*;
pub use validate::validate;

use std::fmt;
use std::path::Path;

/// A positioned problem in `hangar.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    /// What the user can do about it.
    pub help: Option<String>,
}

impl fmt::Display for ProjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProjectError {}

/// Every problem found in one file, in source order.
#[derive(Debug, Clone)]
pub struct ProjectErrors(pub Vec<ProjectError>);

impl fmt::Display for ProjectErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProjectErrors {}

/// Parses and validates the text of a `hangar.yml`.
pub fn parse(file: &str, text: &str) -> Result<Project, ProjectErrors> {
    let project: Project = serde_saphyr::from_str(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line() as u32, l.column() as u32))
            .unwrap_or((1, 1));
        // serde-saphyr renders a snippet into its Display; keep only the first line as the message.
        let message = first_line(&err.to_string());
        ProjectErrors(vec![ProjectError {
            file: file.to_string(),
            line,
            column,
            message,
            help: Some("see docs/hangar-yml.md for the schema".into()),
        }])
    })?;
    let errors = validate(file, &project);
    if errors.is_empty() {
        Ok(project)
    } else {
        Err(ProjectErrors(errors))
    }
}

/// Reads `hangar.yml` (or `hangar.yaml`) from a project directory.
pub fn load(
    dir: &Path,
) -> Result<(std::path::PathBuf, Project), Box<dyn std::error::Error + Send + Sync>> {
    for name in ["hangar.yml", "hangar.yaml"] {
        let path = dir.join(name);
        if path.is_file() {
            let text = std::fs::read_to_string(&path)?;
            let project = parse(&path.display().to_string(), &text)?;
            return Ok((path, project));
        }
    }
    Err(format!(
        "no hangar.yml in {}: create one with a `services:` section (see docs/hangar-yml.md)",
        dir.display()
    )
    .into())
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    // Drop a leading "error: " or a location prefix the library may add.
    line.trim_start_matches("error: ").to_string()
}
