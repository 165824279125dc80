//! `stats [group]`: the reports of [`crate::report`], plus the groups that
//! are commands rather than reports: `reset`, `detail on|off|dump` and
//! `cachedump`.

use bytes::BytesMut;

use crate::memcache::reply;
use crate::state::AppState;

pub const ERR_DETAIL_USAGE: &str = "CLIENT_ERROR usage: stats detail on|off|dump";

pub fn stats(shared: &AppState, args: &[u8], out: &mut BytesMut) {
    // memcached picks the report by the first argument and ignores the rest
    // (`detail` and `cachedump` take their own arguments).
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let first = words.next().unwrap_or(b"");
    let rest: Vec<&[u8]> = words.collect();
    match first {
        b"reset" => {
            shared.kv.stats.reset();
            shared.kv.detail.clear();
            return reply::line(out, "RESET");
        }
        b"detail" => return detail(shared, rest.first().copied().unwrap_or(b""), out),
        b"cachedump" => return cachedump(shared, &rest, out),
        _ => {}
    }
    match crate::report::group(shared, first) {
        Some(Ok(report)) => {
            for (name, value) in report {
                reply::stat(out, &name, value);
            }
            reply::line(out, "END");
        }
        Some(Err(e)) => reply::kv_error(out, &e),
        None => reply::line(out, "ERROR"),
    }
}

/// `stats detail on|off|dump`.
pub fn detail(shared: &AppState, arg: &[u8], out: &mut BytesMut) {
    let detail = &shared.kv.detail;
    match arg {
        b"on" | b"off" => {
            detail.set_enabled(arg == b"on");
            reply::line(out, "OK");
        }
        b"dump" => detail_dump(shared, out),
        _ => reply::line(out, ERR_DETAIL_USAGE),
    }
}

/// memcached's dump: `PREFIX <p> get <n> hit <n> set <n> del <n>` lines
/// and `END` (sent whether counting is on or off).
pub fn detail_dump(shared: &AppState, out: &mut BytesMut) {
    use bytes::BufMut;
    for (prefix, c) in shared.kv.detail.dump() {
        out.put_slice(b"PREFIX ");
        out.put_slice(&prefix);
        reply::line(
            out,
            &format!(" get {} hit {} set {} del {}", c.get, c.hit, c.set, c.del),
        );
    }
    reply::line(out, "END");
}

fn cachedump(shared: &AppState, args: &[&[u8]], out: &mut BytesMut) {
    use crate::rules::parse_u64;
    if args.len() < 2 {
        return reply::line(out, "CLIENT_ERROR bad command line");
    }
    let u32_of = |t: &[u8]| parse_u64(t).filter(|&n| n <= u32::MAX as u64);
    let (Some(class), Some(limit)) = (u32_of(args[0]), u32_of(args[1])) else {
        return reply::line(out, crate::memcache::frame::ERR_FORMAT);
    };
    if class >= 64 {
        return reply::line(out, "CLIENT_ERROR Illegal slab id");
    }
    super::crawler::cachedump(&shared.kv, class as usize, limit, out);
}
