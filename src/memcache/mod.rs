//! The memcached front end: the text, meta and binary protocols over TCP
//! (optionally TLS), with `--auth-file` and SASL. Each protocol has a pure
//! parser (`parse`) and an executor (`execute` or one module per command
//! family) that calls [`crate::kv`]; [`connection`] ties them to a socket
//! and [`listener`] accepts connections.

/// The `--auth-file` gate a connection passes before its first command.
pub mod auth;
/// The binary protocol: parser, executor, SASL.
pub mod binary;
/// One connection's loop: read, parse, execute, reply, flush.
pub mod connection;
/// What the text and meta parsers share: frames, tokenizer, error replies.
pub mod frame;
/// Accepts connections, enforces --max-connections, drains on shutdown.
pub mod listener;
/// The meta protocol (`mg ms md ma me mn`): parser and executor.
pub mod meta;
/// Reply encoding shared by the text and meta executors.
pub mod reply;
/// The classic text protocol: parser and one module per command family.
pub mod text;

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Flush pending replies, then close (`quit`, `shutdown`).
    Close,
}
