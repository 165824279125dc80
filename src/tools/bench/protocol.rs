//! Wire encoding for the load generator: requests are appended to one
//! buffer per connection (so a pipeline goes out in one write) and replies
//! are decoded incrementally from the read buffer. Pure functions over
//! bytes, so they are unit-tested without a socket.

/// Which protocol the target server speaks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// memcached text protocol (`get` / `set`).
    Memcache,
    /// Redis serialization protocol (`GET` / `SET`).
    Resp,
}

/// The outcome of one decoded reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A get that found its key.
    Hit,
    /// A get whose key was absent.
    Miss,
    /// A successful set.
    Stored,
    /// Any error line (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`, `-ERR`, `NOT_STORED`).
    Error,
}

/// A malformed reply: the stream cannot be resynchronized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from server: {0:?}")]
pub struct BadReply(pub String);

/// Appends a get request for `key`.
pub fn encode_get(proto: Protocol, key: &[u8], out: &mut Vec<u8>) {
    match proto {
        Protocol::Memcache => {
            out.extend_from_slice(b"get ");
            out.extend_from_slice(key);
            out.extend_from_slice(b"\r\n");
        }
        Protocol::Resp => {
            out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
            bulk(key, out);
        }
    }
}

/// Appends a set request storing `value` under `key` (no expiry, flags 0).
pub fn encode_set(proto: Protocol, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    match proto {
        Protocol::Memcache => {
            out.extend_from_slice(b"set ");
            out.extend_from_slice(key);
            out.extend_from_slice(b" 0 0 ");
            out.extend_from_slice(itoa::Buffer::new().format(value.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        Protocol::Resp => {
            out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
            bulk(key, out);
            bulk(value, out);
        }
    }
}

fn bulk(data: &[u8], out: &mut Vec<u8>) {
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(data.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Decodes the first complete reply in `buf`: `Ok(Some((reply, consumed)))`,
/// `Ok(None)` if more bytes are needed.
pub fn decode(proto: Protocol, buf: &[u8]) -> Result<Option<(Reply, usize)>, BadReply> {
    match proto {
        Protocol::Memcache => decode_memcache(buf),
        Protocol::Resp => decode_resp(buf),
    }
}

/// One `\r\n`-terminated line, without the terminator, and its full length.
fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = memchr::memmem::find(buf, b"\r\n")?;
    Some((&buf[..end], end + 2))
}

fn bad(buf: &[u8]) -> BadReply {
    BadReply(String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned())
}

fn decode_memcache(buf: &[u8]) -> Result<Option<(Reply, usize)>, BadReply> {
    let Some((first, len)) = line(buf) else {
        return Ok(None);
    };
    match first {
        b"END" => Ok(Some((Reply::Miss, len))),
        b"STORED" => Ok(Some((Reply::Stored, len))),
        b"NOT_STORED" | b"ERROR" => Ok(Some((Reply::Error, len))),
        _ if first.starts_with(b"CLIENT_ERROR") || first.starts_with(b"SERVER_ERROR") => {
            Ok(Some((Reply::Error, len)))
        }
        _ if first.starts_with(b"VALUE ") => {
            // VALUE <key> <flags> <bytes>[ <cas>]
            let bytes = first
                .split(|&b| b == b' ')
                .nth(3)
                .and_then(|f| std::str::from_utf8(f).ok())
                .and_then(|f| f.parse::<usize>().ok())
                .ok_or_else(|| bad(first))?;
            let total = len + bytes + 2 + b"END\r\n".len();
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[len + bytes..total] != b"\r\nEND\r\n" {
                return Err(bad(&buf[len + bytes..]));
            }
            Ok(Some((Reply::Hit, total)))
        }
        _ => Err(bad(first)),
    }
}

fn decode_resp(buf: &[u8]) -> Result<Option<(Reply, usize)>, BadReply> {
    let Some((first, len)) = line(buf) else {
        return Ok(None);
    };
    match first.first() {
        Some(b'+') => Ok(Some((Reply::Stored, len))),
        Some(b'-') => Ok(Some((Reply::Error, len))),
        Some(b'$') if first == b"$-1" => Ok(Some((Reply::Miss, len))),
        Some(b'$') => {
            let n = std::str::from_utf8(&first[1..])
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| bad(first))?;
            let total = len + n + 2;
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[len + n..total] != b"\r\n" {
                return Err(bad(&buf[len + n..]));
            }
            Ok(Some((Reply::Hit, total)))
        }
        _ => Err(bad(first)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Protocol::{Memcache, Resp};

    #[test]
    fn encodes_memcache_requests() {
        let mut out = Vec::new();
        encode_get(Memcache, b"k1", &mut out);
        encode_set(Memcache, b"k2", b"hello", &mut out);
        assert_eq!(out, b"get k1\r\nset k2 0 0 5\r\nhello\r\n");
    }

    #[test]
    fn encodes_resp_requests() {
        let mut out = Vec::new();
        encode_get(Resp, b"k1", &mut out);
        encode_set(Resp, b"k2", b"hello", &mut out);
        assert_eq!(
            out,
            b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$5\r\nhello\r\n"
        );
    }

    #[test]
    fn decodes_memcache_replies_in_sequence() {
        let buf = b"STORED\r\nEND\r\nVALUE k 0 5\r\nhe\r\no\r\nEND\r\nVALUE k 3 2 99\r\nab\r\nEND\r\nSERVER_ERROR out of memory\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((r, n)) = decode(Memcache, &buf[at..]).unwrap() {
            got.push(r);
            at += n;
        }
        assert_eq!(at, buf.len());
        assert_eq!(
            got,
            [
                Reply::Stored,
                Reply::Miss,
                Reply::Hit,
                Reply::Hit,
                Reply::Error
            ]
        );
    }

    #[test]
    fn memcache_value_waits_for_its_whole_block() {
        let full = b"VALUE key 0 10\r\n0123456789\r\nEND\r\n";
        for cut in 0..full.len() {
            assert_eq!(decode(Memcache, &full[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(decode(Memcache, full), Ok(Some((Reply::Hit, full.len()))));
    }

    #[test]
    fn decodes_resp_replies_in_sequence() {
        let buf = b"+OK\r\n$-1\r\n$5\r\nhe\r\no\r\n-ERR wrong\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((r, n)) = decode(Resp, &buf[at..]).unwrap() {
            got.push(r);
            at += n;
        }
        assert_eq!(at, buf.len());
        assert_eq!(got, [Reply::Stored, Reply::Miss, Reply::Hit, Reply::Error]);
        assert_eq!(decode(Resp, b"$5\r\nhel"), Ok(None));
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        assert!(decode(Memcache, b"HELLO\r\n").is_err());
        assert!(decode(Memcache, b"VALUE k 0 x\r\n").is_err());
        assert!(decode(Memcache, b"VALUE k 0 1\r\nab\r\nEND\r\n").is_err());
        assert!(decode(Resp, b"*1\r\n").is_err());
        assert!(decode(Resp, b"$2\r\nabc\r\n").is_err());
    }
}
