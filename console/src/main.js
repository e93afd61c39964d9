// Flowgate console entry point: session, layout, navigation, routing.
import { api, get, setCsrfToken, onUnauthorized, ApiError } from "./api.js";
import { h, replace, field } from "./dom.js";
import { dialog } from "./ui.js";
import { session, can, BASE, setRenderer, navigate, guard, link } from "./app.js";
import { flowsPage, flowPage, editorPage, newFlowPage } from "./flows.js";
import { runsPage, runPage } from "./runs.js";
import { secretsPage, schedulesPage, keysPage, auditPage } from "./admin.js";

const root = document.getElementById("app");
let signInMessage = "";

function startSession(s) {
  session.current = s;
  setCsrfToken(s.csrf_token);
}

function endSession(message) {
  session.current = null;
  setCsrfToken(null);
  signInMessage = message || "";
  guard.dirty = () => false;
  render();
}

let reauthOpen = false;
onUnauthorized(() => {
  if (!session.current) return;
  if (!guard.dirty()) {
    endSession("Your session has ended. Sign in again.");
    return;
  }
  // Unsaved work in the editor: sign in again in a dialog and keep the page as it is.
  if (reauthOpen) return;
  reauthOpen = true;
  const input = h("input", { type: "password", autocomplete: "off", spellcheck: "false", required: true });
  dialog({
    title: "Your session has ended",
    body: [h("p", null, "Sign in again to keep working; your unsaved changes stay in the editor."), field("API key", input).wrap],
    confirmLabel: "Sign in",
    onConfirm: async () => {
      const key = input.value.trim();
      input.value = "";
      try {
        startSession(await api("POST", "/console/session", { key }));
      } catch (err) {
        throw new Error(err.status === 401 ? "That API key was not accepted (wrong, expired or revoked)." : err.message);
      }
    },
  }).then((ok) => {
    reauthOpen = false;
    if (!ok) endSession("Your session has ended. Sign in again.");
  });
});

const NAV = [
  ["Flows", "/flows", "flows:read"],
  ["Runs", "/runs", "runs:read"],
  ["Schedules", "/schedules", "flows:read"],
  ["Secrets", "/secrets", "secrets:write"],
  ["Keys", "/keys", "keys:manage"],
  ["Audit", "/audit", "audit:read"],
];

function signInPage() {
  document.title = "Sign in · Flowgate console";
  const input = h("input", { type: "password", name: "key", autocomplete: "off", spellcheck: "false", required: true });
  const error = h("p", { class: "error", role: "alert" }, signInMessage);
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Flowgate console"),
    h("p", null, "Sign in with an API key. The key is exchanged for a session and not kept in this browser."),
    field("API key", input).wrap,
    error,
    button,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    input.value = "";
    if (!key) {
      error.textContent = "Enter an API key.";
      input.focus();
      return;
    }
    button.disabled = true;
    error.textContent = "";
    try {
      const s = await api("POST", "/console/session", { key });
      signInMessage = "";
      startSession(s);
      const p = location.pathname;
      navigate(p === BASE || p === `${BASE}/` || p === `${BASE}/signin` ? defaultPage() : p + location.search, { replace: true });
    } catch (err) {
      button.disabled = false;
      error.textContent =
        err.status === 401 ? "That API key was not accepted (wrong, expired or revoked)." : err.message;
      input.focus();
    }
  });
  replace(root, h("main", { id: "main", class: "signin-main" }, form));
  input.focus();
}

function defaultPage() {
  const first = NAV.find(([, , scope]) => can(scope));
  return BASE + (first ? first[1] : "/flows");
}

