//! Flow lifecycle: upload packages as draft versions (validated: manifest,
//! script compiles, cron, schemas), publish, roll back, retire, disable.

use flowgate_core::manifest::ManifestError;
use flowgate_core::package::{FlowPackage, ParsedPackage, INPUT_SCHEMA, OUTPUT_SCHEMA};
use flowgate_core::FlowName;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::registry::compile_schema;
use crate::Engine;

/// Answer to an upload.
#[derive(Debug, Clone, Serialize)]
pub struct VersionCreated {
    /// Flow name.
    pub flow: String,
    /// New version number.
    pub version: i64,
    /// Always `draft`.
    pub status: &'static str,
    /// Content hash of the package.
    pub sha256: String,
}

/// Answer to publish and rollback.
#[derive(Debug, Clone, Serialize)]
pub struct LiveChange {
    /// Flow name.
    pub flow: String,
    /// The version now live.
    pub live_version: i64,
    /// The version live before.
    pub previous_live_version: Option<i64>,
    /// Compatibility against the previous live version, when there was one.
    pub compatibility: Option<Value>,
}

fn manifest_error(e: ManifestError) -> EngineError {
    let mut err = EngineError::invalid_at(e.to_string(), &e.file, e.line, e.column);
    if let (Some(k), EngineError::Invalid { details, .. }) = (&e.key, &mut err) {
        details.insert("key".into(), Value::from(k.as_str()));
    }
    err
}

impl Engine {
    /// Checks a package completely without storing it: manifest, name, script
    /// compilation, cron expressions and JSON Schemas.
    pub fn validate_package(&self, flow: &FlowName, package: FlowPackage) -> Result<ParsedPackage> {
        let parsed = package.parse().map_err(manifest_error)?;
        if parsed.manifest.name != *flow {
            return Err(EngineError::invalid_at(
                format!(
                    "flow.toml: `name` is `{}` but the package was uploaded to flow `{flow}`",
                    parsed.manifest.name
                ),
                "flow.toml",
                1,
                1,
            ));
        }
        if let Some(p) = crate::check::cron_problems(&parsed.manifest)
            .into_iter()
            .next()
        {
            let mut err = EngineError::invalid_at(
                format!("{}:{}:{}: {}", p.file, p.line, p.column, p.message),
                &p.file,
                p.line,
                p.column,
            );
            if let EngineError::Invalid { details, .. } = &mut err {
                details.insert("key".into(), Value::from("trigger.cron"));
            }
            return Err(err);
        }
        compile_schema(&parsed.package, INPUT_SCHEMA)?;
        compile_schema(&parsed.package, OUTPUT_SCHEMA)?;
        let version = flowgate_script::FlowVersion {
            flow: flow.clone(),
            version: 0,
            sha256: parsed.package.sha256(),
            manifest: Arc::new(parsed.manifest.clone()),
            package: Arc::new(parsed.package.clone()),
            reads: Arc::default(),
        };
        if let Err(e) = self.runtime().compile(&version) {
            return Err(EngineError::invalid_at(
                e.to_string(),
                &e.file,
                e.line,
                e.column,
            ));
        }
        Ok(parsed)
    }

    /// Creates a flow with its first (draft) version.
    pub async fn create_flow(&self, name: &str, package: FlowPackage) -> Result<VersionCreated> {
        let flow = match FlowName::parse(name) {
            Ok(f) => f,
            // The name came from the package's manifest: its parser names
            // `flow.toml` and the line of the bad `name`.
            Err(e) => {
                return Err(match package.parse() {
                    Err(m) => manifest_error(m),
                    Ok(_) => e.into(),
                })
            }
        };
        let parsed = self.validate_package(&flow, package)?;
        let sha = parsed.package.sha256();
        let files = parsed.package.files;
        let f = flow.clone();
        let version = self
            .store()
            .call(move |s| {
                s.create_flow(&f)?;
                s.insert_version(&f, &files, &sha)
            })
            .await?;
        self.registry().invalidate(&flow);
        Ok(VersionCreated {
            flow: flow.to_string(),
            version: i64::from(version.version),
            status: "draft",
            sha256: version.sha256,
        })
    }

    /// Adds a draft version to an existing flow.
    pub async fn create_version(&self, name: &str, package: FlowPackage) -> Result<VersionCreated> {
        let flow = FlowName::parse(name)
            .map_err(|_| EngineError::NotFound(format!("flow `{name}` does not exist")))?;
        let parsed = self.validate_package(&flow, package)?;
        let sha = parsed.package.sha256();
        let files = parsed.package.files;
        let f = flow.clone();
        let version = self
            .store()
            .call(move |s| {
                if s.get_flow(&f)?.is_none() {
                    return Err(flowgate_store::StoreError::NotFound(format!("flow `{f}`")));
                }
                s.insert_version(&f, &files, &sha)
            })
            .await?;
        Ok(VersionCreated {
            flow: flow.to_string(),
            version: i64::from(version.version),
            status: "draft",
            sha256: version.sha256,
        })
    }

