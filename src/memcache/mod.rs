//! The memcached front end: the text, meta and binary protocols over TCP
//! (optionally TLS) and a unix socket, with `--auth-file` and SASL. Each protocol has a pure
//! parser (`parse`) and an executor (`execute` or one module per command
//! family) that calls [`crate::kv`]; [`connection`] ties them to a socket
//! and [`listener`] accepts connections.

pub mod auth;
pub mod batch;
pub mod binary;
pub mod connection;
pub mod frame;
pub mod listener;
pub mod meta;
pub mod reply;
pub mod text;

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Flush pending replies, then close (`quit`, `shutdown`).
    Close,
    /// Stream `lru_crawler metadump` of these classes before reading on.
    Dump(text::operator::Classes),
}
