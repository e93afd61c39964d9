#!/usr/bin/env bash
# `make cluster-demo`: three Flowgate nodes on one PostgreSQL database, as operators run them
# behind a load balancer. Starts a local PostgreSQL (.ci/pg-start.sh), creates the database
# `flowgate_cluster_demo`, starts `flowgate serve` on 127.0.0.1:8081, :8082 and :8083 with node
# ids node-1..node-3 and one shared secrets key, deploys the example flows in scripts/ once,
# prints the three URLs and an admin key, and stops all three nodes on Ctrl-C.
#
#   tools/cluster-demo.sh [path/to/flowgate]      # default target/release/flowgate
#
# Settings: CLUSTER_DEMO_PORTS (default "8081 8082 8083"), CLUSTER_DEMO_PG_PORT (54329),
# CLUSTER_DEMO_DB (flowgate_cluster_demo). Node logs go to data/cluster-demo/node-N.log.
# PostgreSQL keeps running afterwards; stop it with `.ci/pg-start.sh stop`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/flowgate}
PORTS=${CLUSTER_DEMO_PORTS:-8081 8082 8083}
PG_PORT=${CLUSTER_DEMO_PG_PORT:-54329}
DB=${CLUSTER_DEMO_DB:-flowgate_cluster_demo}
DIR=data/cluster-demo
[ -x "$BIN" ] || { echo "$BIN is missing: build it first (make build-release)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
mkdir -p "$DIR"

PIDS=()
stop_all() {
  trap - INT TERM EXIT
  if [ "${#PIDS[@]}" -gt 0 ]; then
    echo
    echo "stopping ${#PIDS[@]} nodes (SIGTERM: in-flight requests finish, claimed runs are released)…"
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  echo "all nodes stopped; PostgreSQL still runs on 127.0.0.1:$PG_PORT (.ci/pg-start.sh stop $PG_PORT)"
}
trap stop_all INT TERM EXIT

PG_URL=$(bash .ci/pg-start.sh "$PG_PORT")
PSQL=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n1)
[ -n "$PSQL" ] || { echo "psql not found (it comes with postgresql)" >&2; exit 1; }
if [ "$("$PSQL" "$PG_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  "$PSQL" "$PG_URL" -qc "CREATE DATABASE $DB" >/dev/null
fi
export FLOWGATE_DATABASE_URL="${PG_URL%/*}/$DB"

# Every node must decrypt the same secrets: one key for all, kept between demo runs.
if [ ! -s "$DIR/secrets.key" ]; then
  head -c 32 /dev/urandom | base64 | tr -d '\n' >"$DIR/secrets.key"
  chmod 600 "$DIR/secrets.key"
fi
FLOWGATE_SECRETS_KEY=$(cat "$DIR/secrets.key")
export FLOWGATE_SECRETS_KEY

# Migrate once, before any node starts; set-up chatter goes to setup.log.
quiet() { "$@" 2>>"$DIR/setup.log" || { tail -n 20 "$DIR/setup.log" >&2; return 1; }; }
quiet "$BIN" migrate >/dev/null
KEY=$(quiet "$BIN" keys create --name "cluster-demo-$(date +%s)" --scopes admin)

URLS=()
n=0
for port in $PORTS; do
  n=$((n + 1))
  FLOWGATE_LISTEN="127.0.0.1:$port" FLOWGATE_NODE_ID="node-$n" \
    "$BIN" serve >>"$DIR/node-$n.log" 2>&1 &
  PIDS+=($!)
  URLS+=("http://127.0.0.1:$port")
done
for i in "${!URLS[@]}"; do
  ready=0
  for _ in $(seq 1 150); do
    if curl -fsS "${URLS[$i]}/readyz" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "${PIDS[$i]}" 2>/dev/null || break
    sleep 0.2
  done
  if [ "$ready" != 1 ]; then
    echo "node-$((i + 1)) did not become ready; last lines of $DIR/node-$((i + 1)).log:" >&2
    tail -n 20 "$DIR/node-$((i + 1)).log" >&2 || true
    exit 1
  fi
done

# The example flows and demo values for the secrets they name, once, through node 1.
"$BIN" deploy scripts/ --publish --url "${URLS[0]}" --key "$KEY" >/dev/null ||
  echo "warning: deploying the example flows failed (see $DIR/node-1.log)"
demo_value() {
  case "$1" in
    # base64 of "demo-payments-webhook-secret", as `make run` uses.
    PAYMENTS_WEBHOOK_SECRET) printf 'whsec_ZGVtby1wYXltZW50cy13ZWJob29rLXNlY3JldA==' ;;
    *) printf 'demo-%s' "$(printf '%s' "$1" | tr 'A-Z_' 'a-z-')" ;;
  esac
}
SECRETS=$(grep -rhoE 'secret *= *"[A-Za-z0-9_.-]+"|secrets::get\("[A-Za-z0-9_.-]+"\)' scripts/ 2>/dev/null |
  grep -oE '"[A-Za-z0-9_.-]+"' | tr -d '"' | sort -u || true)
for name in $SECRETS; do
  curl -sS -o /dev/null -X PUT "${URLS[0]}/admin/v1/secrets/$name" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' --data "{\"value\": \"$(demo_value "$name")\"}" || true
done

cat <<MSG

Three Flowgate nodes share one PostgreSQL database ($DB on 127.0.0.1:$PG_PORT):
  node-1:     ${URLS[0]}
  node-2:     ${URLS[1]:-}
  node-3:     ${URLS[2]:-}
  admin key:  $KEY

Try:
  curl -s ${URLS[1]:-${URLS[0]}}/admin/v1/cluster -H 'Authorization: Bearer $KEY'
  curl -s ${URLS[2]:-${URLS[0]}}/admin/v1/flows -H 'Authorization: Bearer $KEY'
  open ${URLS[0]}/console (sign in with the admin key); publish or roll back on one node, call another.
Each node's readiness: /readyz; logs: $DIR/node-N.log.

Press Ctrl-C to stop all three nodes.
MSG
wait "${PIDS[@]}" || true
