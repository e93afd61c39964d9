//! [`InputMap`]: one of a run's input maps (`request`, `caller`, `trigger`,
//! `ctx`) written from its parts as JSON text, for the run's stored input, and built
//! into its script value in the same pass, for the run itself. No
//! `serde_json::Value` is built, converted and freed on the way, and the two
//! forms cannot disagree: a second run of the same input (or a replay) parses
//! the text into what the first one was handed.

use rhai::{Array, Dynamic, ImmutableString, Map};
use serde_json::Value;

use crate::body::JsonBody;
use crate::convert::to_dynamic_at;
use crate::reads::InputReads;

/// A top-level input map being written: keys in the order they are added
/// (a key is added once), values at depth 1 (as
/// [`crate::convert::try_to_dynamic`] counts).
pub struct InputMap {
    text: String,
    /// The script value, when one is built (`None`: text only).
    value: Option<Map>,
    max_depth: usize,
    /// Whether some part could not be built (nested too deeply): the run
    /// then parses the text and fails on the depth limit as it would have.
    incomplete: bool,
    /// For the `request` map: the keys its script reads (the others are
    /// written as text only).
    request_reads: Option<InputReads>,
}

impl InputMap {
    /// A map written as text and built as a script value whose maps and
    /// arrays nest at most `max_depth` levels.
    pub fn new(max_depth: usize) -> Self {
        Self::with(Some(Map::new()), max_depth)
    }

    /// The `request` map, built as [`Self::new`] with only the keys the
    /// script reads (all of them in its text).
    pub fn request(max_depth: usize, reads: InputReads) -> Self {
        Self {
            request_reads: Some(reads),
            ..Self::new(max_depth)
        }
    }

    /// A map written as text only (a queued run's input: it parses the text
    /// when it runs).
    pub fn text_only() -> Self {
        Self::with(None, usize::MAX)
    }

    fn with(value: Option<Map>, max_depth: usize) -> Self {
        let mut text = String::with_capacity(128);
        text.push('{');
        Self {
            text,
            value,
            max_depth,
            incomplete: max_depth == 0,
            request_reads: None,
        }
    }

    /// Writes `"key":` (a name of the product's own: nothing to escape).
    fn key(&mut self, key: &'static str) {
        debug_assert!(!key.bytes().any(|b| ESCAPES[usize::from(b)]));
        if self.text.len() > 1 {
            self.text.push(',');
        }
        self.text.push('"');
        self.text.push_str(key);
        self.text.push_str("\":");
    }

    fn set(&mut self, key: &'static str, v: impl FnOnce() -> Option<Dynamic>) {
        if self.request_reads.is_some_and(|r| !r.request_key(key)) {
            return;
        }
        if let Some(m) = &mut self.value {
            match v() {
                Some(v) => {
                    m.insert(key.into(), v);
                }
                None => self.incomplete = true,
            }
        }
    }

    /// Whether a nested map or array (at depth 1) is within the limit.
    fn nests(&self) -> bool {
        self.max_depth > 1
    }

    /// `key: "value"`.
    pub fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        push_json_string(&mut self.text, value);
        self.set(key, || Some(Dynamic::from(ImmutableString::from(value))));
    }

    /// `key: 42`.
    pub fn int(&mut self, key: &'static str, n: i64) {
        self.key(key);
        // Writing to a `String` cannot fail.
        let _ = std::fmt::Write::write_fmt(&mut self.text, format_args!("{n}"));
        self.set(key, || Some(Dynamic::from_int(n)));
    }

    /// `key: null` (the script sees `()`).
    pub fn null(&mut self, key: &'static str) {
        self.key(key);
        self.text.push_str("null");
        self.set(key, || Some(Dynamic::UNIT));
    }

    /// `key: ["a", "b", …]`.
    pub fn strs<'a>(
        &mut self,
        key: &'static str,
        items: impl IntoIterator<Item = &'a str> + Clone,
    ) {
        self.key(key);
        self.text.push('[');
        for (i, s) in items.clone().into_iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            push_json_string(&mut self.text, s);
        }
        self.text.push(']');
        let nests = self.nests();
        self.set(key, || {
            nests.then(|| {
                let a: Array = items
                    .into_iter()
                    .map(|s| Dynamic::from(ImmutableString::from(s)))
                    .collect();
                Dynamic::from_array(a)
            })
        });
    }

    /// `key: {"name": "value", …}`, the entries in the order given (each
    /// name once).
    pub fn str_map<'a>(
        &mut self,
        key: &'static str,
        entries: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) {
        self.key(key);
        self.text.push('{');
        for (i, (k, v)) in entries.clone().into_iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            push_json_string(&mut self.text, k);
            self.text.push(':');
            push_json_string(&mut self.text, v);
        }
        self.text.push('}');
        let nests = self.nests();
        self.set(key, || {
            nests.then(|| {
                let m: Map = entries
                    .into_iter()
                    .map(|(k, v)| (k.into(), Dynamic::from(ImmutableString::from(v))))
                    .collect();
                Dynamic::from_map(m)
            })
        });
    }

    /// `key: <any JSON value>`.
    pub fn value(&mut self, key: &'static str, value: &Value) {
        self.key(key);
        // Writing a `Value` cannot fail: its map keys are strings.
        match serde_json::to_string(value) {
            Ok(t) => self.text.push_str(&t),
            Err(_) => self.text.push_str("null"),
        }
        let max = self.max_depth;
        self.set(key, || to_dynamic_at(value, 1, max).ok());
    }

    /// `key: {…}`, a JSON object.
    pub fn value_map(&mut self, key: &'static str, map: &serde_json::Map<String, Value>) {
        self.key(key);
        if map.is_empty() {
            self.text.push_str("{}");
        } else {
            match serde_json::to_string(map) {
                Ok(t) => self.text.push_str(&t),
                Err(_) => self.text.push_str("{}"),
            }
        }
        let (nests, max) = (self.nests(), self.max_depth);
        self.set(key, || {
            if !nests {
                return None;
            }
            let mut m = Map::new();
            for (k, v) in map {
                m.insert(k.as_str().into(), to_dynamic_at(v, 2, max).ok()?);
            }
            Some(Dynamic::from_map(m))
        });
    }

    /// `key: <the JSON text of body>`, spliced in as it is, and the body's
    /// parsed value taken (see [`JsonBody::text`]).
    pub fn json(&mut self, key: &'static str, body: &JsonBody) {
        self.key(key);
        self.text.push_str(body.text());
        let max = self.max_depth;
        self.set(key, || body.take_dynamic(1, max).ok());
    }

    /// The map as a JSON body: its text, and its script value when every
    /// part of it was built.
    pub fn finish(mut self) -> JsonBody {
        self.text.push('}');
        let value = match (self.value, self.incomplete) {
            (Some(m), false) => Some(Dynamic::from_map(m)),
            _ => None,
        };
        JsonBody::prepared(self.text, value)
    }
}

