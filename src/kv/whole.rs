//! Whole-store work: `flush_all` (now or delayed), listings, the scans
//! behind CSV export and the mirror, the expiry sweeper, bulk loads, and
//! the store-wide figures the reports show. Every reader here first applies
//! a due delayed `flush_all`, as single-key reads do.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::stats::{add, bump};
use super::{expiry, off_the_runtime, Item, Kv, Listed, Result};

impl Kv {
    /// `flush_all [delay]`: invalidate every item now or at `delay`
    /// (memcached exptime rules); a later call replaces a pending one.
    /// Like memcached, the deadline is one second before `delay`, so
    /// `flush_all 1` takes effect at once.
    pub fn flush_all(&self, delay: i64) -> Result<()> {
        if self.replicated().is_some() {
            return super::wait_for(self.flush_all_async(delay));
        }
        bump(&self.stats.cmd_flush);
        let now = self.now();
        let deadline = if delay <= 0 {
            0
        } else {
            expiry::absolute(delay, now) - 1
        };
        if deadline <= now {
            self.flush_at.store(0, Ordering::Relaxed);
            self.flush_now()?;
        } else {
            self.flush_at.store(deadline, Ordering::Relaxed);
        }
        // One event when the command is applied, saying when it takes
        // effect: the same on every node of a group.
        self.note_flush(deadline.max(now));
        Ok(())
    }

    pub(super) fn apply_due_flush(&self, now: u64) -> Result<()> {
        let at = self.flush_at.load(Ordering::Relaxed);
        if at != 0
            && now >= at
            && self
                .flush_at
                .compare_exchange(at, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.flush_now()?;
        }
        Ok(())
    }

    /// A due `flush_all`: removes every item and remembers (up to
    /// [`super::flushed::MAX_FLUSHED_KEYS`]) which keys it removed, so the
    /// first later lookup of each counts `get_flushed`.
    fn flush_now(&self) -> Result<()> {
        let mut hashes = Vec::new();
        let cleared = off_the_runtime(|| {
            self.store.clear_with(|key| {
                if hashes.len() < super::flushed::MAX_FLUSHED_KEYS {
                    hashes.push(self.flushed.hash(key));
                }
            })
        });
        // Even a clear that failed part way removed these.
        self.flushed.remember(&hashes);
        cleared?;
        Ok(())
    }

