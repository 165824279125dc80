//! The binary protocol (memcached's 24-byte header framing): a pure
//! parser, the executor, runs of pipelined writes in a group, and SASL
//! authentication.

pub mod execute;
pub mod parse;
pub mod run;
pub mod sasl;
