//! Row model of the `runs` table.

use diesel::prelude::*;

use flowgate_core::run::{RunStatus, TriggerKind};
use flowgate_core::{EventId, RunId};

use crate::error::{Result, StoreError};
use crate::models::{json_opt, json_text, name, parse_stored};
use crate::schema::runs;
use crate::types::Run;
use serde_json::Value;

/// A `runs` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = runs)]
#[diesel(treat_none_as_default_value = false)]
pub struct RunRow {
    pub id: String,
    pub flow: String,
    pub version: i32,
    pub trigger_kind: String,
    pub status: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub input: String,
    pub available_at: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub response_status: Option<i32>,
    pub response: Option<String>,
    pub error: Option<String>,
    pub scheduled_at: Option<i64>,
    pub event_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub http_calls: Option<String>,
}

impl crate::conn::InsertRow for RunRow {
    const INSERT: &'static str = "INSERT INTO runs (id, flow, version, trigger_kind, status, \
        attempt, max_attempts, input, available_at, lease_owner, lease_expires_at, started_at, \
        finished_at, duration_ms, response_status, response, error, scheduled_at, event_id, \
        idempotency_key, created_at, http_calls) VALUES ";

    fn columns(&self) -> impl Iterator<Item = crate::conn::Col<'_>> {
        use crate::conn::Col::*;
        [
            Text(&self.id),
            Text(&self.flow),
            Int(&self.version),
            Text(&self.trigger_kind),
            Text(&self.status),
            Int(&self.attempt),
            Int(&self.max_attempts),
            Text(&self.input),
            Big(&self.available_at),
            TextOpt(&self.lease_owner),
            BigOpt(&self.lease_expires_at),
            BigOpt(&self.started_at),
            BigOpt(&self.finished_at),
            BigOpt(&self.duration_ms),
            IntOpt(&self.response_status),
            TextOpt(&self.response),
            TextOpt(&self.error),
            BigOpt(&self.scheduled_at),
            TextOpt(&self.event_id),
            TextOpt(&self.idempotency_key),
            Big(&self.created_at),
            TextOpt(&self.http_calls),
        ]
        .into_iter()
    }
}

impl RunRow {
    /// The row for a public run.
    pub fn from_run(r: &Run) -> Result<Self> {
        Ok(Self {
            id: r.id.to_string(),
            flow: r.flow.as_str().to_owned(),
            version: r.version as i32,
            trigger_kind: r.trigger.as_str().to_owned(),
            status: r.status.as_str().to_owned(),
            attempt: r.attempt as i32,
            max_attempts: r.max_attempts as i32,
            input: match &r.input_json {
                Some(text) => text.clone(),
                None => json_text(&r.input)?,
            },
            available_at: r.available_at,
            lease_owner: r.lease_owner.clone(),
            lease_expires_at: r.lease_expires_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_ms: r.duration_ms,
            response_status: r.response_status.map(i32::from),
            response: match &r.response_json {
                Some(text) => Some(text.clone()),
                None => r.response.as_ref().map(json_text).transpose()?,
            },
            error: r.error.clone(),
            scheduled_at: r.scheduled_at,
            event_id: r.event_id.map(|e| e.to_string()),
            idempotency_key: r.idempotency_key.clone(),
            created_at: r.created_at,
            http_calls: r.http_calls.as_ref().map(json_text).transpose()?,
        })
    }

    /// Converts to the public run.
    pub fn into_run(mut self) -> Result<Run> {
        let input = parse_stored(&std::mem::take(&mut self.input))?;
        self.into_run_with(input, None, Docs::Strict)
    }

    /// Converts to the public run, its inputs left as text in `input_json`
    /// (a claimed run: the worker reads them straight into script values).
    pub fn into_claimed_run(mut self) -> Result<Run> {
        let text = std::mem::take(&mut self.input);
        self.into_run_with(Value::Null, Some(text), Docs::Strict)
    }

    /// Converts to the public run for a listing, which shows none of the
    /// stored documents (input, response, outbound calls): one that does not
    /// parse is left empty, and logged, instead of failing the whole page.
    pub fn into_listed_run(mut self) -> Result<Run> {
        let input = self
            .read_doc("input", Some(&self.input), Docs::Lenient)?
            .unwrap_or(Value::Null);
        self.input = String::new();
        self.into_run_with(input, None, Docs::Lenient)
    }

    /// A stored document of this run, parsed; one that does not parse is
    /// an error or, `Lenient`, missing (and logged).
    fn read_doc(&self, what: &str, text: Option<&str>, docs: Docs) -> Result<Option<Value>> {
        match (json_opt(text), docs) {
            (Err(e), Docs::Lenient) => {
                tracing::warn!(run.id = %self.id, error = %e, "a run's stored {what} does not parse; listed without it");
                Ok(None)
            }
            (read, _) => read,
        }
    }

    fn into_run_with(self, input: Value, input_json: Option<String>, docs: Docs) -> Result<Run> {
        let response = self.read_doc("response", self.response.as_deref(), docs)?;
        let http_calls = self.read_doc("outbound calls", self.http_calls.as_deref(), docs)?;
        Ok(Run {
            id: RunId::parse(&self.id)?,
            flow: name(&self.flow)?,
            version: self.version.max(0) as u32,
            trigger: TriggerKind::parse(&self.trigger_kind)?,
            status: RunStatus::parse(&self.status)?,
            attempt: self.attempt.max(0) as u32,
            max_attempts: self.max_attempts.max(0) as u32,
            input,
            input_json,
            available_at: self.available_at,
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_ms: self.duration_ms,
            response_status: self
                .response_status
                .map(|s| {
                    u16::try_from(s).map_err(|_| StoreError::Database(format!("bad status {s}")))
                })
                .transpose()?,
            response,
            response_json: None,
            error: self.error,
            scheduled_at: self.scheduled_at,
            event_id: self.event_id.as_deref().map(EventId::parse).transpose()?,
            idempotency_key: self.idempotency_key,
            created_at: self.created_at,
            http_calls,
        })
    }
}

/// How [`RunRow::into_run_with`] takes a stored document that does not parse.
#[derive(Clone, Copy)]
enum Docs {
    /// As an error.
    Strict,
    /// As missing (logged).
    Lenient,
}
