//! The meta protocol parser (`mg ms md ma me mn`, memcached 1.6's
//! doc/protocol.txt "Meta Commands"): a pure function over one request
//! line (and, for `ms`, its data block), called by the text parser
//! for every two-letter command starting with `m`, and sharing its
//! tokenizer. Validation order and error texts are memcached 1.6.18's.

use std::borrow::Cow;

use base64::Engine;

use crate::memcache::frame::{next_token, ERROR, ERR_CHUNK, ERR_FORMAT, ERR_TOO_LARGE};
use crate::rules::{parse_i64, parse_u64, valid_key, MAX_KEY};

/// A meta-protocol frame.
pub type Frame<'a> = crate::memcache::frame::Frame<'a, MetaLine<'a>>;

/// A parsed meta line: `mn`, or one of `mg ms md ma me`.
#[derive(Debug, PartialEq, Eq)]
pub enum MetaLine<'a> {
    Noop,
    Request(Box<MetaRequest<'a>>),
}

/// memcached's MFLAG_MAX_OPT_LENGTH: at most this many tokens, counting
/// the command, the key and memcached's terminal token.
const MAX_OPT_TOKENS: usize = 20;
/// memcached's MFLAG_MAX_OPAQUE_LENGTH (the `O` included).
const MAX_OPAQUE: usize = 32;

pub const ERR_BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
pub const ERR_DUPLICATE: &str = "CLIENT_ERROR duplicate flag";
pub const ERR_INVALID_FLAG: &str = "CLIENT_ERROR invalid flag";
pub const ERR_INVALID_OR_DUPLICATE: &str = "CLIENT_ERROR invalid or duplicate flag";
pub const ERR_DECODE_KEY: &str = "CLIENT_ERROR error decoding key";
pub const ERR_OPAQUE: &str = "CLIENT_ERROR opaque token too long";
pub const ERR_M_LENGTH: &str = "CLIENT_ERROR incorrect length for M token";
pub const ERR_MS_MODE: &str = "CLIENT_ERROR invalid mode for ms M token";
pub const ERR_MA_MODE: &str = "CLIENT_ERROR invalid mode for ma M token";
pub const ERR_INITIAL: &str = "CLIENT_ERROR invalid numeric initial value";
pub const ERR_DELTA: &str = "CLIENT_ERROR invalid numeric delta value";

/// Which meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCmd {
    Get,
    Set,
    Delete,
    Arith,
    Debug,
}

/// The flags of a request in the order given: replies echo the return
/// flags in that order.
/// (The validated flag part of the line, re-tokenized on use: no copy.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags<'a>(&'a [u8]);

impl<'a> Flags<'a> {
    /// Each flag token: its first byte is the flag, the rest its argument.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || next_token(&mut rest))
    }
}

/// The numeric and boolean options carried by the flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaOpts {
    /// `b`: the key token is base64.
    pub base64: bool,
    /// `v`: return the value.
    pub value: bool,
    /// `q`: suppress the nominal reply (HD, or EN for mg).
    pub quiet: bool,
    /// `u`: don't record the access.
    pub no_update: bool,
    /// `I`: invalidate (md) / store an older CAS as stale (ms).
    pub invalidate: bool,
    /// `T<ttl>`
    pub ttl: Option<i64>,
    /// `N<ttl>`: vivify on miss.
    pub vivify: Option<i64>,
    /// `R<ttl>`: win the recache token below this TTL.
    pub recache: Option<i64>,
    /// `F<flags>`
    pub client_flags: u32,
    /// `C<cas>`: compare.
    pub cas: Option<u64>,
    /// `E<cas>`: the new item's CAS.
    pub new_cas: Option<u64>,
    /// `M<mode>`
    pub mode: Option<u8>,
    /// `D<delta>` (default 1)
    pub delta: u64,
    /// `J<initial>` (default 0)
    pub initial: u64,
}

