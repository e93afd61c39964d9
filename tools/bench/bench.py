#!/usr/bin/env python3
"""The load harness of `make bench` (run through tools/bench/run.sh).

Starts the bare actix-web baseline and Flowgate in three set-ups (auth none;
API key + rate limit + input schema + audit; async mode) with every server
pinned to one core and wrk pinned to another, runs interleaved rounds and
prints one table: requests/s (median of the rounds), ratio to bare, p50/p99
latency, CPU time per request (utime + stime of the server over the round),
RSS before and after the rounds, and the count of failed answers.

Environment: BENCH_SECS (10), BENCH_ROUNDS (2), BENCH_CONNECTIONS (64),
BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1), BENCH_ONLY (comma-separated
system names), FLOWGATE_BIN, BARE_BIN.
"""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SECS = int(os.environ.get("BENCH_SECS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("BENCH_CLIENT_CPU", "1")
FLOWGATE = os.path.abspath(os.environ.get("FLOWGATE_BIN", os.path.join(ROOT, "target/release/flowgate")))
BARE = os.path.abspath(os.environ.get("BARE_BIN", os.path.join(ROOT, "target/release/bench-bare")))
BODY = os.path.join(HERE, "body.json")
LUA = os.path.join(HERE, "post.lua")
FLOWS = os.path.join(HERE, "flows")
SECRETS_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def written_bytes(pid):
    """Bytes the process handed to write calls so far (/proc/PID/io `wchar`): for a
    Flowgate node, its WAL frames and checkpoints. Unlike time, other tenants of a
    shared machine do not change it."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def status_mb(pid, field):
    """A memory figure of /proc/PID/status (VmRSS, RssAnon, ...) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid):
    return status_mb(pid, "VmRSS")


class Server:
    """One server process pinned to the server core; prints its URL on stdout."""

    def __init__(self, name, argv, env, pattern):
        self.name = name
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = None
        found = threading.Event()

        def reader():
            for line in self.proc.stdout:
                m = re.search(pattern, line)
                if m and not found.is_set():
                    self.url = m.group(1).strip()
                    found.set()

        threading.Thread(target=reader, daemon=True).start()
        if not found.wait(60):
            self.stop()
            sys.exit(f"{name} did not start")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def flowgate_env(db_dir):
    return {
        "PATH": os.environ.get("PATH", ""),
        "FLOWGATE_DATABASE_URL": f"sqlite://{db_dir}/flowgate.db",
        "FLOWGATE_SECRETS_KEY": SECRETS_KEY,
        "FLOWGATE_LISTEN": "127.0.0.1:0",
        "FLOWGATE_LOG": "warn",
        # The unauthenticated set-ups measure the run path, not the per-address limit.
        "FLOWGATE_ANONYMOUS_RATE": "1000000/second",
    }


def http(method, url, key=None, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def start_flowgate(name, flows):
    """A fresh database, an admin key, the server, and the given flows published."""
    db = tempfile.mkdtemp(prefix=f"flowgate-bench-{name}-")
    env = flowgate_env(db)
    admin = subprocess.run(
        [FLOWGATE, "keys", "create", "--name", "bench-admin", "--scopes", "admin"],
        env=env, cwd=db, check=True, capture_output=True, text=True,
    ).stdout.strip()
    server = Server(name, [FLOWGATE, "serve"], env, r"flowgate listening on (\S+)")
    server.db = db
    pkgs = tempfile.mkdtemp(prefix="flowgate-bench-flows-", dir=db)
    for f in flows:
        shutil.copytree(os.path.join(FLOWS, f), os.path.join(pkgs, f))
    subprocess.run(
        [FLOWGATE, "deploy", pkgs, "--publish", "--url", server.url, "--key", admin],
        env=env, check=True, capture_output=True, text=True,
    )
    server.admin = admin
    return server


def require_tools():
    """Exits with an install hint when wrk or taskset is missing."""
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"`{tool}` is missing (apt-get install -y wrk util-linux)")


def wrk(url, key, secs, conns=CONNS):
    env = dict(os.environ, BENCH_BODY=BODY, BENCH_KEY=key or "")
    out = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--timeout", "10s",
         "-s", LUA, url],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    m = re.search(r"^BENCH (.*)$", out, re.M)
    if not m:
        sys.exit(f"wrk printed no result:\n{out}")
    return {k: int(v) for k, v in (p.split("=") for p in m.group(1).split())}


def measure(server, path, key, secs):
    """One round: wrk against the server, with the server's CPU and RSS around it."""
    rss0, cpu0, t0 = rss_mb(server.pid), cpu_ticks(server.pid), time.monotonic()
    epoch0 = time.time()
    r = wrk(server.url + path, key, secs)
    r["window_ms"] = (int(epoch0 * 1000), int(time.time() * 1000))
    cpu1, rss1 = cpu_ticks(server.pid), rss_mb(server.pid)
    r["cpu_s"] = (cpu1 - cpu0) / CLK_TCK
    r["wall_s"] = time.monotonic() - t0
    r["rss0"], r["rss1"] = rss0, rss1
    return r


