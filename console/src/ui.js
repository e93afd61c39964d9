// Shared widgets: the in-page confirmation dialog and status messages.
import { h, id } from "./dom.js";

const FOCUSABLE = 'button:not([disabled]), [href], input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

// Opens a modal dialog (role=dialog). `body` is a node or text; `fields` returns a value
// from the dialog's inputs on Confirm. Resolves to that value (true by default), or null
// when cancelled (Cancel, Escape, click on the backdrop).
export function dialog({ title, body, confirmLabel = "Confirm", danger = false, onConfirm }) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const titleId = id("dlg-title");
    const descId = id("dlg-desc");
    const error = h("p", { class: "error", role: "alert" });
    const confirm = h("button", { type: "submit", class: danger ? "danger" : "primary" }, confirmLabel);
    const cancel = h("button", { type: "button" }, "Cancel");
    const form = h(
      "form",
      { class: "dialog", role: "dialog", "aria-modal": "true", "aria-labelledby": titleId, "aria-describedby": descId },
      h("h2", { id: titleId }, title),
      h("div", { id: descId, class: "dialog-body" }, body),
      error,
      h("div", { class: "actions" }, confirm, cancel),
    );
    const backdrop = h("div", { class: "backdrop" }, form);
    const close = (value) => {
      backdrop.remove();
      document.removeEventListener("keydown", onKey, true);
      if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
      resolve(value);
    };
    const onKey = (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        close(null);
      } else if (e.key === "Tab") {
        const items = [...form.querySelectorAll(FOCUSABLE)];
        if (!items.length) return;
        const first = items[0];
        const last = items[items.length - 1];
        if (e.shiftKey && document.activeElement === first) {
          e.preventDefault();
          last.focus();
        } else if (!e.shiftKey && document.activeElement === last) {
          e.preventDefault();
          first.focus();
        } else if (!form.contains(document.activeElement)) {
          e.preventDefault();
          first.focus();
        }
      }
    };
    cancel.addEventListener("click", () => close(null));
    backdrop.addEventListener("mousedown", (e) => {
      if (e.target === backdrop) close(null);
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.textContent = "";
      confirm.disabled = true;
      try {
        const v = onConfirm ? await onConfirm() : true;
        close(v === undefined || v === null ? true : v);
      } catch (err) {
        error.textContent = err.message || String(err);
        confirm.disabled = false;
      }
    });
    document.addEventListener("keydown", onKey, true);
    document.body.append(backdrop);
    const firstInput = form.querySelector("input, textarea, select");
    (firstInput || confirm).focus();
  });
}

// A live status line: say(text) / fail(err) / clear.
export function statusLine(cls = "status") {
  const el = h("p", { class: cls, role: "status", "aria-live": "polite" });
  return {
    el,
    say(text) {
      el.classList.remove("error");
      el.textContent = text;
    },
    fail(err) {
      el.classList.add("error");
      el.textContent = err && err.message ? err.message : String(err);
    },
    clear() {
      el.classList.remove("error");
      el.textContent = "";
    },
  };
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}` }, text);
}
