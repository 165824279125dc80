//! Server-level routes: stats, flush, liveness and readiness.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::report::StatValue;
use crate::state::AppState;

/// memcached's `stats` report as one JSON object, in memcached's order.
pub struct StatsReport(Vec<(&'static str, StatValue)>);

impl Serialize for StatsReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl PartialSchema for StatsReport {
    fn schema() -> RefOr<Schema> {
        let value = OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .item(ObjectBuilder::new().schema_type(Type::String));
        ObjectBuilder::new()
            .description(Some(
                "The counters of memcached's `stats` command under the same names \
                 (e.g. `curr_items`, `get_hits`, `cmd_set`, `uptime`); numbers are \
                 integers, `version` and `rusage_*` are strings.",
            ))
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::OneOf(value.build())))))
            .examples([serde_json::json!({"pid": 4242, "uptime": 17, "version": "1.6.18", "curr_items": 3, "get_hits": 10})])
            .into()
    }
}

impl ToSchema for StatsReport {}

/// Server statistics.
///
/// The same counters, under the same names, as memcached's `stats`; both
/// protocols update them.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "server",
    operation_id = "stats",
    responses((status = 200, description = "Counters", body = StatsReport))
)]
pub async fn stats(State(shared): State<Arc<AppState>>) -> Json<StatsReport> {
    Json(StatsReport(crate::report::general(&shared)))
}

/// Query of `POST /v1/flush`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlushQuery {
    /// Invalidate items after this many seconds instead of now (memcached
    /// `flush_all <delay>`, exptime rules).
    #[param(schema_with = crate::http::json::i64_field)]
    delay: Option<i64>,
}

/// Invalidate every item.
///
/// memcached `flush_all`: now, or after `delay` seconds.
#[utoipa::path(
    post,
    path = "/v1/flush",
    tag = "server",
    operation_id = "flush",
    params(FlushQuery),
    responses(
        (status = 204, description = "Flushed (or scheduled)"),
        (status = 400, description = "Bad delay", body = ErrorBody, example = json!({"error": "bad_request", "message": "Failed to deserialize query string: delay: invalid digit found in string"})),
    )
)]
pub async fn flush(
    State(shared): State<Arc<AppState>>,
    Query(q): Query<FlushQuery>,
) -> Result<StatusCode, ApiError> {
    let kv = shared.kv.clone();
    let delay = q.delay.unwrap_or(0);
    tokio::task::spawn_blocking(move || kv.flush_all(delay))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

/// Health and readiness answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Liveness.
///
/// 200 while the process is running.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "server",
    operation_id = "healthz",
    responses((status = 200, description = "The process is alive", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness.
///
/// 200 when the store answers reads and the server is not shutting down;
/// in a replicated group, also only once the node knows a leader and has
/// applied within 1000 entries of the leader's applied index (a restarted
/// or new node that is catching up is not ready).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "server",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "Shutting down, the store is failing, or (in a group) no leader or still catching up", body = ErrorBody, example = json!({"error": "unavailable", "message": "shutting down"})),
    )
)]
pub async fn readyz(State(shared): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    if *shared.shutdown_signal().borrow() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    // An empty key is never stored: a real read of the tree, nothing counted.
    shared.kv.readable().map_err(|e| {
        tracing::warn!("readiness: the store is not readable: {e}");
        ApiError::Unavailable("store not readable".into())
    })?;
    // A full or failing disk: reads are served, writes refused until the
    // store's retries succeed (it logs the change itself).
    if let Some(why) = shared.kv.storage_problem() {
        return Err(ApiError::Unavailable(format!("writes refused: {why}")));
    }
    // In a group: a leader is known and this node's items are caught up.
    shared
        .kv
        .group_readiness()
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}
