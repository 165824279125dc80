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
    // The handler's own writes are noted on the thread that made them
    // (see `Kv::commit`); nothing else's may count as this request's.
    let since = shared.kv.generation();
    shared.kv.take_own_writes();
    let response = next.run(req).await;
    if !(writes && response.status().is_success()) {
        shared.kv.take_own_writes();
    } else {
        if let Err(e) = shared.kv.commit(since).await {
            // A refused write: 507 with the reason (a full or failing
            // disk), like a write refused before it was made.
            return ApiError::from(e).into_response();
        }
    }
    response
}
