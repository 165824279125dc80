//! Handler tests that need no socket: requests go through the whole
//! application (routes, middleware, JSON errors) with `oneshot`, over a
//! store whose clock only moves when the test says so.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use tower::ServiceExt;

use crate::config::Config;
use crate::kv::Kv;
use crate::rules::Clock;
use crate::state::AppState;

struct Harness {
    _dir: tempfile::TempDir,
    state: Arc<AppState>,
    clock: Clock,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_data_dir(dir.path());
    let clock = Clock::manual(1_800_000_000);
    let kv = Kv::open_with_clock(&config.store, clock.clone()).unwrap();
    let state = AppState::new(Arc::new(kv), config);
    Harness {
        _dir: dir,
        state,
        clock,
    }
}

impl Harness {
    async fn call(&self, method: &str, uri: &str, body: &'static str) -> Response {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body))
            .unwrap();
        super::app(self.state.clone()).oneshot(req).await.unwrap()
    }
}

async fn json(resp: Response) -> serde_json::Value {
    serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap()
}

#[tokio::test]
async fn ttl_counts_down_and_the_item_expires_on_the_clock() {
    let h = harness();
    let put = h.call("PUT", "/v1/keys/session?ttl=100", "v").await;
    assert_eq!(put.status(), StatusCode::CREATED);
    h.clock.advance(40);
    let get = h.call("GET", "/v1/keys/session", "").await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.headers()["x-ttl"], "60");
    h.clock.advance(59);
    let head = h.call("HEAD", "/v1/keys/session", "").await;
    assert_eq!(head.headers()["x-ttl"], "1");
    h.clock.advance(1);
    let gone = h.call("GET", "/v1/keys/session", "").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(gone).await["error"], "not_found");
}

#[tokio::test]
async fn a_delayed_flush_takes_effect_when_the_clock_reaches_it() {
    let h = harness();
    assert_eq!(
        h.call("PUT", "/v1/keys/a", "1").await.status(),
        StatusCode::CREATED
    );
    let flush = h.call("POST", "/v1/flush?delay=10", "").await;
    assert!(flush.status().is_success(), "{}", flush.status());
    h.clock.advance(8);
    assert_eq!(
        h.call("GET", "/v1/keys/a", "").await.status(),
        StatusCode::OK
    );
    h.clock.advance(1);
    assert_eq!(
        h.call("GET", "/v1/keys/a", "").await.status(),
        StatusCode::NOT_FOUND
    );
    let listed = json(h.call("GET", "/v1/keys", "").await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "{listed}");
}

#[tokio::test]
async fn bad_keys_and_unknown_routes_get_the_json_error_body() {
    let h = harness();
    let long = Box::leak(format!("/v1/keys/{}", "k".repeat(251)).into_boxed_str());
    let resp = h.call("GET", long, "").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(resp).await["error"], "bad_key");
    let resp = h.call("GET", "/v2/nothing", "").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(resp).await["error"], "not_found");
}

#[tokio::test]
async fn readiness_turns_503_once_shutdown_is_requested() {
    let h = harness();
    assert_eq!(h.call("GET", "/readyz", "").await.status(), StatusCode::OK);
    h.state.request_shutdown();
    let resp = h.call("GET", "/readyz", "").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(resp).await["message"], "shutting down");
}
