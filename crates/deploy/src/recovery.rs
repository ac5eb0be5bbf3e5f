//! Disaster recovery for a project: `hangar recovery backup | list | restore | drill`.
//!
//! A backup of an environment is a directory
//! `<recovery.dir>/<env>/<UTC stamp>/` holding the environment's deployment
//! history and state (so DORA and rollback survive), one folder per stateful
//! service filled by its `backup.run` command, and `manifest.json` with the
//! time, the commands' durations and the SHA-256 of every file. It is written
//! under a temporary name and renamed when complete, so a failed backup leaves
//! nothing that looks like one; the oldest beyond `recovery.keep` are removed.
//!
//! A drill restores the newest backup of one environment into a scratch
//! environment (its own listen addresses in hangar.yml), starts it, and
//! reports the recovery point achieved (the backup's age) and the recovery
//! time achieved (from the start of the drill until every service is healthy
//! with its data restored) against `recovery.rpo` and `recovery.rto`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use hangar_project::Project;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::controller::{Controller, DeployRequest};
use crate::state::EnvFiles;

/// What `manifest.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub environment: String,
    /// Unix milliseconds when the backup started (the recovery point).
    pub created_ms: u64,
    pub hangar: String,
    /// Service → milliseconds its `backup.run` took.
    pub services: Vec<(String, u64)>,
    /// Relative path → SHA-256 (hex) of every file but the manifest.
    pub files: Vec<(String, String)>,
}

/// A backup on disk.
#[derive(Debug, Clone)]
pub struct BackupSet {
    pub path: PathBuf,
    pub manifest: Manifest,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `20261204T121530.123Z`: sorts as time does.
fn stamp(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Where an environment's backups live.
pub fn backups_dir(project_dir: &Path, project: &Project, env: &str) -> PathBuf {
    let base = project
        .recovery
        .as_ref()
        .and_then(|r| r.dir.clone())
        .unwrap_or_else(|| ".hangar/backups".into());
    project_dir.join(base).join(env)
}

/// The environment a service's backup and restore commands see: the
/// environment's variables and the service's own, its data directory
/// (`HANGAR_DATA`, as its instances see it), its router address, and the folder
/// to write to or read from.
fn command_env(
    project: &Project,
    data: &Path,
    env: &str,
    svc: &str,
    folder: &Path,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let environment = project.environments.get(env).map(|e| &e.value);
    if let Some(e) = environment {
        out.extend(e.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(s) = project.services.get(svc) {
        out.extend(
            s.value
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone())),
        );
    }
    let listen = environment
        .and_then(|e| e.listen.get(svc).map(|l| l.value.clone()))
        .or_else(|| {
            project
                .services
                .get(svc)
                .and_then(|s| s.value.listen.clone())
        });
    if let Some(addr) = listen {
        if let Some((host, port)) = addr.rsplit_once(':') {
            out.push(("HANGAR_HOST".into(), host.trim_matches(['[', ']']).into()));
            out.push(("HANGAR_PORT".into(), port.into()));
        }
        out.push(("HANGAR_ADDRESS".into(), addr));
    }
    out.push(("HANGAR_ENV".into(), env.into()));
    out.push(("HANGAR_SERVICE".into(), svc.into()));
    // The same absolute folder the instances were given.
    let dir = EnvFiles::new(data, env).dir;
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    out.push(("HANGAR_DATA".into(), dir.display().to_string()));
    out.push(("HANGAR_BACKUP_DIR".into(), folder.display().to_string()));
    out
}

/// Runs one backup or restore command; its output goes to `log`, and a failure
/// names the service, the command and the end of what it wrote.
fn run_command(
    project_dir: &Path,
    what: &str,
    svc: &str,
    command: &str,
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = std::fs::File::create(log)?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(project_dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("service `{svc}`: cannot start its {what} command"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "service `{svc}`: its {what} command `{command}` failed ({status}){}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(":\n  {}", tail.join("\n  "))
            }
        );
    }
    Ok(started.elapsed())
}

fn hash_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                out.push(entry.path().strip_prefix(dir)?.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Backs up `env`: its history and state, and each service's data.
pub fn backup(
    project_dir: &Path,
    project: &Project,
    data: &Path,
    env: &str,
) -> anyhow::Result<BackupSet> {
    if env != "local" && !project.environments.contains_key(env) {
        bail!("unknown environment `{env}`");
    }
    let keep = project.recovery.as_ref().map(|r| r.keep).unwrap_or(7);
    if keep == 0 {
        bail!("hangar.yml: `recovery.keep` must be at least 1");
    }
    let root = backups_dir(project_dir, project, env);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let created_ms = now_ms();
    let name = stamp(created_ms);
    let partial = root.join(format!(".{name}.partial"));
    let result = (|| -> anyhow::Result<Manifest> {
        std::fs::create_dir_all(partial.join("history"))?;
        let files = EnvFiles::new(data, env);
        for f in ["history.jsonl", "state.json"] {
            let from = files.dir.join(f);
            if from.is_file() {
                std::fs::copy(&from, partial.join("history").join(f))
                    .with_context(|| format!("copying {}", from.display()))?;
            }
        }
        let mut services = Vec::new();
        for (svc, s) in &project.services {
            let Some(b) = &s.value.backup else { continue };
            let folder = partial.join("services").join(svc);
            std::fs::create_dir_all(&folder)?;
            let env_vars = command_env(project, data, env, svc, &folder);
            let log = partial.join(format!("{svc}.backup.log"));
            let took = run_command(project_dir, "backup", svc, &b.run, &env_vars, &log)?;
            services.push((svc.clone(), took.as_millis() as u64));
        }
        let mut hashed = Vec::new();
        for rel in files_under(&partial)? {
            hashed.push((rel.display().to_string(), hash_file(&partial.join(&rel))?));
        }
        let manifest = Manifest {
            environment: env.into(),
            created_ms,
            hangar: env!("CARGO_PKG_VERSION").into(),
            services,
            files: hashed,
        };
        std::fs::write(
            partial.join("manifest.json"),
            serde_json::to_vec_pretty(&manifest)?,
        )?;
        Ok(manifest)
    })();
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e.context(format!("backup of `{env}` failed; nothing was kept")));
        }
    };
    let path = root.join(&name);
    std::fs::rename(&partial, &path)?;
    // Retention: the newest `keep` stay.
    let all = list(project_dir, project, env)?;
    for old in all.iter().skip(keep as usize) {
        let _ = std::fs::remove_dir_all(&old.path);
    }
    Ok(BackupSet { path, manifest })
}

