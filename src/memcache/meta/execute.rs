//! Runs meta commands against [`Kv`] and writes memcached 1.6's replies:
//! a two-letter code (`HD VA EN NS EX NF ME`), then the requested return
//! flags in request order, then `W`/`Z`/`X` for stale-while-revalidate.

use base64::Engine;
use bytes::{BufMut, BytesMut};

use super::parse::{MetaCmd, MetaRequest};
use crate::kv::{
    ArithOptions, ArithResult, DeleteOutcome, Kv, KvError, MetaGetOptions, MetaHit, ReadPoint,
    RunOutcome, RunWrite, SetOptions, StoreMode, StoreOutcome,
};
use crate::memcache::reply;
use crate::rules::exptime as expiry;

pub async fn execute(kv: &Kv, req: MetaRequest<'_>, out: &mut BytesMut) {
    match req.cmd {
        MetaCmd::Get => {
            // A plain read awaits its read index (in a group) as a future;
            // one that writes goes through the log instead.
            let mut point = kv.read_point();
            if reads_only(&req) {
                match kv.fresh_async(point).await {
                    Ok(checked) => point = checked,
                    Err(e) => return reply::kv_error(out, &e),
                }
            }
            get_at(kv, &req, point, out).await
        }
        MetaCmd::Set => set(kv, &req, out).await,
        MetaCmd::Delete => delete(kv, &req, out).await,
        MetaCmd::Arith => arith(kv, &req, out).await,
        MetaCmd::Debug => debug(kv, &req, out),
    }
}

fn num(out: &mut BytesMut, n: impl itoa::Integer) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// ` <flag><number>`
fn flag_num(out: &mut BytesMut, flag: u8, n: impl itoa::Integer) {
    out.put_u8(b' ');
    out.put_u8(flag);
    num(out, n);
}

/// ` t<seconds left>`, `-1` for items that never expire.
fn ttl(out: &mut BytesMut, exptime: u64, now: u64) {
    match expiry::remaining(exptime, now) {
        Some(left) => flag_num(out, b't', left),
        None => out.put_slice(b" t-1"),
    }
}

/// ` k<key>`, base64 plus ` b` for binary keys (memcached's META_KEY).
fn key(out: &mut BytesMut, key: &[u8], binary: bool) {
    out.put_slice(b" k");
    if binary {
        out.put_slice(
            base64::engine::general_purpose::STANDARD
                .encode(key)
                .as_bytes(),
        );
        out.put_slice(b" b");
    } else {
        out.put_slice(key);
    }
}

/// The flags every reply echoes: `O` (opaque, verbatim) and `k`.
fn echo(out: &mut BytesMut, req: &MetaRequest<'_>, binary: bool) {
    for f in req.flags.iter() {
        match f[0] {
            b'O' => {
                out.put_u8(b' ');
                out.put_slice(f);
            }
            b'k' => key(out, &req.key, binary),
            _ => {}
        }
    }
}

/// Whether `req` is an `mg` that changes nothing (no touch, no vivify,
/// no win token...): a plain read.
pub fn reads_only(req: &MetaRequest<'_>) -> bool {
    req.cmd == MetaCmd::Get && !get_options(req).writes()
}

/// An `mg`'s reply, its reads from `point` (checked already for one that
/// [`reads_only`]).
pub async fn get_at(kv: &Kv, req: &MetaRequest<'_>, point: ReadPoint, out: &mut BytesMut) {
    let opts = get_options(req);
    let hit = kv.meta_get_async(&req.key, &opts, point).await;
    get(kv, req, hit, out)
}

fn get_options(req: &MetaRequest<'_>) -> MetaGetOptions {
    let o = &req.opts;
    MetaGetOptions {
        touch: o.ttl,
        vivify: o.vivify,
        recache: o.recache,
        no_update: o.no_update,
        key_binary: o.base64,
        report_access: req.flags.iter().any(|f| matches!(f[0], b'h' | b'l')),
    }
}

/// The write an `mg` that does not just read ([`reads_only`]) asks for.
pub fn get_write<'r>(req: &'r MetaRequest<'_>) -> RunWrite<'r> {
    RunWrite::MetaGet {
        key: &req.key,
        opts: get_options(req),
    }
}

