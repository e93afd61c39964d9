// Flows list, one flow's page (live version, versions, diff) and the package editor.
import { get, post, listAll, enc, qs, ApiError } from "./api.js";
import { h, replace, append, field, timeEl, pretty, table, tableWrap, clear } from "./dom.js";
import { can, BASE, navigate, guard, link } from "./app.js";
import { dialog, statusLine, errorBox, badge } from "./ui.js";

// CodeMirror is loaded on the pages that show code (a separate chunk of the bundle).
let E = null;
async function loadEditor() {
  if (!E) E = await import("./editor.js");
  return E;
}

const FLOW_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function triggerKinds(manifest) {
  const kinds = [];
  const re = /^\s*kind\s*=\s*"([a-z]+)"/gm;
  let m;
  while ((m = re.exec(manifest || ""))) kinds.push(m[1]);
  return kinds;
}

function scriptName(manifest) {
  const m = /^\s*script\s*=\s*"([^"]+)"/m.exec(manifest || "");
  return m ? m[1] : "main.rhai";
}

function triggerMethod(manifest) {
  const m = /^\s*method\s*=\s*"([A-Z]+)"/m.exec(manifest || "");
  return m ? m[1] : "POST";
}

export function template(name) {
  return {
    "flow.toml": `name = "${name}"
title = "${name}"
description = "Describe what this flow does for its callers."

[[trigger]]
kind = "http"
method = "POST"

[auth]
mode = "api_key"
`,
    "main.rhai": `// request.body is the JSON body the caller sent (a map here).
let body = request.body;
if type_of(body) != "map" {
    body = #{};
}

// The script's value is the response body (status 200, JSON).
#{
    flow: ctx.flow,
    received: body,
    greeting: if "name" in body { "Hello, " + body.name } else { "Hello" },
}
`,
  };
}

// ---------------------------------------------------------------- flows list

export async function flowsPage(main, _args, _q, stale) {
  document.title = "Flows · Flowgate console";
  const head = h("div", { class: "page-head" }, h("h1", null, "Flows"));
  if (can("flows:write")) {
    const btn = h("button", { type: "button", class: "primary" }, "New flow");
    btn.addEventListener("click", () => newFlowDialog());
    head.append(btn);
  }
  main.append(head);
  const flows = await listAll("/admin/v1/flows");
  if (stale()) return;
  if (!flows.length) {
    main.append(h("p", { class: "empty" }, "No flows yet.", can("flows:write") ? " Start one with New flow." : ""));
    return;
  }
  const rows = flows.map((f) => {
    const triggers = h("td", null, "…");
    const runs = h("div", { class: "last-runs" }, can("runs:read") ? "…" : "—");
    const v = f.live_version;
    // Triggers of the live version (or of the latest version when none is live).
    (v ? Promise.resolve(v) : get(`/admin/v1/flows/${enc(f.name)}`).then((d) => Math.max(0, ...d.versions.map((x) => x.version))))
      .then((n) => (n ? get(`/admin/v1/flows/${enc(f.name)}/versions/${n}`) : null))
      .then((ver) => replace(triggers, (ver && triggerKinds(ver.files["flow.toml"]).join(", ")) || "—"))
      .catch(() => replace(triggers, "—"));
    if (can("runs:read")) {
      get(`/admin/v1/runs${qs({ flow: f.name, limit: 3 })}`)
        .then((page) => {
          const items = page.items || [];
          replace(runs, items.length ? items.map((r) => link(`${BASE}/runs/${r.id}`, r.status, { class: `badge ${r.status}`, title: `${r.status} at ${r.created_at}` })) : "none");
        })
        .catch(() => replace(runs, "—"));
    }
    return h(
      "tr",
      null,
      h("th", { scope: "row" }, link(`${BASE}/flows/${enc(f.name)}`, f.name)),
      h("td", null, v ? `Version ${v}` : "none"),
      h("td", null, f.disabled ? badge("disabled") : v ? badge("live") : badge("draft")),
      triggers,
      h("td", null, runs),
    );
  });
  main.append(tableWrap(table(["Name", "Live version", "Status", "Triggers", "Last runs"], rows, "Flows"), "Flows table"));
  loadEditor().catch(() => {}); // warm the editor chunk for the next page
}

