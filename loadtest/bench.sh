#!/usr/bin/env bash
# Reproduces the figures in docs/benchmarks.md on this machine: release
# builds, a server on loopback with a fresh data dir per part, bounded runs.
#   loadtest/bench.sh [vectors|staffing|soak|durability|crasher|abuse|contract|all]
# (all = vectors and staffing; soak takes 35 minutes; lifecycle: facets,
# patches, a bulk update, snapshots and a restore of a 100k data dir)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/lakehouse-target}"
if [ -z "${CXXFLAGS:-}" ] && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  export CXXFLAGS="-mavx2 -mfma -mf16c -mpopcnt"
fi
OUT="${OUT:-/var/tmp/lakehouse-bench}"
PORT="${PORT:-3199}"
WORKERS="${WORKERS:-100000}"
DURATION="${DURATION:-60}"
TARGET="http://127.0.0.1:$PORT"
BIN="$CARGO_TARGET_DIR/release"
mkdir -p "$OUT"

# SKIP_BUILD=1: measure the release binaries already built.
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked -p lakehouse -p lakehouse-loadtest >&2

SERVER=""
start_server() {
  [ "${2:-}" = keep ] || rm -rf "$1"
  env ${EXTRA_ENV:-} LAKEHOUSE__FAULTS__ENABLED=true LAKEHOUSE__LOG__LEVEL=warn LAKEHOUSE__SERVER__REQUEST_TIMEOUT_MS=60000 \
    "$BIN/lakehouse" serve --data-dir "$1" --port "$PORT" > "$OUT/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 600); do
    curl -sf "$TARGET/ready" > /dev/null && return 0
    sleep 0.1
  done
  echo "server did not become ready" >&2; exit 1
}
stop_server() { [ -n "$SERVER" ] && kill "$SERVER" && wait "$SERVER" || true; SERVER=""; }
trap stop_server EXIT

# numpy and faiss-cpu for the corpus and the in-process ceiling, in a venv
# of their own (installed once).
VENV="${BENCH_VENV:-/var/tmp/lakehouse-bench-venv}"
python() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import numpy, faiss" 2> /dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet numpy faiss-cpu >&2
  fi
  "$VENV/bin/python" "$@"
}
# Our faiss is built for AVX2 (CXXFLAGS above); faiss-cpu would pick
# AVX-512 where the CPU has it. The ceiling runs at the same level as ours.
export FAISS_SIMD_LEVEL="${FAISS_SIMD_LEVEL:-AVX2}"

part="${1:-all}"
if [ "$part" = vectors ] || [ "$part" = all ]; then
  [ -f "$OUT/vectors/base.npy" ] || python loadtest/dataset.py --out "$OUT/vectors"
  # The result cache is off: the benchmark's queries repeat, and faiss has
  # no cache. Load with 4 clients of 1,000-item requests, recall, 1 and 50
  # clients, the sweep, restarts.
  EXTRA_ENV="LAKEHOUSE__VECTORS__RESULT_CACHE_ENTRIES=0" start_server "$OUT/data-vectors"
  "$BIN/vector_bench" --target "$TARGET" --dataset "$OUT/vectors" --data-dir "$OUT/data-vectors" \
    --clients 50 --seconds 15 --sweep 1,10,50,100 --json "$OUT/vectors.json"
  stop_server
  # The load as a Python script does it: one client, 500-item JSON batches.
  start_server "$OUT/data-vectors"
  "$BIN/vector_bench" --target "$TARGET" --dataset "$OUT/vectors" --batch 500 --load-clients 1 \
    --load-only --json "$OUT/vectors-load-1.json"
  stop_server
  # fp16 storage (vectors.storage = "fp16", faiss SQfp16): the same load,
  # recall and searches, for its memory and recall against f32's.
  EXTRA_ENV="LAKEHOUSE__VECTORS__RESULT_CACHE_ENTRIES=0 LAKEHOUSE__VECTORS__STORAGE=fp16" \
    start_server "$OUT/data-vectors-fp16"
  "$BIN/vector_bench" --target "$TARGET" --dataset "$OUT/vectors" --clients 50 --seconds 15 \
    --json "$OUT/vectors-fp16.json"
  stop_server
  rm -rf "$OUT/data-vectors-fp16"
  python loadtest/faiss_ceiling.py --dataset "$OUT/vectors" --clients 50 --seconds 15 --json "$OUT/faiss.json"
