//! Scanning git history and the index through the `git` CLI.
//!
//! One `git log -p -U0` stream is parsed into per-file fragments holding only
//! the lines each commit adds (with their line numbers in the new file), and
//! the fragments are scanned on worker threads while git keeps producing. A
//! fragment per file, not per commit, keeps each rule's regex off files that
//! lack its keywords: that split is most of the speed of a history scan.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, mpsc};

use crate::detect::{Commit, Finding, Fragment, Scratch};
use crate::rules::RuleSet;
use crate::{ScanError, Scanned};

/// Field and record separators in our `--format`: they cannot appear in a
/// patch line, which always starts with `+`, `-`, ` `, `\`, `@` or a header word.
const RECORD: u8 = 0x1e;
const FIELD: char = '\u{1f}';

/// Scans the lines added by the commits in `range` (default: every ref).
pub fn scan_history(
    repo: &Path,
    range: Option<&str>,
    rules: &RuleSet,
    threads: usize,
) -> Result<Scanned, ScanError> {
    let mut args: Vec<String> = [
        "-c",
        "core.quotePath=false",
        "log",
        "-p",
        "-U0",
        "--no-color",
        "--no-ext-diff",
        "--no-renames",
        "--full-history",
        "--format=%x1e%H%x1f%an%x1f%ae%x1f%aI%x1f%s",
    ]
    .map(String::from)
    .to_vec();
    let range = match range {
        Some(r) if !r.trim().is_empty() => {
            if r.starts_with('-') {
                return Err(ScanError::Input(format!(
                    "`{r}` is not a commit range (it starts with `-`)"
                )));
            }
            Some(r)
        }
        _ => {
            args.push("--all".into());
            None
        }
    };
    run_patch_stream(repo, &args, range, rules, threads, true)
}

/// Scans the lines added in the index (what `git commit` would record).
pub fn scan_staged(repo: &Path, rules: &RuleSet, threads: usize) -> Result<Scanned, ScanError> {
    let args: Vec<String> = [
        "-c",
        "core.quotePath=false",
        "diff",
        "--cached",
        "-p",
        "-U0",
        "--no-color",
        "--no-ext-diff",
        "--no-renames",
    ]
    .map(String::from)
    .to_vec();
    run_patch_stream(repo, &args, None, rules, threads, false)
}

struct Job {
    commit: Option<Arc<Commit>>,
    path: String,
    text: Vec<u8>,
    lines: Vec<u32>,
}

