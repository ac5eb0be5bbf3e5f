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
//! `recovery.every` or `recovery.schedule` (cron, UTC) puts backups on a
//! schedule that `hangar serve` keeps for the projects it watches
//! ([`scheduled`], [`Rule`]): with `every` a backup is due once the newest one
//! (or the last attempt) is `every` old, with `schedule` at each due time, so
//! a restarted server neither repeats one nor waits a whole period again (a
//! due time missed while it was down is made up once). A failed scheduled backup
//! raises the `backup` alert, resolved by the next success, and an RPO
//! breach (the newest backup older than `recovery.rpo`) the `backup-rpo`
//! alert; both go to the environment's alert event log, which the server
//! relays as `alert_firing`/`alert_resolved`, and `hangar alerts` lists them
//! while they fire. The schedule's memory is `backup-schedule.json` in the
//! environment's directory.
//!
//! A command may name `${{ services.NAME.host|port|url }}` (checked by
//! `hangar validate` as in `env:`): the address the environment's router
//! gives that service, as [`hangar_project::refs::address_field`] spells it.
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
        // Spelled as `${{ services.NAME.host }}` is: a router on every
        // interface is reached on loopback.
        if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
            for (name, field) in [("HANGAR_HOST", "host"), ("HANGAR_PORT", "port")] {
                if let Ok(v) = hangar_project::refs::address_field(sock, false, field) {
                    out.push((name.into(), v));
                }
            }
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

/// `host`, `port` or `url` of `svc` in `env` as a backup command reaches it:
/// the router address hangar.yml gives it there.
fn service_address(project: &Project, env: &str, svc: &str, field: &str) -> Result<String, String> {
    let Some(service) = project.services.get(svc) else {
        return Err(format!("no service `{svc}` in hangar.yml"));
    };
    let listen = project
        .environments
        .get(env)
        .and_then(|e| project.listen_address(&e.value, svc))
        .or_else(|| service.value.listen.clone())
        .ok_or_else(|| {
            format!(
                "service `{svc}` has no `listen` address in environment `{env}` for the command to reach it at"
            )
        })?;
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| format!("`{listen}` is not an address like `127.0.0.1:5432`"))?;
    if addr.port() == 0 {
        return Err(format!(
            "service `{svc}` listens on any free port (`{listen}`) in environment `{env}`: give it a fixed `listen:` address to back it up"
        ));
    }
    hangar_project::refs::address_field(
        addr,
        service.value.protocol == hangar_project::Protocol::Tcp,
        field,
    )
}

/// A service's `backup.run` or `backup.restore` (`what`) with its
/// `${{ services.… }}` references resolved for `env`.
fn command_for(
    project: &Project,
    env: &str,
    svc: &str,
    what: &str,
    command: &str,
) -> anyhow::Result<String> {
    hangar_project::refs::resolve(command, |s, f| service_address(project, env, s, f))
        .map_err(|e| anyhow!("service `{svc}`: backup.{what}: {e}"))
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

/// Whether `name` is what [`backup`] names its folder while writing it,
/// `.20261204T121530.123Z.partial`, and nothing else.
fn is_partial_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".partial"))
    else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'T',
            15 => *c == b'.',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The lock of an environment's backup directory: the directory itself
/// (`flock`), so nothing but backups appears in it. Held shared by every
/// backup while it writes its `.STAMP.partial` folder, and exclusively while
/// leftovers are removed: a folder whose backup still runs (another
/// process's, a `hangar recovery backup` beside the server's schedule) is
/// never taken for one a crash left. A killed process's lock goes with it.
fn backup_lock(root: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(root).with_context(|| format!("opening {}", root.display()))
}

/// Removes the `.partial` folders of `root` that no running backup holds
/// (the caller holds [`backup_lock`] exclusively): what a backup killed
/// mid-way left. Only folders named as [`backup`] names them, never through
/// a link; each removal is logged.
fn sweep_partials(root: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // The entry's own type: a link named like a leftover is not followed.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_partial_name(name) || !is_dir {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::warn!(
                    "recovery: removed {}, an incomplete backup an interrupted run left",
                    path.display()
                );
                removed.push(path);
            }
            Err(e) => tracing::warn!(
                "recovery: cannot remove {}, an incomplete backup an interrupted run left: {e}",
                path.display()
            ),
        }
    }
    removed
}

