//! The HTTP middleware of this server's own: the bearer-token gate, the
//! group-commit wait before a write's 2xx, and the per-route metrics.

pub mod auth;
pub mod durable;
pub mod observe;
