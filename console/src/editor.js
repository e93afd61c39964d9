// CodeMirror 6 editors: per-file language, lint gutter, script-API completion, merge view.
import { EditorState } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection,
  highlightSpecialChars, dropCursor,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  StreamLanguage, syntaxHighlighting, defaultHighlightStyle, bracketMatching, indentOnInput,
  foldGutter, foldKeymap,
} from "@codemirror/language";
import { searchKeymap, highlightSelectionMatches, search } from "@codemirror/search";
import { autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { lintGutter, lintKeymap, setDiagnostics } from "@codemirror/lint";
import { json } from "@codemirror/lang-json";
import { toml } from "@codemirror/legacy-modes/mode/toml";
import { MergeView } from "@codemirror/merge";
import { StyleModule } from "style-mod";
import { rhai } from "./rhai.js";

// Strict CSP (style-src 'self') blocks the <style> element CodeMirror's style-mod would add to
// the document. style-mod already uses a constructed stylesheet (adoptedStyleSheets, which CSP
// does not restrict) for shadow roots; give it a document "root" without `head` so it takes
// that path for the document too.
const documentRoot = {
  ownerDocument: document,
  get adoptedStyleSheets() {
    return document.adoptedStyleSheets;
  },
  set adoptedStyleSheets(sheets) {
    document.adoptedStyleSheets = sheets;
  },
};
const mountStyles = StyleModule.mount;
StyleModule.mount = (root, modules, options) => mountStyles.call(StyleModule, root === document ? documentRoot : root, modules, options);

const tomlLang = StreamLanguage.define(toml);

function languageFor(name) {
  if (name.endsWith(".toml")) return tomlLang;
  if (name.endsWith(".json")) return json();
  if (name.endsWith(".rhai")) return rhai;
  return [];
}

// Script-API completion. `catalogue()` returns the items of GET /admin/v1/script-api (or []).
export function scriptCompletion(catalogue) {
  return (context) => {
    const m = context.matchBefore(/[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_0-9]*)*|::?$/);
    if (!m && !context.explicit) return null;
    const items = catalogue();
    if (!items.length) return null;
    const text = m ? m.text : "";
    const at = text.lastIndexOf("::");
    if (at >= 0) {
      const ns = text.slice(0, at);
      const options = items
        .filter((it) => it.namespace === ns && it.name.startsWith(`${ns}::`))
        .map((it) => ({
          label: it.name.slice(ns.length + 2),
          type: it.kind === "variable" ? "variable" : "function",
          detail: it.signature || "",
          info: it.doc || "",
        }));
      if (!options.length) return null;
      return { from: m.from + at + 2, options, validFor: /^[A-Za-z0-9_]*$/ };
    }
    if (text.length < 1 && !context.explicit) return null;
    const seen = new Set();
    const options = [];
    for (const it of items) {
      if (it.namespace && it.name.includes("::")) {
        if (seen.has(it.namespace)) continue;
        seen.add(it.namespace);
        options.push({ label: `${it.namespace}::`, type: "namespace", detail: "namespace", apply: `${it.namespace}::` });
      } else {
        options.push({
          label: it.name,
          type: it.kind === "variable" ? "variable" : "function",
          detail: it.signature || "",
          info: it.doc || "",
        });
      }
    }
    return { from: m ? m.from : context.pos, options, validFor: /^[A-Za-z0-9_]*$/ };
  };
}

// A code editor for one package file. `label` becomes the accessible name of the text box.
export function createEditor({ parent, name, doc, label, onChange, completion, readOnly = false }) {
  const extensions = [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    foldGutter(),
    drawSelection(),
    dropCursor(),
    indentOnInput(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    bracketMatching(),
    closeBrackets(),
    highlightActiveLine(),
    highlightSelectionMatches(),
    search({ top: true }),
    lintGutter(),
    languageFor(name),
    keymap.of([
      ...closeBracketsKeymap,
      ...defaultKeymap,
      ...searchKeymap,
      ...historyKeymap,
      ...foldKeymap,
      ...completionKeymap,
      ...lintKeymap,
      indentWithTab,
    ]),
    EditorView.contentAttributes.of({ "aria-label": label }),
    EditorView.lineWrapping,
  ];
  if (completion) extensions.push(autocompletion({ override: [completion], icons: false }));
  if (readOnly) extensions.push(EditorState.readOnly.of(true));
  if (onChange) {
    extensions.push(EditorView.updateListener.of((u) => {
      if (u.docChanged) onChange(u.state.doc.toString());
    }));
  }
  return new EditorView({ state: EditorState.create({ doc, extensions }), parent });
}

// Problems → gutter marks. `problems` are {line, column, severity, message} of this file.
export function showProblems(view, problems) {
  const doc = view.state.doc;
  const diagnostics = problems.map((p) => {
    const lineNo = Math.min(Math.max(p.line || 1, 1), doc.lines);
    const line = doc.line(lineNo);
    const from = Math.min(line.from + Math.max((p.column || 1) - 1, 0), line.to);
    const to = from < line.to ? from + 1 : from;
    return { from, to, severity: p.severity === "warning" ? "warning" : "error", message: p.message };
  });
  view.dispatch(setDiagnostics(view.state, diagnostics));
}

export function goTo(view, line, column) {
  const doc = view.state.doc;
  const l = doc.line(Math.min(Math.max(line || 1, 1), doc.lines));
  const pos = Math.min(l.from + Math.max((column || 1) - 1, 0), l.to);
  view.dispatch({ selection: { anchor: pos }, scrollIntoView: true });
  view.focus();
}

// A read-only side-by-side comparison.
export function createMerge({ parent, name, a, b, labelA, labelB }) {
  const ext = (label) => [
    lineNumbers(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    languageFor(name),
    EditorState.readOnly.of(true),
    EditorView.editable.of(false),
    EditorView.contentAttributes.of({ "aria-label": label }),
    EditorView.lineWrapping,
  ];
  return new MergeView({
    a: { doc: a, extensions: ext(labelA) },
    b: { doc: b, extensions: ext(labelB) },
    parent,
    collapseUnchanged: { margin: 3, minSize: 6 },
  });
}
