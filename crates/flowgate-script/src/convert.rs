//! JSON ↔ Rhai `Dynamic`: integers stay `i64`, floats stay `f64`, `null` ↔ `()`,
//! nested maps and arrays convert recursively.

use rhai::{Array, Dynamic, Map};
use serde_json::{Number, Value};

/// Nesting depth used by [`to_dynamic`] and [`to_json`] (the sandbox default).
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// A value nested deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a value is nested deeper than {max} levels")]
pub struct TooDeep {
    /// The limit that was exceeded.
    pub max: usize,
}

/// The length of `v`'s JSON text, counted as it is written: nothing is
/// allocated for it.
pub fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing a `Value` cannot fail: its map keys are strings.
    match serde_json::to_writer(&mut n, v) {
        Ok(()) => n.0,
        Err(_) => usize::MAX,
    }
}

/// Converts a JSON value to a Rhai value; nesting beyond [`DEFAULT_MAX_DEPTH`]
/// becomes `()` (use [`try_to_dynamic`] to refuse it instead).
pub fn to_dynamic(v: &Value) -> Dynamic {
    try_to_dynamic(v, DEFAULT_MAX_DEPTH).unwrap_or(Dynamic::UNIT)
}

/// Converts a JSON value to a Rhai value, refusing maps and arrays nested more
/// than `max_depth` levels deep (the recursion never goes deeper than that).
pub fn try_to_dynamic(v: &Value, max_depth: usize) -> Result<Dynamic, TooDeep> {
    to_dynamic_at(v, 0, max_depth)
}

/// Like [`try_to_dynamic`] for a value nested `depth` levels down.
pub(crate) fn to_dynamic_at(v: &Value, depth: usize, max: usize) -> Result<Dynamic, TooDeep> {
    Ok(match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Dynamic::from_int(i)
            } else {
                Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        // Straight from the text: a short string is kept inline, with no
        // `String` copy made and freed on the way.
        Value::String(s) => Dynamic::from(rhai::ImmutableString::from(s.as_str())),
        Value::Array(a) => {
            if depth >= max {
                return Err(TooDeep { max });
            }
            let mut out = Array::with_capacity(a.len());
            for x in a {
                out.push(to_dynamic_at(x, depth + 1, max)?);
            }
            Dynamic::from_array(out)
        }
        Value::Object(o) => {
            if depth >= max {
                return Err(TooDeep { max });
            }
            let mut m = Map::new();
            for (k, x) in o {
                m.insert(k.as_str().into(), to_dynamic_at(x, depth + 1, max)?);
            }
            Dynamic::from_map(m)
        }
    })
}

/// Converts a Rhai value to JSON. Non-finite floats become `null`; characters
/// become strings; BLOBs become arrays of byte values; other values their text.
/// Nesting beyond [`DEFAULT_MAX_DEPTH`] becomes `null` (use [`try_to_json`] to
/// refuse it instead).
pub fn to_json(d: &Dynamic) -> Value {
    try_to_json(d, DEFAULT_MAX_DEPTH).unwrap_or(Value::Null)
}

/// Converts a Rhai value to JSON, refusing nesting deeper than `max_depth`.
pub fn try_to_json(d: &Dynamic, max_depth: usize) -> Result<Value, TooDeep> {
    to_json_at(d, 0, max_depth)
}

fn to_json_at(d: &Dynamic, depth: usize, max: usize) -> Result<Value, TooDeep> {
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = d.as_int() {
        return Ok(Value::Number(i.into()));
    }
    if let Ok(f) = d.as_float() {
        return Ok(Number::from_f64(f).map_or(Value::Null, Value::Number));
    }
    if let Ok(c) = d.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if let Some(s) = d.read_lock::<rhai::ImmutableString>() {
        return Ok(Value::String(s.as_str().to_owned()));
    }
    if d.is_array() || d.is_map() {
        if depth >= max {
            return Err(TooDeep { max });
        }
        if let Some(a) = d.read_lock::<Array>() {
            let mut out = Vec::with_capacity(a.len());
            for x in a.iter() {
                out.push(to_json_at(x, depth + 1, max)?);
            }
            return Ok(Value::Array(out));
        }
        if let Some(m) = d.read_lock::<Map>() {
            // Sized up front (no rehash while it grows), and each key
            // copied as it is, not through `Display`.
            let mut out = serde_json::Map::with_capacity(m.len());
            for (k, x) in m.iter() {
                out.insert(k.as_str().to_owned(), to_json_at(x, depth + 1, max)?);
            }
            return Ok(Value::Object(out));
        }
    }
    if d.is_blob() {
        if let Some(b) = d.read_lock::<rhai::Blob>() {
            return Ok(Value::Array(
                b.iter().map(|x| Value::Number((*x).into())).collect(),
            ));
        }
    }
    if d.is_fnptr() {
        if let Some(f) = d.read_lock::<rhai::FnPtr>() {
            return Ok(Value::String(format!("Fn({})", f.fn_name())));
        }
    }
    if d.is_shared() {
        if let Some(inner) = d.read_lock::<Dynamic>() {
            return to_json_at(&inner, depth, max);
        }
    }
    Ok(Value::String(d.to_string()))
}

/// Writes a Rhai value as JSON text: the text of [`try_to_json`]'s value,
/// with no `serde_json::Value` built on the way.
pub fn try_to_json_text(d: &Dynamic, max_depth: usize) -> Result<String, TooDeep> {
    let v = AsJson {
        d,
        depth: 0,
        max: max_depth,
    };
    // The only error is the depth: map keys are strings.
    serde_json::to_string(&v).map_err(|_| TooDeep { max: max_depth })
}

