//! `stats detail`: per key-prefix counts of gets, hits, sets and deletes
//! (memcached's `-D` prefix stats). The prefix is the key up to the first
//! `--prefix-delimiter`; keys without one are not counted, as in memcached.
//!
//! Off by default; while off, the hot path pays one relaxed atomic load.
//! memcached keeps every prefix it sees; here the table holds at most
//! [`MAX_PREFIXES`] prefixes, so a client cycling through unique prefixes
//! cannot grow it without bound: operations on new prefixes beyond that are
//! not counted (existing prefixes keep counting).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use parking_lot::Mutex;

/// Most prefixes `stats detail` tracks.
pub const MAX_PREFIXES: usize = 10_000;

/// One prefix's counts, printed as `PREFIX <p> get <n> hit <n> set <n> del <n>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixCounts {
    pub get: u64,
    pub hit: u64,
    pub set: u64,
    pub del: u64,
}

/// The switch, the delimiter and the table.
pub struct Detail {
    on: AtomicBool,
    delimiter: AtomicU8,
    table: Mutex<HashMap<Box<[u8]>, PrefixCounts>>,
}

impl Default for Detail {
    fn default() -> Self {
        Detail {
            on: AtomicBool::new(false),
            delimiter: AtomicU8::new(b':'),
            table: Mutex::new(HashMap::new()),
        }
    }
}

impl Detail {
    /// Whether counting is on (`stats detail on`).
    #[inline]
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// `--prefix-delimiter` (memcached's `-D`).
    pub fn set_delimiter(&self, delimiter: u8) {
        self.delimiter.store(delimiter, Ordering::Relaxed);
    }

    pub fn delimiter(&self) -> u8 {
        self.delimiter.load(Ordering::Relaxed)
    }

    pub(super) fn get(&self, key: &[u8], hit: bool) {
        self.record(key, |c| {
            c.get += 1;
            c.hit += hit as u64;
        });
    }

    pub(super) fn set(&self, key: &[u8]) {
        self.record(key, |c| c.set += 1);
    }

    pub(super) fn delete(&self, key: &[u8]) {
        self.record(key, |c| c.del += 1);
    }

    fn record(&self, key: &[u8], count: impl FnOnce(&mut PrefixCounts)) {
        let Some(end) = memchr::memchr(self.delimiter(), key) else {
            return;
        };
        let prefix = &key[..end];
        let mut table = self.table.lock();
        if let Some(counts) = table.get_mut(prefix) {
            count(counts);
        } else if table.len() < MAX_PREFIXES {
            let mut counts = PrefixCounts::default();
            count(&mut counts);
            table.insert(prefix.into(), counts);
        }
    }

    /// Every prefix with its counts, sorted by prefix.
    pub fn dump(&self) -> Vec<(Box<[u8]>, PrefixCounts)> {
        let mut rows: Vec<_> = self
            .table
            .lock()
            .iter()
            .map(|(p, c)| (p.clone(), *c))
            .collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// `stats reset` forgets every prefix, as memcached does.
    pub fn clear(&self) {
        self.table.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_prefix_and_skips_keys_without_one() {
        let d = Detail::default();
        d.get(b"a:1", true);
        d.get(b"a:2", false);
        d.set(b"a:3");
        d.delete(b"q:r");
        d.get(b"plain", true);
        let rows = d.dump();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            (
                b"a"[..].into(),
                PrefixCounts {
                    get: 2,
                    hit: 1,
                    set: 1,
                    del: 0
                }
            )
        );
        d.set_delimiter(b'/');
        d.set(b"x/y:z");
        assert!(d.dump().iter().any(|(p, _)| &**p == b"x"));
    }

    #[test]
    fn the_table_is_bounded() {
        let d = Detail::default();
        for i in 0..MAX_PREFIXES + 50 {
            d.set(format!("p{i}:k").as_bytes());
        }
        assert_eq!(d.dump().len(), MAX_PREFIXES);
        d.set(b"p0:k");
        let p0 = d.dump().into_iter().find(|(p, _)| &**p == b"p0").unwrap();
        assert_eq!(p0.1.set, 2, "known prefixes still count");
    }
}
