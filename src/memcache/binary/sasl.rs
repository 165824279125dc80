//! SASL PLAIN over the binary protocol, the gate of binary connections when
//! `--auth-file` is configured (memcached's `-S`, checked against the same
//! `user:password` file as the text protocol's `-Y` gate). Before a client
//! authenticates only `SASL_LIST_MECHS`, `SASL_AUTH`, `SASL_STEP` and
//! `VERSION` are served; any other request is answered `AUTH_ERROR` and the
//! connection closed, as memcached does.

use bytes::BytesMut;

use super::parse::{self as binary, Frame, Request};
use crate::auth::Credentials;

use super::parse::op::{SASL_AUTH as AUTH, SASL_LIST_MECHS as LIST_MECHS, SASL_STEP as STEP};

/// memcached's statuses for authentication.
pub const AUTH_ERROR: u16 = 0x20;
pub const AUTH_CONTINUE: u16 = 0x21;

/// The one mechanism offered.
pub const MECHANISMS: &[u8] = b"PLAIN";
/// memcached's MAX_SASL_MECH_LEN.
const MAX_MECH: usize = 32;

/// What the gate did with the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Wait for this many bytes.
    Incomplete { need: usize },
    /// Answered (into `out`); consume `len` bytes, close if `close`.
    /// `checked`: credentials were checked, with this result.
    Replied {
        len: usize,
        close: bool,
        checked: Option<bool>,
    },
    /// A request served as usual before authentication (`VERSION`).
    Pass,
}

/// One step of the gate. `pending`: a `SASL_AUTH` without credentials
/// asked to continue, so the next `SASL_STEP` carries them.
pub fn step(
    buf: &[u8],
    max_item_size: usize,
    creds: &Credentials,
    pending: &mut bool,
    out: &mut BytesMut,
) -> Gate {
    let (req, len) = match binary::parse(buf, max_item_size) {
        Frame::Incomplete { need } => return Gate::Incomplete { need },
        // Not binary, or a malformed header: the normal path answers it
        // (and closes) exactly as it would after authentication.
        Frame::Close | Frame::Refuse { .. } => return Gate::Pass,
        Frame::Request { req, len } => (req, len),
    };
    let h = req.header;
    let reply = |out: &mut BytesMut, status: u16, body: &[u8]| {
        binary::response(out, h.opcode, status, h.opaque, 0, &[], &[], body)
    };
    match h.opcode {
        binary::op::VERSION => Gate::Pass,
        LIST_MECHS => {
            reply(out, binary::status::SUCCESS, MECHANISMS);
            Gate::Replied {
                len,
                close: false,
                checked: None,
            }
        }
        AUTH | STEP if req.key.len() > MAX_MECH => {
            reply(out, binary::status::EINVAL, b"Invalid arguments");
            Gate::Replied {
                len,
                close: false,
                checked: None,
            }
        }
        AUTH | STEP => {
            let ok = match plain(&req) {
                // PLAIN with no initial response: ask for it (cyrus-sasl's way).
                Plain::Empty if h.opcode == AUTH => {
                    *pending = true;
                    reply(out, AUTH_CONTINUE, b"");
                    return Gate::Replied {
                        len,
                        close: false,
                        checked: None,
                    };
                }
                Plain::Credentials(user, password) if h.opcode == AUTH || *pending => {
                    creds.verify(user, password)
                }
                _ => false,
            };
            *pending = false;
            if ok {
                reply(out, binary::status::SUCCESS, b"Authenticated");
            } else {
                reply(out, AUTH_ERROR, b"Auth failure.");
            }
            Gate::Replied {
                len,
                close: false,
                checked: Some(ok),
            }
        }
        _ => {
            reply(out, AUTH_ERROR, b"Auth failure.");
            Gate::Replied {
                len,
                close: true,
                checked: None,
            }
        }
    }
}

/// What a `SASL_AUTH`/`SASL_STEP` request carries.
enum Plain<'a> {
    /// PLAIN's `[authzid] NUL user NUL password`.
    Credentials(&'a [u8], &'a [u8]),
    /// PLAIN with an empty message.
    Empty,
    /// Another mechanism, a malformed message, or an authzid other than
    /// the user (no proxy authorization).
    Refused,
}

fn plain<'a>(req: &Request<'a>) -> Plain<'a> {
    if req.key != MECHANISMS {
        return Plain::Refused;
    }
    if req.value.is_empty() {
        return Plain::Empty;
    }
    let mut parts = req.value.splitn(3, |&b| b == 0);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(authzid), Some(user), Some(password)) if authzid.is_empty() || authzid == user => {
            Plain::Credentials(user, password)
        }
        _ => Plain::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(opcode: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut p = vec![binary::REQUEST_MAGIC, opcode];
        p.extend_from_slice(&(key.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&((key.len() + value.len()) as u32).to_be_bytes());
        p.extend_from_slice(&[0; 12]);
        p.extend_from_slice(key);
        p.extend_from_slice(value);
        p
    }

    fn status(out: &[u8]) -> u16 {
        u16::from_be_bytes([out[6], out[7]])
    }

    #[test]
    fn plain_checks_the_auth_file() {
        let creds = Credentials::parse(b"alice:s3cret\n").unwrap();
        let mut pending = false;
        let mut run = |p: Vec<u8>| {
            let mut out = BytesMut::new();
            let gate = step(&p, 1024, &creds, &mut pending, &mut out);
            (gate, out.to_vec())
        };
        let (gate, out) = run(packet(AUTH, b"PLAIN", b"\0alice\0s3cret"));
        assert_eq!(status(&out), 0);
        assert!(out.ends_with(b"Authenticated"));
        assert!(matches!(
            gate,
            Gate::Replied {
                checked: Some(true),
                ..
            }
        ));
        for bad in [
            &b"\0alice\0wrong"[..],
            b"bob\0alice\0s3cret",
            b"alice",
            b"\0alice",
        ] {
            let (gate, out) = run(packet(AUTH, b"PLAIN", bad));
            assert_eq!(status(&out), AUTH_ERROR, "{bad:?}");
            assert!(matches!(
                gate,
                Gate::Replied {
                    checked: Some(false),
                    close: false,
                    ..
                }
            ));
        }
        assert_eq!(status(&run(packet(AUTH, b"CRAM-MD5", b"x")).1), AUTH_ERROR);
        // Two-step PLAIN; a STEP without a pending AUTH fails.
        assert_eq!(
            status(&run(packet(STEP, b"PLAIN", b"\0alice\0s3cret")).1),
            AUTH_ERROR
        );
        assert_eq!(status(&run(packet(AUTH, b"PLAIN", b"")).1), AUTH_CONTINUE);
        assert_eq!(
            status(&run(packet(STEP, b"PLAIN", b"\0alice\0s3cret")).1),
            0
        );
        let (gate, out) = run(packet(binary::op::GET, b"k", b""));
        assert_eq!(status(&out), AUTH_ERROR);
        assert!(matches!(gate, Gate::Replied { close: true, .. }));
        assert_eq!(run(packet(binary::op::VERSION, b"", b"")).0, Gate::Pass);
    }
}
