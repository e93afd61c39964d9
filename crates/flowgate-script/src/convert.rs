//! JSON ↔ Rhai `Dynamic`: integers stay `i64`, floats stay `f64`, `null` ↔ `()`,
//! nested maps and arrays convert recursively.

use rhai::{Array, Dynamic, Map};
use serde_json::{Number, Value};

/// Converts a JSON value to a Rhai value.
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Dynamic::from_int(i)
            } else {
                Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from_array(a.iter().map(to_dynamic).collect::<Array>()),
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, v) in o {
                m.insert(k.as_str().into(), to_dynamic(v));
            }
            Dynamic::from_map(m)
        }
    }
}

/// Converts a Rhai value to JSON. Non-finite floats become `null`; characters
/// become strings; BLOBs become arrays of byte values; other values their text.
pub fn to_json(d: &Dynamic) -> Value {
    if d.is_unit() {
        return Value::Null;
    }
    if let Ok(b) = d.as_bool() {
        return Value::Bool(b);
    }
    if let Ok(i) = d.as_int() {
        return Value::Number(i.into());
    }
    if let Ok(f) = d.as_float() {
        return Number::from_f64(f).map_or(Value::Null, Value::Number);
    }
    if let Ok(c) = d.as_char() {
        return Value::String(c.to_string());
    }
    if d.is_string() {
        return Value::String(d.clone().into_string().unwrap_or_default());
    }
    if d.is_array() {
        if let Some(a) = d.read_lock::<Array>() {
            return Value::Array(a.iter().map(to_json).collect());
        }
    }
    if d.is_map() {
        if let Some(m) = d.read_lock::<Map>() {
            return Value::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect());
        }
    }
    if d.is_blob() {
        if let Some(b) = d.read_lock::<rhai::Blob>() {
            return Value::Array(b.iter().map(|x| Value::Number((*x).into())).collect());
        }
    }
    Value::String(d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn odd_values() {
        assert_eq!(to_json(&Dynamic::from_float(f64::NAN)), Value::Null);
        assert_eq!(to_json(&Dynamic::from('x')), json!("x"));
        assert_eq!(to_json(&Dynamic::UNIT), Value::Null);
        // u64 beyond i64 becomes a float rather than failing
        assert!(to_dynamic(&json!(u64::MAX)).is_float());
    }
}
