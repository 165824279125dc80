//! A pipelined run of binary storage requests in a replicated group (a
//! bulk load's `SETQ`s, say), proposed as one ordered unit like the text
//! protocol's runs (see `memcache::text::run`): each request applies in
//! its place and gets the response it would have got alone. Any other
//! request ends the run. A single node never comes here.

use bytes::BytesMut;

use super::execute::{is_store, store_reply, store_write};
use super::parse::{self as binary, Frame};
use crate::kv::RunOutcome;
use crate::memcache::batch::{Kind, Run, MAX_RUN};
use crate::state::AppState;

/// Runs the storage requests at the start of `input` as one unit, if this
/// node is in a group and there are at least two of them.
pub async fn store_run(input: &[u8], shared: &AppState, out: &mut BytesMut) -> Option<Run> {
    let kv = &*shared.kv;
    if !kv.is_replicated() {
        return None;
    }
    let mut reqs = Vec::new();
    let mut consumed = 0;
    while reqs.len() < MAX_RUN {
        match binary::parse(&input[consumed..], kv.max_item_size()) {
            Frame::Request { req, len } if is_store(req.header.opcode) => {
                reqs.push(req);
                consumed += len;
            }
            _ => break,
        }
    }
    if reqs.len() < 2 {
        return None;
    }
    let writes: Vec<_> = reqs.iter().map(store_write).collect();
    let outcomes = kv.write_run_async(&writes).await;
    let mut replies = Vec::with_capacity(reqs.len());
    for (req, outcome) in reqs.iter().zip(outcomes) {
        let RunOutcome::Stored(outcome) = outcome else {
            unreachable!("storage writes answer as stored");
        };
        let start = out.len();
        store_reply(req, outcome, out);
        let kind = Kind::Binary {
            opcode: req.header.opcode,
            opaque: req.header.opaque,
        };
        replies.push(((start, out.len()), kind));
    }
    Some(Run { consumed, replies })
}
