//! HTTP key decoding on arbitrary path segments: no panic, a decoded key
//! always obeys memcached's key rule, and encode/decode round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memcached_lite::http::key::{decode, encode};
use memcached_lite::rules::{valid_key, MAX_KEY};

fuzz_target!(|data: &[u8]| {
    if let Ok(segment) = std::str::from_utf8(data) {
        if let Ok(key) = decode(segment) {
            assert!(valid_key(&key) && key.len() <= MAX_KEY);
            assert_eq!(decode(&encode(&key)).ok(), Some(key));
        }
    }
    // Any raw key: encoding is a valid segment that decodes back exactly
    // when the key is valid.
    let back = decode(&encode(data)).ok();
    assert_eq!(back.as_deref(), valid_key(data).then_some(data));
});
