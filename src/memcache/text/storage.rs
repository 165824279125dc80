//! Storage commands: set, add, replace, append, prepend, cas.

use bytes::BytesMut;

use crate::kv::{Kv, KvError, StoreMode, StoreOutcome};
use crate::memcache::reply;

pub async fn execute(
    kv: &Kv,
    mode: StoreMode,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
    out: &mut BytesMut,
) {
    reply(kv.set_async(mode, key, flags, exptime, data).await, out);
}

/// A storage command's reply line.
pub fn reply(outcome: Result<StoreOutcome, KvError>, out: &mut BytesMut) {
    match outcome {
        Ok(StoreOutcome::Stored { .. }) => reply::line(out, "STORED"),
        Ok(StoreOutcome::NotStored) => reply::line(out, "NOT_STORED"),
        Ok(StoreOutcome::Exists) => reply::line(out, "EXISTS"),
        Ok(StoreOutcome::NotFound) => reply::line(out, "NOT_FOUND"),
        Err(e) => reply::kv_error(out, &e),
    }
}
