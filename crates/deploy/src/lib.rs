//! The delivery engine: services as supervised processes behind hangar's router,
//! rolled out with rolling, blue-green or canary strategies, judged by the
//! router's own numbers, rolled back by themselves, and counted for DORA.
//!
//! - [`supervisor`]: instance processes, restarts with backoff, health.
//! - [`controller`]: one environment: routers, rollouts, rollback, recovery.
//! - [`alerts`]: alert rules evaluated continuously (pending, firing, resolved), silences, webhook notifications, the environment's `/metrics`.
//! - [`analysis`]: verdicts from error rates and latency, with their numbers.
//! - [`release`], [`state`]: what is kept on disk.
//! - [`dora`]: the four keys from the deployment history.
//! - [`control`]: the local socket through which the CLI talks to a running controller.
//! - `plane`: where routers run: a router process of their own (`hangar up`), which keeps the last weights while the controller restarts, or in the controller.
//! - [`client`]: the one client of that socket (CLI, server, built-in step): starts the controller when none runs.

pub mod alerts;
pub mod analysis;
pub mod client;
pub mod control;
pub mod controller;
pub mod dora;
pub mod health;
mod plane;
pub mod protection;
pub mod recovery;
pub mod release;
pub mod state;
pub mod supervisor;

pub use controller::{Controller, DeployRequest, EnvStatus, Signal};
pub use plane::{routers_openmetrics, run_router, use_router_process};