    /// One page of live items in key order for listings: those whose key
    /// starts with `prefix`, after `after`, at most `limit`, plus whether
    /// more follow. Streams sled's ordered scan (values are dropped as it
    /// goes) and counts nothing, like `peek`.
    pub fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<Listed>, bool)> {
        let now = self.now();
        self.apply_due_flush(now)?;
        let mut page = Vec::with_capacity(limit.min(1024));
        for entry in self.store.scan(prefix, after) {
            let (key, item) = entry?;
            if item.is_expired(now) {
                continue;
            }
            if page.len() == limit {
                return Ok((page, true));
            }
            page.push(Listed {
                key,
                size: item.value().len(),
                flags: item.flags(),
                exptime: item.exptime(),
                cas: item.cas(),
            });
        }
        Ok((page, false))
    }

    /// One step of the expiry sweeper: reclaims expired items among the
    /// next `batch` keys and returns where to continue.
    pub fn sweep(&self, cursor: Option<sled::IVec>, batch: usize) -> Result<Option<sled::IVec>> {
        let now = self.now();
        self.apply_due_flush(now)?;
        let (next, reclaimed) = if self.feed.armed() {
            self.store.sweep_with(cursor, batch, now, |key, item| {
                self.note_removed(super::feed::ChangeKind::Expire, key, Some(item))
            })?
        } else {
            self.store.sweep(cursor, batch, now)?
        };
        add(&self.stats.reclaimed, reclaimed);
        Ok(next)
    }

    /// Runs the sweeper until `stop` resolves: bounded batches, a short
    /// pause between batches and a longer one between full passes.
    pub async fn run_sweeper(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut cursor = None;
        loop {
            let kv = self.clone();
            let step = tokio::task::spawn_blocking(move || kv.sweep(cursor, 1000)).await;
            cursor = match step {
                Ok(Ok(next)) => next,
                Ok(Err(e)) => {
                    tracing::warn!("expiry sweep failed: {e}");
                    None
                }
                Err(_) => None,
            };
            let pause = if cursor.is_some() {
                Duration::from_millis(10)
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Every live item in key order, for CSV export: a due delayed
    /// `flush_all` is applied first (so nothing it invalidated is
    /// exported), expired items are skipped, nothing is counted. Streams
    /// sled's ordered scan, so the store never has to fit in memory.
    pub fn live_items(&self) -> impl Iterator<Item = Result<(sled::IVec, Item)>> + '_ {
        let now = self.now();
        let flushed = self.apply_due_flush(now).err();
        let scan = self
            .store
            .scan(b"", None)
            .filter_map(move |entry| match entry {
                Ok((_, item)) if item.is_expired(now) => None,
                Ok(found) => Some(Ok(found)),
                Err(e) => Some(Err(e.into())),
            });
        flushed.into_iter().map(Err).chain(scan)
    }

    /// Every live item in no particular order, one batch per memory index
    /// shard, for the CSV mirror's image: far cheaper than
    /// [`Kv::live_items`] on a large store, which pages every leaf through
    /// sled's cache. `None` without a fully loaded memory index. Like
    /// [`Kv::live_items`], a due delayed `flush_all` is applied first.
    #[allow(clippy::type_complexity)]
    pub fn live_batches(
        &self,
    ) -> Result<Option<impl Iterator<Item = Vec<(Box<[u8]>, Item)>> + '_>> {
        let now = self.now();
        self.apply_due_flush(now)?;
        Ok(self.store.unordered_batches().map(move |batches| {
            batches.map(move |mut batch| {
                batch.retain(|(_, item)| !item.is_expired(now));
                batch
            })
        }))
    }

    /// Removes every item at once (`import --mode replace`); returns how
    /// many were removed.
    pub fn remove_all(&self) -> Result<u64> {
        self.flush_at.store(0, Ordering::Relaxed);
        // Not a flush: a later miss is a plain one.
        self.flushed.forget_all();
        Ok(off_the_runtime(|| self.store.clear())?)
    }

    /// Bulk load of encoded records ([`Item::encode`]) for `import`, with no
    /// server on the store: one sled batch instead of one insert per item.
    /// Call [`Kv::finish_load`] when done.
    pub fn load_batch(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        Ok(self.store.apply_batch(records)?)
    }

    /// Ends a bulk load: recounts items and bytes and syncs to disk.
    pub fn finish_load(&self) -> Result<()> {
        self.store.recount()?;
        Ok(self.store.sync()?)
    }

    /// Makes sure CAS values handed out from now on are all above `max`
    /// (imported items keep theirs; new ones must never collide).
    pub fn reserve_cas_above(&self, max: u64) -> Result<()> {
        Ok(self.store.reserve_cas_above(max)?)
    }

    /// A fresh CAS value (an imported row without a usable one gets this).
    pub fn next_cas(&self) -> Result<u64> {
        Ok(self.store.next_cas()?)
    }

    /// Live and not yet swept items (memcached's `curr_items`).
    pub fn curr_items(&self) -> u64 {
        self.store.curr_items()
    }

    /// Bytes the items take, keys and headers included (`bytes`).
    pub fn bytes(&self) -> u64 {
        self.store.bytes()
    }

    /// Writes acknowledged but not yet handed to sled (write-behind queue).
    pub fn unsaved_writes(&self) -> usize {
        self.store.unsaved_writes()
    }

    /// Changes so far to the items: the mirror rewrites its image only
    /// when this moved.
    pub fn generation(&self) -> u64 {
        self.store.generation()
    }

    /// Fills the memory index from sled while the service runs (see
    /// `store::index`); returns how many records it offered.
    pub fn load_index(&self) -> Result<u64> {
        Ok(self.store.load_index()?)
    }

    /// Whether the store answers a real read of the tree (readiness): an
    /// empty key is never stored, so nothing is found and nothing counted.
    pub fn readable(&self) -> Result<()> {
        self.store.get(b"")?;
        Ok(())
    }

    /// Makes every acknowledged write durable at shutdown. `clean` (nothing
    /// writes any more) also saves the counts so the next start skips its
    /// counting pass.
    pub fn close(&self, clean: bool) -> Result<()> {
        match clean {
            true => self.store.save_counts()?,
            false => self.store.sync()?,
        }
        Ok(())
    }

    /// Every record as stored, expired or not (a replication snapshot).
    pub(super) fn raw_records(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.store
            .scan(b"", None)
            .map(|entry| {
                let (key, item) = entry?;
                Ok((key.to_vec(), item.raw().to_vec()))
            })
            .collect()
    }

    /// Replaces every record with `records` (installing a snapshot).
    pub(super) fn replace_records(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        // Watchers of this node can no longer follow by changes.
        self.feed.reset();
        self.flush_at.store(0, Ordering::Relaxed);
        self.flushed.forget_all();
        off_the_runtime(|| self.store.clear())?;
        self.store.apply_batch(records)?;
        self.store.recount()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_kv_at as kv_at;
    use super::super::{StoreMode, StoreOutcome};
    use super::*;

    fn count(kv: &Kv) -> (u64, u64) {
        let c = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        (c(&kv.stats.get_flushed), c(&kv.stats.get_misses))
    }

    fn set(kv: &Kv, key: &[u8]) {
        let stored = kv.set(StoreMode::Set, key, 0, 0, b"v").unwrap();
        assert!(matches!(stored, StoreOutcome::Stored { .. }));
    }

    #[test]
    fn the_first_lookup_of_a_flushed_key_counts_get_flushed_once() {
        let (_d, kv, _clock) = kv_at(1_000);
        for key in [b"a", b"b", b"c", b"d"] {
            set(&kv, key);
        }
        kv.flush_all(0).unwrap();
        assert!(kv.get(b"a").unwrap().is_none());
        assert!(kv.get(b"a").unwrap().is_none());
        assert_eq!(count(&kv), (1, 2), "once per key, every get a miss");
        assert!(kv.get(b"never").unwrap().is_none());
        assert_eq!(count(&kv), (1, 3), "a key not flushed is a plain miss");
        // gat and mg find flushed items as get does (gat misses are touch misses).
        assert!(kv.get_and_touch(b"b", 0).unwrap().is_none());
        assert!(kv.meta_get(b"c", &Default::default()).unwrap().is_none());
        assert_eq!(count(&kv), (3, 4));
        // Like memcached, any command's lookup counts it, a delete's too.
        kv.delete(b"d", None).unwrap();
        assert!(kv.get(b"d").unwrap().is_none());
        assert_eq!(count(&kv), (4, 5));
    }

    #[test]
    fn a_key_written_after_the_flush_is_not_flushed() {
        let (_d, kv, _clock) = kv_at(1_000);
        set(&kv, b"a");
        set(&kv, b"b");
        kv.flush_all(0).unwrap();
        // memcached's set finds the flushed item first: counted once.
        set(&kv, b"a");
        assert_eq!(count(&kv), (1, 0));
        kv.delete(b"a", None).unwrap();
        assert!(kv.get(b"a").unwrap().is_none());
        assert_eq!(count(&kv), (1, 1), "deleted after the write: a plain miss");
        // An import's replace is not a flush.
        kv.remove_all().unwrap();
        assert!(kv.get(b"b").unwrap().is_none());
        assert_eq!(count(&kv), (1, 2));
    }

    #[test]
    fn a_delayed_flush_counts_once_it_is_due() {
        let (_d, kv, clock) = kv_at(1_000);
        set(&kv, b"a");
        set(&kv, b"b");
        kv.flush_all(3).unwrap();
        assert!(kv.get(b"a").unwrap().is_some(), "not due yet");
        set(&kv, b"c");
        clock.advance(2);
        assert!(kv.get(b"a").unwrap().is_none(), "due one second early");
        assert!(kv.get(b"a").unwrap().is_none());
        assert!(kv.get(b"c").unwrap().is_none(), "written before it was due");
        assert_eq!(count(&kv), (2, 3));
        // A second flush keeps what the first left unread.
        set(&kv, b"d");
        kv.flush_all(0).unwrap();
        for key in [b"b", b"d", b"b"] {
            assert!(kv.get(key).unwrap().is_none());
        }
        assert_eq!(count(&kv), (4, 6));
    }
}
