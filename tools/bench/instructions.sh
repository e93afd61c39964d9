#!/usr/bin/env bash
# Instructions per call (`make bench-instructions`): the server runs under
# `valgrind --tool=callgrind` on a fresh SQLite database with one of the
# benchmark's flows (BENCH_FLOW: `transform`, the sync flow with auth none, by
# default; `transform-secure` calls with an API key; `transform-async` counts
# each 202 together with the queued run the node drains meanwhile); after a warm-up, the counters are zeroed, N calls
# (BENCH_CALLS, 2000) are made over 8 keep-alive connections, and the counts are
# dumped. Prints user-space instructions per call in total and for the main parts
# of the run path. Unlike CPU time, other tenants of a shared machine do not move
# these figures, so they show changes of a few per cent; the kernel's share
# (sockets, WAL writes) is not in them. Needs valgrind (apt-get install valgrind).
set -euo pipefail
BIN=$(realpath "${1:-target/release/flowgate}")
N=${BENCH_CALLS:-2000}
FLOW=${BENCH_FLOW:-transform}
HERE=$(cd "$(dirname "$0")" && pwd)
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install -y valgrind)"; exit 1; }
D=$(mktemp -d)
trap 'kill "${VP:-}" 2>/dev/null || true; rm -rf "$D"' EXIT
export FLOWGATE_DATABASE_URL="sqlite://$D/flowgate.db" FLOWGATE_LISTEN=127.0.0.1:0 FLOWGATE_LOG=warn
export FLOWGATE_SECRETS_KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= FLOWGATE_ANONYMOUS_RATE=1000000/second
ADMIN=$("$BIN" keys create --name bench-admin --scopes admin 2>/dev/null)
CALLER=$("$BIN" keys create --name bench-load --scopes bench:call 2>/dev/null)
valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" "$BIN" serve >"$D/out.txt" 2>"$D/err.txt" &
VP=$!
URL=
for _ in $(seq 1 240); do
  URL=$(grep -o 'listening on [^ ]*' "$D/out.txt" | awk '{print $3}' || true)
  [ -n "$URL" ] && break
  sleep 0.5
done
[ -n "$URL" ] || { echo "the server did not start under valgrind"; cat "$D/err.txt"; exit 1; }
mkdir -p "$D/flows" && cp -r "$HERE/flows/$FLOW" "$D/flows/"
"$BIN" deploy "$D/flows" --publish --url "$URL" --key "$ADMIN" >/dev/null
calls() {
  python3 - "$URL" "$1" "$HERE/body.json" "$FLOW" "$CALLER" <<'PY'
import http.client, sys, threading
host, port = sys.argv[1].split("//")[1].split(":")
n, body = int(sys.argv[2]) // 8, open(sys.argv[3], "rb").read()
flow = sys.argv[4]
head = {"content-type": "application/json", "authorization": "Bearer " + sys.argv[5]}
want = 202 if flow.endswith("-async") else 200
def go():
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    for _ in range(n):
        c.request("POST", "/flows/" + flow, body, head)
        r = c.getresponse(); r.read()
        assert r.status == want, r.status
ts = [threading.Thread(target=go) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
}
calls 200
callgrind_control -z "$VP" >/dev/null 2>&1
calls "$N"
sleep 1
callgrind_control -d "$VP" >/dev/null 2>&1
sleep 1
F=$(ls "$D"/cg.out.* | sort -V | tail -1)
callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$F" 2>/dev/null >"$D/report.txt"
total=$(grep -m1 "PROGRAM TOTALS" "$D/report.txt" | awk '{gsub(",","",$1); print $1}')
echo "$(basename "$BIN"): $((total / N)) instructions per call of $FLOW (user space, $N calls)"
for part in \
  'Dispatcher<T,S,B,X,U> as core::future::future::Future>::poll|the HTTP worker (parse, route, middleware, flow, answer)' \
  'Engine>::call_flow::{{closure}}|the flow call (body, auth, run, record)' \
  'call::parse_body_now|  parsing the body' \
  'ScriptEngine>::execute|  the script, inline' \
  'Invocation::input_maps|  the input maps written (stored text and Rhai values)' \
  'convert::try_to_json_text|    the result written as JSON text' \
  'Store>::record_run|  the run record built' \
  'writer::flush_records|the writer: run records inserted' \
  'queue::execute_claimed::{{closure}}|queued runs: claim, script, outcome' \
  'runs::claim_tx|  the claims'; do
  pat=${part%%|*}; name=${part#*|}
  n=$(grep -F "$pat" "$D/report.txt" | head -1 | awk '{gsub(",","",$1); print $1}' || true)
  if [ -n "$n" ]; then printf '%9d  %s\n' "$((n / N))" "$name"; fi
done
