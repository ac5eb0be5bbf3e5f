//! An agent's identity across restarts: the id and credential a registration
//! bought, kept in a state file as GitHub's runner keeps `.runner` and
//! `.credentials` in its folder after `config.sh`.
//!
//! Without it every restart registered again: a new agent row each time, and
//! an agent started with a single-use token could not start a second time at
//! all. With it a restart polls with the stored credential; a 401 to it means
//! an operator removed the agent, so the agent stops rather than register
//! again with its token behind the operator's back.
//!
//! The file holds a secret that opens every agent route as this agent, so it
//! is written 0600 (a temporary file renamed over it, so a crash never leaves
//! half of one), and read only when it is a regular file of this user that
//! no one else may read: a file another user could read or plant is refused,
//! as ssh refuses such a key. A lock beside it (`FILE.lock`, held while the
//! agent runs) keeps two processes from running as one agent.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The format this build writes and reads.
const VERSION: u32 = 1;

/// Far above a real file's few hundred bytes; a larger one is not ours.
const MAX_BYTES: u64 = 64 * 1024;

/// What a registration bought: who the agent is, at which server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The server's URL as given to `--server` (without a trailing `/`): the
    /// credential is good at that server only.
    pub server: String,
    pub agent_id: String,
    pub credential: String,
}

// Never prints the credential.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("server", &self.server)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    server: String,
    agent_id: String,
    credential: String,
}

/// How a server URL is compared: `http://ci:8420/` and `http://ci:8420` are
/// one server.
pub fn server_key(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// The state file of a running agent, locked for this process's life.
pub struct StateFile {
    path: PathBuf,
    _lock: File,
}

/// Said with every refusal of a state file: what to do about it.
fn remedy(path: &Path) -> String {
    format!(
        "delete {} (or start with --reregister and an agent token) to register this machine as a new agent",
        path.display()
    )
}

impl StateFile {
    /// Takes the state file at `path` for this process: its directory is made
    /// (0700) when missing, and its lock taken, so a second agent on the same
    /// file stops here with a clear error instead of running as the first.
    pub fn open(path: &Path) -> anyhow::Result<StateFile> {
        let Some(name) = path.file_name() else {
            bail!("the agent state file `{}` names no file", path.display());
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| {
                format!(
                    "creating {}, the directory of the agent state file",
                    dir.display()
                )
            })?;
        let mut lock_name = name.to_os_string();
        lock_name.push(".lock");
        let lock_path = dir.join(lock_name);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            bail!(
                "another `hangar agent` runs with the state file {} (it holds {}): two processes \
                 cannot be one agent; give this one a state file of its own (--state-file, or \
                 another --work-dir or --name)",
                path.display(),
                lock_path.display()
            );
        }
        Ok(StateFile {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored identity; `None` when there is no file yet. A file that is
    /// not a private regular file of this user, or that does not read as
    /// one this build wrote, is an error naming it and what to do.
    pub fn load(&self) -> anyhow::Result<Option<Identity>> {
        let path = &self.path;
        // Not followed when a link: whoever planted one chose what it names.
        let fd = match rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => bail!(
                "the agent state file {} is a symbolic link, which is never followed: {}",
                path.display(),
                remedy(path)
            ),
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("reading the agent state file {}", path.display()));
            }
        };
        let mut file = File::from(fd);
        // The opened file's own metadata: what is checked is what is read.
        let meta = file
            .metadata()
            .with_context(|| format!("reading the agent state file {}", path.display()))?;
        if !meta.is_file() {
            bail!(
                "the agent state file {} is not a regular file: {}",
                path.display(),
                remedy(path)
            );
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            bail!(
                "the agent state file {} belongs to user {}, not to this user ({me}): it holds an \
                 agent's credential, so only a file this user wrote is used; {}",
                path.display(),
                meta.uid(),
                remedy(path)
            );
        }
        if meta.mode() & 0o077 != 0 {
            bail!(
                "the agent state file {} is readable or writable by others (mode {:04o}): it \
                 holds an agent's credential. Run `chmod 600 {}` if no one else could have read \
                 it, else remove the agent on the server and {}",
                path.display(),
                meta.mode() & 0o7777,
                path.display(),
                remedy(path)
            );
        }
        if meta.len() > MAX_BYTES {
            bail!(
                "the agent state file {} is {} bytes, not one `hangar agent` wrote: {}",
                path.display(),
                meta.len(),
                remedy(path)
            );
        }
        let mut text = String::new();
        (&mut file)
            .take(MAX_BYTES)
            .read_to_string(&mut text)
            .with_context(|| {
                format!(
                    "reading the agent state file {}: {}",
                    path.display(),
                    remedy(path)
                )
            })?;
        let disk: OnDisk = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "the agent state file {} is damaged (line {}, column {}: {e}): {}",
                path.display(),
                e.line(),
                e.column(),
                remedy(path)
            )
        })?;
        if disk.version != VERSION {
            bail!(
                "the agent state file {} is of format {}, this hangar reads format {VERSION}: {}",
                path.display(),
                disk.version,
                remedy(path)
            );
        }
        let id = Identity {
            server: disk.server,
            agent_id: disk.agent_id,
            credential: disk.credential,
        };
        check(&id).map_err(|why| {
            anyhow::anyhow!(
                "the agent state file {} is damaged ({why}): {}",
                path.display(),
                remedy(path)
            )
        })?;
        Ok(Some(id))
    }

    /// Writes `id` over the file: a temporary file of mode 0600 beside it,
    /// flushed to disk, renamed over it, and the directory flushed, so the
    /// file is either the old identity or the new one, whole.
    pub fn save(&self, id: &Identity) -> anyhow::Result<()> {
        let path = &self.path;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let bytes = serde_json::to_vec_pretty(&OnDisk {
            version: VERSION,
            server: id.server.clone(),
            agent_id: id.agent_id.clone(),
            credential: id.credential.clone(),
        })?;
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e)
                .with_context(|| format!("writing the agent state file {}", path.display()));
        }
        Ok(())
    }
}

