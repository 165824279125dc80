//! The binary protocol (memcached's 24-byte header framing): a pure
//! parser, the executor, and SASL authentication.

pub mod execute;
pub mod parse;
pub mod sasl;