function newFlowDialog() {
  const input = h("input", { type: "text", autocomplete: "off", spellcheck: "false", pattern: "[a-z0-9][a-z0-9\\-]{0,62}", required: true });
  const f = field("Flow name", input, "Lower-case letters, digits and dashes, e.g. order-lookup. The flow's URL is /flows/<name>.");
  dialog({
    title: "New flow",
    body: f.wrap,
    confirmLabel: "Create",
    onConfirm: async () => {
      const name = input.value.trim();
      if (!FLOW_NAME.test(name)) throw new Error("A flow name is lower-case letters, digits and dashes, starting with a letter or digit.");
      try {
        await get(`/admin/v1/flows/${enc(name)}`);
        throw new Error(`A flow named ${name} already exists.`);
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
      }
      return name;
    },
  }).then((name) => {
    if (name) navigate(`${BASE}/new/${name}`);
  });
}

// ---------------------------------------------------------------- one flow

export async function flowPage(main, [name], query, stale) {
  document.title = `${name} · Flowgate console`;
  const flow = await get(`/admin/v1/flows/${enc(name)}`);
  if (stale()) return;
  const versions = [...flow.versions].sort((a, b) => b.version - a.version);
  const live = flow.live_version;
  const status = statusLine();
  const reload = () => navigate(location.pathname + location.search, { replace: true });

  const actions = h("div", { class: "actions" });
  if (can("flows:write")) {
    const base = live || (versions[0] && versions[0].version);
    if (base) {
      const b = h("button", { type: "button", class: "primary" }, "New version");
      b.addEventListener("click", () => navigate(`${BASE}/flows/${enc(name)}/edit/${base}`));
      actions.append(b);
    }
  }
  if (can("runs:write") && live) {
    const b = h("button", { type: "button" }, "Run now");
    b.addEventListener("click", async () => {
      try {
        const r = await post(`/admin/v1/flows/${enc(name)}/run`);
        navigate(`${BASE}/runs/${r.run_id}`);
      } catch (e) {
        status.fail(e);
      }
    });
    actions.append(b);
  }
  if (can("runs:read")) actions.append(link(`${BASE}/runs?flow=${enc(name)}`, "Runs of this flow", { class: "button" }));

  const liveBanner = h(
    "p",
    { class: "live-banner", role: "status" },
    live ? ["Live: ", h("strong", null, `Version ${live}`), " — ", h("code", null, `/flows/${name}`)] : "No live version: publish a version to make the flow callable.",
    flow.disabled ? [" ", badge("disabled")] : null,
  );
  if (live) liveBanner.append(" · ", h("a", { href: `/openapi/flows/${enc(name)}/v${live}.json`, target: "_blank", rel: "noopener" }, "OpenAPI"));

  const diffBox = h("section", { class: "diff", "aria-labelledby": "diff-title" });
  const list = h("ul", { class: "versions", "aria-label": "Versions" });
  for (const v of versions) list.append(versionRow(name, v, live, status, reload, (from, to) => showDiff(diffBox, name, versions, live, from, to)));

  append(
    main,
    h("div", { class: "page-head" }, h("h1", null, name), actions),
    liveBanner,
    status.el,
    h("section", { "aria-labelledby": "versions-title" }, h("h2", { id: "versions-title" }, "Versions"), list),
    diffBox,
  );
  const from = query.get("from");
  const to = query.get("to");
  showDiff(diffBox, name, versions, live, from ? Number(from) : null, to ? Number(to) : null, !(from || to));
}

