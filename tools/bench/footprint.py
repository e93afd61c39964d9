#!/usr/bin/env python3
"""`make bench-footprint`: cold start and memory with many flows.

Starts a release `flowgate serve` on a fresh SQLite database and reports: the
time from exec to the first `/readyz` 200 (empty database), the RSS after
publishing N flows (BENCH_FLOWS, 1000) through the admin API, the RSS after
calling each of them once (every version loaded and its script compiled),
and the cold start of a restart on that database. Settings: FLOWGATE_BIN,
BENCH_FLOWS.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("FLOWGATE_BIN", os.path.join(ROOT, "target/release/flowgate"))
N = int(os.environ.get("BENCH_FLOWS", "1000"))
PORT = 18111


def main():
    db = tempfile.mkdtemp(prefix="flowgate-footprint-")
    env = dict(
        os.environ,
        FLOWGATE_DATABASE_URL=f"sqlite://{db}/flowgate.db",
        FLOWGATE_SECRETS_KEY="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        FLOWGATE_LISTEN=f"127.0.0.1:{PORT}",
        FLOWGATE_LOG="warn",
        # Calling every flow once from one address is not an attack.
        FLOWGATE_ANONYMOUS_RATE="1000000/second",
    )
    admin = subprocess.run(
        [BIN, "keys", "create", "--name", "footprint", "--scopes", "admin"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()
    base = f"http://127.0.0.1:{PORT}"

    def start():
        t0 = time.monotonic()
        p = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = t0 + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return p, time.monotonic() - t0
            except OSError:
                time.sleep(0.005)
        p.kill()
        raise SystemExit("the server did not become ready within 30 s")

    def rss(p):
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) // 1024
        return -1

    def call(method, path, body=None, key=admin):
        req = urllib.request.Request(base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("content-type", "application/json")
        if key:
            req.add_header("authorization", f"Bearer {key}")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    try:
        p, t = start()
        print(f"cold start, empty database, to /readyz 200: {t * 1000:.0f} ms (RSS {rss(p)} MB)")
        t0 = time.monotonic()
        for i in range(N):
            name = f"f{i:04d}"
            files = {
                "flow.toml": f'name = "{name}"\n\n[[trigger]]\nkind = "http"\nmethod = "POST"\n\n[auth]\nmode = "none"\n',
                "main.rhai": f"#{{ n: {i}, body: request.body }}",
            }
            v = call("POST", "/admin/v1/flows", {"files": files})
            call("POST", f"/admin/v1/flows/{name}/versions/{v['version']}/publish")
        print(f"{N} flows published in {time.monotonic() - t0:.1f} s: RSS {rss(p)} MB")
        for i in range(N):
            call("POST", f"/flows/f{i:04d}", {"a": 1}, key=None)
        time.sleep(1)
        print(f"each of the {N} flows called once: RSS {rss(p)} MB")
        p.terminate()
        p.wait()
        p, t = start()
        print(f"cold start with {N} flows to /readyz 200: {t * 1000:.0f} ms (RSS {rss(p)} MB)")
        p.terminate()
        p.wait()
    finally:
        shutil.rmtree(db, ignore_errors=True)


if __name__ == "__main__":
    main()