fi
if [ "$part" = staffing ] || [ "$part" = all ]; then
  start_server "$OUT/data-staffing"
  "$BIN/lakehouse" seed --workers "$WORKERS" --target "$TARGET" | tee "$OUT/seed.txt"
  "$BIN/loadtest" --target "$TARGET" --only search_only --clients 1 --duration 15 --warmup 2 --json "$OUT/search-1.json"
  "$BIN/loadtest" --target "$TARGET" --only search_only --clients 50 --duration 15 --warmup 2 --json "$OUT/search-50.json"
  "$BIN/loadtest" --target "$TARGET" --only record_only --clients 50 --duration 15 --warmup 2 --json "$OUT/record-50.json"
  "$BIN/loadtest" --target "$TARGET" --clients 50 --duration "$DURATION" --json "$OUT/mix-plain.json"
  "$BIN/loadtest" --target "$TARGET" --clients 50 --duration "$DURATION" --chaos-every 5 --json "$OUT/mix-chaos.json"
  stop_server
  # Hybrid matrix searches against semantic ones at 50 clients, the result
  # cache off (the queries repeat), the same data dir restarted per mode.
  for mode in hybrid semantic; do
    EXTRA_ENV="LAKEHOUSE__VECTORS__RESULT_CACHE_ENTRIES=0 LAKEHOUSE__MATRIX__DEFAULT_MODE=$mode" \
      start_server "$OUT/data-staffing" keep
    "$BIN/loadtest" --target "$TARGET" --only search_only --clients 50 --duration 15 --warmup 2 \
      --json "$OUT/search-50-$mode-nocache.json"
    stop_server
  done
fi
if [ "$part" = soak ]; then
  # The mix at 100k for SOAK_SECONDS (30 min) on a fresh data dir, a
  # timeline point every 10 s, then 2 minutes of searches only (writes
  # stopped); the plot goes to $OUT/soak.svg.
  start_server "$OUT/data-soak"
  "$BIN/lakehouse" seed --workers "$WORKERS" --target "$TARGET" | tee "$OUT/soak-seed.txt"
  "$BIN/loadtest" --target "$TARGET" --clients 50 --duration "${SOAK_SECONDS:-1800}" --warmup 0 \
    --sample-every 10 --then-quiet 120 --json "$OUT/soak.json" --svg "$OUT/soak.svg"
  du -sh "$OUT/data-soak/vectors/playbook_memory.lance" | tee "$OUT/soak-disk.txt"
  stop_server
fi
if [ "$part" = durability ]; then
  # The cost of data.durability = "fsync": the same seed and record load on
  # a fresh data dir in each mode.
  for mode in process fsync; do
    EXTRA_ENV="LAKEHOUSE__DATA__DURABILITY=$mode" start_server "$OUT/data-durability-$mode"
    "$BIN/lakehouse" seed --workers "$WORKERS" --target "$TARGET" | tee "$OUT/seed-$mode.txt"
    "$BIN/loadtest" --target "$TARGET" --only record_only --clients 50 --duration 15 --warmup 2 --json "$OUT/record-50-$mode.json"
    "$BIN/loadtest" --target "$TARGET" --only record_only --clients 1 --duration 15 --warmup 2 --json "$OUT/record-1-$mode.json"
    stop_server
  done
fi
if [ "$part" = crasher ]; then
  # kill -9 under concurrent writers, 20 times, in each durability mode.
  for mode in process fsync; do
    rm -rf "$OUT/crasher-$mode"
    "$BIN/loadtest" crasher --binary "$BIN/lakehouse" --kills "${KILLS:-20}" --durability "$mode" \
      --data-dir "$OUT/crasher-$mode" --json "$OUT/crasher-$mode.json" | tee "$OUT/crasher-$mode.txt"
    rm -rf "$OUT/crasher-$mode"
  done
