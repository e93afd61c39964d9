//! Checking a package as it is being edited (the console's problems list):
//! every problem found, each with file, line and column, without touching the
//! database. The checks are those of an upload ([`Engine::validate_package`])
//! plus the shape of fixtures, collected instead of stopping at the first.

use flowgate_core::manifest::{is_plain_file_name, Manifest, Trigger, MANIFEST_FILE};
use flowgate_core::package::{FlowPackage, INPUT_SCHEMA, MAX_FILES, MAX_FILE_BYTES, OUTPUT_SCHEMA};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::registry::compile_schema;
use crate::{Engine, EngineError};

/// Script file name when the manifest does not parse (the manifest default).
const DEFAULT_SCRIPT: &str = "main.rhai";

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The package cannot be saved or published like this.
    Error,
}

/// One problem in a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// File inside the package (`main.rhai`, `flow.toml`, `tests/ok.json`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Always `error` for now.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn error(file: &str, line: usize, column: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: line.max(1),
            column: column.max(1),
            severity: Severity::Error,
            message: message.into(),
        }
    }

    fn from_invalid(e: EngineError, fallback_file: &str) -> Self {
        match e {
            EngineError::Invalid { message, details } => {
                let num = |k: &str| {
                    details
                        .get(k)
                        .and_then(Value::as_u64)
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(1)
                };
                let file = details
                    .get("file")
                    .and_then(Value::as_str)
                    .unwrap_or(fallback_file)
                    .to_owned();
                Self::error(&file, num("line"), num("column"), message)
            }
            other => Self::error(fallback_file, 1, 1, other.to_string()),
        }
    }
}

/// Cron expressions of schedule triggers that do not parse, with their positions.
pub(crate) fn cron_problems(manifest: &Manifest) -> Vec<Problem> {
    manifest
        .triggers
        .iter()
        .filter_map(|t| match t {
            Trigger::Schedule(s) => flowgate_scheduler::CronSpec::parse(&s.cron, &s.timezone)
                .err()
                .map(|e| {
                    Problem::error(
                        MANIFEST_FILE,
                        s.cron_pos.line,
                        s.cron_pos.column,
                        format!("`trigger.cron`: {e}"),
                    )
                }),
            _ => None,
        })
        .collect()
}

impl Engine {
    /// Every problem of a package: file names and sizes, the manifest (unknown
    /// keys included), the script's compilation, cron expressions, JSON files,
    /// JSON Schemas and the shape of fixtures. Empty when the package is fine.
    pub fn check_package(&self, files: &BTreeMap<String, String>) -> Vec<Problem> {
        let mut problems = Vec::new();
        if files.len() > MAX_FILES {
            problems.push(Problem::error(
                "",
                1,
                1,
                format!("a package may hold at most {MAX_FILES} files"),
            ));
        }
        for (path, content) in files {
            let ok = match path.split_once('/') {
                None => is_plain_file_name(path),
                Some(("tests", rest)) => is_plain_file_name(rest) && rest.ends_with(".json"),
                Some(_) => false,
            };
            if !ok {
                problems.push(Problem::error(
                    path,
                    1,
                    1,
                    "file names may only be plain names or tests/<name>.json",
                ));
            }
            if content.len() > MAX_FILE_BYTES {
                problems.push(Problem::error(
                    path,
                    1,
                    1,
                    format!("is larger than {MAX_FILE_BYTES} bytes"),
                ));
            }
        }
        let manifest = match files.get(MANIFEST_FILE) {
            None => {
                problems.push(Problem::error(
                    MANIFEST_FILE,
                    1,
                    1,
                    "the package has no flow.toml",
                ));
                None
            }
            Some(src) => match Manifest::parse(src) {
                Ok(m) => Some(m),
                Err(e) => {
                    problems.push(Problem::error(&e.file, e.line, e.column, e.message));
                    None
                }
            },
        };
        if let Some(m) = &manifest {
            problems.extend(cron_problems(m));
        }
        let script = manifest
            .as_ref()
            .map_or(DEFAULT_SCRIPT, |m| m.script.as_str());
        match files.get(script) {
            Some(src) => {
                if let Err(e) = self.runtime().check(script, src) {
                    problems.push(Problem::error(&e.file, e.line, e.column, e.message));
                }
            }
            None if manifest.is_some() => problems.push(Problem::error(
                MANIFEST_FILE,
                1,
                1,
                format!("the script file `{script}` is missing from the package"),
            )),
            None => {}
        }
        let package = FlowPackage {
            files: files.clone(),
        };
        for (path, content) in files.iter().filter(|(p, _)| p.ends_with(".json")) {
            if let Err(e) = serde_json::from_str::<Value>(content) {
                problems.push(Problem::error(
                    path,
                    e.line(),
                    e.column(),
                    format!("is not valid JSON: {e}"),
                ));
                continue;
            }
            if path == INPUT_SCHEMA || path == OUTPUT_SCHEMA {
                if let Err(e) = compile_schema(&package, path) {
                    problems.push(Problem::from_invalid(e, path));
                }
            } else if path.starts_with("tests/") {
                if let Err(e) = serde_json::from_str::<flowgate_script::fixtures::Fixture>(content)
                {
                    problems.push(Problem::error(
                        path,
                        e.line(),
                        e.column(),
                        format!("invalid fixture: {e}"),
                    ));
                }
            }
        }
        problems
    }
}
