// Runs list with filters, and one run: status, timings, attempts, request, response, logs,
// outbound HTTP calls; Replay and Save as fixture.
import { get, post, listAll, enc, qs } from "./api.js";
import { h, append, replace, field, timeEl, pretty, table, tableWrap } from "./dom.js";
import { can, BASE, navigate, link } from "./app.js";
import { statusLine, badge } from "./ui.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "dead"];
const TRIGGERS = ["http", "webhook", "event", "schedule", "admin"];

function select(options, value, any) {
  const s = h("select", null, h("option", { value: "" }, any), options.map((o) => h("option", { value: o }, o)));
  s.value = value || "";
  return s;
}

export async function runsPage(main, _args, query, stale) {
  document.title = "Runs · Flowgate console";
  const flows = can("flows:read") ? await listAll("/admin/v1/flows").catch(() => []) : [];
  if (stale()) return;
  const flowSel = select(flows.map((f) => f.name), query.get("flow"), "All flows");
  const statusSel = select(STATUSES, query.get("status"), "Any status");
  const triggerSel = select(TRIGGERS, query.get("trigger"), "Any trigger");
  const form = h("form", { class: "filters", "aria-label": "Filter runs" }, field("Flow", flowSel).wrap, field("Status", statusSel).wrap, field("Trigger", triggerSel).wrap, h("button", { type: "submit" }, "Filter"));
  const apply = (e) => {
    if (e) e.preventDefault();
    navigate(`${BASE}/runs${qs({ flow: flowSel.value, status: statusSel.value, trigger: triggerSel.value })}`, { replace: true });
  };
  form.addEventListener("submit", apply);
  for (const s of [flowSel, statusSel, triggerSel]) s.addEventListener("change", apply);
  const tbody = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const refresh = h("button", { type: "button" }, "Refresh");
  refresh.addEventListener("click", () => navigate(location.pathname + location.search, { replace: true }));
  append(
    main,
    h("div", { class: "page-head" }, h("h1", null, "Runs"), refresh),
    form,
    tableWrap(h("table", null, h("caption", { class: "sr-only" }, "Runs, newest first"),
      h("thead", null, h("tr", null, ["Run", "Flow", "Version", "Trigger", "Status", "Started", "Duration", "Response"].map((x) => h("th", { scope: "col" }, x)))),
      tbody), "Runs table"),
    more,
  );
  const trigger = query.get("trigger");
  let cursor = null;
  let shown = 0;
  async function page() {
    more.hidden = true;
    // The trigger filter is applied here: keep reading pages until there is something to show.
    for (let i = 0; i < 10; i += 1) {
      const r = await get(`/admin/v1/runs${qs({ flow: query.get("flow"), status: query.get("status"), limit: 50, cursor })}`);
      const items = (r.items || []).filter((x) => !trigger || x.trigger === trigger);
      for (const run of items) tbody.append(runRow(run));
      shown += items.length;
      cursor = r.next_cursor;
      if (!cursor || items.length) break;
    }
    more.hidden = !cursor;
    if (!shown) tbody.append(h("tr", null, h("td", { colspan: "8", class: "empty" }, "No runs match.")));
  }
  more.addEventListener("click", page);
  await page();
}

function runRow(r) {
  return h(
    "tr",
    null,
    h("th", { scope: "row" }, link(`${BASE}/runs/${r.id}`, r.id.slice(0, 8) + "…" + r.id.slice(-4), { "aria-label": `Run ${r.id}`, title: r.id })),
    h("td", null, link(`${BASE}/flows/${enc(r.flow)}`, r.flow)),
    h("td", null, String(r.version)),
    h("td", null, r.trigger),
    h("td", null, badge(r.status)),
    h("td", null, timeEl(r.started_at || r.created_at)),
    h("td", null, r.duration_ms != null ? `${r.duration_ms} ms` : "—"),
    h("td", null, r.response_status != null ? String(r.response_status) : "—"),
  );
}

function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

function codeBlock(label, v) {
  return h("pre", { class: "code", tabindex: "0", "aria-label": label }, v === undefined || v === null ? "—" : pretty(v));
}

