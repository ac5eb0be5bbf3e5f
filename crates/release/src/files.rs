//! Version files: Cargo.toml (package and workspace members, with `toml_edit` so
//! formatting and comments stay), package.json, pyproject.toml, version.txt, and
//! any file with a configured regex. Lock files follow where their tool exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::VersionFile;

/// Updates the version files found in `dir`; returns the paths changed.
pub fn update_versions(
    dir: &Path,
    version: &str,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let cargo = dir.join("Cargo.toml");
    if cargo.is_file() {
        let mut manifests = vec![cargo.clone()];
        let text = std::fs::read_to_string(&cargo)?;
        let doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", cargo.display()))?;
        if let Some(members) = doc
            .get("workspace")
            .and_then(|w| w.get("members"))
            .and_then(|m| m.as_array())
        {
            for m in members.iter().filter_map(|m| m.as_str()) {
                manifests.extend(expand_member(dir, m));
            }
        }
        for path in manifests {
            if set_toml_versions(
                &path,
                version,
                &[
                    &["package", "version"],
                    &["workspace", "package", "version"],
                ],
            )? {
                changed.push(path);
            }
        }
        if dir.join("Cargo.lock").is_file() && !changed.is_empty() {
            match Command::new("cargo").args(["update", "--workspace", "--offline"]).current_dir(dir).output() {
                Ok(o) if o.status.success() => changed.push(dir.join("Cargo.lock")),
                _ => warnings.push("Cargo.lock not refreshed: `cargo update --workspace --offline` failed or cargo is missing".into()),
            }
        }
    }
    let pkg = dir.join("package.json");
    if pkg.is_file() {
        let text = std::fs::read_to_string(&pkg)?;
        // Only the top-level "version" (the first one at indentation level 1), formatting untouched.
        let re = regex::Regex::new(r#"(?m)^(\s{1,4}|\t)"version"\s*:\s*"([^"]*)""#)?;
        if let Some(m) = re.captures(&text).and_then(|c| c.get(2)) {
            let new = format!("{}{}{}", &text[..m.start()], version, &text[m.end()..]);
            std::fs::write(&pkg, new)?;
            changed.push(pkg.clone());
            let lock = dir.join("package-lock.json");
            if lock.is_file() {
                let ok = Command::new("npm")
                    .args([
                        "install",
                        "--package-lock-only",
                        "--ignore-scripts",
                        "--offline",
                        "--no-audit",
                        "--no-fund",
                    ])
                    .current_dir(dir)
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                if ok || update_package_lock(&lock, version)? {
                    changed.push(lock);
                }
            }
        }
    }
    let py = dir.join("pyproject.toml");
    if py.is_file()
        && set_toml_versions(
            &py,
            version,
            &[&["project", "version"], &["tool", "poetry", "version"]],
        )?
    {
        changed.push(py);
    }
    let txt = dir.join("version.txt");
    if txt.is_file() {
        std::fs::write(&txt, format!("{version}\n"))?;
        changed.push(txt);
    }
    Ok(changed)
}

/// Files named in `release.version_files`: the regex's first group is replaced.
pub fn update_regex_files(
    dir: &Path,
    files: &[VersionFile],
    version: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    for f in files {
        let path = dir.join(&f.path);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("release.version_files: {}: {e}", f.path))?;
        let re = regex::Regex::new(&f.regex)
            .map_err(|e| anyhow::anyhow!("release.version_files: {}: bad regex: {e}", f.path))?;
        let Some(m) = re.captures(&text).and_then(|c| c.get(1)) else {
            anyhow::bail!(
                "release.version_files: `{}` does not match in {} (the first group must capture the version)",
                f.regex,
                f.path
            );
        };
        std::fs::write(
            &path,
            format!("{}{}{}", &text[..m.start()], version, &text[m.end()..]),
        )?;
        changed.push(path);
    }
    Ok(changed)
}

