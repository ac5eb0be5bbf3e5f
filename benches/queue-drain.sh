#!/usr/bin/env bash
# Queue drain through the store (release build): 10,000 one-step jobs taken
# by 20 simulated agents, on SQLite and on a throwaway local PostgreSQL
# cluster (needs Debian's `postgresql`; skipped loudly without it). Prints
# jobs per second for each, their ratio, claim attempts per job and
# PostgreSQL round trips per job. One process and one machine: the figure is
# the store's cost per job, not a multi-server deployment's.
# Usage: benches/queue-drain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p hangar-store --bench queue
