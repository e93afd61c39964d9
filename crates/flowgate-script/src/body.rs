//! [`JsonBody`]: a JSON request body kept as the caller sent it, parsed
//! straight into script values. A call's body is parsed once, with no
//! `serde_json::Value` built, converted and freed on the way, and the run's
//! stored input takes the text as it is instead of serialising the body again.

use rhai::{Array, Dynamic, ImmutableString, Map};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::cell::Cell;
use std::fmt;

use crate::convert::TooDeep;

/// A JSON request body: its text, and the script value parsed from it until
/// a run takes that value (a second run of the same input parses the text
/// again).
pub struct JsonBody {
    text: Box<str>,
    parsed: parking_lot::Mutex<Option<Dynamic>>,
}

impl JsonBody {
    /// Parses `bytes` as JSON into a script value, the body's maps and arrays
    /// nested at most `max_depth` levels below the `request` map that holds
    /// it. A body that is valid JSON but nests deeper is kept as text only: a
    /// run of it fails on the depth limit as any too-deep input does.
    pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Self, serde_json::Error> {
        let text = utf8(bytes)?;
        let parsed = match parse_dynamic(&text, 1, max_depth) {
            Ok(v) => Some(v),
            // The parse stopped at the depth limit: the rest is checked
            // still, so the kept text is JSON whatever follows.
            Err(Parse::TooDeep) => {
                check(bytes)?;
                None
            }
            Err(Parse::Json(e)) => return Err(e),
        };
        Ok(Self {
            text,
            parsed: parking_lot::Mutex::new(parsed),
        })
    }

    /// Checks that `bytes` are JSON and keeps them as text, without building
    /// any value (a queued run parses its stored input when it runs). The
    /// check is as strict as parsing a `serde_json::Value`: every string's
    /// escapes are decoded (a lone surrogate is refused) and every number
    /// must fit a float, so the stored text always parses again.
    pub fn checked(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        check(bytes)?;
        Ok(Self {
            text: utf8(bytes)?,
            parsed: parking_lot::Mutex::new(None),
        })
    }

    /// A body already parsed into `value` (to validate it against a schema):
    /// its text is kept and the value converted to script values now.
    pub fn parsed_from(
        bytes: &[u8],
        value: &Value,
        max_depth: usize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            text: utf8(bytes)?,
            parsed: parking_lot::Mutex::new(
                crate::convert::to_dynamic_at(value, 1, max_depth).ok(),
            ),
        })
    }

    /// JSON text this process wrote itself (a run's stored input), kept
    /// unchecked: a run parses it when it takes its value.
    pub fn stored(text: impl Into<Box<str>>) -> Self {
        Self {
            text: text.into(),
            parsed: parking_lot::Mutex::new(None),
        }
    }

    /// Text this process wrote and the value built from the same parts
    /// ([`crate::input::InputMap`]); `None` when it could not be built.
    pub(crate) fn prepared(text: String, value: Option<Dynamic>) -> Self {
        Self {
            text: text.into_boxed_str(),
            parsed: parking_lot::Mutex::new(value),
        }
    }

    /// The value parsed or built ahead, if no run took it yet.
    #[cfg(test)]
    pub(crate) fn take_prepared(&self) -> Option<Dynamic> {
        self.parsed.lock().take()
    }

    /// The body's JSON text, as sent.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The body as a JSON value (parsed from the text; for the rare paths
    /// that need one).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The script value of the body, at `depth` below the run's top-level
    /// maps: the parsed one the first time, a fresh parse of the text after.
    pub(crate) fn take_dynamic(&self, depth: usize, max_depth: usize) -> Result<Dynamic, TooDeep> {
        if let Some(v) = self.parsed.lock().take() {
            return Ok(v);
        }
        match parse_dynamic(&self.text, depth, max_depth) {
            Ok(v) => Ok(v),
            Err(Parse::TooDeep) => Err(TooDeep { max: max_depth }),
            // The text was JSON when it was kept.
            Err(Parse::Json(_)) => Ok(Dynamic::UNIT),
        }
    }
}