/// A Rhai value serialised as [`to_json_at`] converts it.
struct AsJson<'a> {
    d: &'a Dynamic,
    depth: usize,
    max: usize,
}

impl AsJson<'_> {
    fn nested<'b>(&self, d: &'b Dynamic) -> AsJson<'b> {
        AsJson {
            d,
            depth: self.depth + 1,
            max: self.max,
        }
    }
}

impl serde::Serialize for AsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        let d = self.d;
        if d.is_unit() {
            return s.serialize_unit();
        }
        if let Ok(b) = d.as_bool() {
            return s.serialize_bool(b);
        }
        if let Ok(i) = d.as_int() {
            return s.serialize_i64(i);
        }
        if let Ok(f) = d.as_float() {
            // Not finite: `null`, as `Number::from_f64` gives.
            return s.serialize_f64(f);
        }
        if let Ok(c) = d.as_char() {
            return s.serialize_char(c);
        }
        if let Some(t) = d.read_lock::<rhai::ImmutableString>() {
            return s.serialize_str(t.as_str());
        }
        if d.is_array() || d.is_map() {
            if self.depth >= self.max {
                return Err(S::Error::custom("too deep"));
            }
            if let Some(a) = d.read_lock::<Array>() {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for x in a.iter() {
                    seq.serialize_element(&self.nested(x))?;
                }
                return seq.end();
            }
            if let Some(m) = d.read_lock::<Map>() {
                let mut out = s.serialize_map(Some(m.len()))?;
                for (k, x) in m.iter() {
                    out.serialize_entry(k.as_str(), &self.nested(x))?;
                }
                return out.end();
            }
        }
        if d.is_blob() {
            if let Some(b) = d.read_lock::<rhai::Blob>() {
                return s.collect_seq(b.iter());
            }
        }
        if d.is_fnptr() {
            if let Some(f) = d.read_lock::<rhai::FnPtr>() {
                return s.collect_str(&format_args!("Fn({})", f.fn_name()));
            }
        }
        if d.is_shared() {
            if let Some(inner) = d.read_lock::<Dynamic>() {
                return AsJson {
                    d: &inner,
                    depth: self.depth,
                    max: self.max,
                }
                .serialize(s);
            }
        }
        s.collect_str(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_len_is_the_length_of_the_text() {
        for v in [
            json!(null),
            json!({"s": "é\n\"", "a": [1, 2.5, {"deep": [null]}], "o": {}}),
        ] {
            assert_eq!(json_len(&v), serde_json::to_vec(&v).unwrap().len());
        }
    }

    #[test]
    fn round_trip() {
        let v = json!({"i": 42, "neg": -7, "f": 1.5, "n": null, "b": true, "s": "x",
                        "a": [1, 2.5, {"deep": [null]}], "o": {}});
        let d = to_dynamic(&v);
        assert!(d
            .read_lock::<Map>()
            .is_some_and(|m| m["i"].is_int() && m["f"].is_float()));
        assert_eq!(to_json(&d), v);
    }

    #[test]
    fn json_text_is_the_text_of_the_json_value() {
        let v = json!({"i": 42, "neg": -7, "f": 1.5, "big": 1e300, "n": null, "b": true,
                        "s": "x\u{1}\"é", "a": [1, 2.5, {"deep": [null]}], "o": {}});
        let mut d = to_dynamic(&v);
        if let Some(mut m) = d.write_lock::<Map>() {
            m.insert("nan".into(), Dynamic::from_float(f64::NAN));
            m.insert("c".into(), Dynamic::from('x'));
            m.insert("blob".into(), Dynamic::from_blob(vec![1, 255]));
            m.insert("shared".into(), Dynamic::from_int(3).into_shared());
            m.insert("ts".into(), Dynamic::from(rhai::INT::MAX).into_shared());
        }
        let text = try_to_json_text(&d, 8).unwrap();
        assert_eq!(text, serde_json::to_string(&to_json(&d)).unwrap());
        let mut deep = json!(1);
        for _ in 0..5 {
            deep = json!([deep]);
        }
        let d = to_dynamic(&deep);
        assert!(try_to_json_text(&d, 5).is_ok());
        assert_eq!(try_to_json_text(&d, 4), Err(TooDeep { max: 4 }));
    }

    #[test]
    fn odd_values() {
        assert_eq!(to_json(&Dynamic::from_float(f64::NAN)), Value::Null);
        assert_eq!(to_json(&Dynamic::from('x')), json!("x"));
        assert_eq!(to_json(&Dynamic::UNIT), Value::Null);
        // u64 beyond i64 becomes a float rather than failing
        assert!(to_dynamic(&json!(u64::MAX)).is_float());
    }

    #[test]
    fn depth_is_bounded_both_ways() {
        let mut v = json!(1);
        for _ in 0..5 {
            v = json!([v]);
        }
        assert!(try_to_dynamic(&v, 5).is_ok());
        assert_eq!(try_to_dynamic(&v, 4).unwrap_err(), TooDeep { max: 4 });
        let d = try_to_dynamic(&v, 5).unwrap();
        assert_eq!(try_to_json(&d, 5).unwrap(), v);
        assert!(try_to_json(&d, 4).is_err());
    }
}
