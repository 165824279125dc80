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

impl Harness {
    async fn call_json(&self, uri: &str, body: &'static str) -> Response {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        super::app(self.state.clone()).oneshot(req).await.unwrap()
    }
}

/// What the OpenAPI document promises, held at the edges of each range.
#[tokio::test]
async fn requests_are_refused_exactly_where_the_document_says() {
    let h = harness();
    let max = Box::leak(format!("/v1/keys/{}", "k".repeat(250)).into_boxed_str());
    assert_eq!(h.call("PUT", max, "1").await.status(), StatusCode::CREATED);
    for limit in ["0", "1001", "-1", "1.5"] {
        let uri = Box::leak(format!("/v1/keys?limit={limit}").into_boxed_str());
        let resp = h.call("GET", uri, "").await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "limit={limit}");
        assert_eq!(json(resp).await["error"], "bad_request");
    }
    for limit in ["1", "1000"] {
        let uri = Box::leak(format!("/v1/keys?limit={limit}").into_boxed_str());
        assert_eq!(h.call("GET", uri, "").await.status(), StatusCode::OK);
    }
    // A cursor the document's pattern allows always decodes.
    for cursor in ["", "aw", "YWI", "YWJj", "_-8"] {
        let uri = Box::leak(format!("/v1/keys?cursor={cursor}").into_boxed_str());
        assert_eq!(
            h.call("GET", uri, "").await.status(),
            StatusCode::OK,
            "{cursor}"
        );
    }
    assert_eq!(
        h.call("GET", "/v1/keys?cursor=a", "").await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn json_integers_may_carry_a_zero_fraction_and_nothing_extra() {
    let h = harness();
    assert_eq!(
        h.call("PUT", "/v1/keys/n", "5").await.status(),
        StatusCode::CREATED
    );
    let resp = h.call_json("/v1/keys/n/incr", r#"{"by": 61090.0}"#).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(resp).await["value"], 61095);
    let resp = h.call_json("/v1/keys/n/touch", r#"{"ttl": 60.0}"#).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for body in [
        r#"{"by": 1.5}"#,
        r#"{"by": -1}"#,
        r#"{"by": 18446744073709551616}"#,
        r#"{"by": 1, "extra": true}"#,
        r#"{}"#,
    ] {
        let resp = h.call_json("/v1/keys/n/incr", body).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(json(resp).await["error"], "invalid_body");
    }
    let resp = h
        .call_json("/v1/keys/n/touch", r#"{"ttl": -9223372036854775809}"#)
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn conditions_and_bodies_as_documented() {
    let h = harness();
    // No body: an empty value, as the document's optional body says.
    assert_eq!(
        h.call("PUT", "/v1/keys/e", "").await.status(),
        StatusCode::CREATED
    );
    let both = Request::builder()
        .method("PUT")
        .uri("/v1/keys/e")
        .header("if-match", "*")
        .header("if-none-match", "*")
        .body(Body::from("v"))
        .unwrap();
    let resp = super::app(h.state.clone()).oneshot(both).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    let long_cas = Request::builder()
        .method("PUT")
        .uri("/v1/keys/e")
        .header("if-match", "\"12345678901234567890\"")
        .body(Body::from("v"))
        .unwrap();
    let resp = super::app(h.state.clone()).oneshot(long_cas).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn the_document_defines_every_schema_it_references() {
    let doc = super::openapi::to_json();
    let value: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let schemas = value["components"]["schemas"].as_object().unwrap();
    for (i, _) in doc.match_indices("#/components/schemas/") {
        let name: String = doc[i + 21..]
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        assert!(
            schemas.contains_key(&name),
            "{name} is referenced, not defined"
        );
    }
    assert!(
        !doc.contains("\"operation_id\""),
        "links must say operationId"
    );
}

#[tokio::test]
async fn an_idle_watch_stream_gets_keep_alive_comments_then_events() {
    use futures_util::StreamExt;
    let h = harness();
    let resp = h.call("GET", "/v1/watch?prefix=k", "").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.into_body().into_data_stream();
    let mut next = async || {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next());
        String::from_utf8(frame.await.unwrap().unwrap().unwrap().to_vec()).unwrap()
    };
    assert_eq!(next().await, ": keep-alive\n\n");
    let stored = h.call("PUT", "/v1/keys/k1?flags=3", "v").await;
    assert_eq!(stored.status(), StatusCode::CREATED);
    let event = next().await;
    assert!(event.starts_with("id: "), "{event}");
    assert!(event.contains("event: set\n"), "{event}");
    assert!(
        event.contains(r#""key":"k1""#) && event.contains(r#""flags":3"#),
        "{event}"
    );
}
