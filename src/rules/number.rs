//! Numbers as memcached reads them: one reading of `strtoull` and one of
//! `strtol`, used for command arguments and for counter values alike (an
//! `incr` reads the stored value with the same rule memcached applies to
//! its arguments).

/// A decimal u64 read the way memcached's `safe_strtoull` reads it:
/// leading whitespace and one `+` allowed, digits that fit, then the end or
/// a whitespace byte (after which anything goes). A `-` is always refused.
/// Stored counters use it too: memcached pads a shrunk counter with spaces.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = skip_c_space(s);
    let s = s.strip_prefix(b"+").unwrap_or(s);
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let (digits, rest) = s.split_at(end);
    if digits.is_empty() || rest.first().is_some_and(|&b| !is_c_space(b)) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A decimal i64 with an optional leading `-` or `+`, otherwise read as
/// [`parse_u64`] reads (memcached's `safe_strtol`).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let s = skip_c_space(s);
    let (neg, digits) = match s.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, s),
    };
    if neg && digits.starts_with(b"+") {
        return None;
    }
    let v = i64::try_from(parse_u64(digits)?).ok()?;
    Some(if neg { -v } else { v })
}

/// C's `isspace`: the bytes `strtol` skips and stops at.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_c_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_c_space(b)).unwrap_or(s.len());
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_reads_like_strtoull() {
        assert_eq!(parse_u64(b"42"), Some(42));
        assert_eq!(parse_u64(b"9 "), Some(9));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"+"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"-0"), None);
        assert_eq!(parse_u64(b"1a"), None);
        // Leading blanks and '+', anything after a blank (memcached pads
        // shrunk counters with spaces); every C isspace byte counts,
        // vertical tab included, on both sides.
        assert_eq!(parse_u64(b" +12"), Some(12));
        assert_eq!(parse_u64(b"12 abc"), Some(12));
        assert_eq!(parse_u64(b"12\tx"), Some(12));
        assert_eq!(parse_u64(b"12\x0b"), Some(12));
        assert_eq!(parse_u64(b"\x0b12"), Some(12));
        assert_eq!(parse_u64(b"0000000000000000000000010"), Some(10));
    }

    #[test]
    fn signed_reads_like_strtol() {
        assert_eq!(parse_i64(b"-7"), Some(-7));
        assert_eq!(parse_i64(b"+7"), Some(7));
        assert_eq!(parse_i64(b" -7"), Some(-7));
        assert_eq!(parse_i64(b"-+7"), None);
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
    }
}
