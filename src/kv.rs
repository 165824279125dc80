//! The command layer both front ends call: memcached's semantics for every
//! operation, run through the lock manager over the store, with the shared
//! counters. Nothing here knows about sockets, HTTP or wire formats.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Durability;
use crate::locks::LockManager;
use crate::stats::{add, bump, Stats};
use crate::store::commit::{Committer, Ticket};
use crate::store::{expiry, Item, Store, StoreError};

/// How a storage command treats an existing item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Store only if the item's CAS still equals this value.
    Cas(u64),
}

/// What a storage command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Written; `created` is false when an item was replaced.
    Stored { cas: u64, created: bool },
    /// add on an existing key, replace/append/prepend on a missing one.
    NotStored,
    /// cas: the item changed since the client read it.
    Exists,
    /// cas: no such item.
    NotFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// The item's CAS differs from the one the caller required.
    Exists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    Value { value: u64, cas: u64 },
    NotFound,
    NonNumeric,
}

/// Errors callers must turn into a protocol error.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("object too large for cache")]
    TooLarge,
    #[error("out of memory storing object")]
    NoMemory,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, KvError>;

/// The shared key-value service.
pub struct Kv {
    store: Store,
    locks: LockManager,
    pub stats: Stats,
    max_item_size: usize,
    /// Deadline (unix secs) of a delayed `flush_all`, 0 when none is pending.
    flush_at: AtomicU64,
    /// Memory limit reported as `limit_maxbytes` (0 = unlimited).
    limit_maxbytes: AtomicU64,
    started: u64,
    /// The group committer, under `--durability sync` only.
    committer: Option<Committer>,
}

enum Lookup {
    Hit(Item),
    Miss,
    Expired,
}

