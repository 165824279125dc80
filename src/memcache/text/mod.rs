//! The classic text protocol: [`parse`] turns bytes into a request, and
//! [`execute`] runs it through the command modules (storage, retrieval,
//! keys, arith, admin, stats, and the operator commands of [`operator`]
//! run by [`crawler`]), recording it in the command metrics.

mod admin;
mod arith;
pub mod crawler;
mod keys;
pub mod operator;
pub mod parse;
mod retrieval;
pub mod run;
mod stats;

pub use stats::detail_dump as stats_detail_dump;
mod storage;

use bytes::BytesMut;
use std::sync::LazyLock;

use super::{meta, reply, Flow};
use crate::kv::StoreMode;
use crate::metrics::{Protocol, Timer};
use crate::state::AppState;
use parse::Request;

/// memcached's answer to `cache_memlimit` below 8 (megabytes).
pub const ERR_MEMLIMIT_TOO_SMALL: &str = "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m";

/// The `command` label values of this front end; [`command_index`] maps a
/// request to its position.
const COMMANDS: &[&str] = &[
    "get",
    "gets",
    "gat",
    "gats",
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "cas",
    "delete",
    "touch",
    "incr",
    "decr",
    "flush_all",
    "stats",
    "version",
    "verbosity",
    "mn",
    "cache_memlimit",
    "quit",
    "shutdown",
    "meta",
    "slabs",
    "lru_crawler",
];

/// This front end's metric handles (`protocol="memcache"`).
pub static METRICS: LazyLock<Protocol> = LazyLock::new(|| Protocol::new("memcache", COMMANDS));

fn command_index(req: &Request<'_>) -> usize {
    match req {
        Request::Get { cas, touch, .. } => match (touch.is_some(), cas) {
            (false, false) => 0,
            (false, true) => 1,
            (true, false) => 2,
            (true, true) => 3,
        },
        Request::Store { mode, .. } => match mode {
            StoreMode::Set => 4,
            StoreMode::Add => 5,
            StoreMode::Replace => 6,
            StoreMode::Append => 7,
            StoreMode::Prepend => 8,
            StoreMode::Cas(_) => 9,
        },
        Request::Delete { .. } => 10,
        Request::Touch { .. } => 11,
        Request::Arith { incr: true, .. } => 12,
        Request::Arith { incr: false, .. } => 13,
        Request::FlushAll { .. } => 14,
        Request::Stats { .. } => 15,
        Request::Version => 16,
        Request::Verbosity { .. } => 17,
        Request::MetaNoop => 18,
        Request::MemLimit { .. } => 19,
        Request::Quit => 20,
        Request::Shutdown { .. } => 21,
        Request::Meta(_) => 22,
        Request::Operator(op) => match op {
            operator::Op::SlabsReassign { .. } | operator::Op::SlabsAutomove { .. } => 23,
            _ => 24,
        },
    }
}

/// Whether a request may change stored data, so that under
/// `--durability sync` its reply must wait for the group commit.
pub fn mutates(req: &Request<'_>) -> bool {
    matches!(
        req,
        Request::Store { .. }
            | Request::Delete { .. }
            | Request::Touch { .. }
            | Request::Arith { .. }
            | Request::FlushAll { .. }
            | Request::Get { touch: Some(_), .. }
            | Request::Meta(_)
            | Request::MemLimit { .. }
    )
}

/// Runs one request, appending its reply (if any) to `out`, and records
/// it in the command counters and latency histogram.
pub async fn execute(req: Request<'_>, shared: &AppState, out: &mut BytesMut) -> Flow {
    let started = Timer::start();
    let command = METRICS.command(command_index(&req));
    let flow = run(req, shared, out).await;
    command.record(started);
    flow
}

async fn run(req: Request<'_>, shared: &AppState, out: &mut BytesMut) -> Flow {
    let kv = &*shared.kv;
    let mark = out.len();
    let noreply = match req {
        Request::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            noreply,
        } => {
            storage::execute(kv, mode, key, flags, exptime, data, out).await;
            noreply
        }
        Request::Get { keys, cas, touch } => {
            retrieval::execute(kv, keys, cas, touch, out).await;
            false
        }
        Request::Delete { key, noreply } => {
            keys::delete(kv, key, out).await;
            noreply
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            keys::touch(kv, key, exptime, out).await;
            noreply
        }
        Request::Arith {
            key,
            delta,
            incr,
            noreply,
        } => {
            arith::execute(kv, key, delta, incr, out).await;
            noreply
        }
        Request::FlushAll { delay, noreply } => {
            admin::flush_all(kv, delay, out).await;
            noreply
        }
        Request::Stats { args } => {
            stats::stats(shared, args, out);
            false
        }
        Request::Version => {
            reply::line(out, &format!("VERSION {}", crate::report::PROTOCOL_VERSION));
            false
        }
        // Kept for `stats settings`; logging is set by MEMCACHED_LITE_LOG.
        Request::Verbosity { level, noreply } => {
            let level = level.min(2);
            shared
                .operator
                .verbosity
                .store(level, std::sync::atomic::Ordering::Relaxed);
            reply::line(out, "OK");
            noreply
        }
        Request::Operator(op) => return crawler::execute(op, shared, out),
        Request::MetaNoop => {
            reply::line(out, "MN");
            false
        }
        // memcached refuses limits below 8 MiB (and so 0, "unlimited").
        Request::MemLimit { megabytes, noreply } if megabytes < 8 => {
            reply::line(out, ERR_MEMLIMIT_TOO_SMALL);
            noreply
        }
        Request::MemLimit { megabytes, noreply } => {
            kv.set_memory_limit(megabytes.saturating_mul(1024 * 1024));
            reply::line(out, "OK");
            noreply
        }
        Request::Meta(req) => {
            crate::kv::stats::bump(&kv.stats.cmd_meta);
            // Meta commands apply their own `q` rules.
            meta::execute::execute(kv, *req, out).await;
            false
        }
        Request::Quit => return Flow::Close,
        Request::Shutdown { valid_mode } => return admin::shutdown(shared, valid_mode, out),
    };
    if noreply {
        out.truncate(mark);
    }
    Flow::Continue
}
