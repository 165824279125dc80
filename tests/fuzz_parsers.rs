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

use base64::Engine;
use memcached_lite::http::key as http_key;
use memcached_lite::kv::StoreMode;
use memcached_lite::memcache::auth::{self, AuthFrame};
use memcached_lite::memcache::binary::parse as binary;
use memcached_lite::memcache::frame;
use memcached_lite::memcache::meta::parse::MetaCmd;
use memcached_lite::memcache::text::parse::{self as text, Frame, Request, MAX_GET_LINE};
use memcached_lite::rules::{valid_key, MAX_KEY};
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
                need <= frame::MAX_LINE + MAX_ITEM + 2,
                "need {need} beyond one item"
            );
        }
        Frame::Close => prop_assert!(buf.len() > frame::MAX_LINE || buf.contains(&b'\n')),
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
            Frame::Error { msg, .. } => prop_assert!(!rule && msg == frame::ERR_FORMAT, "{}", msg),
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
                prop_assert!(need <= frame::MAX_LINE + auth::MAX_TOKEN + 2);
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
// (src/memcache/meta.rs): total on arbitrary bytes, consumed <= buffered,
// Incomplete only without a full frame, and a round trip of generated
// valid requests. ====

/// Walks `buf` packet by packet as the binary connection loop does.
fn check_binary(buf: &[u8]) -> Result<(), TestCaseError> {
    let mut rest = buf;
    loop {
        match binary::parse(rest, MAX_ITEM) {
            binary::Frame::Incomplete { need } => {
                prop_assert!(need > rest.len() && need >= binary::HEADER_LEN);
                return Ok(());
            }
            binary::Frame::Close => {
                prop_assert!(rest[0] != binary::REQUEST_MAGIC);
                return Ok(());
            }
            binary::Frame::Request { req, len } => {
                let h = req.header;
                prop_assert!(len <= rest.len());
                prop_assert_eq!(len, binary::HEADER_LEN + h.bodylen as usize);
                prop_assert_eq!(req.extras.len(), h.extlen as usize);
                prop_assert_eq!(req.key.len(), h.keylen as usize);
                prop_assert!(req.key.len() <= MAX_KEY);
                prop_assert_eq!(req.value.len(), h.value_len());
                rest = &rest[len..];
            }
            binary::Frame::Refuse {
                len,
                close,
                discard_key,
                ..
            } => {
                prop_assert!(len >= binary::HEADER_LEN && len <= rest.len());
                prop_assert!(discard_key.is_none_or(|k| !k.is_empty() && k.len() <= MAX_KEY));
                if close {
                    return Ok(());
                }
                rest = &rest[len..];
            }
        }
    }
}

/// Walks `buf` frame by frame through the text parser (which hands every
/// `m?` line to the meta parser), checking bounds and meta requests.
fn check_meta(buf: &[u8]) -> Result<(), TestCaseError> {
    let mut rest = buf;
    loop {
        match text::parse(rest, MAX_ITEM) {
            Frame::Incomplete { need } => {
                prop_assert!(need == 0 || need > rest.len());
                prop_assert!(need <= frame::MAX_LINE + MAX_ITEM + 2);
                return Ok(());
            }
            Frame::Close => return Ok(()),
            Frame::Request { req, len } => {
                prop_assert!(len > 0 && len <= rest.len());
                if let Request::Meta(m) = &req {
                    prop_assert!(!m.key.is_empty() && m.key.len() <= MAX_KEY);
                    prop_assert!(m.opts.base64 || valid_key(&m.key));
                    prop_assert!(m.data.len() <= MAX_ITEM);
                    prop_assert!(m.flags.iter().all(|f| !f.is_empty()));
                }
                check_request(&req)?;
                rest = &rest[len..];
            }
            Frame::Error { len, .. } | Frame::Swallow { len, .. } => {
                prop_assert!(len > 0 && len <= rest.len());
                rest = &rest[len..];
            }
        }
    }
}

