//! Scanning a working tree: every file the `.gitignore`s do not exclude,
//! hidden files included (`.env` is where secrets live), `.git` excluded.

use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::{WalkBuilder, WalkState};

use crate::detect::{Finding, Fragment, Scratch};
use crate::rules::RuleSet;
use crate::{ScanError, Scanned};

/// Bytes looked at to decide a file is binary, as git and ripgrep do.
const BINARY_SNIFF: usize = 8 * 1024;

pub fn scan(
    root: &Path,
    rules: &RuleSet,
    max_file_bytes: u64,
    threads: usize,
) -> Result<Scanned, ScanError> {
    if !root.exists() {
        return Err(ScanError::Input(format!(
            "{}: no such file or directory",
            root.display()
        )));
    }
    let findings = Mutex::new(Vec::<Finding>::new());
    let errors = Mutex::new(Vec::<String>::new());
    let files = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let root_is_file = root.is_file();
    WalkBuilder::new(root)
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .threads(threads)
        .filter_entry(|e| e.file_name() != ".git")
        .build_parallel()
        .run(|| {
            let mut scratch = Scratch::default();
            let mut buf = Vec::new();
            let mut local = Vec::new();
            let (findings, errors, files, bytes) = (&findings, &errors, &files, &bytes);
            Box::new(move |entry| {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        errors.lock().unwrap().push(e.to_string());
                        return WalkState::Continue;
                    }
                };
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    return WalkState::Continue;
                }
                let path = entry.path();
                let rel = if root_is_file {
                    path.to_string_lossy().replace('\\', "/")
                } else {
                    path.strip_prefix(root)
                        .unwrap_or(path)
                        .to_string_lossy()
                        .replace('\\', "/")
                };
                if rules.path_excluded(&rel) {
                    return WalkState::Continue;
                }
                buf.clear();
                match std::fs::File::open(path)
                    .and_then(|f| f.take(max_file_bytes + 1).read_to_end(&mut buf))
                {
                    Ok(_) => {}
                    Err(e) => {
                        errors.lock().unwrap().push(format!("{rel}: {e}"));
                        return WalkState::Continue;
                    }
                }
                if buf.len() as u64 > max_file_bytes
                    || memchr::memchr(0, &buf[..buf.len().min(BINARY_SNIFF)]).is_some()
                {
                    return WalkState::Continue;
                }
                files.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                local.extend(rules.scan(
                    &Fragment {
                        path: &rel,
                        text: &buf,
                        commit: None,
                        line_numbers: None,
                    },
                    &mut scratch,
                ));
                if !local.is_empty() {
                    findings.lock().unwrap().append(&mut local);
                }
                WalkState::Continue
            })
        });
    let mut findings = findings.into_inner().unwrap();
    findings.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    Ok(Scanned {
        findings,
        files: files.into_inner(),
        bytes: bytes.into_inner(),
        commits: 0,
        errors: errors.into_inner().unwrap(),
    })
}
