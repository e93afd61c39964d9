//! The identity store: `UserRepo` on SQL, each change with its `user.*` event
//! written in the same transaction (transactional outbox).
//!
//! The inherent methods return [`crate::StoreError`]; the `UserRepo` impl maps
//! them to `flowgate_core::Error` for the script host.

use diesel::prelude::*;
use serde_json::{json, Value};

use flowgate_core::event::{types, Event};
use flowgate_core::repo::UserRepo;
use flowgate_core::user::{validate_email, NewUser, User, UserFilter, UserStatus};
use flowgate_core::{now_ms, UserId};

use crate::conn::{batch_insert, write_tx, AnyConnection};
use crate::error::{Result, StoreError};
use crate::models::user_external_ids::rows_for;
use crate::models::users::{email_key, UserRow};
use crate::repo::events::insert_events_tx;
use crate::repo::flows::page;
use crate::schema::{user_external_ids, users};
use crate::types::Page;
use crate::Store;

/// Source of the events the server itself produces.
const SOURCE: &str = "flowgate";
/// Rows scanned per round trip by `find_users` when filtering in Rust.
const SCAN_CHUNK: i64 = 200;

fn load_user(c: &mut AnyConnection, id: &str) -> Result<Option<User>> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .first(c)
        .optional()?
        .map(UserRow::into_user)
        .transpose()
}

fn write_external_ids(c: &mut AnyConnection, user: &User) -> Result<()> {
    let id = user.id.to_string();
    diesel::delete(user_external_ids::table.filter(user_external_ids::user_id.eq(&id)))
        .execute(c)?;
    let rows = rows_for(&id, &user.external_ids);
    if !rows.is_empty() {
        batch_insert!(&mut *c, user_external_ids::table, &rows);
    }
    Ok(())
}

fn email_conflict(e: StoreError, email: &str) -> StoreError {
    match e {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("a user with email `{email}` already exists"))
        }
        other => other,
    }
}

fn emit(
    c: &mut AnyConnection,
    cause: Option<&flowgate_core::event::Cause>,
    kind: &str,
    data: Value,
) -> Result<()> {
    let ev = Event::new(kind, SOURCE, data);
    let ev = match cause {
        Some(k) => ev.caused_by(k),
        None => ev,
    };
    insert_events_tx(c, &[ev])
}

impl Store {
    /// One user by id.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(user.id = %id))]
    pub fn get_user(&self, id: UserId) -> Result<Option<User>> {
        let mut c = self.conn()?;
        load_user(&mut c, &id.to_string())
    }

