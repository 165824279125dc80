//! Server commands: flush_all, shutdown (stats: [`super::stats`]).

use bytes::BytesMut;

use crate::kv::Kv;
use crate::memcache::{reply, Flow};
use crate::state::AppState;

pub async fn flush_all(kv: &Kv, delay: i64, out: &mut BytesMut) {
    match kv.flush_all_async(delay).await {
        Ok(()) => reply::line(out, "OK"),
        Err(e) => reply::kv_error(out, &e),
    }
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
