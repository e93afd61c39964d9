//! Application services of Flowgate, callable without HTTP: the registry of
//! live versions, flow lifecycle (create, publish, rollback, retire), the run
//! executor and durable queue workers, event dispatch, schedules, audit, and
//! the credential checks the gateway applies.

pub mod admission;
pub mod audit;
pub mod call;
pub mod check;
pub mod cluster;
pub mod cluster_rate;
pub mod console;
pub mod docs;
pub mod dryrun;
pub mod error;
pub mod events;
pub mod flows;
pub mod invoke;
pub mod keys;
pub mod queries;
pub mod queue;
pub mod registry;
pub mod schedules;
pub mod secrets;
pub mod security;
pub mod sessions;
pub mod users;

pub use error::{EngineError, Result};
/// A thread that serves many requests runs a hub so that the database
/// writer's wake-ups of its waiting requests cost one system call per commit,
/// not one per request (see [`flowgate_store::WakeHub`]).
pub use flowgate_store::{wake_hub, WakeHub};
pub use registry::{LiveState, LoadedVersion, Registry, VersionStatus};

use flowgate_script::{FlowRuntime, RuntimeConfig};
use flowgate_store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// OAuth2 settings (all set, or OAuth2 is off).
#[derive(Debug, Clone)]
pub struct OAuth2Settings {
    /// Expected issuer.
    pub issuer: String,
    /// JWKS location.
    pub jwks_url: String,
    /// Expected audience.
    pub audience: String,
    /// Require `typ: at+jwt`.
    pub require_at_jwt: bool,
    /// Least time between JWKS refetches caused by unknown `kid`s.
    pub jwks_min_refetch: Duration,
}

/// How long finished work is kept (`None`: forever).
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// Finished runs with their logs and attempts.
    pub runs: Option<Duration>,
    /// Audit entries.
    pub audit: Option<Duration>,
    /// Dispatched events and schedule ticks.
    pub events: Option<Duration>,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Base URL partners use (docs, `Location` headers are relative).
    pub public_url: String,
    /// Lease length of claimed runs.
    pub lease: Duration,
    /// Concurrent async runs on this node.
    pub run_workers: usize,
    /// Let flows call private addresses.
    pub allow_private_hosts: bool,
    /// Replay window of idempotency keys.
    pub idempotency_ttl: Duration,
    /// OAuth2, when configured.
    pub oauth2: Option<OAuth2Settings>,
    /// The admin API's own OAuth2 issuer/audience (`None`: admin API keys only).
    pub admin_oauth2: Option<OAuth2Settings>,
    /// Peers whose `X-Forwarded-For` names the client (`server.trusted_proxies`).
    pub trusted_proxies: flowgate_auth::TrustedProxies,
    /// How long a verified API key is trusted without argon2 (also the longest
    /// a revocation made on another node takes to be seen here).
    pub key_cache_ttl: Duration,
    /// Per-address limit for unauthenticated traffic (`None`: 600/minute, burst 120).
    pub anonymous_rate: Option<flowgate_core::manifest::RateSpec>,
    /// Retention of finished work.
    pub retention: Retention,
    /// Execution slots of the run pool (`None`: 4 × CPU cores).
    pub run_pool_size: Option<usize>,
    /// Longest a run may execute inline, on the thread that asks for it,
    /// before it moves to a run thread (`None`: the runtime's default, 2 ms;
    /// zero: never inline). See `FlowRuntime::execute`.
    pub inline_budget: Option<Duration>,
    /// How the run pool is shared between flows and callers.
    pub fair_share: admission::FairShare,
    /// Longest chain of event-triggered runs (a run started by an event a
    /// run caused is one deeper); deeper runs fail with `event_chain_too_deep`.
    pub max_event_depth: u32,
    /// This node's id (`None`: `node-<uuidv7>` generated at start).
    pub node_id: Option<String>,
    /// Heartbeats, the bound after which a node is gone, change checks.
    pub cluster: cluster::ClusterSettings,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            lease: Duration::from_secs(30),
            run_workers: 16,
            allow_private_hosts: false,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            oauth2: None,
            admin_oauth2: None,
            trusted_proxies: flowgate_auth::TrustedProxies::default(),
            key_cache_ttl: Duration::from_secs(10),
            anonymous_rate: None,
            retention: Retention::default(),
            run_pool_size: None,
            inline_budget: None,
            fair_share: admission::FairShare::default(),
            max_event_depth: 8,
            node_id: None,
            cluster: cluster::ClusterSettings::default(),
        }
    }
}

