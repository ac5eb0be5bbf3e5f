//! GitHub Actions workflow model parsed from YAML with source positions, and validation.
