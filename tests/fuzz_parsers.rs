//! Property tests (fuzzing without a nightly toolchain) for the pure
//! parsers of the memcached front end. CI runs proptest's default 256 cases
//! per property; fuzz for longer with
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test --release --test fuzz_parsers
//! ```
//!
//! A failing case is shrunk and saved under `proptest-regressions/`;
//! commit that file so the case is replayed forever.

use memcached_lite::kv::StoreMode;
use memcached_lite::memcache::auth::{self, AuthFrame};
use memcached_lite::memcache::text::{self, valid_key, Frame, Request, MAX_GET_LINE, MAX_KEY};
use proptest::prelude::*;

const MAX_ITEM: usize = 1024;

/// Inputs that reach deep into the parser: protocol words, numbers at the
/// edges of their types, separators and raw bytes, glued together.
fn protocol_bytes() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        Just(b"set".to_vec()),
        Just(b"add".to_vec()),
        Just(b"replace".to_vec()),
        Just(b"append".to_vec()),
        Just(b"prepend".to_vec()),
        Just(b"cas".to_vec()),
        Just(b"get".to_vec()),
        Just(b"gets".to_vec()),
        Just(b"gat".to_vec()),
        Just(b"gats".to_vec()),
        Just(b"delete".to_vec()),
        Just(b"incr".to_vec()),
        Just(b"decr".to_vec()),
        Just(b"touch".to_vec()),
        Just(b"flush_all".to_vec()),
        Just(b"stats".to_vec()),
        Just(b"verbosity".to_vec()),
        Just(b"cache_memlimit".to_vec()),
        Just(b"noreply".to_vec()),
        Just(b"HTTP/1.1".to_vec()),
        Just(b"0".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"1024".to_vec()),
        Just(b"1025".to_vec()),
        Just(b"4294967296".to_vec()),
        Just(b"18446744073709551615".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"-9223372036854775808".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\0".to_vec()),
        "[a-z0-9]{1,8}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 1..16),
    ];
    prop::collection::vec(word, 0..24).prop_map(|parts| parts.concat())
}

/// Checks the invariants of one `parse` result on `buf`.
fn check_frame(buf: &[u8]) -> Result<(), TestCaseError> {
    match text::parse(buf, MAX_ITEM) {
        Frame::Incomplete { need: 0 } => {
            prop_assert!(
                !buf.contains(&b'\n'),
                "Incomplete without need, yet a line is complete"
            );
            prop_assert!(buf.len() <= MAX_GET_LINE, "unbounded line kept");
        }
        Frame::Incomplete { need } => {
            prop_assert!(
                buf.contains(&b'\n'),
                "a data block is awaited only after its line"
            );
            prop_assert!(need > buf.len(), "need {need} <= buffered {}", buf.len());
            prop_assert!(
                need <= text::MAX_LINE + MAX_ITEM + 2,
                "need {need} beyond one item"
            );
        }
        Frame::Close => prop_assert!(buf.len() > text::MAX_LINE || buf.contains(&b'\n')),
        Frame::Request { req, len } => {
            prop_assert!(len > 0 && len <= buf.len());
            prop_assert_eq!(buf[len - 1], b'\n');
            check_request(&req)?;
        }
        Frame::Error { len, .. } => {
            prop_assert!(len > 0 && len <= buf.len());
        }
        Frame::Swallow {
            len, skip, discard, ..
        } => {
            prop_assert!(len > 0 && len <= buf.len());
            prop_assert!(skip > MAX_ITEM, "only oversized blocks are swallowed");
            if let Some(key) = discard {
                prop_assert!(valid_key(key));
            }
        }
    }
    Ok(())
}

fn check_request(req: &Request<'_>) -> Result<(), TestCaseError> {
    match req {
        Request::Store { key, data, .. } => {
            prop_assert!(valid_key(key));
            prop_assert!(data.len() <= MAX_ITEM);
        }
        Request::Get { keys, .. } => {
            for k in keys.iter() {
                prop_assert!(valid_key(k));
            }
        }
        Request::Delete { key, .. } | Request::Arith { key, .. } | Request::Touch { key, .. } => {
            prop_assert!(!key.is_empty() && key.len() <= MAX_KEY);
        }
        _ => {}
    }
    Ok(())
}

/// A key memcached accepts.
fn key() -> impl Strategy<Value = Vec<u8>> {
    // 0x21..=0xff without DEL, mapped rather than filtered (no rejects).
    let byte = (0x21u8..=0xfe).prop_map(|b| if b >= 0x7f { b + 1 } else { b });
    prop::collection::vec(byte, 1..=MAX_KEY)
}

