//! The private workspace of `hangar run`: a copy of the user's working tree
//! (uncommitted and untracked-but-not-ignored files included) with a `.git`
//! of its own, so a step that commits, tags, cleans (`git clean -fdx`) or
//! builds never touches the user's repository. act does the same by copying
//! the tree into its container.
//!
//! How the copy stays cheap without ever sharing a writable file:
//! - Working-tree files are cloned with `FICLONE` (a copy-on-write reflink on
//!   btrfs, XFS, bcachefs...) and copied for real where the filesystem cannot.
//!   Hard links are NOT used for them: a step that appends (`echo >> file`),
//!   truncates or writes through `open(O_WRONLY)` would change the user's file
//!   in place, since a hard link is the same inode.
//! - `.git/objects` is hard-linked: git writes an object or a pack to a
//!   temporary file and renames it into place, and never opens an existing one
//!   for writing (pruning and repacking unlink, which removes only the copy's
//!   name). Everything else under `.git` (refs, index, config, HEAD, hooks) is
//!   copied, so `git commit`, `git tag`, `git branch -D` and `git gc` in the
//!   copy leave the user's refs alone.
//! - Ignored files (`target/`, `node_modules/`) are left out unless asked, as
//!   `git ls-files --others --exclude-standard` decides.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hangar_git::Git;

/// What to put in the copy.
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyOptions {
    /// Copy ignored files too (`--copy-ignored`).
    pub ignored: bool,
}

/// Counts of what was copied, for `--json` and the benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyStats {
    pub files: u64,
    pub bytes: u64,
    /// Files cloned copy-on-write (no data copied).
    pub reflinked: u64,
    /// `.git/objects` files hard-linked.
    pub linked: u64,
}

/// A workspace copy; removed when dropped unless [`Workspace::keep`] is called.
pub struct Workspace {
    root: PathBuf,
    path: PathBuf,
    keep: bool,
    pub stats: CopyStats,
}

impl Workspace {
    /// The copy: where steps run (`GITHUB_WORKSPACE`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leave the copy on disk after the run (`--keep-workspace`).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !self.keep {
            remove_all(&self.root);
        }
    }
}

/// Removes a copy, making directories writable first: a step may have made
/// one read-only (cargo's registry, a `chmod -w` test), which would stop
/// `remove_dir_all` half-way and leave the copy behind.
fn remove_all(root: &Path) {
    if std::fs::remove_dir_all(root).is_ok() || !root.exists() {
        return;
    }
    fn writable(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    writable(&e.path());
                }
            }
        }
    }
    writable(root);
    let _ = std::fs::remove_dir_all(root);
}

/// Copies `source` (a working tree, or any folder) to a new folder under
/// `parent`, named like `source` so that `basename "$GITHUB_WORKSPACE"` is
/// what it is in place.
pub fn prepare(source: &Path, parent: &Path, opts: CopyOptions) -> anyhow::Result<Workspace> {
    let name = source
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "workspace".into());
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let root = tempfile::Builder::new()
        .prefix("ws-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a workspace under {}", parent.display()))?
        .keep();
    let mut ws = Workspace {
        path: root.join(name),
        root,
        keep: false,
        stats: CopyStats::default(),
    };
    std::fs::create_dir(&ws.path)
        .with_context(|| format!("cannot create {}", ws.path.display()))?;
    let mut copier = Copier::default();
    let in_repo = source.join(".git").exists()
        && Git::new(source)
            .args(&["rev-parse", "--is-inside-work-tree"])
            .output()
            .is_ok_and(|o| o.trim() == "true");
    if in_repo {
        copy_git_dir(source, &ws.path.join(".git"), &mut copier)?;
        let files = if opts.ignored {
            None
        } else {
            Some(listed_files(source)?)
        };
        match files {
            Some(files) => {
                for rel in files {
                    copier.entry(&source.join(&rel), &ws.path.join(&rel), true)?;
                }
            }
            None => copier.tree(source, &ws.path, &[".git"])?,
        }
    } else {
        copier.tree(source, &ws.path, &[])?;
    }
    ws.stats = copier.stats;
    Ok(ws)
}

