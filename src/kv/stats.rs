//! Server-wide counters, shared by both front ends so `stats` and
//! `GET /v1/stats` report the same numbers.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Monotonic counters named exactly as memcached's `stats` names them.
        #[derive(Default)]
        pub struct Stats {
            $(pub $name: AtomicU64,)*
        }

        impl Stats {
            /// Every counter with its memcached name, in a stable order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }

            /// `stats reset`: zero the resettable counters.
            pub fn reset(&self) {
                $(self.$name.store(0, Ordering::Relaxed);)*
            }
        }
    };
}

counters!(
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    cmd_meta,
    get_hits,
    get_misses,
    get_expired,
    get_flushed,
    delete_misses,
    delete_hits,
    incr_misses,
    incr_hits,
    decr_misses,
    decr_hits,
    cas_misses,
    cas_hits,
    cas_badval,
    touch_hits,
    touch_misses,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
    bytes_read,
    bytes_written,
    rejected_connections,
    total_items,
    expired_unfetched,
    evictions,
    reclaimed,
    lru_crawler_starts,
);

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    if UNCOUNTED.with(std::cell::Cell::get) {
        return;
    }
    counter.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    /// Set while this thread applies a replicated entry that another node
    /// proposed: a client command is counted once in the group, by the
    /// node the client sent it to (as memcached counts what it served),
    /// not again by every replica that applies it.
    static UNCOUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the counters of [`bump`] and [`add`] counting or not.
pub fn counting<R>(count: bool, f: impl FnOnce() -> R) -> R {
    let before = UNCOUNTED.with(|u| u.replace(!count));
    let result = f();
    UNCOUNTED.with(|u| u.set(before));
    result
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    if UNCOUNTED.with(std::cell::Cell::get) {
        return;
    }
    counter.fetch_add(n, Ordering::Relaxed);
}
