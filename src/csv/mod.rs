//! The CSV image of the store: its format, export (`memcached-lite export`,
//! `GET /v1/export.csv`), import into an offline store, and the background
//! mirror. Everything reads and writes items through [`crate::kv`].

pub mod export;
pub mod format;
pub mod import;
pub mod mirror;
