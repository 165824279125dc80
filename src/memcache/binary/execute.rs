//! Runs binary-protocol requests against [`crate::kv::Kv`] with memcached 1.6's
//! statuses, CAS handling and quiet-command rules: quiet variants send
//! nothing on success (getq/getkq not even on a miss), errors always.

use bytes::BytesMut;

use super::parse::{self as binary, op, status, Frame, Header, Request};
use crate::kv::{
    ArithOptions, ArithResult, DeleteOutcome, Item, KvError, MetaGetOptions, RunOutcome, RunWrite,
    SetOptions, StoreMode, StoreOutcome,
};
use crate::memcache::Flow;
use crate::state::AppState;

/// What one step over the read buffer did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Incomplete {
        need: usize,
    },
    /// Consumed `len` bytes; discard `skip` more as they arrive.
    Done {
        flow: Flow,
        len: usize,
        skip: usize,
    },
}

/// Parses and runs the first request in `buf`, appending replies to `out`.
pub async fn step(buf: &[u8], shared: &AppState, out: &mut BytesMut) -> Step {
    match binary::parse(buf, shared.kv.max_item_size()) {
        Frame::Incomplete { need } => Step::Incomplete { need },
        Frame::Close => Step::Done {
            flow: Flow::Close,
            len: 0,
            skip: 0,
        },
        Frame::Refuse {
            header,
            status,
            len,
            skip,
            close,
            discard_key,
        } => {
            if let Some(key) = discard_key {
                if let Err(e) = shared.kv.discard(key) {
                    tracing::warn!("dropping oversized key's old value failed: {e}");
                }
            }
            error(out, header.opcode, header.opaque, status);
            let flow = if close { Flow::Close } else { Flow::Continue };
            Step::Done { flow, len, skip }
        }
        Frame::Request { req, len } => Step::Done {
            flow: execute(&req, shared, out).await,
            len,
            skip: 0,
        },
    }
}

fn error(out: &mut BytesMut, opcode: u8, opaque: u32, status: u16) {
    binary::response(
        out,
        opcode,
        status,
        opaque,
        0,
        &[],
        &[],
        binary::status_text(status).as_bytes(),
    );
}

/// The reply to a write the store refused because its disk is full or
/// failing (`ETMPFAIL`, the reason as the body); the connection also uses
/// it for a batch whose commit failed.
pub fn refused(out: &mut BytesMut, opcode: u8, opaque: u32, why: &str) {
    binary::response(
        out,
        opcode,
        status::ETMPFAIL,
        opaque,
        0,
        &[],
        &[],
        why.as_bytes(),
    );
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("validated extras length"))
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("validated extras length"))
}

/// A success response, unless the request is quiet.
fn success(out: &mut BytesMut, h: &Header, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) {
    if !h.quiet() {
        binary::response(
            out,
            h.opcode,
            status::SUCCESS,
            h.opaque,
            cas,
            extras,
            key,
            value,
        );
    }
}

/// A failed command's response: each failure its own status; a store
/// failure's detail goes to the log only.
pub fn kv_failure(out: &mut BytesMut, h: &Header, e: &KvError) {
    let fail = |out: &mut BytesMut, status: u16| error(out, h.opcode, h.opaque, status);
    match e {
        // A full or failing disk: a temporary failure, with the reason as
        // the body (the store logs the fault once).
        e if e.storage_fault().is_some() => {
            let why = e.storage_fault().map(|f| f.to_string()).unwrap_or_default();
            refused(out, h.opcode, h.opaque, &why)
        }
        KvError::TooLarge => fail(out, status::E2BIG),
        KvError::NoMemory => fail(out, status::ENOMEM),
        KvError::Store(e) => {
            tracing::error!("binary command {:#04x} failed in the store: {e}", h.opcode);
            fail(out, status::EINTERNAL)
        }
        KvError::NoQuorum => fail(out, status::ETMPFAIL),
        KvError::Replica(why) => {
            tracing::debug!("binary command {:#04x}: {why}", h.opcode);
            fail(out, status::NOT_SUPPORTED)
        }
    }
}

/// Whether `opcode` is a storage command (set, add, replace, append,
/// prepend and their quiet forms).
fn is_store(opcode: u8) -> bool {
    matches!(
        opcode,
        op::SET
            | op::SETQ
            | op::ADD
            | op::ADDQ
            | op::REPLACE
            | op::REPLACEQ
            | op::APPEND
            | op::APPENDQ
            | op::PREPEND
            | op::PREPENDQ
    )
}

/// Whether `opcode` is a write that a pipelined run may carry (see
/// `run`): a storage command, a delete, an increment or decrement, a
/// touch (`GAT`, `TOUCH`), or their quiet forms.
pub fn is_run_write(opcode: u8) -> bool {
    is_store(opcode)
        || matches!(
            opcode,
            op::DELETE
                | op::DELETEQ
                | op::INCREMENT
                | op::INCREMENTQ
                | op::DECREMENT
                | op::DECREMENTQ
                | op::GAT
                | op::GATQ
                | op::GATK
                | op::GATKQ
                | op::TOUCH
        )
}

