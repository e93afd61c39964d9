//! One module per resource, each with `configure(&mut ServiceConfig)`.

pub mod admin;
pub mod console;
pub mod docs;
pub mod events;
pub mod health;
pub mod invoke;

use actix_web::web;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The flow endpoints come first: they carry the traffic, and every route
    // tried before them costs each call a pattern match.
    invoke::configure(cfg);
    health::configure(cfg);
    crate::openapi::configure(cfg);
    admin::configure(cfg);
    console::configure(cfg);
    events::configure(cfg);
    docs::configure(cfg);
}