def runs_done(db, lo_ms, hi_ms):
    """Queued runs the async node finished during a round, while it acknowledged new ones."""
    con = sqlite3.connect(os.path.join(db, "flowgate.db"))
    try:
        return con.execute("SELECT count(*) FROM runs WHERE finished_at >= ? AND finished_at < ?",
                           (lo_ms, hi_ms)).fetchone()[0]
    finally:
        con.close()


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main():
    require_tools()
    for b in (FLOWGATE, BARE):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is missing: run `make bench` (it builds release first)")
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))

    servers = {}
    servers["bare"] = Server("bare", [BARE, "127.0.0.1:0"], {"PATH": os.environ.get("PATH", "")},
                             r"listening on (\S+)")
    servers["flowgate"] = start_flowgate("sync", ["transform", "transform-secure"])
    key = http("POST", servers["flowgate"].url + "/admin/v1/keys", servers["flowgate"].admin,
               {"name": "bench-load", "scopes": ["bench:call"]})["key"]

    # (name, server, path, key, fresh server per round)
    systems = [
        ("bare actix-web + serde_json", "bare", "/flows/transform", None),
        ('Flowgate, auth none', "flowgate", "/flows/transform", None),
        ("Flowgate, API key + rate limit + schema + audit", "flowgate", "/flows/transform-secure", key),
        ('Flowgate, mode = "async" (202 after durable enqueue)', "async", "/flows/transform-async", None),
    ]
    if only:
        systems = [s for s in systems if s[1] in only or s[0] in only or (s[1] == "bare")]

    def async_server():
        s = start_flowgate("async", ["transform-async"])
        return s

    results = {name: [] for name, *_ in systems}
    rss_start = {}
    try:
        # Warm-up: caches, the key verification, connection set-up.
        for name, srv, path, k in systems:
            if srv == "async":
                continue
            wrk(servers[srv].url + path, k, 2)
            rss_start.setdefault(srv, rss_mb(servers[srv].pid))
        for rnd in range(ROUNDS):
            for name, srv, path, k in systems:
                if srv == "async":
                    # A fresh node and database per round: the backlog of one
                    # round must not drain into the next system's round.
                    s = async_server()
                    wrk(s.url + path, k, 1)
                    r = measure(s, path, k, SECS)
                    r["drained"] = runs_done(s.db, *r["window_ms"])
                    s.stop()
                    shutil.rmtree(s.db, ignore_errors=True)
                else:
                    r = measure(servers[srv], path, k, SECS)
                results[name].append(r)
                rps = r["requests"] / (r["duration_us"] / 1e6)
                print(f"round {rnd + 1}/{ROUNDS}  {name:<55} {rps:>9.0f} req/s  "
                      f"p99 {r['p99_us'] / 1000:6.2f} ms  failed {r['errors'] + r['status_errors']}",
                      flush=True)
    finally:
        for s in servers.values():
            s.stop()
            if hasattr(s, "db"):
                shutil.rmtree(s.db, ignore_errors=True)

    print()
    print(f"wrk -t1 -c{CONNS}, {ROUNDS} interleaved rounds of {SECS} s, server on CPU {SERVER_CPU}, "
          f"wrk on CPU {CLIENT_CPU}; body {os.path.getsize(BODY)} bytes; figures are medians of the rounds")
    print()
    print("| system | requests/s | ratio to bare | p50 | p99 | CPU per request | RSS before → after | failed |")
    print("|---|---|---|---|---|---|---|---|")
    bare_rps = None
    for name, srv, path, k in systems:
        rs = results[name]
        rps = median([r["requests"] / (r["duration_us"] / 1e6) for r in rs])
        if bare_rps is None:
            bare_rps = rps
        p50 = median([r["p50_us"] for r in rs]) / 1000
        p99 = median([r["p99_us"] for r in rs]) / 1000
        cpu = median([r["cpu_s"] / max(r["requests"], 1) * 1e6 for r in rs])
        failed = sum(r["errors"] + r["status_errors"] for r in rs)
        rss0 = rss_start.get(srv, rs[0]["rss0"])
        rss1 = rs[-1]["rss1"]
        print(f"| {name} | {rps:,.0f} | {rps / bare_rps:.3f} | {p50:.2f} ms | {p99:.2f} ms | "
              f"{cpu:.0f} µs | {rss0:.0f} → {rss1:.0f} MB | {failed} |")
    drained = [r for rs in results.values() for r in rs if "drained" in r]
    if drained:
        per_s = median([r["drained"] / ((r["window_ms"][1] - r["window_ms"][0]) / 1000) for r in drained])
        print()
        print(f"The async node also ran {per_s:,.0f} queued runs/s on the same core during its "
              f"rounds (the drain); its CPU per request includes them.")


if __name__ == "__main__":
    main()
