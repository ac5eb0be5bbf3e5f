//! Persistence behind traits: SQLite by default.
