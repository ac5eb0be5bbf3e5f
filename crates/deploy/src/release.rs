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
            .map(|(sha, _)| format!("-{}", &sha[..sha.len().min(7)]))
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
