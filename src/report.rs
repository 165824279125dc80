//! The `stats` reports, in memcached's names and order: one source for the
//! memcached text and binary protocols and the HTTP API, so all three
//! report the same figures.

use std::sync::atomic::Ordering;

use crate::config::Eviction;
use crate::state::AppState;

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

/// The report `stats <group>` asks for, `None` for an unknown group.
/// `stats reset` is a command, not a report: callers handle it.
pub fn group(state: &AppState, name: &[u8]) -> Option<Report> {
    Some(match name {
        b"" => general(state),
        b"settings" => settings(state),
        // No slab allocator or per-item LRU here: memcached's answer for
        // an empty cache, so tools that ask keep working.
        b"items" | b"slabs" | b"conns" => Vec::new(),
        b"sizes" => vec![("sizes_status", StatValue::Text("disabled".into()))],
        _ => return None,
    })
}

/// The general `stats` report.
pub fn general(state: &AppState) -> Report {
    use StatValue::{Int, Text};
    let kv = &state.kv;
    let now = kv.now();
    let (user, system) = rusage();
    let mut out = vec![
        ("pid", Int(std::process::id() as u64)),
        ("uptime", Int(now.saturating_sub(kv.started()))),
        ("time", Int(now)),
        ("version", Text(PROTOCOL_VERSION.into())),
        (
            "memcached_lite_version",
            Text(env!("CARGO_PKG_VERSION").into()),
        ),
        ("pointer_size", Int(usize::BITS as u64)),
        ("rusage_user", Text(user)),
        ("rusage_system", Text(system)),
        ("max_connections", Int(state.config.max_connections as u64)),
        (
            "curr_connections",
            Int(state.curr_connections.load(Ordering::Relaxed)),
        ),
        (
            "total_connections",
            Int(state.total_connections.load(Ordering::Relaxed)),
        ),
    ];
    out.extend(kv.stats.counters().into_iter().map(|(k, v)| (k, Int(v))));
    out.extend([
        ("limit_maxbytes", Int(kv.memory_limit())),
        ("threads", Int(state.config.worker_threads() as u64)),
        ("bytes", Int(kv.bytes())),
        ("curr_items", Int(kv.curr_items())),
        ("commit_syncs", Int(kv.commit_rounds())),
    ]);
    if let Some(c) = kv.cluster_status() {
        out.extend([
            ("raft_node_id", Int(c.node_id)),
            ("raft_role", Text(c.role.into())),
            ("raft_leader_id", Int(c.leader_id.unwrap_or(0))),
            ("raft_term", Int(c.term)),
            ("raft_last_log_index", Int(c.last_log_index)),
            ("raft_applied_index", Int(c.applied_index)),
            ("raft_members", Int(c.members.len() as u64)),
        ]);
    }
    out
}

/// `stats settings`.
pub fn settings(state: &AppState) -> Report {
    use StatValue::{Int, Text};
    let c = &state.config;
    let yes_no = |b: bool| Text(if b { "yes" } else { "no" }.into());
    vec![
        ("maxbytes", Int(state.kv.memory_limit())),
        ("maxconns", Int(c.max_connections as u64)),
        ("tcpport", Int(c.listen.port() as u64)),
        ("inter", Text(c.listen.ip().to_string())),
        ("evictions", on_off(c.store.eviction == Eviction::Lru)),
        ("shutdown_command", yes_no(c.enable_shutdown)),
        ("num_threads", Int(c.worker_threads() as u64)),
        ("cas_enabled", yes_no(true)),
        ("item_size_max", Int(c.store.max_item_size as u64)),
        ("idle_timeout", Int(c.security.idle_timeout)),
        ("data_dir", Text(c.store.data_dir.display().to_string())),
        ("flush_interval_ms", Int(c.store.flush_interval_ms)),
        (
            "durability",
            Text(format!("{:?}", c.store.durability).to_lowercase()),
        ),
    ]
}

/// memcached prints some switches as `on`/`off`.
fn on_off(on: bool) -> StatValue {
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
