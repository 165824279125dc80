//! The text protocol parser: a pure function from buffered bytes to one
//! request frame, so it can be unit tested and fuzzed without a socket.
//!
//! It follows memcached 1.6 (doc/protocol.txt and, where that is silent,
//! what memcached 1.6.18 answers): tokens are separated by spaces only, a
//! line ends in `\n` with an optional `\r`, wrong token counts are `ERROR`,
//! and errors after a `noreply` token are not sent.

use memchr::memchr;

use crate::kv::StoreMode;
use crate::memcache::frame::{next_token, ERROR, ERR_CHUNK, ERR_FORMAT, ERR_TOO_LARGE, MAX_LINE};
use crate::memcache::meta::parse::{MetaLine, MetaRequest};
use crate::rules::{parse_i64, parse_u64, valid_key, MAX_KEY};

/// `get`/`gets` key lists may be longer (memcached allows them); this bound
/// keeps a connection's memory finite.
pub const MAX_GET_LINE: usize = 1 << 20;
const MAX_TOKENS: usize = 8;
/// Largest data length memcached parses (`INT_MAX - 2`); longer is a bad
/// command line, not an object too large.
const MAX_DATA_LEN: usize = i32::MAX as usize - 2;

pub const ERR_DELETE_USAGE: &str =
    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
pub const ERR_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
pub const ERR_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";

/// One parsed request; slices borrow the connection's read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Store {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        data: &'a [u8],
        noreply: bool,
    },
    /// `get`/`gets` (`cas` = gets) and `gat`/`gats` (`touch` = Some(exptime)).
    Get {
        keys: Keys<'a>,
        cas: bool,
        touch: Option<i64>,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        key: &'a [u8],
        delta: u64,
        incr: bool,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Stats {
        args: &'a [u8],
    },
    Version,
    Verbosity {
        level: u64,
        noreply: bool,
    },
    /// `slabs ...` and `lru_crawler ...` (see [`super::operator`]).
    Operator(super::operator::Op),
    Quit,
    /// `shutdown [graceful]`; any other argument is an invalid mode.
    Shutdown {
        valid_mode: bool,
    },
    MetaNoop,
    /// `cache_memlimit <megabytes>`.
    MemLimit {
        megabytes: u64,
        noreply: bool,
    },
    /// `mg ms md ma me` (parsed by [`crate::memcache::meta::parse`]).
    Meta(Box<MetaRequest<'a>>),
}

/// The space-separated key list of a retrieval command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a>(&'a [u8]);

impl<'a> Keys<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> {
        self.0.split(|&b| b == b' ').filter(|k| !k.is_empty())
    }
}

/// A text-protocol frame: what the connection should do next.
pub type Frame<'a> = crate::memcache::frame::Frame<'a, Request<'a>>;

