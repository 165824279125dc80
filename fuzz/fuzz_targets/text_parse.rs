//! The text parser on arbitrary bytes, frame after frame as the connection
//! loop runs it: no panic, consumed <= buffered, `Incomplete` only without
//! a whole frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memcached_lite::memcache::frame::MAX_LINE;
use memcached_lite::memcache::text::parse::{parse, Frame, MAX_GET_LINE};
use memcached_lite::rules::valid_key;

const MAX_ITEM: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match parse(rest, MAX_ITEM) {
            Frame::Incomplete { need: 0 } => {
                assert!(!rest.contains(&b'\n') && rest.len() <= MAX_GET_LINE);
                break;
            }
            Frame::Incomplete { need } => {
                assert!(rest.contains(&b'\n') && need > rest.len());
                assert!(need <= MAX_LINE + MAX_ITEM + 2);
                break;
            }
            Frame::Close => break,
            Frame::Request { len, .. } | Frame::Error { len, .. } => {
                assert!(len > 0 && len <= rest.len());
                rest = &rest[len..];
            }
            Frame::Swallow {
                len, skip, discard, ..
            } => {
                assert!(len > 0 && len <= rest.len() && skip > MAX_ITEM);
                assert!(discard.is_none_or(valid_key));
                rest = &rest[len..];
            }
        }
    }
});