/// An `mg`'s reply to what the read found.
pub fn get(
    kv: &Kv,
    req: &MetaRequest<'_>,
    found: Result<Option<MetaHit>, KvError>,
    out: &mut BytesMut,
) {
    let o = &req.opts;
    let hit = match found {
        Ok(Some(hit)) => hit,
        Ok(None) => {
            // q hides only the miss.
            if !o.quiet {
                out.put_slice(b"EN");
                echo(out, req, o.base64);
                out.put_slice(b"\r\n");
            }
            return;
        }
        Err(e) => return reply::kv_error(out, &e),
    };
    let item = &hit.item;
    let now = kv.now();
    if o.value {
        out.put_slice(b"VA ");
        num(out, item.value().len());
    } else {
        out.put_slice(b"HD");
    }
    // `t` reports the TTL as of its position: before or after `T`/`N`.
    let mut exptime = hit.old_exptime;
    for f in req.flags.iter() {
        match f[0] {
            b'T' => exptime = item.exptime(),
            b'N' if hit.created => exptime = item.exptime(),
            b's' => flag_num(out, b's', item.value().len()),
            b't' => ttl(out, exptime, now),
            b'c' => flag_num(out, b'c', item.cas()),
            b'f' => flag_num(out, b'f', item.flags()),
            b'l' => flag_num(out, b'l', now.saturating_sub(hit.atime)),
            b'h' => out.put_slice(if hit.fetched { b" h1" } else { b" h0" }),
            b'O' => {
                out.put_u8(b' ');
                out.put_slice(f);
            }
            b'k' => key(out, &req.key, item.binary_key()),
            _ => {}
        }
    }
    if hit.token_sent {
        out.put_slice(b" Z");
    }
    if hit.stale {
        out.put_slice(b" X");
    }
    if hit.won {
        out.put_slice(b" W");
    }
    out.put_slice(b"\r\n");
    if o.value {
        out.put_slice(item.value());
        out.put_slice(b"\r\n");
    }
}

async fn set(kv: &Kv, req: &MetaRequest<'_>, out: &mut BytesMut) {
    let RunOutcome::Stored(outcome) = kv.write_async(set_write(req)).await else {
        unreachable!("ms answers as stored");
    };
    set_reply(req, outcome, out);
}

/// The write an `ms` asks for.
pub fn set_write<'r>(req: &'r MetaRequest<'_>) -> RunWrite<'r> {
    let o = &req.opts;
    let mut mode = match o.mode {
        Some(b'E') => StoreMode::Add,
        Some(b'A') => StoreMode::Append,
        Some(b'P') => StoreMode::Prepend,
        Some(b'R') => StoreMode::Replace,
        _ => StoreMode::Set,
    };
    // A CAS turns set and replace into cas; append/prepend compare it too.
    if let (Some(cas), StoreMode::Set | StoreMode::Replace) = (o.cas, mode) {
        mode = StoreMode::Cas(cas);
    }
    RunWrite::Set {
        mode,
        key: &req.key,
        flags: o.client_flags,
        exptime: o.ttl.unwrap_or(0),
        value: req.data,
        opts: SetOptions {
            cas: o.cas,
            invalidate: o.invalidate,
            new_cas: o.new_cas,
            binary_key: o.base64,
        },
    }
}

/// An `ms`'s reply (none for a quiet one that stored).
pub fn set_reply(
    req: &MetaRequest<'_>,
    outcome: Result<StoreOutcome, KvError>,
    out: &mut BytesMut,
) {
    let o = &req.opts;
    let (code, cas): (&[u8], u64) = match outcome {
        Ok(StoreOutcome::Stored { .. }) if o.quiet => return,
        Ok(StoreOutcome::Stored { cas, .. }) => (b"HD", cas),
        Ok(StoreOutcome::NotStored) => (b"NS", 0),
        Ok(StoreOutcome::Exists) => (b"EX", 0),
        Ok(StoreOutcome::NotFound) => (b"NF", 0),
        Err(e) => return reply::kv_error(out, &e),
    };
    out.put_slice(code);
    for f in req.flags.iter() {
        match f[0] {
            b'O' => {
                out.put_u8(b' ');
                out.put_slice(f);
            }
            b'k' => key(out, &req.key, o.base64),
            b'c' => flag_num(out, b'c', cas),
            _ => {}
        }
    }
    out.put_slice(b"\r\n");
}

async fn delete(kv: &Kv, req: &MetaRequest<'_>, out: &mut BytesMut) {
    let RunOutcome::Deleted(outcome) = kv.write_async(delete_write(req)).await else {
        unreachable!("md answers as deleted");
    };
    delete_reply(req, outcome, out);
}

/// The write an `md` asks for: a delete, or with `I` an invalidation.
pub fn delete_write<'r>(req: &'r MetaRequest<'_>) -> RunWrite<'r> {
    let o = &req.opts;
    if o.invalidate {
        RunWrite::Invalidate {
            key: &req.key,
            cas: o.cas,
            exptime: o.ttl,
            new_cas: o.new_cas,
        }
    } else {
        RunWrite::Delete {
            key: &req.key,
            cas: o.cas,
        }
    }
}