/// One parsed meta request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest<'a> {
    pub cmd: MetaCmd,
    /// The key, base64-decoded when `b` was given.
    pub key: Cow<'a, [u8]>,
    pub flags: Flags<'a>,
    pub opts: MetaOpts,
    /// `ms`'s data block.
    pub data: &'a [u8],
}

/// Parses a meta command line, or returns `None` when the line's command
/// is not a two-letter `m` command (so the text parser handles it).
pub fn parse<'a>(
    line: &'a [u8],
    buf: &'a [u8],
    line_len: usize,
    max_item_size: usize,
) -> Option<Frame<'a>> {
    let mut rest = line;
    let cmd = next_token(&mut rest)?;
    if cmd.len() != 2 || cmd[0] != b'm' {
        return None;
    }
    let cmd = match cmd[1] {
        b'g' => MetaCmd::Get,
        b's' => MetaCmd::Set,
        b'd' => MetaCmd::Delete,
        b'a' => MetaCmd::Arith,
        b'e' => MetaCmd::Debug,
        b'n' => {
            return Some(Frame::Request {
                req: MetaLine::Noop,
                len: line_len,
            })
        }
        _ => return Some(error(ERROR, line_len)),
    };
    // Like memcached's tokenizer: a bounded number of tokens; more only
    // matter as "too many".
    let mut tokens: [&[u8]; MAX_OPT_TOKENS + 2] = [b""; MAX_OPT_TOKENS + 2];
    let mut n = 0;
    while let Some(tok) = next_token(&mut rest) {
        if n == tokens.len() {
            n += 1;
            break;
        }
        tokens[n] = tok;
        n += 1;
    }
    let toks = &tokens[..n.min(tokens.len())];
    // memcached counts the command and a terminal token too.
    let ntokens = n + 2;
    Some(match cmd {
        MetaCmd::Set => set(line, toks, ntokens, buf, line_len, max_item_size),
        MetaCmd::Debug => debug(toks, line_len),
        _ => other(cmd, line, toks, ntokens, line_len),
    })
}

