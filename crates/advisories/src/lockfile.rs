//! Lock-file readers. Each yields the packages it pins with the line that pins
//! them, so a finding can point at the lock file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::Ecosystem;

/// One package pinned (or left unpinned) by a lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    /// `None` when the file does not pin an exact version (e.g. `flask>=2`).
    pub version: Option<String>,
    pub file: PathBuf,
    /// 1-based line of the entry in `file`.
    pub line: usize,
}

/// File names this module reads (`requirements*.txt` and any `.txt` under
/// a `requirements/` directory are read as requirements files).
pub const LOCK_FILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "requirements.txt",
    "requirements-*.txt",
    "requirements/*.txt",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "yarn.lock",
    "pnpm-lock.yaml",
    "go.sum",
    "gradle.lockfile",
    "composer.lock",
    "Gemfile.lock",
];

/// Whether `path` is a lock file `read` understands, by its name.
pub fn is_lock_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    matches!(
        name,
        "Cargo.lock"
            | "package-lock.json"
            | "npm-shrinkwrap.json"
            | "poetry.lock"
            | "uv.lock"
            | "Pipfile.lock"
            | "yarn.lock"
            | "pnpm-lock.yaml"
            | "go.sum"
            | "gradle.lockfile"
            | "composer.lock"
            | "Gemfile.lock"
            | "gems.locked"
    ) || is_requirements(path)
}

fn is_requirements(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let in_requirements_dir = path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|d| d == "requirements");
    name.ends_with(".txt") && (name.starts_with("requirements") || in_requirements_dir)
}

/// Reads one lock file, chosen by its file name.
pub fn read(path: &Path) -> Result<Vec<Package>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match name {
        "Cargo.lock" => Ok(toml_packages(&text, path, Ecosystem::CratesIo)),
        "poetry.lock" | "uv.lock" => Ok(toml_packages(&text, path, Ecosystem::PyPI)),
        "Pipfile.lock" => pipfile_lock(&text, path),
        "yarn.lock" => Ok(yarn_lock(&text, path)),
        "pnpm-lock.yaml" => Ok(pnpm_lock(&text, path)),
        "package-lock.json" | "npm-shrinkwrap.json" => package_lock(&text, path),
        "go.sum" => Ok(go_sum(&text, path)),
        "gradle.lockfile" => gradle_lockfile(&text, path),
        "composer.lock" => composer_lock(&text, path),
        "Gemfile.lock" | "gems.locked" => gemfile_lock(&text, path),
        _ if is_requirements(path) => Ok(requirements(&text, path)),
        _ => anyhow::bail!(
            "{}: not a lock file hangar reads (expected one of {})",
            path.display(),
            LOCK_FILES.join(", ")
        ),
    }
}

/// `[[package]]` tables of Cargo.lock and poetry.lock. Read line by line
/// rather than through a TOML parser so every package keeps its line; both
/// formats are machine-written with one `key = "value"` per line.
fn toml_packages(text: &str, file: &Path, eco: Ecosystem) -> Vec<Package> {
    struct Entry {
        name: Option<(String, usize)>,
        version: Option<String>,
        source: Option<String>,
    }
    let mut out = Vec::new();
    let mut cur: Option<Entry> = None;
    let flush = |cur: Option<Entry>, out: &mut Vec<Package>| {
        let Some(Entry {
            name: Some((name, line)),
            version,
            source,
        }) = cur
        else {
            return;
        };
        // Cargo: path and git dependencies (workspace members included) are not
        // crates.io releases, so advisories about crates.io versions do not apply.
        if eco == Ecosystem::CratesIo
            && !source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+"))
        {
            return;
        }
        // uv.lock: the project itself and local paths are not PyPI releases.
        if source.as_deref().is_some_and(|s| {
            ["editable", "virtual", "directory", "path ="]
                .iter()
                .any(|k| s.contains(k))
        }) {
            return;
        }
        out.push(Package {
            ecosystem: eco,
            name,
            version,
            file: file.to_path_buf(),
            line,
        });
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            flush(cur.take(), &mut out);
            if line == "[[package]]" {
                cur = Some(Entry {
                    name: None,
                    version: None,
                    source: None,
                });
            }
            continue;
        }
        let Some(entry) = cur.as_mut() else { continue };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        match key.trim() {
            "name" => entry.name = Some((value, i + 1)),
            "version" => entry.version = Some(value),
            "source" => entry.source = Some(value),
            _ => {}
        }
    }
    flush(cur, &mut out);
    out
}

