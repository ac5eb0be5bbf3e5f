//! Which `node` runs a JavaScript action: the one configured for its declared
//! runtime (`--node node24=PATH`), else the first `node` on the step's PATH.
//! A node older than the runtime the action declares still runs it (most
//! actions work one major back), with a warning that says how to fix it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `runs.using` of a JavaScript action, as GitHub's runner accepts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Node12,
    Node16,
    Node20,
    Node24,
}

impl Runtime {
    /// `node12` … `node24` (case-insensitive, as the runner reads it).
    pub fn parse(using: &str) -> Result<Runtime, String> {
        match using.to_ascii_lowercase().as_str() {
            "node12" => Ok(Runtime::Node12),
            "node16" => Ok(Runtime::Node16),
            "node20" => Ok(Runtime::Node20),
            "node24" => Ok(Runtime::Node24),
            other => Err(format!(
                "unsupported `runs.using: {other}` (JavaScript actions run on node12, node16, node20 or node24)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Runtime::Node12 => "node12",
            Runtime::Node16 => "node16",
            Runtime::Node20 => "node20",
            Runtime::Node24 => "node24",
        }
    }

    pub fn major(self) -> u32 {
        match self {
            Runtime::Node12 => 12,
            Runtime::Node16 => 16,
            Runtime::Node20 => 20,
            Runtime::Node24 => 24,
        }
    }
}

/// A node binary and its version.
#[derive(Clone, Debug)]
pub struct Node {
    pub program: PathBuf,
    /// `v20.11.1`.
    pub version: String,
    pub major: u32,
}

impl Node {
    /// Reads `program --version`.
    pub fn probe(program: &Path) -> Result<Node, String> {
        let out = Command::new(program)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {} --version: {e}", program.display()))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let major = version
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .filter(|_| out.status.success())
            .ok_or_else(|| {
                format!(
                    "{} --version printed {version:?}, not a node version",
                    program.display()
                )
            })?;
        Ok(Node {
            program: program.to_path_buf(),
            version,
            major,
        })
    }

    /// The warning for an action declaring `runtime` run with this node.
    pub fn warning(&self, runtime: Runtime) -> Option<String> {
        (self.major < runtime.major()).then(|| {
            format!(
                "this action declares {rt} but runs with node {v} ({p}), which is older: install node {m} \
                 or pass --node {rt}=PATH",
                rt = runtime.name(),
                v = self.version,
                p = self.program.display(),
                m = runtime.major()
            )
        })
    }
}

/// `RUNTIME=PATH` (`--node node24=/opt/node24/bin/node`).
pub fn parse_node_flag(spec: &str) -> Result<(Runtime, PathBuf), String> {
    let (rt, path) = spec.split_once('=').ok_or_else(|| {
        format!("--node {spec:?}: expected RUNTIME=PATH, e.g. node24=/opt/node24/bin/node")
    })?;
    let runtime = Runtime::parse(rt).map_err(|e| format!("--node {spec:?}: {e}"))?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!("--node {spec:?}: {} is not a file", path.display()));
    }
    Ok((runtime, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_and_warnings() {
        assert_eq!(Runtime::parse("Node20").unwrap(), Runtime::Node20);
        assert!(
            Runtime::parse("node14")
                .unwrap_err()
                .contains("node12, node16, node20 or node24")
        );
        let n = Node {
            program: "/usr/bin/node".into(),
            version: "v20.1.0".into(),
            major: 20,
        };
        assert!(n.warning(Runtime::Node20).is_none());
        assert!(n.warning(Runtime::Node16).is_none());
        let w = n.warning(Runtime::Node24).unwrap();
        assert!(
            w.contains("node24") && w.contains("v20.1.0") && w.contains("--node node24=PATH"),
            "{w}"
        );
    }
}
