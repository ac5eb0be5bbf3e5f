#!/usr/bin/env bash
# hangar's router against nginx, reverse-proxying the same backend on loopback.
#   bash benches/router-vs-nginx.sh [SECONDS] [ROUNDS]
#   CONNS="16 64 256" bash benches/router-vs-nginx.sh     # the concurrencies measured
#   MODES="keepalive" ...                                  # keepalive, close or both
#   ROUTER=path/to/hangar-router-bench ...                 # another build (before/after)
#
# One backend (hangar's test service: hyper, one thread), nginx in front of it
# (2 workers, upstream keep-alive, access log off) and the router in front of it
# (2 threads, as the router process of an environment runs it). For each number
# of connections, with keep-alive and with `Connection: close` (a new client
# connection per request), wrk runs ROUNDS router/nginx pairs of SECONDS each,
# the order swapped every round so that the machine's noise hits both alike.
# Prints the median requests/s, p99 and CPU time per request of each, and their
# ratios (router/nginx: throughput >= 1.00 and p99 <= 1.00 mean the router is at
# nginx's level; CPU per request is the figure the machine's load disturbs least).
# Bounded: 6 configurations x (2 x ROUNDS + 1) runs of SECONDS (about 2.5 minutes
# with the defaults). A benchmark, never run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-3}
ROUNDS=${2:-3}
CONNS=${CONNS:-"16 64 256"}
MODES=${MODES:-"keepalive close"}

need() { command -v "$1" >/dev/null || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx
export PATH="$PATH:/usr/sbin"
cargo build --release -q -p hangar-deploy --bin hangar-testsvc -p hangar-router --bin hangar-router-bench
ROUTER=${ROUTER:-./target/release/hangar-router-bench}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BACK=$(port); NGX=$(port); HGR=$(port)

PORT=$BACK TESTSVC_VERSION=bench ./target/release/hangar-testsvc >/dev/null 2>&1 & pids+=($!)
BACK_PID=$!

# What the router does per request, nginx does too: HTTP/1.1 keep-alive to the
# upstream, hop-by-hop headers dropped, X-Forwarded-For appended.
# In the foreground, so that nginx stays in this script's session: with the
# kernel's autogroup scheduling, a daemonised nginx gets a CPU share of its own
# on a loaded machine while the router shares one with wrk and the backend.
cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:$BACK; keepalive 512; }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
NGINX_PID=$!

"$ROUTER" "127.0.0.1:$HGR" "127.0.0.1:$BACK" >/dev/null 2>&1 & pids+=($!)
ROUTER_PID=$!

# Both answer with the backend's body before anything is measured.
for addr in "127.0.0.1:$NGX" "127.0.0.1:$HGR"; do
  for _ in $(seq 50); do
    [ "$(curl -s "http://$addr/" 2>/dev/null)" = bench ] && continue 2
    sleep 0.1
  done
  echo "no answer from the proxy on $addr" >&2
  exit 1
done

# wrk's own figures, exact: requests, microseconds, p99 in microseconds, errors
# (socket errors and non-2xx/3xx answers: a proxy that fails fast must not look fast).
cat > "$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(99), e.connect + e.read + e.write + e.timeout + e.status))
end
LUA

# CPU time (user + system, clock ticks) of the given processes, all their threads:
# the proxy's cost per request, which the machine's load disturbs far less than
# its throughput.
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

# run ADDR CONNS MODE [PID...] -> "rps p99_us errors cpu_us_per_request"
run() {
  local addr=$1 c=$2 mode=$3 extra=() before out
  shift 3
  [ "$mode" = close ] && extra=(-H 'Connection: close')
  before=$(ticks "$@")
  out=$(wrk -t2 -c"$c" -d"${DUR}s" "${extra[@]}" -s "$work/report.lua" "http://$addr/")
  echo "$out" | awk -v cpu=$(($(ticks "$@") - before)) -v hz="$HZ" \
    '/^RESULT/ { printf "%.0f %d %d %.1f\n", $2 / ($3 / 1e6), $4, $5, cpu / hz * 1e6 / ($2 > 0 ? $2 : 1) }'
}

echo "hangar router vs nginx, same backend, wrk -t2, ${DUR}s per run, $ROUNDS interleaved pairs, medians"
printf '%-5s %-9s %8s %8s %8s %6s | %8s %8s %6s | %5s %5s %6s | %s\n' \
  conns mode backend nginx router ratio "p99 ngx" "p99 hgr" ratio "cpu/r" "cpu/r" ratio errors
results=$work/results
for mode in $MODES; do
  for c in $CONNS; do
    direct=$(run "127.0.0.1:$BACK" "$c" "$mode" "$BACK_PID")
    : > "$results"
    for r in $(seq "$ROUNDS"); do
      if [ $((r % 2)) = 1 ]; then order="router nginx"; else order="nginx router"; fi
      for who in $order; do
        if [ "$who" = router ]; then
          echo "router $(run "127.0.0.1:$HGR" "$c" "$mode" "$ROUTER_PID")" >> "$results"
        else
          # shellcheck disable=SC2046 # one pid per worker
          echo "nginx $(run "127.0.0.1:$NGX" "$c" "$mode" $(pgrep -P "$NGINX_PID"))" >> "$results"
        fi
      done
    done
    python3 - "$c" "$mode" "$direct" "$results" <<'PY'
import statistics, sys
conns, mode, direct, path = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
runs = {"router": [], "nginx": []}
for line in open(path):
    who, rps, p99, errors, cpu = line.split()
    runs[who].append((int(rps), int(p99), int(errors), float(cpu)))
med = lambda who, i: statistics.median(r[i] for r in runs[who])
errs = lambda who: sum(r[2] for r in runs[who])
n_rps, h_rps, n_p99, h_p99 = med("nginx", 0), med("router", 0), med("nginx", 1), med("router", 1)
n_cpu, h_cpu = med("nginx", 3), med("router", 3)
ms = lambda us: f"{us / 1000:.1f}ms"
print(f"{conns:<5} {mode:<9} {int(direct[0]):>8} {n_rps:>8.0f} {h_rps:>8.0f} {h_rps / n_rps:>5.2f}x"
      f" | {ms(n_p99):>8} {ms(h_p99):>8} {h_p99 / n_p99:>5.2f}x"
      f" | {n_cpu:>5.1f} {h_cpu:>5.1f} {h_cpu / n_cpu:>5.2f}x | {errs('nginx')}/{errs('router')}")
PY
  done
done
echo "ratio: router/nginx (throughput: higher is better; p99 and CPU: lower is better)"
echo "cpu/r: CPU microseconds (user + system, all threads) the proxy spent per request; errors: nginx/router"
