//! The HTTP adapter: actix-web routes for partners (flow endpoints, events,
//! docs) and operators (admin API, health, metrics). Handlers stay thin and
//! call the services of `flowgate-engine`.

// `ApiError` carries the whole problem document; it is built only on error
// paths, where its size is irrelevant next to the HTTP response it becomes.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod body_deadline;
pub mod coalesce;
mod convert;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;

pub use error::{ApiError, ApiResult};
pub use server::{serve, ServerConfig};
pub use state::AppState;
