//! `shell:` as GitHub runs it: the command template and the script file extension.

use std::path::{Path, PathBuf};

/// A resolved shell: program, arguments with `{0}` still in them, and the
/// extension the script file needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shell {
    pub program: String,
    pub args: Vec<String>,
    pub extension: &'static str,
}

impl Shell {
    /// Program and arguments with `{0}` replaced by the script path.
    pub fn command_for(&self, script: &Path) -> (String, Vec<String>) {
        let path = script.to_string_lossy();
        let args = self.args.iter().map(|a| a.replace("{0}", &path)).collect();
        (self.program.clone(), args)
    }
}

/// Resolves `shell:` (`None` or empty: GitHub's default for a Linux runner).
pub fn resolve(shell: Option<&str>, path_var: Option<&str>) -> Result<Shell, String> {
    let s = |program: &str, args: &[&str], extension| Shell {
        program: program.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        extension,
    };
    let shell = shell.map(str::trim).filter(|s| !s.is_empty());
    Ok(match shell {
        None => {
            if which("bash", path_var).is_some() {
                s("bash", &["-e", "{0}"], ".sh")
            } else {
                s("sh", &["-e", "{0}"], ".sh")
            }
        }
        Some("bash") => s(
            "bash",
            &["--noprofile", "--norc", "-eo", "pipefail", "{0}"],
            ".sh",
        ),
        Some("sh") => s("sh", &["-e", "{0}"], ".sh"),
        Some("python") => {
            let program =
                if which("python", path_var).is_some() || which("python3", path_var).is_none() {
                    "python"
                } else {
                    "python3"
                };
            s(program, &["{0}"], ".py")
        }
        Some(name @ ("pwsh" | "powershell")) => {
            // Linux runners map `powershell` to PowerShell Core too.
            let program = "pwsh";
            if which(program, path_var).is_none() {
                return Err(format!(
                    "shell `{name}`: PowerShell (`pwsh`) is not installed on this host; install it or use another shell"
                ));
            }
            s(program, &["-command", ". '{0}'"], ".ps1")
        }
        Some("cmd") => {
            return Err("shell `cmd` exists only on Windows runners".to_string());
        }
        Some(custom) => {
            let words = split_words(custom);
            let Some((program, rest)) = words.split_first() else {
                return Err(format!("shell `{custom}`: empty command"));
            };
            let mut args: Vec<String> = rest.to_vec();
            if !custom.contains("{0}") {
                return Err(format!(
                    "shell `{custom}`: a custom shell must contain `{{0}}` where the script path goes (e.g. `{custom} {{0}}`)"
                ));
            }
            let extension = match program.as_str() {
                "bash" | "sh" => ".sh",
                "python" | "python3" => ".py",
                "node" => ".js",
                "pwsh" | "powershell" => ".ps1",
                _ => "",
            };
            if args.is_empty() {
                args.push("{0}".into());
            }
            Shell {
                program: program.clone(),
                args,
                extension,
            }
        }
    })
}

/// Splits a shell template into words, honouring simple quotes.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Looks a program up in `path_var` (or the process PATH).
pub fn which(program: &str, path_var: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = match path_var {
        Some(p) => p.to_string(),
        None => std::env::var("PATH").unwrap_or_default(),
    };
    // `bash` and `sh` are looked up for every step, several times, across
    // every PATH directory: a stat each, more than the rest of a trivial
    // step's bookkeeping. Where they were found is remembered per PATH and
    // checked with one stat; other programs (which steps may install) are
    // always looked up afresh.
    static SHELLS: std::sync::Mutex<Vec<(String, String, PathBuf)>> =
        std::sync::Mutex::new(Vec::new());
    let remembered = matches!(program, "bash" | "sh");
    if remembered {
        let cache = SHELLS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, p)) = cache
            .iter()
            .find(|(prog, dirs, _)| prog == program && *dirs == path)
            && p.is_file()
        {
            return Some(p.clone());
        }
    }
    let found = std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())?;
    if remembered {
        let mut cache = SHELLS.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(prog, dirs, _)| !(prog == program && *dirs == path));
        // A handful of PATHs per run; bound it anyway.
        if cache.len() >= 64 {
            cache.remove(0);
        }
        cache.push((program.to_string(), path, found.clone()));
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_shell_that_is_gone_is_looked_up_again() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(a.path().join("sh"), "").unwrap();
        std::fs::write(b.path().join("sh"), "").unwrap();
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        let path = path.to_str().unwrap();
        assert_eq!(which("sh", Some(path)), Some(a.path().join("sh")));
        assert_eq!(which("sh", Some(path)), Some(a.path().join("sh")));
        std::fs::remove_file(a.path().join("sh")).unwrap();
        assert_eq!(which("sh", Some(path)), Some(b.path().join("sh")));
        std::fs::remove_file(b.path().join("sh")).unwrap();
        assert_eq!(which("sh", Some(path)), None);
    }

    #[test]
    fn github_templates() {
        let bash = resolve(Some("bash"), None).unwrap();
        assert_eq!(
            bash.args,
            ["--noprofile", "--norc", "-eo", "pipefail", "{0}"]
        );
        let default = resolve(None, None).unwrap();
        assert_eq!(default.args, ["-e", "{0}"]);
        assert_eq!(resolve(Some("sh"), None).unwrap().program, "sh");
        assert_eq!(resolve(Some("python"), None).unwrap().extension, ".py");
        let custom = resolve(Some("cp {0} action.yml"), None).unwrap();
        assert_eq!(custom.program, "cp");
        let (_, args) = custom.command_for(Path::new("/t/x"));
        assert_eq!(args, ["/t/x", "action.yml"]);
        assert!(resolve(Some("perl"), None).unwrap_err().contains("{0}"));
        if which("pwsh", None).is_none() {
            assert!(
                resolve(Some("pwsh"), None)
                    .unwrap_err()
                    .contains("not installed")
            );
        }
    }
}