/// The write a request of [`is_run_write`] asks for.
pub fn run_write<'a>(req: &Request<'a>) -> RunWrite<'a> {
    let h = &req.header;
    let cas = (h.cas != 0).then_some(h.cas);
    match h.opcode {
        op::DELETE | op::DELETEQ => RunWrite::Delete { key: req.key, cas },
        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => {
            let e = req.extras;
            let (delta, initial, expiration) = (be_u64(e), be_u64(&e[8..]), be_u32(&e[16..]));
            RunWrite::Arith {
                key: req.key,
                delta,
                incr: matches!(h.opcode, op::INCREMENT | op::INCREMENTQ),
                opts: ArithOptions {
                    cas,
                    // 0xffffffff: fail on a miss instead of creating the counter.
                    vivify: (expiration != u32::MAX).then_some((initial, expiration as i64)),
                    ..ArithOptions::default()
                },
            }
        }
        op::GAT | op::GATQ | op::GATK | op::GATKQ | op::TOUCH => RunWrite::MetaGet {
            key: req.key,
            opts: MetaGetOptions {
                touch: Some(be_u32(req.extras) as i64),
                ..MetaGetOptions::default()
            },
        },
        _ => store_write(req),
    }
}

/// The response to a request of [`is_run_write`] (none for a quiet one
/// that succeeded).
pub fn run_reply(req: &Request<'_>, outcome: RunOutcome, out: &mut BytesMut) {
    let h = &req.header;
    let fail = |out: &mut BytesMut, status: u16| error(out, h.opcode, h.opaque, status);
    match outcome {
        RunOutcome::Stored(o) => store_reply(req, o, out),
        RunOutcome::Deleted(o) => match o {
            Ok(DeleteOutcome::Deleted) => success(out, h, 0, &[], &[], &[]),
            Ok(DeleteOutcome::NotFound) => fail(out, status::KEY_ENOENT),
            Ok(DeleteOutcome::Exists) => fail(out, status::KEY_EEXISTS),
            Err(e) => kv_failure(out, h, &e),
        },
        RunOutcome::Arith(o) => match o {
            Ok(ArithResult::Value { value, cas, .. }) => {
                success(out, h, cas, &[], &[], &value.to_be_bytes())
            }
            Ok(ArithResult::NotFound) => fail(out, status::KEY_ENOENT),
            Ok(ArithResult::Exists) => fail(out, status::KEY_EEXISTS),
            Ok(ArithResult::NonNumeric) => fail(out, status::DELTA_BADVAL),
            Err(e) => kv_failure(out, h, &e),
        },
        RunOutcome::MetaGot(o) => found_reply(req, o.map(|hit| hit.map(|h| h.item)), out),
        RunOutcome::Touched(_) => unreachable!("binary TOUCH answers with the item (a meta get)"),
    }
}

/// The write a storage request ([`is_store`]) asks for.
fn store_write<'a>(req: &Request<'a>) -> RunWrite<'a> {
    let h = &req.header;
    let (flags, exptime) = if req.extras.len() == 8 {
        (be_u32(req.extras), be_u32(&req.extras[4..]) as i64)
    } else {
        (0, 0)
    };
    let base = base_mode(h.opcode);
    let appending = matches!(base, StoreMode::Append | StoreMode::Prepend);
    // memcached: any non-zero CAS makes set/add/replace a cas.
    let mode = if h.cas != 0 && !appending {
        StoreMode::Cas(h.cas)
    } else {
        base
    };
    RunWrite::Set {
        mode,
        key: req.key,
        flags,
        exptime,
        value: req.value,
        opts: SetOptions {
            cas: (h.cas != 0).then_some(h.cas),
            ..SetOptions::default()
        },
    }
}

fn base_mode(opcode: u8) -> StoreMode {
    match opcode {
        op::SET | op::SETQ => StoreMode::Set,
        op::ADD | op::ADDQ => StoreMode::Add,
        op::REPLACE | op::REPLACEQ => StoreMode::Replace,
        op::APPEND | op::APPENDQ => StoreMode::Append,
        _ => StoreMode::Prepend,
    }
}

/// A storage request's response (none for a quiet one that succeeded).
fn store_reply(req: &Request<'_>, outcome: Result<StoreOutcome, KvError>, out: &mut BytesMut) {
    let h = &req.header;
    let fail = |out: &mut BytesMut, status: u16| error(out, h.opcode, h.opaque, status);
    match outcome {
        Ok(StoreOutcome::Stored { cas, .. }) => success(out, h, cas, &[], &[], &[]),
        Ok(StoreOutcome::Exists) => fail(out, status::KEY_EEXISTS),
        Ok(StoreOutcome::NotFound) => fail(out, status::KEY_ENOENT),
        Ok(StoreOutcome::NotStored) | Err(KvError::TooLarge | KvError::NoMemory) => fail(
            out,
            match base_mode(h.opcode) {
                StoreMode::Add => status::KEY_EEXISTS,
                StoreMode::Replace => status::KEY_ENOENT,
                _ => status::NOT_STORED,
            },
        ),
        Err(e) => kv_failure(out, h, &e),
    }
}

