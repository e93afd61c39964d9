#!/usr/bin/env python3
"""Async acknowledgements while a backlog drains (`make bench-backlog`).

Starts Flowgate with the benchmark's queued async transform (`transform-queued`:
it reads its state first, so no run finishes before its 202) on a fresh SQLite database
(server on one core, wrk on another), fills the queue with wrk at 64 connections
for BENCH_FILL_SECS (3), then posts on one connection for BENCH_SECS (3) while
the node drains the backlog. Prints the queue's length once a second and the
acknowledgements' p50/p99 on that connection. Issue 12's target: p99 < 50 ms
while 10,000 queued runs drain.

Environment: BENCH_FILL_SECS, BENCH_SECS, BENCH_SERVER_CPU (0),
BENCH_CLIENT_CPU (1), FLOWGATE_BIN.
"""

import os
import shutil
import sqlite3
import sys
import threading
import time

import bench

FILL_SECS = int(os.environ.get("BENCH_FILL_SECS", "3"))
SECS = int(os.environ.get("BENCH_SECS", "3"))


def queued(db):
    con = sqlite3.connect(os.path.join(db, "flowgate.db"), timeout=30)
    try:
        return con.execute("SELECT count(*) FROM runs WHERE status = 'queued'").fetchone()[0]
    finally:
        con.close()


def main():
    bench.require_tools()
    if not os.access(bench.FLOWGATE, os.X_OK):
        sys.exit(f"{bench.FLOWGATE} is missing: build it first (make build-release)")
    server = bench.start_flowgate("backlog", ["transform-queued"])
    url = server.url + "/flows/transform-queued"
    try:
        fill = bench.wrk(url, None, FILL_SECS, conns=64)
        start = queued(server.db)
        samples = []
        stop = threading.Event()

        def sample():
            t0 = time.monotonic()
            while not stop.wait(1.0):
                samples.append((time.monotonic() - t0, queued(server.db)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        r = bench.wrk(url, None, SECS, conns=1)
        stop.set()
        sampler.join()
        end = queued(server.db)
    finally:
        server.stop()
        shutil.rmtree(server.db, ignore_errors=True)

    failed = fill["errors"] + fill["status_errors"] + r["errors"] + r["status_errors"]
    print(f"filled the queue with wrk -t1 -c64 for {FILL_SECS} s ({fill['requests']:,} acknowledgements); "
          f"server on CPU {bench.SERVER_CPU}, wrk on CPU {bench.CLIENT_CPU}, SQLite")
    print()
    print("| after | queued runs |")
    print("|---|---|")
    print(f"| 0 s | {start:,} |")
    for t, n in samples:
        print(f"| {t:.0f} s | {n:,} |")
    print(f"| {SECS} s (end) | {end:,} |")
    print()
    print(f"one connection for {SECS} s: {r['requests']:,} acknowledgements, "
          f"p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms, failed {failed}")


if __name__ == "__main__":
    main()
