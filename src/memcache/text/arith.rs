//! incr and decr.

use bytes::BytesMut;

use crate::kv::{ArithOutcome, Kv, KvError};
use crate::memcache::reply;

pub async fn execute(kv: &Kv, key: &[u8], delta: u64, incr: bool, out: &mut BytesMut) {
    reply(kv.incr_decr_async(key, delta, incr).await, out);
}

/// `incr`/`decr`'s reply line.
pub fn reply(outcome: Result<ArithOutcome, KvError>, out: &mut BytesMut) {
    match outcome {
        Ok(ArithOutcome::Value { value, .. }) => reply::number(out, value),
        Ok(ArithOutcome::NotFound) => reply::line(out, "NOT_FOUND"),
        Ok(ArithOutcome::NonNumeric) => reply::line(
            out,
            "CLIENT_ERROR cannot increment or decrement non-numeric value",
        ),
        Err(e) => reply::kv_error(out, &e),
    }
}