    /// Publishes a version and makes it live. With `compat.breaking_requires_force`
    /// in the manifest, a breaking change against the live version needs `force`.
    pub async fn publish(&self, name: &str, number: i64, force: bool) -> Result<LiveChange> {
        let flow = parse_existing(name)?;
        // Load (and so re-check) the version first: one stored before a rule
        // tightened, such as a schema pattern the linear-time engine refuses,
        // is refused here with the file named rather than going live.
        if self.registry().version(&flow, number).await?.is_none() {
            return Err(EngineError::NotFound(format!(
                "flow `{flow}` has no version {number}"
            )));
        }
        let compatibility = self.compatibility_against_live(&flow, number).await?;
        if let Some(report) = &compatibility {
            let breaking = report
                .get("breaking")
                .and_then(Value::as_array)
                .is_some_and(|b| !b.is_empty());
            if breaking && !force {
                if let Some(v) = self.registry().version(&flow, number).await? {
                    if v.manifest().breaking_requires_force {
                        let mut details = serde_json::Map::new();
                        details.insert("compatibility".into(), report.clone());
                        return Err(EngineError::Invalid {
                            message: format!(
                                "version {number} has breaking changes against the live version; publish again with `force` to accept them"
                            ),
                            details,
                        });
                    }
                }
            }
        }
        self.move_live(
            flow,
            number,
            flowgate_store::Store::publish_version,
            compatibility,
        )
        .await
    }

    /// Moves "live" back to an earlier published version.
    pub async fn rollback(&self, name: &str, number: i64) -> Result<LiveChange> {
        let flow = parse_existing(name)?;
        self.move_live(flow, number, flowgate_store::Store::rollback, None)
            .await
    }

    /// Points "live" at `number` with `change` (publish or rollback), then
    /// drops this node's caches and re-reads schedules.
    async fn move_live(
        &self,
        flow: FlowName,
        number: i64,
        change: fn(&flowgate_store::Store, &FlowName, u32) -> flowgate_store::Result<Option<u32>>,
        compatibility: Option<Value>,
    ) -> Result<LiveChange> {
        let f = flow.clone();
        let n32 = version_u32(&flow, number)?;
        let previous = self
            .store()
            .call(move |s| change(s, &f, n32))
            .await?
            .map(i64::from);
        self.registry().invalidate(&flow);
        self.schedules_changed();
        tracing::info!(flow.name = %flow, flow.version = number, previous = ?previous, "live version changed");
        Ok(LiveChange {
            flow: flow.to_string(),
            live_version: number,
            previous_live_version: previous,
            compatibility,
        })
    }

    /// Retires a version: its pinned URL answers 410 from now on.
    pub async fn retire(&self, name: &str, number: i64) -> Result<()> {
        let flow = parse_existing(name)?;
        let f = flow.clone();
        let n32 = version_u32(&flow, number)?;
        self.store()
            .call(move |s| s.retire_version(&f, n32))
            .await?;
        self.registry().invalidate(&flow);
        self.schedules_changed();
        tracing::info!(flow.name = %flow, flow.version = number, "version retired");
        Ok(())
    }

    /// Disables a flow: every URL of it answers 404 and its schedule stops.
    pub async fn disable(&self, name: &str) -> Result<()> {
        let flow = parse_existing(name)?;
        let f = flow.clone();
        self.store()
            .call(move |s| s.set_flow_disabled(&f, true))
            .await?;
        self.registry().invalidate(&flow);
        self.schedules_changed();
        Ok(())
    }

    /// The compatibility report of `number` against the live version, if any.
    pub async fn compatibility_against_live(
        &self,
        flow: &FlowName,
        number: i64,
    ) -> Result<Option<Value>> {
        let live = match self.registry().live_state(flow).await? {
            crate::LiveState::Live(n) if n != number => n,
            _ => return Ok(None),
        };
        let (Some(old), Some(new)) = (
            self.registry().version(flow, live).await?,
            self.registry().version(flow, number).await?,
        ) else {
            return Ok(None);
        };
        let report = flowgate_docs::compare(
            &crate::docs::flow_doc(&old, true),
            &crate::docs::flow_doc(&new, false),
        );
        Ok(Some(
            serde_json::to_value(report).map_err(|e| EngineError::Internal(e.to_string()))?,
        ))
    }
}

/// Parses a flow name from a URL; a malformed one cannot exist (404).
pub fn parse_existing(name: &str) -> Result<FlowName> {
    FlowName::parse(name)
        .map_err(|_| EngineError::NotFound(format!("flow `{name}` does not exist")))
}

fn version_u32(flow: &FlowName, number: i64) -> Result<u32> {
    u32::try_from(number)
        .map_err(|_| EngineError::NotFound(format!("flow `{flow}` has no version {number}")))
}

/// The flow name an uploaded package declares in its `flow.toml`, to name the
/// flow before the package is checked; a package without a readable name gets
/// the manifest parser's located error.
pub fn package_flow_name(package: &FlowPackage) -> Result<String> {
    let manifest = flowgate_core::manifest::MANIFEST_FILE;
    let src = package.files.get(manifest).ok_or_else(|| {
        let mut details = serde_json::Map::new();
        details.insert("file".into(), Value::from(manifest));
        EngineError::Invalid {
            message: format!("the package has no {manifest}"),
            details,
        }
    })?;
    match flowgate_core::package::declared_name(src) {
        Some(n) => Ok(n),
        None => flowgate_core::Manifest::parse(src)
            .map(|m| m.name.to_string())
            .map_err(manifest_error),
    }
}
