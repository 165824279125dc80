//! Item and byte counts (`curr_items`, `bytes`), which sled does not keep.
//!
//! Every write adjusts them ([`Store::account`]). A start-up either takes
//! the counts a clean close saved ([`Store::save_counts`]) or, after a
//! crash, counts the whole store ([`Store::recount`]).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Item, Result, Store};

/// Item count, bytes and whether anything may expire, saved by a clean
/// shutdown and taken (deleted) by the next start, which then needs no
/// counting pass over the store. Absent after a crash: the start counts.
pub(super) const META_CLEAN_COUNTS: &[u8] = b"clean_counts";

impl Store {
    /// At open: takes the counts a clean close saved, or counts.
    pub(super) fn restore_counts(&self) -> Result<()> {
        let saved = self.meta.remove(META_CLEAN_COUNTS)?;
        match saved.as_deref().and_then(parse_counts) {
            // LRU eviction needs every key in its recency table anyway.
            Some((items, bytes, may_expire)) if self.recency.is_none() => {
                self.curr_items.store(items, Ordering::Relaxed);
                self.bytes.store(bytes, Ordering::Relaxed);
                self.may_expire.store(may_expire, Ordering::Relaxed);
                // The counts are taken: a crash from here on must recount.
                self.sync_files()?;
            }
            _ => self.recount()?,
        }
        Ok(())
    }

    /// Saves the counts for the next start (see `META_CLEAN_COUNTS`) and
    /// syncs. Only for a clean shutdown, once nothing writes any more.
    pub fn save_counts(&self) -> Result<()> {
        let mut v = Vec::with_capacity(17);
        v.extend_from_slice(&self.curr_items().to_le_bytes());
        v.extend_from_slice(&self.bytes().to_le_bytes());
        v.push(self.may_expire.load(Ordering::Acquire) as u8);
        self.meta.insert(META_CLEAN_COUNTS, v)?;
        self.sync()
    }

    /// Counts items and bytes (sled keeps no count): at start-up after a
    /// crash (or an offline command) and after a bulk load.
    pub fn recount(&self) -> Result<()> {
        let (mut n, mut bytes) = (0u64, 0u64);
        for kv in self.items.iter() {
            let (k, v) = kv?;
            n += 1;
            bytes += Item::footprint(k.len(), v.len());
            self.note_expiry(&v);
            if let Some(r) = &self.recency {
                r.load(&k);
            }
        }
        self.curr_items.store(n, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Books a write of `key` that replaced `old` (`None`: there was none)
    /// with a record of `new_size` bytes (`None`: a removal): updates the
    /// recency stamps and the counts (the write itself took the next write
    /// generation).
    pub(super) fn account(&self, key: &[u8], old: Option<&[u8]>, new_size: Option<u64>) {
        if let Some(r) = &self.recency {
            match new_size {
                Some(_) => r.touch(key),
                None if old.is_some() => r.forget(key),
                None => {}
            }
        }
        match (old, new_size) {
            (None, Some(n)) => {
                self.curr_items.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(n, Ordering::Relaxed);
            }
            (Some(o), Some(n)) => {
                self.bytes.fetch_add(n, Ordering::Relaxed);
                self.sub_bytes(Item::footprint(key.len(), o.len()));
            }
            (Some(o), None) => {
                sub(&self.curr_items, 1);
                self.sub_bytes(Item::footprint(key.len(), o.len()));
            }
            (None, None) => {}
        }
    }

    fn sub_bytes(&self, n: u64) {
        sub(&self.bytes, n);
    }

    pub fn curr_items(&self) -> u64 {
        settled(&self.curr_items)
    }

    pub fn bytes(&self) -> u64 {
        settled(&self.bytes)
    }
}

/// (items, bytes, may_expire) as [`Store::save_counts`] wrote them.
fn parse_counts(v: &[u8]) -> Option<(u64, u64, bool)> {
    let items = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let bytes = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    Some((items, bytes, *v.get(16)? != 0))
}

/// Subtracts, wrapping below zero. Writers account after releasing the
/// key's lock, so a removal's decrement can land before the matching
/// insert's increment; a saturating subtraction would then lose it for
/// good (a counter one item too high, found by the write-behind race test).
/// Wrapping keeps the sum exact, and [`settled`] reads a transient negative
/// as zero.
fn sub(counter: &AtomicU64, n: u64) {
    counter.fetch_sub(n, Ordering::Relaxed);
}

/// A counter updated with [`sub`]: negative (wrapped) values read as zero.
fn settled(counter: &AtomicU64) -> u64 {
    (counter.load(Ordering::Relaxed) as i64).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{reopen, store};
    use super::*;

    #[test]
    fn counts_items_and_bytes() {
        let (_d, s) = store();
        s.insert(b"a", Item::encode(0, 0, 1, &[b"xyz"])).unwrap();
        s.insert(b"a", Item::encode(0, 0, 2, &[b"xy"])).unwrap();
        s.insert(b"b", Item::encode(0, 0, 3, &[b""])).unwrap();
        assert_eq!(s.curr_items(), 2);
        s.remove(b"a").unwrap();
        assert_eq!(s.curr_items(), 1);
        assert_eq!(s.clear().unwrap(), 1);
        assert_eq!((s.curr_items(), s.bytes()), (0, 0));
    }

    /// Writers account after releasing the key's lock: the removal of an
    /// item can be counted before the insert that created it.
    #[test]
    fn counts_survive_a_removal_counted_before_its_insert() {
        let (_d, s) = store();
        let rec = sled::IVec::from(Item::encode(0, 0, 1, &[b"v"]));
        s.account(b"k", Some(&rec), None);
        assert_eq!(
            (s.curr_items(), s.bytes()),
            (0, 0),
            "reads as empty meanwhile"
        );
        s.account(b"k", None, Some(Item::footprint(1, rec.len())));
        assert_eq!((s.curr_items(), s.bytes()), (0, 0));
    }

    #[test]
    fn counts_saved_at_a_clean_close_are_used_once() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let fill = |s: &Store, n: u32| {
            for i in 0..n {
                s.insert(format!("k{i}").as_bytes(), Item::encode(0, 0, 1, &[b"v"]))
                    .unwrap();
            }
        };
        let clean = {
            let s = Store::open(&cfg).unwrap();
            fill(&s, 100);
            s.save_counts().unwrap();
            (s.curr_items(), s.bytes())
        };
        {
            let s = reopen(&cfg);
            assert_eq!((s.curr_items(), s.bytes()), clean);
            // No save this time (a crash): the next start must count.
            fill(&s, 150);
            s.sync().unwrap();
        }
        let s = reopen(&cfg);
        assert_eq!(s.curr_items(), 150);
        assert!(s.bytes() > clean.1);
    }
}
