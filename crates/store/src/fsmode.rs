//! The data directory's modes: it holds the database (sealed secrets, token
//! hashes), the key that opens the secrets, and every artifact and cache blob,
//! so only the server's user may enter it. Created 0700 with files 0600, and
//! tightened at start-up when an older version (or a umask) left it looser.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// What hangar keeps directly in its data directory.
const OWN_ENTRIES: &[&str] = &[
    "hangar.db",
    "hangar.db-wal",
    "hangar.db-shm",
    "secret.key",
    "lease.key",
    "blobs",
    "mirrors",
    "work",
    "results-artifacts",
    "actions",
];

/// Creates `dir` and its missing parents' last component 0700 (parents that
/// exist keep their mode: they are the user's, not hangar's).
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes a new file readable by its owner only.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.write_all(bytes)
}

/// Tightens the data directory (0700) and hangar's entries directly in it
/// (files 0600, directories 0700); below the first level nothing needs a look, as no
/// other user can enter the directory. Returns one line per path it changed,
/// for the server to warn about.
pub fn secure_data_dir(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut fixed = Vec::new();
    let mut tighten = |path: &Path, want: u32| -> anyhow::Result<()> {
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("reading the mode of {}", path.display()))?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
            fixed.push(format!("{} was {mode:04o}, now {want:04o}", path.display()));
        }
        Ok(())
    };
    tighten(dir, DIR_MODE)?;
    // hangar's own entries only: a data directory pointed at a folder that
    // holds other things leaves those alone.
    for name in OWN_ENTRIES {
        let path = dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        tighten(&path, if meta.is_dir() { DIR_MODE } else { FILE_MODE })?;
    }
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loose_data_directory_is_tightened_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        create_private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        std::fs::write(dir.join("hangar.db"), b"x").unwrap();
        std::fs::set_permissions(
            dir.join("hangar.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
        std::fs::set_permissions(
            dir.join("notes.txt"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let fixed = secure_data_dir(&dir).unwrap();
        assert_eq!(fixed.len(), 2, "{fixed:?}");
        assert_eq!(mode(&dir.join("notes.txt")), 0o644, "not hangar's");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("hangar.db")), 0o600);
        assert!(secure_data_dir(&dir).unwrap().is_empty());
    }
}
