//! The memcached binary protocol's framing (protocol_binary.h): a pure,
//! bounded parser from buffered bytes to one request. It validates each
//! opcode's header shape before waiting for a body, so a lying body length
//! is answered (or the connection closed) exactly as memcached 1.6 does,
//! and never makes the server buffer more than one item.

/// First byte of every request; a connection whose first byte is this
/// speaks binary for its whole life (memcached decides the same way).
pub const REQUEST_MAGIC: u8 = 0x80;
pub const RESPONSE_MAGIC: u8 = 0x81;
pub const HEADER_LEN: usize = 24;
/// memcached's KEY_MAX_LENGTH.
const MAX_KEY: usize = 250;

/// Opcodes (protocol_binary_command).
pub mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response status codes (protocol_binary_response_status).
pub mod status {
    pub const SUCCESS: u16 = 0x00;
    pub const KEY_ENOENT: u16 = 0x01;
    pub const KEY_EEXISTS: u16 = 0x02;
    pub const E2BIG: u16 = 0x03;
    pub const EINVAL: u16 = 0x04;
    pub const NOT_STORED: u16 = 0x05;
    pub const DELTA_BADVAL: u16 = 0x06;
    pub const UNKNOWN_COMMAND: u16 = 0x81;
    pub const ENOMEM: u16 = 0x82;
    /// memcached's PROTOCOL_BINARY_RESPONSE_NOT_SUPPORTED.
    pub const NOT_SUPPORTED: u16 = 0x83;
    /// memcached's PROTOCOL_BINARY_RESPONSE_EINTERNAL.
    pub const EINTERNAL: u16 = 0x84;
    /// memcached's PROTOCOL_BINARY_RESPONSE_ETMPFAIL (no quorum).
    pub const ETMPFAIL: u16 = 0x86;
}

/// A request header, in host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    pub keylen: u16,
    pub extlen: u8,
    pub bodylen: u32,
    pub opaque: u32,
    pub cas: u64,
}

impl Header {
    /// Decodes the first [`HEADER_LEN`] bytes (magic not checked).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            opcode: b[1],
            keylen: u16::from_be_bytes([b[2], b[3]]),
            extlen: b[4],
            bodylen: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            opaque: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            cas: u64::from_be_bytes(b[16..24].try_into().expect("8 bytes")),
        }
    }

    /// The value length: what the body holds beyond extras and key.
    pub fn value_len(&self) -> usize {
        self.bodylen as usize - self.extlen as usize - self.keylen as usize
    }

    /// Quiet variants answer only failures (get misses not even those).
    pub fn quiet(&self) -> bool {
        use op::*;
        matches!(
            self.opcode,
            GETQ | GETKQ
                | SETQ
                | ADDQ
                | REPLACEQ
                | DELETEQ
                | INCREMENTQ
                | DECREMENTQ
                | QUITQ
                | FLUSHQ
                | APPENDQ
                | PREPENDQ
                | GATQ
                | GATKQ
        )
    }
}

/// One complete request; slices borrow the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub header: Header,
    pub extras: &'a [u8],
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// What the connection does with the front of its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Wait until `need` bytes are buffered.
    Incomplete {
        need: usize,
    },
    /// Not a binary request at all: close without a reply (bad magic).
    Close,
    Request {
        req: Request<'a>,
        len: usize,
    },
    /// Refused before reading its body: reply `status`, consume `len`
    /// bytes, then discard `skip` more as they arrive; close afterwards if
    /// `close` (memcached closes on malformed headers). `discard_key`:
    /// drop the key's old value (a too-large SET, as memcached does).
    Refuse {
        header: Header,
        status: u16,
        len: usize,
        skip: usize,
        close: bool,
        discard_key: Option<&'a [u8]>,
    },
}

