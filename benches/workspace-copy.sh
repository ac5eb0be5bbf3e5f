#!/usr/bin/env bash
# The private workspace of `hangar run` on a 1 GB working tree, side by side:
#   hangar run (private copy)   - hangar run --bind (in place) = what the copy costs
#   cp -a of the tree (the naive copy, .git included)
#   act in host mode (act copies the tree too unless --bind), when act is installed
#     (see run-vs-act.sh; ACT=/path/to/act to pick one)
# The tree: SIZE_MB (default 1024) of committed files (many small sources and
# a few large assets), a few uncommitted edits, and an ignored target/ of
# IGNORED_MB (default 512) that the copy leaves out. Best of $RUNS wall times.
set -euo pipefail

RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-1024}
IGNORED_MB=${IGNORED_MB:-512}
root=$(cd "$(dirname "$0")/.." && pwd)

echo "building hangar (release)..."
cargo build --release -q -p hangar --manifest-path "$root/Cargo.toml"
HANGAR="$root/target/release/hangar"

work=$(mktemp -d "${TMPDIR:-/tmp}/ws-bench.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export HANGAR_DATA_DIR="$work/data"
repo="$work/repo"
mkdir -p "$repo/.github/workflows" "$repo/src" "$repo/assets" "$repo/target"
echo "filesystem: $(df -T "$work" | awk 'NR==2 {print $2}')"

echo "making a ${SIZE_MB} MB tree..."
small_mb=$((SIZE_MB / 4))            # a quarter in 16 KB source files
n_small=$((small_mb * 64))
for ((d = 0; d < n_small / 500 + 1; d++)); do mkdir -p "$repo/src/d$d"; done
python3 - "$repo/src" "$n_small" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{root}/d{i // 500}/f{i}.rs", "wb") as f:
        f.write(os.urandom(8192).hex().encode())
PY
big=$(( (SIZE_MB - small_mb) / 32 ))  # the rest in 32 MB assets
for ((i = 0; i < big; i++)); do head -c 32M /dev/urandom > "$repo/assets/a$i.bin"; done
for ((i = 0; i < IGNORED_MB / 32; i++)); do head -c 32M /dev/urandom > "$repo/target/o$i.bin"; done
echo "target/" > "$repo/.gitignore"
cat > "$repo/.github/workflows/w.yml" <<'YML'
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: test -f src/d0/f0.rs
YML
(
  cd "$repo"
  git init -q -b main
  git add -A
  git -c user.name=b -c user.email=b@example.com commit -q -m tree
  echo edit >> src/d0/f0.rs
  echo new > untracked.txt
)
echo "tree: $(du -sh --exclude=.git --exclude=target "$repo" | cut -f1) committed (+ .git $(du -sh "$repo/.git" | cut -f1), ignored target/ $(du -sh "$repo/target" | cut -f1))"

best() { # best wall time in ms of "$@" over $RUNS runs
  local b=999999999 t0 t1 ms
  for ((r = 0; r < RUNS; r++)); do
    sync
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@" 2>&1 | tail -20 >&2; exit 1; }
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    (( ms < b )) && b=$ms
  done
  echo $b
}
cp_tree() { rm -rf "$work/cp"; cp -a "$repo" "$work/cp"; }

bind=$(best "$HANGAR" run -C "$repo" --bind --no-validate)
priv=$(best "$HANGAR" run -C "$repo" --no-validate)
cpa=$(best cp_tree)
rm -rf "$work/cp"
printf '%-44s %8s ms\n' "hangar run --bind (in place)" "$bind"
printf '%-44s %8s ms  (copy: %s ms)\n' "hangar run (private copy)" "$priv" "$((priv - bind))"
printf '%-44s %8s ms  (%.1fx the private copy)\n' "cp -a of the tree, .git and target/" "$cpa" \
  "$(python3 -c "print($cpa / max(1, $priv - $bind))")"

ACT=${ACT:-$(command -v act || true)}
if [ -n "$ACT" ]; then
  export HOME="$work/home"
  mkdir -p "$HOME"
  echo "-P ubuntu-latest=-self-hosted" > "$HOME/.actrc"
  abind=$(best "$ACT" push -C "$repo" --bind)
  acopy=$(best "$ACT" push -C "$repo")
  printf '%-44s %8s ms\n' "act (host mode) --bind" "$abind"
  printf '%-44s %8s ms  (copy: %s ms)\n' "act (host mode), copying" "$acopy" "$((acopy - abind))"
else
  echo "act not found (ACT=/path/to/act, or see run-vs-act.sh): skipped"
fi
