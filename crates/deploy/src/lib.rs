//! Delivery engine: supervisor, health checks, strategies, analysis, rollback, DORA.
