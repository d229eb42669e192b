#!/usr/bin/env bash
# Two lakehouse binaries alternated on the same seeded data, so that a
# change is measured as a ratio within one run on this shared machine:
#
#   loadtest/ab.sh OLD_BINARY NEW_BINARY
#
# Seeds WORKERS (100k) workers once with NEW into $OUT/ab-seeded (kept for
# later calls; delete it to reseed), then runs the multi-tier mix (50
# clients, DURATION seconds, the result cache on as served) in the order
# given by AB_ORDER: each run from a fresh copy of the seeded dir (so every
# run starts with an empty playbook), from /var/tmp (no config/ in the
# working directory), and prints one line per run and a summary. A run
# named semantic sets matrix.default_mode = "semantic".
set -euo pipefail
cd "$(dirname "$0")/.."
OLD="$(realpath "$1")"; NEW="$(realpath "$2")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/lakehouse-target}"
OUT="${OUT:-/var/tmp/lakehouse-bench}"
PORT="${PORT:-3198}"
WORKERS="${WORKERS:-100000}"
DURATION="${DURATION:-60}"
AB_ORDER="${AB_ORDER:-old:hybrid new:hybrid new:semantic old:semantic old:hybrid new:hybrid}"
LOADTEST="${LOADTEST:-$CARGO_TARGET_DIR/release/loadtest}"
TARGET="http://127.0.0.1:$PORT"
mkdir -p "$OUT/ab"
SEEDED="$OUT/ab-seeded"
RUN_DIR="$OUT/ab-run"

SERVER=""
start() { # binary dir [env...]
  local binary="$1" dir="$2"; shift 2
  if curl -s -o /dev/null "$TARGET/health"; then
    echo "something already serves $TARGET: stop it first" >&2; exit 1
  fi
  (cd /var/tmp && exec env "$@" LAKEHOUSE__LOG__LEVEL=warn LAKEHOUSE__SERVER__REQUEST_TIMEOUT_MS=60000 \
    "$binary" serve --data-dir "$dir" --port "$PORT" > "$OUT/ab/server.log" 2>&1) &
  SERVER=$!
  for _ in $(seq 1 1200); do
    curl -sf "$TARGET/ready" > /dev/null && return 0
    sleep 0.1
  done
  echo "server did not become ready" >&2; exit 1
}
stop() { [ -n "$SERVER" ] && kill "$SERVER" && wait "$SERVER" || true; SERVER=""; }
trap stop EXIT

if [ ! -d "$SEEDED" ]; then
  start "$NEW" "$SEEDED"
  "$NEW" seed --workers "$WORKERS" --target "$TARGET" | tee "$OUT/ab/seed.txt"
  stop
fi

n=0
for run in $AB_ORDER; do
  n=$((n + 1))
  which="${run%%:*}"; mode="${run##*:}"
  binary="$OLD"; [ "$which" = new ] && binary="$NEW"
  rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR"; cp -a "$SEEDED/." "$RUN_DIR/"
  started=$(date +%s.%N)
  start "$binary" "$RUN_DIR" LAKEHOUSE__MATRIX__DEFAULT_MODE="$mode"
  ready=$(python3 -c "import time; print(round(time.time() - $started, 2))")
  name="$n-$which-$mode"
  "$LOADTEST" --target "$TARGET" --clients 50 --duration "$DURATION" --json "$OUT/ab/$name.json" \
    > "$OUT/ab/$name.txt" 2>&1
  stop
  python3 - "$OUT/ab/$name.json" "$name" "$ready" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<16} ready {sys.argv[3]:>6} s  {d['scenarios_per_second']:8.1f} scen/s  "
      f"fail {d['total_failures']}  search p50/p99 {d['search']['p50_ms']:.1f}/{d['search']['p99_ms']:.1f} ms  "
      f"record p50/p99 {d['record']['p50_ms']:.1f}/{d['record']['p99_ms']:.1f} ms  "
      f"RSS max/mean {d['server_rss_mb_max']:.0f}/{d['server_rss_mb_mean']:.0f} MB")
PY
done | tee "$OUT/ab/summary.txt"
rm -rf "$RUN_DIR"
echo "reports in $OUT/ab" >&2
