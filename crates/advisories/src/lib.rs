//! Dependency audit: lock files matched against OSV advisories.
