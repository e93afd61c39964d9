// A tiny DOM helper: h("button", {onclick, class}, "text", child...). No innerHTML anywhere.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "value") el.value = v;
      else if (k === "checked") el.checked = !!v;
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, ...children);
  return el;
}

export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, ...children);
}

let uid = 0;
export function id(prefix = "id") {
  uid += 1;
  return `${prefix}-${uid}`;
}

// A labelled form control: returns {wrap, input}.
export function field(label, input, hint) {
  const inputId = input.id || id("f");
  input.id = inputId;
  const hintEl = hint ? h("p", { class: "hint", id: `${inputId}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  const wrap = h("div", { class: "field" }, h("label", { for: inputId }, label), input, hintEl);
  return { wrap, input };
}

export function fmtTime(s) {
  if (!s) return "—";
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return s;
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
}

export function timeEl(s) {
  return s ? h("time", { datetime: s }, fmtTime(s)) : "—";
}

export function pretty(v) {
  if (v === undefined) return "";
  if (typeof v === "string") return v;
  return JSON.stringify(v, null, 2);
}

export function tableWrap(table, label) {
  return h("div", { class: "table-wrap", role: "region", "aria-label": label, tabindex: "0" }, table);
}

export function table(headers, rows, caption) {
  return h(
    "table",
    null,
    caption ? h("caption", { class: "sr-only" }, caption) : null,
    h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", null, rows),
  );
}
