//! `/v1/keys/{key}` and its actions: every handler maps one HTTP request
//! onto one `Kv` call, so conditional writes, counters and touch run under
//! the lock manager with memcached's semantics.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::contract::{
    ArithErrors, ArithRequest, ArithResponse, Binary, DeleteCondition, ItemErrors, JsonBodyErrors,
    PutConditions, PutQuery, TouchRequest,
};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::key::{self, Key, KeyPath};
use crate::kv::Item;
use crate::kv::{ArithOutcome, DeleteOutcome, StoreMode, StoreOutcome};
use crate::rules::exptime;
use crate::state::AppState;

/// Flags of the item (memcached's opaque 32-bit client flags).
pub const X_FLAGS: &str = "x-flags";
/// Seconds until the item expires; absent when it never does.
pub const X_TTL: &str = "x-ttl";

/// What an `If-Match` / `If-None-Match` pair asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Always,
    /// `If-None-Match: *`: only when absent (memcached `add`).
    Absent,
    /// `If-Match: *`: only when present (memcached `replace`).
    Present,
    /// `If-Match: "<cas>"`: only when the CAS matches (memcached `cas`).
    Cas(u64),
    /// Both `If-Match` and `If-None-Match: *`: never holds.
    Never,
}

fn condition(headers: &HeaderMap) -> Result<Condition, ApiError> {
    let text = |name: header::HeaderName| -> Result<Option<String>, ApiError> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| ApiError::BadRequest(format!("{name} is not ASCII")))
            })
            .transpose()
    };
    match (text(header::IF_MATCH)?, text(header::IF_NONE_MATCH)?) {
        (None, None) => Ok(Condition::Always),
        (Some(m), Some(n)) => {
            // Checked like two lone headers first, so a malformed one is
            // still a 400.
            match_condition(&m)?;
            none_match_condition(&n)?;
            // RFC 9110 evaluates If-Match, then If-None-Match: the item
            // would have to exist and not exist. Valid headers, a
            // condition that never holds: 412, as the document says.
            Ok(Condition::Never)
        }
        (None, Some(v)) => none_match_condition(&v),
        (Some(v), None) => match_condition(&v),
    }
}

fn none_match_condition(v: &str) -> Result<Condition, ApiError> {
    if v == "*" {
        Ok(Condition::Absent)
    } else {
        Err(ApiError::BadRequest(
            "If-None-Match supports only `*` (create only if absent)".into(),
        ))
    }
}

fn match_condition(v: &str) -> Result<Condition, ApiError> {
    if v == "*" {
        return Ok(Condition::Present);
    }
    parse_etag(v).map(Condition::Cas).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "If-Match must be `*` or one ETag \"<cas>\" (at most 19 digits) as returned by GET, got {v}"
        ))
    })
}

/// `"123"` (or a bare `123`) to a CAS value: 1 to 19 ASCII digits, the
/// document's `IF_MATCH_PATTERN` (19 digits always fit a `u64`).
fn parse_etag(v: &str) -> Option<u64> {
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    if inner.is_empty() || inner.len() > 19 || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse().ok()
}

fn etag(cas: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{cas}\"")).expect("digits are a valid header")
}

/// The headers describing an item, shared by GET and HEAD.
fn item_response(item: &Item, now: u64, body: Bytes) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag(item.cas()));
    h.insert(X_FLAGS, HeaderValue::from(item.flags()));
    if let Some(ttl) = exptime::remaining(item.exptime(), now) {
        h.insert(X_TTL, HeaderValue::from(ttl));
    }
    // HEAD has no body, but should announce the size GET would send.
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(item.value().len()),
    );
    resp
}

/// Get an item's value.
///
/// Answers the raw value bytes with the item's CAS as `ETag` (the same
/// number memcached's `gets` reports), its flags and remaining TTL.
#[utoipa::path(
    get,
    path = "/v1/keys/{key}",
    tag = "keys",
    operation_id = "get_item",
    params(KeyPath),
    responses(
        (status = 200, description = "The value bytes", body = Binary, content_type = "application/octet-stream",
            headers(
                ("ETag" = String, description = "The item's CAS, quoted: `\"<cas>\"`"),
                ("X-Flags" = u32, description = "The item's client flags"),
                ("X-TTL" = u64, description = "Seconds until expiry; absent when the item never expires"),
            )),
        ItemErrors,
    )
)]
pub async fn get_item(
    State(shared): State<Arc<AppState>>,
    Key(key): Key,
) -> Result<Response, ApiError> {
    let item = shared.kv.get_async(&key).await?.ok_or(ApiError::NotFound)?;
    let body = Bytes::copy_from_slice(item.value());
    Ok(item_response(&item, shared.kv.now(), body))
}

