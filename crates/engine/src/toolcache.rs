//! The persistent tool cache (`RUNNER_TOOL_CACHE`, `runner.tool_cache`): a
//! folder under the data directory that outlives runs, in the layout the
//! actions toolkit's `@actions/tool-cache` reads and writes —
//! `<tool>/<version>/<arch>/` plus an empty `<arch>.complete` marker beside it
//! — so `setup-node`, `setup-python` and `setup-go` find what an earlier run
//! installed, or what [`add`] seeded from a toolchain already on the machine,
//! without the network.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `<data_dir>/tool_cache`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tool_cache")
}

/// The toolkit's name for this machine's architecture (`os.arch()` in node).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "x86" => "ia32",
        "arm" => "arm",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// What a known tool is called in the cache and how its version is read.
struct Known {
    /// The folder name the setup action looks up (`Python`, not `python`).
    cache_name: &'static str,
    binary: &'static str,
    version_args: &'static [&'static str],
}

fn known(tool: &str) -> Option<Known> {
    let k = match tool.to_ascii_lowercase().as_str() {
        "node" | "nodejs" => Known {
            cache_name: "node",
            binary: "node",
            version_args: &["--version"],
        },
        "python" | "python3" => Known {
            cache_name: "Python",
            binary: "python3",
            version_args: &["--version"],
        },
        "go" | "golang" => Known {
            cache_name: "go",
            binary: "go",
            version_args: &["version"],
        },
        "java" => Known {
            cache_name: "Java_Temurin-Hotspot_jdk",
            binary: "java",
            version_args: &["-version"],
        },
        _ => return None,
    };
    Some(k)
}

/// One seeded or installed tool version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub tool: String,
    pub version: String,
    pub arch: String,
    /// The toolchain's prefix (where `bin/` is).
    pub path: PathBuf,
}

/// Seeds the tool cache with the toolchain installed under `prefix` (the
/// folder holding `bin/`), as version `version` of `tool`.
///
/// The cache entry is a symbolic link to `prefix` (a toolchain is hundreds of
/// megabytes; the toolkit only reads it) made under a temporary name and
/// renamed into place, then the `.complete` marker is written: a reader never
/// sees a half-made entry. For a tool hangar knows (node, python, go, java)
/// the binary under `prefix/bin` must exist and report `version`, so a setup
/// action never gets a toolchain other than the one it asked for.
pub fn add(cache: &Path, tool: &str, version: &str, prefix: &Path) -> Result<Entry, String> {
    check_segment(tool, "tool name")?;
    check_version(version)?;
    let prefix = prefix
        .canonicalize()
        .map_err(|e| format!("{}: {e}", prefix.display()))?;
    if !prefix.is_dir() {
        return Err(format!("{} is not a directory", prefix.display()));
    }
    let name = match known(tool) {
        Some(k) => {
            let bin = prefix.join("bin").join(k.binary);
            if !bin.is_file() {
                return Err(format!(
                    "{} does not exist: give the prefix that holds bin/{} (for /usr/local/bin/{} that is /usr/local)",
                    bin.display(),
                    k.binary,
                    k.binary
                ));
            }
            let out = Command::new(&bin)
                .args(k.version_args)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if !reports_version(&text, version) {
                return Err(format!(
                    "{} reports {:?}, not version {version}: give the version it is",
                    bin.display(),
                    text.lines().next().unwrap_or("").trim()
                ));
            }
            k.cache_name.to_string()
        }
        None => tool.to_string(),
    };
    let arch = arch();
    let version_dir = cache.join(&name).join(version);
    std::fs::create_dir_all(&version_dir)
        .map_err(|e| format!("cannot create {}: {e}", version_dir.display()))?;
    let entry = version_dir.join(arch);
    let marker = version_dir.join(format!("{arch}.complete"));
    // Replacing an entry: the marker goes first, so no reader trusts the
    // entry while it changes.
    let _ = std::fs::remove_file(&marker);
    let tmp = version_dir.join(format!(".{arch}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&prefix, &tmp)
        .map_err(|e| format!("cannot link {}: {e}", tmp.display()))?;
    if entry.is_dir() && !entry.is_symlink() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "{} already holds an installed toolchain; remove it first to replace it",
            entry.display()
        ));
    }
    std::fs::rename(&tmp, &entry).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot move the link into {}: {e}", entry.display())
    })?;
    std::fs::write(&marker, "").map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    Ok(Entry {
        tool: name,
        version: version.to_string(),
        arch: arch.to_string(),
        path: prefix,
    })
}

/// Every complete entry of the cache, sorted.
pub fn list(cache: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let read = |p: &Path| -> Vec<std::fs::DirEntry> {
        std::fs::read_dir(p)
            .map(|r| r.flatten().collect())
            .unwrap_or_default()
    };
    for tool in read(cache) {
        for version in read(&tool.path()) {
            for arch in read(&version.path()) {
                let a = arch.file_name().to_string_lossy().into_owned();
                if a.starts_with('.') || a.ends_with(".complete") {
                    continue;
                }
                if version.path().join(format!("{a}.complete")).is_file() {
                    out.push(Entry {
                        tool: tool.file_name().to_string_lossy().into_owned(),
                        version: version.file_name().to_string_lossy().into_owned(),
                        arch: a,
                        path: std::fs::canonicalize(arch.path()).unwrap_or(arch.path()),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.tool, &a.version).cmp(&(&b.tool, &b.version)));
    out
}

/// `v20.11.1`, `Python 3.11.2`, `go version go1.22.1 linux/amd64`, `openjdk
/// version "21.0.2"`: the version appears as a whole token.
fn reports_version(text: &str, version: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == '"')
        .map(|t| t.trim_start_matches("go").trim_start_matches('v'))
        .any(|t| t == version)
}

fn check_segment(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty()
        || s.starts_with('.')
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{what} {s:?}: use letters, digits, `-`, `_` and `.` (not starting with `.`)"
        ));
    }
    Ok(())
}

/// A semantic version as the toolkit matches it (`20.11.1`, `3.12.0-rc.1`).
fn check_version(v: &str) -> Result<(), String> {
    check_segment(v, "version")?;
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "version {v:?}: give the full version, like 20.11.1 (the setup actions match MAJOR.MINOR.PATCH)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_tools_print_them() {
        assert!(reports_version("v20.11.1\n", "20.11.1"));
        assert!(reports_version("Python 3.11.2\n", "3.11.2"));
        assert!(reports_version("go version go1.22.1 linux/amd64", "1.22.1"));
        assert!(!reports_version("v20.11.10", "20.11.1"));
        assert!(check_version("20").is_err());
        assert!(check_version("../1.2.3").is_err());
        assert!(check_version("3.12.0-rc.1").is_ok());
    }

    #[test]
    fn seeds_an_entry_the_toolkit_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("prefix");
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        let cache = dir.path().join("tc");
        let e = add(&cache, "mytool", "1.2.3", &prefix).unwrap();
        let entry = cache.join("mytool/1.2.3").join(arch());
        assert!(entry.is_dir());
        assert!(
            cache
                .join(format!("mytool/1.2.3/{}.complete", arch()))
                .is_file()
        );
        assert_eq!(list(&cache), vec![e]);
        // A known tool whose binary is missing is refused, naming what to give.
        let err = add(&cache, "node", "20.11.1", &prefix).unwrap_err();
        assert!(err.contains("bin/node") && err.contains("prefix"), "{err}");
    }
}
