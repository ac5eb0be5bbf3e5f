#!/usr/bin/env bash
# Queue drain through the store (release build): 10,000 one-step jobs taken
# by 20 simulated agents, on SQLite and on a throwaway local PostgreSQL
# cluster (needs Debian's `postgresql`; skipped loudly without it). Prints
# jobs per second for each, their ratio, claim attempts per job and
# PostgreSQL round trips per job; then PostgreSQL with the agents spread over
# three stores on one database (three servers' connection pools). One process
# and one machine: the figure is the store's cost per job, not the HTTP of a
# multi-server deployment.
# Usage: benches/queue-drain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p hangar-store --bench queue
