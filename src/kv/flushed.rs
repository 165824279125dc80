//! The keys `flush_all` removed, remembered so a later command that looks
//! one of them up can count memcached's `get_flushed`.
//!
//! memcached's `flush_all` only marks items invalid; the first command
//! that then finds one (any command: get, gets, gat, mg, me, but also set,
//! add, delete, touch, incr... all look the key up first) unlinks it and
//! counts `get_flushed` once. Here a flush removes the items at once, so
//! the flush remembers which keys it removed and [`Flushed::take`] plays
//! the part of memcached's unlink: the first lookup of a remembered key
//! forgets it and says whether it was there.
//!
//! Memory is bounded: at most [`MAX_FLUSHED_KEYS`] keys are remembered
//! (the first ones the flush removed; later flushes add theirs to what is
//! still remembered, up to the same bound, since memcached's items stay
//! flushed across flushes). A key beyond the bound is a plain miss, so
//! past it `get_flushed` undercounts, never overcounts (but see below).
//!
//! Keys are remembered as 64-bit keyed hashes ([`RandomState`], SipHash
//! with per-process random keys), not as the keys themselves: 8 bytes
//! each instead of up to 250 plus allocation overhead. At the bound the
//! set takes about 1.2 MB (100,000 hashes in 16 hash tables of 8,192
//! buckets of 9 bytes), plus a transient 0.8 MB list while a flush runs;
//! keeping the keys could take 25 MB or more. The cost is a false
//! positive: a key that was never flushed whose hash equals a remembered
//! one, a chance of at most 100,000 / 2^64 (about 5e-15) per miss, which
//! clients cannot aim at since the hash keys are random.
//!
//! A flush's clear runs without the key locks, so a write racing it may
//! leave a live item whose key is remembered: the first lookup finds the
//! item and forgets the key without counting it.
//!
//! The hot path is one relaxed load of [`Flushed::len`] while nothing is
//! remembered (the usual case). Once something is, every lookup of a key
//! takes one of 16 shard locks for a hash-set removal, until every
//! remembered key has been looked up or written, or a bulk replace
//! ([`Flushed::forget_all`]) drops them.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// At most this many flushed keys are remembered (about 1.2 MB).
pub const MAX_FLUSHED_KEYS: usize = 100_000;

const SHARDS: usize = 16;

/// The remembered keys (see the module documentation).
pub struct Flushed {
    /// How many hashes the shards hold, updated under the shard lock
    /// that changes them, so it is never 0 while one is held.
    len: AtomicUsize,
    shards: [Mutex<HashSet<u64>>; SHARDS],
    hasher: RandomState,
    /// Serializes [`Flushed::remember`], which keeps the bound.
    adding: Mutex<()>,
}

impl Default for Flushed {
    fn default() -> Self {
        Flushed {
            len: AtomicUsize::new(0),
            shards: std::array::from_fn(|_| Mutex::default()),
            hasher: RandomState::new(),
            adding: Mutex::new(()),
        }
    }
}

impl Flushed {
    /// A key's remembered form.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> &Mutex<HashSet<u64>> {
        &self.shards[(hash >> 60) as usize % SHARDS]
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Remembers the hashes of keys a flush removed, on top of those still
    /// remembered, until [`MAX_FLUSHED_KEYS`] are.
    pub fn remember(&self, hashes: &[u64]) {
        let _adding = self.adding.lock();
        for &hash in hashes {
            if self.len() >= MAX_FLUSHED_KEYS {
                break;
            }
            let mut shard = self.shard(hash).lock();
            if shard.insert(hash) {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets `key`; whether it was remembered (the first lookup of a
    /// flushed key). One relaxed load while nothing is remembered.
    pub fn take(&self, key: &[u8]) -> bool {
        if self.len() == 0 {
            return false;
        }
        let hash = self.hash(key);
        let mut shard = self.shard(hash).lock();
        if !shard.remove(&hash) {
            return false;
        }
        self.len.fetch_sub(1, Ordering::Relaxed);
        if shard.is_empty() {
            // Give the table's memory back once its last key is taken.
            *shard = HashSet::new();
        }
        true
    }

    /// Forgets every key (the store was replaced, not flushed).
    pub fn forget_all(&self) {
        let _adding = self.adding.lock();
        for shard in &self.shards {
            let mut shard = shard.lock();
            self.len.fetch_sub(shard.len(), Ordering::Relaxed);
            *shard = HashSet::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_taken_once_and_the_bound_holds() {
        let f = Flushed::default();
        assert!(!f.take(b"a"), "nothing remembered");
        f.remember(&[f.hash(b"a"), f.hash(b"b"), f.hash(b"a")]);
        assert_eq!(f.len(), 2);
        assert!(f.take(b"a"));
        assert!(!f.take(b"a"), "only the first lookup");
        assert!(!f.take(b"c"));
        let many: Vec<u64> = (0..MAX_FLUSHED_KEYS as u64 + 10)
            .map(|i| i * 3 + 1)
            .collect();
        f.remember(&many);
        assert_eq!(f.len(), MAX_FLUSHED_KEYS, "b plus the first of many");
        assert!(f.take(b"b"), "kept from the earlier flush");
        f.forget_all();
        assert_eq!(f.len(), 0);
    }
}
