//! A pipelined run of writes (storage commands, `delete`, `incr`/`decr`,
//! `touch`, `gat`/`gats`, meta `ms`/`md`/`ma` and `mg`s that write) in a
//! replicated group, and a run of reads
//! answered from one read index ([`read_run`]).
//!
//! In a group each write waits for its entry's commit, and a connection
//! answers its requests in order, so a client pipelining sets used to get
//! one commit round per set: 4 connections pipelining 16 sets each did
//! about 2,000 sets/s on a 3-node group where 64 one-request connections
//! did 13,000. So when the input holds several complete write commands in
//! a row, they are proposed together, as one ordered unit
//! ([`Kv::write_run_async`]): each still applies in its place (a later
//! command of the run sees the earlier ones' effects), and the run's
//! replies are the ones the commands would have got one by one. A `gat`
//! is a touch-and-read per key (a meta get with a new exptime, whose
//! answer carries the item as that write left it), so one `gat` of several
//! keys is a run by itself. Anything
//! else (a read, which must see the run's writes, a plain `mg` included;
//! `flush_all`) ends the run and goes the usual way. A single node never
//! comes here: its writes never wait for a commit round.

use bytes::BytesMut;

use super::super::meta::{self, parse::MetaCmd};
use super::parse::{self, Frame, Request};
use super::{arith, command_index, keys, retrieval, storage, METRICS};
use crate::kv::{ArithOptions, ArithOutcome, MetaGetOptions, RunOutcome, RunWrite, SetOptions};
use crate::memcache::batch::{leading, Kind, Run};
use crate::memcache::reply;
use crate::metrics::Timer;
use crate::state::AppState;

/// Whether `req` joins a run of writes.
fn is_run_write(req: &Request<'_>) -> bool {
    matches!(req, Request::Get { touch: Some(_), .. }) || write_of(req).is_some()
}

/// The run's writes for `req`, with their `noreply`: a `gat` gives one per
/// key, the others one.
fn push_writes<'r>(req: &'r Request<'_>, writes: &mut Vec<(RunWrite<'r>, bool)>) {
    match req {
        &Request::Get {
            keys,
            touch: Some(exptime),
            ..
        } => writes.extend(keys.iter().map(|key| {
            let opts = MetaGetOptions {
                touch: Some(exptime),
                ..MetaGetOptions::default()
            };
            (RunWrite::MetaGet { key, opts }, false)
        })),
        _ => writes.extend(write_of(req)),
    }
}

/// A single-write command of the run, with its `noreply` (a meta `ms`
/// answers by its own `q` rules).
fn write_of<'r>(req: &'r Request<'_>) -> Option<(RunWrite<'r>, bool)> {
    Some(match req {
        &Request::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            noreply,
        } => (
            RunWrite::Set {
                mode,
                key,
                flags,
                exptime,
                value: data,
                opts: SetOptions::default(),
            },
            noreply,
        ),
        &Request::Delete { key, noreply } => (RunWrite::Delete { key, cas: None }, noreply),
        &Request::Arith {
            key,
            delta,
            incr,
            noreply,
        } => (
            RunWrite::Arith {
                key,
                delta,
                incr,
                opts: ArithOptions::default(),
            },
            noreply,
        ),
        &Request::Touch {
            key,
            exptime,
            noreply,
        } => (RunWrite::Touch { key, exptime }, noreply),
        Request::Meta(m) => match m.cmd {
            MetaCmd::Set => (meta::execute::set_write(m), false),
            MetaCmd::Delete => (meta::execute::delete_write(m), false),
            MetaCmd::Arith => (meta::execute::arith_write(m), false),
            // A plain read ends the run (see `read_run`); one that
            // touches, vivifies or takes a token is a write.
            MetaCmd::Get if !meta::execute::reads_only(m) => (meta::execute::get_write(m), false),
            MetaCmd::Get | MetaCmd::Debug => return None,
        },
        _ => return None,
    })
}

