//! Partner documentation generated from flow versions: OpenAPI 3.1 documents
//! (one per pinned version, one for all live flows), a self-contained HTML site
//! and a compatibility report between two versions.
//!
//! Everything here is a pure function of parsed flow packages: no I/O, no HTTP.
//! The gateway serves what these functions return:
//!
//! | function | served at |
//! |---|---|
//! | [`flow_version_openapi`] | `GET /openapi/flows/{flow}/v{n}.json` |
//! | [`live_openapi`] | `GET /openapi.json` |
//! | [`docs_index_html`] | `GET /docs` |
//! | [`docs_version_html`] | `GET /docs/flows/{flow}/v{n}` |
//!
//! [`compare`] produces the [`CompatReport`] shown on version pages and used
//! when publishing.

pub mod compat;
pub mod events;
pub mod fixtures;
pub mod html;
pub mod openapi;

pub use compat::{compare, Change, ChangeKind, CompatReport};
pub use events::{emitted_events, event_catalogue, EventCatalogue, EventEntry};
pub use fixtures::Fixture;
pub use html::{docs_index_html, docs_version_html, escape_html, FlowSummary};
pub use openapi::{flow_version_openapi, live_openapi};

use flowgate_core::package::{INPUT_SCHEMA, OUTPUT_SCHEMA};
use flowgate_core::{FlowPackage, Manifest};
use serde_json::Value;

/// Errors of this crate: a package file that cannot be used for documentation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A schema file is not JSON, or not a JSON Schema (object or boolean).
    #[error("{file}: {message}")]
    InvalidSchema {
        /// File inside the package.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A fixture file is not JSON or not an object.
    #[error("{file}: {message}")]
    InvalidFixture {
        /// File inside the package.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One flow version as documentation sees it.
#[derive(Debug, Clone, Copy)]
pub struct FlowDoc<'a> {
    /// Flow name (slug), as in URLs.
    pub flow: &'a str,
    /// Version number (1, 2, …).
    pub version: i64,
    /// The version's parsed manifest.
    pub manifest: &'a Manifest,
    /// The version's files (schemas, fixtures, script).
    pub package: &'a FlowPackage,
    /// Whether this version is the flow's live version.
    pub live: bool,
}

impl<'a> FlowDoc<'a> {
    /// A documentation view of one version.
    pub fn new(
        flow: &'a str,
        version: i64,
        manifest: &'a Manifest,
        package: &'a FlowPackage,
        live: bool,
    ) -> Self {
        Self {
            flow,
            version,
            manifest,
            package,
            live,
        }
    }

    /// The manifest title, or the flow name when there is none.
    pub fn title(&self) -> &'a str {
        self.manifest.title.as_deref().unwrap_or(self.flow)
    }

    /// `input.schema.json`, when the package has one.
    pub fn input_schema(&self) -> Result<Option<Value>> {
        schema_file(self.package, INPUT_SCHEMA)
    }

    /// `output.schema.json`, when the package has one.
    pub fn output_schema(&self) -> Result<Option<Value>> {
        schema_file(self.package, OUTPUT_SCHEMA)
    }

    /// The script source, when present.
    pub fn script(&self) -> Option<&'a str> {
        self.package.script(self.manifest)
    }

    /// The fixtures that parse, in file-name order, and the errors of those that do not.
    pub fn fixtures(&self) -> (Vec<Fixture>, Vec<Error>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for (path, src) in self.package.fixtures() {
            match Fixture::parse(path, src) {
                Ok(f) => ok.push(f),
                Err(e) => bad.push(e),
            }
        }
        (ok, bad)
    }
}

fn schema_file(package: &FlowPackage, file: &str) -> Result<Option<Value>> {
    let Some(src) = package.files.get(file) else {
        return Ok(None);
    };
    let v: Value = serde_json::from_str(src).map_err(|e| Error::InvalidSchema {
        file: file.to_owned(),
        message: format!("is not valid JSON: {e}"),
    })?;
    match v {
        Value::Object(_) | Value::Bool(_) => Ok(Some(v)),
        _ => Err(Error::InvalidSchema {
            file: file.to_owned(),
            message: "a JSON Schema must be an object or a boolean".into(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
pub(crate) mod testutil {
    //! Small package builders shared by the unit tests.
    use flowgate_core::{FlowPackage, Manifest};

    /// A package from (path, content) pairs plus its parsed manifest.
    pub fn package(files: &[(&str, &str)]) -> (Manifest, FlowPackage) {
        let package = FlowPackage {
            files: files
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        };
        let manifest = Manifest::parse(&package.files["flow.toml"]).expect("test manifest parses");
        (manifest, package)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn schema_files_are_checked() {
        let (m, p) = testutil::package(&[
            ("flow.toml", "name = \"a\"\n[[trigger]]\nkind = \"http\"\n"),
            ("main.rhai", "1"),
            ("input.schema.json", "[1]"),
            ("output.schema.json", "{\"type\": \"object\"}"),
        ]);
        let d = FlowDoc::new("a", 1, &m, &p, true);
        assert!(matches!(
            d.input_schema(),
            Err(Error::InvalidSchema { ref file, .. }) if file == "input.schema.json"
        ));
        assert_eq!(
            d.output_schema().unwrap(),
            Some(serde_json::json!({"type": "object"}))
        );
        assert_eq!(d.title(), "a");
    }
}
