//! Policy-as-code: Rego evaluation over YAML, JSON, TOML and Dockerfiles.
