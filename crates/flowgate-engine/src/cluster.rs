//! Node identity, heartbeats and cache coherence between nodes.
//!
//! * Every node has an id (`[server] node_id`, or `node-<uuidv7>` generated
//!   at start) and a row in the `nodes` table that its heartbeat refreshes
//!   every [`ClusterSettings::heartbeat`]. A node is *gone* once its last
//!   heartbeat is older than `missed_heartbeats × heartbeat`, or at once after
//!   a clean stop.
//! * Each heartbeat also releases the leases of gone nodes: their running
//!   runs become claimable right away (another node runs them again) instead
//!   of when each lease would have expired, so `overlap = "skip"` schedules
//!   stop waiting for a dead node.
//! * Change notices from the store ([`flowgate_store::Change`], sent by
//!   PostgreSQL `NOTIFY` when a publish, rollback, retire, disable, key or
//!   secret change commits on any node) go through [`Engine::apply_change`],
//!   which invalidates the live-version registry, the API-key cache and the
//!   schedules, and is broadcast to [`Engine::subscribe_changes`]. On SQLite
//!   there is one node and no listener: the node that writes invalidates
//!   directly.

use std::sync::Weak;
use std::time::Duration;

use flowgate_core::FlowName;
use flowgate_store::{Change, ListenOptions, NodeRecord};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Engine, Inner};

/// This build's version, as recorded in the `nodes` table.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a node row is kept after its last heartbeat.
const PRUNE_AFTER_MS: i64 = 24 * 3600 * 1000;

/// Heartbeat and coherence settings.
#[derive(Debug, Clone, Copy)]
pub struct ClusterSettings {
    /// How often this node heartbeats (and releases gone nodes' leases).
    pub heartbeat: Duration,
    /// Heartbeats a node may miss before it is gone.
    pub missed_heartbeats: u32,
    /// How often the change sequence is compared, the fallback for a missed
    /// notification (PostgreSQL only).
    pub change_check: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(500),
            missed_heartbeats: 3,
            change_check: Duration::from_secs(5),
        }
    }
}

impl ClusterSettings {
    /// Milliseconds without a heartbeat after which a node is gone.
    pub fn gone_after_ms(&self) -> i64 {
        let ms = self
            .heartbeat
            .saturating_mul(self.missed_heartbeats.max(1))
            .as_millis();
        i64::try_from(ms).unwrap_or(i64::MAX)
    }
}

/// `up` or `gone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Heartbeating.
    Up,
    /// Missed its heartbeats or stopped.
    Gone,
}

/// One node as `GET /admin/v1/cluster` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// Flowgate version.
    pub version: String,
    /// Start (epoch ms).
    pub started_at: i64,
    /// Latest heartbeat (epoch ms).
    pub last_heartbeat: i64,
    /// Up or gone.
    pub status: NodeStatus,
    /// Runs it holds a lease on now.
    pub leased_runs: u64,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// Every known node, by id.
    pub nodes: Vec<NodeView>,
    /// The node that answered.
    pub this_node: String,
    /// The bound after which a silent node is gone, in milliseconds.
    pub gone_after_ms: i64,
}

/// A fresh node id.
pub fn generate_node_id() -> String {
    format!("node-{}", uuid::Uuid::now_v7())
}

fn status_of(n: &NodeRecord, now: i64, gone_after_ms: i64) -> NodeStatus {
    if n.stopped_at.is_some() || now - n.last_heartbeat > gone_after_ms {
        NodeStatus::Gone
    } else {
        NodeStatus::Up
    }
}

impl Engine {
    /// Applies a change made on some node to this node's caches (see the
    /// module documentation); local writers may call it too.
    pub fn apply_change(&self, change: &Change) {
        apply(&self.inner, change);
    }

    /// Change notices as they are applied (for caches outside the engine).
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// The nodes sharing this database, with their status and leased runs.
    pub async fn cluster(&self) -> crate::Result<ClusterView> {
        let (now, nodes, leased) = self
            .store()
            .call(|s| Ok((s.clock_ms()?, s.list_nodes()?, s.leased_runs_by_node()?)))
            .await?;
        let gone_after_ms = self.config().cluster.gone_after_ms();
        let nodes = nodes
            .into_iter()
            .map(|n| NodeView {
                status: status_of(&n, now, gone_after_ms),
                leased_runs: leased
                    .iter()
                    .find(|(id, _)| *id == n.id)
                    .map_or(0, |(_, c)| *c),
                id: n.id,
                version: n.version,
                started_at: n.started_at,
                last_heartbeat: n.last_heartbeat,
            })
            .collect();
        Ok(ClusterView {
            nodes,
            this_node: self.node_id().to_owned(),
            gone_after_ms,
        })
    }

