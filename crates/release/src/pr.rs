//! Releases through review: `hangar release --pr` prepares the release (the
//! version files and the changelog, committed) on a branch `release/vX.Y.Z`
//! and pushes it; once that branch is merged, `hangar release` tags the
//! merge with the version the branch prepared, computing nothing.
//!
//! The prepared commit is the ordinary release commit (`chore(release):
//! TAGS`), so a merged branch is recognised by it on the default branch:
//! a commit so named, reachable from HEAD and from no tag, whose tags do not
//! exist yet. A merge commit, a fast-forward and a squash (GitHub names the
//! squashed commit after the pull request, `... (#12)`) are all found.

use std::path::Path;

use anyhow::{Context, bail};

use crate::git::git;
use crate::{Options, Outcome};

/// The subject of a release commit: `chore(release): v1.2.0, web-v0.3.0`.
pub(crate) const SUBJECT: &str = "chore(release): ";

/// A merged, untagged release: its tags and the commit that carries it onto
/// the current branch (the merge commit, or the release commit itself when it
/// was fast-forwarded or squashed).
#[derive(Debug, Clone)]
pub struct Merged {
    pub tags: Vec<String>,
    pub commit: String,
    /// The release commit as prepared (equal to `commit` unless merged).
    pub release_commit: String,
}

/// The tags a release commit's subject names (`chore(release): v1.2.0 (#12)`
/// names `v1.2.0`).
fn subject_tags(subject: &str) -> Option<Vec<String>> {
    let list = subject.strip_prefix(SUBJECT)?;
    // A squash merge appends the pull request's number.
    let list = match list.rfind(" (#") {
        Some(i) if list.ends_with(')') => &list[..i],
        _ => list,
    };
    let tags: Vec<String> = list
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
        .collect();
    (!tags.is_empty()).then_some(tags)
}

/// The current branch's short name, or `None` when HEAD is detached.
fn current_branch(dir: &Path) -> Option<String> {
    git(dir, &["symbolic-ref", "-q", "--short", "HEAD"], &[])
        .ok()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
}

/// A release prepared on a `release/` branch and merged into HEAD, not yet
/// tagged (the oldest such, when several are). Never on a `release/`
/// branch itself: that release is still in review.
pub fn merged_release(dir: &Path) -> anyhow::Result<Option<Merged>> {
    if current_branch(dir).is_some_and(|b| b.starts_with("release/")) {
        return Ok(None);
    }
    merged_release_at(dir, "HEAD")
}

/// [`merged_release`] on the history of `rev` (a commit id, in a bare
/// repository too): what `hangar serve` asks of a push to the default branch.
pub fn merged_release_at(dir: &Path, rev: &str) -> anyhow::Result<Option<Merged>> {
    let existing: std::collections::BTreeSet<String> = git(dir, &["tag", "--list"], &[])?
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    // Oldest first; commits no tag contains (a tagged release is done).
    let log = git(
        dir,
        &[
            "log",
            "--reverse",
            "--format=%H%x00%s",
            // `rev --not --tags`, with `rev` last where it cannot be an option.
            "--not",
            "--tags",
            "--not",
        ],
        &[rev],
    )?;
    let Some((release_commit, tags)) = log.lines().find_map(|line| {
        let (sha, subject) = line.split_once('\0')?;
        let tags = subject_tags(subject)?;
        tags.iter()
            .all(|t| !existing.contains(t))
            .then(|| (sha.to_string(), tags))
    }) else {
        return Ok(None);
    };
    // On HEAD's first-parent line (fast-forward, squash, rebase): that
    // commit is the release. Otherwise the first commit of that line that
    // brought it in is the merge.
    let first_parent = git(dir, &["rev-list", "--first-parent"], &[rev])?;
    let commit = if first_parent.lines().any(|l| l.trim() == release_commit) {
        release_commit.clone()
    } else {
        let range = format!("{release_commit}..{rev}");
        git(
            dir,
            &["rev-list", "--first-parent", "--ancestry-path"],
            &[&range],
        )?
        .lines()
        .last()
        .map(|l| l.trim().to_string())
        .with_context(|| format!("the release commit is not in {rev}'s history"))?
    };
    Ok(Some(Merged {
        tags,
        commit,
        release_commit,
    }))
}