/// Get an item's metadata.
///
/// The same status and headers as GET, without the body.
#[utoipa::path(
    head,
    path = "/v1/keys/{key}",
    tag = "keys",
    operation_id = "head_item",
    params(KeyPath),
    responses(
        (status = 200, description = "The item exists",
            headers(
                ("ETag" = String, description = "The item's CAS, quoted"),
                ("X-Flags" = u32, description = "The item's client flags"),
                ("X-TTL" = u64, description = "Seconds until expiry; absent when the item never expires"),
                ("Content-Length" = u64, description = "Size of the value in bytes"),
            )),
        (status = 400, description = "Bad key (no body)"),
        (status = 404, description = "No such item (no body)"),
    )
)]
pub async fn head_item(
    State(shared): State<Arc<AppState>>,
    Key(key): Key,
) -> Result<Response, ApiError> {
    let item = shared.kv.get_async(&key).await?.ok_or(ApiError::NotFound)?;
    Ok(item_response(&item, shared.kv.now(), Bytes::new()))
}

/// Store an item.
///
/// The body is the value. Without conditions this is memcached `set`.
/// `If-None-Match: *` is `add` (412 when the key exists); `If-Match: "<cas>"`
/// is `cas` (412 when the item changed, 404 when missing); `If-Match: *` is
/// `replace` (404 when missing). A body over `--max-item-size` is refused
/// with 413 before it is read in full.
#[utoipa::path(
    put,
    path = "/v1/keys/{key}",
    tag = "keys",
    operation_id = "put_item",
    params(KeyPath, PutQuery, PutConditions),
    request_body(
        // Marked optional by `openapi::finish` (utoipa ties `required` to
        // the type): no body stores an empty value, as memcached allows.
        description = "The value bytes (any content type; stored as-is). Optional: no body \
stores an empty value.",
        content(
            (String = "text/plain"),
            (Binary = "application/octet-stream"),
        )
    ),
    responses(
        (status = 201, description = "Created",
            headers(("ETag" = String, description = "The new CAS, quoted"),
                    ("Location" = String, description = "The item's URL"))),
        (status = 204, description = "Replaced an existing item",
            headers(("ETag" = String, description = "The new CAS, quoted"))),
        ItemErrors,
        (status = 408, description = "The request took longer than `--http-timeout-secs`", body = ErrorBody, example = json!({"error": "timeout", "message": "Request Timeout"})),
        (status = 412, description = "The condition does not hold (or both If-Match and If-None-Match were sent)", body = ErrorBody, example = json!({"error": "precondition_failed", "message": "the item changed since that ETag (If-Match)"})),
        (status = 413, description = "Value larger than `--max-item-size`", body = ErrorBody, example = json!({"error": "too_large", "message": "value larger than the item size limit (--max-item-size)"})),
        (status = 507, description = "`--max-bytes` reached with `--eviction noeviction`", body = ErrorBody, example = json!({"error": "insufficient_storage", "message": "out of memory storing object (--max-bytes reached)"})),
    )
)]
pub async fn put_item(
    State(shared): State<Arc<AppState>>,
    Key(key): Key,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mode = match condition(&headers)? {
        Condition::Always => StoreMode::Set,
        Condition::Absent => StoreMode::Add,
        Condition::Present => StoreMode::Replace,
        Condition::Cas(cas) => StoreMode::Cas(cas),
        Condition::Never => {
            return Err(ApiError::PreconditionFailed(
                "If-Match and If-None-Match: * together never hold",
            ))
        }
    };
    let outcome = shared
        .kv
        .set_async(mode, &key, q.flags.unwrap_or(0), q.ttl.unwrap_or(0), &body)
        .await?;
    match outcome {
        StoreOutcome::Stored { cas, created: true } => Ok((
            StatusCode::CREATED,
            [
                (header::ETAG, etag(cas)),
                (
                    header::LOCATION,
                    HeaderValue::from_str(&format!("{}{}", key::KEYS_PREFIX, key::encode(&key)))
                        .expect("percent-encoded is a valid header"),
                ),
            ],
        )
            .into_response()),
        StoreOutcome::Stored {
            cas,
            created: false,
        } => Ok((StatusCode::NO_CONTENT, [(header::ETAG, etag(cas))]).into_response()),
        StoreOutcome::NotStored if mode == StoreMode::Add => Err(ApiError::PreconditionFailed(
            "the key already exists (If-None-Match: *)",
        )),
        StoreOutcome::NotStored | StoreOutcome::NotFound => Err(ApiError::NotFound),
        StoreOutcome::Exists => Err(ApiError::PreconditionFailed(
            "the item changed since that ETag (If-Match)",
        )),
    }
}

