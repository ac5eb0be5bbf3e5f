//! Marketplace actions and remote reusable workflows: `uses: OWNER/REPO[/PATH]@REF`
//! resolved to a commit with `git ls-remote` and fetched once per commit into a
//! cache under the data directory, shared by concurrent runs and every agent of
//! a machine.
//!
//! Cache layout, under `<data>/actions/<source>/<owner>/<repo>/`:
//! * `<commit>/`: the action's tree at that commit (no `.git`). It appears by an
//!   atomic rename of a finished temporary directory, so a directory that exists
//!   is complete; a fetch that fails leaves nothing behind.
//! * `<commit>.lock`: taken (an OS file lock) while that commit is fetched, so two
//!   runs wanting the same commit fetch it once.
//! * `refs/<ref>`: the commit a tag or branch last resolved to, which is what
//!   `--offline` uses.
//!
//! `<source>` is the forge's host plus a hash of its URL, so two forges never
//! share entries.

pub(crate) mod git;
pub mod node;

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where remote actions come from and whether the network may be used.
#[derive(Clone, Debug)]
pub struct ActionSource {
    /// Base URL of the forge: `https://github.com`, a GitHub Enterprise, Gitea or
    /// Forgejo URL, a mirror, or `file:///path/to/forge` (then `OWNER/REPO` is
    /// `<forge>/OWNER/REPO.git` or `<forge>/OWNER/REPO`).
    pub url: String,
    /// Use only the cache; never contact the forge.
    pub offline: bool,
    /// How long a tag or branch resolved to a cached commit is taken as it
    /// is without asking the forge again (`HANGAR_ACTIONS_TTL`, seconds;
    /// default 300, 0 asks every time). A repeated local run then costs no
    /// forge round trip; a moved tag is seen once the window passes.
    pub ref_ttl: std::time::Duration,
}

fn ref_ttl_from_env() -> std::time::Duration {
    std::env::var("HANGAR_ACTIONS_TTL")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(std::time::Duration::from_secs(300))
}

/// `HANGAR_ACTIONS_URL` when set, otherwise GitHub.
pub const DEFAULT_URL: &str = "https://github.com";

impl Default for ActionSource {
    fn default() -> ActionSource {
        ActionSource {
            url: std::env::var("HANGAR_ACTIONS_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_URL.to_string()),
            offline: false,
            ref_ttl: ref_ttl_from_env(),
        }
    }
}

impl ActionSource {
    /// Checks a configured URL (`--actions-url`, `HANGAR_ACTIONS_URL`, hangar.yml).
    pub fn new(url: &str, offline: bool) -> Result<ActionSource, String> {
        let u = url.trim().trim_end_matches('/');
        let scheme_ok = ["https://", "http://", "file://", "ssh://", "git://"]
            .iter()
            .any(|s| u.starts_with(s) && u.len() > s.len());
        if !scheme_ok {
            return Err(format!(
                "action source {url:?}: expected an https://, http://, ssh://, git:// or file:// URL \
                 (for example https://github.com or file:///srv/forge)"
            ));
        }
        Ok(ActionSource {
            url: u.to_string(),
            offline,
            ref_ttl: ref_ttl_from_env(),
        })
    }

    /// The URL without credentials, for messages and events.
    pub fn display_url(&self) -> String {
        redact_userinfo(&self.url)
    }

    fn repo_url(&self, owner: &str, repo: &str) -> String {
        let base = self.url.trim_end_matches('/');
        if let Some(path) = base.strip_prefix("file://") {
            // A folder of bare repositories: prefer `REPO.git`, as `git clone
            // --bare` names them, then a plain `REPO` folder.
            let bare = Path::new(path).join(owner).join(format!("{repo}.git"));
            if bare.exists() {
                return format!("{base}/{owner}/{repo}.git");
            }
            return format!("{base}/{owner}/{repo}");
        }
        format!("{base}/{owner}/{repo}")
    }

    fn cache_key(&self) -> String {
        let rest = self.url.split_once("://").map(|(_, r)| r).unwrap_or("");
        let host: String = rest
            .rsplit('@')
            .next()
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let hash = Sha256::digest(self.url.as_bytes());
        let short: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
        if host.is_empty() {
            format!("local-{short}")
        } else {
            format!("{host}-{short}")
        }
    }
}

fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}/{path}")
                    .trim_end_matches('/')
                    .to_string(),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// A parsed remote `uses:`: `owner/repo[/path]@ref`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRef {
    pub owner: String,
    pub repo: String,
    /// Folder (action) or file (reusable workflow) inside the repository; empty
    /// for the root.
    pub path: String,
    pub git_ref: String,
}

