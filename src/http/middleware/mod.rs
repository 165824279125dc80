//! The HTTP middleware of this server's own: the bearer-token gate, the
//! group-commit wait before a write's 2xx, and the per-route metrics.

/// `--http-token-file`: 401 unless the request carries the token.
pub mod auth;
/// `--durability sync`: a write's 2xx waits for its group commit.
pub mod durable;
/// Command counts and latencies per route.
pub mod observe;