/// Tracked files and untracked files that are not ignored, as paths relative
/// to the top of the working tree. A tracked file deleted in the working tree
/// is listed by git and skipped by the copier (the deletion is part of the
/// uncommitted state the copy keeps).
fn listed_files(source: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let cmd = Git::new(source).args(&[
        "-c",
        "core.quotePath=false",
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]);
    let shown = cmd.display();
    let out = cmd
        .into_command()
        .output()
        .context("cannot run git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut files: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect();
    // A file is listed once per conflict stage during a merge.
    files.dedup();
    Ok(files)
}

/// The repository's `.git` as a folder of its own. A linked worktree (`.git`
/// is a file pointing into another repository's `worktrees/`) becomes a plain
/// repository: the shared part (objects, refs, config) comes from the common
/// directory, HEAD and the index from the worktree's own.
fn copy_git_dir(source: &Path, dest: &Path, copier: &mut Copier) -> anyhow::Result<()> {
    let dot_git = source.join(".git");
    if dot_git.is_dir() {
        return copier.git_tree(&dot_git, dest);
    }
    let path_of = |what: &str| -> anyhow::Result<PathBuf> {
        let p = Git::new(source)
            .args(&["rev-parse", "--path-format=absolute", what])
            .output()?;
        Ok(PathBuf::from(p.trim()))
    };
    let common = path_of("--git-common-dir")?;
    let own = path_of("--git-dir")?;
    copier.git_tree(&common, dest)?;
    for f in ["HEAD", "index", "ORIG_HEAD", "MERGE_HEAD"] {
        let from = own.join(f);
        let to = dest.join(f);
        let _ = std::fs::remove_file(&to);
        if from.exists() {
            copier.file(&from, &to)?;
        }
    }
    // A worktree's config may name its working tree; the copy's is itself.
    let _ = Git::new(dest.parent().unwrap_or(dest))
        .args(&["config", "--unset", "core.worktree"])
        .output();
    Ok(())
}

#[derive(Default)]
struct Copier {
    stats: CopyStats,
    /// Set after the first `FICLONE` the filesystem refuses: no use asking
    /// again for every file.
    no_reflink: bool,
    /// Set after the first hard link refused (another filesystem).
    no_link: bool,
}

impl Copier {
    /// Copies one entry (file, symlink; `parents`: create missing folders).
    fn entry(&mut self, from: &Path, to: &Path, parents: bool) -> anyhow::Result<()> {
        let meta = match std::fs::symlink_metadata(from) {
            Ok(m) => m,
            // Deleted in the working tree but still in the index.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", from.display())),
        };
        if parents && let Some(p) = to.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(from)
                .with_context(|| format!("cannot read the link {}", from.display()))?;
            std::os::unix::fs::symlink(&target, to)
                .with_context(|| format!("cannot create the link {}", to.display()))?;
        } else if ft.is_dir() {
            // A submodule's working tree (a gitlink listed as one path).
            self.tree(from, to, &[])?;
        } else if ft.is_file() {
            self.file(from, to)?;
        }
        Ok(())
    }

    /// Copies a folder recursively, leaving out top-level names in `skip`.
    fn tree(&mut self, from: &Path, to: &Path, skip: &[&str]) -> anyhow::Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        let rd =
            std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?;
        for e in rd {
            let e = e.with_context(|| format!("cannot read {}", from.display()))?;
            let name = e.file_name();
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            self.entry(&e.path(), &to.join(&name), false)?;
        }
        Ok(())
    }

    /// `.git`: objects hard-linked, the rest copied (see the module's doc).
    fn git_tree(&mut self, from: &Path, to: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        for e in
            std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
        {
            let e = e.with_context(|| format!("cannot read {}", from.display()))?;
            let name = e.file_name();
            let (src, dst) = (e.path(), to.join(&name));
            if name == "objects" && e.file_type().is_ok_and(|t| t.is_dir()) {
                self.linked_tree(&src, &dst)?;
            } else if name == "worktrees" {
                // The user's other worktrees are not this copy's.
                continue;
            } else {
                self.entry(&src, &dst, false)?;
            }
        }
        Ok(())
    }

    fn linked_tree(&mut self, from: &Path, to: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        for e in
            std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
        {
            let e = e.with_context(|| format!("cannot read {}", from.display()))?;
            let (src, dst) = (e.path(), to.join(e.file_name()));
            let ft = e.file_type()?;
            if ft.is_dir() {
                self.linked_tree(&src, &dst)?;
            } else if ft.is_file() && !is_mutable_git_file(&src) && !self.no_link {
                match std::fs::hard_link(&src, &dst) {
                    Ok(()) => {
                        self.stats.linked += 1;
                        self.stats.files += 1;
                    }
                    Err(_) => {
                        self.no_link = true;
                        self.file(&src, &dst)?;
                    }
                }
            } else {
                self.entry(&src, &dst, false)?;
            }
        }
        Ok(())
    }

    /// One regular file: reflink, else a real copy; mode and mtime kept (build
    /// tools compare mtimes).
    fn file(&mut self, from: &Path, to: &Path) -> anyhow::Result<()> {
        let src =
            std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
        let meta = src.metadata()?;
        let mut cloned = false;
        if !self.no_reflink {
            let dst = std::fs::File::create(to)
                .with_context(|| format!("cannot create {}", to.display()))?;
            match rustix::fs::ioctl_ficlone(&dst, &src) {
                Ok(()) => {
                    cloned = true;
                    self.stats.reflinked += 1;
                    dst.set_permissions(meta.permissions())?;
                    let _ = dst.set_modified(meta.modified()?);
                }
                Err(_) => {
                    self.no_reflink = true;
                }
            }
        }
        if !cloned {
            // std's copy uses copy_file_range, itself a clone or an in-kernel
            // copy where the filesystem offers one.
            std::fs::copy(from, to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
            if let Ok(t) = meta.modified()
                && let Ok(f) = std::fs::File::options().write(true).open(to)
            {
                let _ = f.set_modified(t);
            }
        }
        self.stats.files += 1;
        self.stats.bytes += meta.len();
        Ok(())
    }
}