impl RemoteRef {
    /// Parses and validates `owner/repo[/path]@ref`. Workflow files are hostile:
    /// every part is checked before it gets near git or the file system.
    pub fn parse(uses: &str) -> Result<RemoteRef, String> {
        let bad = |why: &str| {
            format!("`uses: {uses}`: {why} (expected {{owner}}/{{repo}}[/path]@{{ref}})")
        };
        let (name, git_ref) = uses.rsplit_once('@').ok_or_else(|| bad("no `@ref`"))?;
        let mut parts = name.splitn(3, '/');
        let owner = parts.next().unwrap_or("");
        let repo = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("").trim_end_matches('/');
        check_name(owner).map_err(|e| bad(&format!("owner {e}")))?;
        check_name(repo).map_err(|e| bad(&format!("repository {e}")))?;
        check_path(path).map_err(|e| bad(&e))?;
        check_ref(git_ref).map_err(|e| bad(&e))?;
        Ok(RemoteRef {
            owner: owner.to_string(),
            repo: repo.to_string(),
            path: path.to_string(),
            git_ref: git_ref.to_string(),
        })
    }

    /// `owner/repo`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }
}

/// Owner and repository names as forges allow them: ASCII letters, digits,
/// `-`, `_`, `.`; not starting with `-` or `.`; at most 100 characters.
fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 100 {
        return Err(format!("{s:?} is longer than 100 characters"));
    }
    if s.starts_with(['-', '.']) {
        return Err(format!("{s:?} starts with `{}`", &s[..1]));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("{s:?} contains {c:?}"));
    }
    Ok(())
}

/// A path inside the repository: plain segments only (no `..`, `.`, empty
/// segments, backslashes or control characters), so it cannot leave the action's
/// directory.
fn check_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Ok(());
    }
    if p.len() > 1024 {
        return Err("the path is longer than 1024 characters".into());
    }
    for seg in p.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!("the path {p:?} has a `{seg}` segment"));
        }
        if seg.chars().any(|c| c.is_control() || c == '\\') {
            return Err(format!(
                "the path {p:?} contains a control character or `\\`"
            ));
        }
    }
    Ok(())
}

/// A ref as `git check-ref-format` would accept it, further limited to the
/// characters real tags and branches use, so it can never be read as an option
/// or a revision expression.
fn check_ref(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("the ref after `@` is empty".into());
    }
    if r.len() > 255 {
        return Err("the ref is longer than 255 characters".into());
    }
    if let Some(c) = r
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '+')))
    {
        return Err(format!("the ref {r:?} contains {c:?}"));
    }
    if r.starts_with(['-', '/', '.'])
        || r.ends_with(['/', '.'])
        || r.ends_with(".lock")
        || r.contains("..")
        || r.contains("//")
        || r.contains("/.")
    {
        return Err(format!("{r:?} is not a valid git ref"));
    }
    Ok(())
}

/// `uses: $/PATH` (GitHub's self-repository syntax, for actions and reusable
/// workflows): PATH in this repository at the workflow's commit, which for
/// hangar is the workspace. The path is checked so it cannot leave it.
pub(crate) fn self_path(workspace: &Path, rest: &str, uses: &str) -> Result<PathBuf, String> {
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(format!(
            "`uses: {uses}`: expected $/PATH, a path inside this repository"
        ));
    }
    check_path(rest).map_err(|e| format!("`uses: {uses}`: {e}"))?;
    Ok(workspace.join(rest))
}

fn is_commit_id(r: &str) -> bool {
    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A remote `uses:` fetched: its commit and where its tree is.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub commit: String,
    /// The repository's root in the cache.
    pub root: PathBuf,
    /// Whether it was already in the cache (nothing was downloaded).
    pub cached: bool,
}

impl Fetched {
    /// The action's folder or the workflow file: `root/path`.
    pub fn path(&self, r: &RemoteRef) -> PathBuf {
        if r.path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(&r.path)
        }
    }
}

/// The action cache under a data directory.
#[derive(Clone, Debug)]
pub struct ActionCache {
    dir: PathBuf,
}

impl ActionCache {
    /// `<data_dir>/actions`.
    pub fn new(data_dir: &Path) -> ActionCache {
        ActionCache {
            dir: data_dir.join("actions"),
        }
    }

    fn repo_dir(&self, source: &ActionSource, r: &RemoteRef) -> PathBuf {
        self.dir
            .join(source.cache_key())
            .join(&r.owner)
            .join(&r.repo)
    }

