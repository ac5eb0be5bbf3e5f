//! GitHub Actions workflow files: YAML with positions ([`yaml`]) and validation
//! ([`validate`]) for `hangar validate`.
//!
//! The executor (`hangar-engine`) reads workflows into JSON trees of its own;
//! this crate owns where things are and what is wrong with them. zizmor's
//! `github-actions-models` was considered: its serde models carry no positions,
//! and every diagnostic here needs a line and a column.

mod limits;
mod tags;
pub mod template;
pub mod validate;
pub mod yaml;

pub use validate::{
    Limits, Options, PermissionsPolicy, local_callee, validate, validate_with,
    validate_with_options, validate_with_policy,
};
