//! hangar's HTTP reverse proxy: weighted routing between versions, per-version metrics.
