//! The binary protocol parser on arbitrary bytes, packet after packet as
//! the connection loop runs it: no panic, consumed <= buffered, slices
//! inside the packet, `Incomplete` only while a packet is short.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memcached_lite::memcache::binary::parse::{parse, Frame, HEADER_LEN, REQUEST_MAGIC};

const MAX_ITEM: usize = 1024;

fuzz_target!(|data: &[u8]| {
    // Most random first bytes are "not binary": force the magic so the
    // fuzzer explores headers, then let later packets be anything.
    let buf = [&[REQUEST_MAGIC][..], data].concat();
    let mut rest = &buf[..];
    loop {
        match parse(rest, MAX_ITEM) {
            Frame::Incomplete { need } => {
                assert!(need > rest.len() && need >= HEADER_LEN);
                break;
            }
            Frame::Close => {
                assert!(rest[0] != REQUEST_MAGIC);
                break;
            }
            Frame::Request { req, len } => {
                assert!(len >= HEADER_LEN && len <= rest.len());
                let h = req.header;
                assert_eq!(len, HEADER_LEN + h.bodylen as usize);
                assert_eq!(req.extras.len(), h.extlen as usize);
                assert_eq!(req.key.len(), h.keylen as usize);
                assert_eq!(req.value.len(), h.value_len());
                rest = &rest[len..];
            }
            Frame::Refuse {
                len,
                close,
                discard_key,
                ..
            } => {
                assert!(len >= HEADER_LEN && len <= rest.len());
                assert!(discard_key.is_none_or(|k| !k.is_empty()));
                if close {
                    break;
                }
                rest = &rest[len..];
            }
        }
    }
});