function versionRow(name, v, live, status, reload, diff) {
  const isLive = v.version === live;
  const label = `Version ${v.version}, ${v.status}${isLive ? ", live" : ""}`;
  const buttons = h("div", { class: "actions" });
  const act = (text, title, bodyText, run, danger = false, extra = null) => {
    const b = h("button", { type: "button", class: danger ? "danger-outline" : "" }, text);
    b.addEventListener("click", async () => {
      const ok = await dialog({
        title,
        body: [h("p", null, bodyText), extra ? extra.node : null],
        danger,
        onConfirm: () => run(extra ? extra.value() : undefined),
      });
      if (ok) {
        status.say(`${title.replace(/\?$/, "")}: done.`);
        reload();
      }
    });
    buttons.append(b);
  };
  if (v.status === "draft" && can("flows:write")) {
    const b = h("button", { type: "button" }, "Edit");
    b.addEventListener("click", () => navigate(`${BASE}/flows/${enc(name)}/edit/${v.version}`));
    buttons.append(b);
  }
  if (v.status === "draft" && can("flows:publish")) {
    const force = h("input", { type: "checkbox" });
    const extra = {
      node: h("label", { class: "check" }, force, " Publish even if the OpenAPI compatibility report finds breaking changes"),
      value: () => force.checked,
    };
    act(
      "Publish",
      `Publish version ${v.version}?`,
      `Version ${v.version} becomes the live version of ${name}: calls to /flows/${name} run it.${live ? ` Version ${live} stays callable at its pinned URL.` : ""}`,
      (f) => post(`/admin/v1/flows/${enc(name)}/versions/${v.version}/publish`, f ? { force: true } : {}),
      false,
      extra,
    );
  }
  if (v.status === "published" && !isLive && can("flows:publish")) {
    act("Rollback", `Roll back to version ${v.version}?`, `Version ${v.version} becomes live again in place of version ${live}.`, () =>
      post(`/admin/v1/flows/${enc(name)}/rollback`, { version: v.version }),
    );
    act("Retire", `Retire version ${v.version}?`, `Its pinned URL /flows/${name}/v${v.version} will answer 410 Gone.`, () =>
      post(`/admin/v1/flows/${enc(name)}/versions/${v.version}/retire`), true);
  }
  if (live && !isLive) {
    const b = h("button", { type: "button" }, "Diff");
    b.addEventListener("click", () => diff(live, v.version));
    buttons.append(b);
  }
  return h(
    "li",
    { "aria-label": label, class: isLive ? "live" : "" },
    h("div", { class: "version-title" }, h("strong", null, `Version ${v.version}`), " ", badge(v.status), isLive ? [" ", badge("live")] : null),
    h("div", { class: "version-meta" }, "created ", timeEl(v.created_at), v.published_at ? [" · published ", timeEl(v.published_at)] : null, v.retired_at ? [" · retired ", timeEl(v.retired_at)] : null),
    buttons,
  );
}

async function fetchDiff(name, from, to) {
  try {
    return await get(`/admin/v1/flows/${enc(name)}/diff${qs({ from, to })}`);
  } catch (e) {
    // Servers without the diff endpoint: compare the two versions' files here.
    if (!(e instanceof ApiError) || (e.status !== 404 && e.status !== 405) || e.code === "not_found_flow") throw e;
    const [a, b] = await Promise.all([get(`/admin/v1/flows/${enc(name)}/versions/${from}`), get(`/admin/v1/flows/${enc(name)}/versions/${to}`)]);
    const names = [...new Set([...Object.keys(a.files), ...Object.keys(b.files)])].sort();
    return {
      from,
      to,
      files: names.map((n) => {
        const x = a.files[n] ?? null;
        const y = b.files[n] ?? null;
        return { name: n, from: x, to: y, status: x === null ? "added" : y === null ? "removed" : x === y ? "unchanged" : "modified" };
      }),
      compatibility: null,
    };
  }
}

function showDiff(box, name, versions, live, from, to, passive = false) {
  clear(box);
  const numbers = versions.map((v) => v.version);
  const fromSel = h("select", null, numbers.map((n) => h("option", { value: n }, `Version ${n}${n === live ? " (live)" : ""}`)));
  const toSel = h("select", null, numbers.map((n) => h("option", { value: n }, `Version ${n}${n === live ? " (live)" : ""}`)));
  fromSel.value = String(from ?? live ?? numbers[numbers.length - 1] ?? "");
  toSel.value = String(to ?? numbers[0] ?? "");
  const out = h("div", { class: "diff-out", "aria-live": "polite" });
  const compare = h("button", { type: "submit" }, "Compare");
  const form = h("form", { class: "inline-form" }, field("From", fromSel).wrap, field("To", toSel).wrap, compare);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
  append(box, h("h2", { id: "diff-title" }, "Diff"), numbers.length < 2 ? h("p", { class: "empty" }, "Only one version so far.") : form, out);
  async function run() {
    const a = Number(fromSel.value);
    const b = Number(toSel.value);
    history.replaceState(null, "", `${location.pathname}${qs({ from: a, to: b })}`);
    replace(out, h("p", null, `Comparing version ${a} with version ${b}…`));
    try {
      const [d] = await Promise.all([fetchDiff(name, a, b), loadEditor()]);
      renderDiff(out, d);
    } catch (e) {
      replace(out, errorBox(e));
    }
  }
  if (numbers.length >= 2 && !passive) {
    run();
    box.scrollIntoView({ block: "start" });
  }
}

