//! The sled-backed store: items, CAS allocation, size accounting and expiry
//! sweeping. It knows nothing of sockets, protocols or locking policy; the
//! [`crate::kv`] layer puts memcached semantics on top of it.

pub mod behind;
pub mod commit;
pub mod index;
pub mod item;
pub mod recency;

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{Durability, Eviction, StoreConfig};
use behind::WriteBehind;
use index::{Found, Index};
pub use item::Item;
use recency::Recency;

/// How many CAS values are reserved on disk at a time. A restart resumes
/// after the reservation, so a CAS value is never handed out twice.
const CAS_BLOCK: u64 = 1 << 20;
const META_FORMAT: &[u8] = b"format";
const META_CAS_RESERVED: &[u8] = b"cas_reserved";
/// Present once any client asked for access information (see
/// [`Store::enable_access_tracking`]).
const META_TRACK_ACCESS: &[u8] = b"track_access";
/// Item count, bytes and whether anything may expire, saved by a clean
/// shutdown and taken (deleted) by the next start, which then needs no
/// counting pass over the store. Absent after a crash: the start counts.
const META_CLEAN_COUNTS: &[u8] = b"clean_counts";

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Corrupt(#[from] item::CorruptItem),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("data directory {0} is in use by another process (is a server running on it?)")]
    Locked(PathBuf),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The persistent item store.
pub struct Store {
    db: sled::Db,
    items: sled::Tree,
    meta: sled::Tree,
    dir: PathBuf,
    next_cas: AtomicU64,
    cas_limit: AtomicU64,
    cas_reserve: Mutex<()>,
    curr_items: AtomicU64,
    bytes: AtomicU64,
    /// Write generation: bumped after every mutation (see [`commit`]).
    written: Arc<AtomicU64>,
    /// Last-access stamps, kept only under `--eviction lru`.
    recency: Option<Recency>,
    /// Every record in memory for reads (`None` with `--no-memory-index`).
    index: Option<Arc<Index>>,
    /// Deferred hand-over of writes to sled (with the index; in sync mode
    /// the group committer drains it each round).
    behind: Option<Arc<WriteBehind>>,
    /// Its thread, stopped first by [`Store`]'s `Drop`, which so hands
    /// every queued write to sled before sled closes.
    behind_worker: Option<behind::Worker>,
    durability: Durability,
    flush_interval: std::time::Duration,
    /// Whether plain reads record themselves in the item (fetched bit,
    /// access time). Off until a client first asks for that information,
    /// so that reads stay reads for everyone else.
    track_access: AtomicBool,
    /// Whether any item with an exptime was ever stored (or found at
    /// start-up): until then the expiry sweeper has nothing to look for and
    /// skips its passes, which would otherwise walk (and clone) every leaf
    /// of the tree once a second.
    may_expire: AtomicBool,
}

impl Store {
    /// Opens (or creates) the store in `cfg.data_dir`.
    pub fn open(cfg: &StoreConfig) -> Result<Self> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let db = sled::Config::new()
            .path(&cfg.data_dir)
            .cache_capacity(cfg.cache_mb.max(1) * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            // In sync mode the group committer does the flushing, and with
            // the write-behind thread that thread does.
            .flush_every_ms(match (cfg.durability, cfg.no_memory_index) {
                (Durability::Periodic, true) => Some(cfg.flush_interval_ms.max(1)),
                _ => None,
            })
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(cfg.data_dir.clone())
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    StoreError::Locked(cfg.data_dir.clone())
                }
                other => StoreError::Sled(other),
            })?;
        let items = db.open_tree("items")?;
        let meta = db.open_tree("meta")?;
        meta.insert(META_FORMAT, &[item::FORMAT_V2])?;
        let reserved = meta
            .get(META_CAS_RESERVED)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_le_bytes))
            .unwrap_or(1);
        let track_access = meta.contains_key(META_TRACK_ACCESS)?;
        let index = (!cfg.no_memory_index).then(|| Arc::new(Index::default()));
        let behind = index
            .as_ref()
            .map(|ix| Arc::new(WriteBehind::new(ix.clone(), db.clone(), items.clone())));
        // In sync mode the group committer hands the queue over each round.
        let interval = std::time::Duration::from_millis(cfg.flush_interval_ms.max(1));
        let behind_worker = match (&behind, cfg.durability) {
            (Some(b), Durability::Periodic) => Some(b.start(interval)?),
            _ => None,
        };
        let store = Store {
            db,
            items,
            meta,
            dir: cfg.data_dir.clone(),
            next_cas: AtomicU64::new(reserved.max(1)),
            cas_limit: AtomicU64::new(reserved.max(1)),
            cas_reserve: Mutex::new(()),
            curr_items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            written: Arc::new(AtomicU64::new(0)),
            recency: (cfg.eviction == Eviction::Lru).then(Recency::default),
            index,
            behind,
            behind_worker,
            durability: cfg.durability,
            flush_interval: std::time::Duration::from_millis(cfg.flush_interval_ms.max(1)),
            track_access: AtomicBool::new(track_access),
            may_expire: AtomicBool::new(false),
        };
        let saved = store.meta.remove(META_CLEAN_COUNTS)?;
        match saved.as_deref().and_then(parse_counts) {
            // LRU eviction needs every key in its recency table anyway.
            Some((items, bytes, may_expire)) if store.recency.is_none() => {
                store.curr_items.store(items, Ordering::Relaxed);
                store.bytes.store(bytes, Ordering::Relaxed);
                store.may_expire.store(may_expire, Ordering::Relaxed);
                // The counts are taken: a crash from here on must recount.
                store.sync_files()?;
            }
            _ => store.recount()?,
        }
        Ok(store)
    }

    /// Saves the counts for the next start (see [`META_CLEAN_COUNTS`]) and
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

    /// A fresh CAS value: unique, increasing, never reused across restarts.
    pub fn next_cas(&self) -> Result<u64> {
        let cas = self.next_cas.fetch_add(1, Ordering::Relaxed);
        if cas >= self.cas_limit.load(Ordering::Acquire) {
            let _guard = self.cas_reserve.lock();
            let limit = self.cas_limit.load(Ordering::Acquire);
            if cas >= limit {
                let new_limit = cas.max(limit) + CAS_BLOCK;
                self.meta
                    .insert(META_CAS_RESERVED, &new_limit.to_le_bytes())?;
                self.sync_files()?;
                self.cas_limit.store(new_limit, Ordering::Release);
            }
        }
        Ok(cas)
    }

    /// The item under `key`, expired or not (callers decide what expiry means).
    pub fn get(&self, key: &[u8]) -> Result<Option<Item>> {
        match self.raw(key)? {
            Some(raw) => {
                if let Some(r) = &self.recency {
                    r.touch(key);
                }
                Ok(Some(Item::from_raw(raw)?))
            }
            None => Ok(None),
        }
    }

    /// `key`'s record as stored: from the memory index when it knows.
    fn raw(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        Ok(match self.index.as_ref().map(|ix| ix.get(key)) {
            Some(Found::Record(r)) => Some(r),
            Some(Found::Absent) => None,
            Some(Found::Unknown) | None => self.items.get(key)?,
        })
    }

    /// Fills the memory index from sled, while the store serves (see
    /// [`index`]); returns how many records it offered. A no-op without
    /// the index. The server runs it on a thread of its own after start-up.
    pub fn load_index(&self) -> Result<u64> {
        let Some(ix) = &self.index else {
            return Ok(0);
        };
        let mut n = 0;
        for kv in self.items.iter() {
            let (k, v) = kv?;
            ix.lock(&k).load(v);
            n += 1;
        }
        ix.finish_loading();
        Ok(n)
    }

    /// Writes an encoded record (see [`Item::encode`]); returns the record
    /// it replaced, expired or not. Read-modify-write callers also hold the
    /// key's lock.
    pub fn insert(&self, key: &[u8], record: Vec<u8>) -> Result<Option<sled::IVec>> {
        let new_size = Item::footprint(key.len(), record.len());
        self.note_expiry(&record);
        let old = self
            .write(key, Some(record.into()), None)?
            .unwrap_or_default();
        self.account(key, old.as_ref(), Some(new_size));
        Ok(old)
    }

    /// Removes `key`, returning what was there.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Item>> {
        let old = self.write(key, None, None)?.unwrap_or_default();
        self.account(key, old.as_ref(), None);
        match old {
            Some(raw) => Ok(Some(Item::from_raw(raw)?)),
            None => Ok(None),
        }
    }

    /// Removes `key` only if it still holds exactly `item` (used by the
    /// sweeper, which runs without the key lock).
    pub fn remove_if_unchanged(&self, key: &[u8], item: &Item) -> Result<bool> {
        let done = self.write(key, None, Some(item.raw()))?.is_some();
        if done {
            self.account(key, Some(item.raw()), None);
        }
        Ok(done)
    }

    /// Replaces `key`'s record only if it still holds exactly `item`
    /// (lock-free bookkeeping writes such as access tracking on reads).
    pub fn replace_if_unchanged(&self, key: &[u8], item: &Item, record: Vec<u8>) -> Result<bool> {
        let new_size = Item::footprint(key.len(), record.len());
        self.note_expiry(&record);
        let done = self
            .write(key, Some(record.into()), Some(item.raw()))?
            .is_some();
        if done {
            self.account(key, Some(item.raw()), Some(new_size));
        }
        Ok(done)
    }

    /// Sets `key` to `new` (`None` removes it); with `expect`, only if the
    /// key holds exactly that record now. Returns the record it replaced,
    /// or `None` if `expect` did not match.
    ///
    /// With the index, the index changes under the key's shard lock and
    /// sled's part is queued for the write-behind (see [`behind`]), or, if
    /// too much is queued, done under the same lock.
    fn write(
        &self,
        key: &[u8],
        new: Option<sled::IVec>,
        expect: Option<&sled::IVec>,
    ) -> Result<Option<Option<sled::IVec>>> {
        let Some(ix) = &self.index else {
            return Ok(match expect {
                None => Some(match new {
                    Some(r) => self.items.insert(key, r)?,
                    None => self.items.remove(key)?,
                }),
                Some(e) => self
                    .items
                    .compare_and_swap(key, Some(e), new)?
                    .ok()
                    .map(|()| Some(e.clone())),
            });
        };
        let mut shard = ix.lock(key);
        let old = match shard.current() {
            Found::Record(r) => Some(r),
            Found::Absent => None,
            // Not loaded yet and not written since start (any write leaves
            // a slot until loading ends), so sled is current for this key.
            Found::Unknown => self.items.get(key)?,
        };
        if expect.is_some_and(|e| old.as_ref() != Some(e)) {
            return Ok(None);
        }
        match &self.behind {
            Some(b) if !b.is_backlogged() => shard.set_unsaved(new),
            _ => match new {
                Some(r) => {
                    self.items.insert(key, r.clone())?;
                    shard.set(r);
                }
                None => {
                    self.items.remove(key)?;
                    shard.remove();
                }
            },
        }
        Ok(Some(old))
    }

    /// Remembers that a record with an exptime exists (before it is
    /// written, so a sweep pass starting later sees the flag).
    fn note_expiry(&self, record: &[u8]) {
        if !self.may_expire.load(Ordering::Relaxed) && Item::record_exptime(record) != 0 {
            self.may_expire.store(true, Ordering::Release);
        }
    }

    fn account(&self, key: &[u8], old: Option<&sled::IVec>, new_size: Option<u64>) {
        if old.is_some() || new_size.is_some() {
            self.written.fetch_add(1, Ordering::Release);
        }
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

    /// Removes every item; returns how many were removed. Runs without the
    /// key locks, so each removal is a compare-and-swap: an item written
    /// while the clear runs may survive it (it is as if written just after),
    /// but sled and the index always agree. Access bookkeeping on an item
    /// (same CAS value) does not save it.
    pub fn clear(&self) -> Result<u64> {
        self.settle()?;
        let mut removed = 0;
        for kv in self.items.iter() {
            let (key, mut raw) = kv?;
            loop {
                let Ok(item) = Item::from_raw(raw.clone()) else {
                    // Unreadable (should not happen): remove it all the same.
                    if self.remove(&key)?.is_some() {
                        removed += 1;
                    }
                    break;
                };
                if self.remove_if_unchanged(&key, &item)? {
                    removed += 1;
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
                Ok((k, Item::from_raw(v)?))
            });
        unsettled.into_iter().map(Err).chain(scan)
    }

    /// Every item in no particular order, a batch (one index shard) at a
    /// time, straight from memory: `None` without a (fully loaded) memory
    /// index. Far
    /// cheaper than [`Store::scan`] on a large store, which pages every
    /// leaf of the tree through sled's cache.
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
            if let Ok(item) = Item::from_raw(v) {
                if item.is_expired(now) && self.remove_if_unchanged(&k, &item)? {
                    reclaimed += 1;
                }
            }
            last = Some(k);
        }
        let next = if scanned == batch { last } else { None };
        Ok((next, reclaimed))
    }

    /// Changes so far to the items (any insert or removal bumps it).
    pub fn generation(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Bulk load for `import` (no server holds the store): writes encoded
    /// records in one sled batch. Much faster than one `insert` per item;
    /// the caller must call [`Store::recount`] when done.
    pub fn apply_batch(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        // Queued writes (say, a `clear` just before) must not land after
        // the batch and undo it.
        self.settle()?;
        let mut batch = sled::Batch::default();
        let mut indexed = Vec::with_capacity(if self.index.is_some() {
            records.len()
        } else {
            0
        });
        for (k, v) in records {
            self.note_expiry(&v);
            let v = sled::IVec::from(v);
            if self.index.is_some() {
                indexed.push((k.clone(), v.clone()));
            }
            batch.insert(k, v);
        }
        self.items.apply_batch(batch)?;
        if let Some(ix) = &self.index {
            for (k, v) in indexed {
                ix.lock(&k).set(v);
            }
        }
        self.written.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Makes sure CAS values handed out from now on are all above `max`
    /// (imported items keep their CAS; new ones must never collide with it).
    pub fn reserve_cas_above(&self, max: u64) -> Result<()> {
        let _guard = self.cas_reserve.lock();
        if self.next_cas.load(Ordering::Acquire) > max {
            return Ok(());
        }
        let next = max + 1;
        let limit = next + CAS_BLOCK;
        self.meta.insert(META_CAS_RESERVED, &limit.to_le_bytes())?;
        self.sync_files()?;
        self.next_cas.fetch_max(next, Ordering::AcqRel);
        self.cas_limit.store(limit, Ordering::Release);
        Ok(())
    }

    pub fn curr_items(&self) -> u64 {
        settled(&self.curr_items)
    }

    pub fn bytes(&self) -> u64 {
        settled(&self.bytes)
    }

    /// Hands every write the write-behind thread has not given sled yet
    /// to sled now (a no-op without it).
    pub fn settle(&self) -> Result<()> {
        if let Some(b) = &self.behind {
            b.drain()?;
        }
        Ok(())
    }

    /// Writes acknowledged but not yet given to sled (see [`behind`]).
    pub fn unsaved_writes(&self) -> usize {
        self.behind.as_ref().map_or(0, |b| b.queued())
    }

    /// Makes every acknowledged write durable: [`Store::settle`], then
    /// [`Store::sync_files`].
    pub fn sync(&self) -> Result<()> {
        self.settle()?;
        self.sync_files()
    }

    /// Flushes and then `fdatasync`s the database files, because sled's own
    /// flush only issues `sync_file_range`, which is no durability barrier.
    fn sync_files(&self) -> Result<()> {
        self.db.flush()?;
        sync_dir_files(&self.dir)?;
        Ok(())
    }

    /// The write generation counter the group committer follows.
    pub fn write_generation(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// A durability handle for the group committer's thread.
    pub fn syncer(&self) -> commit::Syncer {
        commit::Syncer::new(self.db.clone(), self.dir.clone(), self.behind.clone())
    }

    /// The durability mode the store was opened with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// `--flush-interval-ms`: also the sync-mode committer's idle flush period.
    pub fn flush_interval(&self) -> std::time::Duration {
        self.flush_interval
    }

    /// Whether plain reads must record access information in items.
    pub fn tracks_access(&self) -> bool {
        self.track_access.load(Ordering::Relaxed)
    }

    /// Turns on access recording for good (persisted, so it survives a
    /// restart): called the first time a client asks for it.
    pub fn enable_access_tracking(&self) -> Result<()> {
        if !self.track_access.swap(true, Ordering::Relaxed) {
            self.meta.insert(META_TRACK_ACCESS, &[1])?;
        }
        Ok(())
    }

    /// Whether least-recently-used eviction is enabled.
    pub fn tracks_recency(&self) -> bool {
        self.recency.is_some()
    }

    /// Evicts the approximately least recently used item other than
    /// `except`; returns the bytes freed, `None` when nothing can go.
    /// Lock-free against writers: the victim is removed only if unchanged
    /// since it was read.
    pub fn evict_one(&self, except: &[u8]) -> Result<Option<u64>> {
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
                        return Ok(Some(freed));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The data directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Stops the write-behind thread, which first empties its queue
        // into sled (in sync mode nothing should be queued: every write
        // was waited on); sled itself closes (and flushes) after this.
        self.behind_worker.take();
        if let Err(e) = self.settle() {
            tracing::error!("writes not handed to sled at close: {e}");
        }
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

/// `fdatasync` every regular file below `dir` (sled's db, conf, blobs).
pub(crate) fn sync_dir_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            sync_dir_files(&entry.path())?;
        } else if ty.is_file() {
            // A file renamed away meanwhile (the CSV mirror's temp file) needs no sync.
            match File::open(entry.path()) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let s = Store::open(&cfg).unwrap();
        s.load_index().unwrap();
        (dir, s)
    }

    /// Opens again after a drop: sled's flusher thread may hold the
    /// directory lock for a moment after the last handle goes.
    fn reopen(cfg: &StoreConfig) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(cfg) {
                Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other.unwrap(),
            }
        }
    }

    #[test]
    fn cas_values_increase_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let last = {
            let s = Store::open(&cfg).unwrap();
            let a = s.next_cas().unwrap();
            let b = s.next_cas().unwrap();
            assert!(b > a);
            b
        };
        let s = reopen(&cfg);
        assert!(s.next_cas().unwrap() > last);
    }

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

    /// Index and tree hold exactly the same records (once every queued
    /// write reached the tree).
    fn assert_index_matches_tree(s: &Store) {
        use std::collections::BTreeMap;
        s.settle().unwrap();
        let tree: BTreeMap<Vec<u8>, Vec<u8>> = s
            .items
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        let ix = s.index.as_ref().expect("index on by default");
        let index: BTreeMap<Vec<u8>, Vec<u8>> = (0..ix.shards())
            .flat_map(|i| ix.shard_entries(i))
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(tree.len(), index.len());
        assert!(tree == index, "index and tree differ");
    }

    /// Three writers, each op under its key's lock (as `Kv` does): `ops`
    /// sets of `k{(i * stride + w) % keys}`, every `expire_every`-th one
    /// already expired, every `remove_every`-th removed again at once.
    fn locked_writers(
        s: &Arc<Store>,
        ops: u64,
        stride: u64,
        keys: u64,
        expire_every: u64,
        remove_every: u64,
    ) -> Vec<std::thread::JoinHandle<()>> {
        let locks = Arc::new(crate::kv::locks::LockManager::with_stripes(64));
        (0..3u64)
            .map(|w| {
                let (s, locks) = (s.clone(), locks.clone());
                std::thread::spawn(move || {
                    for i in 0..ops {
                        let key = format!("k{}", (i * stride + w) % keys);
                        let _g = locks.lock(key.as_bytes());
                        let exp = if i % expire_every == 0 { 1 } else { 0 };
                        s.insert(key.as_bytes(), Item::encode(0, exp, i + 1, &[b"v"]))
                            .unwrap();
                        if i % remove_every == 0 {
                            s.remove(key.as_bytes()).unwrap();
                        }
                    }
                })
            })
            .collect()
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

    fn record(s: &Store, key: &[u8]) -> Option<Vec<u8>> {
        s.get(key).unwrap().map(|i| i.raw().to_vec())
    }

    #[test]
    fn writes_queued_for_sled_are_read_at_once_and_reach_it_in_order() {
        let (_dir, s) = store();
        let behind = s.behind.clone().expect("periodic mode with the index");
        let r = |n: u64| Item::encode(0, 0, n, &[b"v"]);
        s.insert(b"k", r(1)).unwrap();
        assert_eq!(record(&s, b"k"), Some(r(1)), "read before sled has it");
        // A writer writing through while the key is still queued...
        behind.set_backlog_limit(0);
        s.insert(b"k", r(2)).unwrap();
        assert_eq!(s.items.get(b"k").unwrap().as_deref(), Some(&r(2)[..]));
        // ...is not undone when the queued entry is handed over.
        behind.set_backlog_limit(BACKLOG);
        s.settle().unwrap();
        assert_eq!(s.items.get(b"k").unwrap().as_deref(), Some(&r(2)[..]));
        // Queued, then removed through: gone from both.
        s.insert(b"k", r(3)).unwrap();
        behind.set_backlog_limit(0);
        assert!(s.remove(b"k").unwrap().is_some());
        behind.set_backlog_limit(BACKLOG);
        assert_index_matches_tree(&s);
        assert!(record(&s, b"k").is_none());
        // A queued removal is a tombstone until sled has it.
        s.insert(b"t", r(4)).unwrap();
        s.settle().unwrap();
        assert!(s.remove(b"t").unwrap().is_some());
        assert!(record(&s, b"t").is_none());
        assert!(s.items.get(b"t").unwrap().is_some(), "not handed over yet");
        assert!(!s
            .remove_if_unchanged(b"t", &Item::from_raw(r(4).into()).unwrap())
            .unwrap());
        assert_index_matches_tree(&s);
        assert_eq!(s.curr_items(), 0);
    }

    const BACKLOG: usize = behind::BACKLOG_LIMIT;

    /// Each key written twice in a row while hand-overs run flat out and
    /// writers switch between queueing and writing through: a hand-over
    /// that let go of the shard lock before writing sled would leave a
    /// key's first value in sled.
    #[test]
    fn hand_overs_racing_writes_through_never_leave_an_older_value() {
        let (_dir, s) = store();
        let s = Arc::new(s);
        let behind = s.behind.clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mover = {
            let (s, behind, stop) = (s.clone(), behind.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    behind.set_backlog_limit(if round.is_multiple_of(2) { 0 } else { BACKLOG });
                    s.settle().unwrap();
                }
            })
        };
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..40_000u64 {
                        let key = format!("k{w}-{i}");
                        for v in [1, 2] {
                            s.insert(key.as_bytes(), Item::encode(0, 0, v, &[b"v"]))
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        stop.store(true, Ordering::Relaxed);
        mover.join().unwrap();
        behind.set_backlog_limit(BACKLOG);
        assert_index_matches_tree(&s);
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

    #[test]
    fn closing_hands_every_queued_write_to_sled() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::for_data_dir(dir.path()).store;
        // Long enough that only the close can hand the writes over.
        cfg.flush_interval_ms = 3_600_000;
        {
            let s = Store::open(&cfg).unwrap();
            for i in 0..1000u64 {
                s.insert(
                    format!("k{i}").as_bytes(),
                    Item::encode(0, 0, i + 1, &[b"v"]),
                )
                .unwrap();
            }
            for i in (0..1000u64).step_by(3) {
                s.remove(format!("k{i}").as_bytes()).unwrap();
            }
            assert!(s.unsaved_writes() > 0);
        }
        cfg.no_memory_index = true;
        let s = reopen(&cfg);
        assert_eq!(s.curr_items(), 666);
        for i in 0..1000u64 {
            let got = s.get(format!("k{i}").as_bytes()).unwrap().map(|i| i.cas());
            assert_eq!(got, (i % 3 != 0).then_some(i + 1), "k{i}");
        }
    }

    /// Writers racing the write-behind thread (1 ms rounds), `clear`, the
    /// sweeper, and writers forced to write through now and then: sled ends
    /// exactly at the index, and survives a reopen.
    #[test]
    fn write_behind_racing_every_other_writer_ends_at_the_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::for_data_dir(dir.path()).store;
        cfg.flush_interval_ms = 1;
        let s = Arc::new(Store::open(&cfg).unwrap());
        s.load_index().unwrap();
        let writers = locked_writers(&s, 30_000, 7, 300, 5, 11);
        let behind = s.behind.clone().unwrap();
        let mut round = 0u64;
        while !writers.iter().all(|w| w.is_finished()) {
            round += 1;
            // Hand-overs here and in the thread while writers alternate
            // between queueing and writing through.
            behind.set_backlog_limit(if round.is_multiple_of(2) { 0 } else { BACKLOG });
            s.settle().unwrap();
            if round.is_multiple_of(50) {
                s.clear().unwrap();
                s.sweep(None, 1000, crate::rules::clock::system_now())
                    .unwrap();
            }
        }
        writers.into_iter().for_each(|w| w.join().unwrap());
        behind.set_backlog_limit(BACKLOG);
        assert_index_matches_tree(&s);
        let expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..300)
            .map(|i| {
                let k = format!("k{i}").into_bytes();
                let v = record(&s, &k);
                (k, v)
            })
            .collect();
        let (items, bytes) = (s.curr_items(), s.bytes());
        drop(behind); // it holds the database open too
        drop(Arc::into_inner(s).expect("writers are done"));
        cfg.no_memory_index = true;
        let s = reopen(&cfg);
        for (k, v) in expected {
            assert_eq!(record(&s, &k), v, "{}", String::from_utf8_lossy(&k));
        }
        assert_eq!((s.curr_items(), s.bytes()), (items, bytes));
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
        let locks = Arc::new(crate::kv::locks::LockManager::with_stripes(64));
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
}