/// package-lock.json v1 (`dependencies`, nested) and v2/v3 (`packages`, keyed
/// by install path). v2 carries both; `packages` is preferred.
fn package_lock(text: &str, file: &Path) -> Result<Vec<Package>> {
    let doc = json_doc(text, file)?;
    let mut out = Vec::new();
    let finder = LineFinder::new(text);
    if let Some(packages) = doc.get("packages").and_then(Value::as_object) {
        for (key, meta) in packages {
            if key.is_empty() || meta.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let Some(idx) = key.rfind("node_modules/") else {
                continue;
            };
            let name = meta
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&key[idx + "node_modules/".len()..])
                .to_string();
            let version = meta
                .get("version")
                .and_then(Value::as_str)
                .map(str::to_string);
            let line = finder.find(&format!("\"{key}\""));
            out.push(Package {
                ecosystem: Ecosystem::Npm,
                name,
                version,
                file: file.to_path_buf(),
                line,
            });
        }
    } else if let Some(deps) = doc.get("dependencies").and_then(Value::as_object) {
        // serde_json keeps the file's key order, so walking depth-first
        // meets entries in text order: a cursor gives each nested copy its
        // own line instead of the first same-named entry's.
        fn walk(
            deps: &serde_json::Map<String, Value>,
            file: &Path,
            finder: &LineFinder,
            cursor: &mut usize,
            out: &mut Vec<Package>,
        ) {
            for (name, meta) in deps {
                let version = meta
                    .get("version")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                // Aliased or linked entries (`file:`, `npm:other@1`) are not registry versions.
                let version = version.filter(|v| !v.contains(':'));
                let line = finder.find_from(&format!("\"{name}\": {{"), cursor);
                out.push(Package {
                    ecosystem: Ecosystem::Npm,
                    name: name.clone(),
                    version,
                    file: file.to_path_buf(),
                    line,
                });
                if let Some(nested) = meta.get("dependencies").and_then(Value::as_object) {
                    walk(nested, file, finder, cursor, out);
                }
            }
        }
        let mut cursor = 0;
        walk(deps, file, &finder, &mut cursor, &mut out);
    }
    Ok(out)
}

/// `requirements.txt`: only `name==version` pins are exact; anything else is
/// reported with no version so the caller can flag it as unknown.
fn requirements(text: &str, file: &Path) -> Vec<Package> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') || line.contains("://")
        {
            continue;
        }
        let line = line.split(';').next().unwrap_or("").trim();
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty() {
            continue;
        }
        let mut rest = line[name_end..].trim_start();
        if rest.starts_with('[') {
            rest = rest
                .split_once(']')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
        }
        let version = rest
            .strip_prefix("===")
            .or_else(|| rest.strip_prefix("=="))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.contains(['*', ',', '<', '>', '!', '~']));
        out.push(Package {
            ecosystem: Ecosystem::PyPI,
            name: name.to_string(),
            version,
            file: file.to_path_buf(),
            line: i + 1,
        });
    }
    out
}

/// `go.sum`: `module version[/go.mod] hash`; one package per module version.
/// go.sum keeps the checksums of every version the module graph mentions,
/// but the build uses only the versions minimal version selection picks,
/// which go.mod (Go 1.17+) lists in full: with a go.mod beside it, only those
/// are reported, as govulncheck and osv-scanner do.
fn go_sum(text: &str, file: &Path) -> Vec<Package> {
    let selected = file
        .parent()
        .map(|d| d.join("go.mod"))
        .and_then(|m| std::fs::read_to_string(m).ok())
        .map(|m| go_mod_requires(&m));
    let mut out: Vec<Package> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let mut fields = raw.split_whitespace();
        let (Some(module), Some(version)) = (fields.next(), fields.next()) else {
            continue;
        };
        let version = version.strip_suffix("/go.mod").unwrap_or(version);
        if let Some(selected) = &selected
            && !selected.contains(&(module.to_string(), version.to_string()))
        {
            continue;
        }
        if seen.insert((module.to_string(), version.to_string())) {
            out.push(Package {
                ecosystem: Ecosystem::Go,
                name: module.to_string(),
                version: Some(version.to_string()),
                file: file.to_path_buf(),
                line: i + 1,
            });
        }
    }
    out
}

