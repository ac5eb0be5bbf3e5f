//! The one way the engine runs `git` for actions: every value that comes from a
//! workflow (a URL built from `owner/repo`, a ref, a commit id) goes after
//! `--end-of-options`, so a hostile `uses:` can never be read as an option
//! (`--upload-pack=...`), and git never waits on a terminal for credentials.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `git [fixed...] --end-of-options [user...]` in `cwd`.
///
/// `fixed` are the subcommand and its options, written by hangar; `user` are
/// values that may come from a workflow. Returns stdout on success, or an error
/// that quotes git's own message.
pub(crate) fn git(cwd: &Path, fixed: &[&str], user: &[&str]) -> Result<String, String> {
    let out = command(cwd, fixed, user)
        .output()
        .map_err(|e| format!("cannot run git (is it installed and on PATH?): {e}"))?;
    finish(fixed, out)
}

fn command(cwd: &Path, fixed: &[&str], user: &[&str]) -> Command {
    let mut c = hangar_git::Git::new(cwd)
        .args(fixed)
        .values(user)
        // A forge that asks for credentials fails at once instead of hanging
        // on a prompt nobody sees (an agent has no terminal).
        .env("GIT_ASKPASS", "true")
        .env("SSH_ASKPASS", "true")
        // An explicit bound: a forge that stops sending for a minute fails.
        .env("GIT_HTTP_LOW_SPEED_LIMIT", "1")
        .env("GIT_HTTP_LOW_SPEED_TIME", "60")
        // Only the transports an action source can name: never `ext::`.
        .env("GIT_ALLOW_PROTOCOL", "file:https:http:ssh:git")
        .into_command();
    c.stdin(Stdio::null());
    c
}

fn finish(fixed: &[&str], out: Output) -> Result<String, String> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let msg: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .collect();
    Err(format!(
        "`git {}` failed: {}",
        fixed.first().copied().unwrap_or(""),
        if msg.is_empty() {
            format!("exit status {}", out.status)
        } else {
            msg.join("; ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_value_that_looks_like_an_option_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        // Without --end-of-options this would run the given program as the
        // remote's upload-pack.
        let e = git(
            dir.path(),
            &["ls-remote"],
            &["--upload-pack=touch pwned", "file:///nonexistent"],
        )
        .unwrap_err();
        assert!(e.contains("git ls-remote"), "{e}");
        assert!(!dir.path().join("pwned").exists());
    }
}
