//! A flow package: the files of one flow version, as uploaded or read from disk.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::manifest::{is_plain_file_name, Manifest, ManifestError, MANIFEST_FILE};

/// Name of the optional request-body schema.
pub const INPUT_SCHEMA: &str = "input.schema.json";
/// Name of the optional success-response schema.
pub const OUTPUT_SCHEMA: &str = "output.schema.json";
/// Largest single file accepted in a package.
pub const MAX_FILE_BYTES: usize = 512 * 1024;
/// Most files accepted in a package.
pub const MAX_FILES: usize = 64;

/// The files of a version, keyed by path inside the package.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowPackage {
    /// Path → UTF-8 content.
    pub files: BTreeMap<String, String>,
}

/// A package that parsed: its manifest plus the raw files.
#[derive(Debug, Clone)]
pub struct ParsedPackage {
    /// The validated manifest.
    pub manifest: Manifest,
    /// The files.
    pub package: FlowPackage,
}

impl FlowPackage {
    /// The content hash: sha256 over every (path, content) pair in path order,
    /// each part length-prefixed so no two packages share a hash by accident.
    pub fn sha256(&self) -> String {
        let mut h = Sha256::new();
        for (path, content) in &self.files {
            h.update((path.len() as u64).to_be_bytes());
            h.update(path.as_bytes());
            h.update((content.len() as u64).to_be_bytes());
            h.update(content.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The script source named by the manifest.
    pub fn script<'a>(&'a self, manifest: &Manifest) -> Option<&'a str> {
        self.files.get(&manifest.script).map(String::as_str)
    }

    /// Test fixtures (`tests/*.json`) in name order.
    pub fn fixtures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .filter(|(k, _)| k.starts_with("tests/"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Checks file names, sizes, the manifest and that JSON files parse.
    /// Does not compile the script; the runtime does that.
    pub fn parse(self) -> Result<ParsedPackage, ManifestError> {
        let whole = |file: &str, msg: String| ManifestError {
            file: file.to_owned(),
            line: 1,
            column: 1,
            key: None,
            message: msg,
        };
        if self.files.len() > MAX_FILES {
            return Err(whole(
                "",
                format!("a package may hold at most {MAX_FILES} files"),
            ));
        }
        for (path, content) in &self.files {
            let ok = match path.split_once('/') {
                None => is_plain_file_name(path),
                Some(("tests", rest)) => is_plain_file_name(rest) && rest.ends_with(".json"),
                Some(_) => false,
            };
            if !ok {
                return Err(whole(
                    path,
                    "file names may only be plain names or tests/<name>.json".into(),
                ));
            }
            if content.len() > MAX_FILE_BYTES {
                return Err(whole(
                    path,
                    format!("is larger than {MAX_FILE_BYTES} bytes"),
                ));
            }
        }
        let src = self
            .files
            .get(MANIFEST_FILE)
            .ok_or_else(|| whole(MANIFEST_FILE, "the package has no flow.toml".into()))?;
        let manifest = Manifest::parse(src)?;
        if !self.files.contains_key(&manifest.script) {
            return Err(ManifestError {
                file: MANIFEST_FILE.into(),
                line: 1,
                column: 1,
                key: Some("script".into()),
                message: format!(
                    "the script file `{}` is missing from the package",
                    manifest.script
                ),
            });
        }
        for (path, content) in &self.files {
            if path.ends_with(".json") {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(content) {
                    return Err(ManifestError {
                        file: path.clone(),
                        line: e.line().max(1),
                        column: e.column().max(1),
                        key: None,
                        message: format!("is not valid JSON: {e}"),
                    });
                }
            }
        }
        Ok(ParsedPackage {
            manifest,
            package: self,
        })
    }
}

/// The `name` a manifest declares, read leniently (the rest of the manifest
/// may still be wrong): `None` when there is no readable string `name`.
pub fn declared_name(manifest_src: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct NameOnly {
        name: Option<String>,
    }
    toml::from_str::<toml::Value>(manifest_src)
        .ok()
        .and_then(|v| v.try_into::<NameOnly>().ok())
        .and_then(|n| n.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(files: &[(&str, &str)]) -> FlowPackage {
        FlowPackage {
            files: files
                .iter()
                .map(|(a, b)| ((*a).into(), (*b).into()))
                .collect(),
        }
    }

    const TOML: &str = "name = \"a\"\n[[trigger]]\nkind = \"http\"\n";

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = pkg(&[("flow.toml", TOML), ("main.rhai", "1")]);
        let b = pkg(&[("main.rhai", "1"), ("flow.toml", TOML)]);
        let c = pkg(&[("flow.toml", TOML), ("main.rhai", "2")]);
        assert_eq!(a.sha256(), b.sha256());
        assert_ne!(a.sha256(), c.sha256());
        assert_eq!(a.sha256().len(), 64);
    }

    #[test]
    fn refuses_bad_packages() {
        assert!(pkg(&[("flow.toml", TOML)]).parse().is_err());
        assert!(pkg(&[("flow.toml", TOML), ("main.rhai", ""), ("../x", "")])
            .parse()
            .is_err());
        assert!(
            pkg(&[("flow.toml", TOML), ("main.rhai", ""), ("sub/x.json", "{}")])
                .parse()
                .is_err()
        );
        let e = pkg(&[
            ("flow.toml", TOML),
            ("main.rhai", ""),
            ("tests/a.json", "{\n  nope"),
        ])
        .parse()
        .unwrap_err();
        assert_eq!(e.file, "tests/a.json");
        assert_eq!(e.line, 2);
        assert!(pkg(&[
            ("flow.toml", TOML),
            ("main.rhai", "42"),
            ("tests/a.json", "{}")
        ])
        .parse()
        .is_ok());
    }
}
