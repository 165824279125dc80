//! Response encoding: everything appends to the connection's output buffer,
//! which is written once per batch of requests.

use bytes::{BufMut, BytesMut};

use crate::kv::Item;
use crate::kv::KvError;

/// Appends `msg\r\n`.
pub fn line(out: &mut BytesMut, msg: &str) {
    out.reserve(msg.len() + 2);
    out.put_slice(msg.as_bytes());
    out.put_slice(b"\r\n");
}

/// Appends a decimal number line (incr/decr result).
pub fn number(out: &mut BytesMut, n: u64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

/// Appends `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
pub fn value(out: &mut BytesMut, key: &[u8], item: &Item, with_cas: bool) {
    let data = item.value();
    let mut num = itoa::Buffer::new();
    out.reserve(key.len() + data.len() + 64);
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    out.put_u8(b' ');
    out.put_slice(num.format(item.flags()).as_bytes());
    out.put_u8(b' ');
    out.put_slice(num.format(data.len()).as_bytes());
    if with_cas {
        out.put_u8(b' ');
        out.put_slice(num.format(item.cas()).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// `STAT <name> <value>\r\n`.
pub fn stat(out: &mut BytesMut, name: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = write!(out, "STAT {name} {value}\r\n");
}

/// The reply to a command the store failed: the detail (a sled or I/O
/// error) goes to the log, the client gets a stable line.
pub const ERR_STORAGE: &str = "SERVER_ERROR storage failure";

/// The memcached error line for a failed store operation.
pub fn kv_error(out: &mut BytesMut, err: &KvError) {
    if let Some(fault) = err.storage_fault() {
        // A full or failing disk: refused before writing, or taken back
        // after its commit failed. The store logs the fault once.
        line(out, &format!("SERVER_ERROR {fault}"));
        return;
    }
    match err {
        KvError::TooLarge => line(out, super::frame::ERR_TOO_LARGE),
        KvError::NoMemory => line(out, "SERVER_ERROR out of memory storing object"),
        KvError::Store(e) => {
            tracing::error!("memcached command failed in the store: {e}");
            line(out, ERR_STORAGE);
        }
        KvError::NoQuorum => line(out, "SERVER_ERROR no quorum"),
        KvError::Replica(why) => line(out, &format!("SERVER_ERROR {why}")),
    }
}
