//! The `release:` section of `hangar.yml`.

use indexmap::IndexMap;
use serde::Deserialize;

/// How versions, changelogs and tags are made.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tag name; `{version}` is replaced (default `v{version}`).
    #[serde(default = "default_tag")]
    pub tag_format: String,
    /// The first version when no tag exists yet.
    #[serde(default = "default_initial")]
    pub initial_version: String,
    /// What a breaking change bumps below 1.0.0: `major` (default: 1.0.0, as
    /// commitizen and python-semantic-release do) or `minor` (as git-cliff does).
    #[serde(default = "default_major")]
    pub breaking_below_1: Bump,
    /// Only commits after this one count (a tag, branch or commit id): a
    /// project with a non-conventional past starts its releases from here.
    #[serde(default)]
    pub since: Option<String>,
    /// Commit type -> bump and changelog section. Merged over the defaults.
    #[serde(default)]
    pub types: IndexMap<String, TypeRule>,
    #[serde(default = "default_changelog")]
    pub changelog: String,
    /// A minijinja template replacing the built-in one (see README, "Releases").
    #[serde(default)]
    pub template: Option<String>,
    /// Extra files whose version is replaced by a regex (first capture group is the version).
    #[serde(default)]
    pub version_files: Vec<VersionFile>,
    /// Monorepo: packages released on their own.
    #[serde(default)]
    pub packages: Vec<Package>,
    /// Web URL of the repository for commit links (default: from `git remote get-url origin`).
    #[serde(default)]
    pub repository_url: Option<String>,
    /// `hangar serve` tags a release prepared with `hangar release --pr` when
    /// a push to the default branch merges it (opt-in: the server then
    /// writes tags to the repository).
    #[serde(default)]
    pub tag_on_merge: bool,
    /// How `hangar serve` writes those tags: `git` pushes them to the clone
    /// URL, `api` creates them through the forge's API with the repository's
    /// credential. Unset: git, except over ssh when the repository has a
    /// forge credential (the server's token cannot authenticate ssh).
    #[serde(default)]
    pub tag_via: Option<TagVia>,
}

/// How the server writes a merged release's tags (`release.tag_via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagVia {
    Git,
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    None,
    Patch,
    Minor,
    Major,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    #[serde(default = "default_none")]
    pub bump: Bump,
    /// Changelog section title; none hides the type from the changelog.
    #[serde(default)]
    pub section: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFile {
    pub path: String,
    /// Regex whose first group is the version to replace.
    pub regex: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    /// Directory (relative to the repository root); commits touching it count for the package.
    pub path: String,
    /// Default `{name}-v{version}`.
    #[serde(default)]
    pub tag_format: Option<String>,
    #[serde(default)]
    pub changelog: Option<String>,
}

fn default_tag() -> String {
    "v{version}".into()
}
fn default_initial() -> String {
    "0.1.0".into()
}
fn default_major() -> Bump {
    Bump::Major
}
fn default_none() -> Bump {
    Bump::None
}
fn default_changelog() -> String {
    "CHANGELOG.md".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tag_format: default_tag(),
            initial_version: default_initial(),
            breaking_below_1: Bump::Major,
            since: None,
            types: IndexMap::new(),
            changelog: default_changelog(),
            template: None,
            version_files: Vec::new(),
            packages: Vec::new(),
            repository_url: None,
            tag_on_merge: false,
            tag_via: None,
        }
    }
}

impl Config {
    /// The rule for a commit type: configured, else the Conventional Commits defaults.
    pub fn rule(&self, ty: &str) -> TypeRule {
        if let Some(r) = self.types.get(ty) {
            return r.clone();
        }
        let (bump, section) = match ty {
            "feat" => (Bump::Minor, Some("Features")),
            "fix" => (Bump::Patch, Some("Bug Fixes")),
            "perf" => (Bump::Patch, Some("Performance")),
            "revert" => (Bump::Patch, Some("Reverts")),
            "refactor" => (Bump::None, Some("Refactoring")),
            "docs" => (Bump::None, Some("Documentation")),
            _ => (Bump::None, None),
        };
        TypeRule {
            bump,
            section: section.map(String::from),
        }
    }

    /// Reads the `release:` section of `hangar.yml` in `dir`, if any; other sections are ignored.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Config> {
        for name in ["hangar.yml", "hangar.yaml"] {
            let path = dir.join(name);
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Config::parse(&path.display().to_string(), &text);
            }
        }
        Ok(Config::default())
    }

    /// The `release:` section of a hangar.yml's text (`name` is what errors
    /// call the file): the server reads it at a pushed commit.
    pub fn parse(name: &str, text: &str) -> anyhow::Result<Config> {
        Config::parse_positioned(text)
            .map_err(|(line, col, msg)| anyhow::anyhow!("{name}:{line}:{col}: {msg}"))
    }

    /// [`Config::parse`] with the error's line, column and message apart,
    /// for `hangar validate`'s diagnostics.
    pub fn parse_positioned(text: &str) -> Result<Config, (usize, usize, String)> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            release: Option<Config>,
        }
        let file: File = serde_saphyr::from_str(text).map_err(|e| {
            let (line, col) = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((1, 1));
            (
                line,
                col,
                e.to_string().lines().next().unwrap_or_default().to_string(),
            )
        })?;
        Ok(file.release.unwrap_or_default())
    }
}
