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
or control characters). Every error is JSON: `{\"error\": \"<code>\", \"message\": \"...\"}`, \
including 405 for a method a path does not serve (`#/components/responses/MethodNotAllowed`). \
Only requests the HTTP parser refuses before routing (a malformed request line or header: \
400; a URI over 65534 bytes: 414; headers over the parser's limits: 431) get a bare status \
without a body. JSON bodies: extra properties are refused (422); integers may be written \
with a zero fraction (`60.0`).",
    ),
    tags(
        (name = "keys", description = "Items: read, write, conditional writes, counters, expiry, listing"),
        (name = "server", description = "Statistics, flush, health"),
        (name = "cluster", description = "A replicated group: its state as a node sees it, and its members"),
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
        for op in operations(item) {
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

/// The served and printed document: the routes' operations with the
/// bearer scheme ([`secured`]), the answers the middleware can give on any
/// route ([`middleware_responses`]) and the links from PUT to the other
/// operations on the same key ([`put_links`]).
pub fn finish(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    put_links(middleware_responses(secured(doc)))
}

/// An error response whose body is [`crate::http::error::ErrorBody`].
fn error_response(
    description: &str,
    code: &str,
    message: &str,
) -> utoipa::openapi::response::ResponseBuilder {
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::{Ref, ResponseBuilder};
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .example(Some(serde_json::json!({"error": code, "message": message})))
            .build(),
    )
}

/// Declares the refusals that come from the middleware rather than a
/// handler, on the operations where they can happen: 408 from the timeout
/// layer on every operation, 413 from the body limit on every operation
/// with a request body, 500 where a store read or write (or the
/// `--durability sync` commit) can fail. 405 (a method the path does not
/// serve, with `Allow`) concerns no declared operation, so it is a shared
/// response component named by the document's description.
pub fn middleware_responses(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::{ObjectBuilder, Ref, Type};

    let components = doc.components.get_or_insert_with(Default::default);
    let shared = [
        (
            "Timeout",
            error_response(
                "`timeout`: the request took longer than `--http-timeout-secs`",
                "timeout",
                "Request Timeout",
            ),
        ),
        (
            "TooLarge",
            error_response(
                "`too_large`: the body is larger than the limit (`--max-item-size`, at least 4096 bytes)",
                "too_large",
                "value larger than the item size limit (--max-item-size)",
            ),
        ),
        (
            "Internal",
            error_response(
                "`internal`: the store failed (the detail is in the server log under the \
response's `x-request-id`)",
                "internal",
                "internal error; the server log has the details (look up the x-request-id)",
            ),
        ),
        (
            "MethodNotAllowed",
            error_response(
                "`method_not_allowed`: the path exists but does not serve this method; \
`Allow` lists the methods it serves",
                "method_not_allowed",
                "Method Not Allowed",
            )
            .header(
                "Allow",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("The methods the path serves, e.g. `GET,HEAD`"))
                    .build(),
            ),
        ),
    ];
    for (name, response) in shared {
        components
            .responses
            .insert(name.into(), response.build().into());
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let store = path.starts_with("/v1/keys") || path == "/v1/flush";
        for op in operations(item) {
            let responses = &mut op.responses.responses;
            let mut add = |status: &str, name: &str| {
                responses
                    .entry(status.into())
                    .or_insert_with(|| Ref::from_response_name(name).into());
            };
            add("408", "Timeout");
            if op.request_body.is_some() {
                add("413", "TooLarge");
            }
            if store {
                add("500", "Internal");
            }
        }
    }
    doc
}

/// The optional body of `PUT /v1/keys/{key}`, and OpenAPI links from its
/// answers (201 and 204) to
/// every other operation on the same key, so tools (Swagger UI, a
/// stateful tester) can chain a write with reads, counters and a delete.
pub fn put_links(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::link::LinkBuilder;
    use utoipa::openapi::RefOr;

    const TARGETS: [&str; 6] = [
        "get_item",
        "head_item",
        "delete_item",
        "incr_item",
        "decr_item",
        "touch_item",
    ];
    let Some(put) = doc
        .paths
        .paths
        .get_mut("/v1/keys/{key}")
        .and_then(|item| item.put.as_mut())
    else {
        return doc;
    };
    // Also here, as the one PUT-specific fix-up: the body is optional (no
    // body stores an empty value), which utoipa can only say through an
    // `Option` type, and that would make the schema nullable too.
    if let Some(body) = put.request_body.as_mut() {
        body.required = Some(utoipa::openapi::Required::False);
    }
    for status in ["201", "204"] {
        let Some(RefOr::T(response)) = put.responses.responses.get_mut(status) else {
            continue;
        };
        for target in TARGETS {
            let link = LinkBuilder::new()
                .operation_id(target)
                .parameter("key", "$request.path.key")
                .description(format!("`{target}` on the key just written"))
                .build();
            response.links.insert(target.into(), RefOr::T(link));
        }
    }
    doc
}

/// Every operation of a path item.
fn operations(
    item: &mut utoipa::openapi::path::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The finished document as pretty JSON with a trailing newline.
///
/// utoipa 5.5 serializes a link's fields in snake case (`operation_id`),
/// which no OpenAPI tool reads (a validator rejects the link); the keys are
/// renamed here. Nothing else in the document is named `operation_id`:
/// operations use `operationId`, and a string value would be followed by
/// `,` or a newline, not by `": `.
pub fn json_text(doc: utoipa::openapi::OpenApi) -> String {
    let mut s = finish(doc)
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
        .replace("\"operation_id\": ", "\"operationId\": ")
        .replace("\"operation_ref\": ", "\"operationRef\": ")
        .replace("\"request_body\": ", "\"requestBody\": ");
    s.push('\n');
    s
}

/// [`json_text`] as a JSON value, for serving at `/openapi.json`.
pub fn json_value(doc: utoipa::openapi::OpenApi) -> serde_json::Value {
    serde_json::from_str(&json_text(doc)).expect("the OpenAPI document is JSON")
}

/// The full document as pretty JSON with a trailing newline (the exact
/// bytes of `openapi/openapi.json`).
pub fn to_json() -> String {
    json_text(super::router().into_openapi())
}
