//! The one way hangar runs `git` (a tidy test keeps every other spawn out of the
//! tree). Values that come from users, payloads or workflow files — refs, commit
//! ids, URLs, paths — are added with [`Git::value`], which puts `--end-of-options`
//! before the first of them: a ref named `--upload-pack=...` or `--output=...` is
//! then a (missing) ref, never an option. Commit ids taken from webhooks are
//! checked with [`commit_id`] before they get anywhere near git.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

use anyhow::{Context, bail};

/// A `git` invocation being built: literal options first, then user values.
pub struct Git {
    cmd: std::process::Command,
    shown: Vec<String>,
    values_started: bool,
}

impl Git {
    /// `git` run in `dir`, never prompting for credentials on a terminal.
    pub fn new(dir: &Path) -> Git {
        let mut cmd = std::process::Command::new("git");
        cmd.current_dir(dir).env("GIT_TERMINAL_PROMPT", "0");
        Git {
            cmd,
            shown: vec![],
            values_started: false,
        }
    }

    /// `git` in the current directory (the CLI looking at the user's repository).
    pub fn here() -> Git {
        let mut cmd = std::process::Command::new("git");
        cmd.env("GIT_TERMINAL_PROMPT", "0");
        Git {
            cmd,
            shown: vec![],
            values_started: false,
        }
    }

    /// An argument written in hangar's source: a subcommand or an option. Never
    /// pass a user value here (use [`Git::value`] or [`Git::opt`]); an option
    /// after the first value is a bug, caught in debug builds.
    pub fn arg(mut self, a: &str) -> Git {
        debug_assert!(
            !self.values_started || !a.starts_with('-') || a == "--",
            "literal git option {a} after a user value"
        );
        // After `--` git reads only paths: no `--end-of-options` is needed (and
        // one would be read as a path).
        if a == "--" {
            self.values_started = true;
        }
        self.shown.push(a.to_string());
        self.cmd.arg(a);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Git {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// An option and its value as two words (`-m`, message): git takes the word
    /// after an option that needs a value verbatim, even when it starts with `-`.
    pub fn opt(mut self, name: &str, value: impl AsRef<OsStr>) -> Git {
        debug_assert!(!self.values_started, "git option {name} after a user value");
        self.shown.push(name.to_string());
        self.shown
            .push(value.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(name).arg(value);
        self
    }

    /// Several user values, see [`Git::value`].
    pub fn values<S: AsRef<OsStr>>(mut self, vs: impl IntoIterator<Item = S>) -> Git {
        for v in vs {
            self = self.value(v);
        }
        self
    }

    /// A user-controlled value (ref, commit id, URL, path, refspec). The first one
    /// is preceded by `--end-of-options`, so none of them can be read as an option.
    pub fn value(mut self, v: impl AsRef<OsStr>) -> Git {
        if !self.values_started {
            self.values_started = true;
            self.cmd.arg("--end-of-options");
            self.shown.push("--end-of-options".into());
        }
        self.shown.push(v.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(v);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Git {
        self.cmd.env(k, v);
        self
    }

    /// The command line as shown in errors.
    pub fn display(&self) -> String {
        format!("git {}", self.shown.join(" "))
    }

    /// The underlying command, for callers that stream or pipe its output.
    pub fn into_command(self) -> std::process::Command {
        self.cmd
    }

    /// Runs git and returns its standard output; a failure carries git's stderr.
    pub fn output(mut self) -> anyhow::Result<String> {
        let shown = self.display();
        let out = self
            .cmd
            .output()
            .context("cannot run git (is it installed?)")?;
        checked(&shown, out)
    }

    /// [`Git::output`] without blocking the runtime; the process is killed if the
    /// future is dropped.
    pub async fn output_async(self) -> anyhow::Result<String> {
        let shown = self.display();
        let mut cmd = tokio::process::Command::from(self.cmd);
        cmd.kill_on_drop(true);
        let out = cmd
            .output()
            .await
            .context("cannot run git (is it installed?)")?;
        checked(&shown, out)
    }

    pub async fn run_async(self) -> anyhow::Result<()> {
        self.output_async().await.map(|_| ())
    }
}

fn checked(shown: &str, out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True for a full commit id: 40 (SHA-1) or 64 (SHA-256) hexadecimal characters.
pub fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `s` when it is a full commit id, else an error naming `what`.
pub fn commit_id<'a>(what: &str, s: &'a str) -> anyhow::Result<&'a str> {
    if is_commit_id(s) {
        Ok(s)
    } else {
        bail!(
            "{what} `{}` is not a commit id (40 or 64 hexadecimal characters)",
            s.chars().take(80).collect::<String>()
        )
    }
}

/// `s` when it is a branch name git accepts (`git check-ref-format --branch`
/// rules, checked here so a hostile payload's name never reaches git), else an
/// error naming `what`. Branch names come from payloads (a pull request's base)
/// and become `refs/heads/<name>`.
pub fn branch_name<'a>(what: &str, s: &'a str) -> anyhow::Result<&'a str> {
    let bad = |why: &str| -> anyhow::Result<&'a str> {
        bail!(
            "{what} `{}` is not a branch name: {why}",
            s.chars().take(80).collect::<String>()
        )
    };
    if s.is_empty() || s.len() > 255 {
        return bad("it is empty or longer than 255 bytes");
    }
    if s.starts_with('-') || s.starts_with('/') || s.ends_with('/') || s.ends_with('.') {
        return bad("it starts with `-` or `/`, or ends with `/` or `.`");
    }
    if s.contains("..") || s.contains("//") || s.contains("@{") || s == "@" {
        return bad("it holds `..`, `//` or `@{`, or is `@`");
    }
    if s.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return bad("it holds a space, a control character or one of ~ ^ : ? * [ \\");
    }
    if s.split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return bad("a component starts with `.` or ends with `.lock`");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_are_full_hex() {
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(is_commit_id(&"0123456789abcdefABCDEF".repeat(3)[..64]));
        assert!(!is_commit_id("abc"));
        assert!(!is_commit_id(&"g".repeat(40)));
        assert!(!is_commit_id("--upload-pack=touch /tmp/x;aaaaaaaaaaaaaaaa"));
        assert!(commit_id("`after`", "--output=x").is_err());
    }

    #[test]
    fn branch_names_are_what_git_accepts() {
        for ok in ["main", "release/1.x", "feature/a-b_c", "v1.2"] {
            assert!(branch_name("base", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "--upload-pack=x",
            "-x",
            "a..b",
            "a b",
            "a\nb",
            "x~1",
            "x^",
            "a:b",
            "a*",
            "a[b",
            "a\\b",
            "/a",
            "a/",
            "a.",
            "a//b",
            ".hidden",
            "a/.b",
            "x.lock",
            "a@{1}",
            "@",
        ] {
            assert!(branch_name("base", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn option_looking_values_stay_values() {
        let dir = std::env::temp_dir();
        let scratch = dir.join(format!("hangar-git-eoo-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        Git::new(&scratch).args(&["init", "-q"]).output().unwrap();
        let marker = scratch.join("pwned");
        let err = Git::new(&scratch)
            .args(&["log", "-1"])
            .value(format!("--output={}", marker.display()))
            .output()
            .unwrap_err();
        assert!(!marker.exists(), "the ref was read as an option");
        assert!(format!("{err:#}").contains("--end-of-options"), "{err:#}");
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