fn set_toml_versions(path: &Path, version: &str, keys: &[&[&str]]) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(path)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut changed = false;
    for key in keys {
        let (last, parents) = match key.split_last() {
            Some(x) => x,
            None => continue,
        };
        let Some(item) = walk(doc.as_item_mut(), parents) else {
            continue;
        };
        // `version.workspace = true` is a table, not a string: it follows the workspace by itself.
        if let Some(value) = item.get_mut(last).and_then(|v| v.as_value_mut())
            && value.is_str()
        {
            let decor = value.decor().clone();
            *value = toml_edit::Value::from(version);
            *value.decor_mut() = decor;
            changed = true;
        }
    }
    if changed {
        std::fs::write(path, doc.to_string())?;
    }
    Ok(changed)
}

fn walk<'a>(mut item: &'a mut toml_edit::Item, keys: &[&str]) -> Option<&'a mut toml_edit::Item> {
    for k in keys {
        item = item.get_mut(k)?;
    }
    Some(item)
}

fn expand_member(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    match pattern.strip_suffix("/*") {
        Some(parent) => std::fs::read_dir(dir.join(parent))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("Cargo.toml"))
            .filter(|p| p.is_file())
            .collect(),
        None => vec![dir.join(pattern).join("Cargo.toml")]
            .into_iter()
            .filter(|p| p.is_file())
            .collect(),
    }
}

fn update_package_lock(lock: &Path, version: &str) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(lock)?;
    let mut v: serde_json::Value = serde_json::from_str(&text)?;
    v["version"] = serde_json::json!(version);
    if let Some(root) = v.get_mut("packages").and_then(|p| p.get_mut("")) {
        root["version"] = serde_json::json!(version);
    }
    std::fs::write(lock, serde_json::to_string_pretty(&v)? + "\n")?;
    Ok(true)
}

/// The versions the project's files declare now (Cargo.toml, package.json,
/// pyproject.toml, version.txt, and `release.version_files`), as
/// `(file, version)`. With no tag yet these are the current version: a
/// release must not go below them.
pub fn current_versions(
    dir: &Path,
    regex_files: &[VersionFile],
) -> anyhow::Result<Vec<(String, semver::Version)>> {
    let mut found: Vec<(String, String)> = Vec::new();
    let toml_version = |name: &str, keys: &[&[&str]]| -> anyhow::Result<Option<String>> {
        let path = dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for key in keys {
            let mut item = doc.as_item();
            let mut ok = true;
            for k in *key {
                match item.get(k) {
                    Some(i) => item = i,
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok && let Some(v) = item.as_str() {
                return Ok(Some(v.to_string()));
            }
        }
        Ok(None)
    };
    if let Some(v) = toml_version(
        "Cargo.toml",
        &[
            &["package", "version"],
            &["workspace", "package", "version"],
        ],
    )? {
        found.push(("Cargo.toml".into(), v));
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("package.json")) {
        let re = regex::Regex::new(r#"(?m)^(\s{1,4}|\t)"version"\s*:\s*"([^"]*)""#)?;
        if let Some(m) = re.captures(&text).and_then(|c| c.get(2)) {
            found.push(("package.json".into(), m.as_str().to_string()));
        }
    }
    if let Some(v) = toml_version(
        "pyproject.toml",
        &[&["project", "version"], &["tool", "poetry", "version"]],
    )? {
        found.push(("pyproject.toml".into(), v));
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("version.txt")) {
        found.push(("version.txt".into(), text.trim().to_string()));
    }
    for f in regex_files {
        let Ok(text) = std::fs::read_to_string(dir.join(&f.path)) else {
            continue;
        };
        let re = regex::Regex::new(&f.regex)
            .map_err(|e| anyhow::anyhow!("release.version_files: {}: bad regex: {e}", f.path))?;
        if let Some(m) = re.captures(&text).and_then(|c| c.get(1)) {
            found.push((f.path.clone(), m.as_str().to_string()));
        }
    }
    found
        .into_iter()
        .map(|(file, v)| {
            let text = v.trim().trim_start_matches('v');
            // `1.2` (common in pyproject.toml) is read as 1.2.0.
            let padded = if text.matches('.').count() == 1 {
                format!("{text}.0")
            } else {
                text.to_string()
            };
            let version = semver::Version::parse(&padded).map_err(|e| {
                anyhow::anyhow!("{file}: version `{v}` is not a semantic version ({e}); fix it or release with --as X.Y.Z")
            })?;
            Ok((file, version))
        })
        .collect()
}
