//! The analyst console (SPEC §8) as the gateway serves it: the embedded
//! single-page bundle under `/console` ([`assets`]) and the session endpoints
//! `/console/session` ([`session`]) whose cookie the admin API accepts.
//! Every `/console` response carries the security headers of
//! [`SECURITY_HEADERS`].

pub mod assets;
pub mod session;

use actix_web::middleware::DefaultHeaders;
use actix_web::web;

/// The console's Content-Security-Policy: nothing but this server, no inline script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers on every `/console` response.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// Registers `/console`, `/console/session` and `/console/assets/*`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let headers = SECURITY_HEADERS
        .iter()
        .fold(DefaultHeaders::new(), |h, (k, v)| h.add((*k, *v)));
    cfg.service(
        web::scope("/console")
            .wrap(headers)
            .service(
                web::resource("/session")
                    .route(web::post().to(session::sign_in))
                    .route(web::get().to(session::get_session))
                    .route(web::delete().to(session::sign_out)),
            )
            .route("/assets/{file:.*}", web::get().to(assets::asset))
            .route("", web::get().to(assets::index))
            .route("/{tail:.*}", web::get().to(assets::index)),
    );
}
