//! The shapes of the `/v1/keys/{key}` routes as the OpenAPI document
//! states them: query, condition headers, JSON bodies and the answers
//! besides 2xx. Each is held to exactly what the handlers in
//! [`super::items`] accept, so a client generated from (or a tester driven
//! by) the document sends nothing the server refuses.

use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};
use utoipa::{IntoParams, ToSchema};

use crate::http::error::ErrorBody;
use crate::http::json;

/// Raw value bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(#[allow(dead_code)] Vec<u8>);

/// Query of `PUT /v1/keys/{key}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// Expiry, memcached exptime rules: 0 or absent = never, up to 2592000
    /// (30 days) = seconds from now, larger = absolute unix time, negative =
    /// already expired.
    #[param(schema_with = json::i64_field)]
    pub ttl: Option<i64>,
    /// Client flags stored with the item (default 0).
    #[param(schema_with = json::u32_field)]
    pub flags: Option<u32>,
}

/// Body of `incr` / `decr`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArithRequest {
    /// Amount to add or subtract (64-bit unsigned; incr wraps, decr stops at 0).
    #[serde(deserialize_with = "json::u64_integer")]
    #[schema(schema_with = json::u64_field, example = 1)]
    pub by: u64,
}

/// Result of `incr` / `decr`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ArithResponse {
    /// The counter's new value.
    #[schema(schema_with = json::u64_field, example = 42)]
    pub value: u64,
}

/// Body of `touch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TouchRequest {
    /// New expiry, memcached exptime rules (0 = never, negative = expire now).
    #[serde(deserialize_with = "json::i64_integer")]
    #[schema(schema_with = json::i64_field, example = 60)]
    pub ttl: i64,
}

/// The ETag a conditional request names: `*`, or a CAS of at most 19
/// digits, quoted or bare. 19 digits keep every match a `u64` (a CAS is a
/// counter from 1, so no real CAS is longer).
pub const IF_MATCH_PATTERN: &str = r#"^(?:\*|"[0-9]{1,19}"|[0-9]{1,19})$"#;

fn header(name: &str, schema: ObjectBuilder, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema.schema_type(Type::String)))
        .build()
}

fn if_match(description: &str) -> Parameter {
    header(
        "If-Match",
        ObjectBuilder::new().pattern(Some(IF_MATCH_PATTERN)),
        description,
    )
}

/// The condition headers of PUT (documentation only; see `condition`).
pub struct PutConditions;

impl IntoParams for PutConditions {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            if_match(
                "`\"<cas>\"`: store only if the item's CAS still matches (memcached `cas`); \
`*`: only if it exists (`replace`). Together with `If-None-Match` the condition never \
holds: 412.",
            ),
            // An enum, not `^\*$`: Python's `$` also matches before a final
            // newline, so a pattern would let a tool generate `*\n`.
            header(
                "If-None-Match",
                ObjectBuilder::new().enum_values(Some(["*"])),
                "`*`: store only if the key does not exist (memcached `add`)",
            ),
        ]
    }
}

/// The condition header of DELETE (documentation only).
pub struct DeleteCondition;

impl IntoParams for DeleteCondition {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![if_match(
            "`\"<cas>\"`: delete only if the item's CAS still matches; `*`: the same as no condition",
        )]
    }
}

/// The errors every `/v1/keys/{key}` operation with a body can answer
/// (documentation only: handlers return `ApiError`).
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum ItemErrors {
    /// `bad_key`: the key breaks memcached's key rules or its
    /// percent-encoding; `bad_request`: a malformed `ttl`/`flags` query,
    /// condition header or JSON syntax
    #[response(status = 400, example = json!({"error": "bad_key", "message": "key must be non-empty and hold no spaces or control characters"}))]
    BadRequest(ErrorBody),
    /// No such item (or it expired); PUT answers it only with `If-Match`
    #[response(status = 404, example = json!({"error": "not_found", "message": "no item with this key"}))]
    NotFound(ErrorBody),
}

/// What `incr` and `decr` answer besides the common errors (their 200 is
/// declared with `body = ArithResponse` in the path attribute: a schema
/// named only inside `IntoResponses` is referenced but never defined).
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum ArithErrors {
    /// The value is not a number
    #[response(status = 409, example = json!({"error": "non_numeric", "message": "cannot increment or decrement a non-numeric value"}))]
    NonNumeric(ErrorBody),
}

/// The errors of operations that take a JSON body.
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum JsonBodyErrors {
    /// The body is not `application/json`
    #[response(status = 415, example = json!({"error": "unsupported_media_type", "message": "Expected request with `Content-Type: application/json`"}))]
    UnsupportedMediaType(ErrorBody),
    /// The JSON does not match the request schema (a field missing, of
    /// the wrong type, out of range, or one the schema does not name)
    #[response(status = 422, example = json!({"error": "invalid_body", "message": "Failed to deserialize the JSON body into the target type: by: invalid value"}))]
    InvalidBody(ErrorBody),
}
