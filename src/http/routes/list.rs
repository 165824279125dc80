//! `GET /v1/keys`: a paginated listing over sled's ordered scan. A page is
//! at most `limit` items; the cursor is the last key of the page, so pages
//! stay consistent while other clients write, and no request ever holds
//! more than one page in memory.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::rules::exptime;
use crate::state::AppState;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Query of `GET /v1/keys`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys starting with this (default: every key).
    prefix: Option<String>,
    /// Items per page, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page, to continue after it: unpadded
    /// base64url of a key (empty = from the start). The pattern is exactly
    /// what decodes: whole 4-character groups, then 2 or 3 characters whose
    /// unused low bits are zero.
    #[param(
        pattern = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$"
    )]
    cursor: Option<String>,
}

/// One listed item (its value is not included).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyEntry {
    /// The key (bytes that are not UTF-8 are shown as U+FFFD; see `key_base64`).
    #[schema(example = "user:42")]
    pub key: String,
    /// The exact key bytes, base64url, only when the key is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// Value size in bytes.
    pub size: u64,
    /// Client flags.
    pub flags: u32,
    /// Seconds until expiry; null when the item never expires.
    pub ttl: Option<u64>,
    /// The item's CAS (its ETag without quotes).
    pub cas: u64,
}

/// One page of the listing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// Items in ascending key order.
    pub items: Vec<KeyEntry>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// List keys.
///
/// Live items in ascending key (byte) order, with their size, flags, TTL
/// and CAS, one page at a time.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "list_items",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of items", body = KeyList),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody, example = json!({"error": "bad_request", "message": "limit must be between 1 and 1000"})),
    )
)]
pub async fn list_items(
    State(shared): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let after = q
        .cursor
        .filter(|c| !c.is_empty())
        .map(|c| {
            URL_SAFE_NO_PAD
                .decode(c.as_bytes())
                .map_err(|_| ApiError::BadRequest("cursor is not one this server issued".into()))
        })
        .transpose()?;
    let prefix = q.prefix.unwrap_or_default().into_bytes();
    let kv = shared.kv.clone();
    let (page, more) =
        tokio::task::spawn_blocking(move || kv.list(&prefix, after.as_deref(), limit))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    let now = shared.kv.now();
    let next_cursor = more
        .then(|| page.last().map(|l| URL_SAFE_NO_PAD.encode(&l.key)))
        .flatten();
    let items = page
        .into_iter()
        .map(|l| {
            let text = std::str::from_utf8(&l.key).ok();
            KeyEntry {
                key: String::from_utf8_lossy(&l.key).into_owned(),
                key_base64: text.is_none().then(|| URL_SAFE_NO_PAD.encode(&l.key)),
                size: l.size as u64,
                flags: l.flags,
                ttl: exptime::remaining(l.exptime, now),
                cas: l.cas,
            }
        })
        .collect();
    Ok(Json(KeyList { items, next_cursor }))
}
