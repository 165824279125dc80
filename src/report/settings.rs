//! `stats settings`: every field memcached 1.6.18 prints, in its order,
//! then this server's own (`data_dir`, `flush_interval_ms`, `durability`).
//! Settings of machinery this server does not have (UDP, the slab mover's
//! tuning, the segmented LRU, extstore, log buffers) print memcached's
//! default and change nothing here; see docs/operator-commands.md.

use std::sync::atomic::Ordering;

use super::{on_off, Report, StatValue};
use crate::config::Eviction;
use crate::state::AppState;

pub fn settings(state: &AppState) -> Report {
    use StatValue::{Int, Text};
    let c = &state.config;
    let ops = &state.operator;
    let text = |s: &str| Text(s.into());
    let yes_no = |b: bool| Text(if b { "yes" } else { "no" }.into());
    let path_or_null = |p: &Option<std::path::PathBuf>| match p {
        Some(p) => Text(p.display().to_string()),
        None => text("(null)"),
    };
    let auth = c.security.auth_file.is_some();
    let tls = c.security.tls_cert.is_some();
    let threads = c.worker_threads() as u64;
    let load = |a: &std::sync::atomic::AtomicU64| Int(a.load(Ordering::Relaxed));
    vec![
        ("maxbytes", Int(state.kv.memory_limit())),
        ("maxconns", Int(c.max_connections as u64)),
        // memcached's `-p 0` (no TCP) reads as port 0 and `inter` NULL.
        (
            "tcpport",
            Int(c.listen.addr().map_or(0, |a| a.port() as u64)),
        ),
        ("udpport", Int(0)),
        (
            "inter",
            text(
                &c.listen
                    .addr()
                    .map_or("NULL".into(), |a| a.ip().to_string()),
            ),
        ),
        ("verbosity", load(&ops.verbosity)),
        ("oldest", Int(0)),
        ("evictions", on_off(c.store.eviction == Eviction::Lru)),
        (
            "domain_socket",
            text(
                &c.unix_socket
                    .as_ref()
                    .map_or("NULL".into(), |p| p.display().to_string()),
            ),
        ),
        // Printed in octal, as memcached's `%o` does.
        ("umask", Text(format!("{:o}", c.unix_mask))),
        ("shutdown_command", yes_no(c.enable_shutdown)),
        ("growth_factor", text("1.25")),
        ("chunk_size", Int(48)),
        ("num_threads", Int(threads)),
        ("num_threads_per_udp", Int(threads)),
        (
            "stat_key_prefix",
            Text((state.kv.detail.delimiter() as char).to_string()),
        ),
        ("detail_enabled", yes_no(state.kv.detail.enabled())),
        ("reqs_per_event", Int(20)),
        ("cas_enabled", yes_no(true)),
        ("tcp_backlog", Int(1024)),
        ("binding_protocol", text("auto-negotiate")),
        ("auth_enabled_sasl", yes_no(auth)),
        ("auth_enabled_ascii", yes_no(auth)),
        ("item_size_max", Int(c.store.max_item_size as u64)),
        ("maxconns_fast", yes_no(true)),
        ("hashpower_init", Int(0)),
        ("slab_reassign", yes_no(true)),
        ("slab_automove", load(&ops.slab_automove)),
        ("slab_automove_ratio", text("0.80")),
        ("slab_automove_window", Int(30)),
        (
            "slab_chunk_max",
            Int(state
                .kv
                .slab_classes()
                .chunk_size(state.kv.slab_classes().len())),
        ),
        (
            "lru_crawler",
            yes_no(ops.crawler_enabled.load(Ordering::Relaxed)),
        ),
        ("lru_crawler_sleep", load(&ops.crawler_sleep)),
        ("lru_crawler_tocrawl", load(&ops.crawler_tocrawl)),
        ("tail_repair_time", Int(0)),
        ("flush_enabled", yes_no(true)),
        ("dump_enabled", yes_no(true)),
        ("hash_algorithm", text("none")),
        ("lru_maintainer_thread", yes_no(false)),
        ("lru_segmented", yes_no(false)),
        ("hot_lru_pct", Int(20)),
        ("warm_lru_pct", Int(40)),
        ("hot_max_factor", text("0.20")),
        ("warm_max_factor", text("2.00")),
        ("temp_lru", yes_no(false)),
        ("temporary_ttl", Int(61)),
        ("idle_timeout", Int(c.security.idle_timeout)),
        ("watcher_logbuf_size", Int(262144)),
        ("worker_logbuf_size", Int(65536)),
        ("read_buf_mem_limit", Int(0)),
        // `stats sizes` is computed on demand, so it is always available.
        ("track_sizes", yes_no(true)),
        ("inline_ascii_response", yes_no(false)),
        ("ext_item_size", Int(512)),
        ("ext_item_age", Int(u32::MAX as u64)),
        ("ext_low_ttl", Int(0)),
        ("ext_recache_rate", Int(2000)),
        ("ext_wbuf_size", Int(4194304)),
        ("ext_compact_under", Int(0)),
        ("ext_drop_under", Int(0)),
        ("ext_max_sleep", Int(1000000)),
        ("ext_max_frag", text("0.80")),
        ("slab_automove_freeratio", text("0.010")),
        ("ext_drop_unread", yes_no(false)),
        ("ssl_enabled", yes_no(tls)),
        ("ssl_chain_cert", path_or_null(&c.security.tls_cert)),
        ("ssl_key", path_or_null(&c.security.tls_key)),
        ("ssl_verify_mode", Int(0)),
        ("ssl_keyformat", Int(1)),
        ("ssl_ciphers", text("NULL")),
        ("ssl_ca_cert", text("NULL")),
        ("ssl_wbuf_size", Int(16384)),
        ("ssl_session_cache", yes_no(false)),
        ("ssl_kernel_tls", yes_no(false)),
        ("ssl_min_version", text("tlsv1.2")),
        ("num_napi_ids", text("(null)")),
        ("memory_file", text("(null)")),
        ("data_dir", Text(c.store.data_dir.display().to_string())),
        ("flush_interval_ms", Int(c.store.flush_interval_ms)),
        (
            "durability",
            Text(format!("{:?}", c.store.durability).to_lowercase()),
        ),
    ]
}