/// An environment's complete backups, newest first.
pub fn list(project_dir: &Path, project: &Project, env: &str) -> anyhow::Result<Vec<BackupSet>> {
    let root = backups_dir(project_dir, project, env);
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path().join("manifest.json")) else {
            continue;
        };
        if let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) {
            out.push(BackupSet {
                path: entry.path(),
                manifest,
            });
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.manifest.created_ms));
    Ok(out)
}

/// Reads a backup and checks every file against its manifest.
pub fn verify(path: &Path) -> anyhow::Result<BackupSet> {
    let bytes = std::fs::read(path.join("manifest.json"))
        .with_context(|| format!("{}: not a hangar backup (no manifest.json)", path.display()))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("{}/manifest.json: {e}", path.display()))?;
    for (rel, want) in &manifest.files {
        if rel.contains("..") || Path::new(rel).is_absolute() {
            bail!(
                "{}: manifest names {rel}, outside the backup",
                path.display()
            );
        }
        let got = hash_file(&path.join(rel))
            .with_context(|| format!("{}: {rel} is missing", path.display()))?;
        if &got != want {
            bail!(
                "{}: {rel} does not match its checksum (the backup is damaged; restore an older one)",
                path.display()
            );
        }
    }
    Ok(BackupSet {
        path: path.to_path_buf(),
        manifest,
    })
}

