#!/usr/bin/env bash
# hangar's router in raw TCP mode (`protocol: tcp`) against HAProxy's `mode tcp`,
# proxying the same backend on loopback.
#   bash benches/tcp-proxy-vs-haproxy.sh [SECONDS] [ROUNDS]
#   CONNS="16 64" GIB=1 bash benches/tcp-proxy-vs-haproxy.sh
#   ROUTER=path/to/hangar-router-bench ...                 # another build (before/after)
#
# One backend (hangar-tcp-bench: an echo port and a sink port, one event loop),
# HAProxy in front of it (`mode tcp`, one thread, logging off) and the router
# in front of it (its TCP mode: one event loop, as the router process of an
# environment runs a `protocol: tcp` service). For each number of concurrent
# connections, ROUNDS interleaved router/HAProxy pairs (the order swapped every
# round, so the machine's noise hits both alike) of:
#   rate:   each client in a loop connects, writes 64 bytes, reads them back
#           and closes, for SECONDS (a database client's short session);
#   stream: GIB GiB written through, shared by the connections, to the sink,
#           which answers the byte count (a dump or a bulk load).
# Prints the medians of connections/s and CPU microseconds per connection, and
# of MiB/s and CPU milliseconds per GiB, for each, and their ratios
# (router/HAProxy: throughput >= 1.00 and CPU <= 1.00 mean the router is at
# HAProxy's level; CPU is the figure the machine's load disturbs least).
# A benchmark, never run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-3}
ROUNDS=${2:-3}
CONNS=${CONNS:-"16 64"}
GIB=${GIB:-1}

need() { command -v "$1" >/dev/null || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
export PATH="$PATH:/usr/sbin"
need haproxy haproxy
cargo build --release -q -p hangar-router --bin hangar-router-bench --bin hangar-tcp-bench
BENCH=./target/release/hangar-tcp-bench
ROUTER=${ROUTER:-./target/release/hangar-router-bench}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
ECHO=$(port); SINK=$(port); HAP_E=$(port); HAP_S=$(port); HGR_E=$(port); HGR_S=$(port)

"$BENCH" backend "127.0.0.1:$ECHO" "127.0.0.1:$SINK" & pids+=($!)

# In the foreground (-db), so that HAProxy stays in this script's session and
# gets the same CPU share as the router (see benches/router-vs-nginx.sh).
cat > "$work/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend echo
  bind 127.0.0.1:$HAP_E
  default_backend echo
backend echo
  server b1 127.0.0.1:$ECHO
frontend sink
  bind 127.0.0.1:$HAP_S
  default_backend sink
backend sink
  server b1 127.0.0.1:$SINK
CFG
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & pids+=($!)
HAP_PID=$!

# The router's TCP mode, once per backend port (one process each: the CPU of
# both is counted).
"$ROUTER" "127.0.0.1:$HGR_E" "127.0.0.1:$ECHO" tcp >/dev/null 2>&1 & pids+=($!)
HGR_E_PID=$!
"$ROUTER" "127.0.0.1:$HGR_S" "127.0.0.1:$SINK" tcp >/dev/null 2>&1 & pids+=($!)
HGR_S_PID=$!

for p in "$HAP_E" "$HGR_E"; do
  for _ in $(seq 10); do
    "$BENCH" rate "127.0.0.1:$p" 1 1 2>/dev/null | grep -q "^RESULT [1-9]" && continue 2
    sleep 0.1
  done
  echo "no answer from the proxy on 127.0.0.1:$p" >&2
  exit 1
done

ticks() {
  local t=0 p task
  for p in "$@"; do
    for task in /proc/"$p"/task/*/stat; do
      t=$((t + $(awk '{print $14 + $15}' "$task" 2>/dev/null || echo 0)))
    done
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
BYTES=$((GIB * 1024 * 1024 * 1024))

# measure KIND ADDR CONNS PID... -> "amount errors micros cpu_ticks"
measure() {
  local kind=$1 addr=$2 c=$3 before out
  shift 3
  before=$(ticks "$@")
  if [ "$kind" = rate ]; then
    out=$("$BENCH" rate "$addr" "$c" "$DUR")
  else
    out=$("$BENCH" stream "$addr" "$c" "$BYTES")
  fi
  echo "$out" | awk -v cpu=$(($(ticks "$@") - before)) '/^RESULT/ { print $2, $3, $4, cpu }'
}

echo "hangar router (tcp) vs HAProxy (mode tcp), same backend, ${DUR}s rate runs, ${GIB} GiB streams, $ROUNDS interleaved pairs, medians"
printf '%-6s %-5s | %9s %9s %6s | %9s %9s %6s | %s\n' \
  kind conns "haproxy" "router" ratio "cpu hap" "cpu hgr" ratio errors
results=$work/results
for kind in rate stream; do
  for c in $CONNS; do
    : > "$results"
    for r in $(seq "$ROUNDS"); do
      if [ $((r % 2)) = 1 ]; then order="router haproxy"; else order="haproxy router"; fi
      for who in $order; do
        if [ "$who" = router ]; then
          if [ "$kind" = rate ]; then a=$HGR_E; p=$HGR_E_PID; else a=$HGR_S; p=$HGR_S_PID; fi
          echo "router $(measure "$kind" "127.0.0.1:$a" "$c" "$p")" >> "$results"
        else
          if [ "$kind" = rate ]; then a=$HAP_E; else a=$HAP_S; fi
          echo "haproxy $(measure "$kind" "127.0.0.1:$a" "$c" "$HAP_PID")" >> "$results"
        fi
      done
    done
    python3 - "$kind" "$c" "$results" "$HZ" <<'PY'
import statistics, sys
kind, conns, path, hz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = {"router": [], "haproxy": []}
for line in open(path):
    who, amount, errors, micros, ticks = line.split()
    amount, errors, micros, cpu_s = int(amount), int(errors), int(micros), int(ticks) / hz
    if kind == "rate":
        # connections/s, CPU microseconds per connection
        runs[who].append((amount / (micros / 1e6), cpu_s * 1e6 / max(amount, 1), errors))
    else:
        # MiB/s, CPU milliseconds per GiB
        gib = amount / 2**30
        runs[who].append((amount / 2**20 / (micros / 1e6), cpu_s * 1e3 / gib if gib else float("inf"), errors))
med = lambda who, i: statistics.median(r[i] for r in runs[who])
errs = lambda who: sum(r[2] for r in runs[who])
h, r = med("haproxy", 0), med("router", 0)
hc, rc = med("haproxy", 1), med("router", 1)
print(f"{kind:<6} {conns:<5} | {h:>9.0f} {r:>9.0f} {r / h:>5.2f}x | {hc:>9.1f} {rc:>9.1f} {rc / hc:>5.2f}x | {errs('haproxy')}/{errs('router')}")
PY
  done
done
echo "rate: connections/s (connect, 64 bytes each way, close) and CPU us per connection"
echo "stream: MiB/s through and CPU ms per GiB; ratio router/haproxy; errors: haproxy/router"