/// The application services; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    runtime: FlowRuntime,
    registry: Registry,
    config: EngineConfig,
    audit: audit::AuditWriter,
    security: security::Security,
    admission: admission::Admission,
    shutting_down: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
    workers: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    node_id: String,
    http: Arc<dyn flowgate_script::HttpClient>,
    wake: tokio::sync::Notify,
    /// Async runs that start without a claim (see [`queue::Direct`]).
    direct: queue::Direct,
    schedules_wake: tokio::sync::Notify,
    /// Change notices as applied, for caches outside the engine.
    changes: tokio::sync::broadcast::Sender<flowgate_store::Change>,
    /// The PostgreSQL change listener, while running.
    listener: std::sync::Mutex<Option<flowgate_store::ChangeListener>>,
    /// Ends the heartbeat (after the workers drained).
    heartbeat_stop: std::sync::Mutex<Option<watch::Sender<bool>>>,
    heartbeat: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Engine {
    /// Builds the services and starts the background tasks (queue workers,
    /// event dispatcher, scheduler, audit flusher).
    pub async fn start(store: Store, config: EngineConfig) -> Result<Self> {
        let engine = Self::new(store, config)?;
        engine.spawn_background().await;
        Ok(engine)
    }

    /// Builds the services without background tasks (tests, CLI).
    pub fn new(store: Store, config: EngineConfig) -> Result<Self> {
        let defaults = RuntimeConfig::default();
        let pool_size = config.run_pool_size.unwrap_or(defaults.pool_size).max(1);
        let admission = admission::Admission::new(pool_size, config.fair_share);
        let runtime = FlowRuntime::new(RuntimeConfig {
            http: flowgate_script::HttpDefaults {
                allow_private_hosts: config.allow_private_hosts,
                ..defaults.http.clone()
            },
            pool_size,
            inline_budget: config.inline_budget.unwrap_or(defaults.inline_budget),
            ..defaults
        });
        let http: Arc<dyn flowgate_script::HttpClient> = Arc::new(
            flowgate_script::ReqwestHttp::new(tokio::runtime::Handle::current()),
        );
        let (shutdown_tx, _) = watch::channel(false);
        let node_id = config
            .node_id
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(cluster::generate_node_id);
        store.set_owner(&node_id);
        let audit = audit::AuditWriter::start(store.clone());
        let security = security::Security::new(
            store.clone(),
            security::SecuritySettings {
                oauth2: config.oauth2.clone(),
                admin_oauth2: config.admin_oauth2.clone(),
                trusted_proxies: config.trusted_proxies.clone(),
                key_cache_ttl: config.key_cache_ttl,
                anonymous_rate: config.anonymous_rate.clone(),
            },
        );
        let direct = queue::Direct::new(config.run_workers);
        Ok(Self {
            inner: Arc::new(Inner {
                registry: Registry::new(store.clone()),
                store,
                runtime,
                config,
                audit,
                security,
                admission,
                shutting_down: AtomicBool::new(false),
                shutdown_tx,
                workers: tokio::sync::Mutex::new(Vec::new()),
                node_id,
                http,
                wake: tokio::sync::Notify::new(),
                direct,
                schedules_wake: tokio::sync::Notify::new(),
                changes: tokio::sync::broadcast::channel(256).0,
                listener: std::sync::Mutex::new(None),
                heartbeat_stop: std::sync::Mutex::new(None),
                heartbeat: tokio::sync::Mutex::new(None),
            }),
        })
    }

    async fn spawn_background(&self) {
        let heartbeat = self.start_cluster().await;
        *self.inner.heartbeat.lock().await = Some(heartbeat);
        let mut tasks = self.inner.workers.lock().await;
        tasks.extend(queue::spawn_workers(
            self.clone(),
            self.inner.shutdown_tx.subscribe(),
        ));
        tasks.push(schedules::spawn(
            self.clone(),
            self.inner.shutdown_tx.subscribe(),
        ));
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    /// The script runtime.
    pub fn runtime(&self) -> &FlowRuntime {
        &self.inner.runtime
    }
    /// The version registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }
    /// Settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }
    /// The audit writer.
    pub fn audit(&self) -> &audit::AuditWriter {
        &self.inner.audit
    }
    /// Credential checks.
    pub fn security(&self) -> &security::Security {
        &self.inner.security
    }
    /// Fair shares of the run pool.
    pub fn admission(&self) -> &admission::Admission {
        &self.inner.admission
    }
    /// This process's id as a lease owner.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The outbound HTTP client flows use.
    pub fn inner_http(&self) -> Arc<dyn flowgate_script::HttpClient> {
        self.inner.http.clone()
    }
    /// Wakes idle queue workers (a run was queued).
    pub fn wake_workers(&self) {
        // Runs were queued: none starts without a claim before them.
        self.inner.direct.queued();
        // The claim loop is the one waiter. `notify_one` keeps the wake-up
        // when it is busy claiming right now, so a run queued while the loop
        // found nothing is not left for the idle poll.
        self.inner.wake.notify_one();
    }
    /// What idle queue workers wait on.
    pub fn wake(&self) -> &tokio::sync::Notify {
        &self.inner.wake
    }
    /// The worker slots and the runs that start without a claim.
    pub(crate) fn direct(&self) -> &queue::Direct {
        &self.inner.direct
    }
    /// Wakes the event dispatcher (an event was stored).
    pub fn wake_dispatcher(&self) {
        self.store().note_outbox();
    }
    /// What the idle event dispatcher waits on.
    pub fn event_wake(&self) -> &tokio::sync::Notify {
        self.store().outbox_wake()
    }
    /// Rebuilds the schedules now (a flow's live version or state changed).
    pub fn schedules_changed(&self) {
        self.inner.schedules_wake.notify_one();
    }
    /// What the schedule refresher waits on.
    pub fn schedules_wake(&self) -> &tokio::sync::Notify {
        &self.inner.schedules_wake
    }

    /// Whether the database answers.
    pub async fn ready(&self) -> Result<()> {
        self.inner.store.call(|s| s.ping()).await?;
        Ok(())
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }

    /// Stops claiming new work; in-flight requests continue.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let _ = self.inner.shutdown_tx.send(true);
    }

    /// Waits for background tasks (they finish or release their runs) and
    /// flushes the audit log and every pending write.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        let tasks: Vec<_> = self.inner.workers.lock().await.drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        // Only now: runs still draining above must not look abandoned.
        self.stop_cluster().await;
        self.inner.audit.flush().await;
        // Records nobody waited for (sync runs) commit before the process ends.
        let _ = self
            .inner
            .store
            .call(|s| {
                s.flush_writes();
                Ok(())
            })
            .await;
    }

    /// Refreshes gauges (queue depth, cache sizes) before `/metrics` renders.
    pub async fn export_gauges(&self) {
        metrics::gauge!("flowgate_node_info", "node" => self.node_id().to_owned(), "version" => cluster::VERSION)
            .set(1.0);
        metrics::gauge!("flowgate_runs_admitted").set(self.inner.admission.running() as f64);
        metrics::gauge!("flowgate_script_pool_in_use").set(self.inner.runtime.pool_in_use() as f64);
        let stats = self.inner.runtime.cache_stats();
        metrics::gauge!("flowgate_script_cache_entries").set(stats.entries as f64);
        let keys = self.inner.security.key_cache_stats();
        metrics::gauge!("flowgate_api_key_cache_hits").set(keys.hits as f64);
        metrics::gauge!("flowgate_api_key_cache_misses").set(keys.misses as f64);
        metrics::gauge!("flowgate_api_key_cache_entries").set(keys.entries as f64);
        metrics::gauge!("flowgate_api_key_argon2_runs").set(keys.argon2_runs as f64);
        let (callers, addresses, failing) = self.inner.security.tracked_state();
        metrics::gauge!("flowgate_rate_limit_tracked_callers").set(callers as f64);
        metrics::gauge!("flowgate_anonymous_limit_tracked_addresses").set(addresses as f64);
        metrics::gauge!("flowgate_auth_failure_tracked_addresses").set(failing as f64);
        let store = self.inner.store.clone();
        if let Ok(depths) = store.call(|s| s.queue_depth_by_status()).await {
            // Every status is exported, a zero included, so dashboards and
            // alerts see the series from the start.
            for status in flowgate_core::run::RunStatus::ALL {
                let n = depths
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("flowgate_queue_runs", "status" => status.as_str()).set(n as f64);
            }
        }
    }
}
