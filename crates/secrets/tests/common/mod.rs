//! Helpers shared by this crate's integration tests.

use std::path::PathBuf;

/// The shared product material beside the repository (`HANGAR_SHARED` overrides).
/// Missing data skips the test loudly, except under CI, where it fails.
pub fn shared() -> Option<PathBuf> {
    hangar_testkit::shared("conformance/secrets")
}
