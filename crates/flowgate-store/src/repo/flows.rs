//! Flows and their numbered versions: create, publish, rollback, retire.

use std::collections::BTreeMap;

use diesel::prelude::*;

use flowgate_core::{now_ms, FlowName};

use crate::changes::{record_change, Change};
use crate::conn::{write_tx, AnyConnection};
use crate::error::{Result, StoreError};
use crate::models::flow_versions::{VersionInfoRow, VersionRow};
use crate::models::flows::FlowRow;
use crate::schema::{flow_versions, flows};
use crate::types::{FlowRecord, Page, RetireOutcome, Version, VersionInfo, VersionStatus};
use crate::Store;

/// Touches the flow row (taking its row lock on PostgreSQL); `NotFound` when missing.
fn lock_flow(c: &mut AnyConnection, flow: &FlowName, now: i64) -> Result<()> {
    let n = diesel::update(flows::table.find(flow.as_str()))
        .set(flows::updated_at.eq(now))
        .execute(c)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("flow `{flow}`")));
    }
    Ok(())
}

fn version_status(c: &mut AnyConnection, flow: &FlowName, n: u32) -> Result<VersionStatus> {
    let s: Option<String> = flow_versions::table
        .find((flow.as_str(), n as i32))
        .select(flow_versions::status)
        .first(c)
        .optional()?;
    match s {
        Some(s) => VersionStatus::parse(&s),
        None => Err(StoreError::NotFound(format!(
            "version {n} of flow `{flow}`"
        ))),
    }
}

fn live_of(c: &mut AnyConnection, flow: &FlowName) -> Result<Option<u32>> {
    let v: Option<i32> = flows::table
        .find(flow.as_str())
        .select(flows::live_version)
        .first(c)?;
    Ok(v.map(|v| v.max(0) as u32))
}

