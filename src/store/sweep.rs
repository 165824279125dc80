//! Work over the whole store rather than on a key a caller names:
//! `flush_all`'s clear, ordered scans, the expiry sweep, LRU eviction, and
//! loading the memory index at start-up.
//!
//! None of them holds the key locks, which belong to the layer above: a
//! removal is conditional ([`Store::remove_if_unchanged`]), so a walk never
//! undoes a write racing it, and loading the index never overwrites a slot
//! a writer already set (see [`super::index`]).

use std::ops::Bound;
use std::sync::atomic::Ordering;

use super::{Item, Result, Store};

/// An item [`Store::evict_one`] removed: the bytes freed, its key, the item.
pub type Evicted = (u64, Box<[u8]>, Item);

impl Store {
    /// Removes every item; returns how many were removed. Runs without the
    /// key locks, so each removal is a compare-and-swap: an item written
    /// while the clear runs may survive it (it is as if written just after),
    /// but sled and the index always agree. Access bookkeeping on an item
    /// (same CAS value) does not save it.
    pub fn clear(&self) -> Result<u64> {
        self.clear_with(|_| {})
    }

    /// [`Store::clear`], calling `on_removed` with the key of every item
    /// it removes (`flush_all` remembers them for `get_flushed`).
    pub fn clear_with(&self, mut on_removed: impl FnMut(&[u8])) -> Result<u64> {
        self.settle()?;
        let mut removed = 0;
        for kv in self.items.iter() {
            let (key, raw) = kv?;
            let mut raw = super::item::Raw::Sled(raw);
            loop {
                let Ok(item) = Item::from_raw(raw.clone()) else {
                    // Unreadable (should not happen): remove it all the same.
                    if self.remove(&key)?.is_some() {
                        removed += 1;
                        on_removed(&key);
                    }
                    break;
                };
                if self.remove_if_unchanged(&key, &item)? {
                    removed += 1;
                    on_removed(&key);
                    break;
                }
                match self.raw(&key)? {
                    Some(now)
                        if Item::from_raw(now.clone()).is_ok_and(|i| i.cas() == item.cas()) =>
                    {
                        raw = now
                    }
                    _ => break,
                }
            }
        }
        Ok(removed)
    }