/// Whether an opcode's header has the shape memcached requires
/// (extras/key/body lengths); anything else is EINVAL and a closed
/// connection. `None` for opcodes memcached does not know.
fn shape_ok(h: &Header) -> Option<bool> {
    use op::*;
    let (ext, key, body) = (h.extlen as u32, h.keylen as u32, h.bodylen);
    Some(match h.opcode {
        VERSION | NOOP | QUIT | QUITQ => ext == 0 && key == 0 && body == 0,
        FLUSH | FLUSHQ => key == 0 && body == ext && (ext == 0 || ext == 4),
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ => ext == 8 && key != 0 && body >= key + 8,
        GET | GETQ | GETK | GETKQ | DELETE | DELETEQ => ext == 0 && key > 0 && body == key,
        INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ => {
            key > 0 && ext == 20 && body == key + ext
        }
        APPEND | APPENDQ | PREPEND | PREPENDQ => key > 0 && ext == 0,
        // memcached leaves the rest of these bodies unread; we require none.
        STAT => ext == 0 && body == key,
        TOUCH | GAT | GATQ | GATK | GATKQ => ext == 4 && key != 0 && body == key + 4,
        // Key = mechanism, value = its message (src/memcache/sasl.rs).
        SASL_LIST_MECHS => ext == 0 && key == 0 && body == 0,
        SASL_AUTH | SASL_STEP => ext == 0 && key != 0,
        _ => return None,
    })
}

fn carries_value(opcode: u8) -> bool {
    use op::*;
    matches!(
        opcode,
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ | APPEND | APPENDQ | PREPEND | PREPENDQ
    )
}

/// Parses the first request in `buf`. Values longer than `max_item_size`
/// are refused with E2BIG and skipped, as memcached does.
pub fn parse(buf: &[u8], max_item_size: usize) -> Frame<'_> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Frame::Incomplete { need: HEADER_LEN };
    };
    if head[0] != REQUEST_MAGIC {
        return Frame::Close;
    }
    let header = Header::decode(head);
    let refuse = |status, skip, close| Frame::Refuse {
        header,
        status,
        len: HEADER_LEN,
        skip,
        close,
        discard_key: None,
    };
    let (ext, key, body) = (
        header.extlen as usize,
        header.keylen as usize,
        header.bodylen as usize,
    );
    if key + ext > body {
        return refuse(status::UNKNOWN_COMMAND, 0, true);
    }
    if key > MAX_KEY {
        return refuse(status::EINVAL, 0, true);
    }
    match shape_ok(&header) {
        None => return refuse(status::UNKNOWN_COMMAND, body, false),
        Some(false) => return refuse(status::EINVAL, 0, true),
        Some(true) => {}
    }
    if carries_value(header.opcode) && header.value_len() > max_item_size {
        let prefix = HEADER_LEN + ext + key;
        if buf.len() < prefix {
            return Frame::Incomplete { need: prefix };
        }
        let is_set = matches!(header.opcode, op::SET | op::SETQ);
        return Frame::Refuse {
            header,
            status: status::E2BIG,
            len: prefix,
            skip: header.value_len(),
            close: false,
            discard_key: is_set.then(|| &buf[HEADER_LEN + ext..prefix]),
        };
    }
    let total = HEADER_LEN + body;
    if buf.len() < total {
        return Frame::Incomplete { need: total };
    }
    let extras = &buf[HEADER_LEN..HEADER_LEN + ext];
    let key = &buf[HEADER_LEN + ext..HEADER_LEN + ext + key];
    let value = &buf[HEADER_LEN + ext + key.len()..total];
    Frame::Request {
        req: Request {
            header,
            extras,
            key,
            value,
        },
        len: total,
    }
}

/// Appends one response packet.
#[allow(clippy::too_many_arguments)]
pub fn response(
    out: &mut bytes::BytesMut,
    opcode: u8,
    status: u16,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    use bytes::BufMut;
    out.reserve(HEADER_LEN + extras.len() + key.len() + value.len());
    out.put_u8(RESPONSE_MAGIC);
    out.put_u8(opcode);
    out.put_u16(key.len() as u16);
    out.put_u8(extras.len() as u8);
    out.put_u8(0);
    out.put_u16(status);
    out.put_u32((extras.len() + key.len() + value.len()) as u32);
    out.put_u32(opaque);
    out.put_u64(cas);
    out.put_slice(extras);
    out.put_slice(key);
    out.put_slice(value);
}

