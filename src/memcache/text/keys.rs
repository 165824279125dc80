//! Single-key commands that change no value: delete and touch.

use bytes::BytesMut;

use crate::kv::{DeleteOutcome, Kv, KvError};
use crate::memcache::reply;

pub async fn delete(kv: &Kv, key: &[u8], out: &mut BytesMut) {
    delete_reply(kv.delete_async(key, None).await, out);
}

/// `delete`'s reply line.
pub fn delete_reply(outcome: Result<DeleteOutcome, KvError>, out: &mut BytesMut) {
    match outcome {
        Ok(DeleteOutcome::Deleted) => reply::line(out, "DELETED"),
        Ok(_) => reply::line(out, "NOT_FOUND"),
        Err(e) => reply::kv_error(out, &e),
    }
}

pub async fn touch(kv: &Kv, key: &[u8], exptime: i64, out: &mut BytesMut) {
    touch_reply(kv.touch_async(key, exptime).await, out);
}

/// `touch`'s reply line.
pub fn touch_reply(outcome: Result<bool, KvError>, out: &mut BytesMut) {
    match outcome {
        Ok(true) => reply::line(out, "TOUCHED"),
        Ok(false) => reply::line(out, "NOT_FOUND"),
        Err(e) => reply::kv_error(out, &e),
    }
}
