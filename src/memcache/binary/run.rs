//! A pipelined run of binary write requests in a replicated group (a
//! bulk load's `SETQ`s, say: storage requests, deletes, increments and
//! decrements), proposed as one ordered unit like the text protocol's
//! runs (see `memcache::text::run`): each request applies in its place and
//! gets the response it would have got alone. Any other request (a read,
//! `TOUCH`, which answers with the item, `FLUSH`) ends the run. A single
//! node never comes here.

use bytes::BytesMut;

use super::execute::{is_run_write, run_reply, run_write};
use super::parse::{self as binary, Frame};
use crate::memcache::batch::{Kind, Run, MAX_RUN};
use crate::state::AppState;

/// Runs the write requests at the start of `input` as one unit, if this
/// node is in a group and there are at least two of them.
pub async fn write_run(input: &[u8], shared: &AppState, out: &mut BytesMut) -> Option<Run> {
    let kv = &*shared.kv;
    if !kv.is_replicated() {
        return None;
    }
    let mut reqs = Vec::new();
    let mut consumed = 0;
    while reqs.len() < MAX_RUN {
        match binary::parse(&input[consumed..], kv.max_item_size()) {
            Frame::Request { req, len } if is_run_write(req.header.opcode) => {
                reqs.push(req);
                consumed += len;
            }
            _ => break,
        }
    }
    if reqs.len() < 2 {
        return None;
    }
    let writes: Vec<_> = reqs.iter().map(run_write).collect();
    let outcomes = kv.write_run_async(&writes).await;
    let mut replies = Vec::with_capacity(reqs.len());
    for (req, outcome) in reqs.iter().zip(outcomes) {
        let start = out.len();
        run_reply(req, outcome, out);
        let kind = Kind::Binary {
            opcode: req.header.opcode,
            opaque: req.header.opaque,
        };
        replies.push(((start, out.len()), kind));
    }
    Some(Run { consumed, replies })
}