/// A valid command: its bytes and the request `parse` must return.
#[derive(Debug, Clone)]
enum Cmd {
    Store {
        mode: StoreMode,
        key: Vec<u8>,
        flags: u32,
        exptime: i64,
        data: Vec<u8>,
        noreply: bool,
    },
    Get {
        keys: Vec<Vec<u8>>,
        cas: bool,
        touch: Option<i64>,
    },
    Delete {
        key: Vec<u8>,
        noreply: bool,
    },
    Arith {
        key: Vec<u8>,
        delta: u64,
        incr: bool,
        noreply: bool,
    },
    Touch {
        key: Vec<u8>,
        exptime: i64,
        noreply: bool,
    },
    Version,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    let mode = prop_oneof![
        Just(StoreMode::Set),
        Just(StoreMode::Add),
        Just(StoreMode::Replace),
        Just(StoreMode::Append),
        Just(StoreMode::Prepend),
        any::<u64>().prop_map(StoreMode::Cas),
    ];
    prop_oneof![
        (
            mode,
            key(),
            any::<u32>(),
            any::<i64>(),
            prop::collection::vec(any::<u8>(), 0..=MAX_ITEM),
            any::<bool>()
        )
            .prop_map(|(mode, key, flags, exptime, data, noreply)| Cmd::Store {
                mode,
                key,
                flags,
                exptime,
                data,
                noreply
            }),
        (
            prop::collection::vec(key(), 1..8),
            any::<bool>(),
            prop::option::of(any::<i64>())
        )
            .prop_map(|(keys, cas, touch)| Cmd::Get { keys, cas, touch }),
        (key(), any::<bool>()).prop_map(|(key, noreply)| Cmd::Delete { key, noreply }),
        (key(), any::<u64>(), any::<bool>(), any::<bool>()).prop_map(
            |(key, delta, incr, noreply)| Cmd::Arith {
                key,
                delta,
                incr,
                noreply
            }
        ),
        (key(), any::<i64>(), any::<bool>()).prop_map(|(key, exptime, noreply)| Cmd::Touch {
            key,
            exptime,
            noreply
        }),
        Just(Cmd::Version),
    ]
}

fn encode(c: &Cmd) -> Vec<u8> {
    let nr = |noreply: bool| if noreply { &b" noreply"[..] } else { b"" };
    match c {
        Cmd::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            noreply,
        } => {
            let (word, cas) = match mode {
                StoreMode::Set => ("set", None),
                StoreMode::Add => ("add", None),
                StoreMode::Replace => ("replace", None),
                StoreMode::Append => ("append", None),
                StoreMode::Prepend => ("prepend", None),
                StoreMode::Cas(v) => ("cas", Some(*v)),
            };
            let cas = cas.map(|v| format!(" {v}")).unwrap_or_default();
            [
                format!("{word} ").as_bytes(),
                key,
                format!(" {flags} {exptime} {}{cas}", data.len()).as_bytes(),
                nr(*noreply),
                b"\r\n",
                data,
                b"\r\n",
            ]
            .concat()
        }
        Cmd::Get { keys, cas, touch } => {
            let word = match (cas, touch) {
                (false, None) => "get".to_owned(),
                (true, None) => "gets".to_owned(),
                (false, Some(t)) => format!("gat {t}"),
                (true, Some(t)) => format!("gats {t}"),
            };
            [word.as_bytes(), b" ", &keys.join(&b' '), b"\r\n"].concat()
        }
        Cmd::Delete { key, noreply } => [b"delete ", &key[..], nr(*noreply), b"\r\n"].concat(),
        Cmd::Arith {
            key,
            delta,
            incr,
            noreply,
        } => {
            let word: &[u8] = if *incr { b"incr " } else { b"decr " };
            [
                word,
                key,
                format!(" {delta}").as_bytes(),
                nr(*noreply),
                b"\r\n",
            ]
            .concat()
        }
        Cmd::Touch {
            key,
            exptime,
            noreply,
        } => [
            b"touch ",
            &key[..],
            format!(" {exptime}").as_bytes(),
            nr(*noreply),
            b"\r\n",
        ]
        .concat(),
        Cmd::Version => b"version\r\n".to_vec(),
    }
}

/// Whether `req` is what `c` describes.
fn matches(c: &Cmd, req: &Request<'_>) -> bool {
    match (c, req) {
        (
            Cmd::Store {
                mode,
                key,
                flags,
                exptime,
                data,
                noreply,
            },
            Request::Store {
                mode: m,
                key: k,
                flags: f,
                exptime: e,
                data: d,
                noreply: n,
            },
        ) => mode == m && key == k && flags == f && exptime == e && data == d && noreply == n,
        (
            Cmd::Get { keys, cas, touch },
            Request::Get {
                keys: k,
                cas: c,
                touch: t,
            },
        ) => k.iter().eq(keys.iter().map(|k| &k[..])) && cas == c && touch == t,
        (Cmd::Delete { key, noreply }, Request::Delete { key: k, noreply: n }) => {
            key == k && noreply == n
        }
        (
            Cmd::Arith {
                key,
                delta,
                incr,
                noreply,
            },
            Request::Arith {
                key: k,
                delta: d,
                incr: i,
                noreply: n,
            },
        ) => key == k && delta == d && incr == i && noreply == n,
        (
            Cmd::Touch {
                key,
                exptime,
                noreply,
            },
            Request::Touch {
                key: k,
                exptime: e,
                noreply: n,
            },
        ) => key == k && exptime == e && noreply == n,
        (Cmd::Version, Request::Version) => true,
        _ => false,
    }
}