    /// One user by email, ignoring case.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let mut c = self.conn()?;
        users::table
            .filter(users::email_lower.eq(email_key(email)))
            .select(UserRow::as_select())
            .first(&mut *c)
            .optional()?
            .map(UserRow::into_user)
            .transpose()
    }

    /// The oldest user whose `external_ids[system]` is `id` (non-string ids
    /// compare by their JSON text).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(system))]
    pub fn find_user_by_external_id(&self, system: &str, id: &str) -> Result<Option<User>> {
        let mut c = self.conn()?;
        users::table
            .filter(
                users::id.eq_any(
                    user_external_ids::table
                        .filter(user_external_ids::system.eq(system))
                        .filter(user_external_ids::external_id.eq(id))
                        .select(user_external_ids::user_id),
                ),
            )
            .order((users::created_at.asc(), users::id.asc()))
            .select(UserRow::as_select())
            .first(&mut *c)
            .optional()?
            .map(UserRow::into_user)
            .transpose()
    }

    /// Users matching every pair of `filter`, oldest first, at most `limit`.
    /// `email`, `status` and `external_ids.<system>` narrow the SQL query; every
    /// row is then checked with `UserFilter::matches`, the definition of a match.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(limit))]
    pub fn find_users(&self, filter: &UserFilter, limit: usize) -> Result<Vec<User>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut c = self.conn()?;
        let mut after: Option<(i64, String)> = None;
        loop {
            let mut q = users::table
                .select(UserRow::as_select())
                .order((users::created_at.asc(), users::id.asc()))
                .limit(SCAN_CHUNK)
                .into_boxed();
            for (path, want) in &filter.equals {
                match (path.as_str(), want) {
                    ("email", Value::String(e)) => {
                        q = q.filter(users::email_lower.eq(email_key(e)))
                    }
                    ("email", _) => return Ok(out),
                    ("status", Value::String(s)) => q = q.filter(users::status.eq(s.clone())),
                    ("status", _) => return Ok(out),
                    (p, Value::String(x)) => {
                        if let Some(system) =
                            p.strip_prefix("external_ids.").filter(|s| !s.contains('.'))
                        {
                            q = q.filter(
                                users::id.eq_any(
                                    user_external_ids::table
                                        .filter(user_external_ids::system.eq(system.to_owned()))
                                        .filter(user_external_ids::external_id.eq(x.clone()))
                                        .select(user_external_ids::user_id),
                                ),
                            );
                        }
                    }
                    _ => {}
                }
            }
            if let Some((t, id)) = &after {
                q = q.filter(
                    users::created_at
                        .gt(*t)
                        .or(users::created_at.eq(*t).and(users::id.gt(id.clone()))),
                );
            }
            let rows = q.load(&mut *c)?;
            let n = rows.len();
            if let Some(last) = rows.last() {
                after = Some((last.created_at, last.id.clone()));
            }
            for row in rows {
                let u = row.into_user()?;
                if filter.matches(&u) {
                    out.push(u);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if (n as i64) < SCAN_CHUNK {
                return Ok(out);
            }
        }
    }

    /// Users by id (creation order), for the admin API; `cursor` is a user id.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn list_users(&self, cursor: Option<&str>, limit: usize) -> Result<Page<User>> {
        let limit = limit.clamp(1, 1000);
        let mut q = users::table
            .select(UserRow::as_select())
            .order(users::id.asc())
            .limit(limit as i64 + 1)
            .into_boxed();
        if let Some(cur) = cursor {
            let cur = UserId::parse(cur)
                .map_err(|_| StoreError::Invalid(format!("bad cursor `{cur}`")))?;
            q = q.filter(users::id.gt(cur.to_string()));
        }
        let mut c = self.conn()?;
        let rows = q.load(&mut *c)?;
        page(rows, limit, |r| r.id.clone(), UserRow::into_user)
    }

    /// Creates a user (status `active` by default) and records `user.created`.
    /// A duplicate email, ignoring case, is `Conflict`.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn create_user(&self, new: NewUser) -> Result<User> {
        let cause = self.cause.as_deref();
        validate_email(&new.email)?;
        let now = now_ms();
        let user = new.into_user(now);
        let row = UserRow::from_user(&user)?;
        let mut c = self.conn()?;
        self.outbox_tx(&mut c, |c| {
            diesel::insert_into(users::table)
                .values(&row)
                .execute(c)
                .map_err(|e| email_conflict(e.into(), &user.email))?;
            write_external_ids(c, &user)?;
            emit(c, cause, types::USER_CREATED, user.to_json())
        })?;
        Ok(user)
    }

    /// Applies an RFC 7396 merge patch; records `user.updated` with `changes`
    /// (and `user.status_changed` when the status changed). No change, no event.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(user.id = %id))]
    pub fn update_user(&self, id: UserId, patch: &Value) -> Result<User> {
        let cause = self.cause.as_deref();
        let mut c = self.conn()?;
        self.outbox_tx(&mut c, |c| {
            let mut user = load_user(c, &id.to_string())?
                .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
            let before_status = user.status;
            let changes = user.apply_patch(patch)?;
            if changes.is_empty() {
                return Ok(user);
            }
            user.updated_at = now_ms().max(user.updated_at);
            let row = UserRow::from_user(&user)?;
            diesel::update(users::table.find(&row.id))
                .set(&row)
                .execute(c)
                .map_err(|e| email_conflict(e.into(), &user.email))?;
            if changes.iter().any(|f| f == "external_ids") {
                write_external_ids(c, &user)?;
            }
            let mut data = user.to_json();
            data["changes"] = json!(changes);
            emit(c, cause, types::USER_UPDATED, data)?;
            if user.status != before_status {
                let mut data = user.to_json();
                data["previous_status"] = json!(before_status.as_str());
                emit(c, cause, types::USER_STATUS_CHANGED, data)?;
            }
            Ok(user)
        })
    }

    /// Sets the status; records `user.status_changed` (with `previous_status`) when it changed.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(user.id = %id, user.status = status.as_str()))]
    pub fn set_user_status(&self, id: UserId, status: UserStatus) -> Result<User> {
        let cause = self.cause.as_deref();
        let mut c = self.conn()?;
        self.outbox_tx(&mut c, |c| {
            let mut user = load_user(c, &id.to_string())?
                .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
            if user.status == status {
                return Ok(user);
            }
            let previous = user.status;
            user.status = status;
            user.updated_at = now_ms().max(user.updated_at);
            diesel::update(users::table.find(id.to_string()))
                .set((
                    users::status.eq(status.as_str()),
                    users::updated_at.eq(user.updated_at),
                ))
                .execute(c)?;
            let mut data = user.to_json();
            data["previous_status"] = json!(previous.as_str());
            emit(c, cause, types::USER_STATUS_CHANGED, data)?;
            Ok(user)
        })
    }

    /// Deletes a user and records `user.deleted` (data: the user as it was);
    /// `false` when there was none.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(user.id = %id))]
    pub fn delete_user(&self, id: UserId) -> Result<bool> {
        let cause = self.cause.as_deref();
        let mut c = self.conn()?;
        self.outbox_tx(&mut c, |c| {
            let Some(user) = load_user(c, &id.to_string())? else {
                return Ok(false);
            };
            diesel::delete(
                user_external_ids::table.filter(user_external_ids::user_id.eq(id.to_string())),
            )
            .execute(c)?;
            diesel::delete(users::table.find(id.to_string())).execute(c)?;
            emit(c, cause, types::USER_DELETED, user.to_json())?;
            Ok(true)
        })
    }
}