/// The response to a read (`GET`, `GETK`, `GAT`, `TOUCH` and quiet
/// forms) that `found` the item, or not.
pub fn found_reply(req: &Request<'_>, found: Result<Option<Item>, KvError>, out: &mut BytesMut) {
    let h = &req.header;
    let with_key = matches!(h.opcode, op::GETK | op::GETKQ | op::GATK | op::GATKQ);
    match found {
        Ok(Some(item)) => {
            // Hits are answered even by the quiet variants.
            let key: &[u8] = if with_key { req.key } else { b"" };
            let value = if h.opcode == op::TOUCH {
                &[][..]
            } else {
                item.value()
            };
            let flags = item.flags().to_be_bytes();
            binary::response(
                out,
                h.opcode,
                status::SUCCESS,
                h.opaque,
                item.cas(),
                &flags,
                key,
                value,
            );
        }
        Ok(None) if h.quiet() => {}
        Ok(None) if with_key => {
            binary::response(
                out,
                h.opcode,
                status::KEY_ENOENT,
                h.opaque,
                0,
                &[],
                req.key,
                &[],
            );
        }
        Ok(None) => error(out, h.opcode, h.opaque, status::KEY_ENOENT),
        Err(e) => kv_failure(out, h, &e),
    }
}

/// Runs one validated request.
pub async fn execute(req: &Request<'_>, shared: &AppState, out: &mut BytesMut) -> Flow {
    let h = &req.header;
    let kv = &*shared.kv;
    let ok = |out: &mut BytesMut, cas: u64, extras: &[u8], key: &[u8], value: &[u8]| {
        success(out, h, cas, extras, key, value)
    };
    let fail = |out: &mut BytesMut, status: u16| error(out, h.opcode, h.opaque, status);
    let kv_fail = |out: &mut BytesMut, e: &KvError| kv_failure(out, h, e);
    match h.opcode {
        op::GET | op::GETQ | op::GETK | op::GETKQ => {
            found_reply(req, kv.get_async(req.key).await, out);
        }
        opcode if is_run_write(opcode) => {
            let outcome = kv.write_async(run_write(req)).await;
            run_reply(req, outcome, out);
        }
        op::QUIT | op::QUITQ => {
            ok(out, 0, &[], &[], &[]);
            return Flow::Close;
        }
        op::FLUSH | op::FLUSHQ => {
            let delay = if req.extras.len() == 4 {
                be_u32(req.extras) as i64
            } else {
                0
            };
            match kv.flush_all_async(delay).await {
                Ok(()) => ok(out, 0, &[], &[], &[]),
                Err(e) => kv_fail(out, &e),
            }
        }
        op::NOOP => ok(out, 0, &[], &[], &[]),
        op::VERSION => ok(out, 0, &[], &[], crate::report::PROTOCOL_VERSION.as_bytes()),
        op::STAT => stat(req, shared, out),
        _ => fail(out, status::UNKNOWN_COMMAND),
    }
    Flow::Continue
}

/// `stat [group]`: one packet per statistic, then an empty one. `detail
/// on|off` answers just the empty one and `detail dump` one `detailed`
/// packet holding the text dump, as memcached does.
fn stat(req: &Request<'_>, shared: &AppState, out: &mut BytesMut) {
    let h = &req.header;
    let packet = |out: &mut BytesMut, name: &[u8], value: &[u8]| {
        binary::response(
            out,
            h.opcode,
            status::SUCCESS,
            h.opaque,
            0,
            &[],
            name,
            value,
        )
    };
    match req.key {
        b"reset" => {
            shared.kv.stats.reset();
            shared.kv.detail.clear();
        }
        key if key.starts_with(b"detail") => match &key[6..] {
            rest if rest.starts_with(b" dump") => {
                let mut dump = BytesMut::new();
                crate::memcache::text::stats_detail_dump(shared, &mut dump);
                packet(out, b"detailed", &dump);
            }
            rest if rest.starts_with(b" on") => shared.kv.detail.set_enabled(true),
            rest if rest.starts_with(b" off") => shared.kv.detail.set_enabled(false),
            _ => return error(out, h.opcode, h.opaque, status::KEY_ENOENT),
        },
        group => match crate::report::group(shared, group) {
            Some(Ok(report)) => {
                for (name, value) in report {
                    packet(out, name.as_bytes(), value.to_string().as_bytes());
                }
            }
            Some(Err(e)) => {
                tracing::error!("binary stat failed in the store: {e}");
                return error(out, h.opcode, h.opaque, status::EINTERNAL);
            }
            None => return error(out, h.opcode, h.opaque, status::KEY_ENOENT),
        },
    }
    packet(out, &[], &[]);
}