fn error(msg: &'static str, len: usize) -> Frame<'static> {
    Frame::Error {
        msg,
        noreply: false,
        len,
    }
}

fn request(req: MetaRequest<'_>, len: usize) -> Frame<'_> {
    Frame::Request {
        req: MetaLine::Request(Box::new(req)),
        len,
    }
}

/// The part of `line` after the first `skip` tokens of `toks` (which
/// borrow from `line`): where the flags start.
fn flag_part<'a>(line: &'a [u8], toks: &[&'a [u8]], skip: usize) -> Flags<'a> {
    let Some(last) = toks.get(skip - 1) else {
        return Flags(b"");
    };
    let end = last.as_ptr() as usize + last.len() - line.as_ptr() as usize;
    Flags(&line[end..])
}

/// `mg`, `md`, `ma`.
fn other<'a>(
    cmd: MetaCmd,
    line: &'a [u8],
    toks: &[&'a [u8]],
    ntokens: usize,
    line_len: usize,
) -> Frame<'a> {
    let Some(&key) = toks.first() else {
        return error(ERROR, line_len);
    };
    if key.len() > MAX_KEY {
        return error(ERR_FORMAT, line_len);
    }
    if ntokens > MAX_OPT_TOKENS {
        let msg = if cmd == MetaCmd::Get {
            "CLIENT_ERROR options flags are too long"
        } else {
            "CLIENT_ERROR options flags too long"
        };
        return error(msg, line_len);
    }
    let (flags, opts, key) = match preparse(key, &toks[1..], flag_part(line, toks, 1)) {
        // md and ma report every flag problem the same way.
        Err(_) if cmd != MetaCmd::Get => return error(ERR_INVALID_OR_DUPLICATE, line_len),
        Err(msg) => return error(msg, line_len),
        Ok(parsed) => parsed,
    };
    if cmd == MetaCmd::Arith && !matches!(opts.mode, None | Some(b'I' | b'+' | b'D' | b'-')) {
        return error(ERR_MA_MODE, line_len);
    }
    request(
        MetaRequest {
            cmd,
            key,
            flags,
            opts,
            data: b"",
        },
        line_len,
    )
}

/// `ms <key> <datalen> <flags>*\r\n<data>\r\n`
fn set<'a>(
    line: &'a [u8],
    toks: &[&'a [u8]],
    ntokens: usize,
    buf: &'a [u8],
    line_len: usize,
    max_item_size: usize,
) -> Frame<'a> {
    let Some(&key) = toks.first() else {
        return error(ERROR, line_len);
    };
    if key.len() > MAX_KEY || toks.len() < 2 {
        return error(ERR_FORMAT, line_len);
    }
    if ntokens > MAX_OPT_TOKENS {
        return error("CLIENT_ERROR options flags too long", line_len);
    }
    let Some(vlen) = parse_i64(toks[1]).filter(|v| (0..=i32::MAX as i64 - 2).contains(v)) else {
        return error(ERR_FORMAT, line_len);
    };
    let vlen = vlen as usize;
    // From here on memcached knows the data length and swallows the block
    // after an error.
    let refuse = |msg: &'static str, discard: Option<&'a [u8]>| Frame::Swallow {
        msg,
        noreply: false,
        len: line_len,
        skip: vlen + 2,
        discard,
    };
    let (flags, opts, key) = match preparse(key, &toks[2..], flag_part(line, toks, 2)) {
        Ok(parsed) => parsed,
        Err(msg) => return refuse(msg, None),
    };
    if !matches!(opts.mode, None | Some(b'S' | b'E' | b'A' | b'P' | b'R')) {
        return refuse(ERR_MS_MODE, None);
    }
    if vlen > max_item_size {
        // memcached drops the old value so a failed set never leaves it readable.
        let discard = match key {
            Cow::Borrowed(k) => Some(k),
            Cow::Owned(_) => None,
        };
        return refuse(ERR_TOO_LARGE, discard);
    }
    let total = line_len + vlen + 2;
    if buf.len() < total {
        return Frame::Incomplete { need: total };
    }
    if &buf[line_len + vlen..total] != b"\r\n" {
        return error(ERR_CHUNK, total);
    }
    let data = &buf[line_len..line_len + vlen];
    request(
        MetaRequest {
            cmd: MetaCmd::Set,
            key,
            flags,
            opts,
            data,
        },
        total,
    )
}

/// `me <key> [b]`
fn debug<'a>(toks: &[&'a [u8]], line_len: usize) -> Frame<'a> {
    let Some(&key) = toks.first().filter(|k| k.len() <= MAX_KEY) else {
        return error(ERR_FORMAT, line_len);
    };
    let base64 = toks.get(1) == Some(&&b"b"[..]);
    let key = if base64 {
        match decode_key(key) {
            Some(k) => Cow::Owned(k),
            None => return error(ERR_DECODE_KEY, line_len),
        }
    } else if valid_key(key) {
        Cow::Borrowed(key)
    } else {
        return error(ERR_FORMAT, line_len);
    };
    let opts = MetaOpts {
        base64,
        ..MetaOpts::default()
    };
    let flags = Flags(b"");
    request(
        MetaRequest {
            cmd: MetaCmd::Debug,
            key,
            flags,
            opts,
            data: b"",
        },
        line_len,
    )
}

fn decode_key(token: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY)
}