    /// Items in key order, starting after `after` (exclusive) or at the
    /// beginning, restricted to keys starting with `prefix`.
    pub fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<(sled::IVec, Item)>> + 'a {
        // sled must hold every acknowledged write before it is scanned.
        let unsettled = self.settle().err();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(sled::IVec::from(a)),
            _ => Bound::Included(sled::IVec::from(prefix)),
        };
        let scan = self
            .items
            .range::<sled::IVec, _>((start, Bound::Unbounded))
            .take_while(move |kv| match kv {
                Ok((k, _)) => k.starts_with(prefix),
                Err(_) => true,
            })
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k, Item::from_raw(v.into())?))
            });
        unsettled.into_iter().map(Err).chain(scan)
    }

    /// Every item in no particular order, a batch (one index shard) at a
    /// time, straight from memory: `None` without a (fully loaded) memory
    /// index. Far cheaper than [`Store::scan`] on a large store, which
    /// pages every leaf of the tree through sled's cache.
    pub fn unordered_batches(&self) -> Option<impl Iterator<Item = Vec<(Box<[u8]>, Item)>> + '_> {
        let ix = self.index.as_ref().filter(|ix| ix.is_complete())?;
        Some((0..ix.shards()).map(move |i| {
            ix.shard_entries(i)
                .into_iter()
                .filter_map(|(k, raw)| Item::from_raw(raw).ok().map(|item| (k, item)))
                .collect()
        }))
    }

    /// Removes expired items among at most `batch` keys after `cursor`.
    /// It walks sled, so a write still queued for the write-behind thread
    /// is seen one flush interval later.
    /// Returns the cursor to continue from (`None` once the end is reached)
    /// and how many items were reclaimed.
    pub fn sweep(
        &self,
        cursor: Option<sled::IVec>,
        batch: usize,
        now: u64,
    ) -> Result<(Option<sled::IVec>, u64)> {
        self.sweep_with(cursor, batch, now, |_, _| {})
    }

    /// [`Store::sweep`], calling `on_reclaimed` with each item it removes
    /// (the change feed reports them).
    pub fn sweep_with(
        &self,
        cursor: Option<sled::IVec>,
        batch: usize,
        now: u64,
        mut on_reclaimed: impl FnMut(&[u8], &Item),
    ) -> Result<(Option<sled::IVec>, u64)> {
        if cursor.is_none() && !self.may_expire.load(Ordering::Acquire) {
            return Ok((None, 0));
        }
        let range = match &cursor {
            Some(c) => self
                .items
                .range::<&[u8], _>((Bound::Excluded(c.as_ref()), Bound::Unbounded)),
            None => self.items.range::<&[u8], _>(..),
        };
        let mut last = None;
        let (mut reclaimed, mut scanned) = (0, 0);
        for kv in range.take(batch) {
            scanned += 1;
            let (k, v) = kv?;
            if let Ok(item) = Item::from_raw(v.into()) {
                if item.is_expired(now) && self.remove_if_unchanged(&k, &item)? {
                    reclaimed += 1;
                    on_reclaimed(&k, &item);
                }
            }
            last = Some(k);
        }
        let next = if scanned == batch { last } else { None };
        Ok((next, reclaimed))
    }

    /// Whether this store evicts (`--eviction lru`).
    pub fn evicts(&self) -> bool {
        self.recency.is_some()
    }

    /// In a replicated group the leader chooses victims and the log carries
    /// them (every replica must drop the same keys): approximately least
    /// recently used keys, none that `skip` names, whose records add up to
    /// at least `need` bytes (fewer when the store runs out). Removes
    /// nothing. Each comes with its footprint now.
    pub fn lru_victims(
        &self,
        need: u64,
        skip: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Box<[u8]>, u64)>> {
        let Some(recency) = &self.recency else {
            return Ok(Vec::new());
        };
        let mut chosen: Vec<(Box<[u8]>, u64)> = Vec::new();
        let mut freed = 0;
        let mut misses = 0;
        while freed < need && misses < 8 {
            let taken = |k: &[u8]| skip(k) || chosen.iter().any(|(c, _)| &**c == k);
            let Some(victim) = recency.victim_unless(taken) else {
                break;
            };
            match self.raw(&victim)? {
                None => {
                    recency.forget(&victim);
                    misses += 1;
                }
                Some(raw) => {
                    let bytes = Item::footprint(victim.len(), raw.len());
                    freed += bytes;
                    chosen.push((victim, bytes));
                }
            }
        }
        Ok(chosen)
    }

    /// Evicts the approximately least recently used item other than
    /// `except`; returns the bytes freed and the victim, `None` when
    /// nothing can go. Lock-free against writers: the victim is removed
    /// only if unchanged since it was read.
    pub fn evict_one(&self, except: &[u8]) -> Result<Option<Evicted>> {
        let Some(recency) = &self.recency else {
            return Ok(None);
        };
        for _ in 0..8 {
            let Some(victim) = recency.victim(except) else {
                return Ok(None);
            };
            match self.raw(&victim)? {
                None => recency.forget(&victim),
                Some(raw) => {
                    let freed = Item::footprint(victim.len(), raw.len());
                    let item = Item::from_raw(raw)?;
                    if self.remove_if_unchanged(&victim, &item)? {
                        return Ok(Some((freed, victim, item)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Fills the memory index from sled, while the store serves (see
    /// [`super::index`]); returns how many records it offered. A no-op
    /// without the index. The server runs it on a thread of its own after
    /// start-up.
    pub fn load_index(&self) -> Result<u64> {
        let Some(ix) = &self.index else {
            return Ok(0);
        };
        let mut n = 0;
        for kv in self.items.iter() {
            let (k, v) = kv?;
            ix.lock(&k).load(&v);
            n += 1;
        }
        ix.finish_loading();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::super::testkit::{
        assert_index_matches_tree, locked_writers, record, reopen, store, KeyLocks,
    };
    use super::*;

    #[test]
    fn sweeper_reclaims_only_expired_items() {
        let (_d, s) = store();
        for i in 0..10u8 {
            let exp = if i % 2 == 0 { 5 } else { 0 };
            s.insert(&[b'k', i], Item::encode(0, exp, 1, &[b"v"]))
                .unwrap();
        }
        // The sweeper walks sled, which the write-behind fills later.
        s.settle().unwrap();
        let mut cursor = None;
        let mut total = 0;
        loop {
            let (next, n) = s.sweep(cursor, 3, 100).unwrap();
            total += n;
            if next.is_none() {
                break;
            }
            cursor = next;
        }
        assert_eq!(total, 5);
        assert_eq!(s.curr_items(), 5);
    }

    #[test]
    fn sweeper_skips_stores_where_nothing_ever_expires() {
        let (_d, s) = store();
        for i in 0..10u8 {
            s.insert(&[b'k', i], Item::encode(0, 0, 1, &[b"v"]))
                .unwrap();
        }
        s.settle().unwrap();
        assert_eq!(s.sweep(None, 3, 100).unwrap(), (None, 0), "no pass");
        s.insert(b"t", Item::encode(0, 50, 1, &[b"v"])).unwrap();
        s.settle().unwrap();
        let (next, n) = s.sweep(None, 3, 100).unwrap();
        assert!(next.is_some(), "a pass over the first 3 keys");
        assert_eq!(n, 0);
    }

    #[test]
    fn clear_and_sweeps_racing_locked_writers_keep_index_and_tree_equal() {
        let (_dir, s) = store();
        let s = Arc::new(s);
        // Every other item already expired: the sweeper's prey.
        let writers = locked_writers(&s, 20_000, 3, 500, 2, 7);
        while !writers.iter().all(|w| w.is_finished()) {
            s.clear().unwrap();
            s.sweep(None, 1000, crate::rules::clock::system_now())
                .unwrap();
        }
        writers.into_iter().for_each(|w| w.join().unwrap());
        assert_index_matches_tree(&s);
        s.clear().unwrap();
        assert_index_matches_tree(&s);
        assert_eq!(s.index.as_ref().unwrap().len(), 0);
    }

    #[test]
    fn scan_respects_prefix_and_cursor() {
        let (_d, s) = store();
        for k in ["a1", "b1", "b2", "b3", "c1"] {
            s.insert(k.as_bytes(), Item::encode(0, 0, 1, &[b"v"]))
                .unwrap();
        }
        let keys: Vec<_> = s
            .scan(b"b", Some(b"b1"))
            .map(|r| String::from_utf8(r.unwrap().0.to_vec()).unwrap())
            .collect();
        assert_eq!(keys, ["b2", "b3"]);
    }

    #[test]
    fn reopening_rebuilds_the_index_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        {
            let s = Store::open(&cfg).unwrap();
            for i in 0..1000u32 {
                s.insert(
                    format!("k{i}").as_bytes(),
                    Item::encode(i, 0, 1, &[b"value"]),
                )
                .unwrap();
            }
            s.remove(b"k7").unwrap();
        }
        let s = reopen(&cfg);
        // Before loading, reads fall through to sled.
        assert_eq!(s.get(b"k9").unwrap().unwrap().flags(), 9);
        assert!(s.get(b"k7").unwrap().is_none());
        assert_eq!(s.load_index().unwrap(), 999);
        assert_index_matches_tree(&s);
        assert_eq!(s.index.as_ref().unwrap().len(), 999);
        assert_eq!(s.get(b"k8").unwrap().unwrap().flags(), 8);
        assert!(s.get(b"k7").unwrap().is_none());
    }

    #[test]
    fn writers_racing_the_loader_leave_index_and_tree_equal() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        {
            let s = Store::open(&cfg).unwrap();
            for i in 0..20_000u64 {
                s.insert(
                    format!("k{i}").as_bytes(),
                    Item::encode(0, 0, i + 1, &[b"disk"]),
                )
                .unwrap();
            }
        }
        let s = Arc::new(reopen(&cfg));
        let locks = Arc::new(KeyLocks::with_stripes(64));
        let done = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (s, locks, done) = (s.clone(), locks.clone(), done.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        // Scattered, so writes land both behind and ahead of the loader.
                        let key = format!("k{}", (i * 7919 + w * 13) % 20_000);
                        done.fetch_add(1, Ordering::Relaxed);
                        let _g = locks.lock(key.as_bytes());
                        if i % 3 == 0 {
                            s.remove(key.as_bytes()).unwrap();
                        } else {
                            s.insert(key.as_bytes(), Item::encode(1, 0, i + 50_000, &[b"new"]))
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        while done.load(Ordering::Relaxed) < 2_000 {
            std::thread::yield_now();
        }
        s.load_index().unwrap();
        assert!(
            done.load(Ordering::Relaxed) < 40_000,
            "writers ended before the loader"
        );
        writers.into_iter().for_each(|w| w.join().unwrap());
        assert!(s.index.as_ref().unwrap().is_complete());
        assert_index_matches_tree(&s);
    }

    #[test]
    fn a_removal_queued_while_the_index_loads_still_reaches_sled() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::for_data_dir(dir.path()).store;
        cfg.flush_interval_ms = 3_600_000;
        {
            let s = Store::open(&cfg).unwrap();
            s.insert(b"gone", Item::encode(0, 0, 1, &[b"v"])).unwrap();
            s.insert(b"kept", Item::encode(0, 0, 2, &[b"v"])).unwrap();
        }
        let s = reopen(&cfg);
        // Not loaded yet: the removal is a queued tombstone...
        assert!(s.remove(b"gone").unwrap().is_some());
        // ...that the end of loading must keep until sled has it.
        s.load_index().unwrap();
        assert!(record(&s, b"gone").is_none());
        assert_index_matches_tree(&s);
        drop(s);
        cfg.no_memory_index = true;
        let s = reopen(&cfg);
        assert!(record(&s, b"gone").is_none(), "removed key came back");
        assert!(record(&s, b"kept").is_some());
    }
}
