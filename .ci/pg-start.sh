#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the storage tests and prints its URL.
#
#   .ci/pg-start.sh [PORT]        # default port 54329
#   export FLOWGATE_TEST_POSTGRES_URL=$(.ci/pg-start.sh)
#
# Idempotent: installs postgresql (Debian/Ubuntu apt) when missing, initialises the
# cluster in /tmp/flowgate-pg-PORT once, starts it when not running, and always ends
# by printing `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth, local only).
# Works as root (initdb/pg_ctl run as the `postgres` user) or as an ordinary user.
# Stop it with: .ci/pg-start.sh stop [PORT]
set -euo pipefail

if [[ "${1:-}" == "stop" ]]; then
  STOP=1
  shift
else
  STOP=0
fi
PORT="${1:-54329}"
DATA="/tmp/flowgate-pg-${PORT}"
LOG="/tmp/flowgate-pg-${PORT}.log"

log() { echo "pg-start: $*" >&2; }

find_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return 0; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

if ! BIN=$(find_bin); then
  if [[ $(id -u) -ne 0 ]]; then
    log "postgresql is not installed and we are not root; install it first"
    exit 1
  fi
  log "installing postgresql (apt-get)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >&2 || { apt-get update -q >&2 && apt-get install -y -q postgresql >&2; }
  BIN=$(find_bin)
fi

# Run a command as the cluster owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u postgres -- "$@"
    else
      su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

if [[ $STOP -eq 1 ]]; then
  if [[ -d "$DATA" ]]; then as_owner "$BIN/pg_ctl" -D "$DATA" -m fast stop >&2 || true; fi
  exit 0
fi

if [[ ! -f "$DATA/PG_VERSION" ]]; then
  rm -rf "$DATA"
  mkdir -p "$DATA"
  if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$DATA"; fi
  log "initdb $DATA"
  as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >&2
fi
touch "$LOG"
if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$LOG"; fi

if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  log "starting on 127.0.0.1:$PORT"
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 30 \
    -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >&2
fi

for _ in $(seq 1 50); do
  if as_owner "$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" -q; then
    echo "postgres://postgres@127.0.0.1:${PORT}/postgres"
    exit 0
  fi
  sleep 0.2
done
log "server did not become ready; see $LOG"
exit 1
