#!/usr/bin/env bash
# Alternating binaries and modes on one seeded 100k data dir: the mix, 50 clients, 30 s each.
set -u
T=/var/tmp/lakehouse-bench/abuse-tokens; DIR=/var/tmp/lakehouse-bench/data-abuse; PORT=3197
LT=/var/tmp/lakehouse-target/release/loadtest
run() { # name binary mode
  LAKEHOUSE__AUTH__TOKENS_FILE=$T/tokens.toml LAKEHOUSE__LOG__LEVEL=warn LAKEHOUSE__MATRIX__DEFAULT_MODE=$3 \
    LAKEHOUSE__SERVER__REQUEST_TIMEOUT_MS=60000 "$2" serve --data-dir $DIR --port $PORT > /var/tmp/mixrss-server.log 2>&1 &
  local pid=$!
  for i in $(seq 1 600); do curl -sf localhost:$PORT/ready >/dev/null && break; sleep 0.2; done
  LAKEHOUSE_TOKEN="$(cat $T/admin.token)" $LT --target http://127.0.0.1:$PORT --clients 50 --duration 30 --json /var/tmp/mixrss-$1.json > /var/tmp/mixrss-$1.txt 2>&1
  curl -s -H "authorization: Bearer $(cat $T/admin.token)" localhost:$PORT/metrics | grep "^lakehouse_lance_cache" > /var/tmp/mixrss-$1.metrics; kill $pid; wait $pid 2>/dev/null
  python3 - "$1" <<'PY'
import json,sys
n=sys.argv[1]; d=json.load(open(f'/var/tmp/mixrss-{n}.json'))
keys=[k for k in d if isinstance(d[k],(int,float))]
print(n, {k:d[k] for k in keys})
PY
}
OLD=/var/tmp/lakehouse-a6812c0; NEW=/var/tmp/lakehouse-target/release/lakehouse
run before-1 $OLD hybrid
run after-1 $NEW hybrid
run before-2 $OLD hybrid
run after-2 $NEW hybrid
