//! memcached-lite: a persistent key-value server that speaks the memcached
//! protocol over one sled store.
//!
//! Data flows one way: socket -> parser -> command -> lock manager + store
//! -> reply. Front ends never touch sled directly.

/// `memcached-lite bench`: the memtier-style load generator (memcache text and RESP).
pub mod bench;
/// The single configuration shared by every front end and subcommand.
pub mod config;
/// memcached semantics over the store, under the lock manager; both front ends call it.
pub mod kv;
/// Striped per-key locks serializing every write to a key.
pub mod locks;
/// The memcached TCP front end: parser, commands, connection loop.
pub mod memcache;
/// Process wiring for `serve`: listeners, sweeper, graceful shutdown.
pub mod server;
/// Counters reported by `stats` on both front ends.
pub mod stats;
/// The sled-backed item store, item encoding and expiry rules.
pub mod store;