/// Checks that `bytes` are one JSON value, as strictly as parsing a
/// `serde_json::Value` would.
fn check(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Check.deserialize(&mut de)?;
    de.end()
}

/// A run's `request`, `caller` and `trigger` maps as the JSON text of its
/// stored input: a queued run reads them straight into script values, with
/// no `serde_json::Value` built on the way; a sync run's come with their
/// values already built ([`crate::InputMap`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMaps {
    /// `request`, its body included.
    pub request: JsonBody,
    /// `caller`.
    pub caller: JsonBody,
    /// `trigger`.
    pub trigger: JsonBody,
}

fn utf8(bytes: &[u8]) -> Result<Box<str>, serde_json::Error> {
    std::str::from_utf8(bytes)
        .map(Box::from)
        .map_err(|_| serde_json::Error::custom("the body is not UTF-8"))
}

impl Clone for JsonBody {
    /// The clone has the text only; it parses when a run takes its value.
    fn clone(&self) -> Self {
        Self {
            text: self.text.clone(),
            parsed: parking_lot::Mutex::new(None),
        }
    }
}

/// `null`.
impl Default for JsonBody {
    fn default() -> Self {
        Self::stored("null")
    }
}

impl PartialEq for JsonBody {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for JsonBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonBody").field(&self.text).finish()
    }
}

impl Serialize for JsonBody {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

enum Parse {
    Json(serde_json::Error),
    TooDeep,
}

/// Parses JSON text into a script value whose maps and arrays start at
/// `depth` and nest below `max_depth` (as [`crate::convert::try_to_dynamic`]
/// counts). Integers stay `i64` (larger ones become floats), `null` is `()`,
/// and a repeated key keeps its last value. The seed bounds the nesting, so
/// serde's own limit (128 levels from the text's top) is off: the levels a
/// stored input wraps around its body do not count against the body.
fn parse_dynamic(text: &str, depth: usize, max_depth: usize) -> Result<Dynamic, Parse> {
    let too_deep = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let seed = Seed {
        depth,
        max: max_depth,
        too_deep: &too_deep,
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if too_deep.get() => Err(Parse::TooDeep),
        Err(e) => Err(Parse::Json(e)),
    }
}

#[derive(Clone, Copy)]
struct Seed<'a> {
    depth: usize,
    max: usize,
    too_deep: &'a Cell<bool>,
}

