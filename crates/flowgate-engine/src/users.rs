//! The identity store as a service: list, find, create, change and delete
//! users. The store writes each change's lifecycle event (`user.created`, …)
//! in the same transaction; the event dispatcher is woken after every change.

use flowgate_core::user::{NewUser, User, UserFilter, UserStatus};
use flowgate_core::UserId;
use serde_json::{Map, Value};

use crate::error::{EngineError, Result};
use crate::queries::Page;
use crate::Engine;

/// Filters of a user listing; with either set, the answer is one page of
/// matches without a cursor.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Exact email, ignoring case.
    pub email: Option<String>,
    /// Status (`active`, `suspended`, `disabled`).
    pub status: Option<String>,
}

fn user_id(id: &str) -> Result<UserId> {
    UserId::parse(id).map_err(|_| not_found(id))
}

fn not_found(id: &str) -> EngineError {
    EngineError::NotFound(format!("user `{id}` does not exist"))
}

impl Engine {
    /// Users by id, or (with a filter) the first `limit` matches.
    pub async fn list_users(
        &self,
        query: UserQuery,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<User>> {
        if query.email.is_none() && query.status.is_none() {
            return self
                .store()
                .call(move |s| s.list_users(cursor.as_deref(), limit))
                .await
                .map_err(|e| match e {
                    flowgate_store::StoreError::Invalid(m) => EngineError::BadQuery(m),
                    other => other.into(),
                });
        }
        let mut f = Map::new();
        if let Some(e) = query.email {
            f.insert("email".into(), Value::from(e));
        }
        if let Some(s) = query.status {
            UserStatus::parse(&s).map_err(|e| EngineError::BadQuery(e.to_string()))?;
            f.insert("status".into(), Value::from(s));
        }
        let filter = UserFilter::from_json(&Value::Object(f))
            .map_err(|e| EngineError::BadQuery(e.to_string()))?;
        let items = self
            .store()
            .call(move |s| s.find_users(&filter, limit))
            .await?;
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// Creates a user from its JSON object (as the admin API and scripts send it).
    pub async fn create_user(&self, body: &Value) -> Result<User> {
        let new = NewUser::from_json(body).map_err(|e| EngineError::invalid(e.to_string()))?;
        let user = self.store().call(move |s| s.create_user(new)).await?;
        self.wake_dispatcher();
        Ok(user)
    }

    /// One user (404 when unknown).
    pub async fn get_user(&self, id: &str) -> Result<User> {
        let uid = user_id(id)?;
        self.store()
            .call(move |s| s.get_user(uid))
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Applies a JSON merge patch (RFC 7396) to a user.
    pub async fn update_user(&self, id: &str, patch: Value) -> Result<User> {
        let uid = user_id(id)?;
        if !patch.is_object() {
            return Err(EngineError::invalid("a user patch must be a JSON object"));
        }
        let user = self
            .store()
            .call(move |s| s.update_user(uid, &patch))
            .await?;
        self.wake_dispatcher();
        Ok(user)
    }

    /// Deletes a user (404 when unknown).
    pub async fn delete_user(&self, id: &str) -> Result<()> {
        let uid = user_id(id)?;
        if !self.store().call(move |s| s.delete_user(uid)).await? {
            return Err(not_found(id));
        }
        self.wake_dispatcher();
        Ok(())
    }
}
