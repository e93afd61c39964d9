#!/usr/bin/env python3
"""Schedule lag, end to end (`make bench-schedules`).

Publishes BENCH_SCHEDULE_FLOWS (300) flows on an every-second cron on a fresh
SQLite database, lets them fire for BENCH_SCHEDULE_SECS (30) seconds and reads
back, for every run the schedules started, how long after its due time it
started (`runs.started_at - runs.scheduled_at`: the tick written, the run
queued, claimed and begun, all through the database). The first five seconds
are left out (deploys still landing). It also checks that every due time of
every flow ran exactly once.

BENCH_SCHEDULE_SPREAD=1 instead gives each flow a per-minute cron on its own
second (flow i fires at second i mod 60), the "many per-minute schedules
spread over the minute" case; run it with BENCH_SCHEDULE_FLOWS=10000 and
BENCH_SCHEDULE_SECS=150.

FLOWGATE_RUN_WORKERS, when set, is passed to the server (`runs.workers`, the
queue slots that claim the due runs together; 16 by default).

Baseline from the same run: a Python thread on the server's core that sleeps
until each second boundary and records how late it woke up, the lag a bare
timer sees on this machine at that moment.

It also prints what the server wrote per run started (`/proc/PID/io` `wchar`: WAL
frames and checkpoints), a figure the other tenants of a shared machine do not move.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

FLOWS = int(os.environ.get("BENCH_SCHEDULE_FLOWS", "300"))
SECS = int(os.environ.get("BENCH_SCHEDULE_SECS", "30"))
SPREAD = os.environ.get("BENCH_SCHEDULE_SPREAD", "0") == "1"
SKIP_MS = 5000


def package(root, i):
    name = f"tick-{i:05d}"
    cron = f"{i % 60} * * * * *" if SPREAD else "* * * * * *"
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "flow.toml"), "w") as f:
        f.write(f'name = "{name}"\n\n[[trigger]]\nkind = "schedule"\ncron = "{cron}"\n')
    with open(os.path.join(d, "main.rhai"), "w") as f:
        f.write("42\n")


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def timer_baseline(stop, out):
    """Sleeps to each second boundary; records how late each wake-up was (ms)."""
    os.sched_setaffinity(0, {int(bench.SERVER_CPU)})
    while not stop.is_set():
        now = time.time()
        due = int(now) + 1
        time.sleep(due - now)
        out.append((time.time() - due) * 1000)


def main():
    root = tempfile.mkdtemp(prefix="flowgate-bench-schedules-")
    for i in range(FLOWS):
        package(root, i)
    db = tempfile.mkdtemp(prefix="flowgate-bench-schedules-db-")
    env = bench.flowgate_env(db)
    if os.environ.get("FLOWGATE_RUN_WORKERS"):
        env["FLOWGATE_RUN_WORKERS"] = os.environ["FLOWGATE_RUN_WORKERS"]
    admin = subprocess.run(
        [bench.FLOWGATE, "keys", "create", "--name", "bench-admin", "--scopes", "admin"],
        env=env, cwd=db, check=True, capture_output=True, text=True,
    ).stdout.strip()
    server = bench.Server("flowgate", [bench.FLOWGATE, "serve"], env, r"flowgate listening on (\S+)")
    try:
        t0 = time.time()
        subprocess.run(
            [bench.FLOWGATE, "deploy", root, "--publish", "--url", server.url, "--key", admin],
            env=env, check=True, capture_output=True, text=True,
        )
        deployed_ms = int(time.time() * 1000)
        print(f"{FLOWS} flows deployed in {time.time() - t0:.1f} s; measuring {SECS} s", flush=True)
        stop, base = threading.Event(), []
        t = threading.Thread(target=timer_baseline, args=(stop, base), daemon=True)
        t.start()
        rss0, cpu0 = bench.rss_mb(server.pid), bench.cpu_ticks(server.pid)
        io0, io0_ms = bench.written_bytes(server.pid), int(time.time() * 1000)
        time.sleep(SECS)
        cpu1, rss1 = bench.cpu_ticks(server.pid), bench.rss_mb(server.pid)
        io1, io1_ms = bench.written_bytes(server.pid), int(time.time() * 1000)
        stop.set()
    finally:
        server.stop()
    con = sqlite3.connect(os.path.join(db, "flowgate.db"))
    lo = deployed_ms + SKIP_MS
    hi = deployed_ms + SECS * 1000 - 2000  # runs due at the very end may still be queued
    rows = con.execute(
        "SELECT flow, scheduled_at, started_at, status FROM runs "
        "WHERE scheduled_at IS NOT NULL AND scheduled_at >= ? AND scheduled_at < ?",
        (lo, hi),
    ).fetchall()
    lags = [s - d for _, d, s, _ in rows if s is not None]
    tick_lags = [r[0] for r in con.execute(
        "SELECT created_at - due_at FROM schedule_ticks WHERE due_at >= ? AND due_at < ?", (lo, hi))]
    not_started = sum(1 for r in rows if r[2] is None)
    per_due = {}
    for flow, due, _, _ in rows:
        per_due[(flow, due)] = per_due.get((flow, due), 0) + 1
    twice = sum(1 for n in per_due.values() if n > 1)
    window_s = (hi - lo) / 1000
    expected = FLOWS * window_s / (60 if SPREAD else 1)
    cpu_s = (cpu1 - cpu0) / bench.CLK_TCK
    print()
    kind = "per-minute crons spread over the minute" if SPREAD else "every-second crons"
    print(f"{FLOWS} flows on {kind}, {SECS} s, server on CPU {bench.SERVER_CPU}, SQLite; "
          f"runs due in a {window_s:.0f} s window")
    print()
    print("| what | runs | lag p50 | lag p99 | lag max | server CPU | RSS before → after |")
    print("|---|---|---|---|---|---|---|")
    print(f"| Flowgate: due time → run started | {len(rows)} of ~{expected:.0f} "
          f"(not started {not_started}, twice {twice}) | {pct(lags, 50):.0f} ms | {pct(lags, 99):.0f} ms | "
          f"{max(lags) if lags else float('nan'):.0f} ms | {cpu_s / SECS * 100:.0f} % of a core | "
          f"{rss0:.0f} → {rss1:.0f} MB |")
    print(f"| Flowgate: due time → tick and run recorded | {len(tick_lags)} | {pct(tick_lags, 50):.0f} ms | "
          f"{pct(tick_lags, 99):.0f} ms | {max(tick_lags) if tick_lags else float('nan'):.0f} ms | | |")
    print(f"| baseline: a bare timer thread on the same core | {len(base)} | {pct(base, 50):.1f} ms | "
          f"{pct(base, 99):.1f} ms | {max(base) if base else float('nan'):.1f} ms | | |")
    started = con.execute("SELECT count(*) FROM runs WHERE started_at >= ? AND started_at < ?",
                          (io0_ms, io1_ms)).fetchone()[0]
    print()
    print(f"The server wrote {(io1 - io0) / max(started, 1) / 1024:.1f} KiB per run started in the "
          f"{SECS} s (WAL frames and checkpoints; a figure other tenants of the machine do not move).")
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(db, ignore_errors=True)


if __name__ == "__main__":
    main()
