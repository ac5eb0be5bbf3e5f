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
pub mod pr;

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
    /// How the version was decided, where a peer tool might decide otherwise
    /// (shown by `--dry-run`).
    pub explain: Vec<String>,
    /// Why nothing was released, when `released` is false.
    pub reason: Option<String>,
    /// `--pr`: the branch the release is prepared on.
    pub branch: Option<String>,
    /// `--pr`: the branch it was prepared from, which the pull request
    /// merges it into (none when HEAD was detached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// A merged `--pr` release: the commit its tag is on.
    pub merge: Option<String>,
    /// `--pr`: the branch existed already and was rebuilt (its open pull
    /// request is updated rather than a new one opened).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refreshed: bool,
}

struct Unit {
    name: Option<String>,
    path: Option<String>,
    tag_format: String,
    changelog: String,
}

/// The units released: the repository, or each package (only `package`, when named).
fn units(config: &Config, package: Option<&str>) -> Vec<Unit> {
    if config.packages.is_empty() {
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
            .filter(|p| package.is_none_or(|n| n == p.name))
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
    }
}

/// A tag's version and changelog, by the unit whose tag format it has.
fn unit_of(units: &[Unit], tag: &str) -> Option<(String, String)> {
    units.iter().find_map(|u| {
        let (prefix, suffix) = u
            .tag_format
            .split_once("{version}")
            .unwrap_or((u.tag_format.as_str(), ""));
        let v = tag.strip_prefix(prefix)?.strip_suffix(suffix)?;
        Version::parse(v).ok()?;
        Some((v.to_string(), u.changelog.clone()))
    })
}