/// memcached's `_meta_flag_preparse`: every flag is one known letter, at
/// most once. A bad argument is remembered (the last one wins) while an
/// unknown or repeated flag stops at once, as memcached does.
#[allow(clippy::type_complexity)]
fn preparse<'a>(
    key: &'a [u8],
    toks: &[&'a [u8]],
    flags: Flags<'a>,
) -> Result<(Flags<'a>, MetaOpts, Cow<'a, [u8]>), &'static str> {
    let mut opts = MetaOpts {
        delta: 1,
        ..MetaOpts::default()
    };
    let mut seen = [false; 128];
    let mut failed: Option<&'static str> = None;
    let mut key_out = Cow::Borrowed(key);
    for &tok in toks {
        let f = tok[0];
        if f >= 127 || seen[f as usize] {
            return Err(ERR_DUPLICATE);
        }
        seen[f as usize] = true;
        let arg = &tok[1..];
        let i32_arg = || parse_i64(arg).filter(|v| i32::try_from(*v).is_ok());
        match f {
            b'b' => match decode_key(key) {
                Some(k) => {
                    key_out = Cow::Owned(k);
                    opts.base64 = true;
                }
                None => failed = Some(ERR_DECODE_KEY),
            },
            b'N' | b'T' | b'R' => match i32_arg() {
                Some(v) => {
                    *match f {
                        b'N' => &mut opts.vivify,
                        b'T' => &mut opts.ttl,
                        _ => &mut opts.recache,
                    } = Some(v)
                }
                None => failed = Some(ERR_BAD_TOKEN),
            },
            b'O' if tok.len() > MAX_OPAQUE => failed = Some(ERR_OPAQUE),
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'h' | b'l' => {}
            b'v' => opts.value = true,
            b'u' => opts.no_update = true,
            b'q' => opts.quiet = true,
            b'I' => opts.invalidate = true,
            b'F' => match parse_u64(arg).and_then(|v| u32::try_from(v).ok()) {
                Some(v) => opts.client_flags = v,
                None => failed = Some(ERR_FORMAT),
            },
            b'C' | b'E' => match parse_u64(arg) {
                Some(v) if f == b'C' => opts.cas = Some(v),
                Some(v) => opts.new_cas = Some(v),
                None => failed = Some(ERR_BAD_TOKEN),
            },
            b'M' if arg.len() != 1 => failed = Some(ERR_M_LENGTH),
            b'M' => opts.mode = Some(arg[0]),
            b'J' => match parse_u64(arg) {
                Some(v) => opts.initial = v,
                None => failed = Some(ERR_INITIAL),
            },
            b'D' => match parse_u64(arg) {
                Some(v) => opts.delta = v,
                None => failed = Some(ERR_DELTA),
            },
            _ => return Err(ERR_INVALID_FLAG),
        }
    }
    if let Some(msg) = failed {
        return Err(msg);
    }
    if !opts.base64 && !valid_key(key) {
        return Err(ERR_FORMAT);
    }
    Ok((flags, opts, key_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first line of `buf` through the meta parser, as the text parser
    /// hands it over.
    fn frame(buf: &[u8], max_item_size: usize) -> Frame<'_> {
        let nl = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        parse(line, buf, nl + 1, max_item_size).expect("a meta command")
    }

    fn meta(buf: &[u8]) -> MetaRequest<'_> {
        match frame(buf, 1024) {
            Frame::Request {
                req: MetaLine::Request(m),
                len,
            } => {
                assert_eq!(len, buf.len());
                *m
            }
            other => panic!("expected a meta request, got {other:?}"),
        }
    }

    fn err(buf: &[u8]) -> &'static str {
        match frame(buf, 1024) {
            Frame::Error { msg, .. } | Frame::Swallow { msg, .. } => msg,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn parses_flags_in_order_with_arguments() {
        let m = meta(b"mg foo s v t f c k O123 h l T30 N10 R5 q u\r\n");
        assert_eq!(m.cmd, MetaCmd::Get);
        assert_eq!(&*m.key, b"foo");
        let order: Vec<u8> = m.flags.iter().map(|f| f[0]).collect();
        assert_eq!(order, b"svtfckOhlTNRqu");
        assert_eq!(
            (m.opts.ttl, m.opts.vivify, m.opts.recache),
            (Some(30), Some(10), Some(5))
        );
        assert!(m.opts.value && m.opts.quiet && m.opts.no_update);
        let m = meta(b"ms k 3 T-1 F7 C9 E10 I MA q\r\nabc\r\n");
        assert_eq!(
            (m.data, m.opts.client_flags, m.opts.cas, m.opts.new_cas),
            (&b"abc"[..], 7, Some(9), Some(10))
        );
        assert_eq!(
            (m.opts.ttl, m.opts.mode, m.opts.invalidate),
            (Some(-1), Some(b'A'), true)
        );
        let m = meta(b"ma n D5 J7 N0 MD\r\n");
        assert_eq!(
            (m.opts.delta, m.opts.initial, m.opts.mode),
            (5, 7, Some(b'D'))
        );
        assert_eq!(meta(b"ma n\r\n").opts.delta, 1);
        assert!(matches!(
            frame(b"mn\r\n", 1024),
            Frame::Request {
                req: MetaLine::Noop,
                ..
            }
        ));
    }

    #[test]
    fn base64_keys_decode() {
        let m = meta(b"mg Zm9v b k\r\n");
        assert_eq!((&*m.key, m.opts.base64), (&b"foo"[..], true));
        assert_eq!(&*meta(b"me AAE= b\r\n").key, &[0u8, 1][..]);
        assert_eq!(err(b"mg foo b\r\n"), ERR_DECODE_KEY);
        assert_eq!(err(b"mg Zm9v= b\r\n"), ERR_DECODE_KEY);
        assert_eq!(err(b"md !!!! b\r\n"), ERR_INVALID_OR_DUPLICATE);
    }

    #[test]
    fn errors_match_memcached() {
        assert_eq!(err(b"mg\r\n"), ERROR);
        assert_eq!(err(b"mx foo\r\n"), ERROR);
        assert_eq!(err(b"mg foo zz\r\n"), ERR_INVALID_FLAG);
        assert_eq!(err(b"mg foo v v\r\n"), ERR_DUPLICATE);
        assert_eq!(err(b"mg foo Tabc\r\n"), ERR_BAD_TOKEN);
        assert_eq!(err(b"mg foo T99999999999\r\n"), ERR_BAD_TOKEN);
        assert_eq!(
            err(&[b"mg ", &[b'k'; 251][..], b"\r\n"].concat()),
            ERR_FORMAT
        );
        assert_eq!(
            err(b"mg foo a b c d e f g h i j k l m n o p q r s\r\n"),
            "CLIENT_ERROR options flags are too long"
        );
        assert_eq!(err(b"md foo C1 C2\r\n"), ERR_INVALID_OR_DUPLICATE);
        assert_eq!(err(b"ma foo MX\r\n"), ERR_MA_MODE);
        assert_eq!(err(b"ma foo Dx\r\n"), ERR_INVALID_OR_DUPLICATE);
        assert_eq!(
            err(b"mg foo O123456789012345678901234567890123\r\n"),
            ERR_OPAQUE
        );
        assert_eq!(err(b"ms foo\r\n"), ERR_FORMAT);
        assert_eq!(err(b"ms foo abc\r\n"), ERR_FORMAT);
        assert_eq!(err(b"me\r\n"), ERR_FORMAT);
        assert_eq!(err(b"ms foo 2 Mb\r\nhi\r\n"), ERR_MS_MODE);
        assert_eq!(err(b"ms foo 2 MSS\r\nhi\r\n"), ERR_M_LENGTH);
        assert_eq!(err(b"ms foo 2 F-1\r\nhi\r\n"), ERR_FORMAT);
        assert_eq!(err(b"ms foo 2\r\nhiya\r\n"), ERR_CHUNK);
    }

    #[test]
    fn ms_errors_swallow_the_data_block() {
        assert_eq!(
            frame(b"ms foo 2 zz\r\nhi\r\n", 1024),
            Frame::Swallow {
                msg: ERR_INVALID_FLAG,
                noreply: false,
                len: 13,
                skip: 4,
                discard: None
            }
        );
        assert_eq!(
            frame(b"ms foo 2000 T0\r\n", 1024),
            Frame::Swallow {
                msg: ERR_TOO_LARGE,
                noreply: false,
                len: 16,
                skip: 2002,
                discard: Some(b"foo")
            }
        );
        assert_eq!(
            frame(b"ms foo 5 T0\r\nab", 1024),
            Frame::Incomplete { need: 20 }
        );
    }
}
