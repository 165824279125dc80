//! `GET /v1/cluster`: this node's view of its replicated group.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use crate::http::error::{ApiError, ErrorBody};
use crate::kv::ClusterStatus;
use crate::state::AppState;

/// The replicated group.
///
/// This node's id and role, the leader it knows, the Raft term, how far
/// its log and its items are, and the members. 404 on a single node
/// (started without `--peers`).
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "cluster",
    operation_id = "cluster",
    responses(
        (status = 200, description = "The group as this node sees it", body = ClusterStatus),
        (status = 404, description = "A single node, not a group", body = ErrorBody),
    )
)]
pub async fn cluster(State(shared): State<Arc<AppState>>) -> Result<Json<ClusterStatus>, ApiError> {
    shared
        .kv
        .cluster_status()
        .map(Json)
        .ok_or(ApiError::NoGroup)
}
