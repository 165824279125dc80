//! memcached-lite: a persistent key-value server that speaks the memcached
//! protocols (text, meta, binary) and an HTTP/JSON API over one sled store.
//!
//! Modules form one-way layers (each names only those above it in this
//! list; `tests/architecture.rs` enforces the table):
//!
//! - [`config`], [`rules`]: flags; memcached's input rules and the clock.
//! - [`store`]: sled persistence, memory index, write-behind, group commit.
//! - [`replica`]: Raft plumbing (log, messages, forming a group); [`kv`] proposes
//!   writes through it and applies committed ones to the store.
//! - [`kv`]: memcached semantics and the lock manager, the only door to the store.
//! - [`auth`], [`net`], [`state`], [`report`], [`metrics`]: what front ends share.
//! - [`csv`], [`memcache`], [`http`]: the front ends, which never name each other
//!   (HTTP serves CSV export, so `http` may use `csv`).
//! - [`server`]: process wiring, named only by `main.rs`.
//! - [`tools`]: bench, replay, healthcheck; clients that use nothing above.

pub mod auth;
pub mod config;
pub mod csv;
pub mod http;
pub mod kv;
pub mod memcache;
pub mod metrics;
pub mod net;
pub mod replica;
pub mod report;
pub mod rules;
pub mod server;
pub mod state;
pub mod store;
pub mod tools;
