//! Client-side tools shipped in the same binary: the load generator, the
//! scripted-client replayer and the container health check. They talk to a
//! server over its sockets and use nothing of the server's own modules.

pub mod bench;
pub mod healthcheck;
pub mod replay;
