//! memcached-lite: a persistent key-value server that speaks the memcached
//! protocol over one sled store.
//!
//! Data flows one way: socket -> parser -> command -> lock manager + store
//! -> reply. Front ends never touch sled directly.

/// Secrets and their constant-time checks: memcached auth file, HTTP bearer token.
pub mod auth;
/// `memcached-lite bench`: the memtier-style load generator (memcache text and RESP).
pub mod bench;
/// The single configuration shared by every front end and subcommand.
pub mod config;
/// The CSV image format shared by the mirror, export and import.
pub mod csvfmt;
/// `memcached-lite healthcheck`: is the memcached port answering?
pub mod healthcheck;
/// The HTTP/JSON front end (axum + utoipa), with Swagger UI.
pub mod http;
/// `import`: validated bulk load of a CSV image into an offline store.
pub mod import;
/// memcached semantics over the store, under the lock manager; both front ends call it.
pub mod kv;
/// Striped per-key locks serializing every write to a key.
pub mod locks;
/// The memcached TCP front end: parser, commands, connection loop.
pub mod memcache;
/// Prometheus metrics of both front ends, rendered for `GET /metrics`.
pub mod metrics;
/// The background CSV mirror of the store and atomic file replacement.
pub mod mirror;
/// `replay`: scripted concurrent clients checked against expected replies.
pub mod replay;
/// Process wiring for `serve`: listeners, sweeper, graceful shutdown.
pub mod server;
/// Counters reported by `stats` on both front ends.
pub mod stats;
/// The sled-backed item store (with its memory index and write-behind),
/// item encoding and expiry rules.
pub mod store;
/// Optional rustls TLS shared by the listeners.
pub mod tls;
