//! Helpers shared by this crate's integration tests.

use std::path::{Path, PathBuf};

/// The shared product material beside the repository (`HANGAR_SHARED` overrides).
/// Missing data skips the test loudly, except under CI, where it fails.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("HANGAR_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.join("conformance").is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "the shared conformance data is missing at {}",
            dir.display()
        );
    }
    eprintln!("SKIPPED: no shared conformance data at {}", dir.display());
    None
}
