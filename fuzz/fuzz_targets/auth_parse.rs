//! The `--auth-file` gate's parser on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memcached_lite::memcache::auth::{parse, AuthFrame, MAX_TOKEN};
use memcached_lite::memcache::frame::MAX_LINE;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        AuthFrame::Incomplete { need } => {
            assert!(need == 0 || need > data.len());
            assert!(need <= MAX_LINE + MAX_TOKEN + 2);
        }
        AuthFrame::Reply { len, .. } | AuthFrame::Attempt { len, .. } => {
            assert!(len > 0 && len <= data.len());
        }
    }
});