impl Store {
    /// A write transaction that may add user lifecycle events to the outbox;
    /// the event dispatcher is told after it commits.
    fn outbox_tx<T>(
        &self,
        c: &mut AnyConnection,
        f: impl FnOnce(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        let out = write_tx(c, f);
        if out.is_ok() {
            self.note_outbox();
        }
        out
    }
}

impl UserRepo for Store {
    fn get_user(&self, id: UserId) -> flowgate_core::Result<Option<User>> {
        Ok(Store::get_user(self, id)?)
    }
    fn find_user_by_email(&self, email: &str) -> flowgate_core::Result<Option<User>> {
        Ok(Store::find_user_by_email(self, email)?)
    }
    fn find_user_by_external_id(
        &self,
        system: &str,
        id: &str,
    ) -> flowgate_core::Result<Option<User>> {
        Ok(Store::find_user_by_external_id(self, system, id)?)
    }
    fn find_users(&self, filter: &UserFilter, limit: usize) -> flowgate_core::Result<Vec<User>> {
        Ok(Store::find_users(self, filter, limit)?)
    }
    fn create_user(&self, new: NewUser) -> flowgate_core::Result<User> {
        Ok(Store::create_user(self, new)?)
    }
    fn update_user(&self, id: UserId, patch: &Value) -> flowgate_core::Result<User> {
        Ok(Store::update_user(self, id, patch)?)
    }
    fn set_user_status(&self, id: UserId, status: UserStatus) -> flowgate_core::Result<User> {
        Ok(Store::set_user_status(self, id, status)?)
    }
    fn delete_user(&self, id: UserId) -> flowgate_core::Result<bool> {
        Ok(Store::delete_user(self, id)?)
    }
}
