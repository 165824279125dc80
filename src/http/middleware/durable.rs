//! `--durability sync` for HTTP: a successful write is answered only once
//! the group commit has put it on disk, like a memcached `STORED`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::state::AppState;

/// axum middleware: after a 2xx answer to a method that may write, wait for
/// the commit covering it (a no-op in periodic mode).
pub async fn commit_writes(
    State(shared): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let response = next.run(req).await;
    if writes && response.status().is_success() {
        if let Err(e) = shared.kv.commit().await {
            return ApiError::Internal(format!("write not made durable: {e}")).into_response();
        }
    }
    response
}
