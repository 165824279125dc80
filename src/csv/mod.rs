//! The CSV image of the store: its format, export (`memcached-lite export`,
//! `GET /v1/export.csv`), import into an offline store, and the background
//! mirror. Everything reads and writes items through [`crate::kv`].

/// Export (ordered) and the mirror's image (unordered), both through `Kv`.
pub mod export;
/// The format: header, row encoding, the validating reader.
pub mod format;
/// `memcached-lite import`: validated bulk load into an offline store.
pub mod import;
/// The background mirror and atomic file replacement.
pub mod mirror;
