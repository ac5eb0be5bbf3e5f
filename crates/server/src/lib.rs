//! hangar serve: HTTP API, webhooks, scheduler, queue and leases, web UI.
