#!/usr/bin/env bash
# Resolution of marketplace actions by `hangar run`, from a local forge built from the real actions in
# ../shared/actions (bare repositories over file://): one job with 6 remote `uses:` (by tag), each step
# `if: false`, so the run is set-up (resolve + fetch) and nothing else. Against the same job with 6 skipped
# `run:` steps (the baseline), it prints:
#   cold: empty action cache every run (ls-remote + fetch + checkout of 6 commits)
#   warm: cache filled, tags resolved within HANGAR_ACTIONS_TTL (300 s) taken from the cache
#   warm, TTL 0: cache filled, every tag asked of the forge again (git ls-remote, 6 in parallel)
# and the warm cost over the baseline (the budget: under 50 ms).
# act is not run side by side: it fetches actions only from an https GitHub host (--github-instance), so it
# cannot read this forge; its closest equivalent (--action-offline-mode on a filled cache) skips resolution.
# Uses farm-bench when present (medians of paired runs), else best-of-N wall times.
# HANGAR=path/to/hangar to use a given binary (default: a release build).
set -euo pipefail

RUNS=${RUNS:-7}
root=$(cd "$(dirname "$0")/.." && pwd)
bundles="$root/../shared/actions"
[ -d "$bundles" ] || { echo "no $bundles: nothing to serve"; exit 1; }
if [ -z "${HANGAR:-}" ]; then
  echo "building hangar (release)..."
  cargo build --release -q -p hangar --manifest-path "$root/Cargo.toml"
  HANGAR="$root/target/release/hangar"
fi

export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=init.defaultBranch GIT_CONFIG_VALUE_0=main
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
forge="$work/forge"
for name in actions/setup-node actions/setup-python actions/cache Swatinem/rust-cache; do
  git clone -q --bare "$bundles/$name.bundle" "$forge/$name.git"
done

repo="$work/repo"
mkdir -p "$repo/.github/workflows"
git -C "$repo" init -q
git -C "$repo" -c user.name=bench -c user.email=bench@example.com commit -q --allow-empty -m init
uses="actions/setup-node@v4 actions/setup-node@v7 actions/setup-python@v5 actions/setup-python@v7 Swatinem/rust-cache@v2 actions/cache@v5"
{
  echo "on: push"; echo "jobs:"; echo "  six:"; echo "    runs-on: ubuntu-latest"; echo "    steps:"
  for u in $uses; do echo "      - uses: $u"; echo "        if: false"; done
} > "$work/six.yml"
{
  echo "on: push"; echo "jobs:"; echo "  six:"; echo "    runs-on: ubuntu-latest"; echo "    steps:"
  for u in $uses; do echo "      - run: 'true'"; echo "        if: false"; done
} > "$work/base.yml"

export HANGAR_DATA_DIR="$work/data"
run_six="$HANGAR run -C $repo -W $work/six.yml --actions-url file://$forge"
run_base="$HANGAR run -C $repo -W $work/base.yml --actions-url file://$forge"
$run_six >/dev/null   # fills the cache (and checks the workflow runs)
echo "resolved: $($run_six --json | grep -c '"action_resolved"') actions"

if command -v farm-bench >/dev/null 2>&1; then
  echo "== warm (cache filled) vs baseline"
  farm-bench -n "$RUNS" --vs "$run_base" -- $run_six
  echo "== warm, HANGAR_ACTIONS_TTL=0 (every tag re-resolved) vs baseline"
  HANGAR_ACTIONS_TTL=0 farm-bench -n "$RUNS" --vs "$run_base" -- $run_six
  echo "== cold (empty cache every run) vs baseline"
  farm-bench -n "$RUNS" --timeout 300 --vs "$run_base" -- sh -c "rm -rf $HANGAR_DATA_DIR/actions && exec $run_six"
else
  best() { local b=999999 t0 t1; for _ in $(seq "$RUNS"); do t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); b=$(( (t1-t0)/1000000 < b ? (t1-t0)/1000000 : b )); done; echo "$b"; }
  base=$(best $run_base); warm=$(best $run_six)
  cold=$(best sh -c "rm -rf $HANGAR_DATA_DIR/actions && exec $run_six")
  echo "baseline ${base} ms, warm ${warm} ms (+$((warm-base)) ms), cold ${cold} ms (+$((cold-base)) ms)"
fi
