#!/usr/bin/env bash
# `hangar release --dry-run` against `git-cliff --bump --unreleased` on a repository
# with N commits (default 50,000) since the last tag, in one run.
#   bash benches/release-vs-git-cliff.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
cargo build --release -q -p hangar
HANGAR=$PWD/target/release/hangar
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# git-cliff from npm (it ships a prebuilt binary), installed into the scratch directory.
(cd "$work" && npm install --silent --no-audit --no-fund git-cliff >/dev/null 2>&1) || { echo "npm install git-cliff failed"; exit 1; }
CLIFF=$work/node_modules/.bin/git-cliff

repo=$work/repo
git init -q -b main "$repo"
python3 - "$N" <<'PY' | (cd "$repo" && git fast-import --quiet)
import sys
n = int(sys.argv[1]); t = 1_700_000_000
kinds = ["feat", "fix", "perf", "docs", "chore", "refactor", "fix", "feat(api)", "fix(ui)", "test"]
out = sys.stdout
def commit(i, msg, parent):
    global t
    t += 1
    out.write(f"commit refs/heads/main\nmark :{i}\ncommitter Dev <dev@example.com> {t} +0000\n")
    data = msg.encode()
    out.write(f"data {len(data)}\n{msg}\n")
    if parent: out.write(f"from :{parent}\n")
    out.write(f"M 644 inline f{i % 100}.txt\ndata {len(str(i))}\n{i}\n\n")
commit(1, "feat: initial", None)
out.write("reset refs/tags/v1.0.0\nfrom :1\n\n")
for i in range(2, n + 2):
    commit(i, f"{kinds[i % len(kinds)]}: change number {i}", i - 1)
PY
(cd "$repo" && git checkout -q main)
echo "repository: $(cd "$repo" && git rev-list --count v1.0.0..HEAD) commits since v1.0.0"

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); python3 -c "print(f'{$e-$s:.3f}')"; }
H=$(cd "$repo" && t "$HANGAR" release --dry-run)
C=$(cd "$repo" && t "$CLIFF" --bump --unreleased)
printf 'hangar release --dry-run      %s s (target < 2 s)\ngit-cliff --bump --unreleased %s s\n' "$H" "$C"
python3 -c "print(f'ratio hangar/git-cliff = {$H/$C:.2f}x ({$C/$H:.1f}x faster)')"
out=$(cd "$repo" && "$HANGAR" release --dry-run); echo "${out%%$'\n'*}"
