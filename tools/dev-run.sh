#!/usr/bin/env bash
# `make run`: start the server on ./data/flowgate.db, create an admin key, deploy and publish
# the example flows in scripts/, give every secret they name a demo value, print the console
# URL, the key and a signed sample webhook call. Needs bash, curl and openssl (no python).
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

admin() { # admin METHOD PATH [JSON] -> HTTP status
  curl -sS -o /dev/null -w '%{http_code}' -X "$1" "$URL$2" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' ${3:+--data "$3"}
}

# Demo secret values (fixed, so restarts keep working webhooks). Standard Webhooks secrets are
# `whsec_<base64>`; the others are plain strings.
PAYMENTS_SECRET_B64=ZGVtby1wYXltZW50cy13ZWJob29rLXNlY3JldA== # base64 of "demo-payments-webhook-secret"
demo_value() {
  case "$1" in
    PAYMENTS_WEBHOOK_SECRET) printf 'whsec_%s' "$PAYMENTS_SECRET_B64" ;;
    *) printf 'demo-%s' "$(printf '%s' "$1" | tr 'A-Z_' 'a-z-')" ;;
  esac
}
SECRETS=$(grep -rhoE 'secret *= *"[A-Za-z0-9_.-]+"|secrets::get\("[A-Za-z0-9_.-]+"\)' scripts/ 2>/dev/null \
  | grep -oE '"[A-Za-z0-9_.-]+"' | tr -d '"' | sort -u || true)
SEEDED=""
for name in $SECRETS; do
  code=$(admin PUT "/admin/v1/secrets/$name" "{\"value\": \"$(demo_value "$name")\"}")
  if [ "$code" = 204 ]; then SEEDED="$SEEDED $name"; else echo "warning: setting secret $name answered $code"; fi
done
# A customer for the sample payment webhook (409 when it already exists is fine).
admin POST /admin/v1/users '{"email": "ann@example.com", "display_name": "Ann Example", "attributes": {"plan": "free"}}' >/dev/null || true

# A Standard Webhooks signature: base64(HMAC-SHA256(secret, "<id>.<timestamp>.<body>")).
WH_ID="msg_demo_$(date +%s)"
WH_TS=$(date +%s)
WH_BODY='{"type":"invoice.paid","data":{"id":"inv_1001","customer_email":"ann@example.com","plan":"pro","amount":4900}}'
if command -v openssl >/dev/null; then
  WH_KEY_HEX=$(printf '%s' "$PAYMENTS_SECRET_B64" | openssl base64 -d -A | od -An -tx1 | tr -d ' \n')
  WH_SIG=$(printf '%s.%s.%s' "$WH_ID" "$WH_TS" "$WH_BODY" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$WH_KEY_HEX" -binary | openssl base64 -A)
  SAMPLE="A signed payment webhook (Standard Webhooks; the timestamp is valid for 5 minutes):
  curl -i $URL/flows/payment-webhook \\
    -H 'content-type: application/json' \\
    -H 'webhook-id: $WH_ID' \\
    -H 'webhook-timestamp: $WH_TS' \\
    -H 'webhook-signature: v1,$WH_SIG' \\
    --data '$WH_BODY'
Then open $URL/console/runs to see the run."
else
  SAMPLE="(install openssl to get a signed sample curl for the payment-webhook flow)"
fi

cat <<MSG

Flowgate is running on $URL (database ${FLOWGATE_DATABASE_URL:-./data/flowgate.db})
  console:     $URL/console   (sign in with the admin key below)
  admin key:   $KEY
  secrets:     demo values set for${SEEDED:- (none)}
  health:      $URL/healthz   readiness: $URL/readyz   metrics: $URL/metrics
  admin API:   $URL/admin/v1/flows  (send: Authorization: Bearer <admin key>)
  API docs:    $URL/docs   OpenAPI: $URL/openapi.json   admin OpenAPI: $URL/admin/v1/openapi.json

$SAMPLE

Press Ctrl-C to stop the server.
MSG
wait $PID
