#!/usr/bin/env bash
# The kill -9 matrix: for rolling, blue-green and canary, a v1 -> v2 rollout
# whose controller is killed with SIGKILL once the rollout has recorded PHASE
# events (1 = started, then each decision), under a client loop of one request
# per connection against the router. Nobody restarts the controller: the
# router process does, by itself. Real processes throughout (hangar, its router
# process, python3 -m http.server instances). The last line is a canary with
# `on_interrupt: resume` killed at its second step; the `readopt` lines are a
# rolling and a canary rollout (resume) whose restarted controller re-adopts
# the running instances and goes on from the batch or step reached.
#   bash benches/deploy-kill-matrix.sh [PHASES]     (default 1,2,3,4)
# Prints one line per case: requests sent, connections refused, requests
# failed, how the interrupted rollout ended in history, and how long the
# controller took to come back (from the kill to its first answer).
set -euo pipefail
cd "$(dirname "$0")/.."
PHASES=${1:-1,2,3,4}
HANGAR_KILL_PHASES=$PHASES cargo test -q -p hangar --test cli deploy_crash::kill_9_m \
  -- --nocapture --test-threads=1 2>&1 | grep -E 'kill-matrix|readopt|test result|panicked|FAILED'
# The router process killed instead: the controller restarts it; prints how
# long connections were refused (first to last refused connection).
cargo test -q -p hangar --test cli deploy_crash::kill_9_of_the_router \
  -- --nocapture --test-threads=1 2>&1 | grep -E 'router-kill|test result|panicked|FAILED'
