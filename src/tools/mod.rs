//! Client-side tools shipped in the same binary: the load generator, the
//! scripted-client replayer, the container health check and the
//! replicated group's membership client. They talk to a
//! server over its sockets and use nothing of the server's own modules.

pub mod bench;
pub mod cluster;
pub mod healthcheck;
pub mod replay;
mod trust;