impl Kv {
    pub fn new(store: Store, max_item_size: usize) -> Self {
        let committer = (store.durability() == Durability::Sync).then(|| {
            Committer::start(
                store.syncer(),
                store.write_generation(),
                store.flush_interval(),
            )
        });
        Kv {
            committer,
            store,
            locks: LockManager::default(),
            stats: Stats::default(),
            max_item_size,
            flush_at: AtomicU64::new(0),
            limit_maxbytes: AtomicU64::new(0),
            started: expiry::now(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn max_item_size(&self) -> usize {
        self.max_item_size
    }

    /// `cache_memlimit` / `--max-bytes`.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.limit_maxbytes.store(bytes, Ordering::Relaxed);
    }

    pub fn memory_limit(&self) -> u64 {
        self.limit_maxbytes.load(Ordering::Relaxed)
    }

    /// Under `--durability sync`, a ticket covering every write completed so
    /// far; `None` in periodic mode, where nothing waits for the disk.
    /// Front ends take it after a batch of writes and await
    /// [`Kv::wait_durable`] before acknowledging any of them.
    pub fn commit_ticket(&self) -> Option<Ticket> {
        self.committer.as_ref().map(Committer::ticket)
    }

    /// Resolves once every write up to `ticket` is on disk (group commit:
    /// one disk sync serves every writer waiting at the time).
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        match &self.committer {
            Some(c) => c
                .wait(ticket)
                .await
                .map_err(|e| KvError::Store(StoreError::Io(std::io::Error::other(e)))),
            None => Ok(()),
        }
    }

    /// Group-commit rounds (disk syncs) run so far; 0 in periodic mode.
    pub fn commit_rounds(&self) -> u64 {
        self.committer.as_ref().map_or(0, Committer::rounds)
    }

    /// Waits until this caller's completed writes are durable, as the
    /// durability mode requires (a no-op in periodic mode). The HTTP front
    /// end calls this before answering 2xx to a write.
    pub async fn commit(&self) -> Result<()> {
        match self.commit_ticket() {
            Some(t) => self.wait_durable(t).await,
            None => Ok(()),
        }
    }

    /// Unix time the service started.
    pub fn started(&self) -> u64 {
        self.started
    }

    fn lookup(&self, key: &[u8], now: u64) -> Result<Lookup> {
        self.apply_due_flush(now)?;
        Ok(match self.store.get(key)? {
            Some(item) if item.is_expired(now) => Lookup::Expired,
            Some(item) => Lookup::Hit(item),
            None => Lookup::Miss,
        })
    }

    fn live(&self, key: &[u8], now: u64) -> Result<Option<Item>> {
        Ok(match self.lookup(key, now)? {
            Lookup::Hit(item) => Some(item),
            _ => None,
        })
    }

    /// A retrieval (`get`, `gets`, HTTP GET): the live item, counted.
    pub fn get(&self, key: &[u8]) -> Result<Option<Item>> {
        bump(&self.stats.cmd_get);
        let found = self.lookup(key, expiry::now())?;
        Ok(self.count_get(found))
    }

    fn count_get(&self, found: Lookup) -> Option<Item> {
        match found {
            Lookup::Hit(item) => {
                bump(&self.stats.get_hits);
                Some(item)
            }
            Lookup::Expired => {
                bump(&self.stats.get_misses);
                bump(&self.stats.get_expired);
                None
            }
            Lookup::Miss => {
                bump(&self.stats.get_misses);
                None
            }
        }
    }

    /// Reads an item without touching any counter (listing, export).
    pub fn peek(&self, key: &[u8]) -> Result<Option<Item>> {
        self.live(key, expiry::now())
    }

    /// `gat`/`gats`: fetch and set a new exptime in one locked step.
    pub fn get_and_touch(&self, key: &[u8], exptime: i64) -> Result<Option<Item>> {
        bump(&self.stats.cmd_get);
        bump(&self.stats.cmd_touch);
        let _guard = self.locks.lock(key);
        let now = expiry::now();
        let found = match self.lookup(key, now)? {
            Lookup::Hit(item) => Lookup::Hit(self.retouch(key, &item, exptime, now)?),
            other => other,
        };
        match &found {
            Lookup::Hit(_) => bump(&self.stats.touch_hits),
            _ => bump(&self.stats.touch_misses),
        }
        Ok(self.count_get(found))
    }

    /// Rewrites `item` with a new exptime, keeping its value, flags and CAS
    /// (memcached's touch leaves the CAS alone).
    fn retouch(&self, key: &[u8], item: &Item, exptime: i64, now: u64) -> Result<Item> {
        let exp = expiry::absolute(exptime, now);
        let record = Item::encode(item.flags(), exp, item.cas(), &[item.value()]);
        if expiry::is_expired(exp, now) {
            self.store.remove(key)?;
        } else {
            self.store.insert(key, record.clone())?;
        }
        Ok(Item::from_raw(record.into()).map_err(StoreError::from)?)
    }

    /// `touch` (and HTTP touch): new exptime for an existing item.
    pub fn touch(&self, key: &[u8], exptime: i64) -> Result<bool> {
        bump(&self.stats.cmd_touch);
        let _guard = self.locks.lock(key);
        let now = expiry::now();
        match self.live(key, now)? {
            Some(item) => {
                self.retouch(key, &item, exptime, now)?;
                bump(&self.stats.touch_hits);
                Ok(true)
            }
            None => {
                bump(&self.stats.touch_misses);
                Ok(false)
            }
        }
    }

    /// Every storage command: set, add, replace, append, prepend, cas.
    pub fn set(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
    ) -> Result<StoreOutcome> {
        bump(&self.stats.cmd_set);
        if value.len() > self.max_item_size {
            bump(&self.stats.store_too_large);
            return Err(KvError::TooLarge);
        }
        let _guard = self.locks.lock(key);
        let now = expiry::now();
        let existing = self.live(key, now)?;
        let created = existing.is_none();
        let (flags, exp, parts): (u32, u64, [&[u8]; 2]) = match (mode, &existing) {
            (StoreMode::Set, _) => (flags, expiry::absolute(exptime, now), [value, b""]),
            (StoreMode::Add, Some(_)) => return Ok(StoreOutcome::NotStored),
            (StoreMode::Add, None) => (flags, expiry::absolute(exptime, now), [value, b""]),
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return Ok(StoreOutcome::NotStored)
            }
            (StoreMode::Replace, Some(_)) => (flags, expiry::absolute(exptime, now), [value, b""]),
            (StoreMode::Append | StoreMode::Prepend, Some(old)) => {
                if old.value().len() + value.len() > self.max_item_size {
                    bump(&self.stats.store_no_memory);
                    return Err(KvError::NoMemory);
                }
                let parts = if mode == StoreMode::Append {
                    [old.value(), value]
                } else {
                    [value, old.value()]
                };
                (old.flags(), old.exptime(), parts)
            }
            (StoreMode::Cas(_), None) => {
                bump(&self.stats.cas_misses);
                return Ok(StoreOutcome::NotFound);
            }
            (StoreMode::Cas(want), Some(old)) if old.cas() != want => {
                bump(&self.stats.cas_badval);
                return Ok(StoreOutcome::Exists);
            }
            (StoreMode::Cas(_), Some(_)) => {
                bump(&self.stats.cas_hits);
                (flags, expiry::absolute(exptime, now), [value, b""])
            }
        };
        let cas = self.write(key, flags, exp, &parts, now, existing.as_ref())?;
        Ok(StoreOutcome::Stored { cas, created })
    }

