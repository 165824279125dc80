//! Per-key writes: every storage command, touch, delete and incr/decr.
//! Each holds the key's lock from its read to its write, so two writers of
//! one key never interleave; `--max-bytes` is enforced here before a write
//! grows the store.

use super::feed::ChangeKind;
use super::stats::bump;
use super::{
    expiry, key_bits, state, wait_for, ArithOptions, ArithOutcome, ArithResult, DeleteOutcome,
    Item, Kv, KvError, Result, SetOptions, StoreError, StoreMode, StoreOutcome,
};
use crate::rules::parse_u64;

impl Kv {
    /// `gat`/`gats`: fetch and set a new exptime in one locked step.
    /// memcached counts it as a touch only (not in `cmd_get`/`get_hits`).
    pub fn get_and_touch(&self, key: &[u8], exptime: i64) -> Result<Option<Item>> {
        if self.replicated().is_some() {
            // The touch goes through the log; the read is this node's.
            return wait_for(self.get_and_touch_async(key, exptime));
        }
        bump(&self.stats.cmd_touch);
        let _guard = self.locks.lock(key);
        let now = self.now();
        let found = self.live(key, now)?;
        if self.detail.enabled() {
            self.detail.get(key, found.is_some());
        }
        match found {
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
    pub(super) fn retouch(&self, key: &[u8], item: &Item, exptime: i64, now: u64) -> Result<Item> {
        let exp = expiry::absolute(exptime, now);
        // Like memcached's touch: a read (fetched), state bits kept. An
        // expired result stays, invisible, until the sweeper takes it.
        let record = item.rewrite(exp, item.state() | state::FETCHED, now);
        self.store.insert(key, record.clone())?;
        let item = Item::from_raw(record.into()).map_err(StoreError::from)?;
        // A touch is a `set` with the new TTL for watchers.
        self.note_item(key, &item);
        Ok(item)
    }

    /// `touch` (and HTTP touch): new exptime for an existing item.
    pub fn touch(&self, key: &[u8], exptime: i64) -> Result<bool> {
        if self.replicated().is_some() {
            return wait_for(self.touch_async(key, exptime));
        }
        bump(&self.stats.cmd_touch);
        let _guard = self.locks.lock(key);
        let now = self.now();
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
        if self.replicated().is_some() {
            return wait_for(self.set_with_async(mode, key, flags, exptime, value, opts));
        }
        bump(&self.stats.cmd_set);
        if self.detail.enabled() {
            self.detail.set(key);
        }
        if value.len() > self.max_item_size {
            bump(&self.stats.store_too_large);
            return Err(KvError::TooLarge);
        }
        let _guard = self.locks.lock(key);
        let now = self.now();
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
            key_bits(opts.binary_key) | stale,
            existing.as_ref(),
        )?;
        Ok(StoreOutcome::Stored { cas, created })
    }

    /// A `set` with no `--max-bytes` to enforce: one tree operation, since
    /// sled's insert hands back the old record, which is all `created` (and
    /// the `get_expired` count) needs. Called with the key locked.
    pub(super) fn plain_set(
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
            None => self.fresh_cas()?,
        };
        let record = Item::encode_with(flags, exp, cas, key_bits(opts.binary_key), now, &[value]);
        let old = self.store.insert(key, record)?;
        self.note_set(key, flags, exp, cas, &[value]);
        // The lookup memcached's set makes first finds a flushed item.
        self.forget_flushed(key, old.is_none());
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
    pub(super) fn write(
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
            None => self.fresh_cas()?,
        };
        self.store
            .insert(key, Item::encode_with(flags, exp, cas, state, now, value))?;
        self.note_set(key, flags, exp, cas, value);
        bump(&self.stats.total_items);
        Ok(cas)
    }

    /// Enforces `--max-bytes` before a write growing the store from `old`
    /// to `new` bytes for `key`: under `lru`, evicts approximately least
    /// recently used items until it fits; under `noeviction` (or when
    /// nothing can be evicted) refuses with [`KvError::NoMemory`].
    /// Concurrent writers may overshoot the limit by their own items.
    pub(super) fn make_room(&self, key: &[u8], new: u64, old: u64) -> Result<()> {
        let limit = self.memory_limit();
        if limit == 0 || new <= old {
            return Ok(());
        }
        let grow = new - old;
        while self.store.bytes().saturating_add(grow) > limit {
            // A replica applying the log never chooses victims itself: the
            // leader did, and the entry's were removed first (`kv::evict`).
            let evicted = if new <= limit && super::APPLYING.with(|a| a.get().is_none()) {
                self.store.evict_one(key)?
            } else {
                None
            };
            match evicted {
                Some((_, victim, item)) => {
                    bump(&self.stats.evictions);
                    if self.feed.armed() {
                        self.publish_removed(ChangeKind::Delete, &victim, Some(&item), true);
                    }
                }
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
        if self.replicated().is_some() {
            return wait_for(self.delete_async(key, None)).map(|_| ());
        }
        let _guard = self.locks.lock(key);
        let removed = self.store.remove(key)?;
        if let Some(item) = &removed {
            self.note_removed(ChangeKind::Delete, key, Some(item));
        }
        // memcached looks the key up to unlink it: a flushed item counts.
        self.forget_flushed(key, removed.is_none());
        Ok(())
    }

    /// `delete`, optionally only when the item's CAS matches.
    pub fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        if self.replicated().is_some() {
            return wait_for(self.delete_async(key, cas));
        }
        if self.detail.enabled() {
            self.detail.delete(key);
        }
        let _guard = self.locks.lock(key);
        let outcome = match (self.live(key, self.now())?, cas) {
            (None, _) => DeleteOutcome::NotFound,
            (Some(item), Some(want)) if item.cas() != want => DeleteOutcome::Exists,
            (Some(item), _) => {
                self.store.remove(key)?;
                self.note_removed(ChangeKind::Delete, key, Some(&item));
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
        Ok(ArithOutcome::from(self.arith_with(
            key,
            delta,
            incr,
            &ArithOptions::default(),
        )?))
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
        if self.replicated().is_some() {
            return wait_for(self.arith_with_async(key, delta, incr, opts));
        }
        let _guard = self.locks.lock(key);
        let now = self.now();
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
                    key_bits(opts.binary_key),
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
        let Some(current) = parse_u64(item.value()) else {
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
}

impl From<ArithResult> for ArithOutcome {
    /// What the classic `incr`/`decr` answer of a meta/binary result is.
    fn from(result: ArithResult) -> Self {
        match result {
            ArithResult::Value { value, cas, .. } => ArithOutcome::Value { value, cas },
            ArithResult::NonNumeric => ArithOutcome::NonNumeric,
            ArithResult::NotFound | ArithResult::Exists => ArithOutcome::NotFound,
        }
    }
}
