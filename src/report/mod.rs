//! The `stats` reports, in memcached's names and order: one source for the
//! memcached text and binary protocols and the HTTP API, so all three
//! report the same figures.

mod conns;
mod settings;
mod slabs;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::kv::KvError;
use crate::state::AppState;
pub use settings::settings;

/// The memcached protocol version this server implements and reports
/// (`version`, `stats`, the binary `VERSION`).
pub const PROTOCOL_VERSION: &str = "1.6.18";

/// One `stats` value: memcached prints both kinds the same way, JSON does not.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum StatValue {
    Int(u64),
    Text(String),
}

impl std::fmt::Display for StatValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatValue::Int(n) => write!(f, "{n}"),
            StatValue::Text(s) => f.write_str(s),
        }
    }
}

/// One report: (name, value) pairs in the order memcached prints them.
pub type Report = Vec<(&'static str, StatValue)>;

/// Rows of a report whose names are built (`items:1:number`).
pub type Rows = Vec<(Cow<'static, str>, StatValue)>;

/// The report `stats <group>` asks for, `None` for an unknown group.
/// `stats reset`, `detail` and `cachedump` are commands, not reports:
/// callers handle them. `items`, `slabs` and `sizes` walk the store (see
/// [`crate::kv::sizes`]).
pub fn group(state: &AppState, name: &[u8]) -> Option<Result<Rows, KvError>> {
    let fixed = |r: Report| {
        Some(Ok(r
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), v))
            .collect()))
    };
    match name {
        b"" => fixed(general(state)),
        b"settings" => fixed(settings::settings(state)),
        b"items" => Some(state.kv.size_report().map(|r| slabs::items(&r))),
        b"slabs" => Some(state.kv.size_report().map(|r| slabs::slabs(&r))),
        b"sizes" => Some(state.kv.size_report().map(|r| slabs::sizes(&r))),
        b"conns" => Some(Ok(conns::conns(state))),
        _ => None,
    }
}

