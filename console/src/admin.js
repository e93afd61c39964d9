// Secrets (write-only), schedules, API keys, audit log.
import { get, put, del, post, listAll, enc, qs } from "./api.js";
import { h, append, replace, field, timeEl, table, tableWrap } from "./dom.js";
import { can, BASE, navigate, link } from "./app.js";
import { dialog, statusLine, badge, errorBox } from "./ui.js";

const reload = () => navigate(location.pathname + location.search, { replace: true });

// ---------------------------------------------------------------- secrets

export async function secretsPage(main, _a, _q, stale) {
  document.title = "Secrets · Flowgate console";
  const items = await listAll("/admin/v1/secrets");
  if (stale()) return;
  const status = statusLine();
  const name = h("input", { type: "text", autocomplete: "off", spellcheck: "false", required: true, pattern: "[A-Za-z0-9_.\\-]+" });
  const value = h("input", { type: "password", autocomplete: "new-password", spellcheck: "false", required: true });
  const form = h("form", { class: "card inline-form", "aria-labelledby": "set-secret" },
    h("h2", { id: "set-secret" }, "Set a secret"),
    field("Secret name", name, "Flows read it with secrets::get(\"NAME\").").wrap,
    field("Secret value", value, "Stored encrypted; it is never shown again.").wrap,
    h("button", { type: "submit", class: "primary" }, "Save secret"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    const v = value.value;
    try {
      await put(`/admin/v1/secrets/${enc(n)}`, { value: v });
      value.value = "";
      name.value = "";
      navigate(location.pathname, { replace: true });
    } catch (err) {
      status.fail(err);
    }
  });
  const rows = items.map((s) => {
    const b = h("button", { type: "button", class: "danger-outline", "aria-label": `Delete ${s.name}` }, "Delete");
    b.addEventListener("click", async () => {
      const ok = await dialog({ title: `Delete secret ${s.name}?`, body: "Flows that read it get () from then on.", danger: true, onConfirm: () => del(`/admin/v1/secrets/${enc(s.name)}`) });
      if (ok) reload();
    });
    return h("tr", null, h("th", { scope: "row" }, h("code", null, s.name)), h("td", null, timeEl(s.updated_at)), h("td", null, b));
  });
  append(
    main,
    h("div", { class: "page-head" }, h("h1", null, "Secrets")),
    h("p", { class: "sub" }, "Values are write-only: set or replace them here; no page or API shows them again."),
    status.el,
    form,
    items.length ? tableWrap(table(["Name", "Updated", ""], rows, "Secrets"), "Secrets table") : h("p", { class: "empty" }, "No secrets yet."),
  );
}

// ---------------------------------------------------------------- schedules

export async function schedulesPage(main, _a, _q, stale) {
  document.title = "Schedules · Flowgate console";
  const r = await get("/admin/v1/schedules");
  if (stale()) return;
  const items = r.items || [];
  main.append(h("div", { class: "page-head" }, h("h1", null, "Schedules")));
  if (!items.length) {
    main.append(h("p", { class: "empty" }, "No live flow has a schedule trigger."));
    return;
  }
  for (const s of items) {
    main.append(
      h("section", { class: "card schedule", "aria-label": `Schedule of ${s.flow}` },
        h("h2", null, link(`${BASE}/flows/${enc(s.flow)}`, s.flow), " ", h("span", { class: "sub" }, `version ${s.version}`)),
        h("p", null, h("code", null, s.cron), ` in ${s.timezone}`),
        h("div", { class: "two" },
          h("div", null, h("h3", null, "Next fire times"), h("ol", null, (s.next || []).map((t) => h("li", null, timeEl(t))))),
          h("div", null, h("h3", null, "Recent ticks"),
            s.last_ticks && s.last_ticks.length
              ? h("ol", null, s.last_ticks.map((t) => h("li", null, timeEl(t.due_at), " ", badge(t.state), t.run_id && can("runs:read") ? [" ", link(`${BASE}/runs/${t.run_id}`, "run")] : null)))
              : h("p", { class: "empty" }, "None yet."))),
      ),
    );
  }
}

// ---------------------------------------------------------------- keys

const SCOPES = ["admin", "flows:read", "flows:write", "flows:publish", "runs:read", "runs:write", "secrets:write", "keys:manage", "audit:read", "users:read", "users:write", "events:publish"];