function renderDiff(out, d) {
  clear(out);
  const c = d.compatibility;
  if (c) {
    const changes = c.changes || [...(c.breaking_changes || []), ...(c.non_breaking || [])];
    out.append(
      h("div", { class: `compat ${c.breaking ? "breaking" : "compatible"}` },
        h("h3", null, c.breaking ? "OpenAPI: breaking changes" : "OpenAPI: no breaking changes"),
        Array.isArray(changes) && changes.length
          ? h("ul", null, changes.map((x) => typeof x === "string"
              ? h("li", null, x)
              : h("li", null, badge(x.breaking ? "breaking" : "compatible", x.breaking ? "failed" : "succeeded"), " ", x.location ? [h("code", null, x.location), " "] : null, x.detail || x.message || JSON.stringify(x))))
          : h("p", null, "No changes to the documented API."),
      ),
    );
  } else {
    out.append(h("p", { class: "hint" }, "No OpenAPI compatibility report for this pair."));
  }
  for (const f of d.files) {
    const sec = h("section", { class: `diff-file ${f.status}`, "aria-label": `${f.name} ${f.status}` }, h("h3", null, f.name, " ", badge(f.status)));
    out.append(sec);
    if (f.status === "unchanged") continue;
    const holder = h("div", { class: "merge" });
    sec.append(holder);
    E.createMerge({
      parent: holder,
      name: f.name,
      a: f.from ?? "",
      b: f.to ?? "",
      labelA: `${f.name} in version ${d.from}`,
      labelB: `${f.name} in version ${d.to}`,
    });
  }
}

// ---------------------------------------------------------------- editor

let catalogue = [];
let catalogueLoaded = false;
function loadCatalogue() {
  if (catalogueLoaded) return;
  catalogueLoaded = true;
  get("/admin/v1/script-api")
    .then((r) => {
      catalogue = r.items || [];
    })
    .catch(() => {
      catalogueLoaded = false;
    });
}

