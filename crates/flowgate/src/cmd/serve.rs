//! `flowgate serve`: opens and migrates the database, starts the engine's
//! background services and the HTTP server, and shuts down gracefully.

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;

/// Starts the server and blocks until it has shut down.
pub fn run(config: Config) -> anyhow::Result<ExitCode> {
    give_threads_a_run_stack();
    crate::telemetry::init(&config.log.filter);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flowgate")
        .thread_stack_size(flowgate_script::RUN_STACK_BYTES)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

/// Every thread the server starts gets a run thread's stack (address space,
/// not memory: only the pages a thread touches are resident), so that the
/// HTTP workers, whose threads actix-web creates, can run scripts inline (see
/// `FlowRuntime::execute`). Must run before the process starts any thread; an
/// operator's own `RUST_MIN_STACK` is kept, and with a smaller one scripts
/// simply run on the run threads.
fn give_threads_a_run_stack() {
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var(
            "RUST_MIN_STACK",
            flowgate_script::RUN_STACK_BYTES.to_string(),
        );
    }
}

/// How often the metrics recorder folds recorded histogram samples into buckets.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve(config: Config) -> anyhow::Result<()> {
    let store = super::open_store(&config)?;
    let migrating = store.clone();
    tokio::task::spawn_blocking(move || migrating.migrate())
        .await
        .context("migration task")?
        .context("applying migrations")?;

    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        )
        .context("metric buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    // Histograms keep their raw samples until an upkeep folds them into the
    // buckets; without it a node nobody scrapes grows by every request it serves.
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_UPKEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });

    let listener = std::net::TcpListener::bind(&config.server.listen)
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let public_url = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let engine = flowgate_engine::Engine::start(
        store,
        flowgate_engine::EngineConfig {
            public_url: public_url.clone(),
            lease: Duration::from_secs(config.runs.lease_seconds),
            run_workers: config.runs.workers,
            allow_private_hosts: config.http.allow_private_hosts,
            idempotency_ttl: Duration::from_secs(config.idempotency.ttl_seconds),
            key_cache_ttl: Duration::from_secs(config.auth.key_cache_seconds),
            trusted_proxies: config.trusted_proxies()?,
            admin_oauth2: config.oauth2.admin_settings(),
            retention: config.retention.to_engine(),
            run_pool_size: config.runs.pool_size,
            inline_budget: Some(Duration::from_micros(config.runs.inline_budget_us)),
            fair_share: flowgate_engine::admission::FairShare {
                flow_percent: config.runs.flow_share_percent,
                caller_percent: config.runs.caller_share_percent,
            },
            max_event_depth: config.runs.max_event_depth,
            node_id: config.server.node_id.clone(),
            cluster: config.cluster.to_engine(),
            anonymous_rate: config
                .auth
                .anonymous_rate
                .as_deref()
                .map(flowgate_core::manifest::RateSpec::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("auth.anonymous_rate: {e}"))?,
            oauth2: config
                .oauth2
                .issuer
                .clone()
                .zip(config.oauth2.jwks_url.clone())
                .map(|(issuer, jwks_url)| flowgate_engine::OAuth2Settings {
                    issuer,
                    jwks_url,
                    audience: config.oauth2.audience.clone().unwrap_or_default(),
                    require_at_jwt: config.oauth2.require_at_jwt,
                    jwks_min_refetch: Duration::from_secs(
                        config.oauth2.jwks_min_refetch_secs.unwrap_or(30),
                    ),
                }),
        },
    )
    .await
    .context("starting the engine")?;

    tracing::info!(listen = %addr, database = %super::redact_url(&config.database.url), "flowgate listening");
    println!("flowgate listening on {public_url}");
    flowgate_gateway::serve(
        listener,
        flowgate_gateway::AppState { engine, prometheus },
        flowgate_gateway::ServerConfig {
            workers: config.server.workers,
            shutdown_grace: Duration::from_secs(config.server.shutdown_grace_secs),
            body_timeout: Duration::from_secs(config.server.body_timeout_secs),
        },
    )
    .await
    .context("running the HTTP server")?;
    Ok(())
}
