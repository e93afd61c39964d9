//! `GET /admin/v1/cluster`: the nodes sharing this database, with their
//! heartbeats, versions and the runs each holds.

use actix_web::{get, web, HttpRequest, HttpResponse};
use flowgate_core::rfc3339;
use flowgate_engine::cluster::{ClusterView, NodeStatus};
use serde::Serialize;
use utoipa::ToSchema;

use super::authorize;
use crate::{ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_cluster);
}

/// One node. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeOut {
    /// Node id (`server.node_id`, or generated at start).
    pub id: String,
    /// Flowgate version it runs.
    pub version: String,
    /// When it started.
    pub started_at: String,
    /// Its latest heartbeat.
    pub last_heartbeat: String,
    /// `up`, or `gone` once it missed `cluster.missed_heartbeats` heartbeats
    /// (or stopped cleanly); a gone node's runs are released to the others.
    #[schema(example = "up")]
    pub status: String,
    /// Runs it holds a lease on now (its share of the async queue).
    pub leased_runs: u64,
}

/// The cluster as the answering node sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterOut {
    /// Every node seen in the last day, by id.
    pub nodes: Vec<NodeOut>,
    /// The id of the node that answered.
    pub this_node: String,
    /// Milliseconds without a heartbeat after which a node is gone.
    pub gone_after_ms: i64,
}

impl From<ClusterView> for ClusterOut {
    fn from(v: ClusterView) -> Self {
        Self {
            nodes: v
                .nodes
                .into_iter()
                .map(|n| NodeOut {
                    id: n.id,
                    version: n.version,
                    started_at: rfc3339(n.started_at),
                    last_heartbeat: rfc3339(n.last_heartbeat),
                    status: match n.status {
                        NodeStatus::Up => "up",
                        NodeStatus::Gone => "gone",
                    }
                    .to_owned(),
                    leased_runs: n.leased_runs,
                })
                .collect(),
            this_node: v.this_node,
            gone_after_ms: v.gone_after_ms,
        }
    }
}

/// The nodes of the cluster.
#[utoipa::path(get, path = "/admin/v1/cluster", operation_id = "get_cluster", tag = "cluster",
    responses((status = 200, body = ClusterOut, description = "Nodes sharing this database")),
    security(("bearer" = ["runs:read"])))]
#[get("/admin/v1/cluster")]
pub async fn get_cluster(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "runs:read").await?;
    let view = state.engine.cluster().await?;
    Ok(HttpResponse::Ok().json(ClusterOut::from(view)))
}
