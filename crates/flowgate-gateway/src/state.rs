//! Shared state handed to every handler.

use flowgate_engine::Engine;
use metrics_exporter_prometheus::PrometheusHandle;

/// What handlers can reach.
pub struct AppState {
    /// The application services.
    pub engine: Engine,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
}
