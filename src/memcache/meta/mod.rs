//! The meta protocol (`mg ms md ma me mn`, memcached 1.6): a pure parser
//! called by the text parser for two-letter `m` commands, and the executor.

/// Runs a parsed meta request against the store.
pub mod execute;
/// The meta command parser: flags, tokens and memcached's error order.
pub mod parse;