/// Restores a verified backup's service data into `env` (its history too when
/// `env` has none yet), running each service's `backup.restore`.
pub fn restore_data(
    project_dir: &Path,
    project: &Project,
    data: &Path,
    set: &BackupSet,
    env: &str,
) -> anyhow::Result<()> {
    let files = EnvFiles::new(data, env);
    std::fs::create_dir_all(&files.dir)?;
    if !files.dir.join("history.jsonl").exists() {
        let from = set.path.join("history/history.jsonl");
        if from.is_file() {
            std::fs::copy(&from, files.dir.join("history.jsonl"))?;
        }
    }
    for (svc, _) in &set.manifest.services {
        let Some(b) = project
            .services
            .get(svc)
            .and_then(|s| s.value.backup.as_ref())
        else {
            bail!("the backup holds data of `{svc}`, which hangar.yml no longer backs up");
        };
        let folder = set.path.join("services").join(svc);
        let env_vars = command_env(project, data, env, svc, &folder);
        let log = files.dir.join(format!("{svc}.restore.log"));
        run_command(project_dir, "restore", svc, &b.restore, &env_vars, &log)?;
    }
    Ok(())
}

/// What a drill achieved.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub from: String,
    pub into: String,
    pub backup: PathBuf,
    pub rpo_achieved_ms: u64,
    pub rto_achieved_ms: u64,
    pub rpo_target_ms: Option<u64>,
    pub rto_target_ms: Option<u64>,
}

impl DrillReport {
    pub fn passed(&self) -> bool {
        self.rpo_target_ms.is_none_or(|t| self.rpo_achieved_ms <= t)
            && self.rto_target_ms.is_none_or(|t| self.rto_achieved_ms <= t)
    }
}

/// Restores the newest backup of `from` into the scratch environment `into`
/// and starts it; the environment is stopped again unless `keep_up`.
pub async fn drill(
    project_dir: &Path,
    project: &Project,
    data: &Path,
    from: &str,
    into: &str,
    keep_up: bool,
) -> anyhow::Result<(DrillReport, Option<Arc<Controller>>)> {
    if from == into {
        bail!("a drill restores into a scratch environment, not into `{from}` itself");
    }
    if !project.environments.contains_key(into) {
        bail!(
            "hangar.yml defines no environment `{into}`: add one with listen addresses of its own for the drill"
        );
    }
    let started = Instant::now();
    let newest = list(project_dir, project, from)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!("`{from}` has no backup yet: run `hangar recovery backup {from}`")
        })?;
    let set = verify(&newest.path)?;
    let rpo_achieved_ms = now_ms().saturating_sub(set.manifest.created_ms);
    // The scratch environment starts from nothing: no history, no data.
    let files = EnvFiles::new(data, into);
    let _ = std::fs::remove_dir_all(&files.dir);
    restore_data(project_dir, project, data, &set, into)?;
    let ctl = Controller::open(project_dir, data, into).await?;
    if let Err(e) = ctl.start_all_with(&DeployRequest::default()).await {
        ctl.shutdown().await;
        return Err(e.context(format!("the restored `{into}` did not come up")));
    }
    let rto_achieved_ms = started.elapsed().as_millis() as u64;
    let targets = project.recovery.as_ref();
    let report = DrillReport {
        from: from.into(),
        into: into.into(),
        backup: set.path.clone(),
        rpo_achieved_ms,
        rto_achieved_ms,
        rpo_target_ms: targets.and_then(|r| r.rpo).map(|d| d.0.as_millis() as u64),
        rto_target_ms: targets.and_then(|r| r.rto).map(|d| d.0.as_millis() as u64),
    };
    if keep_up {
        Ok((report, Some(ctl)))
    } else {
        ctl.shutdown().await;
        Ok((report, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_naming_a_file_outside_its_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        let backup = dir.path().join("b");
        std::fs::create_dir(&backup).unwrap();
        for rel in ["../secret", "/etc/passwd"] {
            let manifest = Manifest {
                environment: "prod".into(),
                created_ms: 0,
                hangar: "0".into(),
                services: vec![],
                files: vec![(rel.into(), "0".repeat(64))],
            };
            std::fs::write(
                backup.join("manifest.json"),
                serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap();
            let err = verify(&backup).unwrap_err().to_string();
            assert!(err.contains("outside the backup"), "{rel}: {err}");
        }
    }

    #[test]
    fn stamps_sort_as_time_does() {
        assert_eq!(stamp(0), "19700101T000000.000Z");
        assert_eq!(stamp(1_795_000_000_123), "20261118T110640.123Z");
        assert!(stamp(1_000) < stamp(10_000));
    }
}
