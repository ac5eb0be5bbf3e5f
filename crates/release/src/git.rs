//! The `git` command line: it honours the user's configuration (signing, shallow
//! clones, credentials) and costs no build time.

use std::path::Path;

use anyhow::bail;

/// `git OPTIONS --end-of-options VALUES` in `dir`: refs, ranges, tag names and
/// paths go in `values`, so none can be read as an option (see `hangar_git`).
pub fn git(dir: &Path, options: &[&str], values: &[&str]) -> anyhow::Result<String> {
    hangar_git::Git::new(dir)
        .args(options)
        .values(values)
        .output()
}

/// One commit of the range.
#[derive(Debug, Clone)]
pub struct RawCommit {
    pub sha: String,
    pub author: String,
    pub time: i64,
    pub parents: usize,
    pub message: String,
    pub files: Vec<String>,
}

/// Commits in `range` (oldest first), with the files each touches when `with_files`.
pub fn log(dir: &Path, range: &str, with_files: bool) -> anyhow::Result<Vec<RawCommit>> {
    log_revs(dir, &[range], with_files)
}

/// Commits reachable from `revs` (`A..B`, `^C`...), oldest first.
pub fn log_revs(dir: &Path, revs: &[&str], with_files: bool) -> anyhow::Result<Vec<RawCommit>> {
    // One process, records separated by RS (0x1e) and fields by US (0x1f): messages may hold anything else.
    let mut args = vec![
        "log",
        "--reverse",
        "--format=%x1e%H%x1f%an%x1f%at%x1f%P%x1f%B%x1f",
    ];
    if with_files {
        args.push("--name-only");
    }
    let text = hangar_git::Git::new(dir)
        .args(&args)
        .values(revs)
        .arg("--")
        .output()?;
    let mut out = Vec::new();
    for rec in text.split('\u{1e}').filter(|r| !r.trim().is_empty()) {
        let f: Vec<&str> = rec.splitn(6, '\u{1f}').collect();
        if f.len() < 5 {
            continue;
        }
        out.push(RawCommit {
            sha: f[0].trim().to_string(),
            author: f[1].to_string(),
            time: f[2].parse().unwrap_or(0),
            parents: f[3].split_whitespace().count(),
            message: f[4].trim().to_string(),
            files: f
                .get(5)
                .map(|s| {
                    s.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The commit id `rev` names, checked to be a commit (`release.since`).
pub fn resolve_commit(dir: &Path, rev: &str) -> anyhow::Result<String> {
    let spec = format!("{rev}^{{commit}}");
    let out = git(dir, &["rev-parse", "--verify", "--quiet"], &[&spec]).map_err(|_| {
        anyhow::anyhow!("release.since: `{rev}` is not a commit, tag or branch of this repository")
    })?;
    let sha = out.trim().to_string();
    if sha.is_empty() || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("release.since: `{rev}` is not a commit, tag or branch of this repository");
    }
    Ok(sha)
}

pub fn is_shallow(dir: &Path) -> bool {
    git(dir, &["rev-parse", "--is-shallow-repository"], &[])
        .map(|s| s.trim() == "true")
        .unwrap_or(false)
}

/// The web URL of `origin`, for commit links (GitHub/GitLab/Gitea style).
pub fn remote_url(dir: &Path) -> Option<String> {
    let url = git(dir, &["remote", "get-url", "origin"], &[]).ok()?;
    let url = url.trim().trim_end_matches(".git");
    if let Some(rest) = url.strip_prefix("git@") {
        let (host, path) = rest.split_once(':')?;
        return Some(format!("https://{host}/{path}"));
    }
    (url.starts_with("https://") || url.starts_with("http://")).then(|| url.to_string())
}
