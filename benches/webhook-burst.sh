#!/usr/bin/env bash
# Requests per second of `hangar serve` for a burst of signed push webhooks on
# loopback, all for one commit of a repository with many workflows: what
# reading each commit's workflows once (the server's workflow cache) is worth.
#
#   benches/webhook-burst.sh [HANGAR_BIN ...]
#
# Each binary given is measured in turn (e.g. one built before a change and
# one after), default target/release/hangar or target/debug/hangar. Knobs:
# WORKFLOWS (files in .github/workflows, default 30), BURST (webhooks, 300),
# CONCURRENCY (clients, 8). No agent runs: the figure is the webhook path
# (signature, payload, workflows read and matched, runs recorded).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKFLOWS=${WORKFLOWS:-30}
BURST=${BURST:-300}
CONCURRENCY=${CONCURRENCY:-8}
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  for b in target/release/hangar target/debug/hangar; do
    [ -x "$b" ] && { bins=("$b"); break; }
  done
fi
[ ${#bins[@]} -gt 0 ] || { echo "build hangar first (cargo build -p hangar)" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
repo="$work/repo"
git init -q -b main "$repo"
mkdir -p "$repo/.github/workflows"
for i in $(seq 1 "$WORKFLOWS"); do
  cat > "$repo/.github/workflows/w$i.yml" <<YML
name: W$i
on:
  push:
    branches: [main]
    paths: ['src/$i/**']
jobs:
  build:
    runs-on: ubuntu-latest
    strategy: {matrix: {os: [a, b, c]}}
    steps:
      - uses: actions/checkout@v4
      - run: echo building \${{ matrix.os }}
      - run: echo testing
YML
done
git -C "$repo" add -A
git -C "$repo" -c user.name=b -c user.email=b@example.com commit -q -m workflows
sha=$(git -C "$repo" rev-parse HEAD)

for bin in "${bins[@]}"; do
  data="$work/data-$RANDOM"
  mkdir -p "$data"
  (cd "$data" && "$bin" serve --listen 127.0.0.1:0 --data "$data" --agent-capacity 0 \
    > "$data/out.log" 2>/dev/null) &
  for _ in $(seq 1 200); do
    grep -q "listening on" "$data/out.log" 2>/dev/null && break
    sleep 0.1
  done
  python3 - "$data/out.log" "$repo" "$sha" "$BURST" "$CONCURRENCY" "$bin" <<'PY'
import hashlib, hmac, json, re, sys, time, threading, urllib.request
log, repo, sha, burst, conc, binary = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
text = open(log).read()
url = re.search(r"listening on (\S+)", text).group(1).replace("/ui/", "")
token = re.search(r"admin token \(shown once; keep it\): (\S+)", text).group(1)
secret = "bench-webhook-secret-0123456789"
def call(path, body, headers):
    req = urllib.request.Request(url + path, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req) as r:
        return r.status
call("/api/v1/repos", json.dumps({"name": "bench/app", "clone_url": repo, "forge": "github",
     "webhook_secret": secret}).encode(), {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
def hook(i):
    body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha,
        "repository": {"full_name": "bench/app", "clone_url": repo}, "pusher": {"name": "bench"},
        "head_commit": {"id": sha, "message": f"delivery {i}"},
        "commits": [{"added": [], "modified": ["README"], "removed": []}]}).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return call("/hooks/github", body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": f"bench-{i}",
        "X-Hub-Signature-256": sig, "Content-Type": "application/json"})
hook(-1)  # warm: the repository's first read
statuses, lock, next_i = [], threading.Lock(), [0]
def worker():
    while True:
        with lock:
            i = next_i[0]; next_i[0] += 1
        if i >= burst:
            return
        s = hook(i)
        with lock:
            statuses.append(s)
start = time.monotonic()
threads = [threading.Thread(target=worker) for _ in range(conc)]
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.monotonic() - start
ok = sum(1 for s in statuses if s < 300)
print(f"{binary}: {burst} webhooks ({ok} accepted) in {elapsed:.2f} s: {burst / elapsed:.1f} requests/s")
PY
  kill %% 2>/dev/null || true
  wait 2>/dev/null || true
done
