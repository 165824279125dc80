//! memcached's input rules, shared by every front end and the layers below
//! them: what a key is, how numbers are read (memcached's `safe_strtoull` /
//! `safe_strtol`), what an exptime means, and the clock expiry is read
//! against. Pure functions over bytes and numbers; nothing here does I/O
//! or names another module of the crate.

pub mod clock;
pub mod exptime;
pub mod key;
pub mod number;

pub use clock::Clock;
pub use key::{valid_key, MAX_KEY};
pub use number::{parse_i64, parse_u64};
