//! Helpers shared by the CLI's process-level tests.

#![allow(dead_code)]

pub mod browser;

/// Whether python3 (the instances' web server in delivery tests) is here.
/// Missing, the test is skipped loudly, except under CI, where it fails.
pub fn have_python3() -> bool {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 is required in CI"
    );
    eprintln!("SKIPPED: python3 not found");
    false
}

#[allow(unused_imports)] // each test binary uses its own subset
pub use hangar_testkit::free_port;