/// Plans and (unless `dry_run`) performs the release.
pub fn run(opts: &Options) -> anyhow::Result<Vec<Outcome>> {
    let config = Config::load(&opts.dir)?;
    git::git(&opts.dir, &["rev-parse", "--git-dir"], &[])
        .map_err(|_| anyhow::anyhow!("{} is not a git repository", opts.dir.display()))?;
    let units = units(&config, opts.package.as_deref());
    if let Some(p) = &opts.package
        && units.is_empty()
    {
        bail!("no package `{p}` in hangar.yml release.packages");
    }
    let repo_url = config
        .repository_url
        .clone()
        .or_else(|| git::remote_url(&opts.dir));
    let tags: Vec<String> = git::git(&opts.dir, &["tag", "--merged", "HEAD"], &[])?
        .lines()
        .map(String::from)
        .collect();
    // A release prepared with `--pr` and merged: tagged as prepared, with no
    // new version computed (unless one is asked for explicitly).
    // Each tag's version and changelog, by the unit whose tag format it has.
    let unit_of = |tag: &str| unit_of(&units, tag);
    // A release prepared with `--pr` and merged: tagged as prepared, with no
    // new version computed (unless one is asked for explicitly). A commit
    // whose subject names tags of another format (another tool's) is not one.
    if opts.force.is_none()
        && opts.pre.is_none()
        && let Some(merged) = pr::merged_release(&opts.dir)?
        && merged.tags.iter().all(|t| unit_of(t).is_some())
    {
        return pr::tag_merged(opts, &unit_of, &merged);
    }
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
        let paths: Vec<String> = touched.iter().map(|p| p.display().to_string()).collect();
        hangar_git::Git::new(&opts.dir)
            .arg("add")
            .values(&paths)
            .output()?;
        let names: Vec<String> = tags_made.iter().filter_map(|o| o.tag.clone()).collect();
        hangar_git::Git::new(&opts.dir)
            .arg("commit")
            .opt("-m", pr::title(&names))
            .output()?;
    }
    if !opts.no_tag {
        for o in &tags_made {
            let tag = o.tag.clone().unwrap_or_default();
            // `-a` makes an annotated tag; git signs it by itself when `tag.gpgSign` is set.
            hangar_git::Git::new(&opts.dir)
                .args(&["tag", "-a"])
                .opt("-m", format!("{tag}\n\n{}", o.notes))
                .value(&tag)
                .output()?;
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
    let mut explain = Vec::new();
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
    // What the version files say now: with no tag they are the current version.
    let unit_dir = unit
        .path
        .as_deref()
        .map(|p| opts.dir.join(p))
        .unwrap_or_else(|| opts.dir.clone());
    let regex_files: &[config::VersionFile] = if unit.path.is_none() {
        &config.version_files
    } else {
        &[]
    };
    let declared = files::current_versions(&unit_dir, regex_files)?;
    if let Some((first_file, first)) = declared.first()
        && let Some((other_file, other)) = declared.iter().find(|(_, v)| v != first)
    {
        bail!(
            "the version files disagree: {first_file} says {first}, {other_file} says {other}; make them agree (or release with --as X.Y.Z, which writes it to all of them)"
        );
    }
    let declared_version = declared.first().map(|(f, v)| (f.clone(), v.clone()));
    // `release.since`: only commits after this one count.
    let since = match &config.since {
        Some(rev) => Some(git::resolve_commit(&opts.dir, rev)?),
        None => None,
    };
    let log_since = |tag: Option<&String>| -> anyhow::Result<Vec<git::RawCommit>> {
        let range = tag
            .map(|t| format!("{t}..HEAD"))
            .unwrap_or_else(|| "HEAD".into());
        let mut revs = vec![range];
        if let Some(s) = &since {
            revs.push(format!("^{s}"));
        }
        let revs: Vec<&str> = revs.iter().map(String::as_str).collect();
        let raw = git::log_revs(&opts.dir, &revs, unit.path.is_some())?;
        Ok(match &unit.path {
            Some(p) => raw
                .into_iter()
                .filter(|c| {
                    c.files
                        .iter()
                        .any(|f| f == p || f.starts_with(&format!("{p}/")))
                })
                .collect(),
            None => raw,
        })
    };
    let raw = log_since(last_stable.as_ref().map(|x| x.1))?;
    let raw_count = raw.len();
    let (commits, nonconforming) = commits::classify(raw, repo_url);
    let mut base = last_stable.as_ref().map(|x| x.0.clone());
    let mut previous = last_any.as_ref().map(|x| x.0.to_string());
    if base.is_none()
        && let Some((file, v)) = &declared_version
    {
        explain.push(format!(
            "no {} tag yet: the current version is {v}, from {file}",
            unit.tag_format.replace("{version}", "X.Y.Z")
        ));
        base = Some(v.clone());
        previous = previous.or_else(|| Some(v.to_string()));
    }
    let major_zero = base.as_ref().map(|b| b.major == 0).unwrap_or(true);
    let bump = commits::bump(&commits, config, major_zero);
    if major_zero && commits.iter().any(|c| c.breaking) && opts.force.is_none() {
        explain.push(match config.breaking_below_1 {
            Bump::Major => "a breaking change before 1.0.0 releases 1.0.0, as commitizen and python-semantic-release do by default (git-cliff would bump the minor version); `release.breaking_below_1: minor` in hangar.yml keeps 0.x".to_string(),
            _ => "a breaking change before 1.0.0 bumps the minor version, as configured (release.breaking_below_1), as git-cliff does; commitizen and python-semantic-release would release 1.0.0".to_string(),
        });
    }
    let since_what = last_stable
        .as_ref()
        .map(|x| x.1.clone())
        .or_else(|| {
            since
                .as_ref()
                .map(|s| format!("release.since ({})", &s[..7.min(s.len())]))
        })
        .unwrap_or_else(|| "the first commit".into());
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
        explain,
        reason: None,
        branch: None,
        base: None,
        merge: None,
        refreshed: false,
    };
    let next = if let Some(v) = &opts.force {
        v.clone()
    } else if bump == Bump::None {
        out.reason = Some(if raw_count == 0 {
            format!("no commits since {since_what}")
        } else if commits.is_empty() {
            format!(
                "{raw_count} commit(s) since {since_what}, none of them a Conventional Commit (e.g. `{}`); write `feat: ...`/`fix: ...` from now on and set `release.since` to the last old commit, or release once with --as X.Y.Z",
                out.nonconforming
                    .first()
                    .map(|n| n.subject.as_str())
                    .unwrap_or("")
            )
        } else {
            format!(
                "{} conventional commit(s) since {since_what}, none of a type that bumps the version (feat, fix, perf, revert or a breaking change)",
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
    // Never a downgrade: not below what the version files declare, and
    // `--as` not below the last release.
    if let Some((file, declared)) = &declared_version
        && next < *declared
    {
        bail!(
            "{next} would go back from {declared} ({file} says {declared}); hangar does not downgrade: release --as {declared} (or higher), or correct {file}"
        );
    }
    if opts.force.is_some()
        && let Some((last, tag)) = &last_stable
        && next < *last
    {
        bail!("--as {next} would go back from {last} ({tag}); hangar does not downgrade");
    }
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
    // (The newest tag is a pre-release newer than the last stable one; with no
    // stable tag, the base may be that same pre-release read from the files.)
    let newer_pre = opts.pre.is_some()
        && last_any
            .as_ref()
            .is_some_and(|(v, _)| Some(v) != last_stable.as_ref().map(|x| &x.0));
    let notes_commits = if newer_pre {
        let raw = log_since(last_any.as_ref().map(|x| x.1))?;
        if raw.is_empty() && opts.force.is_none() {
            // No empty pre-release: rc.2 right after rc.1 would ship the same thing.
            out.reason = Some(format!(
                "no commits since {}; a new pre-release would be the same as it",
                last_any.as_ref().map(|x| x.1.as_str()).unwrap_or("")
            ));
            return Ok(out);
        }
        commits::classify(raw, repo_url).0
    } else {
        commits.clone()
    };
    let tag = unit.tag_format.replace("{version}", &next.to_string());
    let mut ctx = changelog::Context::new(
        &next,
        previous.as_deref(),
        &tag,
        last_any.as_ref().map(|x| x.1.as_str()),
        &notes_commits,
        config,
        repo_url,
    );
    // `--as` on a history that is not conventional: list what changed rather
    // than an empty entry.
    if ctx.sections.is_empty() && ctx.breaking.is_empty() && !out.nonconforming.is_empty() {
        ctx.sections.push(changelog::Section {
            title: "Changes".into(),
            commits: out
                .nonconforming
                .iter()
                .map(|n| commits::Commit::plain(&n.sha, &n.subject, repo_url))
                .collect(),
        });
    }
    out.notes = changelog::render(config, &ctx)?;
    out.released = true;
    out.version = Some(next.to_string());
    out.tag = Some(tag);
    Ok(out)
}

/// The next version after `b` (semver's increment, as npm's `semver.inc`
/// and semantic-release compute it): from a pre-release such as
/// `1.1.0-rc.1` (what the version files say after a release candidate, before
/// any stable tag) the release it leads to, `1.1.0`, unless the change needs
/// more than that version already is.
fn bumped(b: &Version, bump: Bump) -> Version {
    let pre = !b.pre.is_empty();
    match bump {
        Bump::Major if pre && b.minor == 0 && b.patch == 0 => Version::new(b.major, 0, 0),
        Bump::Major => Version::new(b.major + 1, 0, 0),
        Bump::Minor if pre && b.patch == 0 => Version::new(b.major, b.minor, 0),
        Bump::Minor => Version::new(b.major, b.minor + 1, 0),
        Bump::Patch | Bump::None if pre => Version::new(b.major, b.minor, b.patch),
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
