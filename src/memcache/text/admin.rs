//! Server commands: stats, flush_all, shutdown.

use bytes::BytesMut;

use crate::kv::Kv;
use crate::memcache::{reply, Flow};
use crate::state::AppState;

pub fn flush_all(kv: &Kv, delay: i64, out: &mut BytesMut) {
    match kv.flush_all(delay) {
        Ok(()) => reply::line(out, "OK"),
        Err(e) => reply::kv_error(out, &e),
    }
}

pub fn stats(shared: &AppState, args: &[u8], out: &mut BytesMut) {
    // memcached picks the report by the first argument and ignores the rest
    // (`detail` and `cachedump` take their own arguments).
    let first = args.split(|&b| b == b' ').next().unwrap_or(b"");
    let args = match first {
        b"settings" | b"reset" | b"items" | b"slabs" | b"conns" | b"sizes" => first,
        _ => args,
    };
    let report = match args {
        b"reset" => {
            shared.kv.stats.reset();
            return reply::line(out, "RESET");
        }
        // No per-item LRU dump here: memcached's answer for an empty cache.
        b"detail dump" => Vec::new(),
        a if a.starts_with(b"cachedump ") => Vec::new(),
        a => match crate::report::group(shared, a) {
            Some(report) => report,
            None => return reply::line(out, "ERROR"),
        },
    };
    for (name, value) in report {
        reply::stat(out, name, value);
    }
    reply::line(out, "END");
}

/// memcached answers `shutdown` only when started with `-A`, and then
/// takes no mode but `graceful` (which is how this server always stops).
pub fn shutdown(shared: &AppState, valid_mode: bool, out: &mut BytesMut) -> Flow {
    if !shared.config.enable_shutdown {
        reply::line(out, "ERROR: shutdown not enabled");
        return Flow::Continue;
    }
    if !valid_mode {
        reply::line(out, "CLIENT_ERROR invalid shutdown mode");
        return Flow::Continue;
    }
    shared.request_shutdown();
    Flow::Close
}
