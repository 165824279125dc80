//! A pipelined run of binary write requests in a replicated group (a
//! bulk load's `SETQ`s, say: storage requests, deletes, increments and
//! decrements), proposed as one ordered unit like the text protocol's
//! runs (see `memcache::text::run`): each request applies in its place and
//! gets the response it would have got alone. Any other request (a read,
//! `TOUCH`, which answers with the item, `FLUSH`) ends the run. A single
//! node never comes here. And a run of reads answered from one read index
//! ([`read_run`]).

use bytes::BytesMut;

use super::execute::{execute, found_reply, is_run_write, kv_failure, run_reply, run_write};
use super::parse::{self as binary, op, Frame};
use crate::memcache::batch::{leading, Kind, Run};
use crate::state::AppState;

/// Runs the write requests at the start of `input` as one unit, if there
/// are at least two of them. The connection calls it only in a group (a
/// single node's writes never wait for a commit round).
pub async fn write_run(input: &[u8], shared: &AppState, out: &mut BytesMut) -> Option<Run> {
    let kv = &*shared.kv;
    let (reqs, consumed) = leading(input, |rest| {
        match binary::parse(rest, kv.max_item_size()) {
            Frame::Request { req, len } if is_run_write(req.header.opcode) => Some((req, len)),
            _ => None,
        }
    });
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
    Some(Run {
        consumed,
        replies,
        mutating: true,
    })
}

/// Answers the reads at the start of `input` (`GET`, `GETK` and quiet
/// forms, and the `NOOP` that ends a quiet pipeline) from one read index,
/// if this node's reads wait for one and there are at least two of them:
/// a multi-get as binary clients send it (see `text::run::read_run`).
pub async fn read_run(input: &[u8], shared: &AppState, out: &mut BytesMut) -> Option<Run> {
    let kv = &*shared.kv;
    if !kv.reads_need_index() {
        return None;
    }
    let (reqs, consumed) = leading(input, |rest| {
        match binary::parse(rest, kv.max_item_size()) {
            Frame::Request { req, len } if is_read(req.header.opcode) => Some((req, len)),
            _ => None,
        }
    });
    if reqs.iter().filter(|r| r.header.opcode != op::NOOP).count() < 2 {
        return None;
    }
    let point = kv.fresh_async(kv.read_point()).await;
    let mut replies = Vec::with_capacity(reqs.len());
    for req in &reqs {
        let start = out.len();
        if req.header.opcode == op::NOOP {
            execute(req, shared, out).await;
        } else {
            match &point {
                Ok(p) => found_reply(req, kv.get_from(req.key, *p), out),
                Err(e) => kv_failure(out, &req.header, e),
            }
        }
        let kind = Kind::Binary {
            opcode: req.header.opcode,
            opaque: req.header.opaque,
        };
        replies.push(((start, out.len()), kind));
    }
    Some(Run {
        consumed,
        replies,
        mutating: false,
    })
}

fn is_read(opcode: u8) -> bool {
    matches!(opcode, op::GET | op::GETQ | op::GETK | op::GETKQ | op::NOOP)
}
