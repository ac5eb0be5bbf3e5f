#!/usr/bin/env bash
# Secret-detection accuracy, side by side in one run: hangar, kingfisher
# (PyPI kingfisher-bin, --no-validate) and detect-secrets (PyPI), on
#   1. hangar's own labelled corpus (crates/secrets/tests/corpus): recall and precision per line;
#   2. the external leaky-repo corpus (../shared/conformance/secrets/leaky-repo): per-file recall.
# Usage: benches/secrets-accuracy.sh   (peers are installed into a temporary virtualenv)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${HANGAR_SHARED:-$(cd .. && pwd)/shared}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q kingfisher-bin detect-secrets
KF="$WORK/venv/bin/kingfisher"
DS="$WORK/venv/bin/detect-secrets"
cargo build -q --release -p hangar
cargo build -q --release -p hangar-secrets --example gen_corpus
HANGAR=target/release/hangar

target/release/examples/gen_corpus "$WORK/corpus" --files 600

score() { # NAME ROOT: runs the three tools on ROOT, reports in $WORK/NAME.*
  local name=$1 root=$2
  "$HANGAR" scan secrets "$root" --format json --no-redact -o "$WORK/$name.hangar.json" 2>/dev/null || true
  "$KF" scan "$root" --no-validate --no-dedup --format json -o "$WORK/$name.kf.json" >/dev/null 2>&1 || true
  (cd "$root" && "$DS" scan --all-files . > "$WORK/$name.ds.json") || true
}

score labelled "$WORK/corpus"
python3 benches/secrets_score.py labelled "$WORK/corpus.labels.json" "$WORK/corpus" \
  hangar="$WORK/labelled.hangar.json" kingfisher="$WORK/labelled.kf.json" detect-secrets="$WORK/labelled.ds.json"

LEAKY="$SHARED/conformance/secrets/leaky-repo"
cp -r "$LEAKY/files" "$WORK/leaky"
score leaky "$WORK/leaky"
python3 benches/secrets_score.py leaky "$LEAKY/secrets.csv" "$WORK/leaky" \
  hangar="$WORK/leaky.hangar.json" kingfisher="$WORK/leaky.kf.json" detect-secrets="$WORK/leaky.ds.json"
