//! Meta commands (`mg ms md ma me mn`) on arbitrary flag/key/data bytes,
//! through the text parser as the connection loop runs it: no panic,
//! consumed <= buffered, `Incomplete` only without a whole frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memcached_lite::memcache::frame::MAX_LINE;
use memcached_lite::memcache::text::parse::{parse, Frame, Request};
use memcached_lite::rules::MAX_KEY;

const MAX_ITEM: usize = 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the command so most inputs reach meta.rs.
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let cmd = [b'g', b's', b'd', b'a', b'e', b'n'][pick as usize % 6];
    let buf = [&[b'm', cmd, b' '][..], rest].concat();
    let mut rest = &buf[..];
    loop {
        match parse(rest, MAX_ITEM) {
            Frame::Incomplete { need } => {
                assert!(need == 0 || need > rest.len());
                assert!(need <= MAX_LINE + MAX_ITEM + 2);
                break;
            }
            Frame::Close => break,
            Frame::Request { len, req } => {
                assert!(len > 0 && len <= rest.len());
                if let Request::Meta(m) = req {
                    assert!(!m.key.is_empty() && m.key.len() <= MAX_KEY);
                    assert!(m.data.len() <= MAX_ITEM);
                }
                rest = &rest[len..];
            }
            Frame::Error { len, .. } | Frame::Swallow { len, .. } => {
                assert!(len > 0 && len <= rest.len());
                rest = &rest[len..];
            }
        }
    }
});
