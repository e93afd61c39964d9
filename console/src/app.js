// Session state, scopes and navigation shared by every page.

export const session = { current: null };

export function can(scope) {
  const s = session.current;
  if (!s) return false;
  return s.scopes.includes("admin") || s.scopes.includes(scope);
}

export const BASE = "/console";

let renderHook = null;
export function setRenderer(fn) {
  renderHook = fn;
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  if (renderHook) renderHook();
}

// Unsaved-changes guard used by the editor.
export const guard = { dirty: () => false };

export function link(path, text, attrs = {}) {
  const a = document.createElement("a");
  a.href = path;
  a.dataset.nav = "";
  for (const [k, v] of Object.entries(attrs)) a.setAttribute(k, v);
  a.textContent = text;
  return a;
}
