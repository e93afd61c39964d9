//! The identity store as a service: list, find, create, change and delete
//! users. The store writes each change's lifecycle event (`user.created`, …)
//! in the same transaction and tells the event dispatcher once it commits.

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
    #[tracing::instrument(skip_all, err(level = "debug"))]
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
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn create_user(&self, body: &Value) -> Result<User> {
        let new = NewUser::from_json(body).map_err(|e| EngineError::invalid(e.to_string()))?;
        let user = self.store().call(move |s| s.create_user(new)).await?;
        Ok(user)
    }

    /// One user (404 when unknown).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(user.id = %id))]
    pub async fn get_user(&self, id: &str) -> Result<User> {
        let uid = user_id(id)?;
        self.store()
            .call(move |s| s.get_user(uid))
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Applies a JSON merge patch (RFC 7396) to a user.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(user.id = %id))]
    pub async fn update_user(&self, id: &str, patch: Value) -> Result<User> {
        let uid = user_id(id)?;
        if !patch.is_object() {
            return Err(EngineError::invalid("a user patch must be a JSON object"));
        }
        let user = self
            .store()
            .call(move |s| s.update_user(uid, &patch))
            .await?;
        Ok(user)
    }

    /// Deletes a user (404 when unknown).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(user.id = %id))]
    pub async fn delete_user(&self, id: &str) -> Result<()> {
        let uid = user_id(id)?;
        if !self.store().call(move |s| s.delete_user(uid)).await? {
            return Err(not_found(id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn users_are_created_found_changed_and_deleted() {
        let engine = crate::queries::memory_engine();
        let user = engine
            .create_user(&json!({"email": "Ann@example.com"}))
            .await;
        let Ok(user) = user else {
            panic!("create: {user:?}");
        };
        let id = user.id.to_string();
        assert!(matches!(
            engine
                .create_user(&json!({"email": "ann@example.com"}))
                .await,
            Err(EngineError::Conflict(_))
        ));
        let found = engine
            .list_users(
                UserQuery {
                    email: Some("ann@EXAMPLE.com".into()),
                    status: None,
                },
                None,
                10,
            )
            .await;
        assert_eq!(found.map(|p| p.items.len()).ok(), Some(1));
        assert!(matches!(
            engine
                .list_users(
                    UserQuery {
                        email: None,
                        status: Some("asleep".into()),
                    },
                    None,
                    10,
                )
                .await,
            Err(EngineError::BadQuery(_))
        ));
        assert!(matches!(
            engine.update_user(&id, json!([1])).await,
            Err(EngineError::Invalid { .. })
        ));
        let changed = engine
            .update_user(&id, json!({"status": "suspended"}))
            .await;
        assert_eq!(changed.map(|u| u.status.as_str()).ok(), Some("suspended"));
        assert!(engine.delete_user(&id).await.is_ok());
        assert!(matches!(
            engine.get_user(&id).await,
            Err(EngineError::NotFound(_))
        ));
        assert!(matches!(
            engine.get_user("not-an-id").await,
            Err(EngineError::NotFound(_))
        ));
    }
}