    /// Registers this node, starts the change listener (PostgreSQL) and the
    /// heartbeat task. The heartbeat outlives the shutdown signal (runs still
    /// draining must not look abandoned); [`Engine::shutdown`] ends it.
    pub(crate) async fn start_cluster(&self) -> JoinHandle<()> {
        let id = self.node_id().to_owned();
        match self
            .store()
            .call(move |s| s.register_node(&id, VERSION, s.clock_ms()?))
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    released = n,
                    "released runs a previous process with this node id held"
                );
                self.wake_workers();
            }
            Err(e) => tracing::warn!(error = %e, "registering this node failed"),
        }
        let weak: Weak<Inner> = std::sync::Arc::downgrade(&self.inner);
        let listener = self.store().listen_changes(
            ListenOptions {
                name: format!("flowgate-listener-{}", self.node_id()),
                check_every: self.config().cluster.change_check,
                ..ListenOptions::default()
            },
            move |change| {
                if let Some(inner) = weak.upgrade() {
                    apply(&inner, &change);
                }
            },
        );
        if let Ok(mut l) = self.inner.listener.lock() {
            *l = listener;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Ok(mut s) = self.inner.heartbeat_stop.lock() {
            *s = Some(stop_tx);
        }
        tokio::spawn(heartbeat_loop(self.clone(), stop_rx))
    }

    /// Ends the heartbeat and the listener and records the clean stop.
    pub(crate) async fn stop_cluster(&self) {
        if let Some(tx) = self
            .inner
            .heartbeat_stop
            .lock()
            .ok()
            .and_then(|mut s| s.take())
        {
            let _ = tx.send(true);
        }
        let handle = self.inner.heartbeat.lock().await.take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        let listener = self.inner.listener.lock().ok().and_then(|mut l| l.take());
        if let Some(l) = listener {
            l.stop();
            // Joining waits at most one poll interval.
            let _ = tokio::task::spawn_blocking(move || drop(l)).await;
        }
        let id = self.node_id().to_owned();
        if let Err(e) = self
            .store()
            .call(move |s| s.stop_node(&id, s.clock_ms()?))
            .await
        {
            tracing::warn!(error = %e, "recording this node's stop failed");
        }
    }
}

fn apply(inner: &Inner, change: &Change) {
    match change {
        Change::Flow(name) => {
            match FlowName::parse(name) {
                Ok(f) => inner.registry.invalidate(&f),
                Err(_) => inner.registry.invalidate_all(),
            }
            inner.schedules_wake.notify_one();
        }
        Change::Key(id) => inner.security.evict_key(id),
        Change::Secret(_) => {}
        _ => {
            inner.registry.invalidate_all();
            inner.security.evict_all_keys();
            inner.schedules_wake.notify_one();
        }
    }
    let _ = inner.changes.send(change.clone());
}

async fn heartbeat_loop(engine: Engine, mut stop: watch::Receiver<bool>) {
    let settings = engine.config().cluster;
    let gone_after = settings.gone_after_ms();
    let mut pruned = None::<std::time::Instant>;
    loop {
        let id = engine.node_id().to_owned();
        let prune = pruned.is_none_or(|t| t.elapsed() > Duration::from_secs(3600));
        let beat = engine
            .store()
            .call(move |s| {
                let now = s.clock_ms()?;
                let released = s.heartbeat_node(&id, VERSION, now, now - gone_after)?;
                if prune {
                    s.prune_nodes(now - PRUNE_AFTER_MS)?;
                    // Windows are at most a day long.
                    s.prune_rate_windows(now - 2 * PRUNE_AFTER_MS)?;
                }
                Ok(released)
            })
            .await;
        match beat {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    released = n,
                    "released the runs of nodes that stopped heartbeating"
                );
                metrics::counter!("flowgate_cluster_released_runs_total").increment(n as u64);
                engine.wake_workers();
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        if prune {
            pruned = Some(std::time::Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.heartbeat) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_gone_after_its_missed_heartbeats_or_a_stop() {
        let s = ClusterSettings {
            heartbeat: Duration::from_millis(500),
            missed_heartbeats: 4,
            change_check: Duration::from_secs(5),
        };
        assert_eq!(s.gone_after_ms(), 2_000);
        let n = NodeRecord {
            id: "a".into(),
            version: VERSION.into(),
            started_at: 0,
            last_heartbeat: 10_000,
            stopped_at: None,
        };
        assert_eq!(status_of(&n, 12_000, 2_000), NodeStatus::Up);
        assert_eq!(status_of(&n, 12_001, 2_000), NodeStatus::Gone);
        let stopped = NodeRecord {
            stopped_at: Some(10_000),
            ..n
        };
        assert_eq!(status_of(&stopped, 10_000, 2_000), NodeStatus::Gone);
    }
}