export async function newFlowPage(main, [name], _q, stale) {
  try {
    await get(`/admin/v1/flows/${enc(name)}`);
    navigate(`${BASE}/flows/${enc(name)}`, { replace: true });
    return;
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  await loadEditor();
  if (stale()) return;
  editor(main, { flow: name, base: null, files: template(name), live: null });
}

export async function editorPage(main, [name, n], query, stale) {
  const [ver, flow] = await Promise.all([get(`/admin/v1/flows/${enc(name)}/versions/${n}`), get(`/admin/v1/flows/${enc(name)}`), loadEditor()]);
  if (stale()) return;
  editor(main, { flow: name, base: ver, files: ver.files, live: flow.live_version, open: query.get("file") });
}

function editor(main, { flow, base, files: initial, live, open }) {
  loadCatalogue();
  document.title = `Edit ${flow} · Flowgate console`;
  const files = { ...initial };
  let saved = JSON.stringify(files);
  let savedVersion = base && base.status === "draft" ? base.version : null;
  let isNew = !base;
  const views = new Map();
  let active = "flow.toml";
  let problems = [];
  const dirty = () => JSON.stringify(files) !== saved;
  guard.dirty = dirty;

  const title = h("h1", null);
  const sub = h("p", { class: "sub" });
  const setTitle = () => {
    replace(title, isNew ? `New flow ${flow}` : `Edit ${flow}`);
    replace(
      sub,
      savedVersion ? `Draft version ${savedVersion}` : base ? `New draft from version ${base.version}` : "Not saved yet",
      dirty() ? " · unsaved changes" : "",
      " · ",
      live ? ["Live: ", h("strong", null, `Version ${live}`)] : "no live version",
      !isNew ? [" · ", link(`${BASE}/flows/${enc(flow)}`, "Versions")] : null,
    );
  };

  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Files" });
  const panels = h("div", { class: "panels" });
  const status = statusLine();
  const problemsList = h("div", { class: "problems-list" }, h("p", { class: "empty" }, "Checking…"));
  const problemsRegion = h("section", { class: "problems", role: "region", "aria-label": "Problems" }, h("h2", null, "Problems"), problemsList);

  const scriptFile = () => scriptName(files["flow.toml"]);
  const order = () => {
    const s = scriptFile();
    const rest = Object.keys(files).filter((f) => f !== "flow.toml" && f !== s).sort();
    return ["flow.toml", ...(files[s] !== undefined ? [s] : []), ...rest];
  };
  const labelFor = (f) => (f === "flow.toml" ? "Manifest editor" : f === scriptFile() ? "Script editor" : `${f} editor`);
  const tabId = (f) => `tab-${f.replace(/[^A-Za-z0-9]/g, "_")}`;

  function renderTabs() {
    clear(tabs);
    for (const f of order()) {
      const t = h("button", { type: "button", role: "tab", id: tabId(f), "aria-selected": f === active ? "true" : "false", "aria-controls": `${tabId(f)}-panel`, tabindex: f === active ? "0" : "-1" }, f);
      t.addEventListener("click", () => select(f));
      t.addEventListener("keydown", (e) => {
        const o = order();
        const i = o.indexOf(f);
        let next = null;
        if (e.key === "ArrowRight") next = o[(i + 1) % o.length];
        if (e.key === "ArrowLeft") next = o[(i - 1 + o.length) % o.length];
        if (e.key === "Home") next = o[0];
        if (e.key === "End") next = o[o.length - 1];
        if (next) {
          e.preventDefault();
          select(next);
          tabs.querySelector(`#${tabId(next)}`).focus();
        }
      });
      tabs.append(t);
    }
    removeBtn.disabled = active === "flow.toml" || active === scriptFile();
  }

  function viewFor(f) {
    if (views.has(f)) return views.get(f);
    const panel = h("div", { role: "tabpanel", id: `${tabId(f)}-panel`, "aria-labelledby": tabId(f), class: "panel" });
    panels.append(panel);
    const view = E.createEditor({
      parent: panel,
      name: f,
      doc: files[f],
      label: labelFor(f),
      completion: f.endsWith(".rhai") ? E.scriptCompletion(() => catalogue) : null,
      onChange: (text) => {
        files[f] = text;
        setTitle();
        scheduleCheck();
      },
    });
    const entry = { panel, view };
    views.set(f, entry);
    E.showProblems(view, problems.filter((p) => p.file === f));
    return entry;
  }

  function select(f) {
    active = f;
    for (const [name, { panel }] of views) panel.hidden = name !== f;
    viewFor(f).panel.hidden = false;
    renderTabs();
  }

  function renderProblems(list, note) {
    problems = list;
    clear(problemsList);
    if (note) problemsList.append(h("p", { class: "hint" }, note));
    if (!list.length) {
      if (!note) problemsList.append(h("p", { class: "ok" }, "No problems."));
    } else {
      problemsList.append(
        h("ul", null, list.map((p) => {
          const where = `${p.file || "?"}${p.line ? `:${p.line}` : ""}${p.column ? `:${p.column}` : ""}`;
          const b = h("button", { type: "button", class: `problem ${p.severity || "error"}` }, h("span", { class: "where" }, where), " ", p.message);
          b.addEventListener("click", () => {
            if (p.file && files[p.file] !== undefined) {
              select(p.file);
              E.goTo(views.get(p.file).view, p.line, p.column);
            }
          });
          return h("li", null, b);
        })),
      );
    }
    for (const [f, { view }] of views) E.showProblems(view, list.filter((p) => p.file === f));
  }

  let checkTimer = null;
  let checkSeq = 0;
  function scheduleCheck() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(check, 500);
  }
  async function check() {
    checkSeq += 1;
    const seq = checkSeq;
    try {
      const r = await post("/admin/v1/check", { files });
      if (seq === checkSeq) renderProblems(r.problems || []);
    } catch (e) {
      if (seq !== checkSeq) return;
      if (e.status === 404 || e.status === 405) renderProblems([], "Live checking is not available on this server; problems are shown when you save.");
      else renderProblems([], `Could not check the package: ${e.message}`);
    }
  }

  function problemsFromError(e) {
    const p = e.problem || {};
    if (Array.isArray(p.problems)) return p.problems;
    if (p.file || p.line) return [{ file: p.file, line: p.line, column: p.column, severity: "error", message: p.detail || e.message }];
    return null;
  }

  async function save() {
    if (!dirty() && savedVersion) {
      status.say(`No changes since draft version ${savedVersion}.`);
      return savedVersion;
    }
    status.say("Saving…");
    try {
      const snapshot = JSON.stringify(files);
      const r = isNew ? await post("/admin/v1/flows", { files }) : await post(`/admin/v1/flows/${enc(flow)}/versions`, { files });
      saved = snapshot;
      savedVersion = r.version;
      isNew = false;
      history.replaceState(null, "", `${BASE}/flows/${enc(flow)}/edit/${r.version}`);
      setTitle();
      status.say(`Saved as draft version ${r.version}.`);
      return r.version;
    } catch (e) {
      const list = problemsFromError(e);
      if (list) renderProblems(list);
      status.fail(e);
      return null;
    }
  }

  // Toolbar
  const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Editor actions" });
  const addBtn = h("button", { type: "button" }, "Add file");
  const removeBtn = h("button", { type: "button" }, "Remove file");
  addBtn.addEventListener("click", addFile);
  removeBtn.addEventListener("click", removeFile);
  if (can("flows:write")) {
    const saveBtn = h("button", { type: "button", class: "primary" }, "Save draft");
    saveBtn.addEventListener("click", save);
    const testBtn = h("button", { type: "button" }, "Run fixtures");
    testBtn.addEventListener("click", runFixtures);
    append(toolbar, saveBtn, testBtn);
  }
  append(toolbar, addBtn, removeBtn);

  async function addFile() {
    const input = h("input", { type: "text", autocomplete: "off", spellcheck: "false", required: true });
    const name = await dialog({
      title: "Add file",
      body: field("File name", input, "For example tests/paid.json (a fixture), input.schema.json or output.schema.json.").wrap,
      confirmLabel: "Add",
      onConfirm: () => {
        const f = input.value.trim();
        if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/.test(f) || f.includes("..")) throw new Error("Use a relative file name like tests/ok.json.");
        if (files[f] !== undefined) throw new Error(`${f} already exists.`);
        return f;
      },
    });
    if (!name) return;
    files[name] = name.startsWith("tests/") && name.endsWith(".json")
      ? `${JSON.stringify({ name: name.slice(6, -5), trigger: { kind: "http" }, request: { method: triggerMethod(files["flow.toml"]), path: "", body: {} }, expect: { status: 200 } }, null, 2)}\n`
      : name.endsWith(".schema.json")
        ? `${JSON.stringify({ type: "object", properties: {}, additionalProperties: true }, null, 2)}\n`
        : "";
    select(name);
    setTitle();
    scheduleCheck();
  }

  async function removeFile() {
    const f = active;
    if (f === "flow.toml" || f === scriptFile()) return;
    const ok = await dialog({ title: `Remove ${f}?`, body: `${f} is left out of the next draft you save.`, danger: true });
    if (!ok) return;
    delete files[f];
    const entry = views.get(f);
    if (entry) {
      entry.view.destroy();
      entry.panel.remove();
      views.delete(f);
    }
    select("flow.toml");
    setTitle();
    scheduleCheck();
  }

  // Fixtures
  const fixturesOut = h("div", { class: "results", "aria-live": "polite" }, h("p", { class: "hint" }, "Run fixtures runs the tests/*.json files on the server, as flowgate test does."));
  async function runFixtures() {
    replace(fixturesOut, h("p", null, "Running fixtures…"));
    try {
      const r = await post("/admin/v1/test", { files });
      replace(
        fixturesOut,
        h("p", { class: r.failed ? "error" : "ok" }, `${r.passed} passed, ${r.failed} failed`),
        r.results && r.results.length
          ? h("ul", { class: "fixture-results" }, r.results.map((x) => h("li", null, badge(x.passed ? "passed" : "failed"), " ", h("strong", null, x.file), x.name ? ` — ${x.name}` : "",
              x.differences && x.differences.length ? h("ul", null, x.differences.map((d) => h("li", null, h("code", null, d)))) : null)))
          : h("p", { class: "hint" }, "The package has no tests/*.json fixtures. Add one with Add file."),
      );
    } catch (e) {
      const list = problemsFromError(e);
      if (list) renderProblems(list);
      replace(fixturesOut, errorBox(e));
    }
  }

  // Dry run
  const body = h("textarea", { rows: "6", spellcheck: "false", class: "code" });
  body.value = '{\n  "name": "Ann"\n}\n';
  const method = h("input", { type: "text", value: triggerMethod(files["flow.toml"]), size: "7" });
  const path = h("input", { type: "text", value: "", placeholder: "e.g. /123" });
  const caller = h("textarea", { rows: "3", spellcheck: "false", class: "code", placeholder: '{"kind": "api_key", "id": "partner", "scopes": []}' });
  const mocks = h("textarea", { rows: "4", spellcheck: "false", class: "code", placeholder: '[{"method": "GET", "url": "https://api.partner.example/x", "status": 200, "body": {}}]' });
  const dryOut = h("div", { class: "results", "aria-live": "polite" });
  const dryBtn = h("button", { type: "submit", class: "primary" }, "Dry run");
  const dryForm = h(
    "form",
    { class: "dry-run", "aria-labelledby": "dry-title" },
    h("h2", { id: "dry-title" }, "Try it"),
    field("Request body", body, "JSON (or any text). Runs the saved draft without committing changes; unsaved edits are saved as a draft first.").wrap,
    h("details", null, h("summary", null, "Method, path, caller and HTTP mocks"),
      h("div", { class: "row" }, field("Method", method).wrap, field("Path", path).wrap),
      field("Caller (JSON)", caller).wrap,
      field("HTTP mocks (JSON array)", mocks).wrap),
    dryBtn,
    dryOut,
  );
  const parseJson = (text, what) => {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(`${what} is not valid JSON: ${e.message}`);
    }
  };
  dryForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const raw = body.value.trim();
      let reqBody = null;
      if (raw) {
        try {
          reqBody = JSON.parse(raw);
        } catch {
          reqBody = raw;
        }
      }
      const input = { request: { method: method.value.trim() || "POST", path: path.value.trim(), query: {}, headers: typeof reqBody === "string" ? { "content-type": "text/plain" } : { "content-type": "application/json" }, body: reqBody } };
      if (caller.value.trim()) input.caller = parseJson(caller.value, "Caller");
      if (mocks.value.trim()) input.http = parseJson(mocks.value, "HTTP mocks");
      dryBtn.disabled = true;
      replace(dryOut, h("p", null, "Running…"));
      const v = await save();
      if (!v) {
        replace(dryOut, errorBox("Save the draft first: it has problems."));
        return;
      }
      const r = await post(`/admin/v1/flows/${enc(flow)}/versions/${v}/dry-run`, input);
      const res = r.response || {};
      replace(
        dryOut,
        h("h3", null, `Response ${res.status ?? ""}`),
        h("pre", { class: "code", tabindex: "0", "aria-label": "Response body" }, pretty(res.body)),
        h("h3", null, "Logs"),
        r.logs && r.logs.length ? h("ul", { class: "logs" }, r.logs.map((l) => h("li", null, badge(l.level || "info"), " ", l.message))) : h("p", { class: "empty" }, "No log lines."),
        h("h3", null, "Changes"),
        h("pre", { class: "code", tabindex: "0", "aria-label": "Intended changes" }, pretty(r.changes)),
      );
    } catch (err) {
      replace(dryOut, errorBox(err));
    } finally {
      dryBtn.disabled = false;
    }
  });

  main.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "s") {
      e.preventDefault();
      if (can("flows:write")) save();
    }
  });

  append(
    main,
    h("div", { class: "page-head" }, h("div", null, title, sub), toolbar),
    status.el,
    h("div", { class: "editor-grid" },
      h("div", { class: "editor-main" }, tabs, panels, problemsRegion),
      h("aside", { class: "editor-side", "aria-label": "Test the draft" },
        can("flows:write") ? dryForm : null,
        can("flows:write") ? h("section", { "aria-labelledby": "fx-title" }, h("h2", { id: "fx-title" }, "Fixtures"), fixturesOut) : null),
    ),
  );
  setTitle();
  select(files[scriptFile()] !== undefined ? scriptFile() : "flow.toml");
  if (open && files[open] !== undefined) select(open);
  check();
}

export function openEditorAt(flow, version, file) {
  navigate(`${BASE}/flows/${enc(flow)}/edit/${version}${file ? qs({ file }) : ""}`);
}
