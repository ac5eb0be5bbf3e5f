#!/usr/bin/env bash
# Cache service throughput (release build): 200 MB saved and restored through
# hangar's results service on loopback, as @actions/cache v2 sends it (64 MiB
# blocks 8 at a time, a block list, one streamed GET); target 200 MB/s each
# way, printed with its ratio. Then, when node and the action bundles are
# here, the real actions/cache@v4 under `hangar run` on a 200 MB directory:
# the step times include the action's own tar and zstd work.
# Usage: benches/cache-service.sh [SHARED_DIR]   (default: ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p hangar-results --bench throughput

shared=${1:-${HANGAR_SHARED:-../shared}}
bundle="$shared/actions/actions/cache.bundle"
if ! command -v node >/dev/null || [ ! -f "$bundle" ]; then
  echo "skipping the end-to-end run: node or $bundle missing"
  exit 0
fi
cargo build --release -q -p hangar
hangar=$PWD/target/release/hangar
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone -q --end-of-options "$bundle" "$tmp/cache"
git -C "$tmp/cache" -c advice.detachedHead=false checkout -q v4
mkdir -p "$tmp/repo/.github/workflows"
cat > "$tmp/repo/.github/workflows/w.yml" <<'YML'
on: push
jobs:
  big:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/cache@v4
        with: { path: deps, key: big-1 }
YML
(
  cd "$tmp/repo"
  mkdir deps
  head -c 200000000 /dev/urandom > deps/blob
  git init -q -b main && git add .github && git -c user.name=b -c user.email=b@example.com commit -qm init
  export HANGAR_DATA_DIR="$tmp/data"
  echo "actions/cache@v4, 200 MB of random bytes (tar + zstd in the action, then the service):"
  "$hangar" run --action-dir "actions/cache@v4=$tmp/cache" | grep -E "Post Run actions/cache|Cache Size|Sent" | sed 's/^/  save:    /'
  rm -rf deps
  "$hangar" run --action-dir "actions/cache@v4=$tmp/cache" | grep -E "^< Run actions/cache|Cache Size|Received" | sed 's/^/  restore: /'
  test -s deps/blob && echo "  restored: $(stat -c %s deps/blob) bytes"
)
