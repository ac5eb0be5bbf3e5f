//! GitHub Actions workflow files: YAML with positions ([`yaml`]), the typed
//! model every reader uses ([`model`]) and validation ([`validate`]) for
//! `hangar validate`.
//!
//! zizmor's `github-actions-models` was considered: its serde models carry no
//! positions, and every diagnostic here needs a line and a column; [`model`]
//! borrows its shape (`LoE`, one trigger type for every spelling of `on:`).

mod limits;
pub mod model;
mod tags;
pub mod template;
pub mod validate;
pub mod yaml;

pub use validate::{
    Limits, Options, PermissionsPolicy, local_callee, validate, validate_action, validate_with,
    validate_with_options, validate_with_policy,
};
