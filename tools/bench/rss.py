#!/usr/bin/env python3
"""Memory under sustained API-key load (`make bench-rss`).

Starts Flowgate on a fresh SQLite database with the benchmark's secured
transform (API key + rate limit + input schema + audit), drives it with wrk
(one connection set, 64 connections, on another core) for BENCH_RSS_SECS (60)
seconds, and samples the server's RSS every 10 s, split into anonymous memory
(heap, caches) and the mapped binary, then once more after 10 s idle. The
bare actix-web baseline gets the same load first, for its RSS beside ours.
Target (issue 12): ≤ 64 MB after 60 s and not growing.
"""

import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

SECS = int(os.environ.get("BENCH_RSS_SECS", "60"))
STEP = 10


def anon_mb(pid):
    """Anonymous resident memory (heap, stacks, caches), without mapped files."""
    return bench.status_mb(pid, "RssAnon")


def sampled(server, path, key):
    samples, stop = [], threading.Event()

    def sampler():
        t0 = time.monotonic()
        while not stop.is_set():
            samples.append((time.monotonic() - t0, bench.rss_mb(server.pid), anon_mb(server.pid)))
            stop.wait(STEP)

    t = threading.Thread(target=sampler, daemon=True)
    t.start()
    r = bench.wrk(server.url + path, key, SECS)
    stop.set()
    t.join()
    if samples[-1][0] < SECS - 1:
        samples.append((SECS, bench.rss_mb(server.pid), anon_mb(server.pid)))
    time.sleep(10)
    idle = (bench.rss_mb(server.pid), anon_mb(server.pid))
    return r, samples, idle


def main():
    bare = bench.Server("bare", [bench.BARE, "127.0.0.1:0"], {"PATH": os.environ.get("PATH", "")},
                        r"listening on (\S+)")
    try:
        _, bare_samples, bare_idle = sampled(bare, "/flows/transform", None)
    finally:
        bare.stop()
    server = bench.start_flowgate("rss", ["transform-secure"])
    try:
        key = bench.http("POST", server.url + "/admin/v1/keys", server.admin,
                         {"name": "bench-load", "scopes": ["bench:call"]})["key"]
        r, samples, idle = sampled(server, "/flows/transform-secure", key)
    finally:
        server.stop()
        shutil.rmtree(server.db, ignore_errors=True)
    rps = r["requests"] / (r["duration_us"] / 1e6)
    print(f"wrk -t1 -c{bench.CONNS} for {SECS} s, server on CPU {bench.SERVER_CPU}, wrk on CPU "
          f"{bench.CLIENT_CPU}; Flowgate with an API key, rate limit, input schema and audit: "
          f"{rps:,.0f} req/s, {r['errors'] + r['status_errors']} failed")
    print()
    print("| after | Flowgate RSS | of it anonymous | bare actix-web RSS |")
    print("|---|---|---|---|")
    for (t, rss, anon), (_, brss, _) in zip(samples, bare_samples):
        print(f"| {t:.0f} s | {rss:.0f} MB | {anon:.0f} MB | {brss:.0f} MB |")
    print(f"| 10 s idle | {idle[0]:.0f} MB | {idle[1]:.0f} MB | {bare_idle[0]:.0f} MB |")


if __name__ == "__main__":
    main()
