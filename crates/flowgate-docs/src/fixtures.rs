//! The parts of a test fixture (`tests/*.json`, SPEC §6a) that documentation
//! uses: which operation it exercises, its request and its expected response.

use flowgate_core::manifest::{EndpointTrigger, Trigger};
use serde_json::{Map, Value};

use crate::Error;

/// A fixture reduced to what documentation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    /// File stem (`tests/paid.json` → `paid`), used as the example name.
    pub stem: String,
    /// The fixture's `name` (falls back to the stem), used as the example summary.
    pub name: String,
    /// `trigger.kind` (default `http`).
    pub kind: String,
    /// `request.method` upper-cased, when given.
    pub method: Option<String>,
    /// `request.path` (default `""`).
    pub path: String,
    /// `request.query`.
    pub query: Map<String, Value>,
    /// `request.body`, when given and not null.
    pub body: Option<Value>,
    /// `expect.status` (default 200).
    pub status: u16,
    /// `expect.body`, when given.
    pub expect_body: Option<Value>,
}

impl Fixture {
    /// Parses fixture `src` found at `path` inside the package.
    pub fn parse(path: &str, src: &str) -> Result<Self, Error> {
        let bad = |message: String| Error::InvalidFixture {
            file: path.to_owned(),
            message,
        };
        let v: Value =
            serde_json::from_str(src).map_err(|e| bad(format!("is not valid JSON: {e}")))?;
        let Value::Object(obj) = v else {
            return Err(bad("a fixture must be a JSON object".into()));
        };
        let file = path.rsplit('/').next().unwrap_or(path);
        let stem = file.strip_suffix(".json").unwrap_or(file).to_owned();
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| stem.clone(), str::to_owned);
        let kind = obj
            .get("trigger")
            .and_then(|t| t.get("kind"))
            .and_then(Value::as_str)
            .unwrap_or("http")
            .to_owned();
        let request = obj.get("request").and_then(Value::as_object);
        let method = request
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase);
        let path_suffix = request
            .and_then(|r| r.get("path"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let query = request
            .and_then(|r| r.get("query"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let body = request
            .and_then(|r| r.get("body"))
            .filter(|b| !b.is_null())
            .cloned();
        let expect = obj.get("expect").and_then(Value::as_object);
        let status = match expect.and_then(|e| e.get("status")) {
            None | Some(Value::Null) => 200,
            Some(s) => s
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(|| bad("`expect.status` must be an HTTP status code".into()))?,
        };
        let expect_body = expect.and_then(|e| e.get("body")).cloned();
        Ok(Self {
            stem,
            name,
            kind,
            method,
            path: path_suffix,
            query,
            body,
            status,
            expect_body,
        })
    }

    /// Whether this fixture exercises endpoint trigger `ep` of kind `trigger`:
    /// same kind, same method (a fixture without a method matches any) and a
    /// path the template matches.
    pub fn exercises(&self, trigger: &Trigger, ep: &EndpointTrigger) -> bool {
        let kind = match trigger {
            Trigger::Http(_) => "http",
            Trigger::Webhook(_) => "webhook",
            _ => return false,
        };
        self.kind == kind
            && self.method.as_deref().is_none_or(|m| m == ep.method)
            && ep.path.matches(&self.path).is_some()
    }

    /// Whether the fixture expects a successful (2xx) answer.
    pub fn expects_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testutil::package;

    #[test]
    fn parses_defaults_and_matches_operations() {
        let f = Fixture::parse(
            "tests/paid.json",
            r#"{"name": "paid", "request": {"method": "post", "path": "/invoices/7",
                "query": {"dry": "1"}, "body": {"a": 1}}}"#,
        )
        .unwrap();
        assert_eq!(f.stem, "paid");
        assert_eq!(f.kind, "http");
        assert_eq!(f.method.as_deref(), Some("POST"));
        assert_eq!(f.status, 200);
        assert_eq!(f.query.len(), 1);

        let (m, _) = package(&[(
            "flow.toml",
            "name = \"a\"\n[[trigger]]\nkind = \"http\"\npath = \"/invoices/{id}\"\n\
             [[trigger]]\nkind = \"http\"\nmethod = \"GET\"\npath = \"/invoices/{id}\"\n\
             [[trigger]]\nkind = \"webhook\"\npath = \"/invoices/{id}\"\nmethod = \"PUT\"\n",
        )]);
        let hits: Vec<bool> = m.endpoints().map(|(t, e)| f.exercises(t, e)).collect();
        assert_eq!(hits, vec![true, false, false]);
    }

    #[test]
    fn refuses_bad_fixtures() {
        assert!(Fixture::parse("tests/a.json", "[]").is_err());
        assert!(Fixture::parse("tests/a.json", "{").is_err());
        assert!(Fixture::parse("tests/a.json", r#"{"expect": {"status": 99}}"#).is_err());
        let f = Fixture::parse("tests/a.json", r#"{"expect": {"status": 422}}"#).unwrap();
        assert_eq!(f.name, "a");
        assert!(!f.expects_success());
    }
}
