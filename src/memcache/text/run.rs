//! A pipelined run of storage commands in a replicated group.
//!
//! In a group each write waits for its entry's commit, and a connection
//! answers its requests in order, so a client pipelining sets used to get
//! one commit round per set: 4 connections pipelining 16 sets each did
//! about 1,000 sets/s on a 3-node group where 64 one-request connections
//! did 6,000. So when the input holds several complete storage commands in
//! a row, they are proposed together, as one ordered unit
//! ([`Kv::set_run_async`]): each still applies in its place (a later
//! command of the run sees the earlier ones' effects), and the run's
//! replies are the ones the commands would have got one by one. Anything
//! else (a read, which must see the run's writes, other writes) ends the
//! run and goes the usual way. A single node never comes here: its writes
//! never wait for a commit round.

use bytes::BytesMut;

use super::parse::{self, Frame, Request};
use super::{command_index, storage, METRICS};
use crate::kv::SetRequest;
use crate::metrics::Timer;
use crate::state::AppState;

/// The most commands proposed as one run (a run's writes and replies are
/// held in memory together).
pub const MAX_RUN: usize = 64;

/// What a run did: input bytes consumed, and each reply's range in the
/// output (empty for `noreply`).
pub struct Run {
    pub consumed: usize,
    pub replies: Vec<(usize, usize)>,
}

/// Runs the storage commands at the start of `input` as one unit, if this
/// node is in a group and there are at least two of them.
pub async fn storage_run(
    input: &[u8],
    max_item: usize,
    shared: &AppState,
    out: &mut BytesMut,
) -> Option<Run> {
    let kv = &*shared.kv;
    if !kv.is_replicated() {
        return None;
    }
    let mut sets: Vec<SetRequest<'_>> = Vec::new();
    let mut quiet = Vec::new();
    let mut indexes = Vec::new();
    let mut consumed = 0;
    while sets.len() < MAX_RUN {
        let Frame::Request { req, len } = parse::parse(&input[consumed..], max_item) else {
            break;
        };
        indexes.push(command_index(&req));
        let Request::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            noreply,
        } = req
        else {
            indexes.pop();
            break;
        };
        sets.push((mode, key, flags, exptime, data));
        quiet.push(noreply);
        consumed += len;
    }
    if sets.len() < 2 {
        return None;
    }
    let started = Timer::start();
    let outcomes = kv.set_run_async(&sets).await;
    let mut replies = Vec::with_capacity(outcomes.len());
    for ((outcome, noreply), index) in outcomes.into_iter().zip(quiet).zip(indexes) {
        let start = out.len();
        storage::reply(outcome, out);
        if noreply {
            out.truncate(start);
        }
        METRICS.command(index).record(started);
        replies.push((start, out.len()));
    }
    Some(Run { consumed, replies })
}
