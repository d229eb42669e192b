#!/usr/bin/env bash
# Fuzzes the published contract: starts the built `lakehouse` binary on a
# fresh data dir with an admin token, and runs schemathesis against its
# /openapi.json. Fails on any 5xx, any response that does not match the
# document (schema, content type, headers, the event stream's events), any
# status code the document does not list, any schema-valid request refused
# (beyond the operation's documented `x-runtime-rules`) and any
# schema-violating request accepted: schemathesis's default checks.
# Bounded: a fixed seed, a few examples per operation
# (SCHEMATHESIS_EXAMPLES, SCHEMATHESIS_SEED).
#
#   tests/contract/schemathesis.sh BINARY
#
# schemathesis comes from PyPI into a virtualenv outside the clone
# ($LAKEHOUSE_VENV, default /var/tmp/lakehouse-venv), installed if missing.
set -euo pipefail
BIN="${1:?usage: schemathesis.sh path/to/lakehouse}"
VENV="${LAKEHOUSE_VENV:-/var/tmp/lakehouse-venv}"
SCHEMATHESIS_VERSION="4.32.5"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-30}"
SEED="${SCHEMATHESIS_SEED:-20261203}"

if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "schemathesis: installing $SCHEMATHESIS_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

WORK="$(mktemp -d)"
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

TOKEN="$("$BIN" token new --name schemathesis --role admin 2>"$WORK/token.txt")"
LINE="$(grep 'sha256 =' "$WORK/token.txt" | sed 's/^ *//')"
printf 'tokens = [%s]\n' "$LINE" > "$WORK/tokens.toml"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

(cd "$WORK" && LAKEHOUSE__AUTH__TOKENS_FILE="$WORK/tokens.toml" LAKEHOUSE__LOG__LEVEL=warn \
  LAKEHOUSE__EMBED__DIMENSION=64 \
  exec "$BIN" serve --port "$PORT" --data-dir "$WORK/data") > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/ready" > /dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/ready" > /dev/null || { cat "$WORK/server.log" >&2; exit 1; }

# Fixtures the operations in schemathesis.toml point at.
BASE="http://127.0.0.1:$PORT"
AUTH="Authorization: Bearer $TOKEN"
"$BIN" seed --workers 300 --target "$BASE" --token "$TOKEN" > /dev/null
curl -sf -H "$AUTH" -H 'content-type: application/json' "$BASE/v1/vectors/index" \
  -d '{"name":"contract","dimension":64,"metric":"cosine"}' > /dev/null
python3 - "$BASE" "$TOKEN" <<'PY'
import json, sys, urllib.request
base, token = sys.argv[1], sys.argv[2]
items = [{"id": f"c{i}", "vector": [((i * 7 + j) % 13) / 13.0 + 0.01 for j in range(64)],
          "metadata": {"kind": "contract", "n": i}} for i in range(1, 21)]
req = urllib.request.Request(f"{base}/v1/vectors/index/contract/add", data=json.dumps({"items": items}).encode(),
                             headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
urllib.request.urlopen(req).read()
PY
for dataset in contract_ds contract_drop; do
  printf 'id,name,city\n1,Ana,Joliet\n2,Ben,Aurora\n' | curl -sf -H "$AUTH" -H 'content-type: text/csv' \
    --data-binary @- "$BASE/v1/ingest/$dataset" > /dev/null
done
curl -sf -H "$AUTH" -H 'content-type: application/json' "$BASE/v1/vectors/index" \
  -d '{"name":"contract_restart","dimension":4}' > /dev/null
printf 'hello' | curl -sf -X PUT -H "$AUTH" --data-binary @- "$BASE/v1/storage/objects/contract/hello.txt" > /dev/null

status=0
# Every default check, with positive_data_acceptance replaced by the same
# check that also accepts a refusal with one of the operation's
# `x-runtime-rules` codes (tests/contract/hooks.py). One worker: with two
# threads, CPython 3.11's ast module races inside hypothesis's source
# lookups now and then ("SystemError: AST constructor recursion depth
# mismatch"), a flaky error of the fuzzer, not of the server.
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$(cd "$(dirname "$0")" && pwd)" \
"$VENV/bin/st" --config-file "$(dirname "$0")/schemathesis.toml" run "http://127.0.0.1:$PORT/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --exclude-checks positive_data_acceptance \
  --max-examples "$EXAMPLES" --seed "$SEED" --workers 1 \
  --request-timeout 30 --no-color --generation-database none \
  || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed (exit $status); the server's log:" >&2
  tail -50 "$WORK/server.log" >&2
fi
exit "$status"