/// Removes what backups of `env` killed mid-way left (`.STAMP.partial`
/// folders in its backup directory), unless a backup runs now, whose own
/// folder must stay (the next look removes the rest). What was removed.
pub fn remove_stale_partials(
    project_dir: &Path,
    project: &Project,
    env: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let root = backups_dir(project_dir, project, env);
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let lock = backup_lock(&root)?;
    if lock.try_lock().is_err() {
        return Ok(Vec::new());
    }
    Ok(sweep_partials(&root))
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
    // Leftovers of killed backups go first, when no other backup runs; then
    // this one holds the lock shared until its folder is complete.
    let lock = backup_lock(&root)?;
    if lock.try_lock().is_ok() {
        sweep_partials(&root);
    }
    lock.lock_shared()
        .with_context(|| format!("locking {}", root.display()))?;
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
            let command = command_for(project, env, svc, "run", &b.run.value)?;
            let log = partial.join(format!("{svc}.backup.log"));
            let took = run_command(project_dir, "backup", svc, &command, &env_vars, &log)?;
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
    drop(lock);
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
        let command = command_for(project, env, svc, "restore", &b.restore.value)?;
        let log = files.dir.join(format!("{svc}.restore.log"));
        run_command(project_dir, "restore", svc, &command, &env_vars, &log)?;
    }
    Ok(())
}

/// The schedule's memory of one environment, in its directory.
pub const SCHEDULE: &str = "backup-schedule.json";

/// A failed scheduled backup is tried again after `every` (at the next due
/// time of a `schedule`), but never later than this: a day-long period must
/// not leave a transient failure standing.
const RETRY_AT_MOST: Duration = Duration::from_secs(600);

/// The lock file a look at an environment's schedule holds: servers sharing a
/// database lead one at a time, and servers watching one project directory
/// also share its backups, so a hand-over while one is still backing up
/// cannot make the same backup twice.
const SCHEDULE_LOCK: &str = "backup-schedule.lock";

/// How `recovery:` puts an environment on a schedule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// `every`: this long after the newest backup.
    Every(Duration),
    /// `schedule`: at each due time of the cron expression (UTC).
    Cron(Box<hangar_units::cron::Cron>),
}

impl Rule {
    /// The project's schedule, if it has one (`hangar validate` has refused
    /// both keys at once and an expression that does not parse).
    pub fn of(project: &Project) -> Option<Rule> {
        let r = project.recovery.as_ref()?;
        if let Some(every) = &r.every {
            return Some(Rule::Every(every.value.0));
        }
        let text = &r.schedule.as_ref()?.value;
        hangar_units::cron::parse(text, hangar_units::cron::Seconds::Allowed)
            .ok()
            .map(|c| Rule::Cron(Box::new(c)))
    }

    /// When the next scheduled backup is due (unix ms; `None`: never again),
    /// from what the schedule remembers and the newest backup on disk.
    ///
    /// `every`: after a failure, `every` or ten minutes after the attempt,
    /// whichever is sooner; otherwise `every` after the newest backup (made
    /// by the schedule or by hand); with none yet, now.
    ///
    /// `schedule`: after a failure, the next due time or ten minutes after
    /// the attempt, whichever is sooner; otherwise the first due time after
    /// the last backup or attempt (or, never having looked before, after the
    /// first look), so a due time missed while no server ran is made up once
    /// at start, however many were missed, and none is made twice.
    pub fn next_due_ms(&self, state: &ScheduleState, newest_ms: Option<u64>) -> Option<u64> {
        let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        let failed = state.last_attempt_ms.filter(|_| state.last_error.is_some());
        match self {
            Rule::Every(every) => Some(match (failed, newest_ms) {
                (Some(attempt), _) => attempt.saturating_add(ms((*every).min(RETRY_AT_MOST))),
                (None, Some(t)) => t.saturating_add(ms(*every)),
                (None, None) => 0,
            }),
            Rule::Cron(cron) => {
                let after = |t_ms: u64| {
                    cron.next_after((t_ms / 1000).min(i64::MAX as u64) as i64)
                        .map(|s| (s.max(0) as u64).saturating_mul(1000))
                };
                match failed {
                    Some(attempt) => {
                        let retry = attempt.saturating_add(ms(RETRY_AT_MOST));
                        Some(after(attempt).map_or(retry, |t| t.min(retry)))
                    }
                    None => {
                        let since = [Some(state.since_ms), newest_ms, state.last_attempt_ms]
                            .into_iter()
                            .flatten()
                            .max()
                            .unwrap_or(0);
                        after(since)
                    }
                }
            }
        }
    }
}

