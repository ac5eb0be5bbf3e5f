//! What survives a restart of hangar: the desired state of an environment, the
//! processes it started, and the history of deployments.
//!
//! Kept as JSON files under `<data>/envs/<env>/`, written atomically (write to a
//! temporary file, fsync, rename), so a `kill -9` at any moment leaves either the
//! old or the new file, never a torn one. The history is append-only JSON lines.
//! Files keep `hangar deploy` usable with no server at all; a server that
//! watches the project reads the history into its store and serves history
//! and DORA from there.

use std::io::Write;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The desired and observed state of one environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EnvState {
    /// Per service: the release that serves 100% when no rollout is in progress.
    pub stable: IndexMap<String, String>,
    /// Processes started by the controller (to kill orphans after a crash).
    pub processes: Vec<ProcessRecord>,
    /// Pid of the controller that owns this environment.
    pub controller_pid: Option<u32>,
    /// Deployments under way, as far as they got: a controller that dies in
    /// the middle leaves them here, and the next one records how they ended.
    #[serde(default)]
    pub in_progress: Vec<DeploymentRecord>,
    /// Per deployment in progress (by id): how far its rollout got, the
    /// index of the canary step it is at. A controller restarted with
    /// `on_interrupt: resume` goes on from there.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub steps: IndexMap<u64, u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    pub service: String,
    pub version: String,
    pub pid: u32,
    pub start_time: Option<u64>,
    /// Where it listens, so that a restarted controller can drain it.
    #[serde(default)]
    pub port: Option<u16>,
    /// Its index among the version's instances (its log file's name), so
    /// that a restarted controller that re-adopts it keeps writing there.
    #[serde(default)]
    pub index: Option<u32>,
}

/// One deployment (or rollback), as history and DORA read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub id: u64,
    pub env: String,
    pub service: String,
    pub version: String,
    pub previous: Option<String>,
    pub strategy: String,
    pub commit: Option<String>,
    /// Commit time (unix seconds), for lead time.
    pub commit_time: Option<u64>,
    pub started: u64,
    pub finished: u64,
    pub outcome: Outcome,
    /// Set on rollbacks: the version rolled back from.
    #[serde(default)]
    pub rollback_from: Option<String>,
    /// Every decision, with its numbers.
    pub events: Vec<String>,
    /// When each event happened (unix milliseconds), one per event; empty in
    /// records written before hangar kept them.
    #[serde(default)]
    pub event_times: Vec<u64>,
    /// Start and end in unix milliseconds (`started`/`finished` are seconds).
    #[serde(default)]
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub finished_ms: Option<u64>,
}

/// How the router process restarts a controller that died: written by the
/// controller when it starts (`controller.json`), removed when it stops as
/// asked (`hangar down`, Ctrl-C), so that only a death brings a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Supervision {
    pub pid: u32,
    pub start_time: Option<u64>,
    /// The `hangar` binary and what it is given: `EXE up ENV --dir DIR --data DATA --no-build`.
    pub exe: PathBuf,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub env: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    /// The new version failed and traffic went back to the previous one by itself.
    RolledBack,
    /// Stopped by `hangar abort`.
    Aborted,
    Failed,
    /// A manual `hangar rollback`.
    Rollback,
}

/// A protected environment deployed directly with `--override-protection`
/// (no server to ask its reviewers): who, when, what and why, kept beside the
/// environment's deployments (`overrides.jsonl`, append-only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtectionOverride {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub by: String,
    /// `deploy`, `rollback` or `promote`.
    pub command: String,
    pub reason: String,
    /// The rules set aside, as hangar.yml states them.
    pub rules: String,
}

/// Files of one environment.
#[derive(Debug, Clone)]
pub struct EnvFiles {
    pub dir: PathBuf,
}

impl EnvFiles {
    pub fn new(data: &Path, env: &str) -> EnvFiles {
        EnvFiles {
            dir: data.join("envs").join(env),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Held (`flock`) by the environment's controller for its whole life:
    /// two controllers never run one environment, however they were started.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("controller.lock")
    }

    /// Whether a controller process holds the environment (it may not answer
    /// on its socket yet: one starting).
    pub fn controller_holds(&self) -> bool {
        let Ok(f) = std::fs::File::open(self.lock_path()) else {
            return false;
        };
        match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        }
    }

    pub fn supervision(&self) -> Option<Supervision> {
        std::fs::read(self.dir.join("controller.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    pub fn set_supervision(&self, s: &Supervision) -> std::io::Result<()> {
        write_atomic(&self.dir.join("controller.json"), &serde_json::to_vec(s)?)
    }

    /// The controller stops as asked: the router must not restart it.
    pub fn clear_supervision(&self) {
        let _ = std::fs::remove_file(self.dir.join("controller.json"));
    }

    pub fn load(&self) -> EnvState {
        std::fs::read(self.dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, state: &EnvState) -> std::io::Result<()> {
        write_atomic(
            &self.dir.join("state.json"),
            &serde_json::to_vec_pretty(state)?,
        )
    }

    pub fn append_history(&self, rec: &DeploymentRecord) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("history.jsonl"))?;
        let mut line = serde_json::to_vec(rec)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    }

    /// Records an override before the action it allows runs, so an action
    /// that fails or is interrupted is still accounted for.
    pub fn record_override(&self, o: &ProtectionOverride) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("overrides.jsonl"))?;
        let mut line = serde_json::to_vec(o)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    }

    /// Every override, oldest first (a torn last line is skipped).
    pub fn overrides(&self) -> Vec<ProtectionOverride> {
        std::fs::read_to_string(self.dir.join("overrides.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every deployment, oldest first; a torn last line (crash mid-append) is
    /// skipped. The file is append-only, so a deployment recorded again (a
    /// controller killed after writing its record but before clearing its
    /// in-progress entry, whose successor then records how it ended) is one
    /// deployment: its last record wins, in its first record's place.
    pub fn history(&self) -> Vec<DeploymentRecord> {
        let mut out: Vec<DeploymentRecord> = Vec::new();
        for rec in std::fs::read_to_string(self.dir.join("history.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<DeploymentRecord>(l).ok())
        {
            match out
                .iter_mut()
                .find(|r| r.id == rec.id && r.service == rec.service)
            {
                Some(earlier) => *earlier = rec,
                None => out.push(rec),
            }
        }
        out
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_recorded_twice_is_one_deployment_with_its_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let files = EnvFiles::new(dir.path(), "prod");
        let rec = |id: u64, event: &str| -> DeploymentRecord {
            serde_json::from_value(serde_json::json!({
                "id": id, "env": "prod", "service": "web", "version": format!("r{id}"),
                "previous": null, "strategy": "blue-green", "commit": null, "commit_time": null,
                "started": 1, "finished": 2, "outcome": "succeeded", "rollback_from": null,
                "events": [event], "event_times": [1]
            }))
            .unwrap()
        };
        files.append_history(&rec(1, "first")).unwrap();
        files.append_history(&rec(2, "switched")).unwrap();
        files
            .append_history(&rec(2, "switched; the controller (pid 7) stopped after"))
            .unwrap();
        let h = files.history();
        assert_eq!(h.len(), 2);
        assert_eq!(
            h[1].events,
            ["switched; the controller (pid 7) stopped after"]
        );
    }
}
