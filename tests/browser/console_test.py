#!/usr/bin/env python3
"""End-to-end test of the analyst console in a real browser (Debian's chromium, driven by
Playwright from PyPI; no browser download).

Starts the real `flowgate serve` on a random loopback port with a fresh SQLite database and an
admin key from `flowgate keys create`, then walks the analyst's whole loop: sign in, new flow,
a syntax error shown at its line, fix, dry run, save, publish, call the endpoint, see the run,
save it as a fixture, edit, diff, publish v2, roll back, set a secret (its value never shows up
again), sign out; plus the security cases (bad key, missing CSRF token, CSP header, no request
leaving 127.0.0.1). Screenshots go to target/console-screenshots/.

Exit status 0 = passed; anything missing (playwright, chromium, the binary) is a failure.
Run: python3 tests/browser/console_test.py   (after `cargo build -p flowgate`)
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("FLOWGATE_BIN", ROOT / "target" / "debug" / "flowgate"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "target" / "console-screenshots"
TOTAL_SECONDS = 170
SECRETS_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SECRET_VALUE = "s3cr3t-console-value-93b1"
FLOW = "hello-console"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")

SCRIPT_BROKEN = """let body = request.body;
let greeting = ;
#{ greeting: greeting }
"""
SCRIPT_V1 = """let body = request.body;
log::info("hello from the console");
let name = if type_of(body) == "map" && "name" in body { body.name } else { "world" };
#{ greeting: "Hello, " + name }
"""
SCRIPT_V2 = SCRIPT_V1.replace('"Hello, "', '"Hi, "')


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def step(msg):
    print(f"-- {msg}", flush=True)


class Server:
    def __init__(self):
        if not BIN.exists():
            fail(f"{BIN} is missing: run `cargo build -p flowgate` first")
        self.dir = tempfile.TemporaryDirectory(prefix="flowgate-console-")
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "FLOWGATE_DATABASE_URL": f"sqlite://{self.dir.name}/flowgate.db",
            "FLOWGATE_SECRETS_KEY": SECRETS_KEY,
            "FLOWGATE_LISTEN": "127.0.0.1:0",
            "FLOWGATE_LOG": "warn",
            "FLOWGATE_SHUTDOWN_GRACE_SECS": "2",
            # The partner API of the outbound-call step is a local server.
            "FLOWGATE_ALLOW_PRIVATE_HOSTS": "true",
        }
        out = subprocess.run([str(BIN), "keys", "create", "--name", "browser-test", "--scopes", "admin"],
                             env=self.env, cwd=self.dir.name, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            fail(f"flowgate keys create failed: {out.stderr}")
        self.key = out.stdout.strip()
        self.log = open(Path(self.dir.name) / "server.log", "w")
        self.proc = subprocess.Popen([str(BIN), "serve"], env=self.env, cwd=self.dir.name,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.url = None
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                if line.startswith("flowgate listening on "):
                    self.url = line.strip().removeprefix("flowgate listening on ")
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(60):
            self.stop()
            fail("the server did not report its address within 60 s")

    def call(self, method, path, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=20) as res:
                text = res.read().decode()
                return res.status, dict(res.headers), (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return e.code, dict(e.headers), parsed

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()

    def server_log(self):
        try:
            return (Path(self.dir.name) / "server.log").read_text()[-4000:]
        except OSError:
            return ""


class Partner(BaseHTTPRequestHandler):
    """A stand-in partner API on loopback: GET /tiers?key=... -> {"tier": "gold"}."""

    def do_GET(self):
        body = json.dumps({"tier": "gold", "path": self.path.split("?", 1)[0]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def set_editor(page, label, text):
    """Replaces the whole content of the CodeMirror editor with accessible name `label`."""
    box = page.get_by_role("textbox", name=label)
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def version_row(page, n):
    return page.get_by_role("listitem", name=re.compile(rf"^Version {n}\b"))


def confirm_dialog(page, title_part):
    dlg = page.get_by_role("dialog")
    expect(dlg).to_be_visible()
    expect(dlg).to_contain_text(title_part)
    dlg.get_by_role("button", name="Confirm").click()
    expect(dlg).to_be_hidden()


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def main():
    started = time.monotonic()
    server = Server()
    # A hard bound on the whole test: stop the server and fail if it runs too long.
    def watchdog():
        server.stop()
        print(f"FAIL: the browser test exceeded {TOTAL_SECONDS} s", file=sys.stderr, flush=True)
        os._exit(1)
    timer = threading.Timer(TOTAL_SECONDS, watchdog)
    timer.daemon = True
    timer.start()
    try:
        run(server)
    except Exception:
        print("server log (tail):\n" + server.server_log(), file=sys.stderr)
        raise
    finally:
        timer.cancel()
        server.stop()
    print(f"console browser test passed in {time.monotonic() - started:.1f} s; screenshots in {SHOTS}")


def run(server):
    base = server.url
    origin = urlparse(base)

    step("CSP and security headers on /console")
    req = urllib.request.Request(base + "/console")
    with urllib.request.urlopen(req, timeout=10) as res:
        headers = {k.lower(): v for k, v in res.headers.items()}
        html = res.read().decode()
    csp = headers.get("content-security-policy", "")
    if not csp:
        fail("/console has no Content-Security-Policy header")
    for part in ("default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'"):
        if part not in csp:
            fail(f"CSP lacks {part!r}: {csp}")
    if "unsafe-inline" in csp.split("script-src", 1)[1].split(";", 1)[0]:
        fail("CSP allows inline scripts")
    if headers.get("x-content-type-options") != "nosniff":
        fail("X-Content-Type-Options: nosniff missing")
    if "<script>" in html or " style=" in html:
        fail("index.html has inline script or style")

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        context.set_default_timeout(10_000)
        expect.set_options(timeout=10_000)
        page = context.new_page()
        requests = []
        console_problems = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: console_problems.append(m.text)
                if m.type == "error" and ("Content Security Policy" in m.text or "Refused" in m.text) else None)
        page.on("pageerror", lambda e: console_problems.append(f"page error: {e}"))

        step("a wrong key shows an error and makes no session")
        page.goto(base + "/console")
        page.get_by_label("API key").wait_for()
        load_ms = page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0]; return Math.round(n.loadEventEnd - n.startTime); }")
        print(f"   first page loaded in {load_ms} ms (information only)")
        page.get_by_label("API key").fill("fgk_this_is_not_a_key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not accepted")
        if any(c["name"] == "flowgate_session" for c in context.cookies()):
            fail("a wrong key created a session cookie")
        shot(page, "sign-in")

        step("sign in")
        page.get_by_label("API key").fill(server.key)
        page.get_by_role("button", name="Sign in").click()
        nav = page.get_by_role("navigation", name="Main")
        for name in ("Flows", "Runs", "Schedules", "Secrets", "Keys", "Audit"):
            expect(nav.get_by_role("link", name=name)).to_be_visible()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        cookie = [c for c in context.cookies() if c["name"] == "flowgate_session"]
        if not cookie or not cookie[0]["httpOnly"] or cookie[0]["sameSite"] != "Strict":
            fail(f"session cookie is not HttpOnly + SameSite=Strict: {cookie}")
        stored = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.documentElement.outerHTML])")
        if server.key in stored:
            fail("the API key is kept in the page or in browser storage")

        step("new flow from the template")
        page.get_by_role("button", name="New flow").click()
        dlg = page.get_by_role("dialog")
        dlg.get_by_label("Flow name").fill(FLOW)
        dlg.get_by_role("button", name="Create").click()
        expect(page.get_by_role("textbox", name="Script editor")).to_be_visible()
        expect(page.get_by_role("tab", name="flow.toml")).to_be_visible()
        expect(page.get_by_role("tab", name="main.rhai")).to_be_visible()
        problems = page.get_by_role("region", name="Problems")
        expect(problems).to_contain_text("No problems")

        step("a syntax error appears in Problems with its line")
        set_editor(page, "Script editor", SCRIPT_BROKEN)
        expect(problems).to_contain_text(re.compile(r"main\.rhai:2:\d+"), timeout=5_000)
        expect(page.locator(".cm-lint-marker-error").first).to_be_visible()
        shot(page, "editor-problem")

        step("fix it")
        set_editor(page, "Script editor", SCRIPT_V1)
        expect(problems).to_contain_text("No problems", timeout=5_000)
        step("a manifest error names flow.toml and its line; Add file / Remove file")
        page.get_by_role("tab", name="flow.toml").click()
        manifest = page.get_by_role("textbox", name="Manifest editor")
        manifest.click()
        page.keyboard.press("Control+End")
        page.keyboard.insert_text("\ncolour = \"blue\"\n")
        expect(problems).to_contain_text(re.compile(r"flow\.toml:\d+"), timeout=5_000)
        page.keyboard.press("Control+z")
        expect(problems).to_contain_text("No problems", timeout=5_000)
        page.get_by_role("button", name="Add file").click()
        dlg = page.get_by_role("dialog")
        dlg.get_by_label("File name").fill("tests/empty.json")
        dlg.get_by_role("button", name="Add").click()
        expect(page.get_by_role("tab", name="tests/empty.json")).to_have_attribute("aria-selected", "true")
        page.get_by_role("button", name="Remove file").click()
        confirm_dialog(page, "Remove tests/empty.json")
        expect(page.get_by_role("tab", name="tests/empty.json")).to_have_count(0)
        page.get_by_role("tab", name="main.rhai").click()
        page.get_by_role("textbox", name="Script editor").click()

        step("autocomplete offers the script API")
        page.keyboard.press("Control+End")
        page.keyboard.type("\nusers::")
        options = page.get_by_role("listbox")
        expect(options).to_contain_text("find_by_email", timeout=5_000)
        expect(page.locator(".cm-tooltip-autocomplete")).to_contain_text("users::find_by_email(")
        shot(page, "editor-autocomplete")
        page.keyboard.press("Escape")
        set_editor(page, "Script editor", SCRIPT_V1)

        step("dry run (saves the draft)")
        page.get_by_label("Request body").fill('{"name": "Ann"}')
        page.get_by_role("button", name="Dry run").click()
        side = page.get_by_role("complementary", name="Test the draft")
        expect(side).to_contain_text("Response 200")
        expect(side).to_contain_text("Hello, Ann")
        expect(side).to_contain_text("hello from the console")
        shot(page, "editor")
        page.get_by_role("button", name="Save draft").click()
        expect(page.get_by_role("status").filter(has_text="draft version 1")).to_be_visible()

        step("publish version 1 (dialog + Confirm)")
        page.goto(f"{base}/console/flows/{FLOW}")
        row = version_row(page, 1)
        row.get_by_role("button", name="Publish").click()
        confirm_dialog(page, "Publish version 1")
        expect(page.locator(".live-banner")).to_contain_text("Version 1")

        step("call the endpoint over HTTP")
        status, _, body = server.call("POST", f"/flows/{FLOW}", {"name": "Bob"})
        if status != 200 or body != {"greeting": "Hello, Bob"}:
            fail(f"flow call answered {status} {body}")

        step("see the run")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs").click()
        page.get_by_label("Flow", exact=True).select_option(FLOW)
        page.get_by_label("Trigger", exact=True).select_option("http")
        run_link = page.get_by_role("link", name=re.compile(r"^Run ")).first
        expect(run_link).to_be_visible()
        expect(page.get_by_role("button", name="Load more")).to_be_hidden()
        shot(page, "runs")
        run_link.click()
        expect(page.get_by_role("heading", name="Summary")).to_be_visible()
        expect(page.locator("dl.facts")).to_contain_text("succeeded")
        expect(page.get_by_role("region", name="Logs")).to_contain_text("hello from the console")
        expect(page.get_by_role("link", name="Download")).to_have_attribute("href", re.compile(r"/fixture$"))
        expect(page.get_by_role("button", name="Replay")).to_be_visible()
        shot(page, "run")

        run_id = page.url.rsplit("/", 1)[1]
        page.get_by_role("button", name="Replay").click()
        expect(page).not_to_have_url(re.compile(re.escape(run_id) + "$"))
        expect(page.get_by_role("heading", name="Summary")).to_be_visible()
        page.go_back()
        expect(page).to_have_url(re.compile(re.escape(run_id) + "$"))
        expect(page.get_by_role("button", name="Save as fixture")).to_be_visible()
        step("download the run as a fixture")
        with page.expect_download() as download:
            page.get_by_role("link", name="Download").click()
        fixture = json.loads(Path(download.value.path()).read_text())
        if fixture.get("expect", {}).get("body") != {"greeting": "Hello, Bob"} or SECRET_VALUE in json.dumps(fixture):
            fail(f"the downloaded fixture is not the run's: {fixture}")

        step("save the run as a fixture")
        page.get_by_role("button", name="Save as fixture").click()
        fixture_tab = page.get_by_role("tab", name=re.compile(r"^tests.run-.*\.json$"))
        expect(fixture_tab).to_be_visible()
        expect(fixture_tab).to_have_attribute("aria-selected", "true")
        page.get_by_role("button", name="Run fixtures").click()
        expect(page.get_by_role("complementary", name="Test the draft")).to_contain_text("1 passed, 0 failed")

        step("edit: version 3, fixtures show the difference")
        page.get_by_role("tab", name="main.rhai").click()
        set_editor(page, "Script editor", SCRIPT_V2)
        # The session ends while there are unsaved changes: sign in again in a dialog, keep them.
        context.clear_cookies()
        page.keyboard.insert_text(" ")
        dlg = page.get_by_role("dialog")
        expect(dlg).to_contain_text("Your session has ended", timeout=5_000)
        dlg.get_by_label("API key").fill(server.key)
        dlg.get_by_role("button", name="Sign in").click()
        expect(dlg).to_be_hidden()
        set_editor(page, "Script editor", SCRIPT_V2)
        page.get_by_role("button", name="Save draft").click()
        expect(page.get_by_role("status").filter(has_text="draft version 3")).to_be_visible()
        page.get_by_role("button", name="Run fixtures").click()
        expect(page.get_by_role("complementary", name="Test the draft")).to_contain_text("0 passed, 1 failed")

        step("diff version 1 with version 3")
        page.goto(f"{base}/console/flows/{FLOW}")
        version_row(page, 3).get_by_role("button", name="Diff").click()
        diff = page.locator("section.diff")
        expect(page.get_by_label("From", exact=True)).to_have_value("1")
        expect(page.get_by_label("To", exact=True)).to_have_value("3")
        expect(diff.get_by_role("region", name="main.rhai modified")).to_be_visible()
        expect(diff.locator(".cm-mergeView").first).to_be_visible()
        page.get_by_label("From", exact=True).select_option("2")
        diff.get_by_role("button", name="Compare").click()
        expect(diff.get_by_role("region", name=re.compile(r"^tests.run-.*\.json unchanged$"))).to_be_visible()
        shot(page, "diff")

        step("publish version 3, then roll back to version 1")
        version_row(page, 3).get_by_role("button", name="Publish").click()
        confirm_dialog(page, "Publish version 3")
        expect(page.locator(".live-banner")).to_contain_text("Version 3")
        status, _, body = server.call("POST", f"/flows/{FLOW}", {"name": "Bob"})
        if body != {"greeting": "Hi, Bob"}:
            fail(f"version 3 answered {status} {body}")
        version_row(page, 1).get_by_role("button", name="Rollback").click()
        confirm_dialog(page, "Roll back to version 1")
        expect(page.locator(".live-banner")).to_contain_text("Version 1")
        expect(version_row(page, 3).get_by_role("button", name="Retire")).to_be_visible()
        status, _, body = server.call("POST", f"/flows/{FLOW}", {"name": "Bob"})
        if body != {"greeting": "Hello, Bob"}:
            fail(f"after rollback the flow answered {status} {body}")
        shot(page, "flow")

        step("escape closes a dialog and gives focus back")
        retire = version_row(page, 3).get_by_role("button", name="Retire")
        retire.click()
        expect(page.get_by_role("dialog")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_be_hidden()
        expect(retire).to_be_focused()

        step("schedules show next fire times")
        status, _, created = server.call("POST", "/admin/v1/flows", {"files": {
            "flow.toml": 'name = "nightly-report"\n\n[[trigger]]\nkind = "schedule"\ncron = "0 0 2 * * *"\ntimezone = "Europe/Amsterdam"\n',
            "main.rhai": '#{ ok: true }\n'}})
        if status != 201:
            fail(f"creating a scheduled flow answered {status} {created}")
        status, _, published = server.call("POST", "/admin/v1/flows/nightly-report/versions/1/publish", {})
        if status != 200:
            fail(f"publishing the scheduled flow answered {status} {published}")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Schedules").click()
        sched = page.get_by_role("region", name="Schedule of nightly-report")
        expect(sched).to_contain_text("0 0 2 * * *")
        expect(sched.locator("time")).to_have_count(5)
        shot(page, "schedules")

        step("a secret's value never reappears")
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Secrets").click()
        page.get_by_label("Secret name").fill("CONSOLE_DEMO_TOKEN")
        page.get_by_label("Secret value").fill(SECRET_VALUE)
        page.get_by_role("button", name="Save secret").click()
        expect(page.get_by_role("row", name=re.compile("CONSOLE_DEMO_TOKEN"))).to_be_visible()
        expect(page.get_by_label("Secret value")).to_have_value("")
        shot(page, "secrets")
        pages = ["/console/secrets", "/console/flows", f"/console/flows/{FLOW}", "/console/runs",
                 "/console/keys", "/console/audit", "/console/schedules"]
        for path in pages:
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            page.locator("main h1").first.wait_for()
            if SECRET_VALUE in page.content():
                fail(f"the secret value shows on {path}")
            if path == "/console/keys":
                shot(page, "keys")
            if path == "/console/audit":
                shot(page, "audit")
        status, _, listing = server.call("GET", "/admin/v1/secrets")
        if SECRET_VALUE in json.dumps(listing):
            fail("the secrets list returns the value")

        step("a run's outbound HTTP calls, and its fixture replays them offline")
        partner = ThreadingHTTPServer(("127.0.0.1", 0), Partner)
        threading.Thread(target=partner.serve_forever, daemon=True).start()
        port = partner.server_address[1]
        try:
            files = {
                "flow.toml": 'name = "partner-tier"\n\n[[trigger]]\nkind = "http"\n\n[auth]\nmode = "api_key"\n\n[http]\nallow = ["127.0.0.1"]\n',
                "main.rhai": f'let r = http::get("http://127.0.0.1:{port}/tiers", #{{ query: #{{ key: "abc123" }} }});\n#{{ tier: r.body.tier }}\n',
            }
            for method, path, body in (("POST", "/admin/v1/flows", {"files": files}),
                                       ("POST", "/admin/v1/flows/partner-tier/versions/1/publish", {}),
                                       ("POST", "/flows/partner-tier", {})):
                status, _, answer = server.call(method, path, body)
                if status >= 300:
                    fail(f"{method} {path} answered {status} {answer}")
            if answer != {"tier": "gold"}:
                fail(f"partner-tier answered {answer}")
        finally:
            partner.shutdown()
        page.goto(f"{base}/console/runs?flow=partner-tier")
        page.get_by_role("link", name=re.compile(r"^Run ")).first.click()
        calls = page.get_by_role("region", name="HTTP calls", exact=True)
        expect(calls).to_contain_text(f"http://127.0.0.1:{port}/tiers")
        expect(calls).to_contain_text("[redacted]")
        expect(calls).not_to_contain_text("abc123")
        expect(calls.get_by_role("cell", name="200", exact=True)).to_be_visible()
        calls.scroll_into_view_if_needed()
        shot(page, "run-http-calls")
        page.get_by_role("button", name="Save as fixture").click()
        expect(page.get_by_role("tab", name=re.compile(r"^tests.run-.*\.json$"))).to_be_visible()
        page.get_by_role("button", name="Run fixtures").click()  # offline: the partner server is gone
        expect(page.get_by_role("complementary", name="Test the draft")).to_contain_text("1 passed, 0 failed")

        step("a state-changing call without the CSRF token is refused")
        res = page.evaluate("""async () => {
            const r = await fetch('/admin/v1/secrets/CSRF_PROBE', {method: 'PUT', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify({value: 'x'})});
            return {status: r.status, type: r.headers.get('content-type'), body: await r.text()};
        }""")
        if res["status"] != 403 or "problem+json" not in (res["type"] or ""):
            fail(f"PUT without X-CSRF-Token answered {res}")
        res = page.evaluate("async () => (await fetch('/admin/v1/flows', {credentials: 'same-origin'})).status")
        if res != 200:
            fail(f"GET with the session cookie answered {res}")

        step("create a read-only key: shown once")
        page.goto(f"{base}/console/keys")
        page.get_by_label("Key name").fill("reader")
        page.get_by_label("flows:read", exact=True).check()
        page.get_by_label("runs:read", exact=True).check()
        page.get_by_role("button", name="Create key").click()
        reader_key = page.get_by_role("textbox", name="New API key").input_value()
        if not reader_key.startswith("fgk_"):
            fail(f"the new key is not shown: {reader_key!r}")
        expect(page.get_by_role("row", name=re.compile(r"^reader "))).to_contain_text("flows:read runs:read")
        page.reload()
        if reader_key in page.content():
            fail("the new key is shown again after a reload")

        step("narrow screen (390x844)")
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{base}/console/flows")
        expect(page.get_by_role("link", name=FLOW)).to_be_visible()
        shot(page, "mobile-flows")
        page.goto(f"{base}/console/flows/{FLOW}/edit/3")
        expect(page.get_by_role("textbox", name="Script editor")).to_be_visible()
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > 400:
            fail(f"the editor page scrolls sideways at 390 px ({width} px wide)")
        shot(page, "mobile-editor")
        page.set_viewport_size({"width": 1280, "height": 800})

        step("sign out")
        page.goto(f"{base}/console/flows")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("API key")).to_be_visible()
        res = page.evaluate("async () => (await fetch('/console/session', {credentials: 'same-origin'})).status")
        if res != 401:
            fail(f"after Sign out the session still answers {res}")
        res = page.evaluate("async () => (await fetch('/admin/v1/flows', {credentials: 'same-origin'})).status")
        if res != 401:
            fail(f"after Sign out the admin API still answers {res}")

        step("a read-only key sees no actions it may not use")
        page.get_by_label("API key").fill(reader_key)
        page.get_by_role("button", name="Sign in").click()
        nav = page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Runs")).to_be_visible()
        for name in ("Secrets", "Keys", "Audit"):
            expect(nav.get_by_role("link", name=name)).to_have_count(0)
        expect(page.get_by_role("button", name="New flow")).to_have_count(0)
        page.goto(f"{base}/console/flows/{FLOW}")
        expect(version_row(page, 1)).to_be_visible()
        for name in ("Publish", "Rollback", "Retire", "Edit", "New version"):
            expect(page.get_by_role("button", name=name)).to_have_count(0)
        expect(version_row(page, 3).get_by_role("button", name="Diff")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("API key")).to_be_visible()

        step("every request stayed on the server")
        outside = [u for u in requests
                   if not u.startswith(("data:", "about:", "blob:"))
                   and (urlparse(u).hostname != "127.0.0.1" or urlparse(u).port != origin.port)]
        if outside:
            fail(f"requests left the server: {outside[:5]}")
        if console_problems:
            fail(f"browser errors (CSP or script): {console_problems[:5]}")
        print(f"{len(requests)} browser requests, all to {origin.netloc}")
        browser.close()


if __name__ == "__main__":
    main()
