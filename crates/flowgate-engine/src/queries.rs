//! Read-only views the admin API and the docs show: flows with their
//! versions, runs, the audit log and schedules. The record types are the
//! store's, re-exported so callers need not name the store.

use chrono::{DateTime, Utc};
use flowgate_core::FlowName;
use flowgate_store::StoreError;

use crate::error::{EngineError, Result};
use crate::flows::parse_existing;
use crate::Engine;

pub use flowgate_store::{
    AuditEntry, AuditFilter, FlowRecord, Page, Run, RunAttempt, RunDetail, RunFilter, RunLog, Tick,
    TickState, Version, VersionInfo,
};

/// The store refuses only the cursor of a list query, so its refusal is a
/// bad query (400), not bad input (422).
fn list_error(e: StoreError) -> EngineError {
    match e {
        StoreError::Invalid(m) => EngineError::BadQuery(m),
        other => other.into(),
    }
}

/// A flow with its versions, oldest first.
#[derive(Debug, Clone)]
pub struct FlowDetail {
    /// The flow and its live pointer.
    pub flow: FlowRecord,
    /// Its versions, oldest first.
    pub versions: Vec<VersionInfo>,
}

/// One stored version with its package and the flow's live version.
#[derive(Debug, Clone)]
pub struct VersionDetail {
    /// The version with its files.
    pub version: Version,
    /// The flow's live version, if any.
    pub live_version: Option<u32>,
}

/// A scheduled live flow: its expression, next due times and last ticks.
#[derive(Debug, Clone)]
pub struct ScheduleInfo {
    /// The flow.
    pub flow: FlowName,
    /// Its live version.
    pub version: i64,
    /// The cron expression.
    pub cron: String,
    /// The IANA zone it is read in.
    pub timezone: String,
    /// The next five due times.
    pub next: Vec<DateTime<Utc>>,
    /// The last ticks, newest first.
    pub last_ticks: Vec<Tick>,
}

/// How many past ticks [`Engine::list_schedules`] shows per flow.
const SHOWN_TICKS: usize = 10;

impl Engine {
    /// A page of flows, by name.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn list_flows(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<FlowRecord>> {
        self.store()
            .call(move |s| s.list_flows(cursor.as_deref(), limit))
            .await
            .map_err(list_error)
    }

    /// One flow with its versions (404 when unknown).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %name))]
    pub async fn flow_detail(&self, name: &str) -> Result<FlowDetail> {
        let flow = parse_existing(name)?;
        let f2 = flow.clone();
        let (rec, versions) = self
            .store()
            .call(move |s| Ok((s.get_flow(&f2)?, s.list_versions(&f2)?)))
            .await?;
        let rec =
            rec.ok_or_else(|| EngineError::NotFound(format!("flow `{flow}` does not exist")))?;
        Ok(FlowDetail {
            flow: rec,
            versions,
        })
    }

    /// One version with its files (404 when unknown).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %name, flow.version = number))]
    pub async fn version_detail(&self, name: &str, number: u32) -> Result<VersionDetail> {
        let flow = parse_existing(name)?;
        let f2 = flow.clone();
        let (version, live_version) = self
            .store()
            .call(move |s| {
                Ok((
                    s.get_version(&f2, number)?,
                    s.get_flow(&f2)?.and_then(|f| f.live_version),
                ))
            })
            .await?;
        let version = version.ok_or_else(|| {
            EngineError::NotFound(format!("flow `{flow}` has no version {number}"))
        })?;
        Ok(VersionDetail {
            version,
            live_version,
        })
    }

    /// The versions of a flow, oldest first.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn versions_of(&self, flow: &FlowName) -> Result<Vec<VersionInfo>> {
        let f2 = flow.clone();
        Ok(self.store().call(move |s| s.list_versions(&f2)).await?)
    }

    /// A page of runs, newest first.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn list_runs(
        &self,
        filter: RunFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<Run>> {
        self.store()
            .call(move |s| s.list_runs(&filter, cursor.as_deref(), limit))
            .await
            .map_err(list_error)
    }

    /// A page of audit entries, newest first, including those of calls that
    /// just finished (the writer's batch is flushed first).
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn query_audit(
        &self,
        filter: AuditFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<AuditEntry>> {
        self.audit().flush().await;
        self.store()
            .call(move |s| s.query_audit(&filter, cursor.as_deref(), limit))
            .await
            .map_err(list_error)
    }

    /// Every scheduled live flow with its next five due times after `now`
    /// and its last ticks.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn list_schedules(&self, now: DateTime<Utc>) -> Result<Vec<ScheduleInfo>> {
        let mut items = Vec::new();
        for (flow, version) in self.live_flows().await? {
            let Some(s) = version.manifest().schedule() else {
                continue;
            };
            let spec = flowgate_scheduler::CronSpec::parse(&s.cron, &s.timezone)
                .map_err(|e| EngineError::Internal(format!("stored cron of `{flow}`: {e}")))?;
            let f2 = flow.clone();
            let last_ticks = self
                .store()
                .call(move |st| st.list_ticks(&f2, SHOWN_TICKS))
                .await?;
            items.push(ScheduleInfo {
                flow,
                version: version.number,
                cron: s.cron.clone(),
                timezone: s.timezone.clone(),
                next: spec.next_n(now, 5),
                last_ticks,
            });
        }
        Ok(items)
    }
}

/// An engine on a fresh in-memory database, for the services' own tests.
#[cfg(test)]
pub(crate) fn memory_engine() -> Engine {
    let store = flowgate_store::Store::open_and_migrate("sqlite::memory:", [7; 32])
        .unwrap_or_else(|e| panic!("in-memory store: {e}"));
    Engine::new(store, crate::EngineConfig::default()).unwrap_or_else(|e| panic!("engine: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_flows_and_forged_cursors_are_refused() {
        let engine = memory_engine();
        assert!(matches!(
            engine.flow_detail("nope").await,
            Err(EngineError::NotFound(_))
        ));
        assert!(matches!(
            engine.flow_detail("Not A Name").await,
            Err(EngineError::NotFound(_))
        ));
        assert!(matches!(
            engine.version_detail("nope", 1).await,
            Err(EngineError::NotFound(_))
        ));
        assert!(matches!(
            engine
                .list_runs(RunFilter::default(), Some("not-a-cursor".into()), 10)
                .await,
            Err(EngineError::BadQuery(_))
        ));
        let page = engine.list_flows(None, 10).await;
        assert!(page.is_ok_and(|p| p.items.is_empty() && p.next_cursor.is_none()));
    }
}
