#!/usr/bin/env bash
# Secret-scanning speed, hangar against kingfisher (PyPI kingfisher-bin, --no-validate),
# side by side in one run, both with 2 worker threads:
#   1. a working tree of at least 500 MB (the labelled generator's source files,
#      padded to realistic sizes), all of hangar's default rules on;
#   2. `--git` over a repository of 10,000 commits.
# Each scan runs twice and the second (warm page cache) run counts, for both tools.
# Usage: benches/secrets-vs-kingfisher.sh [TREE_MB] [COMMITS]
set -euo pipefail
cd "$(dirname "$0")/.."
TREE_MB=${1:-500}
COMMITS=${2:-10000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q kingfisher-bin
KF="$WORK/venv/bin/kingfisher"
cargo build -q --release -p hangar
cargo build -q --release -p hangar-secrets --example gen_corpus
HANGAR=target/release/hangar

target/release/examples/gen_corpus "$WORK/tree" --files 2000 --extra-lines 300 --target-mb "$TREE_MB"
BYTES=$(du -sb "$WORK/tree" | cut -f1)

secs() { # runs "$@" twice, prints the seconds of the second run
  "$@" >/dev/null 2>&1 || true
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || true
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

# Warm kingfisher's compiled rule cache outside the measurement.
"$KF" scan "$WORK/venv/pyvenv.cfg" --no-validate >/dev/null 2>&1 || true

H=$(secs "$HANGAR" scan secrets "$WORK/tree" -j 2 --format json -o "$WORK/h.json")
K=$(secs "$KF" scan "$WORK/tree" -j 2 --no-validate --format json -o "$WORK/k.json")
printf 'working tree: %.0f MB\n' "$(echo "$BYTES / 1000000" | bc -l)"
printf '  hangar      %6.2f s  %7.1f MB/s\n' "$H" "$(echo "$BYTES / 1000000 / $H" | bc -l)"
printf '  kingfisher  %6.2f s  %7.1f MB/s\n' "$K" "$(echo "$BYTES / 1000000 / $K" | bc -l)"
printf '  hangar throughput / kingfisher throughput = %.2f\n' "$(echo "$K / $H" | bc -l)"

mkdir "$WORK/small"
target/release/examples/gen_corpus "$WORK/small/c" --files 600 >/dev/null 2>&1
python3 benches/secrets_history.py "$WORK/small/c" "$WORK/repo" "$COMMITS"
HG=$(secs "$HANGAR" scan secrets "$WORK/repo" --git -j 2 --format json -o "$WORK/hg.json")
KG=$(secs "$KF" scan "$WORK/repo" -j 2 --no-validate --git-history full --format json -o "$WORK/kg.json")
printf 'git history: %s commits\n' "$(git -C "$WORK/repo" rev-list --count HEAD)"
printf '  hangar --git  %6.2f s  (%s findings)\n' "$HG" "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["findings"]))' "$WORK/hg.json")"
printf '  kingfisher    %6.2f s\n' "$KG"
printf '  hangar time / kingfisher time = %.2f\n' "$(echo "$HG / $KG" | bc -l)"