export async function keysPage(main, _a, _q, stale) {
  document.title = "Keys · Flowgate console";
  const items = await listAll("/admin/v1/keys");
  if (stale()) return;
  const status = statusLine();
  const shown = h("div", { "aria-live": "polite" });
  const name = h("input", { type: "text", autocomplete: "off", required: true });
  const extra = h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "billing:write users:admin" });
  const expires = h("input", { type: "datetime-local" });
  const boxes = SCOPES.map((s) => ({ s, input: h("input", { type: "checkbox", value: s }) }));
  const form = h("form", { class: "card", "aria-labelledby": "create-key" },
    h("h2", { id: "create-key" }, "Create a key"),
    field("Key name", name).wrap,
    h("fieldset", { class: "scopes" }, h("legend", null, "Scopes"), boxes.map(({ s, input }) => h("label", { class: "check" }, input, " ", s))),
    field("Other scopes", extra, "Space-separated, for flow endpoints (e.g. billing:write).").wrap,
    field("Expires (UTC, optional)", expires).wrap,
    h("button", { type: "submit", class: "primary" }, "Create key"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const scopes = [...boxes.filter((b) => b.input.checked).map((b) => b.s), ...extra.value.split(/[\s,]+/).filter(Boolean)];
    const body = { name: name.value.trim(), scopes };
    if (expires.value) body.expires_at = new Date(`${expires.value}Z`).toISOString().replace(/\.\d+Z$/, "Z");
    try {
      const k = await post("/admin/v1/keys", body);
      const keyBox = h("input", { type: "text", readonly: true, value: k.key, class: "code", "aria-label": "New API key" });
      replace(shown, h("div", { class: "card once", role: "status" },
        h("h2", null, `Key ${k.name} created`),
        h("p", null, "Copy it now: this is the only time it is shown."),
        keyBox));
      keyBox.focus();
      keyBox.select();
      const list = await listAll("/admin/v1/keys");
      replace(tableHolder, keysTable(list, status));
      form.reset();
    } catch (err) {
      status.fail(err);
    }
  });
  const tableHolder = h("div", null, keysTable(items, status));
  append(main, h("div", { class: "page-head" }, h("h1", null, "Keys")), status.el, shown, tableHolder, form);
}

function keysTable(items, status) {
  const rows = items.map((k) => {
    let action = "—";
    if (!k.revoked) {
      action = h("button", { type: "button", class: "danger-outline", "aria-label": `Revoke ${k.name}` }, "Revoke");
      action.addEventListener("click", async () => {
        const ok = await dialog({ title: `Revoke key ${k.name}?`, body: "Callers using it are refused from now on, and its console sessions end.", danger: true, onConfirm: () => del(`/admin/v1/keys/${enc(k.id)}`) });
        if (ok) {
          status.say(`Key ${k.name} revoked.`);
          reload();
        }
      });
    }
    return h("tr", null,
      h("th", { scope: "row" }, k.name),
      h("td", null, h("code", null, k.id)),
      h("td", null, (k.scopes || []).join(" ")),
      h("td", null, timeEl(k.created_at)),
      h("td", null, timeEl(k.last_used_at)),
      h("td", null, timeEl(k.expires_at)),
      h("td", null, k.revoked ? badge("revoked") : badge("active")),
      h("td", null, action));
  });
  return tableWrap(table(["Name", "Id", "Scopes", "Created", "Last used", "Expires", "State", ""], rows, "API keys"), "Keys table");
}

// ---------------------------------------------------------------- audit

export async function auditPage(main, _a, query, stale) {
  document.title = "Audit · Flowgate console";
  const f = (k, label, attrs = {}) => {
    const input = h("input", { type: "text", name: k, value: query.get(k) || "", autocomplete: "off", ...attrs });
    return { k, input, wrap: field(label, input).wrap };
  };
  const fields = [f("flow", "Flow"), f("caller", "Caller", { placeholder: "api_key:<id>" }), f("status", "Status", { inputmode: "numeric", size: "4" }), f("since", "Since", { placeholder: "2026-01-01T00:00:00Z" }), f("until", "Until")];
  const form = h("form", { class: "filters", "aria-label": "Filter the audit log" }, fields.map((x) => x.wrap), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    navigate(`${BASE}/audit${qs(Object.fromEntries(fields.map((x) => [x.k, x.input.value.trim()])))}`, { replace: true });
  });
  const tbody = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  append(
    main,
    h("div", { class: "page-head" }, h("h1", null, "Audit")),
    form,
    tableWrap(h("table", null, h("caption", { class: "sr-only" }, "Audit log, newest first"),
      h("thead", null, h("tr", null, ["Time", "Caller", "Method", "Path", "Status", "Duration", "Flow", "Request id"].map((x) => h("th", { scope: "col" }, x)))),
      tbody), "Audit table"),
    more,
  );
  let cursor = null;
  const params = Object.fromEntries(fields.map((x) => [x.k, query.get(x.k) || ""]));
  async function page() {
    try {
      const r = await get(`/admin/v1/audit${qs({ ...params, limit: 100, cursor })}`);
      if (stale()) return;
      for (const e of r.items || []) {
        tbody.append(h("tr", null,
          h("td", null, timeEl(e.time)),
          h("td", null, e.caller || "—"),
          h("td", null, e.method),
          h("td", { class: "url" }, e.path),
          h("td", null, badge(String(e.status), e.status >= 400 ? "failed" : "succeeded")),
          h("td", null, `${e.duration_ms} ms`),
          h("td", null, e.flow ? `${e.flow}${e.version ? ` v${e.version}` : ""}` : "—"),
          h("td", null, h("code", null, e.request_id))));
      }
      if (!tbody.children.length) tbody.append(h("tr", null, h("td", { colspan: "8", class: "empty" }, "No entries match.")));
      cursor = r.next_cursor;
      more.hidden = !cursor;
    } catch (err) {
      main.append(errorBox(err));
    }
  }
  more.addEventListener("click", page);
  await page();
}
