#!/usr/bin/env bash
# `hangar scan coverage` against coverage.py and diff-cover on the same
# reports: a small Python project with tests is measured by coverage.py,
# which writes Cobertura XML and lcov; hangar's total is compared with
# `coverage report`'s line total, and its added-lines figure with
# diff-cover's on a branch that adds partly tested code.
#   bash benches/coverage-vs-diff-cover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p hangar
HANGAR=$PWD/target/debug/hangar
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q coverage diff-cover >/dev/null
PY=$work/venv/bin

repo=$work/repo
mkdir -p "$repo/pkg"
cd "$repo"
git init -q -b main
git config user.name Bench; git config user.email bench@example.com
python3 - <<'GEN'
import random
random.seed(7)
for m in range(12):
    lines = []
    for f in range(25):
        lines.append(f"def f{f}(x):")
        lines.append(f"    if x > {f}:")
        lines.append(f"        return x - {f}")
        lines.append(f"    y = x * {f}")
        lines.append(f"    return y + 1")
        lines.append("")
    open(f"pkg/m{m}.py", "w").write("\n".join(lines) + "\n")
open("pkg/__init__.py", "w").write("")
tests = ["import pkg"]
for m in range(12):
    tests.append(f"import pkg.m{m}")
    for f in range(25):
        if random.random() < 0.7:
            tests.append(f"pkg.m{m}.f{f}({random.choice([0, 100])})")
open("run_tests.py", "w").write("\n".join(tests) + "\n")
GEN
git add -A; git commit -qm base
git checkout -q -b change
python3 - <<'GEN'
extra = []
for f in range(10):
    extra += [f"def g{f}(x):", f"    if x:", f"        return {f}", f"    return -{f}", ""]
open("pkg/m0.py", "a").write("\n".join(extra) + "\n")
open("run_tests.py", "a").write("\n".join(f"pkg.m0.g{f}(1)" for f in range(0, 10, 2)) + "\n")
GEN
git commit -qam change
"$PY/coverage" run --source=pkg run_tests.py
"$PY/coverage" xml -q -o coverage.xml
"$PY/coverage" lcov -q -o lcov.info
cov_total=$("$PY/coverage" report --format=total --precision=2)
dc=$("$PY/diff-cover" coverage.xml --compare-branch=main --json-report dc.json >/dev/null 2>&1; python3 -c "import json;d=json.load(open('dc.json'));print('%.2f %d %d' % (d['total_percent_covered'], d['total_num_lines'], d['total_num_violations']))")
h_xml=$("$HANGAR" scan coverage coverage.xml --base main --json | python3 -c "import json,sys;d=json.load(sys.stdin);print('%.2f %.2f %d %d' % (d['total']['percent'], d['added']['percent'], d['added']['lines'], d['added']['lines']-d['added']['covered']))")
h_lcov=$("$HANGAR" scan coverage lcov.info --base main --json | python3 -c "import json,sys;d=json.load(sys.stdin);print('%.2f %.2f %d %d' % (d['total']['percent'], d['added']['percent'], d['added']['lines'], d['added']['lines']-d['added']['covered']))")
printf '%-34s %10s %14s %12s %12s\n' "" "total %" "added %" "added lines" "uncovered"
printf '%-34s %10s %14s %12s %12s\n' "coverage.py report / diff-cover" "$cov_total" $(echo "$dc" | awk '{print $1, $2, $3}')
printf '%-34s %10s %14s %12s %12s\n' "hangar on coverage.xml" $h_xml
printf '%-34s %10s %14s %12s %12s\n' "hangar on lcov.info" $h_lcov