/// What the schedule remembers of an environment between looks (and restarts).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScheduleState {
    /// When the schedule first looked at the environment (unix ms): with no
    /// backup yet, the recovery point is counted from here.
    pub since_ms: u64,
    pub last_attempt_ms: Option<u64>,
    pub last_success_ms: Option<u64>,
    /// Why the last scheduled backup failed, until one succeeds.
    pub last_error: Option<String>,
    /// Since when the `backup` alert fires (the last scheduled backup failed).
    pub failing_since_ms: Option<u64>,
    /// Since when the `backup-rpo` alert fires.
    pub rpo_breached_since_ms: Option<u64>,
}

/// The schedule's state of `env` (default when it never looked).
pub fn schedule_state(data: &Path, env: &str) -> Option<ScheduleState> {
    let bytes = std::fs::read(EnvFiles::new(data, env).dir.join(SCHEDULE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What one look at an environment's schedule did.
#[derive(Debug)]
pub struct Tick {
    /// The backup that was due, and how it went (the error in words).
    pub backup: Option<Result<BackupSet, String>>,
    /// The alert notices appended to the environment's alert event log.
    pub notices: Vec<serde_json::Value>,
}

/// One look at `env`'s schedule at `now_ms`: the backup when one is due
/// ([`Rule::next_due_ms`]), the `backup` alert raised by a failure and
/// resolved by the next success, and the `backup-rpo` alert while the newest
/// backup is older than `recovery.rpo`. Nothing happens without
/// `recovery.every` or `recovery.schedule`, nor while another process looks
/// at the same environment's schedule.
pub fn scheduled(
    project_dir: &Path,
    project: &Project,
    data: &Path,
    env: &str,
    now_ms: u64,
) -> anyhow::Result<Tick> {
    let mut tick = Tick {
        backup: None,
        notices: Vec::new(),
    };
    let Some(recovery) = &project.recovery else {
        return Ok(tick);
    };
    let Some(rule) = Rule::of(project) else {
        return Ok(tick);
    };
    let dir = EnvFiles::new(data, env).dir;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = std::fs::File::create(dir.join(SCHEDULE_LOCK))
        .with_context(|| format!("creating {}", dir.join(SCHEDULE_LOCK).display()))?;
    if lock.try_lock().is_err() {
        // Another process is at this schedule now; it decides.
        return Ok(tick);
    }
    let mut state = schedule_state(data, env).unwrap_or(ScheduleState {
        since_ms: now_ms,
        ..Default::default()
    });
    let newest = list(project_dir, project, env)?
        .first()
        .map(|s| s.manifest.created_ms);
    let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
    let due = rule
        .next_due_ms(&state, newest)
        .is_some_and(|t| now_ms >= t);
    let mut newest = newest;
    let notice = |rule: &str,
                  status: &str,
                  since: u64,
                  value: String,
                  threshold: String,
                  summary: String| {
        serde_json::json!({
            "status": status,
            "env": env,
            "service": "*",
            "rule": rule,
            "kind": "backup",
            "severity": "critical",
            "value": value,
            "threshold": threshold,
            "summary": summary,
            "for": "0s",
            "started_at_ms": since,
            "resolved_at_ms": (status == "resolved").then_some(now_ms),
        })
    };
    if due {
        state.last_attempt_ms = Some(now_ms);
        match backup(project_dir, project, data, env) {
            Ok(set) => {
                newest = Some(set.manifest.created_ms);
                state.last_success_ms = Some(set.manifest.created_ms);
                state.last_error = None;
                if let Some(since) = state.failing_since_ms.take() {
                    tick.notices.push(notice(
                        "backup",
                        "resolved",
                        since,
                        "succeeded".into(),
                        "every scheduled backup succeeds".into(),
                        format!(
                            "{env}: the scheduled backup succeeded again ({})",
                            set.path.display()
                        ),
                    ));
                }
                tick.backup = Some(Ok(set));
            }
            Err(e) => {
                let error = format!("{e:#}");
                state.last_error = Some(error.clone());
                if state.failing_since_ms.is_none() {
                    state.failing_since_ms = Some(now_ms);
                    tick.notices.push(notice(
                        "backup",
                        "firing",
                        now_ms,
                        "failed".into(),
                        "every scheduled backup succeeds".into(),
                        format!("{env}: the scheduled backup failed: {error}"),
                    ));
                }
                tick.backup = Some(Err(error));
            }
        }
    }
    if let Some(rpo) = recovery.rpo.map(|r| r.0) {
        let age = now_ms.saturating_sub(newest.unwrap_or(state.since_ms));
        let threshold = format!("{} s", rpo.as_secs_f64());
        let value = format!("{:.1} s", age as f64 / 1000.0);
        match (age > ms(rpo), state.rpo_breached_since_ms) {
            (true, None) => {
                state.rpo_breached_since_ms = Some(now_ms);
                tick.notices.push(notice(
                    "backup-rpo",
                    "firing",
                    now_ms,
                    value.clone(),
                    threshold,
                    match newest {
                        Some(_) => format!("{env}: the newest backup is {value} old, beyond the recovery point objective"),
                        None => format!("{env}: no backup for {value}, beyond the recovery point objective"),
                    },
                ));
            }
            (false, Some(since)) => {
                state.rpo_breached_since_ms = None;
                tick.notices.push(notice(
                    "backup-rpo",
                    "resolved",
                    since,
                    value.clone(),
                    threshold,
                    format!("{env}: the newest backup is {value} old, within the recovery point objective again"),
                ));
            }
            _ => {}
        }
    } else {
        state.rpo_breached_since_ms = None;
    }
    for n in &tick.notices {
        if let Err(e) = crate::alerts::append_event(&dir, n) {
            tracing::warn!("recovery: cannot append to {}: {e}", crate::alerts::EVENTS);
        }
    }
    crate::state::write_atomic(&dir.join(SCHEDULE), &serde_json::to_vec_pretty(&state)?)
        .with_context(|| format!("writing {}", dir.join(SCHEDULE).display()))?;
    Ok(tick)
}

/// The schedule's alerts that fire now, as `hangar alerts` lists them.
pub(crate) fn firing_alerts(env_dir: &Path) -> Vec<crate::alerts::AlertRecord> {
    let Some(state) = std::fs::read(env_dir.join(SCHEDULE))
        .ok()
        .and_then(|b| serde_json::from_slice::<ScheduleState>(&b).ok())
    else {
        return Vec::new();
    };
    let record =
        |rule: &str, since: u64, value: String, threshold: &str| crate::alerts::AlertRecord {
            rule: rule.into(),
            service: "*".into(),
            kind: "backup".into(),
            severity: hangar_project::Severity::Critical,
            phase: crate::alerts::AlertPhase::Firing,
            since_ms: Some(since),
            fired_ms: Some(since),
            resolved_ms: None,
            value,
            threshold: threshold.into(),
            notified: true,
        };
    let mut out = Vec::new();
    if let Some(since) = state.failing_since_ms {
        out.push(record(
            "backup",
            since,
            state.last_error.clone().unwrap_or_else(|| "failed".into()),
            "every scheduled backup succeeds",
        ));
    }
    if let Some(since) = state.rpo_breached_since_ms {
        out.push(record(
            "backup-rpo",
            since,
            "breached".into(),
            "recovery.rpo",
        ));
    }
    out
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

    /// 2024-01-01T00:00:00Z, a Monday; hours and minutes in milliseconds.
    const MONDAY: u64 = 1_704_067_200_000;
    const H: u64 = 3_600_000;
    const M: u64 = 60_000;

    fn cron(text: &str) -> Rule {
        Rule::Cron(Box::new(
            hangar_units::cron::parse(text, hangar_units::cron::Seconds::Allowed).unwrap(),
        ))
    }

    fn looked_at(since_ms: u64) -> ScheduleState {
        ScheduleState {
            since_ms,
            ..Default::default()
        }
    }

    fn made(mut state: ScheduleState, at: u64) -> ScheduleState {
        state.last_attempt_ms = Some(at);
        state.last_success_ms = Some(at);
        state.last_error = None;
        state
    }

    fn failed(mut state: ScheduleState, at: u64) -> ScheduleState {
        state.last_attempt_ms = Some(at);
        state.last_error = Some("exit status 1".into());
        state
    }

    #[test]
    fn a_cron_schedule_is_due_at_each_due_time_and_once_for_those_missed() {
        let daily = cron("0 3 * * *");
        // First looked at at 01:00: the first due time after that, not at once.
        let state = looked_at(MONDAY + H);
        assert_eq!(daily.next_due_ms(&state, None), Some(MONDAY + 3 * H));
        // A backup made by hand at 02:00 does not move 03:00.
        assert_eq!(
            daily.next_due_ms(&state, Some(MONDAY + 2 * H)),
            Some(MONDAY + 3 * H)
        );
        // Made at 03:00:00.4: the next is Tuesday's.
        let state = made(state, MONDAY + 3 * H + 400);
        assert_eq!(
            daily.next_due_ms(&state, Some(MONDAY + 3 * H + 450)),
            Some(MONDAY + 27 * H)
        );
        // No server ran from Monday 04:00 to Thursday 05:00: three due times
        // were missed; the one made at start is the last until Friday's.
        let thursday = MONDAY + 3 * 24 * H + 5 * H;
        let due = daily.next_due_ms(&state, Some(MONDAY + 3 * H)).unwrap();
        assert!(due <= thursday, "due at start");
        let state = made(state, thursday);
        assert_eq!(
            daily.next_due_ms(&state, Some(thursday + 300)),
            Some(MONDAY + 4 * 24 * H + 3 * H),
            "once for the three missed"
        );
        // Seconds lead: every two seconds, from the last backup.
        let fast = cron("*/2 * * * * *");
        let state = made(looked_at(MONDAY), MONDAY + 2_100);
        assert_eq!(fast.next_due_ms(&state, None), Some(MONDAY + 4_000));
        // Never due again: no backup, and no loop looking for one.
        assert_eq!(
            cron("0 0 31 2 *").next_due_ms(&looked_at(MONDAY), None),
            None
        );
    }

    #[test]
    fn a_failed_backup_is_retried_at_the_next_due_time_or_ten_minutes_later() {
        let state = looked_at(MONDAY);
        // Daily: ten minutes later is sooner.
        let after = failed(state.clone(), MONDAY + 3 * H);
        assert_eq!(
            cron("0 3 * * *").next_due_ms(&after, None),
            Some(MONDAY + 3 * H + 10 * M)
        );
        // Every two minutes: the next due time is sooner.
        assert_eq!(
            cron("*/2 * * * *").next_due_ms(&after, None),
            Some(MONDAY + 3 * H + 2 * M)
        );
        // A failure at 02:55 of a 03:00 schedule: 03:00 comes first.
        let before = failed(state.clone(), MONDAY + 3 * H - 5 * M);
        assert_eq!(
            cron("0 3 * * *").next_due_ms(&before, Some(MONDAY)),
            Some(MONDAY + 3 * H)
        );
        // `every` keeps its rule: `every` or ten minutes, whichever is sooner.
        let every = |d: u64| Rule::Every(Duration::from_millis(d));
        assert_eq!(
            every(H).next_due_ms(&after, Some(MONDAY)),
            Some(MONDAY + 3 * H + 10 * M)
        );
        assert_eq!(
            every(2 * M).next_due_ms(&after, Some(MONDAY)),
            Some(MONDAY + 3 * H + 2 * M)
        );
        assert_eq!(
            every(H).next_due_ms(&made(state, MONDAY + H), Some(MONDAY + H)),
            Some(MONDAY + 2 * H)
        );
    }

    /// A project whose one service's backup copies `notes.txt` (failing while
    /// it is missing), on `schedule`, with `rpo`.
    fn project(dir: &Path, schedule: &str) -> Project {
        let text = format!(
            "services:\n  notes:\n    run: sleep 600\n    backup:\n      run: cp notes.txt \"$HANGAR_BACKUP_DIR/\"\n      restore: 'true'\nenvironments:\n  prod: {{}}\nrecovery:\n  keep: 100\n  schedule: \"{schedule}\"\n  environments: [prod]\n"
        );
        std::fs::write(dir.join("hangar.yml"), &text).unwrap();
        hangar_project::parse("hangar.yml", &text).unwrap()
    }

    #[test]
    fn scheduled_backs_up_at_due_times_once_after_a_gap_and_not_beside_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let (d, data) = (dir.path(), dir.path().join(".hangar"));
        std::fs::write(d.join("notes.txt"), "n").unwrap();
        let p = project(d, "0 * * * *");
        // The clock is fixed and ahead of the real one (which only names the
        // backup folders): from the next whole hour a day from now.
        let t0 = (now_ms() / H + 25) * H;
        let look = |at: u64| {
            scheduled(d, &p, &data, "prod", at)
                .unwrap()
                .backup
                .map(|b| b.map(|_| ()))
        };
        assert!(look(t0 - 30 * M).is_none(), "first look: not at once");
        assert!(look(t0 - 1000).is_none());
        assert_eq!(look(t0), Some(Ok(())), "due at the hour");
        assert!(look(t0 + 1000).is_none());
        assert!(look(t0 + 59 * M).is_none());
        assert_eq!(look(t0 + H), Some(Ok(())));
        // Down for four hours and a half: one backup at start, not four.
        assert_eq!(look(t0 + 5 * H + 30 * M), Some(Ok(())));
        assert!(look(t0 + 5 * H + 31 * M).is_none());
        assert!(look(t0 + 5 * H + 59 * M).is_none());
        // A failure is retried ten minutes later (sooner than the next hour).
        std::fs::remove_file(d.join("notes.txt")).unwrap();
        assert!(matches!(look(t0 + 6 * H), Some(Err(_))));
        assert!(look(t0 + 6 * H + 9 * M).is_none());
        std::fs::write(d.join("notes.txt"), "n").unwrap();
        assert_eq!(look(t0 + 6 * H + 10 * M), Some(Ok(())));
        assert!(look(t0 + 6 * H + 11 * M).is_none(), "back on the hour");
        assert_eq!(list(d, &p, "prod").unwrap().len(), 4);
        // While another process holds the environment's schedule, a due
        // time is its to keep.
        let lock =
            std::fs::File::open(EnvFiles::new(&data, "prod").dir.join(SCHEDULE_LOCK)).unwrap();
        lock.lock().unwrap();
        assert!(look(t0 + 7 * H).is_none());
        lock.unlock().unwrap();
        assert_eq!(look(t0 + 7 * H), Some(Ok(())));
        assert_eq!(list(d, &p, "prod").unwrap().len(), 5);
    }

    #[test]
    fn only_folders_named_as_a_backup_writes_them_are_leftovers() {
        assert!(is_partial_name(&format!(
            ".{}.partial",
            stamp(1_795_000_000_123)
        )));
        for other in [
            "20261118T110640.123Z",
            ".20261118T110640.123Z",
            "20261118T110640.123Z.partial",
            ".2026111xT110640.123Z.partial",
            ".20261118T110640.1234Z.partial",
            "..partial",
            ".././20261118T1106.partial",
        ] {
            assert!(!is_partial_name(other), "{other}");
        }
    }

    #[test]
    fn a_sweep_removes_leftovers_only_and_never_a_running_backups_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let leftover = root.join(".20260101T000000.000Z.partial");
        std::fs::create_dir_all(leftover.join("services/db")).unwrap();
        std::fs::write(leftover.join("services/db/dump"), "x").unwrap();
        let complete = root.join("20260101T000000.000Z");
        std::fs::create_dir_all(&complete).unwrap();
        std::fs::write(complete.join("manifest.json"), "{}").unwrap();
        let decoy = root.join(".notes.partial");
        std::fs::create_dir_all(&decoy).unwrap();
        // A link named like a leftover, to a folder that must survive.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let link = root.join(".20260102T000000.000Z.partial");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();

        // While a backup holds the lock shared, nothing is removed.
        let running = backup_lock(root).unwrap();
        running.lock_shared().unwrap();
        let lock = backup_lock(root).unwrap();
        assert!(lock.try_lock().is_err());
        drop(lock);
        drop(running);

        let lock = backup_lock(root).unwrap();
        lock.try_lock().unwrap();
        assert_eq!(sweep_partials(root), vec![leftover.clone()]);
        assert!(!leftover.exists());
        assert!(complete.join("manifest.json").is_file());
        assert!(decoy.is_dir());
        assert!(link.symlink_metadata().is_ok());
        assert!(outside.path().join("keep").is_file());
    }

    #[test]
    fn stamps_sort_as_time_does() {
        assert_eq!(stamp(0), "19700101T000000.000Z");
        assert_eq!(stamp(1_795_000_000_123), "20261118T110640.123Z");
        assert!(stamp(1_000) < stamp(10_000));
    }
}
