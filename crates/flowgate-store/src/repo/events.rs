//! Events and their outbox: idempotent insert by (source, external id), pending
//! list and dispatch marking, so no stored event is lost before fan-out.

use diesel::prelude::*;

use flowgate_core::event::Event;
use flowgate_core::{now_ms, EventId};

use crate::conn::{batch_insert_cached, AnyConnection};
use crate::error::{Result, StoreError};
use crate::models::events::EventRow;
use crate::repo::runs::insert_run_tx;
use crate::schema::events;
use crate::types::Run;
use crate::Store;

/// Stores events without external ids (ids are fresh, so no conflict is expected).
pub(crate) fn insert_events_tx(c: &mut AnyConnection, evs: &[Event]) -> Result<()> {
    if evs.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let rows = evs
        .iter()
        .map(|e| EventRow::from_event(e, None, now))
        .collect::<Result<Vec<_>>>()?;
    for chunk in rows.chunks(200) {
        batch_insert_cached!(&mut *c, events::table, chunk);
    }
    Ok(())
}

impl Store {
    /// Stores an event. With `external_id`, a repeat from the same `source`
    /// returns the original event's id and `false` (nothing stored); otherwise
    /// returns the event's id and `true`.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(event.type = %event.kind, event.source = %event.source))]
    pub fn insert_event(
        &self,
        event: &Event,
        external_id: Option<&str>,
    ) -> Result<(EventId, bool)> {
        let row = EventRow::from_event(event, external_id, now_ms())?;
        let (id, source, external_id) = (
            event.id,
            event.source.clone(),
            external_id.map(str::to_owned),
        );
        self.write(move |c| insert_event_tx(c, &row, id, &source, external_id.as_deref()))
    }

    /// One event, `None` when missing.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(event.id = %id))]
    pub fn get_event(&self, id: EventId) -> Result<Option<Event>> {
        self.flush_writes();
        let mut c = self.conn()?;
        events::table
            .find(id.to_string())
            .select(EventRow::as_select())
            .first(&mut *c)
            .optional()?
            .map(EventRow::into_event)
            .transpose()
    }

    /// Events not yet dispatched, oldest first, at most `limit`.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn pending_events(&self, limit: usize) -> Result<Vec<Event>> {
        let mut c = self.conn()?;
        events::table
            .filter(events::dispatched_at.is_null())
            .order(events::id.asc())
            .limit(limit.clamp(1, 10_000) as i64)
            .select(EventRow::as_select())
            .load(&mut *c)?
            .into_iter()
            .map(EventRow::into_event)
            .collect()
    }

    /// Marks an event dispatched; `false` when it was already (or does not exist).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(event.id = %id))]
    pub fn mark_event_dispatched(&self, id: EventId) -> Result<bool> {
        self.write(move |c| mark_dispatched_tx(c, id))
    }

    /// Fans an event out: queues `runs` (one per subscribed flow) and marks the
    /// event dispatched, in one transaction. Returns `false` and queues nothing
    /// when another dispatcher already did it, so each event is fanned out once.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(event.id = %id, runs = runs.len()))]
    pub fn dispatch_event(&self, id: EventId, runs: &[Run]) -> Result<bool> {
        let runs = runs.to_vec();
        self.write(move |c| {
            if !mark_dispatched_tx(c, id)? {
                return Ok(false);
            }
            for r in &runs {
                insert_run_tx(c, r, &[])?;
            }
            Ok(true)
        })
    }
}

/// Marks `id` dispatched; `false` when it already was (or does not exist).
fn mark_dispatched_tx(c: &mut AnyConnection, id: EventId) -> Result<bool> {
    let n = diesel::update(
        events::table
            .find(id.to_string())
            .filter(events::dispatched_at.is_null()),
    )
    .set(events::dispatched_at.eq(now_ms()))
    .execute(c)?;
    Ok(n == 1)
}

/// The body of [`Store::insert_event`], inside the writer's transaction.
fn insert_event_tx(
    c: &mut AnyConnection,
    row: &EventRow,
    id: EventId,
    source: &str,
    external_id: Option<&str>,
) -> Result<(EventId, bool)> {
    // In its own savepoint: a conflict must not abort the batch's transaction.
    match c.transaction(|c| diesel::insert_into(events::table).values(row).execute(c)) {
        Ok(_) => Ok((id, true)),
        Err(e) => {
            let err = StoreError::from(e);
            if !err.is_conflict() {
                return Err(err);
            }
            let existing: Option<String> = match external_id {
                Some(x) => events::table
                    .filter(events::source.eq(source))
                    .filter(events::external_id.eq(x))
                    .select(events::id)
                    .first(c)
                    .optional()?,
                None => None,
            };
            let existing = match existing {
                Some(id) => Some(id),
                None => events::table
                    .find(id.to_string())
                    .select(events::id)
                    .first(c)
                    .optional()?,
            };
            match existing {
                Some(id) => Ok((EventId::parse(&id)?, false)),
                None => Err(err),
            }
        }
    }
}
