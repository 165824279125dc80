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

/// The name of the bearer-token security scheme in the document.
pub const BEARER: &str = "bearer_token";

/// Declares the `--http-token-file` bearer scheme and, on every operation
/// the token guards (all but health checks and docs, the same rule as
/// [`crate::http::middleware::auth::require_bearer`]), the scheme and its 401 answer. Applied
/// to the finished document, so no route has to repeat it.
pub fn secured(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::path::Operation;
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    use utoipa::openapi::{ObjectBuilder, Ref, ResponseBuilder, Type};

    let components = doc.components.get_or_insert_with(Default::default);
    let mut scheme = Http::new(HttpAuthScheme::Bearer);
    scheme.description = Some(
        "`Authorization: Bearer <token>`, required on every route but `/healthz`, `/readyz` \
and the docs when the server runs with `--http-token-file` (the token is the file's content, \
trimmed); without that option no token is needed."
            .into(),
    );
    components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    components.responses.insert(
        "Unauthorized".into(),
        ResponseBuilder::new()
            .description("`unauthorized`: missing or wrong bearer token (`--http-token-file`)")
            .header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer`"))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .example(Some(serde_json::json!({
                        "error": "unauthorized",
                        "message": "missing or wrong bearer token",
                    })))
                    .build(),
            )
            .build()
            .into(),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        if crate::http::middleware::auth::is_public_path(path) {
            continue;
        }
        let ops: [&mut Option<Operation>; 8] = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            // Bearer token, or nothing when the server has no token file.
            op.security = Some(vec![
                SecurityRequirement::new(BEARER, Vec::<String>::new()),
                SecurityRequirement::default(),
            ]);
            op.responses
                .responses
                .insert("401".into(), Ref::from_response_name("Unauthorized").into());
        }
    }
    doc
}

/// The full document as pretty JSON with a trailing newline (the exact
/// bytes of `openapi/openapi.json`).
pub fn to_json() -> String {
    let mut s = secured(super::router().into_openapi())
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    s.push('\n');
    s
}
