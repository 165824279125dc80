//! JSON request-body numbers as JSON Schema counts them: an integer is any
//! number with a zero fractional part, so `61090.0` is the integer 61090.
//! The document declares body fields as `integer`; serde alone would refuse
//! `61090.0` for a `u64`, so schema-driven clients (which may send integral
//! floats) would see valid bodies refused. These deserializers accept
//! exactly the JSON Schema integers in the field's range.

use serde::de::{Deserializer, Error};
use serde::Deserialize;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::RefOr;

/// An `integer` schema with the exact bounds of a Rust integer type (utoipa
/// writes only `minimum: 0` for unsigned types, and nothing for signed
/// ones, so a schema-driven client would send numbers that overflow).
fn integer(min: utoipa::Number, max: utoipa::Number, format: KnownFormat) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .minimum(Some(min))
        .maximum(Some(max))
}

/// The schema of a `u64` field.
pub fn u64_schema() -> ObjectBuilder {
    integer(
        utoipa::Number::UInt(0),
        utoipa::Number::UInt(u64::MAX as usize),
        KnownFormat::Int64,
    )
}

/// The schema of an `i64` field.
pub fn i64_schema() -> ObjectBuilder {
    integer(
        utoipa::Number::Int(i64::MIN as isize),
        utoipa::Number::Int(i64::MAX as isize),
        KnownFormat::Int64,
    )
}

/// The schema of a `u32` field.
pub fn u32_schema() -> ObjectBuilder {
    integer(
        utoipa::Number::UInt(0),
        utoipa::Number::UInt(u32::MAX as usize),
        KnownFormat::Int32,
    )
}

/// [`u64_schema`] for `#[schema(schema_with = ...)]`.
pub fn u64_field() -> RefOr<utoipa::openapi::Schema> {
    u64_schema().into()
}

/// [`i64_schema`] for `#[schema(schema_with = ...)]`.
pub fn i64_field() -> RefOr<utoipa::openapi::Schema> {
    i64_schema().into()
}

/// [`u32_schema`] for `#[param(schema_with = ...)]`.
pub fn u32_field() -> RefOr<utoipa::openapi::Schema> {
    u32_schema().into()
}

/// A JSON number's text: an integer literal is parsed exactly (serde_json
/// would turn one out of `u64`/`i64` range into a float and round it into
/// range), a literal with a fraction or exponent as `f64`, integral or not.
enum Literal {
    Integer(i128),
    Float(f64),
}

fn literal<'de, D: Deserializer<'de>>(d: D) -> Result<(Literal, String), D::Error> {
    let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
    let text = raw.get().trim().to_owned();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(D::Error::custom(format!("expected an integer, got {text}")));
    }
    let value = if text.contains(['.', 'e', 'E']) {
        text.parse().map(Literal::Float).map_err(D::Error::custom)?
    } else {
        // Too long for i128 is far out of any field's range.
        Literal::Integer(text.parse().unwrap_or(i128::MAX))
    };
    Ok((value, text))
}

/// Whether a number is an integer in `min..=max` (`max_float` is the
/// first `f64` above `max`: 2^64 or 2^63, both exact).
fn in_range(n: &Literal, min: i128, max: i128, max_float: f64) -> Option<i128> {
    match *n {
        Literal::Integer(v) => (min..=max).contains(&v).then_some(v),
        Literal::Float(f) => {
            (f.fract() == 0.0 && f >= min as f64 && f < max_float).then_some(f as i128)
        }
    }
}

/// `u64` from any JSON number that is an integer in `0..=u64::MAX`.
pub fn u64_integer<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let (n, text) = literal(d)?;
    in_range(&n, 0, u64::MAX.into(), 18_446_744_073_709_551_616.0)
        .map(|v| v as u64)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "expected an integer between 0 and {}, got {text}",
                u64::MAX
            ))
        })
}

/// `i64` from any JSON number that is an integer in `i64::MIN..=i64::MAX`.
pub fn i64_integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let (n, text) = literal(d)?;
    in_range(
        &n,
        i64::MIN.into(),
        i64::MAX.into(),
        9_223_372_036_854_775_808.0,
    )
    .map(|v| v as i64)
    .ok_or_else(|| {
        D::Error::custom(format!(
            "expected an integer between {} and {}, got {text}",
            i64::MIN,
            i64::MAX
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct U {
        #[serde(deserialize_with = "u64_integer")]
        v: u64,
    }

    #[derive(Deserialize)]
    struct I {
        #[serde(deserialize_with = "i64_integer")]
        v: i64,
    }

    fn u(json: &str) -> Option<u64> {
        serde_json::from_str::<U>(&format!("{{\"v\": {json}}}"))
            .ok()
            .map(|x| x.v)
    }

    fn i(json: &str) -> Option<i64> {
        serde_json::from_str::<I>(&format!("{{\"v\": {json}}}"))
            .ok()
            .map(|x| x.v)
    }

    #[test]
    fn integral_numbers_are_integers() {
        assert_eq!(u("61090.0"), Some(61090));
        assert_eq!(u("1e3"), Some(1000));
        assert_eq!(u("-0.0"), Some(0));
        assert_eq!(u("18446744073709551615"), Some(u64::MAX));
        assert_eq!(u("1e19"), Some(10_000_000_000_000_000_000));
        assert_eq!(i("-60.0"), Some(-60));
        assert_eq!(i("-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn fractions_and_out_of_range_numbers_are_refused() {
        assert_eq!(u("1.5"), None);
        assert_eq!(u("-1"), None);
        assert_eq!(u("18446744073709551616"), None);
        assert_eq!(u("1.8446744073709552e19"), None);
        assert_eq!(u("\"1\""), None);
        assert_eq!(i("9223372036854775808"), None);
        assert_eq!(i("9.3e18"), None);
        assert_eq!(i("-9223372036854775809"), None);
        assert_eq!(u("99999999999999999999999999999999999999999"), None);
        assert_eq!(u("null"), None);
        assert_eq!(u("true"), None);
        assert_eq!(i("0.5"), None);
    }
}