/// A well-formed binary request: opcode, extras, key, value.
fn binary_request() -> impl Strategy<Value = (u8, Vec<u8>, Vec<u8>, Vec<u8>, u32, u64)> {
    use binary::op::*;
    let key = || prop::collection::vec(any::<u8>(), 1..=MAX_KEY);
    let value = || prop::collection::vec(any::<u8>(), 0..=MAX_ITEM);
    let shape = prop_oneof![
        (
            prop::sample::select(vec![GET, GETQ, GETK, GETKQ, DELETE, DELETEQ]),
            key()
        )
            .prop_map(|(op, k)| (op, vec![], k, vec![])),
        (
            prop::sample::select(vec![SET, SETQ, ADD, ADDQ, REPLACE, REPLACEQ]),
            prop::collection::vec(any::<u8>(), 8),
            key(),
            value()
        )
            .prop_map(|(op, e, k, v)| (op, e, k, v)),
        (
            prop::sample::select(vec![APPEND, APPENDQ, PREPEND, PREPENDQ]),
            key(),
            value()
        )
            .prop_map(|(op, k, v)| (op, vec![], k, v)),
        (
            prop::sample::select(vec![INCREMENT, INCREMENTQ, DECREMENT, DECREMENTQ]),
            prop::collection::vec(any::<u8>(), 20),
            key()
        )
            .prop_map(|(op, e, k)| (op, e, k, vec![])),
        (
            prop::sample::select(vec![TOUCH, GAT, GATQ, GATK, GATKQ]),
            prop::collection::vec(any::<u8>(), 4),
            key()
        )
            .prop_map(|(op, e, k)| (op, e, k, vec![])),
        prop::sample::select(vec![NOOP, VERSION, QUIT, QUITQ, FLUSH, FLUSHQ]).prop_map(|op| (
            op,
            vec![],
            vec![],
            vec![]
        )),
        (
            prop::sample::select(vec![FLUSH, FLUSHQ]),
            prop::collection::vec(any::<u8>(), 4)
        )
            .prop_map(|(op, e)| (op, e, vec![], vec![])),
        prop::collection::vec(any::<u8>(), 0..=MAX_KEY).prop_map(|k| (STAT, vec![], k, vec![])),
    ];
    (shape, any::<u32>(), any::<u64>())
        .prop_map(|((op, e, k, v), opaque, cas)| (op, e, k, v, opaque, cas))
}