/// The notes of `version` in the changelog at `path` (its section, heading
/// included), or empty when the changelog has none.
fn notes_of(path: &Path, version: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| notes_in(&text, version))
        .unwrap_or_default()
}

/// The section of `version` in a changelog's text.
fn notes_in(text: &str, version: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            if inside {
                break;
            }
            inside = line.contains(version);
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// An annotated tag of a merged release, as `hangar serve` makes it.
#[derive(Debug, Clone)]
pub struct MergedTag {
    pub tag: String,
    pub version: String,
    /// The tag's message: the tag, then its notes.
    pub message: String,
}

/// The tags of `merged` with their messages, the notes read from the
/// changelogs as committed in the merge (no work tree needed: the server
/// reads a bare repository). An error when a tag matches no tag format of
/// `config`, as `hangar release` says.
pub fn merged_tags(
    dir: &Path,
    config: &crate::Config,
    merged: &Merged,
) -> anyhow::Result<Vec<MergedTag>> {
    let units = crate::units(config, None);
    let mut out = Vec::new();
    for tag in &merged.tags {
        let Some((version, changelog)) = crate::unit_of(&units, tag) else {
            bail!(
                "commit {} prepared the release {tag}, which matches no tag format of hangar.yml (release.tag_format / packages)",
                short(&merged.release_commit)
            );
        };
        let text =
            git(dir, &["show"], &[&format!("{}:{changelog}", merged.commit)]).unwrap_or_default();
        let notes = notes_in(&text, &version);
        out.push(MergedTag {
            message: format!("{tag}\n\n{notes}"),
            tag: tag.clone(),
            version,
        });
    }
    Ok(out)
}

/// `git tag -a -m MESSAGE TAG COMMIT` (git signs it when `tag.gpgSign` is set).
pub fn annotated_tag(dir: &Path, tag: &str, commit: &str, message: &str) -> hangar_git::Git {
    hangar_git::Git::new(dir)
        .args(&["tag", "-a"])
        .opt("-m", message)
        .value(tag)
        .value(commit)
}

/// Tags a merged release (unless `dry_run`), as `hangar release` does
/// once the branch `--pr` prepared is merged.
pub(crate) fn tag_merged(
    opts: &Options,
    unit_of: &dyn Fn(&str) -> Option<(String, String)>,
    merged: &Merged,
) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for tag in &merged.tags {
        let Some((version, changelog)) = unit_of(tag) else {
            bail!(
                "commit {} prepared the release {tag}, which matches no tag format of hangar.yml (release.tag_format / packages): tag it by hand, or correct the format",
                short(&merged.release_commit)
            );
        };
        let notes = notes_of(&opts.dir.join(changelog), &version);
        if !opts.dry_run && !opts.no_tag {
            // `-a` makes an annotated tag; git signs it by itself when `tag.gpgSign` is set.
            annotated_tag(&opts.dir, tag, &merged.commit, &format!("{tag}\n\n{notes}"))
                .output()
                .with_context(|| format!("tagging {tag}"))?;
        }
        outcomes.push(Outcome {
            package: None,
            released: true,
            version: Some(version),
            tag: Some(tag.clone()),
            previous: None,
            bump: crate::Bump::None,
            commits: 0,
            notes,
            nonconforming: Vec::new(),
            files: Vec::new(),
            warnings: Vec::new(),
            explain: vec![format!(
                "prepared for review in commit {} and merged: tagging {} with the version the branch prepared",
                short(&merged.release_commit),
                short(&merged.commit)
            )],
            reason: None,
            branch: None,
            base: None,
            merge: Some(merged.commit.clone()),
            refreshed: false,
        });
    }
    Ok(outcomes)
}

/// Where to open the pull request by hand, for a GitHub remote: what is
/// printed when no forge token lets hangar open it.
pub fn compare_link(dir: &Path, remote: &str, base: &str, branch: &str) -> Option<String> {
    (remote == "origin")
        .then(|| crate::git::remote_url(dir))
        .flatten()
        .filter(|u| u.starts_with("https://github.com/"))
        .map(|u| format!("{u}/compare/{base}...{branch}?expand=1"))
}

