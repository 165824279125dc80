//! What the text and meta parsers share: the frame a parse yields, the one
//! tokenizer, and the error replies both send. Kept apart from both parsers
//! so that the text parser can hand meta lines to the meta parser without
//! the two importing each other.

use memchr::memchr;

/// Longest command line memcached accepts without a newline.
pub const MAX_LINE: usize = 2048;

pub const ERR_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const ERR_CHUNK: &str = "CLIENT_ERROR bad data chunk";
pub const ERR_TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
pub const ERROR: &str = "ERROR";

/// What the connection should do next; `R` is the protocol's request.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a, R> {
    /// More bytes are needed; `need` is the total buffered length that
    /// would complete the frame when known (0 when not).
    Incomplete { need: usize },
    /// Close without replying (memcached does this for an over-long line).
    Close,
    /// A request that consumed `len` bytes.
    Request { req: R, len: usize },
    /// Reply `msg` (unless `noreply`) having consumed `len` bytes.
    Error {
        msg: &'static str,
        noreply: bool,
        len: usize,
    },
    /// A storage command refused for its size: reply `msg`, consume `len`
    /// bytes, then discard the next `skip` bytes (its data block) as they
    /// arrive, and drop `discard`'s old value, as memcached does for `set`.
    Swallow {
        msg: &'static str,
        noreply: bool,
        len: usize,
        skip: usize,
        discard: Option<&'a [u8]>,
    },
}

impl<'a, R> Frame<'a, R> {
    /// The same frame with its request turned into another type (the text
    /// parser wraps meta requests this way).
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Frame<'a, S> {
        match self {
            Frame::Incomplete { need } => Frame::Incomplete { need },
            Frame::Close => Frame::Close,
            Frame::Request { req, len } => Frame::Request { req: f(req), len },
            Frame::Error { msg, noreply, len } => Frame::Error { msg, noreply, len },
            Frame::Swallow {
                msg,
                noreply,
                len,
                skip,
                discard,
            } => Frame::Swallow {
                msg,
                noreply,
                len,
                skip,
                discard,
            },
        }
    }
}

/// The one tokenizer of the text and meta parsers: space-separated.
pub fn next_token<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let start = rest.iter().position(|&b| b != b' ')?;
    let s = &rest[start..];
    let end = memchr(b' ', s).unwrap_or(s.len());
    *rest = &s[end..];
    Some(&s[..end])
}