/// Runs the write commands at the start of `input` as one unit, if they
/// make at least two writes. The connection calls it only in a group (a
/// single node's writes never wait for a commit round).
pub async fn write_run(
    input: &[u8],
    max_item: usize,
    shared: &AppState,
    out: &mut BytesMut,
) -> Option<Run> {
    let kv = &*shared.kv;
    let (reqs, consumed) = leading(input, |rest| match parse::parse(rest, max_item) {
        Frame::Request { req, len } if is_run_write(&req) => Some((req, len)),
        _ => None,
    });
    let mut writes = Vec::with_capacity(reqs.len());
    for req in &reqs {
        push_writes(req, &mut writes);
    }
    if writes.len() < 2 {
        return None;
    }
    let (writes, quiet): (Vec<_>, Vec<_>) = writes.into_iter().unzip();
    let started = Timer::start();
    let mut outcomes = kv.write_run_async(&writes).await.into_iter();
    let mut quiet = quiet.into_iter();
    let mut replies = Vec::with_capacity(reqs.len());
    for req in &reqs {
        let start = out.len();
        if let &Request::Get { keys, cas, .. } = req {
            // Every key's outcome is taken, even after an error ends the reply.
            let mut whole = true;
            for key in keys.iter() {
                let Some(RunOutcome::MetaGot(got)) = outcomes.next() else {
                    unreachable!("a gat proposes a meta get per key");
                };
                quiet.next();
                let item = got.map(|hit| hit.map(|h| h.item));
                whole = whole && retrieval::push_found(out, start, key, item, cas);
            }
            if whole {
                reply::line(out, "END");
            }
            METRICS.command(command_index(req)).record(started);
            replies.push(((start, out.len()), Kind::Text));
            continue;
        }
        let (outcome, noreply) = (
            outcomes.next().expect("an outcome per write"),
            quiet.next().expect("a noreply per write"),
        );
        if let Request::Meta(_) = req {
            crate::kv::stats::bump(&kv.stats.cmd_meta);
        }
        match (outcome, req) {
            (RunOutcome::Stored(o), Request::Meta(m)) => meta::execute::set_reply(m, o, out),
            (RunOutcome::Deleted(o), Request::Meta(m)) => meta::execute::delete_reply(m, o, out),
            (RunOutcome::Arith(o), Request::Meta(m)) => meta::execute::arith_reply(kv, m, o, out),
            (RunOutcome::MetaGot(o), Request::Meta(m)) => meta::execute::get(kv, m, o, out),
            (RunOutcome::Stored(o), _) => storage::reply(o, out),
            (RunOutcome::Deleted(o), _) => keys::delete_reply(o, out),
            (RunOutcome::Arith(o), _) => arith::reply(o.map(ArithOutcome::from), out),
            (RunOutcome::Touched(o), _) => keys::touch_reply(o, out),
            (RunOutcome::MetaGot(_), _) => unreachable!("only an mg proposes a meta get"),
        }
        if noreply {
            out.truncate(start);
        }
        METRICS.command(command_index(req)).record(started);
        replies.push(((start, out.len()), Kind::Text));
    }
    Some(Run {
        consumed,
        replies,
        mutating: true,
    })
}

/// A read a run of reads may carry: a plain `get`/`gets`, a meta `mg`
/// that changes nothing, `mn`; and whether it reads.
fn read_of(req: &Request<'_>) -> Option<bool> {
    match req {
        Request::Get { touch: None, .. } => Some(true),
        Request::Meta(m) if meta::execute::reads_only(m) => Some(true),
        Request::MetaNoop => Some(false),
        _ => None,
    }
}

/// Answers the reads at the start of `input` from one read index, if this
/// node's reads wait for one and there are at least two of them.
///
/// In a group a linearizable read waits for a read-index round that
/// started after it arrived, and a connection runs its requests one after
/// another, so a pipeline of 50 `mg`s on a follower took 50 rounds in a
/// row. Every request already in the input arrived before this run began,
/// so one round started now serves them all; a write ends the run (the
/// reads after it take a round that started after it was acknowledged).
pub async fn read_run(
    input: &[u8],
    max_item: usize,
    shared: &AppState,
    out: &mut BytesMut,
) -> Option<Run> {
    let kv = &*shared.kv;
    if !kv.reads_need_index() {
        return None;
    }
    let (reqs, consumed) = leading(input, |rest| match parse::parse(rest, max_item) {
        Frame::Request { req, len } if read_of(&req).is_some() => Some((req, len)),
        _ => None,
    });
    if reqs.iter().filter(|r| read_of(r) == Some(true)).count() < 2 {
        return None;
    }
    let started = Timer::start();
    let point = kv.fresh_async(kv.read_point()).await;
    let mut replies = Vec::with_capacity(reqs.len());
    for req in &reqs {
        let start = out.len();
        match (req, &point) {
            (Request::MetaNoop, _) => reply::line(out, "MN"),
            (_, Err(e)) => reply::kv_error(out, e),
            (&Request::Get { keys, cas, .. }, &Ok(p)) => {
                retrieval::answer(kv, keys, cas, None, p, out).await
            }
            (Request::Meta(m), &Ok(p)) => {
                crate::kv::stats::bump(&kv.stats.cmd_meta);
                meta::execute::get_at(kv, m, p, out).await
            }
            _ => unreachable!("read_of admits only these"),
        }
        METRICS.command(command_index(req)).record(started);
        replies.push(((start, out.len()), Kind::Text));
    }
    Some(Run {
        consumed,
        replies,
        mutating: false,
    })
}
