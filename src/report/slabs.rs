//! `stats items`, `stats slabs` and `stats sizes` from a walk of the store
//! ([`crate::kv::sizes`]): memcached's line format, one block per class
//! that holds items. What is real: item counts, this store's bytes, the
//! oldest access per class. What is synthetic: pages and chunks are what
//! memcached would need to hold these items (`ceil(items / chunks per
//! page)` pages of 1 MiB); counters of machinery this server does not
//! have (segmented LRU moves, per-class hit counters, tail repairs) are 0.

use std::borrow::Cow;

use super::{Rows, StatValue};
use crate::kv::sizes::{SizeReport, PAGE_SIZE};

fn classes(r: &SizeReport) -> impl Iterator<Item = (usize, &crate::kv::sizes::ClassUsage)> {
    r.usage
        .iter()
        .enumerate()
        .filter(|(_, u)| u.items > 0)
        .map(|(i, u)| (i + 1, u))
}

fn pages(r: &SizeReport, class: usize, items: u64) -> u64 {
    items.div_ceil(r.classes.per_page(class))
}

/// `stats items`: `items:<class>:<field>` per class holding items.
pub fn items(r: &SizeReport) -> Rows {
    let mut out = Rows::new();
    for (class, u) in classes(r) {
        let age = r.taken.saturating_sub(u.oldest_access);
        let fields: [(&str, u64); 28] = [
            ("number", u.items),
            ("number_hot", 0),
            ("number_warm", 0),
            // No segmented LRU: every item counts as cold.
            ("number_cold", u.items),
            ("age_hot", 0),
            ("age_warm", 0),
            ("age", age),
            ("mem_requested", u.bytes),
            ("evicted", 0),
            ("evicted_nonzero", 0),
            ("evicted_time", 0),
            ("outofmemory", 0),
            ("tailrepairs", 0),
            ("reclaimed", 0),
            ("expired_unfetched", 0),
            ("evicted_unfetched", 0),
            ("evicted_active", 0),
            ("crawler_reclaimed", 0),
            ("crawler_items_checked", 0),
            ("lrutail_reflocked", 0),
            ("moves_to_cold", 0),
            ("moves_to_warm", 0),
            ("moves_within_lru", 0),
            ("direct_reclaims", 0),
            ("hits_to_hot", 0),
            ("hits_to_warm", 0),
            ("hits_to_cold", 0),
            ("hits_to_temp", 0),
        ];
        out.extend(
            fields
                .into_iter()
                .map(|(f, v)| (Cow::Owned(format!("items:{class}:{f}")), StatValue::Int(v))),
        );
    }
    out
}

/// `stats slabs`: `<class>:<field>` per class holding items, then totals.
pub fn slabs(r: &SizeReport) -> Rows {
    let mut out = Rows::new();
    let (mut active, mut malloced) = (0u64, 0u64);
    for (class, u) in classes(r) {
        let per_page = r.classes.per_page(class);
        let pages = pages(r, class, u.items);
        let total = pages * per_page;
        active += 1;
        malloced += pages * PAGE_SIZE;
        let fields: [(&str, u64); 15] = [
            ("chunk_size", r.classes.chunk_size(class)),
            ("chunks_per_page", per_page),
            ("total_pages", pages),
            ("total_chunks", total),
            ("used_chunks", u.items),
            ("free_chunks", total - u.items),
            ("free_chunks_end", 0),
            ("get_hits", 0),
            ("cmd_set", 0),
            ("delete_hits", 0),
            ("incr_hits", 0),
            ("decr_hits", 0),
            ("cas_hits", 0),
            ("cas_badval", 0),
            ("touch_hits", 0),
        ];
        out.extend(
            fields
                .into_iter()
                .map(|(f, v)| (Cow::Owned(format!("{class}:{f}")), StatValue::Int(v))),
        );
    }
    out.push(("active_slabs".into(), StatValue::Int(active)));
    out.push(("total_malloced".into(), StatValue::Int(malloced)));
    out
}

/// `stats sizes`: items per 32-byte size bucket, as memcached prints it
/// with `-o track_sizes`.
pub fn sizes(r: &SizeReport) -> Rows {
    r.sizes
        .iter()
        .map(|(size, n)| (Cow::Owned(size.to_string()), StatValue::Int(*n)))
        .collect()
}
