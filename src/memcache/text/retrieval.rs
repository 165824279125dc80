//! Retrieval commands: get, gets, gat, gats.

use bytes::BytesMut;

use super::parse::Keys;
use crate::kv::{Item, Kv, KvError, ReadPoint};
use crate::memcache::reply;

pub async fn execute(kv: &Kv, keys: Keys<'_>, cas: bool, touch: Option<i64>, out: &mut BytesMut) {
    // Every key is read from the command's arrival: in a group, one
    // read-index round serves them all.
    let mut point = kv.read_point();
    if touch.is_none() {
        match kv.fresh_async(point).await {
            Ok(checked) => point = checked,
            Err(e) => {
                reply::kv_error(out, &e);
                return;
            }
        }
    }
    answer(kv, keys, cas, touch, point, out).await
}

/// The reply, read from `point` (checked already for a plain get).
pub async fn answer(
    kv: &Kv,
    keys: Keys<'_>,
    cas: bool,
    touch: Option<i64>,
    point: ReadPoint,
    out: &mut BytesMut,
) {
    let mark = out.len();
    for key in keys.iter() {
        let found = match touch {
            Some(exptime) => kv.get_and_touch_async(key, exptime).await,
            None => kv.get_from(key, point),
        };
        if !push_found(out, mark, key, found, cas) {
            return;
        }
    }
    reply::line(out, "END");
}

/// Adds what `key` found to a retrieval reply begun at `mark`; on an error,
/// which as in memcached replaces the partial answer, writes that instead
/// and returns false (the reply is complete then: no `END`).
pub fn push_found(
    out: &mut BytesMut,
    mark: usize,
    key: &[u8],
    found: Result<Option<Item>, KvError>,
    cas: bool,
) -> bool {
    match found {
        Ok(Some(item)) => {
            super::METRICS.hit();
            reply::value(out, key, &item, cas);
        }
        Ok(None) => super::METRICS.miss(),
        Err(e) => {
            out.truncate(mark);
            reply::kv_error(out, &e);
            return false;
        }
    }
    true
}