/// Delete an item.
///
/// With `If-Match: "<cas>"` only when the item's CAS still matches.
#[utoipa::path(
    delete,
    path = "/v1/keys/{key}",
    tag = "keys",
    operation_id = "delete_item",
    params(KeyPath, DeleteCondition),
    responses(
        (status = 204, description = "Deleted"),
        ItemErrors,
        (status = 412, description = "The item changed since that ETag", body = ErrorBody, example = json!({"error": "precondition_failed", "message": "the item changed since that ETag (If-Match)"})),
    )
)]
pub async fn delete_item(
    State(shared): State<Arc<AppState>>,
    Key(key): Key,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let cas = match condition(&headers)? {
        Condition::Always | Condition::Present => None,
        Condition::Cas(cas) => Some(cas),
        Condition::Absent | Condition::Never => {
            return Err(ApiError::BadRequest(
                "If-None-Match is not supported on DELETE".into(),
            ))
        }
    };
    match shared.kv.delete_async(&key, cas).await? {
        DeleteOutcome::Deleted => Ok(StatusCode::NO_CONTENT),
        DeleteOutcome::NotFound => Err(ApiError::NotFound),
        DeleteOutcome::Exists => Err(ApiError::PreconditionFailed(
            "the item changed since that ETag (If-Match)",
        )),
    }
}

async fn arith(shared: &AppState, key: &[u8], by: u64, incr: bool) -> Result<Response, ApiError> {
    match shared.kv.incr_decr_async(key, by, incr).await? {
        ArithOutcome::Value { value, cas } => {
            Ok(([(header::ETAG, etag(cas))], Json(ArithResponse { value })).into_response())
        }
        ArithOutcome::NotFound => Err(ApiError::NotFound),
        ArithOutcome::NonNumeric => Err(ApiError::NonNumeric),
    }
}

/// Increment a counter.
///
/// memcached `incr`: the value must be a decimal number below 2^64; the sum
/// wraps around at 2^64.
#[utoipa::path(
    post,
    path = "/v1/keys/{key}/incr",
    tag = "keys",
    operation_id = "incr_item",
    params(KeyPath),
    request_body = ArithRequest,
    responses(
        (status = 200, description = "The new value", body = ArithResponse,
            headers(("ETag" = String, description = "The new CAS, quoted"))),
        ArithErrors,
        ItemErrors,
        JsonBodyErrors,
    )
)]
pub async fn incr_item(
    State(shared): State<Arc<AppState>>,
    Key(key): Key,
    Json(req): Json<ArithRequest>,
) -> Result<Response, ApiError> {
    arith(&shared, &key, req.by, true).await
}

/// Decrement a counter.
///
/// memcached `decr`: the value must be a decimal number; it never goes below 0.
#[utoipa::path(
    post,
    path = "/v1/keys/{key}/decr",
    tag = "keys",
    operation_id = "decr_item",
    params(KeyPath),
    request_body = ArithRequest,
    responses(
        (status = 200, description = "The new value", body = ArithResponse,
            headers(("ETag" = String, description = "The new CAS, quoted"))),
        ArithErrors,
        ItemErrors,
        JsonBodyErrors,
    )
)]
pub async fn decr_item(
    State(shared): State<Arc<AppState>>,
    Key(key): Key,
    Json(req): Json<ArithRequest>,
) -> Result<Response, ApiError> {
    arith(&shared, &key, req.by, false).await
}

/// Set a new expiry.
///
/// memcached `touch`: the value, flags and CAS stay as they are.
#[utoipa::path(
    post,
    path = "/v1/keys/{key}/touch",
    tag = "keys",
    operation_id = "touch_item",
    params(KeyPath),
    request_body = TouchRequest,
    responses(
        (status = 204, description = "Expiry updated"),
        ItemErrors,
        JsonBodyErrors,
    )
)]
pub async fn touch_item(
    State(shared): State<Arc<AppState>>,
    Key(key): Key,
    Json(req): Json<TouchRequest>,
) -> Result<StatusCode, ApiError> {
    if shared.kv.touch_async(&key, req.ttl).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(pairs: &[(&'static str, &'static str)]) -> Result<Condition, ApiError> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        condition(&h)
    }

    #[test]
    fn conditions_map_to_memcached_modes() {
        assert_eq!(cond(&[]).unwrap(), Condition::Always);
        assert_eq!(cond(&[("if-none-match", "*")]).unwrap(), Condition::Absent);
        assert_eq!(cond(&[("if-match", "*")]).unwrap(), Condition::Present);
        assert_eq!(cond(&[("if-match", "\"42\"")]).unwrap(), Condition::Cas(42));
        assert_eq!(cond(&[("if-match", "42")]).unwrap(), Condition::Cas(42));
        assert!(cond(&[("if-match", "\"4x\"")]).is_err());
        assert!(cond(&[("if-match", "\"1\", \"2\"")]).is_err());
        assert!(cond(&[("if-none-match", "\"1\"")]).is_err());
        assert_eq!(
            cond(&[("if-match", "*"), ("if-none-match", "*")]).unwrap(),
            Condition::Never
        );
        assert!(cond(&[("if-match", "\"1\""), ("if-none-match", "x")]).is_err());
        assert_eq!(
            cond(&[("if-match", "\"9999999999999999999\"")]).unwrap(),
            Condition::Cas(9_999_999_999_999_999_999)
        );
        assert!(cond(&[("if-match", "\"10000000000000000000\"")]).is_err());
        assert!(cond(&[("if-match", "+1")]).is_err());
        assert!(cond(&[("if-match", "\"\"")]).is_err());
    }
}
