//! flowgate-store: persistence for Flowgate on SQLite or PostgreSQL (diesel).
//!
//! One [`Store`] (a pool behind an `Arc`) implements the core repository traits
//! ([`flowgate_core::repo::UserRepo`], [`flowgate_core::repo::KvRepo`],
//! [`flowgate_core::repo::SecretRepo`]) and the operations the engine, gateway and
//! scheduler need: flows and versions, runs and the durable run queue, events and
//! their outbox, idempotency records, schedule ticks, API keys, secrets and audit.
//! All methods block; async code wraps them in [`Store::call`].

pub mod changes;
mod conn;
mod error;
mod models;
mod repo;
mod schema;
mod store;
mod types;
mod wake;
mod writer;

pub use changes::{Change, ChangeListener, ListenOptions};
pub use conn::Backend;
pub use error::{Result, StoreError};
pub use store::{Store, StoreOptions};
pub use types::*;
pub use wake::{wake_hub, WakeHub};
pub use writer::{Committed, LINGER, MAX_BATCH, URGENT_LINGER};