/// An `md`'s reply (none for a quiet one that deleted).
pub fn delete_reply(
    req: &MetaRequest<'_>,
    outcome: Result<DeleteOutcome, KvError>,
    out: &mut BytesMut,
) {
    let o = &req.opts;
    let code: &[u8] = match outcome {
        Ok(DeleteOutcome::Deleted) if o.quiet => return,
        Ok(DeleteOutcome::Deleted) => b"HD",
        Ok(DeleteOutcome::NotFound) => b"NF",
        Ok(DeleteOutcome::Exists) => b"EX",
        Err(e) => return reply::kv_error(out, &e),
    };
    out.put_slice(code);
    echo(out, req, o.base64);
    out.put_slice(b"\r\n");
}

async fn arith(kv: &Kv, req: &MetaRequest<'_>, out: &mut BytesMut) {
    let RunOutcome::Arith(outcome) = kv.write_async(arith_write(req)).await else {
        unreachable!("ma answers as arithmetic");
    };
    arith_reply(kv, req, outcome, out);
}

/// The write an `ma` asks for.
pub fn arith_write<'r>(req: &'r MetaRequest<'_>) -> RunWrite<'r> {
    let o = &req.opts;
    RunWrite::Arith {
        key: &req.key,
        delta: o.delta,
        incr: !matches!(o.mode, Some(b'D' | b'-')),
        opts: ArithOptions {
            cas: o.cas,
            vivify: o.vivify.map(|ttl| (o.initial, ttl)),
            touch: o.ttl,
            new_cas: o.new_cas,
            binary_key: o.base64,
        },
    }
}

/// An `ma`'s reply (none for a quiet one that changed an existing counter).
pub fn arith_reply(
    kv: &Kv,
    req: &MetaRequest<'_>,
    outcome: Result<ArithResult, KvError>,
    out: &mut BytesMut,
) {
    let o = &req.opts;
    let (value, cas, exptime) = match outcome {
        // memcached still answers a quiet ma that created its counter.
        Ok(ArithResult::Value { created: false, .. }) if o.quiet => return,
        Ok(ArithResult::Value {
            value,
            cas,
            exptime,
            ..
        }) => (value, cas, exptime),
        Ok(miss @ (ArithResult::NotFound | ArithResult::Exists)) => {
            out.put_slice(if miss == ArithResult::NotFound {
                b"NF"
            } else {
                b"EX"
            });
            echo(out, req, o.base64);
            out.put_slice(b"\r\n");
            return;
        }
        Ok(ArithResult::NonNumeric) => {
            return reply::line(
                out,
                "CLIENT_ERROR cannot increment or decrement non-numeric value",
            )
        }
        Err(e) => return reply::kv_error(out, &e),
    };
    let digits = itoa::Buffer::new().format(value).to_owned();
    if o.value {
        out.put_slice(b"VA ");
        num(out, digits.len());
    } else {
        out.put_slice(b"HD");
    }
    let now = kv.now();
    for f in req.flags.iter() {
        match f[0] {
            b'c' => flag_num(out, b'c', cas),
            b't' => ttl(out, exptime, now),
            b'O' => {
                out.put_u8(b' ');
                out.put_slice(f);
            }
            b'k' => key(out, &req.key, o.base64),
            _ => {}
        }
    }
    out.put_slice(b"\r\n");
    if o.value {
        out.put_slice(digits.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// `me <key>`: memcached's debug line for one item, without counting or
/// recording the read.
fn debug(kv: &Kv, req: &MetaRequest<'_>, out: &mut BytesMut) {
    let item = match kv.peek(&req.key) {
        Ok(Some(item)) => item,
        Ok(None) => return reply::line(out, "EN"),
        Err(e) => return reply::kv_error(out, &e),
    };
    let now = kv.now();
    let exp = expiry::remaining(item.exptime(), now).map_or(-1, |s| s as i64);
    let la = now.saturating_sub(item.atime().unwrap_or(now));
    let fetch = if item.fetched() { "yes" } else { "no" };
    out.put_slice(b"ME ");
    if req.opts.base64 {
        out.put_slice(
            base64::engine::general_purpose::STANDARD
                .encode(&req.key)
                .as_bytes(),
        );
    } else {
        out.put_slice(&req.key);
    }
    let size = req.key.len() + item.value().len();
    let line = format!(
        " exp={exp} la={la} cas={} fetch={fetch} cls=1 size={size}\r\n",
        item.cas()
    );
    out.put_slice(line.as_bytes());
}