    fn write(
        &self,
        key: &[u8],
        flags: u32,
        exp: u64,
        value: &[&[u8]],
        now: u64,
        old: Option<&Item>,
    ) -> Result<u64> {
        if !expiry::is_expired(exp, now) {
            let len = Item::record_len(value.iter().map(|p| p.len()).sum());
            let old = old.map_or(0, |i| Item::footprint(key.len(), i.raw().len()));
            self.make_room(key, Item::footprint(key.len(), len), old)?;
        }
        let cas = self.store.next_cas()?;
        if expiry::is_expired(exp, now) {
            // Expired on arrival: memcached stores it invisibly; we skip the write.
            self.store.remove(key)?;
        } else {
            self.store
                .insert(key, Item::encode(flags, exp, cas, value))?;
        }
        bump(&self.stats.total_items);
        Ok(cas)
    }

    /// Enforces `--max-bytes` before a write growing the store from `old`
    /// to `new` bytes for `key`: under `lru`, evicts approximately least
    /// recently used items until it fits; under `noeviction` (or when
    /// nothing can be evicted) refuses with [`KvError::NoMemory`].
    /// Concurrent writers may overshoot the limit by their own items.
    fn make_room(&self, key: &[u8], new: u64, old: u64) -> Result<()> {
        let limit = self.memory_limit();
        if limit == 0 || new <= old {
            return Ok(());
        }
        let grow = new - old;
        while self.store.bytes().saturating_add(grow) > limit {
            let evicted = if new <= limit {
                self.store.evict_one(key)?
            } else {
                None
            };
            match evicted {
                Some(_) => bump(&self.stats.evictions),
                None => {
                    bump(&self.stats.store_no_memory);
                    return Err(KvError::NoMemory);
                }
            }
        }
        Ok(())
    }

    /// Drops a key whose new value was refused as too large: memcached does
    /// this so a failed `set` never leaves the stale value readable.
    pub fn discard(&self, key: &[u8]) -> Result<()> {
        let _guard = self.locks.lock(key);
        self.store.remove(key)?;
        Ok(())
    }

    /// `delete`, optionally only when the item's CAS matches.
    pub fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        let _guard = self.locks.lock(key);
        let outcome = match (self.live(key, expiry::now())?, cas) {
            (None, _) => DeleteOutcome::NotFound,
            (Some(item), Some(want)) if item.cas() != want => DeleteOutcome::Exists,
            (Some(_), _) => {
                self.store.remove(key)?;
                DeleteOutcome::Deleted
            }
        };
        match outcome {
            DeleteOutcome::Deleted => bump(&self.stats.delete_hits),
            _ => bump(&self.stats.delete_misses),
        }
        Ok(outcome)
    }

    /// `incr` / `decr`: 64-bit unsigned; incr wraps, decr stops at 0.
    pub fn incr_decr(&self, key: &[u8], delta: u64, incr: bool) -> Result<ArithOutcome> {
        let _guard = self.locks.lock(key);
        let now = expiry::now();
        let (hits, misses) = if incr {
            (&self.stats.incr_hits, &self.stats.incr_misses)
        } else {
            (&self.stats.decr_hits, &self.stats.decr_misses)
        };
        let Some(item) = self.live(key, now)? else {
            bump(misses);
            return Ok(ArithOutcome::NotFound);
        };
        let Some(current) = parse_counter(item.value()) else {
            return Ok(ArithOutcome::NonNumeric);
        };
        let value = if incr {
            current.wrapping_add(delta)
        } else {
            current.saturating_sub(delta)
        };
        let digits = value.to_string();
        let cas = self.write(
            key,
            item.flags(),
            item.exptime(),
            &[digits.as_bytes()],
            now,
            Some(&item),
        )?;
        bump(hits);
        Ok(ArithOutcome::Value { value, cas })
    }

    /// `flush_all [delay]`: invalidate every item now or at `delay`
    /// (memcached exptime rules); a later call replaces a pending one.
    pub fn flush_all(&self, delay: i64) -> Result<()> {
        bump(&self.stats.cmd_flush);
        let now = expiry::now();
        if delay <= 0 {
            self.flush_at.store(0, Ordering::Relaxed);
            self.store.clear()?;
        } else {
            self.flush_at
                .store(expiry::absolute(delay, now), Ordering::Relaxed);
        }
        Ok(())
    }

    fn apply_due_flush(&self, now: u64) -> Result<()> {
        let at = self.flush_at.load(Ordering::Relaxed);
        if at != 0
            && now >= at
            && self
                .flush_at
                .compare_exchange(at, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.store.clear()?;
        }
        Ok(())
    }

    /// One step of the expiry sweeper: reclaims expired items among the
    /// next `batch` keys and returns where to continue.
    pub fn sweep(&self, cursor: Option<sled::IVec>, batch: usize) -> Result<Option<sled::IVec>> {
        let now = expiry::now();
        self.apply_due_flush(now)?;
        let (next, reclaimed) = self.store.sweep(cursor, batch, now)?;
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
}