/// memcached's error text for a status (the body of an error response).
pub fn status_text(status: u16) -> &'static str {
    match status {
        status::ENOMEM => "Out of memory",
        status::EINTERNAL => "Internal error",
        status::NOT_SUPPORTED => "Not supported",
        status::ETMPFAIL => "Temporary failure",
        status::UNKNOWN_COMMAND => "Unknown command",
        status::KEY_ENOENT => "Not found",
        status::EINVAL => "Invalid arguments",
        status::KEY_EEXISTS => "Data exists for key.",
        status::E2BIG => "Too large.",
        status::DELTA_BADVAL => "Non-numeric server-side value for incr or decr",
        status::NOT_STORED => "Not stored.",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: u8, keylen: u16, extlen: u8, bodylen: u32) -> Vec<u8> {
        let mut h = vec![REQUEST_MAGIC, opcode];
        h.extend_from_slice(&keylen.to_be_bytes());
        h.extend_from_slice(&[extlen, 0, 0, 0]);
        h.extend_from_slice(&bodylen.to_be_bytes());
        h.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        h.extend_from_slice(&7u64.to_be_bytes());
        h
    }

    #[test]
    fn decodes_a_complete_set() {
        let mut buf = header(op::SET, 3, 8, 8 + 3 + 2);
        buf.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0]);
        buf.extend_from_slice(b"keyhi");
        let Frame::Request { req, len } = parse(&buf, 1024) else {
            panic!()
        };
        assert_eq!(len, buf.len());
        assert_eq!(
            (req.key, req.value, req.extras.len()),
            (&b"key"[..], &b"hi"[..], 8)
        );
        assert_eq!((req.header.opaque, req.header.cas), (0xdead_beef, 7));
    }

    #[test]
    fn waits_for_headers_and_bodies() {
        let buf = header(op::GET, 3, 0, 3);
        assert_eq!(parse(&buf[..10], 1024), Frame::Incomplete { need: 24 });
        assert_eq!(parse(&buf, 1024), Frame::Incomplete { need: 27 });
    }

    #[test]
    fn refuses_malformed_headers_like_memcached() {
        assert_eq!(parse(b"\x81xxxxxxxxxxxxxxxxxxxxxxx", 1024), Frame::Close);
        let status_of = |buf: &[u8]| match parse(buf, 1024) {
            Frame::Refuse {
                status,
                close,
                skip,
                ..
            } => (status, close, skip),
            other => panic!("{other:?}"),
        };
        // key longer than the body: a lie about lengths
        assert_eq!(
            status_of(&header(op::GET, 10, 0, 5)),
            (status::UNKNOWN_COMMAND, true, 0)
        );
        // get with a body beyond its key
        assert_eq!(
            status_of(&header(op::GET, 3, 0, 4_000_000_000)),
            (status::EINVAL, true, 0)
        );
        assert_eq!(
            status_of(&header(op::NOOP, 0, 0, 1)),
            (status::EINVAL, true, 0)
        );
        assert_eq!(
            status_of(&header(op::GET, 251, 0, 251)),
            (status::EINVAL, true, 0)
        );
        // unknown opcode: answered, its body skipped, connection kept
        assert_eq!(
            status_of(&header(0x55, 0, 0, 9)),
            (status::UNKNOWN_COMMAND, false, 9)
        );
    }

    #[test]
    fn oversized_values_are_refused_without_buffering() {
        let mut buf = header(op::SET, 1, 8, 8 + 1 + 5000);
        buf.extend_from_slice(&[0; 8]);
        buf.push(b'k');
        assert_eq!(
            parse(&buf, 1024),
            Frame::Refuse {
                header: Header::decode(buf[..24].try_into().unwrap()),
                status: status::E2BIG,
                len: 33,
                skip: 5000,
                close: false,
                discard_key: Some(b"k"),
            }
        );
    }
}
