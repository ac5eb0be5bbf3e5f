#!/usr/bin/env bash
# Webhook-to-first-step latency, p50 and p99: signed push webhooks at a fixed
# rate, each one job whose first step writes the time it started; the
# latency is that time minus the moment the webhook was sent (one clock: all
# on this machine). Three setups in one run, the same workload each:
#   sqlite  one `hangar serve` on SQLite (the baseline)
#   pg-1    one `hangar serve` on PostgreSQL
#   pg-3    three `hangar serve` on one PostgreSQL database, webhooks and
#           agents spread round-robin over them (as a load balancer would)
# with AGENTS `hangar agent` processes (servers run no embedded agent).
# PostgreSQL is a throwaway local cluster (Debian's `postgresql`, default
# durability settings); without it the PostgreSQL setups are skipped loudly.
#
#   benches/webhook-latency.sh [HANGAR_BIN]
#
# Knobs: RATE (webhooks per second, default 4), COUNT (webhooks per setup,
# 120), AGENTS (4, capacity 2 each). Loopback only; bounded by COUNT/RATE
# plus a minute per setup.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-4}
COUNT=${COUNT:-120}
AGENTS=${AGENTS:-4}
bin=${1:-}
if [ -z "$bin" ]; then
  for b in target/release/hangar target/debug/hangar; do
    [ -x "$b" ] && { bin=$b; break; }
  done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "build hangar first (cargo build -p hangar)" >&2; exit 1; }
bin=$(realpath "$bin")

