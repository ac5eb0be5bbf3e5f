//! `conftest.toml`: the settings a team moving from conftest already has.
//!
//! conftest reads it from the working directory (or `--config`); hangar does
//! the same and lets flags given on the command line win. Paths in it are
//! relative to the file's directory, so `hangar scan policy -C sub` and a
//! `cd sub` agree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default, deserialize_with = "one_or_many")]
    pub policy: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub namespace: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub data: Vec<String>,
    pub all_namespaces: Option<bool>,
    pub combine: Option<bool>,
    pub parser: Option<String>,
    pub fail_on_warn: Option<bool>,
    pub output: Option<String>,
    // conftest settings hangar accepts and has no use for.
    pub no_color: Option<bool>,
    pub trace: Option<bool>,
    #[serde(skip)]
    pub dir: PathBuf,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl FileConfig {
    /// Reads `path`; `None` when it is the default location and absent.
    pub fn load(path: &Path, explicit: bool) -> Result<Option<FileConfig>> {
        if !path.exists() {
            if explicit {
                bail!("{}: no such file", path.display());
            }
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: FileConfig = toml::from_str(&text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| crate::input::line_col(&text, s.start))
                .unwrap_or((1, 1));
            anyhow::anyhow!(
                "{}:{line}:{col}: {}\nhelp: conftest.toml keys hangar reads: policy, namespace, data, all-namespaces, combine, parser, fail-on-warn, output",
                path.display(),
                e.message()
            )
        })?;
        config.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Some(config))
    }

    /// A path from the file, relative to its directory.
    pub fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() || self.dir.as_os_str().is_empty() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_conftest_keys_and_refuses_unknown_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("conftest.toml");
        std::fs::write(&path, "policy = \"test\"\nnamespace = \"conftest\"\n").unwrap();
        let c = FileConfig::load(&path, false).unwrap().unwrap();
        assert_eq!(c.namespace, ["conftest"]);
        assert_eq!(c.path(&c.policy[0]), tmp.path().join("test"));
        std::fs::write(&path, "policy = [\"a\", \"b\"]\npolicies = 1\n").unwrap();
        let err = FileConfig::load(&path, false).unwrap_err().to_string();
        assert!(err.contains("conftest.toml:2:1"), "{err}");
        assert!(
            FileConfig::load(&tmp.path().join("none.toml"), false)
                .unwrap()
                .is_none()
        );
        assert!(FileConfig::load(&tmp.path().join("none.toml"), true).is_err());
    }
}