/// Pipfile.lock: `default` and `develop` maps of `name: {"version": "==x"}`.
fn pipfile_lock(text: &str, file: &Path) -> Result<Vec<Package>> {
    let doc = json_doc(text, file)?;
    let finder = LineFinder::new(text);
    let mut cursor = 0;
    let mut out = Vec::new();
    for section in ["default", "develop"] {
        let Some(deps) = doc.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, meta) in deps {
            let version = meta
                .get("version")
                .and_then(Value::as_str)
                .and_then(|v| v.strip_prefix("=="))
                .map(str::to_string);
            out.push(Package {
                ecosystem: Ecosystem::PyPI,
                name: name.clone(),
                version,
                file: file.to_path_buf(),
                line: finder.find_from(&format!("\"{name}\": {{"), &mut cursor),
            });
        }
    }
    Ok(out)
}

/// The package name of a yarn/pnpm spec: `lodash@^4`, `@babel/core@npm:^7`.
fn npm_spec_name(spec: &str) -> &str {
    let spec = spec.trim().trim_matches('"').trim_matches('\'');
    match spec[1.min(spec.len())..].find('@') {
        Some(at) => &spec[..at + 1],
        None => spec,
    }
}

/// yarn.lock, classic (v1: `version "x"`) and berry (`version: x`): one
/// entry per resolved version, headed by its specs at column 0. Workspace,
/// link, portal and file entries are not registry packages.
fn yarn_lock(text: &str, file: &Path) -> Vec<Package> {
    let mut out = Vec::new();
    let mut head: Option<(String, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        if !raw.starts_with(' ') {
            head = None;
            let Some(specs) = raw.trim_end().strip_suffix(':') else {
                continue;
            };
            if specs.starts_with("__metadata") {
                continue;
            }
            let first = specs.split(", ").next().unwrap_or(specs);
            if ["@workspace:", "@link:", "@portal:", "@file:", "@patch:"]
                .iter()
                .any(|k| first.contains(k))
            {
                continue;
            }
            head = Some((npm_spec_name(first).to_string(), i + 1));
            continue;
        }
        let line = raw.trim();
        let version = line
            .strip_prefix("version ")
            .or_else(|| line.strip_prefix("version: "))
            .map(|v| v.trim().trim_matches('"').to_string());
        if let (Some(version), Some((name, at))) = (version, head.take()) {
            out.push(Package {
                ecosystem: Ecosystem::Npm,
                name,
                version: Some(version),
                file: file.to_path_buf(),
                line: at,
            });
        }
    }
    out
}

/// pnpm-lock.yaml: the keys of `packages:` — `/name/1.0.0` (v5),
/// `/name@1.0.0` (v6), `name@1.0.0` (v9); peer suffixes `(react@18.2.0)`
/// dropped.
fn pnpm_lock(text: &str, file: &Path) -> Vec<Package> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut in_packages = false;
    for (i, raw) in text.lines().enumerate() {
        if !raw.starts_with(' ') && !raw.trim().is_empty() {
            in_packages = raw.trim_end() == "packages:";
            continue;
        }
        if !in_packages || !raw.starts_with("  ") || raw.starts_with("   ") {
            continue;
        }
        let Some(key) = raw.trim().strip_suffix(':') else {
            continue;
        };
        let key = key.trim_matches('\'').trim_matches('"');
        let key = key.split('(').next().unwrap_or(key);
        let key = key.strip_prefix('/').unwrap_or(key);
        let (name, version) = match key[1.min(key.len())..].find('@') {
            Some(at) => (&key[..at + 1], &key[at + 2..]),
            // v5: name/version, the version after the last slash.
            None => match key.rsplit_once('/') {
                Some((n, v)) => (n, v),
                None => continue,
            },
        };
        if version.is_empty() || version.contains(':') {
            continue;
        }
        if seen.insert((name.to_string(), version.to_string())) {
            out.push(Package {
                ecosystem: Ecosystem::Npm,
                name: name.to_string(),
                version: Some(version.to_string()),
                file: file.to_path_buf(),
                line: i + 1,
            });
        }
    }
    out
}

