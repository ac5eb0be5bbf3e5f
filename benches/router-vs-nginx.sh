#!/usr/bin/env bash
# hangar's router against nginx, reverse-proxying the same backend on loopback,
# both with upstream keep-alive, measured with wrk in one run.
#   bash benches/router-vs-nginx.sh [SECONDS] [CONNECTIONS]
# Prints requests/s of both, their ratio, and the p99 each adds over the bare
# backend at half of the maximum load. Bounded: every wrk run lasts SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONNS=${2:-64}

need() { command -v "$1" >/dev/null || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx
cargo build --release -q -p hangar-deploy --bin hangar-testsvc -p hangar-router --bin hangar-router-bench

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BACK=$(port); NGX=$(port); HGR=$(port)

# The backend: hangar's own test service (hyper, one thread), the same for both proxies.
PORT=$BACK TESTSVC_VERSION=bench ./target/release/hangar-testsvc >/dev/null 2>&1 & pids+=($!)

cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:$BACK; keepalive 256; }
  server {
    listen 127.0.0.1:$NGX;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; }
  }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work"

# hangar's router with one route to the same backend (the proxy alone, as nginx is measured).
./target/release/hangar-router-bench "127.0.0.1:$HGR" "127.0.0.1:$BACK" >/dev/null 2>&1 & pids+=($!)
sleep 1

rps() { wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "http://$1/" | awk '/Requests\/sec/ {print $2}'; }

echo "max throughput, $CONNS connections, ${DUR}s each"
B=$(rps "127.0.0.1:$BACK"); N=$(rps "127.0.0.1:$NGX"); H=$(rps "127.0.0.1:$HGR")
printf '  backend direct %10.0f req/s\n  nginx          %10.0f req/s\n  hangar router  %10.0f req/s\n' "$B" "$N" "$H"
python3 - "$N" "$H" <<'PY'
import sys; n, h = map(float, sys.argv[1:]); print(f"  ratio hangar/nginx = {h/n:.2f}x (target >= 0.90)")
PY
# p99 at about half of the maximum load: plain wrk is closed-loop (no fixed rate), so half the
# connections offer roughly half the load.
half=$((CONNS / 2)); [ "$half" -lt 1 ] && half=1
lat() { wrk -t2 -c"$half" -d"${DUR}s" --latency "http://$1/" | awk '/ 99%/ {print $2}'; }
echo "p99 latency at half load ($half connections)"
echo "  backend direct $(lat "127.0.0.1:$BACK")"
echo "  nginx          $(lat "127.0.0.1:$NGX")"
echo "  hangar router  $(lat "127.0.0.1:$HGR")"