fn binary_packet(
    op: u8,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
    opaque: u32,
    cas: u64,
) -> Vec<u8> {
    let body = (extras.len() + key.len() + value.len()) as u32;
    let mut p = vec![binary::REQUEST_MAGIC, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    p.extend_from_slice(&body.to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// Meta lines: the six commands, keys (plain and base64), flags with and
/// without arguments (valid, repeated, unknown, out of range), lengths.
fn meta_bytes() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        prop::sample::select(vec!["mg", "ms", "md", "ma", "me", "mn", "mz"])
            .prop_map(|w| w.as_bytes().to_vec()),
        prop::sample::select(vec![
            "v",
            "k",
            "c",
            "f",
            "s",
            "t",
            "h",
            "l",
            "q",
            "u",
            "I",
            "b",
            "O123",
            "Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "T0",
            "T-1",
            "T2147483648",
            "N30",
            "R5",
            "F4294967295",
            "F4294967296",
            "C0",
            "E18446744073709551615",
            "MS",
            "ME",
            "MA",
            "MP",
            "MR",
            "MI",
            "MD",
            "M+",
            "M-",
            "Mx",
            "MSS",
            "D5",
            "J10",
            "D-1",
            "Jx",
            "P",
            "L",
            "Zx",
            "a2V5",
            "=====",
            "0",
            "5",
            "1025",
            "-1",
            "2147483646",
        ])
        .prop_map(|w| w.as_bytes().to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        "[a-z0-9]{1,8}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop::collection::vec(word, 0..24).prop_map(|parts| parts.join(&b' '))
}

/// A valid meta request line (and data block) with the flags it should
/// parse to: (bytes, command, key, T ttl, F flags, C cas, q, data).
#[allow(clippy::type_complexity)]
fn meta_request() -> impl Strategy<
    Value = (
        Vec<u8>,
        MetaCmd,
        Vec<u8>,
        Option<i64>,
        u32,
        Option<u64>,
        bool,
        Vec<u8>,
    ),
> {
    (
        prop::sample::select(vec![
            MetaCmd::Get,
            MetaCmd::Set,
            MetaCmd::Delete,
            MetaCmd::Arith,
        ]),
        key(),
        any::<bool>(),
        prop::option::of(-1000i64..100_000),
        any::<u32>(),
        prop::option::of(any::<u64>()),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..=MAX_ITEM),
    )
        .prop_map(|(cmd, key, b64, ttl, flags, cas, quiet, data)| {
            let name = match cmd {
                MetaCmd::Get => "mg",
                MetaCmd::Set => "ms",
                MetaCmd::Delete => "md",
                _ => "ma",
            };
            // memcached bounds the key token itself, base64 or not.
            let b64 = b64 && key.len() <= MAX_KEY / 4 * 3;
            let token = if b64 {
                base64::engine::general_purpose::STANDARD
                    .encode(&key)
                    .into_bytes()
            } else {
                key.clone()
            };
            let mut line = [name.as_bytes(), b" ", &token].concat();
            if cmd == MetaCmd::Set {
                line.extend_from_slice(format!(" {}", data.len()).as_bytes());
            }
            if b64 {
                line.extend_from_slice(b" b");
            }
            if let Some(t) = ttl {
                line.extend_from_slice(format!(" T{t}").as_bytes());
            }
            let set_flags = cmd == MetaCmd::Set;
            if set_flags {
                line.extend_from_slice(format!(" F{flags}").as_bytes());
            }
            if let Some(c) = cas {
                line.extend_from_slice(format!(" C{c}").as_bytes());
            }
            if quiet {
                line.extend_from_slice(b" q");
            }
            line.extend_from_slice(b" O42\r\n");
            let data = if set_flags { data } else { Vec::new() };
            if set_flags {
                line.extend_from_slice(&data);
                line.extend_from_slice(b"\r\n");
            }
            (
                line,
                cmd,
                key,
                ttl,
                if set_flags { flags } else { 0 },
                cas,
                quiet,
                data,
            )
        })
}

/// Percent-encodes any byte (so the segment is plain ASCII).
fn escape_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

proptest! {
    #[test]
    fn binary_parse_total_on_arbitrary_bytes(buf in prop::collection::vec(any::<u8>(), 0..4096)) {
        check_binary(&buf)?;
        check_binary(&[&[binary::REQUEST_MAGIC][..], &buf].concat())?;
    }

    /// Packets glued together, some of them lying about their lengths.
    #[test]
    fn binary_parse_total_on_packet_like_bytes(
        packets in prop::collection::vec((binary_request(), any::<u8>(), any::<u32>(), any::<bool>()), 1..6)
    ) {
        let mut buf = Vec::new();
        for ((op, e, k, v, opaque, cas), bad_ext, bad_body, lie) in packets {
            let mut p = binary_packet(op, &e, &k, &v, opaque, cas);
            if lie {
                p[4] = bad_ext;
                p[8..12].copy_from_slice(&bad_body.to_be_bytes());
            }
            buf.extend_from_slice(&p);
        }
        check_binary(&buf)?;
    }

    /// Valid packets parse to exactly their fields, are consumed exactly
    /// (whatever follows), and every proper prefix is Incomplete.
    #[test]
    fn binary_requests_round_trip(
        (op, extras, key, value, opaque, cas) in binary_request(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
        cut in any::<prop::sample::Index>(),
    ) {
        let packet = binary_packet(op, &extras, &key, &value, opaque, cas);
        let buf = [&packet[..], &tail].concat();
        match binary::parse(&buf, MAX_ITEM) {
            binary::Frame::Request { req, len } => {
                prop_assert_eq!(len, packet.len());
                prop_assert_eq!(req.header.opcode, op);
                prop_assert_eq!(req.header.opaque, opaque);
                prop_assert_eq!(req.header.cas, cas);
                prop_assert_eq!(req.extras, &extras[..]);
                prop_assert_eq!(req.key, &key[..]);
                prop_assert_eq!(req.value, &value[..]);
            }
            other => prop_assert!(false, "opcode {:#x} parsed as {:?}", op, other),
        }
        let prefix = &packet[..cut.index(packet.len())];
        let incomplete = matches!(binary::parse(prefix, MAX_ITEM), binary::Frame::Incomplete { .. });
        prop_assert!(incomplete, "prefix of {} bytes", prefix.len());
    }

    /// Values over the item limit are refused before their body arrives.
    #[test]
    fn binary_oversized_values_are_refused_unread(key in key(), extra in 1usize..1_000_000) {
        let header = binary_packet(binary::op::SET, &[0; 8], &key, &[], 0, 0);
        let mut p = header.clone();
        let body = (8 + key.len() + MAX_ITEM + extra) as u32;
        p[8..12].copy_from_slice(&body.to_be_bytes());
        match binary::parse(&p, MAX_ITEM) {
            binary::Frame::Refuse { status, len, skip, .. } => {
                prop_assert_eq!(status, binary::status::E2BIG);
                prop_assert_eq!(len, p.len());
                prop_assert_eq!(skip, MAX_ITEM + extra);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn meta_parse_total_on_meta_like_bytes(buf in meta_bytes()) {
        check_meta(&buf)?;
    }

    /// Valid meta requests parse to their key, flags and data, are consumed
    /// exactly, and every proper prefix is Incomplete.
    #[test]
    fn meta_requests_round_trip(
        (bytes, cmd, key, ttl, flags, cas, quiet, data) in meta_request(),
        tail in meta_bytes(),
        cut in any::<prop::sample::Index>(),
    ) {
        let buf = [&bytes[..], &tail].concat();
        match text::parse(&buf, MAX_ITEM) {
            Frame::Request { req: Request::Meta(m), len } => {
                prop_assert_eq!(len, bytes.len());
                prop_assert_eq!(m.cmd, cmd);
                prop_assert_eq!(&m.key[..], &key[..]);
                prop_assert_eq!(m.opts.ttl, ttl);
                prop_assert_eq!(m.opts.client_flags, flags);
                prop_assert_eq!(m.opts.cas, cas);
                prop_assert_eq!(m.opts.quiet, quiet);
                prop_assert_eq!(m.data, &data[..]);
                // The reply echoes the flags in order; O42 is the last.
                prop_assert_eq!(m.flags.iter().last(), Some(&b"O42"[..]));
            }
            other => prop_assert!(false, "{:?} parsed as {:?}", String::from_utf8_lossy(&bytes), other),
        }
        let prefix = &bytes[..cut.index(bytes.len())];
        let incomplete = matches!(text::parse(prefix, MAX_ITEM), Frame::Incomplete { .. });
        prop_assert!(incomplete, "prefix {:?}", String::from_utf8_lossy(prefix));
    }

    /// HTTP key decoding never panics, and whatever it accepts obeys
    /// memcached's key rule (the one the text protocol applies).
    #[test]
    fn http_key_decode_total(segment in prop_oneof![
        ".{0,300}",
        "([a-zA-Z0-9]|%[0-9a-fA-F]{2}|%.{0,2}){0,300}",
    ]) {
        if let Ok(key) = http_key::decode(&segment) {
            prop_assert!(valid_key(&key) && key.len() <= MAX_KEY);
            // Strict decoding agrees with the percent-encoding crate's
            // lenient one on every segment it accepts.
            let lenient: Vec<u8> = percent_encoding::percent_decode_str(&segment).collect();
            prop_assert_eq!(key, lenient);
        }
    }

    /// Any bytes: encoded (minimally or fully), they decode back exactly
    /// when they are a valid memcached key, and are refused otherwise.
    #[test]
    fn http_key_round_trip(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        let want = valid_key(&raw).then_some(&raw[..]);
        let minimal = http_key::decode(&http_key::encode(&raw)).ok();
        prop_assert_eq!(minimal.as_deref(), want);
        let full = http_key::decode(&escape_all(&raw)).ok();
        prop_assert_eq!(full.as_deref(), want);
    }
}