/// Gradle's dependency lock file: `group:artifact:version=configurations`
/// per line (`empty=...` lists configurations with nothing locked).
///
/// A line that is none of these is an error rather than skipped (osv-scanner
/// only warns): a dependency the reader drops is a vulnerability the gate
/// silently passes.
fn gradle_lockfile(text: &str, file: &Path) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("empty=") {
            continue;
        }
        let coordinates = line.split('=').next().unwrap_or(line);
        let parts: Vec<&str> = coordinates.split(':').collect();
        let [group, artifact, version] = parts[..] else {
            return Err(malformed_line(
                file,
                i,
                raw,
                "not a Gradle lock entry",
                "each line is `group:artifact:version=configurations`, `empty=...` or a `#` comment; regenerate it with `gradle dependencies --write-locks`",
            ));
        };
        if [group, artifact, version]
            .iter()
            .any(|p| p.trim().is_empty())
        {
            return Err(malformed_line(
                file,
                i,
                raw,
                "a Gradle lock entry with an empty group, artifact or version",
                "regenerate the file with `gradle dependencies --write-locks`",
            ));
        }
        out.push(Package {
            ecosystem: Ecosystem::Maven,
            name: format!("{group}:{artifact}"),
            version: Some(version.to_string()),
            file: file.to_path_buf(),
            line: i + 1,
        });
    }
    Ok(out)
}

/// The error for a line of a line-oriented lock file that its format does not
/// allow: where (file, line, column of its first non-blank character), what,
/// and what to do.
fn malformed_line(file: &Path, index: usize, raw: &str, what: &str, help: &str) -> anyhow::Error {
    let column = raw.len() - raw.trim_start().len() + 1;
    anyhow::anyhow!(
        "{}:{}:{column}: {what}: `{}`\n  help: {help}",
        file.display(),
        index + 1,
        raw.trim()
    )
}

/// composer.lock: `packages` and `packages-dev`, each `{name, version}`.
/// Branch installs (`dev-main`) are not releases an advisory can name: they
/// are listed as unpinned.
fn composer_lock(text: &str, file: &Path) -> Result<Vec<Package>> {
    let doc = json_doc(text, file)?;
    let finder = LineFinder::new(text);
    let mut cursor = 0;
    let mut out = Vec::new();
    for section in ["packages", "packages-dev"] {
        let Some(list) = doc.get(section) else {
            continue;
        };
        let Some(list) = list.as_array() else {
            anyhow::bail!(
                "{}:{}: `{section}` is not a list of packages\n  help: regenerate the file with `composer update --lock`",
                file.display(),
                finder.find(&format!("\"{section}\"")),
            );
        };
        for (index, entry) in list.iter().enumerate() {
            let Some(name) = entry.get("name").and_then(Value::as_str) else {
                anyhow::bail!(
                    "{}: `{section}[{index}]` has no `name`\n  help: regenerate the file with `composer update --lock`",
                    file.display(),
                );
            };
            let version = entry.get("version").and_then(Value::as_str).unwrap_or("");
            let line = finder.find_from(&format!("\"name\": \"{name}\""), &mut cursor);
            let release = version.strip_prefix(['v', 'V']).unwrap_or(version);
            out.push(Package {
                ecosystem: Ecosystem::Packagist,
                name: name.to_string(),
                version: (!release.is_empty()
                    && !release.starts_with("dev-")
                    && !release.ends_with("-dev"))
                .then(|| release.to_string()),
                file: file.to_path_buf(),
                line,
            });
        }
    }
    Ok(out)
}