function layout(active) {
  const s = session.current;
  const nav = h(
    "nav",
    { "aria-label": "Main" },
    h(
      "ul",
      null,
      NAV.filter(([, , scope]) => can(scope)).map(([label, path]) => {
        const a = link(BASE + path, label);
        if (active === path) a.setAttribute("aria-current", "page");
        return h("li", null, a);
      }),
    ),
  );
  const signOut = h("button", { type: "button", class: "signout" }, "Sign out");
  signOut.addEventListener("click", async () => {
    try {
      await api("DELETE", "/console/session");
    } catch {
      // The session may already be gone server-side; signing out locally is what matters.
    }
    history.replaceState(null, "", BASE);
    endSession("You are signed out.");
  });
  const main = h("main", { id: "main", tabindex: "-1" });
  const header = h(
    "header",
    { class: "top" },
    h("a", { class: "brand", href: `${BASE}/flows`, "data-nav": "" }, "Flowgate"),
    nav,
    h("div", { class: "who" }, h("span", { class: "key-name", title: s.scopes.join(" ") }, s.key_name || "signed in"), signOut),
  );
  replace(root, h("a", { class: "skip", href: "#main" }, "Skip to content"), header, main);
  return main;
}

const ROUTES = [
  [/^\/flows\/?$/, "/flows", flowsPage],
  [/^\/new\/([a-z0-9][a-z0-9-]{0,62})$/, "/flows", newFlowPage],
  [/^\/flows\/([^/]+)\/edit\/(\d+)$/, "/flows", editorPage],
  [/^\/flows\/([^/]+)\/?$/, "/flows", flowPage],
  [/^\/runs\/?$/, "/runs", runsPage],
  [/^\/runs\/([^/]+)$/, "/runs", runPage],
  [/^\/secrets\/?$/, "/secrets", secretsPage],
  [/^\/schedules\/?$/, "/schedules", schedulesPage],
  [/^\/keys\/?$/, "/keys", keysPage],
  [/^\/audit\/?$/, "/audit", auditPage],
];

let renderSeq = 0;
async function render() {
  renderSeq += 1;
  const seq = renderSeq;
  if (!session.current) {
    signInPage();
    return;
  }
  let path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "/";
  if (path === "" || path === "/" || path === "/signin") {
    navigate(defaultPage(), { replace: true });
    return;
  }
  const route = ROUTES.find(([re]) => re.test(path));
  const main = layout(route ? route[1] : null);
  if (!route) {
    document.title = "Not found · Flowgate console";
    replace(main, h("h1", null, "Page not found"), h("p", null, link(defaultPage(), "Back to the console")));
    return;
  }
  const args = path.match(route[0]).slice(1).map(decodeURIComponent);
  guard.dirty = () => false;
  try {
    await route[2](main, args, new URLSearchParams(location.search), () => seq !== renderSeq);
  } catch (err) {
    if (seq !== renderSeq) return;
    if (err instanceof ApiError && err.status === 401) return;
    main.append(h("p", { class: "error", role: "alert" }, err.message || String(err)));
  }
  if (seq === renderSeq) {
    const h1 = main.querySelector("h1");
    if (h1 && document.activeElement === document.body) {
      h1.setAttribute("tabindex", "-1");
      h1.focus({ preventScroll: true });
    }
  }
}
setRenderer(render);

async function leaveOk() {
  // The editor keeps its unsaved state only in memory; ask (in-page) before dropping it.
  if (!guard.dirty()) return true;
  const ok = await dialog({
    title: "Leave the editor?",
    body: "Your changes are not saved as a draft yet and will be lost.",
    confirmLabel: "Leave",
    danger: true,
  });
  return ok !== null;
}

document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[data-nav]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE)) return;
  e.preventDefault();
  leaveOk().then((ok) => {
    if (!ok) return;
    guard.dirty = () => false;
    navigate(url.pathname + url.search);
  });
});
window.addEventListener("popstate", () => {
  guard.dirty = () => false;
  render();
});
window.addEventListener("beforeunload", (e) => {
  if (guard.dirty()) {
    e.preventDefault();
    e.returnValue = "";
  }
});

async function boot() {
  try {
    startSession(await get("/console/session"));
  } catch {
    session.current = null;
  }
  render();
}
boot();