/// Files under `.git/objects` that git does rewrite in place: the
/// alternates list and the commit-graph chain's list. They are copied.
fn is_mutable_git_file(p: &Path) -> bool {
    p.components().any(|c| c.as_os_str() == "info")
        || p.file_name().is_some_and(|n| n == "commit-graph-chain")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_testkit::{commit, git, write};

    #[test]
    fn a_file_appended_to_in_the_copy_is_unchanged_in_the_source() {
        let src = hangar_testkit::empty_repo();
        commit(src.path(), &[("a.txt", "one\n")]);
        let parent = tempfile::tempdir().unwrap();
        let ws = prepare(src.path(), parent.path(), CopyOptions::default()).unwrap();
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(ws.path().join("a.txt"))
            .unwrap();
        f.write_all(b"two\n").unwrap();
        drop(f);
        assert_eq!(
            std::fs::read_to_string(src.path().join("a.txt")).unwrap(),
            "one\n"
        );
        assert_eq!(
            std::fs::read_to_string(ws.path().join("a.txt")).unwrap(),
            "one\ntwo\n"
        );
        // The copy is a repository at the same commit that sees the change.
        let status = git(ws.path(), &["status", "--porcelain"]);
        assert_eq!(status.trim(), "M a.txt");
        let root = ws.root.clone();
        drop(ws);
        assert!(!root.exists(), "the copy was not removed");
    }

    #[test]
    fn ignored_files_are_left_out_unless_asked() {
        let src = hangar_testkit::empty_repo();
        commit(src.path(), &[(".gitignore", "target/\n"), ("a.txt", "a")]);
        write(src.path(), "target/big.o", "x");
        write(src.path(), "new.txt", "untracked");
        let parent = tempfile::tempdir().unwrap();
        let ws = prepare(src.path(), parent.path(), CopyOptions::default()).unwrap();
        assert!(!ws.path().join("target").exists());
        assert!(ws.path().join("new.txt").exists());
        let all = prepare(src.path(), parent.path(), CopyOptions { ignored: true }).unwrap();
        assert!(all.path().join("target/big.o").exists());
    }
}