export async function runPage(main, [runId], _q, stale) {
  document.title = `Run ${runId.slice(0, 8)} · Flowgate console`;
  const r = await get(`/admin/v1/runs/${enc(runId)}`);
  if (stale()) return;
  const status = statusLine();
  const actions = h("div", { class: "actions" });
  if (can("runs:write")) {
    const b = h("button", { type: "button" }, "Replay");
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        const x = await post(`/admin/v1/runs/${enc(runId)}/replay`);
        navigate(`${BASE}/runs/${x.run_id}`);
      } catch (e) {
        status.fail(e);
        b.disabled = false;
      }
    });
    actions.append(b);
  }
  const fixtureName = `run-${runId.slice(-12)}`;
  if (can("flows:write") && can("flows:read")) {
    const b = h("button", { type: "button" }, "Save as fixture");
    b.addEventListener("click", async () => {
      b.disabled = true;
      status.say("Building the fixture…");
      try {
        const fixture = await get(`/admin/v1/runs/${enc(runId)}/fixture`);
        const ver = await get(`/admin/v1/flows/${enc(r.flow)}/versions/${r.version}`);
        const file = `tests/${fixtureName}.json`;
        const files = { ...ver.files, [file]: `${JSON.stringify(fixture, null, 2)}\n` };
        const created = await post(`/admin/v1/flows/${enc(r.flow)}/versions`, { files });
        navigate(`${BASE}/flows/${enc(r.flow)}/edit/${created.version}${qs({ file })}`);
      } catch (e) {
        status.fail(e);
        b.disabled = false;
      }
    });
    actions.append(b);
  }
  actions.append(h("a", { class: "button", href: `/admin/v1/runs/${enc(runId)}/fixture`, download: `${fixtureName}.json` }, "Download"));
  if (["queued", "running"].includes(r.status)) {
    const b = h("button", { type: "button" }, "Refresh");
    b.addEventListener("click", () => navigate(location.pathname, { replace: true }));
    actions.append(b);
    // Follow a run that is still going: look again shortly (while this page is shown).
    const here = location.pathname;
    setTimeout(() => {
      if (!stale() && location.pathname === here && !document.querySelector(".backdrop")) navigate(here, { replace: true });
    }, 2000);
  }

  append(
    main,
    h("div", { class: "page-head" }, h("h1", null, "Run ", h("code", null, runId)), actions),
    status.el,
    h("div", { class: "run-grid" },
      h("section", { "aria-labelledby": "run-summary" }, h("h2", { id: "run-summary" }, "Summary"),
        dl([
          ["Status", badge(r.status)],
          ["Flow", [link(`${BASE}/flows/${enc(r.flow)}`, r.flow), ` version ${r.version}`]],
          ["Trigger", r.trigger],
          ["Attempts", `${r.attempt} of ${r.max_attempts ?? "?"}`],
          ["Created", timeEl(r.created_at)],
          ["Started", timeEl(r.started_at)],
          ["Finished", timeEl(r.finished_at)],
          ["Duration", r.duration_ms != null ? `${r.duration_ms} ms` : "—"],
          ["Response status", r.response_status != null ? String(r.response_status) : "—"],
          r.scheduled_at ? ["Scheduled for", timeEl(r.scheduled_at)] : null,
          r.event_id ? ["Event", h("code", null, r.event_id)] : null,
          r.error ? ["Error", h("span", { class: "error" }, r.error)] : null,
        ])),
      h("section", { "aria-labelledby": "run-attempts" }, h("h2", { id: "run-attempts" }, "Attempts"),
        r.attempts && r.attempts.length
          ? tableWrap(table(["Attempt", "Started", "Finished", "Outcome", "Error"], r.attempts.map((a) => h("tr", null,
              h("td", null, String(a.attempt)), h("td", null, timeEl(a.started_at)), h("td", null, timeEl(a.finished_at)), h("td", null, a.outcome || "—"), h("td", null, a.error || "—")))), "Attempts table")
          : h("p", { class: "empty" }, "Not started yet.")),
    ),
    h("div", { class: "run-grid" },
      h("section", { "aria-labelledby": "run-request" }, h("h2", { id: "run-request" }, "Request"), codeBlock("Request", r.request)),
      h("section", { "aria-labelledby": "run-response" }, h("h2", { id: "run-response" }, "Response"), codeBlock("Response body", r.response_body))),
    h("section", { "aria-labelledby": "run-logs" }, h("h2", { id: "run-logs" }, "Logs"),
      r.logs && r.logs.length
        ? h("ol", { class: "logs" }, r.logs.map((l) => h("li", null, h("span", { class: "t" }, timeEl(l.time)), " ", badge(l.level), " ", h("span", { class: "msg" }, l.message))))
        : h("p", { class: "empty" }, "No log lines.")),
    h("section", { "aria-labelledby": "run-http" }, h("h2", { id: "run-http" }, "HTTP calls"), httpCalls(r.http_calls)),
  );
}

function httpCalls(calls) {
  if (!Array.isArray(calls)) return h("p", { class: "empty" }, "This server does not record outbound calls.");
  if (!calls.length) return h("p", { class: "empty" }, "No outbound calls.");
  return tableWrap(table(["Method", "URL", "Status", "Time", "Response"], calls.map((c) => h("tr", null,
    h("td", null, c.method),
    h("td", { class: "url" }, c.url),
    h("td", null, c.status != null ? String(c.status) : h("span", { class: "error" }, c.error || "error")),
    h("td", null, c.duration_ms != null ? `${c.duration_ms} ms` : "—"),
    h("td", null, c.response_body != null ? h("details", null, h("summary", null, "body"), h("pre", { class: "code" }, pretty(c.response_body))) : "—"),
  ))), "HTTP calls table");
}

