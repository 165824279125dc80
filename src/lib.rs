//! memcached-lite: a persistent key-value server that speaks the memcached
//! protocols (text, meta, binary) and an HTTP/JSON API over one sled store.
//!
//! Modules form one-way layers (each names only those above it in this
//! list; `tests/architecture.rs` enforces the table):
//!
//! - [`config`], [`rules`]: flags; memcached's input rules and the clock.
//! - [`store`]: sled persistence, memory index, write-behind, group commit.
//! - [`kv`]: memcached semantics and the lock manager, the only door to the store.
//! - [`auth`], [`net`], [`state`], [`report`], [`metrics`]: what front ends share.
//! - [`csv`], [`memcache`], [`http`]: the front ends, which never name each other
//!   (HTTP serves CSV export, so `http` may use `csv`).
//! - [`server`]: process wiring, named only by `main.rs`.
//! - [`tools`]: bench, replay, healthcheck; clients that use nothing above.

/// Secrets and their constant-time checks: memcached auth file, HTTP bearer token.
pub mod auth;
/// The single configuration shared by every front end and subcommand.
pub mod config;
/// The CSV image: format, export, import, mirror.
pub mod csv;
/// The HTTP/JSON front end (axum + utoipa), with Swagger UI.
pub mod http;
/// memcached semantics over the store, under the lock manager; every front end calls it.
pub mod kv;
/// The memcached TCP front end: text, meta and binary protocols.
pub mod memcache;
/// Prometheus metrics of every front end, rendered for `GET /metrics`.
pub mod metrics;
/// Listener plumbing every front end shares: bind with memcached's backlog, TLS.
pub mod net;
/// The `stats` reports shared by every protocol.
pub mod report;
/// memcached's input rules: keys, numbers, exptime, the clock.
pub mod rules;
/// Process wiring for `serve`: opens the store, starts listeners, shuts down.
pub mod server;
/// The state every front end shares.
pub mod state;
/// The sled-backed item store (with its memory index, write-behind and
/// group commit), item encoding.
pub mod store;
/// Client tools in the same binary: bench, replay, healthcheck.
pub mod tools;
