//! Typed API errors and the one JSON error shape every failing response
//! uses: `{"error": "<code>", "message": "..."}` with the matching status.

use axum::body::to_bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kv::KvError;

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code: `bad_key`, `bad_request`, `not_found`,
    /// `precondition_failed`, `non_numeric`, `conflict`, `too_large`, `invalid_body`,
    /// `unsupported_media_type`, `method_not_allowed`, `timeout`, `unauthorized`,
    /// `unavailable` or `internal`.
    #[schema(example = "not_found")]
    pub error: String,
    /// What went wrong, for humans.
    #[schema(example = "no item with this key")]
    pub message: String,
}

/// Every way a handler can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The key breaks memcached's key rules or its percent-encoding is bad.
    #[error("{0}")]
    BadKey(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("no item with this key")]
    NotFound,
    #[error("no such route; see /docs")]
    NoRoute,
    #[error("this server is a single node (started without --peers)")]
    NoGroup,
    /// A conditional request's condition does not hold.
    #[error("{0}")]
    PreconditionFailed(&'static str),
    #[error("cannot increment or decrement a non-numeric value")]
    NonNumeric,
    /// The request conflicts with the resource's state (409, `conflict`).
    #[error("{0}")]
    Conflict(String),
    #[error("value larger than the item size limit (--max-item-size)")]
    TooLarge,
    /// `--max-bytes` reached under `--eviction noeviction`.
    #[error("out of memory storing object (--max-bytes reached)")]
    NoMemory,
    #[error("{0}")]
    Unavailable(String),
    /// The disk is full or failing: the write was refused, or its commit
    /// failed and it was taken back (507, `insufficient_storage`).
    #[error("write refused: {0}")]
    Storage(String),
    /// A failure the client cannot act on: the detail (a sled or I/O
    /// error) is logged with the request id; the body says only this.
    #[error("internal error; the server log has the details (look up the x-request-id)")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadKey(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound | ApiError::NoRoute | ApiError::NoGroup => StatusCode::NOT_FOUND,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::NonNumeric | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoMemory | ApiError::Storage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadKey(_) => "bad_key",
            ApiError::NonNumeric => "non_numeric",
            other => code_for(other.status()),
        }
    }
}

/// The error code of a status when nothing more specific is known.
pub fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PRECONDITION_FAILED => "precondition_failed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::INSUFFICIENT_STORAGE => "insufficient_storage",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

fn json_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: code.to_owned(),
        message,
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(msg) = &self {
            tracing::error!("http request failed: {msg}");
        }
        json_error(self.status(), self.code(), self.to_string())
    }
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        if let Some(fault) = e.storage_fault() {
            tracing::debug!("http write refused: {e}");
            return ApiError::Storage(fault.to_string());
        }
        match e {
            KvError::TooLarge => ApiError::TooLarge,
            KvError::NoMemory => ApiError::NoMemory,
            KvError::NoQuorum => ApiError::Unavailable("no quorum".into()),
            KvError::Replica(why) => ApiError::Unavailable(why.into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::kv::MemberError> for ApiError {
    fn from(e: crate::kv::MemberError) -> Self {
        use crate::kv::MemberError as M;
        match e {
            M::NoGroup => ApiError::NoGroup,
            M::Exists(_) | M::OtherAddress(..) | M::Absent(_) => ApiError::Conflict(e.to_string()),
            M::Refused(_) => ApiError::BadRequest(e.to_string()),
            M::NoQuorum | M::NotCaughtUp(_) | M::NotLeader | M::InProgress => {
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

/// Longest framework error text carried over into `message`.
const MAX_MESSAGE: usize = 1024;

/// Middleware: turns the plain-text error responses of axum's extractors
/// and tower-http's layers (405, 408, 413, 415, 422, ...) into the JSON
/// error shape, so clients see one format whoever refused the request.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = to_bytes(body, MAX_MESSAGE)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty());
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge.to_string(),
        _ => text.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
    };
    let mut out = json_error(status, code_for(status), message);
    // Keep headers such as `Allow` on a 405.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
