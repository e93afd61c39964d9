// The admin API client. The console holds no credential of its own: the browser sends the
// HttpOnly session cookie; state-changing calls add the CSRF token the session gave us.

let csrfToken = null;
let onSessionLost = null;

export function setCsrfToken(token) {
  csrfToken = token;
}

export function onUnauthorized(handler) {
  onSessionLost = handler;
}

export class ApiError extends Error {
  constructor(status, problem) {
    const detail =
      problem && typeof problem === "object"
        ? problem.detail || problem.title || `HTTP ${status}`
        : `HTTP ${status}${problem ? `: ${String(problem).slice(0, 200)}` : ""}`;
    super(detail);
    this.status = status;
    this.problem = problem && typeof problem === "object" ? problem : null;
  }
  get code() {
    return this.problem ? this.problem.code : undefined;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { title: "The server cannot be reached", detail: "The server cannot be reached." });
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && !path.startsWith("/console/session") && onSessionLost) onSessionLost();
    throw new ApiError(res.status, data);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;

// Follows next_cursor up to `max` items.
export async function listAll(path, max = 1000) {
  const items = [];
  let cursor = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await get(cursor ? `${path}${sep}cursor=${enc(cursor)}` : path);
    items.push(...(page.items || []));
    cursor = page.next_cursor;
    if (!cursor || items.length >= max) return items;
  }
}