/// Bytes a JSON string literal escapes: `"`, `\\` and the control characters.
const fn escapes() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
}
static ESCAPES: [bool; 256] = escapes();

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !ESCAPES[usize::from(b)] {
            continue;
        }
        // `i` is at an ASCII byte: a character boundary.
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{to_json, try_to_dynamic};
    use serde_json::json;

    fn built(body: &JsonBody) -> Option<Dynamic> {
        body.take_prepared()
    }

    #[test]
    fn the_text_and_the_value_are_the_same_document() {
        let body = JsonBody::parse(br#"{"a":[1,2.5,{"b":null}],"s":"x\"y"}"#, 16).unwrap();
        let mut m = InputMap::new(16);
        m.str("method", "PO\u{1}ST\n\"é\"");
        m.value("params", &json!({"id": 7, "deep": {"x": [true]}}));
        m.str_map("query", [("q", "a b"), ("\\", "\t")]);
        m.strs("scopes", ["x:read", "y"]);
        m.null("none");
        m.json("body", &body);
        let out = m.finish();
        let from_text: Value = serde_json::from_str(out.text()).unwrap();
        let value = built(&out).expect("every part was built");
        assert_eq!(to_json(&value), from_text);
        assert_eq!(from_text["method"], json!("PO\u{1}ST\n\"é\""));
        assert_eq!(from_text["body"]["s"], json!("x\"y"));
        assert_eq!(from_text["query"]["\\"], json!("\t"));
        // The keys in the order they were added.
        assert!(out
            .text()
            .starts_with(r#"{"method":"PO\u0001ST\n\"é\"","params":{"#));
    }

    #[test]
    fn a_part_nested_too_deeply_leaves_the_text_only() {
        let mut m = InputMap::new(3);
        m.str("method", "GET");
        m.value("params", &json!({"a": {"b": {"c": 1}}}));
        let out = m.finish();
        assert!(built(&out).is_none());
        // The text still holds it: a run parses it and fails on the limit.
        let v: Value = serde_json::from_str(out.text()).unwrap();
        assert!(try_to_dynamic(&v, 3).is_err());
    }

    #[test]
    fn text_only_builds_no_value_and_leaves_the_body_parsed() {
        let body = JsonBody::parse(br#"{"n":1}"#, 16).unwrap();
        let mut m = InputMap::text_only();
        m.json("body", &body);
        let out = m.finish();
        assert_eq!(out.text(), r#"{"body":{"n":1}}"#);
        assert!(built(&out).is_none());
        assert!(body.take_prepared().is_some());
    }

    #[test]
    fn a_request_map_builds_the_keys_its_script_reads_and_writes_them_all() {
        let write = |mut m: InputMap| {
            m.str("method", "POST");
            m.str_map("headers", [("x-tag", "t")]);
            m.value("body", &json!({"n": 1}));
            m.finish()
        };
        let all = write(InputMap::new(16));
        let reads = crate::reads::tests::reads("request.body.n + request.method");
        let some = write(InputMap::request(16, reads));
        assert_eq!(some.text(), all.text(), "the stored text is whole");
        let value = to_json(&built(&some).expect("built"));
        assert_eq!(value, json!({"method": "POST", "body": {"n": 1}}));
        let none = write(InputMap::request(16, crate::InputReads::NONE));
        assert_eq!(to_json(&built(&none).expect("built")), json!({}));
    }
}
