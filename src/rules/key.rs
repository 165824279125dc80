//! memcached's key rule, applied alike by the text, meta and binary
//! parsers, the HTTP API and CSV import.

/// memcached's KEY_MAX_LENGTH.
pub const MAX_KEY: usize = 250;

/// memcached keys: 1..=250 bytes, no spaces and no control characters
/// (the text tokenizer already splits at spaces; other callers rely on
/// this check alone).
pub fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_memcached() {
        assert!(valid_key(b"k"));
        assert!(valid_key(&[b'k'; MAX_KEY]));
        assert!(!valid_key(&[b'k'; MAX_KEY + 1]));
        assert!(!valid_key(b""));
        assert!(!valid_key(b"a b"));
        assert!(!valid_key(b"a\x7f"));
        assert!(!valid_key(b"a\n"));
        assert!(valid_key("ключ".as_bytes()), "non-ASCII bytes are fine");
    }
}
