//! Row model of the `users` table.

use diesel::prelude::*;
use serde_json::{Map, Value};

use flowgate_core::user::{User, UserStatus};
use flowgate_core::UserId;

use crate::error::{Result, StoreError};
use crate::schema::users;

/// A `users` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users)]
#[diesel(treat_none_as_default_value = false, treat_none_as_null = true)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub email_lower: String,
    pub display_name: Option<String>,
    pub status: String,
    pub attributes: String,
    pub external_ids: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The case-folded form of an email used for uniqueness and lookups.
pub fn email_key(email: &str) -> String {
    email.to_lowercase()
}

impl UserRow {
    /// The row for a user.
    pub fn from_user(u: &User) -> Result<Self> {
        Ok(Self {
            id: u.id.to_string(),
            email: u.email.clone(),
            email_lower: email_key(&u.email),
            display_name: u.display_name.clone(),
            status: u.status.as_str().to_owned(),
            attributes: serde_json::to_string(&u.attributes)?,
            external_ids: serde_json::to_string(&u.external_ids)?,
            created_at: u.created_at,
            updated_at: u.updated_at,
        })
    }

    /// Converts to the domain user.
    pub fn into_user(self) -> Result<User> {
        Ok(User {
            id: UserId::parse(&self.id)?,
            email: self.email,
            display_name: self.display_name,
            status: UserStatus::parse(&self.status)?,
            attributes: object(&self.attributes)?,
            external_ids: object(&self.external_ids)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn object(s: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(s)? {
        Value::Object(m) => Ok(m),
        _ => Err(StoreError::Database(
            "stored user field is not an object".into(),
        )),
    }
}
