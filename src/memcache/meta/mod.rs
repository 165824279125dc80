//! The meta protocol (`mg ms md ma me mn`, memcached 1.6): a pure parser
//! called by the text parser for two-letter `m` commands, and the executor.

pub mod execute;
pub mod parse;