/// Parses the first frame in `buf`.
pub fn parse(buf: &[u8], max_item_size: usize) -> Frame<'_> {
    let Some(nl) = memchr(b'\n', buf) else {
        return incomplete_line(buf);
    };
    let line_len = nl + 1;
    let mut line = &buf[..nl];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    if let Some(frame) = crate::memcache::meta::parse::parse(line, buf, line_len, max_item_size) {
        return frame.map(|m| match m {
            MetaLine::Noop => Request::MetaNoop,
            MetaLine::Request(r) => Request::Meta(r),
        });
    }
    let mut tokens: [&[u8]; MAX_TOKENS] = [b""; MAX_TOKENS];
    let mut n = 0;
    let mut rest = line;
    // Split off the command word first; retrieval commands take the rest raw.
    while let Some(tok) = next_token(&mut rest) {
        if n == MAX_TOKENS {
            n += 1;
            break;
        }
        tokens[n] = tok;
        n += 1;
        if n == 1 && matches!(tok, b"get" | b"gets") {
            return retrieval(rest, tok == b"gets", None, line_len);
        }
        if n == 2 && matches!(tokens[0], b"gat" | b"gats") {
            let Some(exptime) = parse_i64(tok) else {
                return error(ERR_EXPTIME, false, line_len);
            };
            return retrieval(rest, tokens[0] == b"gats", Some(exptime), line_len);
        }
    }
    let toks = &tokens[..n.min(MAX_TOKENS)];
    if n > MAX_TOKENS {
        return error(ERROR, false, line_len);
    }
    let noreply = n > 1 && toks[n - 1] == b"noreply";
    let req = match toks {
        [] => return error(ERROR, false, line_len),
        [cmd, ..] => match *cmd {
            b"set" => return storage(StoreMode::Set, toks, buf, line_len, max_item_size),
            b"add" => return storage(StoreMode::Add, toks, buf, line_len, max_item_size),
            b"replace" => return storage(StoreMode::Replace, toks, buf, line_len, max_item_size),
            b"append" => return storage(StoreMode::Append, toks, buf, line_len, max_item_size),
            b"prepend" => return storage(StoreMode::Prepend, toks, buf, line_len, max_item_size),
            b"cas" => return storage(StoreMode::Cas(0), toks, buf, line_len, max_item_size),
            b"gat" | b"gats" => return error(ERROR, false, line_len),
            b"delete" => match delete(toks, noreply) {
                Ok(req) => req,
                Err(msg) => return error(msg, noreply, line_len),
            },
            b"incr" | b"decr" if n == 3 || n == 4 => {
                if toks[1].len() > MAX_KEY {
                    return error(ERR_FORMAT, noreply, line_len);
                }
                let Some(delta) = parse_u64(toks[2]) else {
                    return error(ERR_DELTA, noreply, line_len);
                };
                Request::Arith {
                    key: toks[1],
                    delta,
                    incr: *cmd == b"incr",
                    noreply,
                }
            }
            b"touch" if n == 3 || n == 4 => {
                if toks[1].len() > MAX_KEY {
                    return error(ERR_FORMAT, noreply, line_len);
                }
                let Some(exptime) = parse_i64(toks[2]) else {
                    return error(ERR_EXPTIME, noreply, line_len);
                };
                Request::Touch {
                    key: toks[1],
                    exptime,
                    noreply,
                }
            }
            // Like memcached: a delay is expected unless the only argument
            // is a final `noreply`.
            b"flush_all" if n <= 3 => {
                let delay = if n == 1 || (n == 2 && noreply) {
                    0
                } else {
                    match parse_i64(toks[1]) {
                        Some(d) => d,
                        None => return error(ERR_EXPTIME, noreply, line_len),
                    }
                };
                Request::FlushAll { delay, noreply }
            }
            b"version" => Request::Version,
            // memcached reads the level and ignores a second argument.
            b"verbosity" if n == 2 || n == 3 => match parse_u64(toks[1]) {
                Some(level) if level <= u32::MAX as u64 => Request::Verbosity { level, noreply },
                _ => return error(ERR_FORMAT, noreply, line_len),
            },
            b"slabs" => match super::operator::slabs(toks) {
                Ok(op) => Request::Operator(op),
                Err((msg, noreply)) => return error(msg, noreply, line_len),
            },
            b"lru_crawler" => match super::operator::lru_crawler(toks) {
                Ok(op) => Request::Operator(op),
                Err(msg) => return error(msg, false, line_len),
            },
            b"quit" => Request::Quit,
            b"stats" => Request::Stats {
                args: trim(line.get(5..).unwrap_or(b"")),
            },
            b"shutdown" => Request::Shutdown {
                valid_mode: n == 1 || (n == 2 && toks[1] == b"graceful"),
            },
            b"mn" => Request::MetaNoop,
            b"cache_memlimit" if n == 2 || n == 3 => match parse_u64(toks[1]) {
                Some(megabytes) => Request::MemLimit { megabytes, noreply },
                None => return error(ERROR, false, line_len),
            },
            // memcached closes on an HTTP request line, so a browser
            // tricked into posting here cannot drive the protocol.
            _ if toks[n - 1].starts_with(b"HTTP/") => return Frame::Close,
            _ => return error(ERROR, false, line_len),
        },
    };
    Frame::Request { req, len: line_len }
}

