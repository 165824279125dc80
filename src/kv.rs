//! The command layer both front ends call: memcached's semantics for every
//! operation, run through the lock manager over the store, with the shared
//! counters. Nothing here knows about sockets, HTTP or wire formats.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::locks::LockManager;
use crate::stats::{add, bump, Stats};
use crate::store::commit::Ticket;
use crate::store::item::state;
use crate::store::{expiry, Item, Store, StoreError};

/// The meta and binary protocols' extra operations (stale items, win
/// tokens, explicit CAS, access tracking) over the same store and locks.
mod meta;
pub use meta::{ArithOptions, ArithResult, MetaGetOptions, MetaHit, SetOptions};

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

/// An item's metadata as listed by [`Kv::list`] (without its value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: sled::IVec,
    pub size: usize,
    pub flags: u32,
    /// Absolute expiry (unix secs), 0 = never.
    pub exptime: u64,
    pub cas: u64,
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
}

enum Lookup {
    Hit(Item),
    Miss,
    Expired,
}

impl Kv {
    pub fn new(store: Store, max_item_size: usize) -> Self {
        Kv {
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
        self.store.commit_ticket()
    }

    /// Resolves once every write up to `ticket` is on disk (group commit:
    /// one disk sync serves every writer waiting at the time).
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        self.store
            .wait_durable(ticket)
            .await
            .map_err(KvError::Store)
    }

