//! Runs the operator commands of [`super::operator`] and streams
//! `lru_crawler metadump`: the connection asks [`metadump_step`] for one
//! page at a time, writing out what it got before asking for more, so a
//! dump of any store holds one page of items and the output buffer's high
//! water in memory, and never holds a runtime worker for more than a page.

use std::sync::atomic::Ordering;

use bytes::{BufMut, BytesMut};

use super::operator::{Classes, Op};
use crate::kv::sizes::SlabClasses;
use crate::kv::{Item, Kv};
use crate::memcache::{reply, Flow};
use crate::state::AppState;

/// Items read from the store per metadump step.
const PAGE: usize = 256;
const DISABLED: &str = "CLIENT_ERROR lru crawler disabled";

pub fn execute(op: Op, shared: &AppState, out: &mut BytesMut) -> Flow {
    let ops = &shared.operator;
    let crawler_on = ops.crawler_enabled.load(Ordering::Relaxed);
    let msg = match op {
        Op::SlabsReassign { src, dst } => {
            // There are never spare pages to move: no slab allocator.
            let classes = shared.kv.slab_classes().len() as i64;
            let valid = |c: i64| (1..=classes).contains(&c);
            if src == dst {
                "SAME src and dst class are identical"
            } else if !valid(src) || !valid(dst) {
                "BADCLASS invalid src or dst class id"
            } else {
                "NOSPARE source class has no spare pages"
            }
        }
        Op::SlabsAutomove { level, noreply } => {
            if let Some(level) = level {
                ops.slab_automove.store(level, Ordering::Relaxed);
            }
            if noreply {
                return Flow::Continue;
            }
            "OK"
        }
        Op::CrawlerCrawl(_) | Op::CrawlerMetadump(_) if !crawler_on => DISABLED,
        // Expired items are reclaimed by the sweeper all the time; a crawl
        // has nothing to add, so it is acknowledged.
        Op::CrawlerCrawl(_) => {
            crate::kv::stats::bump(&shared.kv.stats.lru_crawler_starts);
            "OK"
        }
        Op::CrawlerMetadump(classes) => {
            crate::kv::stats::bump(&shared.kv.stats.lru_crawler_starts);
            return Flow::Dump(classes);
        }
        Op::CrawlerSleep(n) => {
            ops.crawler_sleep.store(n, Ordering::Relaxed);
            "OK"
        }
        Op::CrawlerToCrawl(n) => {
            ops.crawler_tocrawl.store(n, Ordering::Relaxed);
            "OK"
        }
        Op::CrawlerEnable if crawler_on => "ERROR failed to start lru crawler thread",
        Op::CrawlerEnable | Op::CrawlerDisable => {
            ops.crawler_enabled
                .store(op == Op::CrawlerEnable, Ordering::Relaxed);
            "OK"
        }
    };
    reply::line(out, msg);
    Flow::Continue
}

/// Where a metadump stands: the last key written.
#[derive(Debug, Default)]
pub struct Metadump {
    after: Option<sled::IVec>,
}

/// Appends the next page of a metadump of `classes` to `out`; returns true
/// once the dump is over (its `END` or an error line written).
pub fn metadump_step(kv: &Kv, classes: Classes, dump: &mut Metadump, out: &mut BytesMut) -> bool {
    let (table, now) = (kv.slab_classes(), kv.now());
    match kv.dump_page(dump.after.as_deref(), PAGE) {
        Ok((page, more)) => {
            for (key, item) in &page {
                let class = table.class_of_item(key.len(), item);
                if classes.contains(class) {
                    metadump_line(out, key, item, class, now);
                }
            }
            dump.after = page.last().map(|(k, _)| k.clone());
            if !more {
                reply::line(out, "END");
            }
            !more
        }
        Err(e) => {
            reply::kv_error(out, &e);
            true
        }
    }
}

/// `key=<url-encoded> exp=<abs|-1> la=<abs> cas=<n> fetch=<yes|no>
/// cls=<class> size=<memcached size>\n` (memcached ends these lines with a
/// bare `\n`; only `END` has `\r\n`).
fn metadump_line(out: &mut BytesMut, key: &[u8], item: &Item, class: usize, now: u64) {
    use std::fmt::Write;
    out.put_slice(b"key=");
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.put_u8(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    let exp = match item.exptime() {
        0 => -1,
        t => t as i64,
    };
    let size = crate::kv::sizes::memcached_size(key.len(), item.value().len(), item.flags());
    let _ = writeln!(
        out,
        " exp={exp} la={} cas={} fetch={} cls={class} size={size}",
        item.atime().unwrap_or(now),
        item.cas(),
        if item.fetched() { "yes" } else { "no" },
    );
}

/// `stats cachedump <class> <limit>`: `ITEM <key> [<bytes> b; <exp> s]`
/// for up to `limit` items of the class (0: all), at most 2 MB of reply,
/// as memcached; keys given base64-encoded (meta `b`) are skipped, as
/// memcached skips binary keys.
pub fn cachedump(kv: &Kv, class: usize, limit: u64, out: &mut BytesMut) {
    const MEMLIMIT: usize = 2 * 1024 * 1024;
    let table: SlabClasses = kv.slab_classes();
    let (start, mut shown, mut after) = (out.len(), 0u64, None::<sled::IVec>);
    loop {
        let (page, more) = match kv.dump_page(after.as_deref(), PAGE) {
            Ok(p) => p,
            Err(e) => {
                out.truncate(start);
                return reply::kv_error(out, &e);
            }
        };
        for (key, item) in &page {
            if (limit != 0 && shown >= limit) || item.binary_key() {
                continue;
            }
            if table.class_of_item(key.len(), item) != class {
                continue;
            }
            let line = format!(
                "ITEM {} [{} b; {} s]\r\n",
                String::from_utf8_lossy(key),
                item.value().len(),
                item.exptime()
            );
            if out.len() - start + line.len() + 6 > MEMLIMIT {
                return reply::line(out, "END");
            }
            out.put_slice(line.as_bytes());
            shown += 1;
        }
        after = page.last().map(|(k, _)| k.clone());
        if !more || (limit != 0 && shown >= limit) {
            return reply::line(out, "END");
        }
    }
}
