// Rhai highlighting as a CodeMirror StreamLanguage (keywords, strings, comments, numbers,
// `namespace::` prefixes, the script API's variables).
import { StreamLanguage } from "@codemirror/language";

const KEYWORDS = new Set(
  "let const if else switch while loop for in do until break continue return throw try catch fn private import export as is_def_var is_def_fn global this".split(" "),
);
const ATOMS = new Set(["true", "false"]);
const BUILTIN_VARS = new Set(["request", "caller", "trigger", "ctx"]);
const BUILTIN_FNS = new Set(["respond", "fail", "print", "debug", "type_of", "parse_json", "to_json", "len"]);

function tokenString(quote) {
  return (stream, state) => {
    let escaped = false;
    let ch;
    while ((ch = stream.next()) != null) {
      if (ch === quote && !escaped) {
        state.tokenize = null;
        break;
      }
      escaped = !escaped && ch === "\\";
    }
    return "string";
  };
}

function tokenComment(stream, state) {
  let maybeEnd = false;
  let ch;
  while ((ch = stream.next()) != null) {
    if (ch === "/" && maybeEnd) {
      state.tokenize = null;
      break;
    }
    maybeEnd = ch === "*";
  }
  return "comment";
}

export const rhai = StreamLanguage.define({
  name: "rhai",
  startState: () => ({ tokenize: null, afterFn: false }),
  token(stream, state) {
    if (state.tokenize) return state.tokenize(stream, state);
    if (stream.eatSpace()) return null;
    const ch = stream.peek();
    if (stream.match("//")) {
      stream.skipToEnd();
      return "comment";
    }
    if (stream.match("/*")) {
      state.tokenize = tokenComment;
      return tokenComment(stream, state);
    }
    if (ch === '"' || ch === "`") {
      stream.next();
      state.tokenize = tokenString(ch);
      return state.tokenize(stream, state);
    }
    if (ch === "'") {
      stream.match(/^'(\\.|[^'\\])'/) || stream.next();
      return "string";
    }
    if (stream.match(/^0x[0-9a-fA-F_]+/) || stream.match(/^\d[\d_]*(\.\d[\d_]*)?([eE][+-]?\d+)?/)) return "number";
    if (stream.match("#{")) return "bracket";
    if (stream.match(/^[A-Za-z_][A-Za-z0-9_]*(?=::)/)) return "builtin";
    const word = stream.match(/^[A-Za-z_][A-Za-z0-9_]*/);
    if (word) {
      const w = word[0];
      if (state.afterFn) {
        state.afterFn = false;
        return "def";
      }
      if (w === "fn") {
        state.afterFn = true;
        return "keyword";
      }
      if (KEYWORDS.has(w)) return "keyword";
      if (ATOMS.has(w)) return "atom";
      if (BUILTIN_VARS.has(w)) return "variable-2";
      if (BUILTIN_FNS.has(w) && stream.match(/^\s*\(/, false)) return "builtin";
      return "variable";
    }
    if (stream.match("::")) return "operator";
    if (/[{}()[\]]/.test(ch)) {
      stream.next();
      return "bracket";
    }
    if (stream.match(/^[+\-*/%=!<>&|^?.,;:]+/)) return "operator";
    stream.next();
    return null;
  },
  languageData: {
    commentTokens: { line: "//", block: { open: "/*", close: "*/" } },
    closeBrackets: { brackets: ["(", "[", "{", '"', "`"] },
    indentOnInput: /^\s*[}\]]$/,
  },
});
