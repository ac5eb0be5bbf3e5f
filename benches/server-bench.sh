#!/usr/bin/env bash
# CI server benchmarks (release build): webhook-to-first-step latency, queue drain
# throughput, log ingestion, and the run page with 100,000 log lines in headless
# Chromium. Prints each figure with its ratio to the target.
# Usage: benches/server-bench.sh [latency|throughput|ingestion|page]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -qq --no-install-recommends chromium >/dev/null || true
fi
cargo bench -p hangar-server --bench server -- "$@"
