//! `hashFiles(patterns...)` with GitHub's semantics: patterns relative to the
//! workspace, `!pattern` excludes, only files inside the workspace count, each
//! matched file (in path order) hashed with SHA-256 and the digests hashed
//! again; no match gives the empty string.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub fn hash_files(workspace: &Path, patterns: &[String]) -> Result<String, String> {
    let mut include: Vec<PathBuf> = Vec::new();
    let mut exclude: Vec<glob::Pattern> = Vec::new();
    let root = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    for pattern in patterns
        .iter()
        .flat_map(|p| p.lines())
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if let Some(neg) = pattern.strip_prefix('!') {
            let full = root.join(neg);
            let p = glob::Pattern::new(&full.to_string_lossy())
                .map_err(|e| format!("hashFiles: bad pattern {neg:?}: {e}"))?;
            exclude.push(p);
            continue;
        }
        let full = root.join(pattern);
        let matches = glob::glob(&full.to_string_lossy())
            .map_err(|e| format!("hashFiles: bad pattern {pattern:?}: {e}"))?;
        for m in matches.flatten() {
            if m.is_file() && m.starts_with(&root) {
                include.push(m);
            }
        }
    }
    include.sort();
    include.dedup();
    let options = glob::MatchOptions::new();
    let files: Vec<&PathBuf> = include
        .iter()
        .filter(|f| !exclude.iter().any(|p| p.matches_path_with(f, options)))
        .collect();
    if files.is_empty() {
        return Ok(String::new());
    }
    let mut outer = Sha256::new();
    for f in files {
        let bytes =
            std::fs::read(f).map_err(|e| format!("hashFiles: cannot read {}: {e}", f.display()))?;
        outer.update(Sha256::digest(&bytes));
    }
    Ok(outer
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_matched_files_and_excludes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/x.lock"), "1").unwrap();
        std::fs::write(dir.path().join("y.lock"), "2").unwrap();
        let all = hash_files(dir.path(), &["**/*.lock".into()]).unwrap();
        assert_eq!(all.len(), 64);
        let only_y = hash_files(dir.path(), &["**/*.lock".into(), "!a/**".into()]).unwrap();
        assert_ne!(all, only_y);
        let expected: String = {
            let mut h = Sha256::new();
            h.update(Sha256::digest(b"2"));
            h.finalize().iter().map(|b| format!("{b:02x}")).collect()
        };
        assert_eq!(only_y, expected);
        assert_eq!(hash_files(dir.path(), &["*.none".into()]).unwrap(), "");
    }
}