fn set_live(c: &mut AnyConnection, flow: &FlowName, n: Option<u32>, now: i64) -> Result<()> {
    diesel::update(flows::table.find(flow.as_str()))
        .set((
            flows::live_version.eq(n.map(|n| n as i32)),
            flows::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

impl Store {
    /// Creates an enabled flow without versions; `Conflict` when it exists.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %name))]
    pub fn create_flow(&self, name: &FlowName) -> Result<FlowRecord> {
        let row = FlowRow::new(name, now_ms());
        let mut c = self.conn()?;
        diesel::insert_into(flows::table)
            .values(&row)
            .execute(&mut *c)
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("flow `{name}` exists")),
                other => other,
            })?;
        row.into_record()
    }

    /// One flow, `None` when missing.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %name))]
    pub fn get_flow(&self, name: &FlowName) -> Result<Option<FlowRecord>> {
        let mut c = self.conn()?;
        flows::table
            .find(name.as_str())
            .select(FlowRow::as_select())
            .first(&mut *c)
            .optional()?
            .map(FlowRow::into_record)
            .transpose()
    }

    /// Flows by name, after `cursor` (a name), at most `limit` (1..=1000).
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn list_flows(&self, cursor: Option<&str>, limit: usize) -> Result<Page<FlowRecord>> {
        let limit = limit.clamp(1, 1000);
        let mut c = self.conn()?;
        let mut q = flows::table
            .select(FlowRow::as_select())
            .order(flows::name.asc())
            .limit(limit as i64 + 1)
            .into_boxed();
        if let Some(cur) = cursor {
            q = q.filter(flows::name.gt(cur.to_owned()));
        }
        let rows = q.load(&mut *c)?;
        page(rows, limit, |r| r.name.clone(), FlowRow::into_record)
    }

    /// Enables or disables a flow; returns the updated flow.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %name, disabled))]
    pub fn set_flow_disabled(&self, name: &FlowName, disabled: bool) -> Result<FlowRecord> {
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let n = diesel::update(flows::table.find(name.as_str()))
                .set((
                    flows::disabled.eq(i32::from(disabled)),
                    flows::updated_at.eq(now_ms()),
                ))
                .execute(c)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("flow `{name}`")));
            }
            record_change(c, &Change::Flow(name.to_string()))
        })?;
        drop(c);
        self.get_flow(name)?
            .ok_or_else(|| StoreError::NotFound(format!("flow `{name}`")))
    }

    /// Stores a new draft version with the next free number (allocated atomically);
    /// `NotFound` when the flow does not exist.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow))]
    pub fn insert_version(
        &self,
        flow: &FlowName,
        files: &BTreeMap<String, String>,
        sha256: &str,
    ) -> Result<VersionInfo> {
        let files = serde_json::to_string(files)?;
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let now = now_ms();
            lock_flow(c, flow, now)?;
            let max: Option<i32> = flow_versions::table
                .filter(flow_versions::flow.eq(flow.as_str()))
                .select(diesel::dsl::max(flow_versions::version))
                .first(c)?;
            let row = VersionRow {
                flow: flow.as_str().to_owned(),
                version: max.unwrap_or(0) + 1,
                status: VersionStatus::Draft.as_str().to_owned(),
                sha256: sha256.to_owned(),
                files,
                created_at: now,
                published_at: None,
                retired_at: None,
            };
            diesel::insert_into(flow_versions::table)
                .values(&row)
                .execute(c)?;
            Ok(VersionInfo {
                flow: flow.clone(),
                version: row.version as u32,
                status: VersionStatus::Draft,
                sha256: row.sha256,
                created_at: now,
                published_at: None,
                retired_at: None,
            })
        })
    }

    /// One version with its files, `None` when missing.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow, flow.version = n))]
    pub fn get_version(&self, flow: &FlowName, n: u32) -> Result<Option<Version>> {
        let mut c = self.conn()?;
        flow_versions::table
            .find((flow.as_str(), n as i32))
            .select(VersionRow::as_select())
            .first(&mut *c)
            .optional()?
            .map(VersionRow::into_version)
            .transpose()
    }

    /// One version's metadata (status, content hash) without its package.
    pub fn get_version_info(&self, flow: &FlowName, n: u32) -> Result<Option<VersionInfo>> {
        let mut c = self.conn()?;
        flow_versions::table
            .find((flow.as_str(), n as i32))
            .select(VersionInfoRow::as_select())
            .first(&mut *c)
            .optional()?
            .map(VersionInfoRow::into_info)
            .transpose()
    }

    /// All versions of a flow (metadata only), oldest first.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow))]
    pub fn list_versions(&self, flow: &FlowName) -> Result<Vec<VersionInfo>> {
        let mut c = self.conn()?;
        flow_versions::table
            .filter(flow_versions::flow.eq(flow.as_str()))
            .order(flow_versions::version.asc())
            .select(VersionInfoRow::as_select())
            .load(&mut *c)?
            .into_iter()
            .map(VersionInfoRow::into_info)
            .collect()
    }

    /// The highest-numbered version (any status), `None` when there is none.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow))]
    pub fn latest_version(&self, flow: &FlowName) -> Result<Option<VersionInfo>> {
        let mut c = self.conn()?;
        flow_versions::table
            .filter(flow_versions::flow.eq(flow.as_str()))
            .order(flow_versions::version.desc())
            .select(VersionInfoRow::as_select())
            .first(&mut *c)
            .optional()?
            .map(VersionInfoRow::into_info)
            .transpose()
    }

    /// Publishes version `n` (draft or published) and makes it live, in one
    /// transaction. Returns the previously live version. A retired version is
    /// `Conflict`; unknown flow or version is `NotFound`.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow, flow.version = n))]
    pub fn publish_version(&self, flow: &FlowName, n: u32) -> Result<Option<u32>> {
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let now = now_ms();
            lock_flow(c, flow, now)?;
            match version_status(c, flow, n)? {
                VersionStatus::Retired => {
                    return Err(StoreError::Conflict(format!(
                        "version {n} of flow `{flow}` is retired"
                    )))
                }
                VersionStatus::Draft => {
                    diesel::update(flow_versions::table.find((flow.as_str(), n as i32)))
                        .set((
                            flow_versions::status.eq(VersionStatus::Published.as_str()),
                            flow_versions::published_at.eq(now),
                        ))
                        .execute(c)?;
                }
                VersionStatus::Published => {}
            }
            let prev = live_of(c, flow)?;
            set_live(c, flow, Some(n), now)?;
            record_change(c, &Change::Flow(flow.to_string()))?;
            Ok(prev)
        })
    }

    /// Makes the already published version `n` live again; returns the previous
    /// live version. A draft or retired version is `Conflict`.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow, flow.version = n))]
    pub fn rollback(&self, flow: &FlowName, n: u32) -> Result<Option<u32>> {
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let now = now_ms();
            lock_flow(c, flow, now)?;
            let st = version_status(c, flow, n)?;
            if st != VersionStatus::Published {
                return Err(StoreError::Conflict(format!(
                    "version {n} of flow `{flow}` is {}, only a published version can be made live",
                    st.as_str()
                )));
            }
            let prev = live_of(c, flow)?;
            set_live(c, flow, Some(n), now)?;
            record_change(c, &Change::Flow(flow.to_string()))?;
            Ok(prev)
        })
    }

    /// Retires version `n`. Policy: the live version cannot be retired while
    /// another published version exists (`Conflict`: roll back first); when it is
    /// the only published version it is retired and the flow has no live version
    /// ([`RetireOutcome::RetiredLive`]). Retiring twice is a no-op.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow, flow.version = n))]
    pub fn retire_version(&self, flow: &FlowName, n: u32) -> Result<RetireOutcome> {
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let now = now_ms();
            lock_flow(c, flow, now)?;
            if version_status(c, flow, n)? == VersionStatus::Retired {
                return Ok(RetireOutcome::AlreadyRetired);
            }
            let live = live_of(c, flow)?;
            let mut outcome = RetireOutcome::Retired;
            if live == Some(n) {
                let others: i64 = flow_versions::table
                    .filter(flow_versions::flow.eq(flow.as_str()))
                    .filter(flow_versions::status.eq(VersionStatus::Published.as_str()))
                    .filter(flow_versions::version.ne(n as i32))
                    .count()
                    .get_result(c)?;
                if others > 0 {
                    return Err(StoreError::Conflict(format!(
                        "version {n} of flow `{flow}` is live; roll back to another published version before retiring it"
                    )));
                }
                set_live(c, flow, None, now)?;
                outcome = RetireOutcome::RetiredLive;
            }
            diesel::update(flow_versions::table.find((flow.as_str(), n as i32)))
                .set((
                    flow_versions::status.eq(VersionStatus::Retired.as_str()),
                    flow_versions::retired_at.eq(now),
                ))
                .execute(c)?;
            record_change(c, &Change::Flow(flow.to_string()))?;
            Ok(outcome)
        })
    }
}

/// Builds a page from `limit + 1` loaded rows: the extra row only signals more.
pub(crate) fn page<R, T>(
    mut rows: Vec<R>,
    limit: usize,
    key: impl Fn(&R) -> String,
    conv: impl Fn(R) -> Result<T>,
) -> Result<Page<T>> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more { rows.last().map(&key) } else { None };
    let items = rows.into_iter().map(conv).collect::<Result<Vec<_>>>()?;
    Ok(Page { items, next_cursor })
}