fn incomplete_line(buf: &[u8]) -> Frame<'_> {
    if buf.len() <= MAX_LINE {
        return Frame::Incomplete { need: 0 };
    }
    let start = buf.iter().position(|&b| b != b' ').unwrap_or(buf.len());
    let is_get = buf[start..].starts_with(b"get ") || buf[start..].starts_with(b"gets ");
    if is_get && start <= 100 && buf.len() <= MAX_GET_LINE {
        Frame::Incomplete { need: 0 }
    } else {
        Frame::Close
    }
}

fn retrieval(rest: &[u8], cas: bool, touch: Option<i64>, len: usize) -> Frame<'_> {
    let keys = Keys(rest);
    if touch.is_none() && keys.iter().next().is_none() {
        return error(ERROR, false, len);
    }
    if keys.iter().any(|k| !valid_key(k)) {
        return error(ERR_FORMAT, false, len);
    }
    Frame::Request {
        req: Request::Get { keys, cas, touch },
        len,
    }
}

fn storage<'a>(
    mode: StoreMode,
    toks: &[&'a [u8]],
    buf: &'a [u8],
    line_len: usize,
    max_item_size: usize,
) -> Frame<'a> {
    let is_cas = matches!(mode, StoreMode::Cas(_));
    let base = if is_cas { 6 } else { 5 };
    if toks.len() != base && toks.len() != base + 1 {
        return error(ERROR, false, line_len);
    }
    let noreply = toks.len() == base + 1 && toks[base] == b"noreply";
    let key = toks[1];
    if !valid_key(key) {
        return error(ERR_FORMAT, noreply, line_len);
    }
    let (Some(flags), Some(exptime), Some(vlen)) = (
        parse_u64(toks[2]).and_then(|f| u32::try_from(f).ok()),
        parse_i64(toks[3]),
        parse_i64(toks[4]),
    ) else {
        return error(ERR_FORMAT, noreply, line_len);
    };
    let mode = if is_cas {
        match parse_u64(toks[5]) {
            Some(cas) => StoreMode::Cas(cas),
            None => return error(ERR_FORMAT, noreply, line_len),
        }
    } else {
        mode
    };
    // memcached's length is an int32 that must leave room for "\r\n".
    let Ok(vlen) = usize::try_from(vlen) else {
        return error(ERR_FORMAT, noreply, line_len);
    };
    if vlen > MAX_DATA_LEN {
        return error(ERR_FORMAT, noreply, line_len);
    }
    if vlen > max_item_size {
        return Frame::Swallow {
            msg: ERR_TOO_LARGE,
            noreply,
            len: line_len,
            skip: vlen.saturating_add(2),
            discard: (mode == StoreMode::Set).then_some(key),
        };
    }
    let total = line_len + vlen + 2;
    if buf.len() < total {
        return Frame::Incomplete { need: total };
    }
    if &buf[line_len + vlen..total] != b"\r\n" {
        return error(ERR_CHUNK, noreply, total);
    }
    Frame::Request {
        req: Request::Store {
            mode,
            key,
            flags,
            exptime,
            data: &buf[line_len..line_len + vlen],
            noreply,
        },
        len: total,
    }
}

fn delete<'a>(toks: &[&'a [u8]], noreply: bool) -> Result<Request<'a>, &'static str> {
    let n = toks.len();
    let hold_is_zero = n > 2 && toks[2] == b"0";
    if n > 4 {
        return Err(ERROR);
    }
    let valid =
        n == 2 || (n == 3 && (hold_is_zero || noreply)) || (n == 4 && hold_is_zero && noreply);
    if !valid {
        return Err(if n < 2 { ERROR } else { ERR_DELETE_USAGE });
    }
    if toks[1].len() > MAX_KEY {
        return Err(ERR_FORMAT);
    }
    Ok(Request::Delete {
        key: toks[1],
        noreply,
    })
}

