//! Single-key commands that change no value: delete and touch.

use bytes::BytesMut;

use crate::kv::{DeleteOutcome, Kv};
use crate::memcache::reply;

pub async fn delete(kv: &Kv, key: &[u8], out: &mut BytesMut) {
    match kv.delete_async(key, None).await {
        Ok(DeleteOutcome::Deleted) => reply::line(out, "DELETED"),
        Ok(_) => reply::line(out, "NOT_FOUND"),
        Err(e) => reply::kv_error(out, &e),
    }
}

pub async fn touch(kv: &Kv, key: &[u8], exptime: i64, out: &mut BytesMut) {
    match kv.touch_async(key, exptime).await {
        Ok(true) => reply::line(out, "TOUCHED"),
        Ok(false) => reply::line(out, "NOT_FOUND"),
        Err(e) => reply::kv_error(out, &e),
    }
}