/// The subject of the release commit of `tags`, which is also the release
/// pull request's title: `chore(release): v1.2.0`.
pub fn title(tags: &[String]) -> String {
    format!("{SUBJECT}{}", tags.join(", "))
}

fn short(sha: &str) -> &str {
    &sha[..7.min(sha.len())]
}

/// `hangar release --pr`: plans the release, then (unless `dry_run`) commits
/// it on `release/<tag>` from HEAD, pushes that branch to `remote`, and
/// comes back to the branch it started on. The outcomes say which branch.
pub fn prepare(opts: &Options, remote: &str, push: bool) -> anyhow::Result<Vec<Outcome>> {
    prepare_with(opts, remote, push, &|_| Ok(()))
}

/// The release branch as it stood before `--pr` refreshed it.
#[derive(Debug, Clone)]
pub struct Existing {
    pub branch: String,
    /// Its commit on the remote (what the push's lease expects), when pushed.
    pub remote_commit: Option<String>,
    /// Its local commit, when the branch exists here.
    pub local_commit: Option<String>,
}

/// [`prepare`], where a release branch that exists already (here or on the
/// remote) is refreshed rather than refused: rebuilt from HEAD and pushed
/// with `--force-with-lease` against the commit the remote had, so a push
/// someone made to it meanwhile is never overwritten. `check` is asked first
/// (the CLI asks the forge whether the branch's pull request was merged or
/// closed, and stops then); an error from it changes nothing.
pub fn prepare_with(
    opts: &Options,
    remote: &str,
    push: bool,
    check: &dyn Fn(&Existing) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Outcome>> {
    if let Some(m) = merged_release(&opts.dir)? {
        bail!(
            "{} was prepared and merged but is not tagged yet: run `hangar release` (without --pr) to tag it first",
            m.tags.join(", ")
        );
    }
    let planned = crate::run(&Options {
        dry_run: true,
        ..opts.clone()
    })?;
    let Some(first) = planned.iter().find(|o| o.released) else {
        return Ok(planned);
    };
    let branch = format!("release/{}", first.tag.clone().unwrap_or_default());
    let dir = &opts.dir;
    if push && git(dir, &["remote", "get-url"], &[remote]).is_err() {
        bail!(
            "no git remote `{remote}` to push {branch} to: add it (git remote add {remote} URL), name another with --remote, or keep the branch local with --no-push"
        );
    }
    let local_commit = git(
        dir,
        &["rev-parse", "--verify", "--quiet"],
        &[&format!("refs/heads/{branch}")],
    )
    .ok()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty());
    let remote_commit = if push {
        remote_branch(dir, remote, &branch)?
    } else {
        None
    };
    let existing = (local_commit.is_some() || remote_commit.is_some()).then(|| Existing {
        branch: branch.clone(),
        remote_commit: remote_commit.clone(),
        local_commit: local_commit.clone(),
    });
    if let Some(e) = &existing {
        check(e)?;
    }
    let refreshing = existing.as_ref().map(|e| {
        match &e.remote_commit {
            Some(c) => format!(
                "branch {branch} existed on {remote} at {}: rebuilt from HEAD and pushed with --force-with-lease against it",
                short(c)
            ),
            None => format!("branch {branch} existed here: rebuilt from HEAD"),
        }
    });
    if opts.dry_run {
        return Ok(planned
            .into_iter()
            .map(|mut o| {
                if o.released {
                    o.branch = Some(branch.clone());
                    o.explain.push(match &refreshing {
                        Some(_) => format!(
                            "would refresh branch {branch}, which exists already (rebuilt from HEAD{})",
                            if push {
                                format!(", pushed to {remote} with --force-with-lease")
                            } else {
                                String::new()
                            }
                        ),
                        None => format!(
                            "would commit it on branch {branch}{}",
                            if push {
                                format!(" and push that to {remote}")
                            } else {
                                String::new()
                            }
                        ),
                    });
                }
                o
            })
            .collect());
    }
    let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"], &[])?;
    if !dirty.trim().is_empty() {
        bail!(
            "uncommitted changes in {}: commit or set them aside before preparing {branch}, which must hold only the release",
            dir.display()
        );
    }
    let base = current_branch(dir);
    if base.as_deref() == Some(branch.as_str()) {
        bail!(
            "you are on {branch}: switch to the branch the release is cut from (the default branch), then run `hangar release --pr` again"
        );
    }
    let back = match &base {
        Some(b) => b.clone(),
        None => git(dir, &["rev-parse", "HEAD"], &[])?.trim().to_string(),
    };
    // `switch -c NAME` would take `--end-of-options` as the name: the branch
    // is made (or moved back to HEAD) first, then switched to.
    if local_commit.is_some() {
        git(dir, &["branch", "--force"], &[&branch, "HEAD"])?;
    } else {
        git(dir, &["branch"], &[&branch])?;
    }
    git(dir, &["switch", "--quiet"], &[&branch])?;
    let made = crate::run(&Options {
        no_tag: true,
        no_commit: false,
        ..opts.clone()
    });
    let pushed = match &made {
        Ok(_) if push => {
            // The lease: the remote's branch must still be where it was seen
            // (absent, when it was), or the push is refused.
            let lease = format!(
                "--force-with-lease=refs/heads/{branch}:{}",
                remote_commit.as_deref().unwrap_or("")
            );
            git(
                dir,
                &["push", "--quiet", "--set-upstream", &lease],
                &[remote, &format!("refs/heads/{branch}:refs/heads/{branch}")],
            )
            .map(|_| ())
            .with_context(|| {
                format!(
                    "pushing {branch} to {remote}{}",
                    if remote_commit.is_some() {
                        " (someone may have pushed to it since it was read: look at it, then run again)"
                    } else {
                        ""
                    }
                )
            })
        }
        _ => Ok(()),
    };
    // Back where the user was, whatever happened on the branch.
    let switched = git(dir, &["switch", "--quiet"], &[&back])
        .or_else(|_| git(dir, &["switch", "--quiet", "--detach"], &[&back]));
    if made.is_err() || pushed.is_err() {
        // The local branch as it was: nothing half-made is left behind.
        let _ = match &local_commit {
            Some(c) => git(dir, &["branch", "--force"], &[&branch, c]),
            None => git(dir, &["branch", "-D"], &[&branch]),
        };
    }
    let mut made = made?;
    pushed?;
    switched.with_context(|| format!("switching back to {back}"))?;
    for o in made.iter_mut().filter(|o| o.released) {
        o.branch = Some(branch.clone());
        o.base = base.clone();
        o.refreshed = existing.is_some();
        if let Some(r) = &refreshing {
            o.explain.push(r.clone());
        }
        o.explain.push(format!(
            "committed on branch {branch}{}; merge it, then `hangar release` tags the merge",
            if push {
                format!(", pushed to {remote}")
            } else {
                String::new()
            }
        ));
    }
    Ok(made)
}

