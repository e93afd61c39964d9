#!/usr/bin/env bash
# `make schemathesis`: fuzz the admin API and the flow API of a real server with
# schemathesis (PyPI, v4). The server runs on a loopback port with a throwaway
# SQLite database; the example flows in scripts/ are deployed, published and get
# their secrets. The admin document runs every check; the flow document runs
# `not_a_server_error` and `response_schema_conformance` (the flows' own answers
# are the scripts' business). Each document gets its own key: the stateful phase
# follows links and may revoke the key it was given. Any failure fails the step.
#
# Time budget (seconds, per document): SCHEMATHESIS_ADMIN_TIME (default 80) and
# SCHEMATHESIS_FLOW_TIME (default 45).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${FLOWGATE_BIN:-target/debug/flowgate}
ADMIN_TIME=${SCHEMATHESIS_ADMIN_TIME:-80}
FLOW_TIME=${SCHEMATHESIS_FLOW_TIME:-45}

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "schemathesis is not installed: python3 -m pip install schemathesis" >&2
  exit 1
fi
[ -x "$BIN" ] || cargo build -p flowgate
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

WORK=$(mktemp -d)
PID=
cleanup() {
  if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

export FLOWGATE_DATABASE_URL="sqlite://$WORK/flowgate.db"
export FLOWGATE_SECRETS_KEY=${FLOWGATE_SECRETS_KEY:-$(head -c 32 /dev/urandom | base64)}
export FLOWGATE_LISTEN=127.0.0.1:0
export FLOWGATE_LOG=${FLOWGATE_LOG:-error}
# Fuzzing sends thousands of anonymous requests from one address.
export FLOWGATE_ANONYMOUS_RATE=${FLOWGATE_ANONYMOUS_RATE:-1000000/minute}

"$BIN" migrate >/dev/null
SETUP_KEY=$("$BIN" keys create --name schemathesis-setup --scopes admin)
ADMIN_KEY=$("$BIN" keys create --name schemathesis-admin-doc --scopes admin)
FLOW_KEY=$("$BIN" keys create --name schemathesis-flow-doc --scopes admin)

"$BIN" serve >"$WORK/stdout" 2>"$WORK/stderr" &
PID=$!
URL=
for _ in $(seq 1 300); do
  URL=$(sed -n 's/^flowgate listening on //p' "$WORK/stdout" | head -n 1)
  [ -n "$URL" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/stderr" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "the server did not start" >&2; cat "$WORK/stderr" >&2; exit 1; }
echo "server: $URL"

"$BIN" deploy scripts/ --publish --url "$URL" --key "$SETUP_KEY" >/dev/null
for s in IDP_WEBHOOK_SECRET PAYMENTS_WEBHOOK_SECRET CRM_API_TOKEN PARTNER_TOKEN; do
  value="whsec_$(head -c 24 /dev/urandom | base64)"
  curl -fsS -X PUT "$URL/admin/v1/secrets/$s" -H "Authorization: Bearer $SETUP_KEY" \
    -H 'content-type: application/json' -d "{\"value\": \"$value\"}" >/dev/null
done

common=(--no-color --seed "${SCHEMATHESIS_SEED:-1}" --generation-database none
  --request-timeout 20 --warnings off --suppress-health-check all)
status=0
# Run from the scratch folder: schemathesis keeps a cache of past failures in the
# working directory, and each run must start from nothing.
fuzz() { (cd "$WORK" && schemathesis --config-file "$ROOT/tools/schemathesis.toml" run "$@"); }

echo "== schemathesis: admin document (--checks all, ${ADMIN_TIME}s)"
fuzz "$URL/admin/v1/openapi.json" --url "$URL" "${common[@]}" \
  -H "Authorization: Bearer $ADMIN_KEY" --checks all --max-time "$ADMIN_TIME" || status=1

echo "== schemathesis: flow document (not_a_server_error,response_schema_conformance, ${FLOW_TIME}s)"
fuzz "$URL/openapi.json" --url "$URL" "${common[@]}" \
  -H "Authorization: Bearer $FLOW_KEY" \
  --checks not_a_server_error,response_schema_conformance --max-time "$FLOW_TIME" || status=1

if ! kill -0 "$PID" 2>/dev/null; then
  echo "the server died during the run" >&2
  cat "$WORK/stderr" >&2
  status=1
fi
if [ $status -ne 0 ] && [ -s "$WORK/stderr" ]; then
  echo "== server errors (last 20)" >&2
  tail -n 20 "$WORK/stderr" >&2
fi
exit $status
