#!/usr/bin/env python3
"""The cluster mode of `make bench` (`make bench-cluster`, or `BENCH_CLUSTER=1 make bench`).

Measures, on one PostgreSQL server:
1. Throughput of one Flowgate node against three nodes on one database, for the
   sync transform (`[auth] mode = "none"`) and the async one (202 after the
   durable enqueue). The client side is the same in both: three wrk processes
   with BENCH_CONNECTIONS / 3 connections each, all aimed at the one node, or one
   per node (a round-robin load balancer without its own cost). Requests/s are
   summed over the three; p50 is the median and p99 the largest of the three.
2. Change-notification latency: publish a new version on node A, then call node
   B in a tight loop until it answers with the new version; p50/p99 of the time
   from the publish's answer to B's first new answer (BENCH_NOTIFY_SAMPLES, 50).

Every server process is pinned to BENCH_SERVER_CPU (0) and wrk to
BENCH_CLIENT_CPU (1), as in bench.py; PostgreSQL is not pinned. On a 2-core
machine three nodes therefore share the one core a single node has: the
figures show what the cluster's coordination costs, not how it scales out.
Give BENCH_SERVER_CPU a range (e.g. "0-5") on a bigger machine.

Each set-up gets a fresh database per round. PostgreSQL: BENCH_POSTGRES_URL,
else FLOWGATE_TEST_POSTGRES_URL, else .ci/pg-start.sh starts one. Needs psql.
Environment as bench.py: BENCH_SECS, BENCH_ROUNDS, BENCH_CONNECTIONS,
BENCH_SERVER_CPU, BENCH_CLIENT_CPU, FLOWGATE_BIN.
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared helpers: Server, http, median, CPU pinning)

NOTIFY_SAMPLES = int(os.environ.get("BENCH_NOTIFY_SAMPLES", "50"))
NODES = 3


def postgres_url():
    url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("FLOWGATE_TEST_POSTGRES_URL")
    if url:
        return url
    return subprocess.run(["bash", os.path.join(bench.ROOT, ".ci/pg-start.sh")],
                          check=True, capture_output=True, text=True).stdout.strip()


def psql():
    p = shutil.which("psql")
    if p:
        return p
    found = sorted(
        (os.path.join("/usr/lib/postgresql", v, "bin/psql") for v in os.listdir("/usr/lib/postgresql")),
        key=lambda s: [int(x) for x in re.findall(r"\d+", s)],
    ) if os.path.isdir("/usr/lib/postgresql") else []
    if not found:
        sys.exit("psql is missing (it comes with postgresql)")
    return found[-1]


def with_database(url, name):
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


class Database:
    """A fresh database on the server, dropped at the end."""

    def __init__(self, base):
        self.base = base
        self.name = "bench_" + uuid.uuid4().hex[:12]
        subprocess.run([psql(), base, "-qc", f"CREATE DATABASE {self.name}"], check=True,
                       capture_output=True)
        self.url = with_database(base, self.name)

    def drop(self):
        subprocess.run([psql(), self.base, "-qc", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"],
                       capture_output=True)


class Cluster:
    """n nodes on a fresh database, with the given bench flows published through node 0."""

    def __init__(self, base_url, n, flows, files=None):
        self.db = Database(base_url)
        self.dir = tempfile.mkdtemp(prefix="flowgate-bench-cluster-")
        env = dict(bench.flowgate_env(self.dir), FLOWGATE_DATABASE_URL=self.db.url)
        self.nodes = []
        try:
            self.admin = subprocess.run(
                [bench.FLOWGATE, "keys", "create", "--name", "bench-admin", "--scopes", "admin"],
                env=env, cwd=self.dir, check=True, capture_output=True, text=True,
            ).stdout.strip()
            for i in range(n):
                node_env = dict(env, FLOWGATE_NODE_ID=f"node-{i}")
                self.nodes.append(bench.Server(f"node-{i}", [bench.FLOWGATE, "serve"], node_env,
                                               r"flowgate listening on (\S+)"))
            if flows:
                pkgs = tempfile.mkdtemp(prefix="flows-", dir=self.dir)
                for f in flows:
                    shutil.copytree(os.path.join(bench.FLOWS, f), os.path.join(pkgs, f))
                subprocess.run(
                    [bench.FLOWGATE, "deploy", pkgs, "--publish", "--url", self.nodes[0].url,
                     "--key", self.admin],
                    env=env, check=True, capture_output=True, text=True,
                )
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for s in self.nodes:
            s.stop()
        self.db.drop()
        shutil.rmtree(self.dir, ignore_errors=True)


def wrk_many(urls, conns, secs):
    """One wrk per URL, concurrently, all pinned to the client CPU; their BENCH lines."""
    env = dict(os.environ, BENCH_BODY=bench.BODY, BENCH_KEY="")
    procs = [
        subprocess.Popen(
            ["taskset", "-c", bench.CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{secs}s",
             "--timeout", "10s", "-s", bench.LUA, u],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        for u in urls
    ]
    out = []
    for p in procs:
        text, _ = p.communicate()
        m = re.search(r"^BENCH (.*)$", text, re.M)
        if not m:
            sys.exit(f"wrk printed no result:\n{text}")
        out.append({k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())})
    return out


def throughput_round(base_url, n_nodes, flow, secs):
    c = Cluster(base_url, n_nodes, [flow])
    try:
        path = f"/flows/{flow}"
        urls = [c.nodes[i % n_nodes].url + path for i in range(NODES)]
        wrk_many(urls, max(1, bench.CONNS // NODES), 1)  # warm-up
        pids = [s.pid for s in c.nodes]
        cpu0 = sum(bench.cpu_ticks(p) for p in pids)
        rs = wrk_many(urls, max(1, bench.CONNS // NODES), secs)
        cpu1 = sum(bench.cpu_ticks(p) for p in pids)
    finally:
        c.stop()
    requests = sum(r["requests"] for r in rs)
    rps = sum(r["requests"] / (r["duration_us"] / 1e6) for r in rs)
    return {
        "rps": rps,
        "p50": bench.median([r["p50_us"] for r in rs]) / 1000,
        "p99": max(r["p99_us"] for r in rs) / 1000,
        "cpu_us": (cpu1 - cpu0) / bench.CLK_TCK / max(requests, 1) * 1e6,
        "failed": sum(r["errors"] + r["status_errors"] for r in rs),
    }


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def notify_latency(base_url, samples):
    """p50/p99 (ms) from a publish's answer on node 0 to node 1's first new-version answer."""
    c = Cluster(base_url, 2, [])
    try:
        a, b = c.nodes[0].url, c.nodes[1].url

        def files(v):
            return {"files": {
                "flow.toml": 'name = "notify"\n\n[[trigger]]\nkind = "http"\n\n[auth]\nmode = "none"\n',
                "main.rhai": f"#{{ version: ctx.version, n: {v} }}",
            }}

        bench.http("POST", a + "/admin/v1/flows", c.admin, files(0))
        bench.http("POST", a + "/admin/v1/flows/notify/versions/1/publish", c.admin)
        host = urllib.parse.urlsplit(b).netloc
        conn = http.client.HTTPConnection(host, timeout=10)

        def served():
            conn.request("POST", "/flows/notify", body="{}", headers={"content-type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            return json.loads(body).get("version") if r.status == 200 else None

        deadline = time.monotonic() + 30
        while served() != 1:
            if time.monotonic() > deadline:
                sys.exit("node B never served version 1")
        lat = []
        for i in range(samples):
            v = i + 2
            bench.http("POST", a + "/admin/v1/flows/notify/versions", c.admin, files(v))
            bench.http("POST", a + f"/admin/v1/flows/notify/versions/{v}/publish", c.admin)
            t0 = time.monotonic()
            while served() != v:
                if time.monotonic() - t0 > 30:
                    sys.exit(f"node B did not serve version {v} within 30 s")
            lat.append((time.monotonic() - t0) * 1000)
            time.sleep(0.05)
        conn.close()
    finally:
        c.stop()
    return percentile(lat, 50), percentile(lat, 99), max(lat)


def main():
    bench.require_tools()
    if not os.access(bench.FLOWGATE, os.X_OK):
        sys.exit(f"{bench.FLOWGATE} is missing: run `make bench-cluster` (it builds release first)")
    base = postgres_url()
    setups = [
        ("sync (auth none)", "transform", 1),
        ("sync (auth none)", "transform", NODES),
        ('async (202 after durable enqueue)', "transform-async", 1),
        ('async (202 after durable enqueue)', "transform-async", NODES),
    ]
    results = {(name, n): [] for name, _, n in setups}
    for rnd in range(bench.ROUNDS):
        for name, flow, n in setups:
            r = throughput_round(base, n, flow, bench.SECS)
            results[(name, n)].append(r)
            print(f"round {rnd + 1}/{bench.ROUNDS}  {name:<36} {n} node(s) {r['rps']:>9.0f} req/s  "
                  f"p99 {r['p99']:7.2f} ms  failed {r['failed']}", flush=True)
    p50, p99, worst = notify_latency(base, NOTIFY_SAMPLES)

    print()
    print(f"PostgreSQL, fresh database per round; {NODES} wrk -t1 -c{max(1, bench.CONNS // NODES)} "
          f"(one per node, or all at the one node), {bench.ROUNDS} interleaved rounds of {bench.SECS} s; "
          f"servers on CPU {bench.SERVER_CPU}, wrk on CPU {bench.CLIENT_CPU}, PostgreSQL unpinned")
    print()
    print("| flow | nodes | requests/s | vs one node | p50 | p99 (worst wrk) | server CPU per request | failed |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _, n in setups:
        rs = results[(name, n)]
        rps = bench.median([r["rps"] for r in rs])
        one = bench.median([r["rps"] for r in results[(name, 1)]])
        print(f"| {name} | {n} | {rps:,.0f} | {rps / one:.2f}× | "
              f"{bench.median([r['p50'] for r in rs]):.2f} ms | {bench.median([r['p99'] for r in rs]):.2f} ms | "
              f"{bench.median([r['cpu_us'] for r in rs]):.0f} µs | {sum(r['failed'] for r in rs)} |")
    print()
    print(f"Change notification, publish on node A → first answer of the new version on node B "
          f"({NOTIFY_SAMPLES} publishes): p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms")


if __name__ == "__main__":
    main()