    /// The commit `r` resolved to when it was last fetched, if its tree is in
    /// the cache; never touches the network (what `--dry-run` reports).
    pub fn lookup(&self, source: &ActionSource, r: &RemoteRef) -> Option<String> {
        let repo_dir = self.repo_dir(source, r);
        let commit = if is_commit_id(&r.git_ref) {
            r.git_ref.to_ascii_lowercase()
        } else {
            let ref_file = repo_dir.join("refs").join(r.git_ref.replace('/', "%2F"));
            let c = std::fs::read_to_string(ref_file).ok()?;
            c.trim().to_string()
        };
        (is_commit_id(&commit) && repo_dir.join(&commit).is_dir()).then_some(commit)
    }

    /// Resolves `r` to a commit and makes sure its tree is in the cache. Blocking
    /// (runs git); call it from a blocking thread.
    pub fn fetch(&self, source: &ActionSource, r: &RemoteRef) -> Result<Fetched, String> {
        let repo_dir = self.repo_dir(source, r);
        let url = source.repo_url(&r.owner, &r.repo);
        let shown = format!("{}/{}", source.display_url(), r.repository());
        let ref_file = repo_dir.join("refs").join(r.git_ref.replace('/', "%2F"));
        let commit = if is_commit_id(&r.git_ref) {
            r.git_ref.to_ascii_lowercase()
        } else if source.offline {
            match std::fs::read_to_string(&ref_file) {
                Ok(c) if is_commit_id(c.trim()) => c.trim().to_string(),
                _ => {
                    return Err(format!(
                        "`{}@{}` is not in the action cache and --offline forbids fetching it: \
                         run once without --offline to fetch it from {}, or pin it to a commit \
                         that is cached",
                        r.repository(),
                        r.git_ref,
                        source.display_url()
                    ));
                }
            }
        } else if let Some(c) = fresh_ref(&ref_file, source.ref_ttl)
            && repo_dir.join(&c).is_dir()
        {
            return Ok(Fetched {
                root: repo_dir.join(&c),
                commit: c,
                cached: true,
            });
        } else {
            resolve_ref(&url, &shown, &r.git_ref)?
        };
        let root = repo_dir.join(&commit);
        if !source.offline && !is_commit_id(&r.git_ref) {
            remember_ref(&repo_dir, &ref_file, &commit);
        }
        if root.is_dir() {
            return Ok(Fetched {
                commit,
                root,
                cached: true,
            });
        }
        if source.offline {
            return Err(format!(
                "`{}@{}` (commit {commit}) is not in the action cache and --offline forbids \
                 fetching it: run once without --offline to fetch it from {}",
                r.repository(),
                r.git_ref,
                source.display_url()
            ));
        }
        std::fs::create_dir_all(&repo_dir)
            .map_err(|e| format!("cannot create the action cache {}: {e}", repo_dir.display()))?;
        // One fetch per commit on this machine: the lock is held while the tree
        // is downloaded; whoever waited finds it in place.
        let lock_path = repo_dir.join(format!("{commit}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        if root.is_dir() {
            return Ok(Fetched {
                commit,
                root,
                cached: true,
            });
        }
        // Leftovers of a fetch that was killed: only the lock holder writes here.
        if let Ok(entries) = std::fs::read_dir(&repo_dir) {
            let prefix = format!(".tmp-{commit}-");
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let tmp = repo_dir.join(format!(".tmp-{commit}-{}", std::process::id()));
        let result = download(&tmp, &url, &shown, &commit, &r.git_ref).and_then(|()| {
            std::fs::rename(&tmp, &root).map_err(|e| {
                format!(
                    "cannot move the fetched action into {}: {e}",
                    root.display()
                )
            })
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        drop(lock);
        result?;
        Ok(Fetched {
            commit,
            root,
            cached: false,
        })
    }
}

/// The commit `refs/<ref>` records, when it was written less than `ttl` ago.
fn fresh_ref(ref_file: &Path, ttl: std::time::Duration) -> Option<String> {
    if ttl.is_zero() {
        return None;
    }
    let age = std::fs::metadata(ref_file)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()?;
    if age >= ttl {
        return None;
    }
    let c = std::fs::read_to_string(ref_file).ok()?;
    let c = c.trim();
    is_commit_id(c).then(|| c.to_string())
}

/// Writes `refs/<ref>` atomically (temporary file, then rename).
fn remember_ref(repo_dir: &Path, ref_file: &Path, commit: &str) {
    let refs = repo_dir.join("refs");
    if std::fs::create_dir_all(&refs).is_err() {
        return;
    }
    if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(&refs)
        && tmp.write_all(commit.as_bytes()).is_ok()
    {
        let _ = tmp.persist(ref_file);
    }
}

/// A tag (peeled when annotated) wins over a branch of the same name, as git's
/// own `refs/tags` before `refs/heads` rule.
fn resolve_ref(url: &str, shown: &str, r: &str) -> Result<String, String> {
    let tag = format!("refs/tags/{r}");
    let peeled = format!("refs/tags/{r}^{{}}");
    let branch = format!("refs/heads/{r}");
    let out = git::git(
        Path::new("/"),
        &["ls-remote", "--quiet"],
        &[url, &tag, &peeled, &branch],
    )
    .map_err(|e| format!("cannot reach the action repository {shown}: {e}"))?;
    let mut found: [Option<&str>; 3] = [None; 3];
    for line in out.lines() {
        let Some((id, name)) = line.split_once('\t') else {
            continue;
        };
        if !is_commit_id(id) {
            continue;
        }
        let slot = if name == peeled {
            0
        } else if name == tag {
            1
        } else if name == branch {
            2
        } else {
            continue;
        };
        found[slot] = Some(id);
    }
    found
        .iter()
        .flatten()
        .next()
        .map(|id| id.to_ascii_lowercase())
        .ok_or_else(|| {
            format!(
                "the action repository {shown} has no tag or branch `{r}` \
                 (pin a tag, a branch or a full 40-character commit id that exists there)"
            )
        })
}

/// Fetches `commit` into `tmp` and checks its tree out without `.git`.
fn download(tmp: &Path, url: &str, shown: &str, commit: &str, r: &str) -> Result<(), String> {
    std::fs::create_dir_all(tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    git::git(tmp, &["init", "--quiet"], &[])?;
    let by_id = git::git(
        tmp,
        &[
            "fetch",
            "--quiet",
            "--depth=1",
            "--no-tags",
            "--no-write-fetch-head",
        ],
        &[url, &format!("{commit}:refs/hangar/action")],
    );
    if let Err(e) = by_id {
        // A forge that serves only advertised refs: fetch the ref by name and
        // check that it is still the commit it resolved to.
        if is_commit_id(r) {
            return Err(format!(
                "cannot fetch commit {commit} from {shown}: {e} (does that commit exist there?)"
            ));
        }
        git::git(
            tmp,
            &[
                "fetch",
                "--quiet",
                "--depth=1",
                "--no-tags",
                "--no-write-fetch-head",
            ],
            &[url, &format!("{r}:refs/hangar/action")],
        )
        .map_err(|e| format!("cannot fetch `{r}` from {shown}: {e}"))?;
        let got = git::git(
            tmp,
            &["rev-parse", "--verify", "--quiet"],
            &["refs/hangar/action^{commit}"],
        )?;
        if got.trim() != commit {
            return Err(format!(
                "`{r}` moved on {shown} while it was fetched ({commit} then {}); run again",
                got.trim()
            ));
        }
    }
    git::git(
        tmp,
        &[
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "--quiet",
            "--detach",
        ],
        &["refs/hangar/action"],
    )?;
    std::fs::remove_dir_all(tmp.join(".git"))
        .map_err(|e| format!("cannot clean up {}: {e}", tmp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_actions_paths_and_workflows() {
        let r = RemoteRef::parse("actions/setup-node@v4").unwrap();
        assert_eq!(
            (r.owner.as_str(), r.repo.as_str(), r.path.as_str()),
            ("actions", "setup-node", "")
        );
        let r = RemoteRef::parse("github/codeql-action/init@v3.1.0").unwrap();
        assert_eq!(r.path, "init");
        let r = RemoteRef::parse("o/r/.github/workflows/ci.yml@releases/v1").unwrap();
        assert_eq!(
            (r.path.as_str(), r.git_ref.as_str()),
            (".github/workflows/ci.yml", "releases/v1")
        );
    }

    #[test]
    fn refuses_hostile_parts() {
        for bad in [
            "actions/setup-node",
            "-x/r@v1",
            "o/r@--upload-pack=x",
            "o/r@v1..v2",
            "o/r@v1 x",
            "o/r/../../etc@v1",
            "o/r/a//b@v1",
            "o/../r@v1",
            "o@v1",
            "o/r@",
            "o/r@HEAD@{1}",
            "o/r@v1.lock",
            "ö/r@v1",
        ] {
            assert!(RemoteRef::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn source_urls_are_checked_and_credentials_never_shown() {
        assert!(ActionSource::new("github.com", false).is_err());
        assert!(ActionSource::new("ext::sh -c touch% /tmp/x", false).is_err());
        let s = ActionSource::new("https://user:tok@ghe.example.com/", false).unwrap();
        assert_eq!(s.display_url(), "https://***@ghe.example.com");
        assert!(
            s.cache_key().starts_with("ghe.example.com-"),
            "{}",
            s.cache_key()
        );
    }
}
