#!/usr/bin/env bash
# `make bench`: builds the `dist` binaries (Flowgate and the bare actix-web
# baseline), then runs the wrk harness (tools/bench/bench.py) and prints the
# table recorded in BENCHMARKS.md. Needs wrk (apt-get install -y wrk) and
# taskset; settings: BENCH_SECS, BENCH_ROUNDS, BENCH_CONNECTIONS (see bench.py).
# BENCH_CLUSTER=1 (`make bench-cluster`) runs the cluster mode instead (see cluster.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk is not installed: apt-get install -y wrk" >&2
  exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "note: one CPU only; server and load generator share it, ratios are not meaningful" >&2
  export BENCH_CLIENT_CPU=0
fi
machine() { echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"; }
if [ "${BENCH_CLUSTER:-0}" = 1 ]; then
  # Cluster mode (tools/bench/cluster.py): one node vs three on one PostgreSQL database,
  # and the publish → other-node notification latency.
  "$CARGO" build --release -p flowgate
  machine
  exec python3 tools/bench/cluster.py
fi
# Both binaries in the `dist` profile (fat LTO, as shipped), so the baseline
# gets the same compiler help as Flowgate.
"$CARGO" build --profile dist -p flowgate -p flowgate-bench-bare
export FLOWGATE_BIN=${FLOWGATE_BIN:-$PWD/target/dist/flowgate} BARE_BIN=${BARE_BIN:-$PWD/target/dist/bench-bare}
machine
exec python3 tools/bench/bench.py
