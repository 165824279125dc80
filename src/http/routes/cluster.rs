//! `GET /v1/cluster`: this node's view of its replicated group;
//! `POST /v1/cluster/members` and `DELETE /v1/cluster/members/{id}`:
//! changing its members from any node (a follower hands the change to the
//! leader, as it does writes).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::Required;
use utoipa::{IntoParams, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::json;
use crate::kv::{ClusterMember, ClusterStatus, MemberChange};
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

/// Body of `POST /v1/cluster/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The new node's id (its `--node-id`), not yet in the group.
    #[serde(deserialize_with = "json::u64_integer")]
    #[schema(schema_with = json::u64_field, example = 4)]
    pub id: u64,
    /// Where the group reaches the new node for Raft: `host:port` (its
    /// `--raft-listen` port; the host may be a DNS name).
    #[schema(schema_with = raft_addr_schema)]
    pub raft_addr: String,
}

/// `raft_addr`: a string held to exactly what the handler accepts.
fn raft_addr_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(crate::kv::MEMBER_ADDR_PATTERN))
        .description(Some(
            "Where the group reaches the new node for Raft: `host:port` (its \
             `--raft-listen` port; the host may be a DNS name)",
        ))
        .examples(["127.0.0.1:7004"])
        .into()
}

/// The group's members after a change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Members {
    pub members: Vec<ClusterMember>,
}

/// Path of `DELETE /v1/cluster/members/{id}`.
#[derive(Debug, Deserialize)]
pub struct MemberPath {
    pub id: u64,
}

/// Documented by hand: the derive marks a `schema_with` path parameter
/// as optional, which OpenAPI forbids (path parameters are required).
impl IntoParams for MemberPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The node id to remove (not a number: 400)."))
            .schema(Some(json::u64_schema()))
            .build()]
    }
}

/// Add a member.
///
/// Adds the node as a learner (it receives the log or a snapshot, without
/// voting), waits until it has caught up (at most 20 s), then promotes it
/// to voter. Any node takes the request and hands it to the leader. The
/// new node must be running (with `--peers` naming itself, or `--join`)
/// and reachable at `raft_addr`. Repeating the request for a node that
/// stayed a learner at the same address resumes the promotion.
#[utoipa::path(
    post,
    path = "/v1/cluster/members",
    tag = "cluster",
    operation_id = "add_member",
    request_body = AddMember,
    responses(
        (status = 200, description = "Added; the members now", body = Members),
        (status = 400, description = "Malformed JSON or a `raft_addr` that is not `host:port`", body = ErrorBody, example = json!({"error": "bad_request", "message": "raft_addr \"x\": expected host:port, e.g. 10.0.0.4:7000"})),
        (status = 404, description = "A single node, not a group", body = ErrorBody, example = json!({"error": "not_found", "message": "this server is a single node (started without --peers)"})),
        (status = 409, description = "The id is a member already", body = ErrorBody, example = json!({"error": "conflict", "message": "node 2 is already a member of the group"})),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The JSON does not match the schema", body = ErrorBody),
        (status = 503, description = "No leader or no quorum within `--quorum-timeout-ms`, or the node did not catch up in time (it stays a learner)", body = ErrorBody, example = json!({"error": "unavailable", "message": "no quorum"})),
    )
)]
pub async fn add_member(
    State(shared): State<Arc<AppState>>,
    Json(req): Json<AddMember>,
) -> Result<Json<Members>, ApiError> {
    crate::kv::check_member_addr(&req.raft_addr).map_err(ApiError::BadRequest)?;
    let change = MemberChange::Add {
        id: req.id,
        addr: req.raft_addr,
    };
    let members = shared.kv.change_members(&change).await?;
    Ok(Json(Members { members }))
}

/// Remove a member.
///
/// Removes the node from the voters (or the learners); the group's
/// majority is counted without it from then on. The removed process keeps
/// running until stopped; stop it, and delete its data before it ever
/// joins again. Any node takes the request and hands it to the leader.
#[utoipa::path(
    delete,
    path = "/v1/cluster/members/{id}",
    tag = "cluster",
    operation_id = "remove_member",
    params(MemberPath),
    responses(
        (status = 200, description = "Removed; the members now", body = Members),
        (status = 400, description = "Not a node id, or the group's last voter", body = ErrorBody),
        (status = 404, description = "A single node, not a group", body = ErrorBody),
        (status = 409, description = "The id is not a member", body = ErrorBody, example = json!({"error": "conflict", "message": "node 9 is not a member of the group"})),
        (status = 503, description = "No leader or no quorum within `--quorum-timeout-ms`", body = ErrorBody, example = json!({"error": "unavailable", "message": "no quorum"})),
    )
)]
pub async fn remove_member(
    State(shared): State<Arc<AppState>>,
    Path(MemberPath { id }): Path<MemberPath>,
) -> Result<Json<Members>, ApiError> {
    let members = shared
        .kv
        .change_members(&MemberChange::Remove { id })
        .await?;
    Ok(Json(Members { members }))
}