fn error(msg: &'static str, noreply: bool, len: usize) -> Frame<'static> {
    Frame::Error { msg, noreply, len }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(buf: &[u8]) -> Request<'_> {
        match parse(buf, 1024) {
            Frame::Request { req, len } => {
                assert_eq!(len, buf.len(), "consumed the whole frame");
                req
            }
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn err(buf: &[u8]) -> &'static str {
        match parse(buf, 1024) {
            Frame::Error { msg, .. } => msg,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn parses_storage_commands_with_data() {
        assert_eq!(
            req(b"set k 5 -1 3 noreply\r\nabc\r\n"),
            Request::Store {
                mode: StoreMode::Set,
                key: b"k",
                flags: 5,
                exptime: -1,
                data: b"abc",
                noreply: true
            }
        );
        assert!(matches!(
            req(b"cas k 0 0 1 99\r\nx\r\n"),
            Request::Store {
                mode: StoreMode::Cas(99),
                ..
            }
        ));
        assert!(matches!(
            req(b"append k 0 0 0\n\r\n"),
            Request::Store { data: b"", .. }
        ));
    }

    #[test]
    fn waits_for_split_lines_and_data() {
        assert_eq!(parse(b"set k 0 0", 1024), Frame::Incomplete { need: 0 });
        assert_eq!(
            parse(b"set k 0 0 5\r\nab", 1024),
            Frame::Incomplete { need: 20 }
        );
        assert_eq!(
            parse(b"set k 0 0 5\r\nabcde\r", 1024),
            Frame::Incomplete { need: 20 }
        );
    }

    #[test]
    fn rejects_bad_input_like_memcached() {
        assert_eq!(err(b"set k 0 0 3\r\nabcde\r\n"), ERR_CHUNK);
        assert_eq!(err(b"set k 0 0 -1\r\n"), ERR_FORMAT);
        assert_eq!(err(b"set k x 0 1\r\n"), ERR_FORMAT);
        assert_eq!(err(b"set k 0 0\r\n"), ERROR);
        assert_eq!(err(b"cas k 0 0 1 abc\r\n"), ERR_FORMAT);
        assert_eq!(
            err(&[b"get ", &[b'k'; 251][..], b"\r\n"].concat()),
            ERR_FORMAT
        );
        assert_eq!(err(b"get a\x01b\r\n"), ERR_FORMAT);
        assert_eq!(err(b"incr k -1\r\n"), ERR_DELTA);
        assert_eq!(err(b"incr k 18446744073709551616\r\n"), ERR_DELTA);
        assert_eq!(err(b"touch k abc\r\n"), ERR_EXPTIME);
        assert_eq!(err(b"gat abc k\r\n"), ERR_EXPTIME);
        assert_eq!(err(b"delete k 1\r\n"), ERR_DELETE_USAGE);
        assert_eq!(err(b"GET k\r\n"), ERROR);
        assert_eq!(err(b"\r\n"), ERROR);
        assert_eq!(err(b"get\r\n"), ERROR);
        assert_eq!(err(b"verbosity x\r\n"), ERR_FORMAT);
        assert_eq!(err(b"flush_all abc\r\n"), ERR_EXPTIME);
        assert_eq!(err(b"incr k +-1\r\n"), ERR_DELTA);
        assert_eq!(err(b"touch k -+1\r\n"), ERR_EXPTIME);
    }

    #[test]
    fn numbers_and_arguments_read_like_memcached() {
        // strtoull/strtol accept a leading '+'.
        assert!(matches!(
            req(b"incr k +5\r\n"),
            Request::Arith { delta: 5, .. }
        ));
        assert!(matches!(
            req(b"touch k +5\r\n"),
            Request::Touch { exptime: 5, .. }
        ));
        assert!(matches!(
            req(b"set k +1 +2 +1\r\nx\r\n"),
            Request::Store {
                flags: 1,
                exptime: 2,
                ..
            }
        ));
        assert_eq!(parse_i64(b"-7"), Some(-7));
        assert_eq!(parse_u64(b"+"), None);
        // A second verbosity argument is ignored, as memcached does.
        assert_eq!(
            req(b"verbosity 1 2\r\n"),
            Request::Verbosity {
                level: 1,
                noreply: false
            }
        );
        assert_eq!(
            req(b"verbosity 1 noreply\r\n"),
            Request::Verbosity {
                level: 1,
                noreply: true
            }
        );
        // strtoull skips leading and stops at trailing whitespace (a stray
        // '\r' or tab inside a token), and takes leading zeros.
        assert!(matches!(
            req(b"incr k 1\r\r\n"),
            Request::Arith { delta: 1, .. }
        ));
        assert!(matches!(
            req(b"incr k \t7\tx\r\n"),
            Request::Arith { delta: 7, .. }
        ));
        assert!(matches!(
            req(b"touch k 0000000000000000000000010\r\n"),
            Request::Touch { exptime: 10, .. }
        ));
        assert_eq!(parse_u64(b"1x"), None);
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-0"), None);
        // flush_all: only a lone final noreply stands in for the delay.
        assert_eq!(err(b"flush_all noreply extra\r\n"), ERR_EXPTIME);
        assert!(matches!(
            req(b"flush_all 5 noreply\r\n"),
            Request::FlushAll {
                delay: 5,
                noreply: true
            }
        ));
        assert_eq!(
            req(b"shutdown graceful\r\n"),
            Request::Shutdown { valid_mode: true }
        );
        assert_eq!(
            req(b"shutdown now\r\n"),
            Request::Shutdown { valid_mode: false }
        );
        assert_eq!(err(b"delete k 0 0 0\r\n"), ERROR);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", 1024), Frame::Close);
    }

    #[test]
    fn oversized_values_are_swallowed() {
        assert_eq!(
            parse(b"set k 0 0 2000\r\n", 1024),
            Frame::Swallow {
                msg: ERR_TOO_LARGE,
                noreply: false,
                len: 16,
                skip: 2002,
                discard: Some(b"k")
            }
        );
    }

    #[test]
    fn data_lengths_beyond_int32_are_bad_command_lines() {
        assert_eq!(err(b"set k 0 0 2147483646\r\n"), ERR_FORMAT);
        assert_eq!(err(b"set k 0 0 99999999999\r\n"), ERR_FORMAT);
        assert!(matches!(
            parse(b"set k 0 0 2147483645\r\n", 1024),
            Frame::Swallow {
                skip: 2147483647,
                ..
            }
        ));
    }

    #[test]
    fn long_lines_close_unless_get() {
        assert_eq!(parse(&[b'x'; 3000], 1024), Frame::Close);
        let mut get = b"get ".to_vec();
        get.extend(std::iter::repeat_n(b"k ", 2000).flatten());
        assert_eq!(parse(&get, 1024), Frame::Incomplete { need: 0 });
    }

    #[test]
    fn retrieval_keys_and_misc() {
        let Request::Get {
            keys,
            cas: true,
            touch: None,
        } = req(b"gets  a  b\n")
        else {
            panic!()
        };
        assert_eq!(keys.iter().collect::<Vec<_>>(), [b"a", b"b"]);
        assert!(matches!(
            req(b"gat 10 a\r\n"),
            Request::Get {
                touch: Some(10),
                cas: false,
                ..
            }
        ));
        assert!(matches!(
            req(b"delete k 0 noreply\r\n"),
            Request::Delete { noreply: true, .. }
        ));
        assert!(matches!(
            req(b"flush_all 10\r\n"),
            Request::FlushAll {
                delay: 10,
                noreply: false
            }
        ));
        assert!(matches!(
            req(b"flush_all noreply\r\n"),
            Request::FlushAll {
                delay: 0,
                noreply: true
            }
        ));
        assert_eq!(
            req(b"stats  settings \r\n"),
            Request::Stats { args: b"settings" }
        );
    }
}
