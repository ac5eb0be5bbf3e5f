#!/usr/bin/env bash
# `hangar scan deps` side by side with cargo-audit on the same real Cargo.lock
# files and the same RustSec database (its `main` branch for cargo-audit, its
# `osv` branch, generated from it, for hangar), counting what each reports and
# timing both, interleaved lock by lock.
#
#   bash benches/deps-vs-cargo-audit.sh ADVISORY_DB_GIT REPO_GIT...
#
# ADVISORY_DB_GIT: a clone (bare is fine) of github.com/rustsec/advisory-db
#   with both branches. REPO_GIT: clones of Rust projects; each one's
#   Cargo.lock is taken as it was on each date of DATES (default two dates,
#   old enough for the locks to hold advisories).
# cargo-audit: `cargo install cargo-audit` (or CARGO_AUDIT=/path/to/it).
#
# Prints one line per lock file: advisories cargo-audit reports (vulnerabilities
# + unmaintained + unsound), hangar's, how many agree, and the two medians;
# then the totals and the time ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
DB_GIT=${1:?usage: deps-vs-cargo-audit.sh ADVISORY_DB_GIT REPO_GIT...}
shift
[ $# -gt 0 ] || { echo "give at least one repository clone" >&2; exit 2; }
DATES=${DATES:-2019-06-01 2021-06-01}
ROUNDS=${ROUNDS:-3}
AUDIT=${CARGO_AUDIT:-$(command -v cargo-audit || true)}
[ -x "$AUDIT" ] || { echo "cargo-audit not found: cargo install cargo-audit, or set CARGO_AUDIT" >&2; exit 2; }
# HANGAR=/path/to/hangar skips the build (a debug build's times are not comparable).
if [ -z "${HANGAR:-}" ]; then
  cargo build -q --release -p hangar
  HANGAR=$PWD/target/release/hangar
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/main" "$work/osv" "$work/locks"
git -C "$DB_GIT" archive main | tar -x -C "$work/main"
git -C "$DB_GIT" archive osv | tar -x -C "$work/osv"
echo "advisory-db main $(git -C "$DB_GIT" log -1 --format='%h %cI' main), osv $(git -C "$DB_GIT" log -1 --format='%h %cI' osv)"

n=0
for repo in "$@"; do
  name=$(basename "$(cd "$repo" && git rev-parse --absolute-git-dir)" .git)
  [ "$name" = repo ] && name=$(basename "$(dirname "$(cd "$repo" && git rev-parse --absolute-git-dir)")")
  for d in $DATES; do
    c=$(git -C "$repo" log --before="$d" -1 --format=%H -- Cargo.lock 2>/dev/null || true)
    [ -n "$c" ] || continue
    dir="$work/locks/$name@$d"
    mkdir -p "$dir"
    git -C "$repo" show "$c:Cargo.lock" >"$dir/Cargo.lock" 2>/dev/null || { rm -rf "$dir"; continue; }
    n=$((n + 1))
  done
done
echo "$n lock files"

# Wall time of one command in milliseconds.
ms() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>&1 || true
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

for dir in "$work"/locks/*/; do
  lock="$dir/Cargo.lock"
  # cargo-audit: offline, on the database as given (no fetch, stale allowed).
  "$AUDIT" audit --db "$work/main" --no-fetch --stale -f "$lock" --json >"$dir/audit.json" 2>"$dir/audit.err" || true
  "$HANGAR" scan deps "$lock" --db "$work/osv" --format json >"$dir/hangar.json" 2>"$dir/hangar.err" || true
  a=() h=()
  for _ in $(seq "$ROUNDS"); do
    a+=("$(ms "$AUDIT" audit --db "$work/main" --no-fetch --stale -f "$lock" --json)")
    h+=("$(ms "$HANGAR" scan deps "$lock" --db "$work/osv" --format json)")
  done
  printf '%s\n' "${a[@]}" >"$dir/audit.ms"
  printf '%s\n' "${h[@]}" >"$dir/hangar.ms"
done

python3 - "$work/locks" <<'PY'
import json, os, statistics, sys
root = sys.argv[1]
def audit_set(p):
    try:
        d = json.load(open(p))
    except Exception as e:
        return None
    out = set()
    for v in d.get("vulnerabilities", {}).get("list", []):
        out.add((v["advisory"]["id"], v["package"]["name"], v["package"]["version"]))
    for kind, items in (d.get("warnings") or {}).items():
        if kind not in ("unmaintained", "unsound"):
            continue  # yanked needs crates.io's index: not offline
        for w in items:
            adv = w.get("advisory") or {}
            if adv.get("id"):
                out.add((adv["id"], w["package"]["name"], w["package"]["version"]))
    return out
def hangar_set(p):
    try:
        d = json.load(open(p))
    except Exception:
        return None
    return {(v["advisory"], v["package"], v["version"]) for v in d.get("vulnerabilities", [])}
tot = dict(audit=0, hangar=0, both=0); ratios = []; ta = th = 0
print(f"{'lock file':40} {'cargo-audit':>11} {'hangar':>7} {'agree':>6} {'audit ms':>9} {'hangar ms':>9}")
for name in sorted(os.listdir(root)):
    d = os.path.join(root, name)
    a, h = audit_set(f"{d}/audit.json"), hangar_set(f"{d}/hangar.json")
    if a is None or h is None:
        print(f"{name:40} unreadable output: see {'audit' if a is None else 'hangar'}.err"); continue
    am = statistics.median(int(x) for x in open(f"{d}/audit.ms"))
    hm = statistics.median(int(x) for x in open(f"{d}/hangar.ms"))
    ta += am; th += hm
    both = len(a & h)
    tot["audit"] += len(a); tot["hangar"] += len(h); tot["both"] += both
    print(f"{name:40} {len(a):11} {len(h):7} {both:6} {am:9.0f} {hm:9.0f}")
    for x in sorted(a - h): print(f"   only cargo-audit: {x}")
    for x in sorted(h - a): print(f"   only hangar:      {x}")
print(f"{'total':40} {tot['audit']:11} {tot['hangar']:7} {tot['both']:6} {ta:9.0f} {th:9.0f}")
if th:
    print(f"time: hangar / cargo-audit = {th/ta:.2f} (sum of per-lock medians)")
PY
