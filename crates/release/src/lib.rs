//! `hangar release`: Conventional Commits since the last version tag become the
//! next semantic version, a changelog entry, updated version files, a commit and
//! an annotated tag. `hangar commitlint` checks messages for a gate.
//!
//! Parsing is `git-conventional`'s and versions are `semver`'s; git is driven
//! through its command line (it signs tags when the user configured it to).

pub mod changelog;
pub mod commits;
pub mod config;
pub mod files;
pub mod git;

use std::path::{Path, PathBuf};

use anyhow::bail;
use semver::{Prerelease, Version};
use serde::Serialize;

pub use commits::{Commit, NonConforming, lint};
pub use config::{Bump, Config};

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dir: PathBuf,
    pub dry_run: bool,
    /// Pre-release channel (`rc` -> `1.4.0-rc.1`).
    pub pre: Option<String>,
    /// Force this version.
    pub force: Option<Version>,
    /// Only this monorepo package.
    pub package: Option<String>,
    pub no_commit: bool,
    pub no_tag: bool,
}

/// The release of one package (or of the repository).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub package: Option<String>,
    pub released: bool,
    pub version: Option<String>,
    pub tag: Option<String>,
    pub previous: Option<String>,
    pub bump: Bump,
    pub commits: usize,
    pub notes: String,
    pub nonconforming: Vec<NonConforming>,
    pub files: Vec<String>,
    pub warnings: Vec<String>,
    /// Why nothing was released, when `released` is false.
    pub reason: Option<String>,
}

struct Unit {
    name: Option<String>,
    path: Option<String>,
    tag_format: String,
    changelog: String,
}

