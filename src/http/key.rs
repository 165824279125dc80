//! Keys in request paths: strictly percent-decoded from the raw URI (so
//! keys may hold any byte memcached allows, `/` and `%` included) and then
//! held to memcached's key rules, the same rule the text protocol applies.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};

use super::error::ApiError;
use crate::rules::{valid_key, MAX_KEY};

/// Where item routes start; the key is the next path segment.
pub const KEYS_PREFIX: &str = "/v1/keys/";

/// A decoded, valid key taken from the `{key}` segment of the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(pub Vec<u8>);

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let segment = parts
            .uri
            .path()
            .strip_prefix(KEYS_PREFIX)
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| ApiError::BadKey("missing key".into()))?;
        decode(segment).map(Key)
    }
}

/// The `{key}` parameter's pattern, on the decoded key. memcached counts a
/// key's length in bytes (at most [`MAX_KEY`]) while JSON Schema counts
/// characters, so one regex cannot say "at most 250 UTF-8 bytes"; this one
/// admits the keys it can prove short enough: up to 250 printable ASCII
/// characters, up to 125 characters of at most 2 UTF-8 bytes, or up to 62
/// characters of any width, none a space or control character. The server
/// accepts every key this matches; it also accepts the longer non-ASCII
/// keys (and non-UTF-8 bytes) memcached allows, which no string pattern
/// describes exactly (see docs/http-contract.md).
pub const KEY_PATTERN: &str =
    r"^(?:[!-~]{1,250}|[!-~\u0080-\u07FF]{1,125}|[^\u0000-\u0020\u007F]{1,62})$";

/// The `{key}` path parameter as documented (the handlers take [`Key`]).
pub struct KeyPath;

impl utoipa::IntoParams for KeyPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_KEY))
            .pattern(Some(KEY_PATTERN));
        vec![ParameterBuilder::new()
            .name("key")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(format!(
                "The key, percent-encoded in the path; the pattern is on the decoded key. \
memcached's rule: 1 to {MAX_KEY} bytes (UTF-8 bytes for text), no spaces or control \
characters; `/` and `%` are allowed when percent-encoded. Otherwise 400 `bad_key`."
            )))
            .schema(Some(schema))
            .build()]
    }
}

/// Decodes one percent-encoded path segment into a key, or says why not.
pub fn decode(segment: &str) -> Result<Vec<u8>, ApiError> {
    let raw = segment.as_bytes();
    let mut key = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let byte = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ApiError::BadKey(
                        "bad percent-encoding in key: `%` must be followed by two hex digits"
                            .into(),
                    )
                })?;
            key.push(byte);
            i += 3;
        } else {
            key.push(raw[i]);
            i += 1;
        }
    }
    if key.len() > MAX_KEY {
        return Err(ApiError::BadKey(format!(
            "key is {} bytes long; the limit is {MAX_KEY}",
            key.len()
        )));
    }
    if !valid_key(&key) {
        return Err(ApiError::BadKey(
            "key must be non-empty and hold no spaces or control characters".into(),
        ));
    }
    Ok(key)
}

/// The path-safe form of a key (for `Location` headers).
pub fn encode(key: &[u8]) -> String {
    use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encode(key, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<u8> {
        decode(s).unwrap()
    }

    fn bad(s: &str) -> bool {
        matches!(decode(s), Err(ApiError::BadKey(_)))
    }

    #[test]
    fn decodes_percent_escapes_to_raw_bytes() {
        assert_eq!(ok("plain"), b"plain");
        assert_eq!(ok("a%2Fb%25c"), b"a/b%c");
        assert_eq!(ok("%ff%C3%A9"), b"\xff\xc3\xa9");
        assert_eq!(ok("a+b"), b"a+b");
        assert_eq!(ok(&"k".repeat(250)).len(), 250);
    }

    #[test]
    fn refuses_what_memcached_refuses() {
        assert!(bad(""));
        assert!(bad(&"k".repeat(251)));
        assert!(bad(&"%41".repeat(251)));
        assert!(bad("a%20b"));
        assert!(bad("a%00b"));
        assert!(bad("a%0Ab"));
        assert!(bad("a%7F"));
    }

    #[test]
    fn refuses_bad_percent_encoding() {
        assert!(bad("a%"));
        assert!(bad("a%4"));
        assert!(bad("a%zz"));
        assert!(bad("%+1"));
    }

    #[test]
    fn encode_round_trips() {
        for key in [&b"a/b c%"[..], b"\xff\x01", b"simple-key_1.2~"] {
            assert_eq!(
                decode(&encode(key)).ok().as_deref(),
                valid_key(key).then_some(key)
            );
        }
    }
}
