//! Builds the actix application and runs it until a shutdown signal.

use actix_http::{HttpService, KeepAlive, Protocol};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::rt::net::TcpStream;
use actix_web::{web, App, HttpRequest};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crate::coalesce::CoalescedIo;
use crate::error::{json_error_handler, path_error_handler, query_error_handler, ApiError};
use crate::middleware::request_context;
use crate::{routes, AppState};

/// Server settings the gateway needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// HTTP worker threads (0 = cores).
    pub workers: usize,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// Longest a request body may take to arrive (then 408).
    pub body_timeout: Duration,
}

/// Paths the server answers on some method (for 405 versus 404).
pub(crate) const KNOWN_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/events",
    "/openapi.json",
    "/docs",
    "/docs/flows/{flow}/{version}",
    "/openapi/flows/{flow}/{file}",
    "/admin/v1/openapi.json",
    "/admin/v1/flows",
    "/admin/v1/flows/{flow}",
    "/admin/v1/flows/{flow}/versions",
    "/admin/v1/flows/{flow}/versions/{n}",
    "/admin/v1/flows/{flow}/versions/{n}/publish",
    "/admin/v1/flows/{flow}/versions/{n}/retire",
    "/admin/v1/flows/{flow}/versions/{n}/dry-run",
    "/admin/v1/flows/{flow}/rollback",
    "/admin/v1/flows/{flow}/run",
    "/admin/v1/runs",
    "/admin/v1/runs/{id}",
    "/admin/v1/runs/{id}/replay",
    "/admin/v1/keys",
    "/admin/v1/keys/{id}",
    "/admin/v1/secrets",
    "/admin/v1/secrets/{name}",
    "/admin/v1/users",
    "/admin/v1/users/{id}",
    "/admin/v1/schedules",
    "/admin/v1/audit",
    "/admin/v1/cluster",
    "/admin/v1/check",
    "/admin/v1/script-api",
    "/admin/v1/test",
    "/admin/v1/flows/{flow}/diff",
    "/admin/v1/runs/{id}/fixture",
];

/// Unknown route: 404, or 405 when the path exists with another method.
pub(crate) async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let path = req.path();
    Err(
        if let Some(known) = KNOWN_PATHS
            .iter()
            .find(|p| actix_web::dev::ResourceDef::new(**p).is_match(path))
        {
            ApiError::new(
                actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {}", req.method(), req.path()),
            )
            .with_header("allow", crate::openapi::allowed_methods(known))
        } else {
            ApiError::not_found(format!("no route for {} {}", req.method(), req.path()))
        },
    )
}

/// Runs the server on `listener` until SIGTERM/SIGINT, then drains in-flight
/// requests for up to the grace period and shuts the engine down.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: ServerConfig,
) -> std::io::Result<()> {
    let state = web::Data::from(Arc::new(state));
    let app_state = state.clone();
    let body_deadline = crate::body_deadline::BodyDeadline(config.body_timeout);
    let app = move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(body_deadline)
            .app_data(
                web::JsonConfig::default()
                    .limit(1 << 20)
                    .error_handler(json_error_handler),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error_handler))
            .app_data(web::PathConfig::default().error_handler(path_error_handler))
            .configure(routes::configure)
            .default_service(web::to(not_found))
            .wrap(from_fn(routes::admin::require_credentials))
            .wrap(from_fn(crate::body_deadline::body_deadline))
            .wrap(from_fn(crate::audit::audit_log))
            .wrap(from_fn(request_context))
    };
    // What `actix_web::HttpServer` builds, with its defaults, except that each
    // connection's writes go through `CoalescedIo` (see `coalesce`).
    let addr = listener.local_addr()?;
    let mut builder = actix_server::Server::build()
        .disable_signals()
        .backlog(1024)
        .shutdown_timeout(config.shutdown_grace.as_secs());
    if config.workers > 0 {
        builder = builder.workers(config.workers);
    }
    let graceful = builder.graceful_shutdown_signal();
    let server = builder
        .listen("flowgate-http", listener, move || {
            let graceful = graceful.clone();
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = graceful.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(KeepAlive::default())
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(addr)
                // The app reads no host or address from its config (the
                // default one names localhost): nothing builds URLs from it.
                .finish(map_config(
                    app()
                        .into_factory()
                        .map_err(|err: actix_web::Error| err.error_response()),
                    |()| AppConfig::default(),
                ));
            fn_service(|io: TcpStream| async move {
                // The worker's requests that wait for a commit are woken
                // through one task of its own (started with its first connection).
                if let Some(hub) = flowgate_engine::wake_hub() {
                    actix_web::rt::spawn(hub);
                }
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((
                    CoalescedIo::new(io),
                    Protocol::Http1,
                    peer,
                ))
            })
            .and_then(http)
        })?
        .run();
    let handle = server.handle();
    let engine = state.engine.clone();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received: draining in-flight requests");
        engine.begin_shutdown();
        handle.stop(true).await;
    });
    server.await?;
    signals.abort();
    state.engine.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