/// Plans and (unless `dry_run`) performs the release.
pub fn run(opts: &Options) -> anyhow::Result<Vec<Outcome>> {
    let config = Config::load(&opts.dir)?;
    git::git(&opts.dir, &["rev-parse", "--git-dir"])
        .map_err(|_| anyhow::anyhow!("{} is not a git repository", opts.dir.display()))?;
    let units: Vec<Unit> = if config.packages.is_empty() {
        vec![Unit {
            name: None,
            path: None,
            tag_format: config.tag_format.clone(),
            changelog: config.changelog.clone(),
        }]
    } else {
        config
            .packages
            .iter()
            .filter(|p| opts.package.as_deref().is_none_or(|n| n == p.name))
            .map(|p| Unit {
                name: Some(p.name.clone()),
                path: Some(p.path.trim_end_matches('/').to_string()),
                tag_format: p
                    .tag_format
                    .clone()
                    .unwrap_or_else(|| format!("{}-v{{version}}", p.name)),
                changelog: p
                    .changelog
                    .clone()
                    .unwrap_or_else(|| format!("{}/CHANGELOG.md", p.path.trim_end_matches('/'))),
            })
            .collect()
    };
    if let Some(p) = &opts.package
        && units.is_empty()
    {
        bail!("no package `{p}` in hangar.yml release.packages");
    }
    let repo_url = config
        .repository_url
        .clone()
        .or_else(|| git::remote_url(&opts.dir));
    let tags: Vec<String> = git::git(&opts.dir, &["tag", "--merged", "HEAD"])?
        .lines()
        .map(String::from)
        .collect();
    let mut outcomes = Vec::new();
    for unit in &units {
        outcomes.push(plan_unit(opts, &config, unit, &tags, repo_url.as_deref())?);
    }
    if opts.dry_run || outcomes.iter().all(|o| !o.released) {
        return Ok(outcomes);
    }
    // Write files, then one commit, then the tags.
    let mut touched = Vec::new();
    for (unit, o) in units.iter().zip(outcomes.iter_mut()) {
        if !o.released {
            continue;
        }
        let version = o.version.clone().unwrap_or_default();
        let base = unit
            .path
            .as_deref()
            .map(|p| opts.dir.join(p))
            .unwrap_or_else(|| opts.dir.clone());
        let mut changed = files::update_versions(&base, &version, &mut o.warnings)?;
        if unit.path.is_none() {
            changed.extend(files::update_regex_files(
                &opts.dir,
                &config.version_files,
                &version,
            )?);
        }
        changelog::prepend(&opts.dir.join(&unit.changelog), &o.notes)?;
        changed.push(opts.dir.join(&unit.changelog));
        o.files = changed
            .iter()
            .map(|p| p.strip_prefix(&opts.dir).unwrap_or(p).display().to_string())
            .collect();
        touched.extend(changed);
    }
    let tags_made: Vec<&Outcome> = outcomes.iter().filter(|o| o.released).collect();
    if !opts.no_commit {
        let mut add = vec!["add".to_string(), "--".to_string()];
        add.extend(touched.iter().map(|p| p.display().to_string()));
        git::git(
            &opts.dir,
            &add.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        let names: Vec<String> = tags_made.iter().filter_map(|o| o.tag.clone()).collect();
        git::git(
            &opts.dir,
            &[
                "commit",
                "-m",
                &format!("chore(release): {}", names.join(", ")),
            ],
        )?;
    }
    if !opts.no_tag {
        for o in &tags_made {
            let tag = o.tag.clone().unwrap_or_default();
            // `-a` makes an annotated tag; git signs it by itself when `tag.gpgSign` is set.
            git::git(
                &opts.dir,
                &["tag", "-a", &tag, "-m", &format!("{tag}\n\n{}", o.notes)],
            )?;
        }
    }
    Ok(outcomes)
}

fn plan_unit(
    opts: &Options,
    config: &Config,
    unit: &Unit,
    tags: &[String],
    repo_url: Option<&str>,
) -> anyhow::Result<Outcome> {
    let mut warnings = Vec::new();
    let (prefix, suffix) = unit
        .tag_format
        .split_once("{version}")
        .unwrap_or((unit.tag_format.as_str(), ""));
    let mut versions: Vec<(Version, &String)> = tags
        .iter()
        .filter_map(|t| {
            let v = t.strip_prefix(prefix)?.strip_suffix(suffix)?;
            Some((Version::parse(v).ok()?, t))
        })
        .collect();
    versions.sort_by(|a, b| a.0.cmp(&b.0));
    let last_stable = versions
        .iter()
        .rev()
        .find(|(v, _)| v.pre.is_empty())
        .cloned();
    let last_any = versions.last().cloned();
    if git::is_shallow(&opts.dir) && last_stable.is_none() {
        warnings.push("shallow clone: the last version tag may be outside the fetched history; fetch with --unshallow (or fetch-depth: 0) for an exact version".into());
    }
    let range_from = |tag: Option<&String>| {
        tag.map(|t| format!("{t}..HEAD"))
            .unwrap_or_else(|| "HEAD".into())
    };
    let stable_range = range_from(last_stable.as_ref().map(|x| x.1));
    let raw = git::log(&opts.dir, &stable_range, unit.path.is_some())?;
    let raw: Vec<_> = match &unit.path {
        Some(p) => raw
            .into_iter()
            .filter(|c| {
                c.files
                    .iter()
                    .any(|f| f == p || f.starts_with(&format!("{p}/")))
            })
            .collect(),
        None => raw,
    };
    let (commits, nonconforming) = commits::classify(raw, repo_url);
    let base = last_stable.as_ref().map(|x| x.0.clone());
    let major_zero = base.as_ref().map(|b| b.major == 0).unwrap_or(true);
    let bump = commits::bump(&commits, config, major_zero);
    let previous = last_any.as_ref().map(|x| x.0.to_string());
    let mut out = Outcome {
        package: unit.name.clone(),
        released: false,
        version: None,
        tag: None,
        previous: previous.clone(),
        bump,
        commits: commits.len(),
        notes: String::new(),
        nonconforming,
        files: Vec::new(),
        warnings,
        reason: None,
    };
    let next = if let Some(v) = &opts.force {
        v.clone()
    } else if bump == Bump::None {
        out.reason = Some(if commits.is_empty() {
            format!(
                "no commits since {}",
                last_stable
                    .as_ref()
                    .map(|x| x.1.as_str())
                    .unwrap_or("the start")
            )
        } else {
            format!(
                "{} commit(s) since the last release, none of a type that bumps the version",
                commits.len()
            )
        });
        return Ok(out);
    } else {
        match &base {
            None => Version::parse(&config.initial_version)
                .map_err(|e| anyhow::anyhow!("release.initial_version: {e}"))?,
            Some(b) => bumped(b, bump),
        }
    };
    let next = match &opts.pre {
        None => next,
        Some(channel) => {
            // rc.N continues from the highest pre-release of the same version and channel.
            let n = versions
                .iter()
                .filter(|(v, _)| {
                    v.major == next.major && v.minor == next.minor && v.patch == next.patch
                })
                .filter_map(|(v, _)| {
                    v.pre
                        .as_str()
                        .strip_prefix(&format!("{channel}."))?
                        .parse::<u64>()
                        .ok()
                })
                .max()
                .unwrap_or(0);
            let mut v = next.clone();
            v.pre = Prerelease::new(&format!("{channel}.{}", n + 1))?;
            v
        }
    };
    if versions.iter().any(|(v, _)| *v == next) {
        out.reason = Some(format!("version {next} is already tagged"));
        return Ok(out);
    }
    // Notes of a pre-release list what is new since the previous tag of any kind.
    let notes_commits = if opts.pre.is_some() && last_any.as_ref().map(|x| &x.0) != base.as_ref() {
        let raw = git::log(
            &opts.dir,
            &range_from(last_any.as_ref().map(|x| x.1)),
            unit.path.is_some(),
        )?;
        commits::classify(raw, repo_url).0
    } else {
        commits.clone()
    };
    let tag = unit.tag_format.replace("{version}", &next.to_string());
    out.notes = changelog::render(
        config,
        &changelog::Context::new(
            &next,
            previous.as_deref(),
            &tag,
            last_any.as_ref().map(|x| x.1.as_str()),
            &notes_commits,
            config,
            repo_url,
        ),
    )?;
    out.released = true;
    out.version = Some(next.to_string());
    out.tag = Some(tag);
    Ok(out)
}

fn bumped(b: &Version, bump: Bump) -> Version {
    match bump {
        Bump::Major => Version::new(b.major + 1, 0, 0),
        Bump::Minor => Version::new(b.major, b.minor + 1, 0),
        Bump::Patch | Bump::None => Version::new(b.major, b.minor, b.patch + 1),
    }
}

/// Lints the messages of a range (default: commits not yet on any remote branch... or `HEAD~1..HEAD`).
pub fn commitlint(dir: &Path, range: &str) -> anyhow::Result<Vec<(String, String, Vec<String>)>> {
    let raw = git::log(dir, range, false)?;
    Ok(raw
        .into_iter()
        .filter(|c| c.parents <= 1)
        .map(|c| {
            let problems = lint(&c.message);
            (
                c.sha.chars().take(7).collect(),
                c.message.lines().next().unwrap_or("").to_string(),
                problems,
            )
        })
        .collect())
}
