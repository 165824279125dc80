//! The OpenAPI document: the top-level description here, every operation
//! and schema collected from the handlers' `#[utoipa::path]` attributes by
//! [`super::router`]. `memcached-lite openapi` prints it; the copy checked
//! in as `openapi/openapi.json` is compared against it by a test.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "memcached-lite HTTP API",
        description = "Items of the memcached-lite store over HTTP/JSON. The same items, \
flags, expiry and CAS as the memcached protocol: an item's CAS is its ETag. Keys travel \
percent-encoded in the path and follow memcached's key rules (at most 250 bytes, no spaces \
or control characters). Every error is JSON: `{\"error\": \"<code>\", \"message\": \"...\"}`.",
    ),
    tags(
        (name = "keys", description = "Items: read, write, conditional writes, counters, expiry, listing"),
        (name = "server", description = "Statistics, flush, health"),
    )
)]
struct ApiDoc;

/// The top-level document, before the routes add their paths.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The full document as pretty JSON with a trailing newline (the exact
/// bytes of `openapi/openapi.json`).
pub fn to_json() -> String {
    let mut s = super::router()
        .into_openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    s.push('\n');
    s
}
