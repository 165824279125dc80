//! Client-side tools shipped in the same binary: the load generator, the
//! scripted-client replayer and the container health check. They talk to a
//! server over its sockets and use nothing of the server's own modules.

/// `memcached-lite bench`: the memtier-style load generator.
pub mod bench;
/// `memcached-lite healthcheck`: is the memcached port answering?
pub mod healthcheck;
/// `memcached-lite replay`: scripted concurrent clients.
pub mod replay;