fn run_patch_stream(
    repo: &Path,
    args: &[String],
    range: Option<&str>,
    rules: &RuleSet,
    threads: usize,
    history: bool,
) -> Result<Scanned, ScanError> {
    let args_str: Vec<&str> = args.iter().map(String::as_str).collect();
    // The range is the user's: it goes after `--end-of-options`, paths after `--`.
    let mut child = hangar_git::Git::new(repo)
        .args(&args_str)
        .values(range)
        .arg("--")
        .into_command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ScanError::Input(format!("cannot run git: {e}; is git installed?")))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });

    let findings = Mutex::new(Vec::<Finding>::new());
    let (tx, rx) = mpsc::sync_channel::<Vec<Job>>(64);
    let rx = Mutex::new(rx);
    let (mut files, mut bytes, mut commits) = (0u64, 0u64, 0u64);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut scratch = Scratch::default();
                let mut local = Vec::new();
                loop {
                    let batch = match rx.lock().unwrap().recv() {
                        Ok(b) => b,
                        Err(_) => break,
                    };
                    for job in batch {
                        local.extend(rules.scan(
                            &Fragment {
                                path: &job.path,
                                text: &job.text,
                                commit: job.commit.as_deref(),
                                line_numbers: Some(&job.lines),
                            },
                            &mut scratch,
                        ));
                    }
                }
                findings.lock().unwrap().append(&mut local);
            });
        }
        // Batches keep channel traffic low when commits touch many small files.
        let mut batch: Vec<Job> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut emit = |job: Job, batch: &mut Vec<Job>, batch_bytes: &mut usize| {
            if job.text.is_empty() && rules.rules.iter().all(|r| r.regex.is_some()) {
                return;
            }
            files += 1;
            bytes += job.text.len() as u64;
            *batch_bytes += job.text.len() + 256;
            batch.push(job);
            if *batch_bytes > 256 * 1024 {
                let _ = tx.send(std::mem::take(batch));
                *batch_bytes = 0;
            }
        };
        let mut parser = PatchParser::default();
        let mut reader = BufReader::with_capacity(1 << 20, stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if history && line.first() == Some(&RECORD) {
                if let Some(job) = parser.finish_file() {
                    emit(job, &mut batch, &mut batch_bytes);
                }
                commits += 1;
                parser.commit = Some(Arc::new(parse_commit(&line[1..])));
                continue;
            }
            if let Some(job) = parser.line(&line) {
                emit(job, &mut batch, &mut batch_bytes);
            }
        }
        if let Some(job) = parser.finish_file() {
            emit(job, &mut batch, &mut batch_bytes);
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        drop(tx);
    });
    let status = child
        .wait()
        .map_err(|e| ScanError::Input(format!("git: {e}")))?;
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(ScanError::Input(format!(
            "git {} failed in {}: {}",
            args.iter()
                .find(|a| ["log", "diff"].contains(&a.as_str()))
                .map_or("", |s| s.as_str()),
            repo.display(),
            stderr.trim()
        )));
    }
    let mut findings = findings.into_inner().unwrap();
    findings.sort_by(|a, b| {
        let ka = a.commit.as_ref().map(|c| c.date.as_str()).unwrap_or("");
        let kb = b.commit.as_ref().map(|c| c.date.as_str()).unwrap_or("");
        (kb, &a.path, a.line, a.column).cmp(&(ka, &b.path, b.line, b.column))
    });
    Ok(Scanned {
        findings,
        files,
        bytes,
        commits,
        errors: Vec::new(),
    })
}

fn parse_commit(fields: &[u8]) -> Commit {
    let s = String::from_utf8_lossy(fields);
    let mut it = s.split(FIELD);
    let mut next = || it.next().unwrap_or("").to_string();
    Commit {
        sha: next(),
        author: next(),
        email: next(),
        date: next(),
        message: next(),
    }
}

/// Turns unified-diff lines (with `-U0`) into one [`Job`] per file.
#[derive(Default)]
struct PatchParser {
    commit: Option<Arc<Commit>>,
    /// The file being read; `None` before its `+++` header or when it was deleted.
    path: Option<String>,
    text: Vec<u8>,
    lines: Vec<u32>,
    /// Lines still expected in the current hunk: (old side, new side).
    /// Counting them is what tells a `+++` header from an added line `++…`.
    remaining: (u32, u32),
    next_new: u32,
}

impl PatchParser {
    fn line(&mut self, line: &[u8]) -> Option<Job> {
        if self.remaining != (0, 0) {
            match line.first() {
                Some(b'+') => {
                    self.remaining.1 = self.remaining.1.saturating_sub(1);
                    if self.path.is_some() {
                        self.text.extend_from_slice(&line[1..]);
                        self.text.push(b'\n');
                        self.lines.push(self.next_new);
                    }
                    self.next_new += 1;
                    return None;
                }
                Some(b'-') => {
                    self.remaining.0 = self.remaining.0.saturating_sub(1);
                    return None;
                }
                Some(b'\\') => return None,
                _ => self.remaining = (0, 0),
            }
        }
        if line.starts_with(b"diff --git ") {
            return self.finish_file();
        }
        if let Some(rest) = line.strip_prefix(b"+++ ") {
            self.path = new_path(rest);
            return None;
        }
        if line.starts_with(b"@@ ")
            && let Some((old, new, start)) = hunk_header(line)
        {
            self.remaining = (old, new);
            self.next_new = start;
        }
        None
    }