fi
if [ "$part" = abuse ]; then
  # Hostile inputs beside a normal load, on a server with one token per
  # role: first the issue's bypass requests (no token, one letter
  # encoded; a read token recording), then `loadtest abuse`: a quiet phase
  # and one phase per hostile kind, ABUSE_SECONDS (30) each.
  TOKENS="$OUT/abuse-tokens"; mkdir -p "$TOKENS"; : > "$TOKENS/tokens.toml"
  for role in read write admin; do
    "$BIN/lakehouse" token new --name "bench-$role" --role "$role" 2> "$TOKENS/$role.txt" > "$TOKENS/$role.token"
    printf '[[tokens]]\n%s\n\n' "$(grep 'sha256 =' "$TOKENS/$role.txt" | sed 's/^ *{ *//; s/ *} *$//; s/, /\n/g')" >> "$TOKENS/tokens.toml"
  done
  READ="$(cat "$TOKENS/read.token")"; ADMIN="$(cat "$TOKENS/admin.token")"
  EXTRA_ENV="LAKEHOUSE__AUTH__TOKENS_FILE=$TOKENS/tokens.toml" start_server "$OUT/data-abuse"
  "$BIN/lakehouse" seed --workers "$WORKERS" --target "$TARGET" --token "$ADMIN" | tee "$OUT/abuse-seed.txt"
  {
    for request in "GET /v1/wh%6Fami" "POST /v1/%73ql" "DELETE /v1/vector%73/index/probe" "POST /mc%70"; do
      set -- $request
      printf '%s %s (no token): %s\n' "$1" "$2" "$(curl -s -o /dev/null -w '%{http_code}' -X "$1" \
        -H 'content-type: application/json' -d '{"sql":"SELECT 1"}' "$TARGET$2")"
    done
    printf 'POST /v1/matrix/playbooks/recor%%64 (read token): %s\n' "$(curl -s -o /dev/null -w '%{http_code}' \
      -H "authorization: Bearer $READ" -H 'content-type: application/json' \
      -d '{"query":"x","role":"Welder","worker_ids":["W0000001"],"score":1}' "$TARGET/v1/matrix/playbooks/recor%64")"
    python3 -c 'import json; print(json.dumps({"sql": "SELECT " + "+".join(["1"] * 200000)}))' > "$OUT/abuse-200k.json"
    printf 'SELECT 1+1+... (200,000 terms): %s\n' "$(curl -s -w ' %{http_code}' -H "authorization: Bearer $READ" \
      -H 'content-type: application/json' --data @"$OUT/abuse-200k.json" "$TARGET/v1/sql")"
    printf 'then /health: %s\n' "$(curl -s -w ' %{http_code}' "$TARGET/health")"
  } | tee "$OUT/abuse-bypass.txt"
  LAKEHOUSE_TOKEN="$ADMIN" "$BIN/loadtest" abuse --target "$TARGET" --duration "${ABUSE_SECONDS:-30}" \
    --normal-clients 8 --hostile-clients 8 --json "$OUT/abuse.json" | tee "$OUT/abuse.txt"
  stop_server
fi
if [ "$part" = lifecycle ]; then
  SNAPSHOTS="$OUT/snapshots-lifecycle"
  rm -rf "$SNAPSHOTS" "$OUT/data-restored"
  EXTRA_ENV="LAKEHOUSE__VECTORS__RESULT_CACHE_ENTRIES=0 LAKEHOUSE__SNAPSHOTS__DIR=$SNAPSHOTS" \
    start_server "$OUT/data-lifecycle"
  "$BIN/lakehouse" seed --workers "$WORKERS" --target "$TARGET" | tee "$OUT/lifecycle-seed.txt"
  python3 loadtest/lifecycle.py live --target "$TARGET" --out "$OUT/lifecycle.json"
  stop_server
  du -sb "$OUT/data-lifecycle" "$SNAPSHOTS" | tee "$OUT/lifecycle-sizes.txt"
  id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["restore_id"])' "$OUT/lifecycle.json")"
  /usr/bin/time -f "restore: %e s, %M KB max RSS" "$BIN/lakehouse" restore --from "$SNAPSHOTS" \
    --snapshot "$id" --data-dir "$OUT/data-restored" 2>&1 | tee "$OUT/lifecycle-restore.txt"
  started=$(date +%s.%N)
  EXTRA_ENV="LAKEHOUSE__VECTORS__RESULT_CACHE_ENTRIES=0 LAKEHOUSE__SNAPSHOTS__DIR=$SNAPSHOTS" \
    start_server "$OUT/data-restored" keep
  echo "restored service ready in $(python3 -c "import time; print(round(time.time() - $started, 1))") s" \
    | tee -a "$OUT/lifecycle-restore.txt"
  python3 loadtest/lifecycle.py compare --target "$TARGET" --out "$OUT/lifecycle.json"
  stop_server
fi
if [ "$part" = contract ]; then
  # The contract fuzzed longer than `./run test` does: a new random seed
  # (or CONTRACT_SEED), CONTRACT_EXAMPLES (100) examples per operation,
  # every default check. The seed is the first line of the report.
  seed="${CONTRACT_SEED:-$(python3 -c 'import random; print(random.randrange(1, 2**31))')}"
  echo "seed $seed, ${CONTRACT_EXAMPLES:-100} examples per operation" | tee "$OUT/contract.txt"
  SCHEMATHESIS_SEED="$seed" SCHEMATHESIS_EXAMPLES="${CONTRACT_EXAMPLES:-100}" \
    tests/contract/schemathesis.sh "$BIN/lakehouse" 2>&1 | tee -a "$OUT/contract.txt"
fi
echo "results in $OUT" >&2
