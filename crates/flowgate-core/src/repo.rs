//! Repository traits: what the script host and services need from storage.
//! `flowgate-store` implements them on SQL; tests and offline fixture runs may
//! implement them in memory. All methods are blocking; async callers run them
//! off the async workers.

use serde_json::Value;

use crate::user::{NewUser, User, UserFilter, UserStatus};
use crate::{FlowName, Result, SecretString, UserId};

/// Identity store. Implementations record the matching `user.*` lifecycle
/// event in the same transaction as the change, so no change goes unannounced.
pub trait UserRepo: Send + Sync {
    /// One user by id; `None` when missing.
    fn get_user(&self, id: UserId) -> Result<Option<User>>;
    /// One user by email, ignoring case.
    fn find_user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// One user by `external_ids[system] == id`.
    fn find_user_by_external_id(&self, system: &str, id: &str) -> Result<Option<User>>;
    /// Users matching every filter pair, oldest first, at most `limit`.
    fn find_users(&self, filter: &UserFilter, limit: usize) -> Result<Vec<User>>;
    /// Creates a user; a duplicate email (ignoring case) is `Error::Conflict`.
    fn create_user(&self, new: NewUser) -> Result<User>;
    /// Applies an RFC 7396 merge patch; unknown id is `Error::NotFound`.
    fn update_user(&self, id: UserId, patch: &Value) -> Result<User>;
    /// Sets the status; unknown id is `Error::NotFound`.
    fn set_user_status(&self, id: UserId, status: UserStatus) -> Result<User>;
    /// Deletes a user; `false` when there was none.
    fn delete_user(&self, id: UserId) -> Result<bool>;
}

/// Small durable key-value state, scoped per flow.
pub trait KvRepo: Send + Sync {
    /// The value under `key`, `None` when absent or expired.
    fn kv_get(&self, flow: &FlowName, key: &str) -> Result<Option<Value>>;
    /// Stores a value, optionally expiring after `ttl_seconds`.
    fn kv_set(
        &self,
        flow: &FlowName,
        key: &str,
        value: &Value,
        ttl_seconds: Option<u64>,
    ) -> Result<()>;
    /// Removes a key; `true` when it existed.
    fn kv_delete(&self, flow: &FlowName, key: &str) -> Result<bool>;
}

/// Read access to the secret store (values decrypted).
pub trait SecretRepo: Send + Sync {
    /// The secret named `name`, `None` when absent.
    fn secret_get(&self, name: &str) -> Result<Option<SecretString>>;
}