    fn finish_file(&mut self) -> Option<Job> {
        let path = self.path.take()?;
        self.remaining = (0, 0);
        Some(Job {
            commit: self.commit.clone(),
            path,
            text: std::mem::take(&mut self.text),
            lines: std::mem::take(&mut self.lines),
        })
    }
}

/// The path in a `+++ b/path` header; `None` for `/dev/null` (a deletion).
fn new_path(rest: &[u8]) -> Option<String> {
    let rest = rest.strip_suffix(b"\t").unwrap_or(rest);
    if rest == b"/dev/null" {
        return None;
    }
    let s = if rest.first() == Some(&b'"') {
        unquote(rest)
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    Some(s.strip_prefix("b/").map(str::to_string).unwrap_or(s))
}

/// Undoes git's C-style quoting of unusual paths (`"b/a\tb"`, octal escapes).
fn unquote(q: &[u8]) -> String {
    let inner = &q[1..q.len().saturating_sub(1).max(1)];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            let c = inner[i + 1];
            if c.is_ascii_digit() && i + 3 < inner.len() + 1 {
                let oct = std::str::from_utf8(&inner[i + 1..(i + 4).min(inner.len())])
                    .ok()
                    .and_then(|o| u8::from_str_radix(o, 8).ok());
                if let Some(b) = oct {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
            out.push(match c {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'a' => 7,
                b'b' => 8,
                b'f' => 12,
                b'v' => 11,
                other => other,
            });
            i += 2;
        } else {
            out.push(inner[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `@@ -a[,b] +c[,d] @@` → (b, d, c); counts default to 1.
fn hunk_header(line: &[u8]) -> Option<(u32, u32, u32)> {
    let s = std::str::from_utf8(line).ok()?;
    let mut parts = s.split(' ');
    parts.next()?; // "@@"
    let old = parts.next()?.strip_prefix('-')?;
    let new = parts.next()?.strip_prefix('+')?;
    let count = |r: &str| -> Option<(u32, u32)> {
        match r.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (_, old_count) = count(old)?;
    let (new_start, new_count) = count(new)?;
    Some((old_count, new_count, new_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(patch: &str) -> Vec<Job> {
        let mut p = PatchParser::default();
        let mut out: Vec<Job> = patch.lines().filter_map(|l| p.line(l.as_bytes())).collect();
        out.extend(p.finish_file());
        out
    }

    #[test]
    fn added_lines_keep_their_new_line_numbers() {
        let patch = "diff --git a/a.txt b/a.txt\nindex 1..2 100644\n--- a/a.txt\n+++ b/a.txt\n@@ -3,0 +4,2 @@ ctx\n+one\n+two\n@@ -10 +12 @@\n-old\n+new\n";
        let j = jobs(patch);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].path, "a.txt");
        assert_eq!(String::from_utf8_lossy(&j[0].text), "one\ntwo\nnew\n");
        assert_eq!(j[0].lines, vec![4, 5, 12]);
    }

    #[test]
    fn an_added_line_that_looks_like_a_header_is_content() {
        let patch = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1,2 @@\n+++ not a header\n+diff --git a/y b/y\n";
        let j = jobs(patch);
        assert_eq!(j.len(), 1);
        assert_eq!(
            String::from_utf8_lossy(&j[0].text),
            "++ not a header\ndiff --git a/y b/y\n"
        );
    }

    #[test]
    fn deleted_files_and_quoted_paths() {
        let patch = "diff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\ndiff --git \"a/sp ace\\tx\" \"b/sp ace\\tx\"\n--- /dev/null\n+++ \"b/sp ace\\tx\"\n@@ -0,0 +1 @@\n+y\n";
        let j = jobs(patch);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].path, "sp ace\tx");
    }
}