/// The commit of `branch` where `remote` pushes (its push URL, which may
/// differ from the one it fetches from), as it is now.
fn remote_branch(dir: &Path, remote: &str, branch: &str) -> anyhow::Result<Option<String>> {
    let url = git(dir, &["remote", "get-url", "--push"], &[remote])?;
    let out = git(
        dir,
        &["ls-remote", "--heads"],
        &[url.trim(), &format!("refs/heads/{branch}")],
    )
    .with_context(|| format!("reading the branches of {remote}"))?;
    Ok(out
        .lines()
        .find_map(|l| l.split_whitespace().next())
        .filter(|c| hangar_git::is_commit_id(c))
        .map(String::from))
}

#[cfg(test)]
mod tests {
    use super::subject_tags;

    #[test]
    fn release_subjects_name_their_tags() {
        assert_eq!(
            subject_tags("chore(release): v1.2.0"),
            Some(vec!["v1.2.0".to_string()])
        );
        assert_eq!(
            subject_tags("chore(release): v1.2.0 (#12)"),
            Some(vec!["v1.2.0".to_string()])
        );
        assert_eq!(
            subject_tags("chore(release): web-v0.3.0, api-v1.0.0"),
            Some(vec!["web-v0.3.0".to_string(), "api-v1.0.0".to_string()])
        );
        assert_eq!(subject_tags("feat: release notes"), None);
        assert_eq!(subject_tags("chore(release): "), None);
    }
}