/// The general `stats` report: every field memcached 1.6.18 prints, in its
/// order, then this server's own. Fields for machinery this server does
/// not have (slab mover, LRU maintainer, log watchers, libevent, response
/// objects) are 0 (`libevent` is `none`); see docs/operator-commands.md.
pub fn general(state: &AppState) -> Report {
    use StatValue::{Int, Text};
    let kv = &state.kv;
    let s = &kv.stats;
    let c = |n: &AtomicU64| Int(n.load(Ordering::Relaxed));
    let now = kv.now();
    let (user, system) = rusage();
    let curr = state.curr_connections.load(Ordering::Relaxed);
    let zero = |names: &[&'static str], out: &mut Report| {
        out.extend(names.iter().map(|&n| (n, Int(0))));
    };
    let mut out = vec![
        ("pid", Int(std::process::id() as u64)),
        ("uptime", Int(now.saturating_sub(kv.started()))),
        ("time", Int(now)),
        ("version", Text(PROTOCOL_VERSION.into())),
        ("libevent", Text("none".into())),
        (
            "memcached_lite_version",
            Text(env!("CARGO_PKG_VERSION").into()),
        ),
        ("pointer_size", Int(usize::BITS as u64)),
        ("rusage_user", Text(user)),
        ("rusage_system", Text(system)),
        ("max_connections", Int(state.config.max_connections as u64)),
        ("curr_connections", Int(curr)),
        (
            "total_connections",
            Int(state.total_connections.load(Ordering::Relaxed)),
        ),
        ("rejected_connections", c(&s.rejected_connections)),
        ("connection_structures", Int(curr)),
    ];
    zero(
        &[
            "response_obj_oom",
            "response_obj_count",
            "response_obj_bytes",
            "read_buf_count",
            "read_buf_bytes",
            "read_buf_bytes_free",
            "read_buf_oom",
            "reserved_fds",
        ],
        &mut out,
    );
    out.extend([
        ("cmd_get", c(&s.cmd_get)),
        ("cmd_set", c(&s.cmd_set)),
        ("cmd_flush", c(&s.cmd_flush)),
        ("cmd_touch", c(&s.cmd_touch)),
        ("cmd_meta", c(&s.cmd_meta)),
        ("get_hits", c(&s.get_hits)),
        ("get_misses", c(&s.get_misses)),
        ("get_expired", c(&s.get_expired)),
        ("get_flushed", c(&s.get_flushed)),
        ("delete_misses", c(&s.delete_misses)),
        ("delete_hits", c(&s.delete_hits)),
        ("incr_misses", c(&s.incr_misses)),
        ("incr_hits", c(&s.incr_hits)),
        ("decr_misses", c(&s.decr_misses)),
        ("decr_hits", c(&s.decr_hits)),
        ("cas_misses", c(&s.cas_misses)),
        ("cas_hits", c(&s.cas_hits)),
        ("cas_badval", c(&s.cas_badval)),
        ("touch_hits", c(&s.touch_hits)),
        ("touch_misses", c(&s.touch_misses)),
        ("store_too_large", c(&s.store_too_large)),
        ("store_no_memory", c(&s.store_no_memory)),
        ("auth_cmds", c(&s.auth_cmds)),
        ("auth_errors", c(&s.auth_errors)),
        ("bytes_read", c(&s.bytes_read)),
        ("bytes_written", c(&s.bytes_written)),
        ("limit_maxbytes", Int(kv.memory_limit())),
        // The listener never stops accepting: over --max-connections it
        // accepts and refuses (rejected_connections) instead.
        ("accepting_conns", Int(1)),
        ("listen_disabled_num", Int(0)),
        ("time_in_listen_disabled_us", Int(0)),
        ("threads", Int(state.config.worker_threads() as u64)),
    ]);
    zero(
        &[
            "conn_yields",
            "hash_power_level",
            "hash_bytes",
            "hash_is_expanding",
            "slab_reassign_rescues",
            "slab_reassign_chunk_rescues",
            "slab_reassign_evictions_nomem",
            "slab_reassign_inline_reclaim",
            "slab_reassign_busy_items",
            "slab_reassign_busy_deletes",
            "slab_reassign_running",
            "slabs_moved",
            "lru_crawler_running",
        ],
        &mut out,
    );
    out.push(("lru_crawler_starts", c(&s.lru_crawler_starts)));
    zero(
        &[
            "lru_maintainer_juggles",
            "malloc_fails",
            "log_worker_dropped",
            "log_worker_written",
            "log_watcher_skipped",
            "log_watcher_sent",
            "log_watchers",
            "unexpected_napi_ids",
            "round_robin_fallback",
        ],
        &mut out,
    );
    out.extend([
        ("bytes", Int(kv.bytes())),
        ("curr_items", Int(kv.curr_items())),
        ("total_items", c(&s.total_items)),
        ("slab_global_page_pool", Int(0)),
        ("expired_unfetched", c(&s.expired_unfetched)),
        ("evicted_unfetched", Int(0)),
        ("evicted_active", Int(0)),
        ("evictions", c(&s.evictions)),
        ("reclaimed", c(&s.reclaimed)),
    ]);
    zero(
        &[
            "crawler_reclaimed",
            "crawler_items_checked",
            "lrutail_reflocked",
            "moves_to_cold",
            "moves_to_warm",
            "moves_within_lru",
            "direct_reclaims",
            "lru_bumps_dropped",
        ],
        &mut out,
    );
    out.push(("commit_syncs", Int(kv.commit_rounds())));
    out.push(("storage_errors", Int(kv.storage_errors())));
    out.extend([
        ("watchers", Int(kv.feed().watchers())),
        ("watch_events", Int(kv.feed().events())),
        ("watch_overflows", Int(kv.feed().overflows())),
    ]);
    if let Some(c) = kv.cluster_status() {
        out.extend([
            ("raft_node_id", Int(c.node_id)),
            ("raft_role", Text(c.role.into())),
            ("raft_leader_id", Int(c.leader_id.unwrap_or(0))),
            ("raft_term", Int(c.term)),
            ("raft_last_log_index", Int(c.last_log_index)),
            ("raft_commit_index", Int(c.commit_index)),
            ("raft_applied_index", Int(c.applied_index)),
            ("raft_read_index_rounds", Int(kv.read_index_rounds())),
            ("raft_members", Int(c.members.len() as u64)),
        ]);
    }
    out
}

/// memcached prints some switches as `on`/`off`.
pub(crate) fn on_off(on: bool) -> StatValue {
    StatValue::Text(if on { "on" } else { "off" }.into())
}

/// This process's user and system CPU time, as memcached prints them.
fn rusage() -> (String, String) {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let fmt = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
    (fmt(ru.ru_utime), fmt(ru.ru_stime))
}