/// Any byte but the two that split tokens/lines (mapped, not filtered).
fn not_separator(b: u8) -> u8 {
    match b {
        b' ' => b'_',
        b'\n' => 0x0b,
        b => b,
    }
}

proptest! {
    /// Arbitrary bytes: never a panic, never more consumed than buffered,
    /// `Incomplete` only when no complete frame is there.
    #[test]
    fn text_parse_total_on_arbitrary_bytes(buf in prop::collection::vec(any::<u8>(), 0..4096)) {
        check_frame(&buf)?;
    }

    #[test]
    fn text_parse_total_on_protocol_like_bytes(buf in protocol_bytes()) {
        check_frame(&buf)?;
        // The connection loop parses a buffer frame after frame.
        let mut rest = &buf[..];
        while let Frame::Request { len, .. } | Frame::Error { len, .. } | Frame::Swallow { len, .. } =
            text::parse(rest, MAX_ITEM)
        {
            rest = &rest[len..];
            check_frame(rest)?;
        }
    }

    /// Valid commands round-trip, are consumed exactly (whatever follows),
    /// and every proper prefix of one is `Incomplete`.
    #[test]
    fn valid_commands_round_trip(c in cmd(), tail in protocol_bytes(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&c);
        let mut buf = bytes.clone();
        buf.extend_from_slice(&tail);
        match text::parse(&buf, MAX_ITEM) {
            Frame::Request { req, len } => {
                prop_assert_eq!(len, bytes.len());
                prop_assert!(matches(&c, &req), "{:?} parsed as {:?}", c, req);
            }
            other => prop_assert!(false, "{:?} parsed as {:?}", c, other),
        }
        let prefix = &bytes[..cut.index(bytes.len())];
        prop_assert!(
            matches!(text::parse(prefix, MAX_ITEM), Frame::Incomplete { .. }),
            "prefix {:?} of {:?}", String::from_utf8_lossy(prefix), c
        );
    }

    /// Key validation is exactly memcached's rule, and the parser applies it.
    #[test]
    fn key_validation(k in prop::collection::vec(any::<u8>().prop_map(not_separator), 1..300)) {
        let rule = k.len() <= MAX_KEY && k.iter().all(|&b| b > b' ' && b != 0x7f);
        prop_assert_eq!(valid_key(&k), rule);
        let set = [b"set ", &k[..], b" 0 0 1\r\nx\r\n"].concat();
        match text::parse(&set, MAX_ITEM) {
            Frame::Request { req: Request::Store { key, .. }, .. } => prop_assert!(rule && key == &k[..]),
            Frame::Error { msg, .. } => prop_assert!(!rule && msg == text::ERR_FORMAT, "{}", msg),
            // A trailing '\r' in the key merges into the line ending.
            other => prop_assert!(k.ends_with(b"\r"), "{:?}", other),
        }
    }

    /// The `--auth-file` gate's parser: total, bounded, exact on valid input.
    #[test]
    fn auth_parse_total(buf in prop_oneof![protocol_bytes(), prop::collection::vec(any::<u8>(), 0..5000)]) {
        match auth::parse(&buf) {
            AuthFrame::Incomplete { need } => {
                prop_assert!(need == 0 || need > buf.len());
                prop_assert!(need <= text::MAX_LINE + auth::MAX_TOKEN + 2);
            }
            AuthFrame::Reply { len, .. } | AuthFrame::Attempt { len, .. } => {
                prop_assert!(len > 0 && len <= buf.len());
            }
        }
    }

    #[test]
    fn auth_attempt_round_trip(user in "[!-~]{1,40}", pass in "[!-~]{1,40}", key in "[a-z]{1,10}") {
        let block = format!("{user} {pass}");
        let buf = format!("set {key} 0 0 {}\r\n{block}\r\n", block.len());
        prop_assert_eq!(
            auth::parse(buf.as_bytes()),
            AuthFrame::Attempt { user: user.as_bytes(), password: pass.as_bytes(), len: buf.len() }
        );
    }
}

// ==== Binary protocol (src/memcache/binary.rs) and meta commands
// (src/memcache/meta.rs): add their parser properties here, in the same
// shape: total on arbitrary bytes, consumed <= buffered, Incomplete only
// without a full frame, and a round trip of generated valid requests. ====
