//! One module per resource, each with `configure(&mut ServiceConfig)`.

pub mod health;

use actix_web::web;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
}
