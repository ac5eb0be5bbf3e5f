//! Releases: each deployed version is an immutable directory under
//! `<data>/releases/<service>/<version>/` holding the artifact and the resolved
//! configuration, so a rollback restarts exactly what ran before, without a rebuild.

use std::path::{Path, PathBuf};

use hangar_project::Service;
use serde::{Deserialize, Serialize};

use crate::state::write_atomic;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    pub service: String,
    pub version: String,
    pub config: Service,
    pub commit: Option<String>,
    pub commit_time: Option<u64>,
    pub created: u64,
    /// Where instances run: the release's artifact directory, or the project directory
    /// when the service declares no `artifact:` paths.
    pub workdir: PathBuf,
    /// What the release is made of (see [`fingerprint`]): equal fingerprints,
    /// nothing to deploy. Absent when it cannot be known.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

pub struct Releases {
    root: PathBuf,
}

impl Releases {
    pub fn new(data: &Path) -> Releases {
        Releases {
            root: data.join("releases"),
        }
    }

    fn dir(&self, service: &str) -> PathBuf {
        self.root.join(service)
    }

    /// Every kept release of a service, oldest first.
    pub fn list(&self, service: &str) -> Vec<Release> {
        let mut out: Vec<Release> = std::fs::read_dir(self.dir(service))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("release.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by_key(|r: &Release| (r.created, version_number(&r.version)));
        out
    }

    pub fn get(&self, service: &str, version: &str) -> Option<Release> {
        let b = std::fs::read(self.dir(service).join(version).join("release.json")).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Creates the next release: copies the artifact paths and records the config.
    pub fn create(
        &self,
        project_dir: &Path,
        service: &str,
        config: &Service,
        artifact: Option<&Path>,
        commit: Option<(String, u64)>,
        fingerprint: Option<String>,
    ) -> anyhow::Result<Release> {
        let next = self
            .list(service)
            .iter()
            .map(|r| version_number(&r.version))
            .max()
            .unwrap_or(0)
            + 1;
        let short = commit
            .as_ref()
            .map(|(sha, _)| match sha.strip_suffix("-dirty") {
                Some(sha) => format!("-{}-dirty", &sha[..sha.len().min(7)]),
                None => format!("-{}", &sha[..sha.len().min(7)]),
            })
            .unwrap_or_default();
        let version = format!("r{next}{short}");
        let dir = self.dir(service).join(&version);
        std::fs::create_dir_all(&dir)?;
        let artifact_dir = dir.join("artifact");
        let workdir = if let Some(path) = artifact {
            copy_into(
                path,
                &artifact_dir.join(path.file_name().unwrap_or_default()),
            )?;
            artifact_dir
        } else if !config.artifact.is_empty() {
            for rel in &config.artifact {
                let src = project_dir.join(rel);
                if !src.exists() {
                    anyhow::bail!(
                        "service `{service}`: artifact path `{rel}` does not exist (did the build run?)"
                    );
                }
                copy_into(&src, &artifact_dir.join(rel))?;
            }
            artifact_dir
        } else {
            project_dir.to_path_buf()
        };
        let release = Release {
            service: service.into(),
            version,
            config: config.clone(),
            commit: commit.as_ref().map(|c| c.0.clone()),
            commit_time: commit.map(|c| c.1),
            created: crate::supervisor::now_unix(),
            workdir,
            fingerprint,
        };
        write_atomic(
            &dir.join("release.json"),
            &serde_json::to_vec_pretty(&release)?,
        )?;
        Ok(release)
    }

    /// Deletes the oldest releases beyond `keep`, never one named in `protect`.
    pub fn prune(&self, service: &str, keep: usize, protect: &[&str]) {
        let all = self.list(service);
        let excess = all.len().saturating_sub(keep);
        for r in all.iter().take(excess) {
            if !protect.contains(&r.version.as_str()) {
                let _ = std::fs::remove_dir_all(self.dir(service).join(&r.version));
            }
        }
    }
}

/// A digest of everything a release of `config` would run: the service's
/// configuration, the environment's variables, and its files: the artifact
/// (given, or the service's `artifact:` paths after the build), or for a
/// service that runs from the project directory, `project_files` (a digest of
/// that directory's files, see the controller). `None` when that cannot be
/// known (no git, a missing path): such a release always counts as changed.
pub fn fingerprint(
    source: &Path,
    config: &Service,
    vars: &[(String, String)],
    artifact: Option<&Path>,
    project_files: Option<&str>,
) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(config).ok()?);
    h.update(serde_json::to_vec(vars).ok()?);
    if let Some(path) = artifact {
        hash_tree(&mut h, path).ok()?;
    } else if !config.artifact.is_empty() {
        for rel in &config.artifact {
            h.update(rel.as_bytes());
            hash_tree(&mut h, &source.join(rel)).ok()?;
        }
    } else {
        h.update(project_files?.as_bytes());
    }
    Some(format!("{:x}", h.finalize()))
}

/// Names, kinds and contents of a file tree, in a fixed order.
pub(crate) fn hash_tree(h: &mut sha2::Sha256, path: &Path) -> std::io::Result<()> {
    use sha2::Digest;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        h.update(b"l");
        h.update(std::fs::read_link(path)?.as_os_str().as_encoded_bytes());
    } else if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        h.update(b"d");
        for n in names {
            h.update(n.as_encoded_bytes());
            h.update([0]);
            hash_tree(h, &path.join(&n))?;
        }
        h.update(b"e");
    } else {
        let bytes = std::fs::read(path)?;
        h.update(b"f");
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(())
}

fn version_number(v: &str) -> u64 {
    v.trim_start_matches('r')
        .split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn copy_into(src: &Path, dst: &Path) -> std::io::Result<()> {
    if src.is_dir() {
        std::fs::create_dir_all(dst)?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_into(&e.path(), &dst.join(e.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::copy(src, dst).map(|_| ())
    }
}