/// What a stored identity must look like; anything else was not written by
/// hangar (an edit, a truncation, another file).
fn check(id: &Identity) -> Result<(), String> {
    if id.server.trim().is_empty() {
        return Err("it names no server".into());
    }
    let id_ok = (1..=200).contains(&id.agent_id.len())
        && id
            .agent_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !id_ok {
        return Err("its agent id is not one a server hands out".into());
    }
    let cred_ok = id.credential.strip_prefix("hga_").is_some_and(|rest| {
        (32..=256).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if !cred_ok {
        return Err("its credential is not an agent credential (`hga_…`)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn id() -> Identity {
        Identity {
            server: "http://127.0.0.1:8420".into(),
            agent_id: "agent-box-1a2b".into(),
            credential: format!("hga_{}", "ab".repeat(32)),
        }
    }

    #[test]
    fn an_identity_saved_is_loaded_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/agent.json");
        let state = StateFile::open(&path).unwrap();
        assert!(state.load().unwrap().is_none());
        state.save(&id()).unwrap();
        assert_eq!(state.load().unwrap(), Some(id()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // Its Debug never shows the credential.
        assert!(!format!("{:?}", id()).contains("hga_"));
    }

    #[test]
    fn a_second_process_on_one_state_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        let first = StateFile::open(&path).unwrap();
        let err = StateFile::open(&path).err().unwrap().to_string();
        assert!(err.contains("another `hangar agent`"), "{err}");
        drop(first);
        StateFile::open(&path).unwrap();
    }

    #[test]
    fn a_link_a_foreign_mode_and_damage_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        let state = StateFile::open(&path).unwrap();
        state.save(&id()).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        let refused = |what: &str| {
            let e = format!("{:#}", state.load().unwrap_err());
            assert!(e.contains(&path.display().to_string()), "{what}: {e}");
            assert!(e.contains("--reregister"), "{what}: {e}");
            e
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(refused("0640").contains("0640"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        for (what, text) in [
            ("garbage", "not json at all".to_string()),
            ("truncated", good[..good.len() / 2].to_string()),
            ("token", good.replace("hga_", "hgr_")),
            ("id", good.replace("agent-box-1a2b", "../../etc")),
            ("format", good.replace("\"version\": 1", "\"version\": 9")),
        ] {
            std::fs::write(&path, text).unwrap();
            refused(what);
        }
        std::fs::remove_file(&path).unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, &good).unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(refused("link").contains("symbolic link"));
        // Another user's file (only root can make one here).
        std::fs::remove_file(&path).unwrap();
        state.save(&id()).unwrap();
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            assert!(refused("owner").contains("belongs to user 65534"));
        }
    }

    #[test]
    fn server_urls_compare_without_a_trailing_slash() {
        assert_eq!(server_key("http://ci:8420/"), server_key("http://ci:8420"));
        assert_ne!(server_key("http://ci:8420"), server_key("http://ci:8421"));
    }
}
