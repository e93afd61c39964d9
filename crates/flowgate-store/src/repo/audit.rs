//! The audit log: batched appends and filtered, paginated queries.

use diesel::prelude::*;

use crate::conn::batch_insert_rows;
use crate::error::{Result, StoreError};
use crate::models::audit::{AuditRow, ID_LAG_MS};
use crate::models::uuid_v7_floor;
use crate::repo::flows::page;
use crate::schema::audit;
use crate::types::{AuditEntry, AuditFilter, Page};
use crate::{Committed, Store};

/// Rows per multi-row INSERT (11 parameters each, under every backend's limit).
const AUDIT_CHUNK: usize = 500;

impl Store {
    /// Appends entries in one transaction (multi-row inserts).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(entries = entries.len()))]
    pub fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        self.submit_audit(entries).wait()
    }

    /// Hands audit entries to the group-committing writer; they are durable
    /// and visible to queries once the returned [`Committed`] resolves. The
    /// batch may linger up to [`crate::LINGER`] to share a transaction with
    /// other writes nobody waits for (queries flush it first).
    pub fn submit_audit(&self, entries: &[AuditEntry]) -> Committed<()> {
        let rows: Vec<AuditRow> = entries.iter().map(AuditRow::from_entry).collect();
        self.submit_lazy(move |c| {
            for chunk in rows.chunks(AUDIT_CHUNK) {
                batch_insert_rows!(&mut *c, audit::table, chunk);
            }
            Ok(())
        })
    }

    /// Entries newest first matching `filter`; `cursor` is a previous `next_cursor`.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn query_audit(
        &self,
        filter: &AuditFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditEntry>> {
        self.flush_writes();
        let limit = limit.clamp(1, 1000);
        let mut q = audit::table
            .select(AuditRow::as_select())
            .order(audit::id.desc())
            .limit(limit as i64 + 1)
            .into_boxed();
        if let Some(f) = &filter.flow {
            q = q.filter(audit::flow.eq(f.clone()));
        }
        if let Some(cl) = &filter.caller {
            q = q.filter(audit::caller.eq(cl.clone()));
        }
        if let Some(s) = filter.status {
            q = q.filter(audit::status.eq(i32::from(s)));
        }
        // The id range narrows the scan (the primary key), the time
        // itself decides.
        if let Some(t) = filter.since {
            q = q
                .filter(audit::id.ge(uuid_v7_floor(t)))
                .filter(audit::time.ge(t));
        }
        if let Some(t) = filter.until {
            q = q
                .filter(audit::id.lt(uuid_v7_floor(t.saturating_add(ID_LAG_MS))))
                .filter(audit::time.lt(t));
        }
        if let Some(cur) = cursor {
            let cur = uuid::Uuid::parse_str(cur)
                .map_err(|_| StoreError::Invalid(format!("bad cursor `{cur}`")))?;
            q = q.filter(audit::id.lt(cur.to_string()));
        }
        let mut c = self.conn()?;
        let rows = q.load(&mut *c)?;
        page(rows, limit, |r| r.id.clone(), |r| Ok(r.into_entry()))
    }
}
