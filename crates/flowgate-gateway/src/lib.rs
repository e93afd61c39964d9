//! The HTTP adapter: actix-web routes for partners (flow endpoints, events,
//! docs) and operators (admin API, health, metrics). Handlers stay thin and
//! call the services of `flowgate-engine`.

pub mod audit;
mod convert;
pub mod error;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;

pub use error::{ApiError, ApiResult};
pub use server::{serve, ServerConfig};
pub use state::AppState;
