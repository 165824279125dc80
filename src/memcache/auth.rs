//! The text protocol's authentication step (memcached's `-Y` auth file):
//! until a client authenticates, the only command it may send is
//! `set <any> <flags> <exptime> <len>\r\n<user> <password>\r\n`.
//! Like the text parser, the parser is a pure function over bytes.
//!
//! Replies follow memcached 1.6.18's `try_read_command_asciiauth`; the one
//! deliberate difference is that a declared token longer than
//! [`MAX_TOKEN`] closes the connection instead of being read (memcached
//! reads whatever length it is told, before anyone has authenticated).

use memchr::memchr;

use super::frame::MAX_LINE;
use crate::rules::parse_u64;

pub const ERR_UNAUTHENTICATED: &str = "CLIENT_ERROR unauthenticated";
pub const ERR_FAILURE: &str = "CLIENT_ERROR authentication failure";
pub const ERR_TOKEN_FORMAT: &str = "CLIENT_ERROR bad authentication token format";
pub const ERR_TERMINATION: &str = "CLIENT_ERROR bad command line termination";
/// Longest `<user> <password>` block accepted.
pub const MAX_TOKEN: usize = 4096;

/// The next step of an unauthenticated connection.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthFrame<'a> {
    /// More bytes are needed (`need`: total length when known, else 0).
    Incomplete { need: usize },
    /// Reply `msg` after consuming `len` bytes; close afterwards if `close`.
    Reply {
        msg: &'static str,
        len: usize,
        close: bool,
    },
    /// Check these credentials; `len` bytes consumed.
    Attempt {
        user: &'a [u8],
        password: &'a [u8],
        len: usize,
    },
}

/// Parses the first frame of `buf` for a connection not yet authenticated.
pub fn parse(buf: &[u8]) -> AuthFrame<'_> {
    let Some(nl) = memchr(b'\n', buf) else {
        return if buf.len() > MAX_LINE {
            reply(ERR_UNAUTHENTICATED, buf.len(), true)
        } else {
            AuthFrame::Incomplete { need: 0 }
        };
    };
    let line_len = nl + 1;
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let toks: Vec<&[u8]> = tokens(line).take(6).collect();
    let size = match toks.as_slice() {
        [b"set", _, _, _, size, ..] => parse_u64(size),
        _ => None,
    };
    let Some(size) = size.and_then(|s| usize::try_from(s).ok()) else {
        return reply(ERR_UNAUTHENTICATED, line_len, false);
    };
    if size > MAX_TOKEN {
        return reply(ERR_UNAUTHENTICATED, line_len, true);
    }
    let total = line_len + size + 2;
    if buf.len() < total {
        return AuthFrame::Incomplete { need: total };
    }
    let block = &buf[line_len..total];
    if !block.ends_with(b"\r\n") {
        return reply(ERR_TERMINATION, total, false);
    }
    let mut creds = tokens(&block[..size]);
    match (creds.next(), creds.next()) {
        (Some(user), Some(password)) => AuthFrame::Attempt {
            user,
            password,
            len: total,
        },
        _ => reply(ERR_TOKEN_FORMAT, total, false),
    }
}

fn reply(msg: &'static str, len: usize, close: bool) -> AuthFrame<'static> {
    AuthFrame::Reply { msg, len, close }
}

/// memcached's tokenizer: runs of spaces separate tokens.
fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_frames_like_memcached() {
        assert_eq!(
            parse(b"set x 0 0 12\r\nalice s3cret\r\n"),
            AuthFrame::Attempt {
                user: b"alice",
                password: b"s3cret",
                len: 28
            }
        );
        assert_eq!(
            parse(b"set x 0 0 13 noreply\r\n alice s3cret\r\n"),
            AuthFrame::Attempt {
                user: b"alice",
                password: b"s3cret",
                len: 37
            }
        );
        assert_eq!(parse(b"get x\r\n"), reply(ERR_UNAUTHENTICATED, 7, false));
        assert_eq!(
            parse(b"set x 0 0\r\n"),
            reply(ERR_UNAUTHENTICATED, 11, false)
        );
        assert_eq!(
            parse(b"set x 0 0 -1\r\n"),
            reply(ERR_UNAUTHENTICATED, 14, false)
        );
        assert_eq!(
            parse(b"set x 0 0 5\r\nalice\r\n"),
            reply(ERR_TOKEN_FORMAT, 20, false)
        );
        assert_eq!(
            parse(b"set x 0 0 3\r\nabcde\r\n"),
            reply(ERR_TERMINATION, 18, false)
        );
        assert_eq!(
            parse(b"set x 0 0 5\r\nab"),
            AuthFrame::Incomplete { need: 20 }
        );
        assert_eq!(parse(b"set x 0"), AuthFrame::Incomplete { need: 0 });
        assert_eq!(
            parse(b"set x 0 0 1000000000\r\n"),
            reply(ERR_UNAUTHENTICATED, 22, true)
        );
        assert!(matches!(
            parse(&[b'a'; 3000]),
            AuthFrame::Reply { close: true, .. }
        ));
    }
}
