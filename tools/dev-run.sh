#!/usr/bin/env bash
# `make run`: start the server on ./data/flowgate.db, create an admin key,
# deploy and publish the example flows in scripts/, print the key and URLs.
set -euo pipefail
BIN=${1:-target/release/flowgate}
export FLOWGATE_LISTEN=${FLOWGATE_LISTEN:-127.0.0.1:8080}
URL="http://${FLOWGATE_LISTEN}"
mkdir -p data
"$BIN" migrate >/dev/null
KEY=$("$BIN" keys create --name "make-run-$(date +%s)" --scopes admin)
"$BIN" serve &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID' INT TERM
for _ in $(seq 1 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
"$BIN" deploy scripts/ --publish --url "$URL" --key "$KEY" || echo "warning: deploying the example flows failed (see above)"
cat <<MSG

Flowgate is running on $URL (database ./data/flowgate.db)
  admin key:   $KEY
  health:      $URL/healthz   readiness: $URL/readyz   metrics: $URL/metrics
  admin API:   $URL/admin/v1/flows  (send: Authorization: Bearer <admin key>)
  API docs:    $URL/docs   OpenAPI: $URL/openapi.json   admin OpenAPI: $URL/admin/v1/openapi.json
Press Ctrl-C to stop.
MSG
wait $PID
