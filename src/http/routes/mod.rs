//! The API's handlers, one file per resource: items (`/v1/keys/{key}` and
//! its actions), the key listing, the change feed (`/v1/watch`), the server routes (stats, flush, health)
//! and export/metrics.

pub mod admin;
pub mod cluster;
pub mod contract;
pub mod export;
pub mod items;
pub mod list;
pub mod watch;