work=$(mktemp -d)
chmod 755 "$work"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
runas=()
[ "$(id -u)" = 0 ] && runas=(runuser -u postgres --)
pgport=""
cleanup() {
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$pgport" ]; then
    "${runas[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ]; then
  mkdir -p "$work/pg"
  [ ${#runas[@]} -gt 0 ] && chown postgres "$work/pg"
  "${runas[@]}" "$pgbin/initdb" --auth=trust --username=hangar -D "$work/pg/data" >/dev/null
  pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${runas[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
    -o "-p $pgport -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
else
  echo "!!! SKIPPED: PostgreSQL's initdb not found: only the SQLite setup runs !!!" >&2
fi

repo="$work/repo"
ledger="$work/ledger"
: > "$ledger"
chmod 666 "$ledger"
git init -q -b main "$repo"
mkdir -p "$repo/.github/workflows"
cat > "$repo/.github/workflows/ci.yml" <<YML
on: push
jobs:
  first:
    runs-on: self-hosted
    steps:
      - run: echo "\$GITHUB_RUN_ID \$(date +%s.%N)" >> '$ledger'
YML
git -C "$repo" add -A
git -C "$repo" -c user.name=b -c user.email=b@example.com commit -q -m workflow
sha=$(git -C "$repo" rev-parse HEAD)

# start_server NAME DATA [DATABASE_URL]: prints the server's log path.
start_server() {
  local data=$2 url=${3:-}
  mkdir -p "$data"
  if [ -n "$url" ]; then
    (cd "$data" && HANGAR_DATABASE_URL=$url exec "$bin" serve --listen 127.0.0.1:0 --data "$data" \
      --agent-capacity 0 --sandbox none > "$data/out.log" 2> "$data/err.log") &
  else
    (cd "$data" && exec "$bin" serve --listen 127.0.0.1:0 --data "$data" \
      --agent-capacity 0 --sandbox none > "$data/out.log" 2> "$data/err.log") &
  fi
  for _ in $(seq 1 300); do
    grep -q "listening on" "$data/out.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server $1 did not start: $(cat "$data/err.log")" >&2
  exit 1
}

# setup NAME SERVERS [DATABASE]: runs the workload and prints one JSON line.
setup() {
  local name=$1 n=$2 db=${3:-} url=""
  local dir="$work/$name"
  mkdir -p "$dir"
  # Run ids start at 1 in each store: one setup's lines at a time.
  : > "$ledger"
  if [ -n "$db" ]; then
    "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U hangar "$db"
    url="postgres://hangar@127.0.0.1:$pgport/$db"
  fi
  start_server "$name-0" "$dir/s0" "$url"
  for i in $(seq 1 $((n - 1))); do
    mkdir -p "$dir/s$i"
    cp "$dir/s0/secret.key" "$dir/s0/lease.key" "$dir/s$i/"
    start_server "$name-$i" "$dir/s$i" "$url"
  done
  local urls=() token
  for i in $(seq 0 $((n - 1))); do
    urls+=("$(sed -n 's|.*listening on \(http://[^ ]*\)/ui/.*|\1|p' "$dir/s$i/out.log" | head -1)")
  done
  token=$(sed -n 's/.*admin token (shown once; keep it): \(\S*\).*/\1/p' "$dir/s0/out.log" | head -1)
  for a in $(seq 0 $((AGENTS - 1))); do
    mkdir -p "$dir/a$a"
    (cd "$dir/a$a" && exec "$bin" agent --server "${urls[$((a % n))]}" --token "$token" \
      --name "$name-agent-$a" --capacity 2 --sandbox none --work-dir "$dir/a$a/work" \
      > /dev/null 2> "$dir/a$a/err.log") &
  done
  python3 - "$name" "$repo" "$sha" "$ledger" "$token" "$RATE" "$COUNT" "$AGENTS" "${urls[@]}" <<'PY'
import hashlib, hmac, json, sys, threading, time, urllib.request
name, repo, sha, ledger, token = sys.argv[1:6]
rate, count, agents = float(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
urls = sys.argv[9:]
secret = "bench-webhook-secret-0123456789"
def call(url, path, body, headers):
    req = urllib.request.Request(url + path, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read() or b"null")
def get(url, path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())
call(urls[0], "/api/v1/repos", json.dumps({"name": "bench/app", "clone_url": repo,
     "forge": "github", "webhook_secret": secret}).encode(),
     {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
deadline = time.time() + 60
while len(get(urls[0], "/api/v1/agents")) < agents:
    if time.time() > deadline:
        sys.exit(f"{name}: the agents did not all register")
    time.sleep(0.2)
def hook(i):
    body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha,
        "repository": {"full_name": "bench/app", "clone_url": repo}, "pusher": {"name": "bench"},
        "head_commit": {"id": sha, "message": f"delivery {i}"},
        "commits": [{"added": [], "modified": ["README"], "removed": []}]}).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    sent = time.time()
    status, answer = call(urls[i % len(urls)], "/hooks/github", body, {"X-GitHub-Event": "push",
        "X-GitHub-Delivery": f"{name}-{i}", "X-Hub-Signature-256": sig,
        "Content-Type": "application/json"})
    return sent, answer["runs"]
# Warm: each server reads the commit's workflows once, each agent clones once.
warm = [hook(-1 - k) for k in range(len(urls))]
sent_at, lock = {}, threading.Lock()
def send(i):
    sent, runs = hook(i)
    with lock:
        for r in runs:
            sent_at[r] = sent
threads, start = [], time.time()
for i in range(count):
    # A fixed rate: the i-th webhook leaves at start + i/rate, however slow
    # the previous answers were.
    delay = start + i / rate - time.time()
    if delay > 0:
        time.sleep(delay)
    t = threading.Thread(target=send, args=(i,))
    t.start()
    threads.append(t)
for t in threads:
    t.join()
def started():
    out = {}
    for line in open(ledger):
        run, at = line.split()
        out.setdefault(int(run), float(at))
    return out
deadline = time.time() + 120
while not all(r in started() for r in sent_at):
    if time.time() > deadline:
        sys.exit(f"{name}: {sum(r not in started() for r in sent_at)} runs never started")
    time.sleep(0.2)
steps = started()
if "TRACE" in __import__("os").environ:
    for r in sorted(sent_at, key=sent_at.get):
        print(f"{name} run {r}: {(steps[r] - sent_at[r]) * 1000:.0f} ms", file=sys.stderr)
lat = sorted((steps[r] - sent_at[r]) * 1000 for r in sent_at)
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
print(json.dumps({"setup": name, "servers": len(urls), "runs": len(lat),
    "p50_ms": round(pct(50), 1), "p99_ms": round(pct(99), 1), "max_ms": round(lat[-1], 1)}))
PY
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

results="$work/results"
SETUPS=${SETUPS:-sqlite pg-1 pg-3}
for s in $SETUPS; do
  case $s in
    sqlite) setup sqlite 1 >> "$results" ;;
    pg-1) [ -n "$pgport" ] && setup pg-1 1 bench_pg1 >> "$results" ;;
    pg-3) [ -n "$pgport" ] && setup pg-3 3 bench_pg3 >> "$results" ;;
  esac
done
python3 - "$results" "$bin" "$RATE" "$COUNT" "$AGENTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{sys.argv[2]}: {sys.argv[4]} webhooks per setup at {sys.argv[3]}/s, {sys.argv[5]} agents")
base = rows[0]
print(f"{'setup':8} {'servers':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p50 x':>6} {'p99 x':>6}")
for r in rows:
    print(f"{r['setup']:8} {r['servers']:>7} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} "
          f"{r['p50_ms'] / base['p50_ms']:>6.2f} {r['p99_ms'] / base['p99_ms']:>6.2f}")
PY
