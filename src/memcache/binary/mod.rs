//! The binary protocol (memcached's 24-byte header framing): a pure
//! parser, the executor, and SASL authentication.

/// Runs a parsed binary request; quiet variants and batching.
pub mod execute;
/// The binary frame parser and response encoder.
pub mod parse;
/// SASL PLAIN over the binary protocol.
pub mod sasl;