/// Gemfile.lock: the `specs:` of the `GEM` section, `    name (version)` at
/// four spaces (their own dependencies sit at six). `GIT` and `PATH` sections
/// are not from a gem server, so no advisory names them. A platform gem's
/// version carries its platform (`1.13.10-x86_64-linux`): the version is the
/// part before it, as gem versions never contain `-`.
///
/// A spec line that is not `name (version)`, or a file with none of Bundler's
/// sections, is an error: a gem the reader drops is one the gate never checks.
fn gemfile_lock(text: &str, file: &Path) -> Result<Vec<Package>> {
    // Bundler's section headers (lib/bundler/lockfile_parser.rb).
    const SECTIONS: &[&str] = &[
        "GEM",
        "GIT",
        "PATH",
        "PLUGIN SOURCE",
        "PLATFORMS",
        "DEPENDENCIES",
        "RUBY VERSION",
        "BUNDLED WITH",
        "CHECKSUMS",
    ];
    let mut out = Vec::new();
    let mut in_gem = false;
    let mut sections = 0;
    for (i, raw) in text.lines().enumerate() {
        if !raw.starts_with(' ') {
            let header = raw.trim_end();
            sections += usize::from(SECTIONS.contains(&header));
            in_gem = header == "GEM";
            continue;
        }
        if !in_gem || !raw.starts_with("    ") || raw.starts_with("     ") {
            continue;
        }
        let spec = raw
            .trim()
            .split_once(" (")
            .and_then(|(name, rest)| Some((name, rest.strip_suffix(')')?)))
            .filter(|(name, version)| !name.is_empty() && !version.is_empty());
        let Some((name, version)) = spec else {
            return Err(malformed_line(
                file,
                i,
                raw,
                "not a gem spec",
                "gems under `GEM` / `specs:` are `name (version)`; regenerate the file with `bundle lock`",
            ));
        };
        let version = version.split('-').next().unwrap_or(version);
        out.push(Package {
            ecosystem: Ecosystem::RubyGems,
            name: name.to_string(),
            version: Some(version.to_string()),
            file: file.to_path_buf(),
            line: i + 1,
        });
    }
    if sections == 0 && !text.trim().is_empty() {
        anyhow::bail!(
            "{}:1:1: none of Bundler's sections (GEM, GIT, PATH, DEPENDENCIES, ...): not a Gemfile.lock\n  help: regenerate it with `bundle lock`",
            file.display()
        );
    }
    Ok(out)
}

/// `(module, version)` of every `require` in a go.mod, block or single line.
fn go_mod_requires(text: &str) -> std::collections::HashSet<(String, String)> {
    let mut out = std::collections::HashSet::new();
    let mut in_block = false;
    for raw in text.lines() {
        let line = raw.split("//").next().unwrap_or("").trim();
        let entry = if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else if let Some(rest) = line.strip_prefix("require") {
            let rest = rest.trim();
            if rest == "(" {
                in_block = true;
                continue;
            }
            rest
        } else {
            continue;
        };
        let mut f = entry.split_whitespace();
        if let (Some(m), Some(v)) = (f.next(), f.next()) {
            out.insert((m.to_string(), v.to_string()));
        }
    }
    out
}

/// A JSON lock file, or an error at its line and column.
fn json_doc(text: &str, file: &Path) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: invalid JSON: {e}",
            file.display(),
            e.line(),
            e.column()
        )
    })
}

/// Finds the line of a key in a JSON document (serde_json keeps no positions).
struct LineFinder<'a> {
    text: &'a str,
}

impl<'a> LineFinder<'a> {
    fn new(text: &'a str) -> Self {
        LineFinder { text }
    }
    /// The line of `needle` at or after byte `cursor`, moving the cursor past it.
    fn find_from(&self, needle: &str, cursor: &mut usize) -> usize {
        match self.text[(*cursor).min(self.text.len())..].find(needle) {
            Some(at) => {
                let at = *cursor + at;
                *cursor = at + needle.len();
                self.text[..at].matches('\n').count() + 1
            }
            None => self.find(needle),
        }
    }
    fn find(&self, needle: &str) -> usize {
        match self.text.find(needle) {
            Some(at) => self.text[..at].matches('\n').count() + 1,
            None => 1,
        }
    }
}