impl Seed<'_> {
    fn nested<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth >= self.max {
            self.too_deep.set(true);
            return Err(E::custom("nested too deeply"));
        }
        Ok(Self {
            depth: self.depth + 1,
            ..self
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Dynamic;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Dynamic, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Dynamic;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Dynamic, E> {
        Ok(Dynamic::UNIT)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Dynamic, E> {
        Ok(Dynamic::from_bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Dynamic, E> {
        Ok(Dynamic::from_int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Dynamic, E> {
        Ok(i64::try_from(u).map_or_else(|_| Dynamic::from_float(u as f64), Dynamic::from_int))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Dynamic, E> {
        Ok(Dynamic::from_float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Dynamic, E> {
        Ok(Dynamic::from(ImmutableString::from(s)))
    }

    fn visit_string<E>(self, s: String) -> Result<Dynamic, E> {
        Ok(Dynamic::from(ImmutableString::from(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dynamic, A::Error> {
        let inner = self.nested()?;
        let mut out = Array::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Dynamic::from_array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dynamic, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(k) = map.next_key_seed(Key)? {
            let v = map.next_value_seed(inner)?;
            out.insert(k, v);
        }
        Ok(Dynamic::from_map(out))
    }
}

/// Reads a JSON value as a `serde_json::Value` would, keeping nothing.
/// (serde's `IgnoredAny` skips strings without decoding their escapes and
/// numbers without checking their range.)
#[derive(Clone, Copy)]
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// A map key, straight into Rhai's key type (short keys are kept inline).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = rhai::Identifier;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<rhai::Identifier, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = rhai::Identifier;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, s: &str) -> Result<rhai::Identifier, E> {
        Ok(s.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{to_json, try_to_dynamic};
    use serde_json::json;

    fn parsed(text: &str, max: usize) -> Dynamic {
        JsonBody::parse(text.as_bytes(), max)
            .unwrap()
            .take_dynamic(1, max)
            .unwrap()
    }

    #[test]
    fn parses_as_the_value_conversion_does() {
        let text = r#"{"i": 42, "neg": -7, "big": 18446744073709551615, "f": 1.5, "n": null,
                       "b": true, "s": "x\u00e9", "a": [1, 2.5, {"deep": [null]}], "o": {},
                       "dup": 1, "dup": 2}"#;
        let via_value = try_to_dynamic(&serde_json::from_str::<Value>(text).unwrap(), 128).unwrap();
        let direct = parsed(text, 128);
        assert_eq!(to_json(&direct), to_json(&via_value));
        assert_eq!(to_json(&direct)["dup"], json!(2));
        assert!(direct
            .read_lock::<Map>()
            .is_some_and(|m| m["i"].is_int() && m["big"].is_float() && m["f"].is_float()));
    }

    #[test]
    fn the_text_is_kept_and_a_second_take_parses_it_again() {
        let body = JsonBody::parse(br#" {"a": [1, 2]} "#, 8).unwrap();
        assert_eq!(body.text(), r#" {"a": [1, 2]} "#);
        let first = body.take_dynamic(1, 8).unwrap();
        let again = body.take_dynamic(1, 8).unwrap();
        assert_eq!(to_json(&first), to_json(&again));
        assert_eq!(body.to_value(), json!({"a": [1, 2]}));
    }

    #[test]
    fn depth_counts_from_the_request_map() {
        // Depth 1 is the body itself: `[[1]]` has arrays at depths 1 and 2.
        assert!(JsonBody::parse(b"[[1]]", 3)
            .unwrap()
            .take_dynamic(1, 3)
            .is_ok());
        let deep = JsonBody::parse(b"[[1]]", 2).unwrap();
        assert_eq!(deep.take_dynamic(1, 2).unwrap_err(), TooDeep { max: 2 });
        // What follows the point where the depth stopped the parse is JSON
        // too, or the body is refused: the kept text is stored as the input.
        assert!(JsonBody::parse(br#"{"a": [[1]], "b": nope}"#, 2).is_err());
        assert!(JsonBody::parse(br#"{"a": [[1]], "b": "\ud800"}"#, 2).is_err());
        assert!(JsonBody::parse(br#"{"a": [[1]]} x"#, 2).is_err());
        assert!(JsonBody::parse(br#"{"a": [[1]], "b": 2}"#, 2).is_ok());
    }

    #[test]
    fn bad_json_is_refused() {
        assert!(JsonBody::parse(b"{\"a\": ", 8).is_err());
        assert!(JsonBody::parse(b"{} {}", 8).is_err());
        assert!(JsonBody::checked(b"[1,").is_err());
        assert!(JsonBody::parse(b"\"\xff\"", 8).is_err());
        assert_eq!(JsonBody::checked(b"[1]").unwrap().text(), "[1]");
    }

    #[test]
    fn what_a_value_refuses_is_refused_by_both() {
        // serde's `IgnoredAny` accepts all of these; the stored text must
        // parse again when the run is read back.
        for text in [
            r#""\ud800""#,
            r#"{"a": "\udc00x"}"#,
            r#"{"\ud800": 1}"#,
            "[1e400]",
            r#"{"a": 1,}"#,
        ] {
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
            assert!(JsonBody::checked(text.as_bytes()).is_err(), "{text}");
            assert!(JsonBody::parse(text.as_bytes(), 8).is_err(), "{text}");
        }
        for text in [
            r#""\ud83d\ude00 \u0000""#,
            "-0",
            "1E5",
            r#"{"a": [null, {}]}"#,
        ] {
            assert!(JsonBody::checked(text.as_bytes()).is_ok(), "{text}");
            assert!(JsonBody::parse(text.as_bytes(), 8).is_ok(), "{text}");
        }
    }
}
