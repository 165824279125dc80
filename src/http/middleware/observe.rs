//! Records every HTTP request in the Prometheus metrics under
//! `protocol="http"`, with the operation as the `command` label.

use std::sync::LazyLock;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::{Protocol, Timer};

const OPERATIONS: &[&str] = &[
    "get", "head", "put", "delete", "incr", "decr", "touch", "list", "stats", "flush", "export",
    "other",
];
const OTHER: usize = OPERATIONS.len() - 1;

static METRICS: LazyLock<Protocol> = LazyLock::new(|| Protocol::new("http", OPERATIONS));

fn operation(method: &Method, route: Option<&str>) -> usize {
    match (route.unwrap_or(""), method.as_str()) {
        ("/v1/keys/{key}", "GET") => 0,
        ("/v1/keys/{key}", "HEAD") => 1,
        ("/v1/keys/{key}", "PUT") => 2,
        ("/v1/keys/{key}", "DELETE") => 3,
        ("/v1/keys/{key}/incr", _) => 4,
        ("/v1/keys/{key}/decr", _) => 5,
        ("/v1/keys/{key}/touch", _) => 6,
        ("/v1/keys", _) => 7,
        ("/v1/stats", _) => 8,
        ("/v1/flush", _) => 9,
        ("/v1/export.csv", _) => 10,
        _ => OTHER,
    }
}

/// axum middleware: time the request and count it, its hits and misses.
pub async fn record(req: Request, next: Next) -> Response {
    let started = Timer::start();
    let op = operation(
        req.method(),
        req.extensions().get::<MatchedPath>().map(|p| p.as_str()),
    );
    let response = next.run(req).await;
    METRICS.command(op).record(started);
    if op <= 1 {
        match response.status() {
            StatusCode::OK => METRICS.hit(),
            StatusCode::NOT_FOUND => METRICS.miss(),
            _ => {}
        }
    }
    if response.status().is_client_error() && op != 0 && op != 1 {
        METRICS.error();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_operations() {
        assert_eq!(
            OPERATIONS[operation(&Method::PUT, Some("/v1/keys/{key}"))],
            "put"
        );
        assert_eq!(
            OPERATIONS[operation(&Method::POST, Some("/v1/keys/{key}/incr"))],
            "incr"
        );
        assert_eq!(OPERATIONS[operation(&Method::GET, None)], "other");
    }
}