    /// Group-commit rounds (disk syncs) run so far; 0 in periodic mode.
    pub fn commit_rounds(&self) -> u64 {
        self.store.commit_rounds()
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

    /// Every command's read of a key. Like memcached, finding an expired
    /// item counts as `get_expired` whatever the command.
    fn lookup(&self, key: &[u8], now: u64) -> Result<Lookup> {
        self.apply_due_flush(now)?;
        Ok(match self.store.get(key)? {
            Some(item) if item.is_expired(now) => {
                bump(&self.stats.get_expired);
                Lookup::Expired
            }
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
        let now = expiry::now();
        let found = self.lookup(key, now)?;
        if let Lookup::Hit(item) = &found {
            if self.store.tracks_access() {
                self.note_access(key, item, now);
            }
        }
        Ok(self.count_get(found))
    }

    fn count_get(&self, found: Lookup) -> Option<Item> {
        match found {
            Lookup::Hit(item) => {
                bump(&self.stats.get_hits);
                Some(item)
            }
            Lookup::Expired | Lookup::Miss => {
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
    /// memcached counts it as a touch only (not in `cmd_get`/`get_hits`).
    pub fn get_and_touch(&self, key: &[u8], exptime: i64) -> Result<Option<Item>> {
        bump(&self.stats.cmd_touch);
        let _guard = self.locks.lock(key);
        let now = expiry::now();
        match self.live(key, now)? {
            Some(item) => {
                bump(&self.stats.touch_hits);
                Ok(Some(self.retouch(key, &item, exptime, now)?))
            }
            None => {
                bump(&self.stats.touch_misses);
                Ok(None)
            }
        }
    }

    /// Rewrites `item` with a new exptime, keeping its value, flags and CAS
    /// (memcached's touch leaves the CAS alone). An exptime in the past
    /// leaves an invisible item for the sweeper, as memcached does.
    fn retouch(&self, key: &[u8], item: &Item, exptime: i64, now: u64) -> Result<Item> {
        let exp = expiry::absolute(exptime, now);
        // Like memcached's touch: a read (fetched), state bits kept. An
        // expired result stays, invisible, until the sweeper takes it.
        let record = item.rewrite(exp, item.state() | state::FETCHED, now);
        self.store.insert(key, record.clone())?;
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
        self.set_with(mode, key, flags, exptime, value, &SetOptions::default())
    }

    /// [`Kv::set`] with the meta/binary extras of [`SetOptions`].
    pub fn set_with(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        opts: &SetOptions,
    ) -> Result<StoreOutcome> {
        bump(&self.stats.cmd_set);
        if value.len() > self.max_item_size {
            bump(&self.stats.store_too_large);
            return Err(KvError::TooLarge);
        }
        let _guard = self.locks.lock(key);
        let now = expiry::now();
        if mode == StoreMode::Set && self.memory_limit() == 0 {
            return self.plain_set(key, flags, exptime, value, opts, now);
        }
        let existing = self.live(key, now)?;
        let created = existing.is_none();
        let mut stale = 0;
        let (flags, exp, parts): (u32, u64, [&[u8]; 2]) = match (mode, &existing) {
            (StoreMode::Set, _) => (flags, expiry::absolute(exptime, now), [value, b""]),
            (StoreMode::Add, Some(_)) => return Ok(StoreOutcome::NotStored),
            (StoreMode::Add, None) => (flags, expiry::absolute(exptime, now), [value, b""]),
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return Ok(StoreOutcome::NotStored)
            }
            (StoreMode::Replace, Some(_)) => (flags, expiry::absolute(exptime, now), [value, b""]),
            (StoreMode::Append | StoreMode::Prepend, Some(old))
                if opts.cas.is_some_and(|want| want != old.cas()) =>
            {
                return Ok(StoreOutcome::Exists)
            }
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
            (StoreMode::Cas(want), Some(old))
                if old.cas() != want && !(opts.invalidate && want < old.cas()) =>
            {
                bump(&self.stats.cas_badval);
                return Ok(StoreOutcome::Exists);
            }
            (StoreMode::Cas(want), Some(old)) if old.cas() != want => {
                // meta `I`: an older CAS still stores, but as a stale item
                // keeping the old TTL and any win token already handed out.
                stale = state::STALE | (old.state() & state::TOKEN_SENT);
                (flags, old.exptime(), [value, b""])
            }
            (StoreMode::Cas(_), Some(_)) => {
                bump(&self.stats.cas_hits);
                (flags, expiry::absolute(exptime, now), [value, b""])
            }
        };
        let cas = self.write(
            key,
            flags,
            exp,
            &parts,
            now,
            opts.new_cas,
            opts.state | stale,
            existing.as_ref(),
        )?;
        Ok(StoreOutcome::Stored { cas, created })
    }

    /// A `set` with no `--max-bytes` to enforce: one tree operation, since
    /// sled's insert hands back the old record, which is all `created` (and
    /// the `get_expired` count) needs. Called with the key locked.
    fn plain_set(
        &self,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        opts: &SetOptions,
        now: u64,
    ) -> Result<StoreOutcome> {
        self.apply_due_flush(now)?;
        let exp = expiry::absolute(exptime, now);
        let cas = match opts.new_cas {
            Some(cas) => cas,
            None => self.store.next_cas()?,
        };
        let record = Item::encode_with(flags, exp, cas, opts.state, now, &[value]);
        let old = self.store.insert(key, record)?;
        bump(&self.stats.total_items);
        let created = match old.map(Item::from_raw) {
            None | Some(Err(_)) => true,
            Some(Ok(old)) if old.is_expired(now) => {
                bump(&self.stats.get_expired);
                true
            }
            Some(Ok(_)) => false,
        };
        Ok(StoreOutcome::Stored { cas, created })
    }

    /// Writes a new item version: a fresh CAS unless `cas` is given
    /// (meta `E`), with the given [`state`] bits. Expired on arrival
    /// (negative or past exptime) is still written, as memcached does:
    /// invisible, counted as `get_expired` if asked for, reclaimed by the
    /// sweeper.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        key: &[u8],
        flags: u32,
        exp: u64,
        value: &[&[u8]],
        now: u64,
        cas: Option<u64>,
        state: u8,
        old: Option<&Item>,
    ) -> Result<u64> {
        if !expiry::is_expired(exp, now) {
            let len = Item::record_len(value.iter().map(|p| p.len()).sum());
            let old = old.map_or(0, |i| Item::footprint(key.len(), i.raw().len()));
            self.make_room(key, Item::footprint(key.len(), len), old)?;
        }
        let cas = match cas {
            Some(cas) => cas,
            None => self.store.next_cas()?,
        };
        self.store
            .insert(key, Item::encode_with(flags, exp, cas, state, now, value))?;
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
        Ok(
            match self.arith_with(key, delta, incr, &ArithOptions::default())? {
                ArithResult::Value { value, cas, .. } => ArithOutcome::Value { value, cas },
                ArithResult::NonNumeric => ArithOutcome::NonNumeric,
                ArithResult::NotFound | ArithResult::Exists => ArithOutcome::NotFound,
            },
        )
    }

    /// [`Kv::incr_decr`] with the meta/binary extras of [`ArithOptions`]:
    /// a required CAS, creation on a miss, a new TTL, an explicit new CAS.
    pub fn arith_with(
        &self,
        key: &[u8],
        delta: u64,
        incr: bool,
        opts: &ArithOptions,
    ) -> Result<ArithResult> {
        let _guard = self.locks.lock(key);
        let now = expiry::now();
        let (hits, misses) = if incr {
            (&self.stats.incr_hits, &self.stats.incr_misses)
        } else {
            (&self.stats.decr_hits, &self.stats.decr_misses)
        };
        let Some(item) = self.live(key, now)? else {
            if let Some((initial, exptime)) = opts.vivify {
                let exp = expiry::absolute(exptime, now);
                let digits = initial.to_string();
                let cas = self.write(
                    key,
                    0,
                    exp,
                    &[digits.as_bytes()],
                    now,
                    opts.new_cas,
                    opts.state,
                    None,
                )?;
                return Ok(ArithResult::Value {
                    value: initial,
                    cas,
                    exptime: exp,
                    created: true,
                });
            }
            bump(misses);
            return Ok(ArithResult::NotFound);
        };
        if opts.cas.is_some_and(|want| want != item.cas()) {
            return Ok(ArithResult::Exists);
        }
        let Some(current) = parse_counter(item.value()) else {
            return Ok(ArithResult::NonNumeric);
        };
        let value = if incr {
            current.wrapping_add(delta)
        } else {
            current.saturating_sub(delta)
        };
        let exp = opts
            .touch
            .map_or(item.exptime(), |t| expiry::absolute(t, now));
        let digits = value.to_string();
        let keep = item.state() & state::KEY_BINARY;
        let cas = self.write(
            key,
            item.flags(),
            exp,
            &[digits.as_bytes()],
            now,
            opts.new_cas,
            keep,
            Some(&item),
        )?;
        bump(hits);
        Ok(ArithResult::Value {
            value,
            cas,
            exptime: exp,
            created: false,
        })
    }

    /// `flush_all [delay]`: invalidate every item now or at `delay`
    /// (memcached exptime rules); a later call replaces a pending one.
    /// Like memcached, the deadline is one second before `delay`, so
    /// `flush_all 1` takes effect at once.
    pub fn flush_all(&self, delay: i64) -> Result<()> {
        bump(&self.stats.cmd_flush);
        let now = expiry::now();
        let deadline = if delay <= 0 {
            0
        } else {
            expiry::absolute(delay, now) - 1
        };
        if deadline <= now {
            self.flush_at.store(0, Ordering::Relaxed);
            off_the_runtime(|| self.store.clear())?;
        } else {
            self.flush_at.store(deadline, Ordering::Relaxed);
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
            off_the_runtime(|| self.store.clear())?;
        }
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
        let now = expiry::now();
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

/// memcached's reading of a counter value (`strtoull`): optional leading
/// whitespace and `+`, ASCII digits fitting in a u64, then the end or
/// whitespace (memcached pads shrunk counters with spaces and ignores
/// whatever follows the first whitespace).
/// Runs whole-store work (`flush_all` walks every item) so that it does
/// not stall the other connections of the calling runtime worker: on the
/// multi-thread runtime the worker hands its tasks to another thread
/// meanwhile. Elsewhere (a current-thread runtime, no runtime) it just runs.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn parse_counter(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii_start();
    let value = value.strip_prefix(b"+").unwrap_or(value);
    let end = value
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, rest) = value.split_at(end);
    if digits.is_empty()
        || rest
            .first()
            .is_some_and(|b| !b.is_ascii_whitespace() && *b != 0x0b)
    {
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
        // strtoull's reading: leading blanks and '+', anything after a blank.
        assert_eq!(parse_counter(b" +12"), Some(12));
        assert_eq!(parse_counter(b"12 abc"), Some(12));
        assert_eq!(parse_counter(b"12\tx"), Some(12));
        assert_eq!(parse_counter(b"+"), None);
    }

    #[test]
    fn set_reports_created_when_the_old_item_was_missing_or_expired() {
        let (_d, kv) = kv();
        let created = |kv: &Kv, exp| match kv.set(StoreMode::Set, b"k", 0, exp, b"v").unwrap() {
            StoreOutcome::Stored { created, .. } => created,
            other => panic!("{other:?}"),
        };
        assert!(created(&kv, 0), "missing");
        assert!(!created(&kv, -1), "replaces a live item");
        assert!(created(&kv, 0), "the old one had expired");
        assert_eq!(kv.stats.get_expired.load(Ordering::Relaxed), 1);
        assert!(!created(&kv, 0));
        assert_eq!(kv.store().curr_items(), 1);
    }

    #[test]
    fn storage_modes_follow_memcached() {
        let (_d, kv) = kv();
        use StoreMode::*;
        assert_eq!(
            kv.set(Replace, b"k", 0, 0, b"x").unwrap(),
            StoreOutcome::NotStored
        );
        assert_eq!(
            kv.set(Append, b"k", 0, 0, b"x").unwrap(),
            StoreOutcome::NotStored
        );
        let StoreOutcome::Stored { cas, created: true } = kv.set(Add, b"k", 7, 0, b"b").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            kv.set(Add, b"k", 0, 0, b"x").unwrap(),
            StoreOutcome::NotStored
        );
        kv.set(Append, b"k", 0, 0, b"c").unwrap();
        kv.set(Prepend, b"k", 0, 0, b"a").unwrap();
        let item = kv.get(b"k").unwrap().unwrap();
        assert_eq!((item.value(), item.flags()), (&b"abc"[..], 7));
        assert_eq!(
            kv.set(Cas(cas), b"k", 0, 0, b"z").unwrap(),
            StoreOutcome::Exists
        );
        assert_eq!(
            kv.set(Cas(1), b"nope", 0, 0, b"z").unwrap(),
            StoreOutcome::NotFound
        );
        let now_cas = item.cas();
        assert!(matches!(
            kv.set(Cas(now_cas), b"k", 0, 0, b"z").unwrap(),
            StoreOutcome::Stored { created: false, .. }
        ));
        assert!(matches!(
            kv.set(Set, b"big", 0, 0, &[0; 1025]),
            Err(KvError::TooLarge)
        ));
        assert!(matches!(
            kv.set(Append, b"k", 0, 0, &[0; 1024]),
            Err(KvError::NoMemory)
        ));
    }

    #[test]
    fn arithmetic_wraps_and_floors() {
        let (_d, kv) = kv();
        kv.set(StoreMode::Set, b"n", 0, 0, b"18446744073709551615")
            .unwrap();
        assert!(matches!(
            kv.incr_decr(b"n", 2, true).unwrap(),
            ArithOutcome::Value { value: 1, .. }
        ));
        assert!(matches!(
            kv.incr_decr(b"n", 5, false).unwrap(),
            ArithOutcome::Value { value: 0, .. }
        ));
        kv.set(StoreMode::Set, b"s", 0, 0, b"abc").unwrap();
        assert_eq!(
            kv.incr_decr(b"s", 1, true).unwrap(),
            ArithOutcome::NonNumeric
        );
        assert_eq!(
            kv.incr_decr(b"none", 1, true).unwrap(),
            ArithOutcome::NotFound
        );
    }

    #[test]
    fn list_pages_skip_expired_items() {
        let (_d, kv) = kv();
        for k in ["a", "p1", "p2", "p3", "p4", "q"] {
            kv.set(StoreMode::Set, k.as_bytes(), 3, 0, b"vv").unwrap();
        }
        // Expired long ago but not yet swept.
        kv.store()
            .insert(b"p0", Item::encode(0, 5, 1, &[b"gone"]))
            .unwrap();
        let (page, more) = kv.list(b"p", None, 2).unwrap();
        let keys: Vec<_> = page.iter().map(|l| l.key.to_vec()).collect();
        assert_eq!((keys, more), (vec![b"p1".to_vec(), b"p2".to_vec()], true));
        assert_eq!((page[0].size, page[0].flags), (2, 3));
        let (page, more) = kv.list(b"p", Some(b"p2"), 2).unwrap();
        assert_eq!((page.len(), more), (2, false));
        assert_eq!(page[1].key.as_ref(), b"p4");
    }

    #[test]
    fn expired_items_are_invisible() {
        let (_d, kv) = kv();
        kv.set(StoreMode::Set, b"gone", 0, -1, b"v").unwrap();
        assert!(kv.get(b"gone").unwrap().is_none());
        kv.set(StoreMode::Set, b"t", 0, 100, b"v").unwrap();
        assert!(kv.touch(b"t", -1).unwrap());
        assert!(kv.get(b"t").unwrap().is_none());
        assert_eq!(
            kv.set(StoreMode::Add, b"t", 0, 0, b"w").unwrap(),
            StoreOutcome::Stored {
                cas: kv.get(b"t").unwrap().unwrap().cas(),
                created: true
            }
        );
    }
}
