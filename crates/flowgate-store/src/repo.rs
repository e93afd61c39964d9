//! Repository operations on [`crate::Store`], one module per area.

mod audit;
mod cluster;
mod console_sessions;
mod events;
mod flows;
mod idempotency;
mod keys;
mod kv;
mod retention;
pub(crate) mod runs;
mod secrets;
mod ticks;
mod users;