/// memcached's reading of a counter value: ASCII digits (trailing spaces
/// allowed, as memcached pads shrunk counters), fitting in a u64.
fn parse_counter(value: &[u8]) -> Option<u64> {
    let end = value
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(0, |i| i + 1);
    let digits = &value[..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv() -> (tempfile::TempDir, Kv) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let kv = Kv::new(Store::open(&cfg).unwrap(), 1024);
        (dir, kv)
    }

    #[test]
    fn counters_parse_like_memcached() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"9 "), Some(9));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_counter(b"18446744073709551616"), None);
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b"-1"), None);
        assert_eq!(parse_counter(b"1a"), None);
    }

    #[test]
    fn storage_modes_follow_memcached() {
        let (_d, kv) = kv();
        use StoreMode::*;
        assert_eq!(kv.set(Replace, b"k", 0, 0, b"x").unwrap(), StoreOutcome::NotStored);
        assert_eq!(kv.set(Append, b"k", 0, 0, b"x").unwrap(), StoreOutcome::NotStored);
        let StoreOutcome::Stored { cas, created: true } = kv.set(Add, b"k", 7, 0, b"b").unwrap() else {
            panic!()
        };
        assert_eq!(kv.set(Add, b"k", 0, 0, b"x").unwrap(), StoreOutcome::NotStored);
        kv.set(Append, b"k", 0, 0, b"c").unwrap();
        kv.set(Prepend, b"k", 0, 0, b"a").unwrap();
        let item = kv.get(b"k").unwrap().unwrap();
        assert_eq!((item.value(), item.flags()), (&b"abc"[..], 7));
        assert_eq!(kv.set(Cas(cas), b"k", 0, 0, b"z").unwrap(), StoreOutcome::Exists);
        assert_eq!(kv.set(Cas(1), b"nope", 0, 0, b"z").unwrap(), StoreOutcome::NotFound);
        let now_cas = item.cas();
        assert!(matches!(kv.set(Cas(now_cas), b"k", 0, 0, b"z").unwrap(), StoreOutcome::Stored { created: false, .. }));
        assert!(matches!(kv.set(Set, b"big", 0, 0, &[0; 1025]), Err(KvError::TooLarge)));
        assert!(matches!(kv.set(Append, b"k", 0, 0, &[0; 1024]), Err(KvError::NoMemory)));
    }

    #[test]
    fn arithmetic_wraps_and_floors() {
        let (_d, kv) = kv();
        kv.set(StoreMode::Set, b"n", 0, 0, b"18446744073709551615").unwrap();
        assert!(matches!(kv.incr_decr(b"n", 2, true).unwrap(), ArithOutcome::Value { value: 1, .. }));
        assert!(matches!(kv.incr_decr(b"n", 5, false).unwrap(), ArithOutcome::Value { value: 0, .. }));
        kv.set(StoreMode::Set, b"s", 0, 0, b"abc").unwrap();
        assert_eq!(kv.incr_decr(b"s", 1, true).unwrap(), ArithOutcome::NonNumeric);
        assert_eq!(kv.incr_decr(b"none", 1, true).unwrap(), ArithOutcome::NotFound);
    }

    #[test]
    fn expired_items_are_invisible() {
        let (_d, kv) = kv();
        kv.set(StoreMode::Set, b"gone", 0, -1, b"v").unwrap();
        assert!(kv.get(b"gone").unwrap().is_none());
        kv.set(StoreMode::Set, b"t", 0, 100, b"v").unwrap();
        assert!(kv.touch(b"t", -1).unwrap());
        assert!(kv.get(b"t").unwrap().is_none());
        assert_eq!(kv.set(StoreMode::Add, b"t", 0, 0, b"w").unwrap(), StoreOutcome::Stored { cas: kv.get(b"t").unwrap().unwrap().cas(), created: true });
    }
}
