//! Approximate LRU for `--eviction lru`, in the manner of Redis's
//! `allkeys-lru`: every key carries a last-access stamp kept in memory
//! (never on disk, so a read costs no write), and eviction samples a few
//! random keys and drops the one used longest ago.
//!
//! Why this shape: sled has no cheap way to pick a random key or to keep
//! keys in access order, and an exact LRU list would need a global lock on
//! every read. Here a read is one hash, one uncontended shard lock and one
//! relaxed atomic increment. Keys live in [`IndexMap`]s because they allow
//! O(1) picks by random index (sampling) and O(1) removal.
//!
//! After a restart every key starts with stamp 0 (oldest): recency is not
//! persisted, so the first evictions after a restart pick at random among
//! keys not used since.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use indexmap::IndexMap;
use parking_lot::Mutex;

const SHARDS: usize = 16;
/// Keys examined per eviction: Redis uses 5 plus a candidate pool; 16 plain
/// samples give a similar accuracy without the pool's bookkeeping.
pub const SAMPLES: usize = 16;

/// Below this many keys, eviction looks at all of them.
const EXACT_BELOW: usize = 4 * SAMPLES;

type Shard = IndexMap<Box<[u8]>, u64>;

/// Last-access stamps of every stored key.
pub struct Recency {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    /// A logical clock: one tick per access, so order is exact even within
    /// one millisecond.
    clock: AtomicU64,
}

impl Default for Recency {
    fn default() -> Self {
        Recency {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
            clock: AtomicU64::new(1),
        }
    }
}

impl Recency {
    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Records a use of `key` (a read hit or a write).
    pub fn touch(&self, key: &[u8]) {
        let stamp = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.shard(key).lock();
        match shard.get_mut(key) {
            Some(s) => *s = stamp,
            None => {
                shard.insert(key.into(), stamp);
            }
        }
    }

    /// Registers a key found at start-up, as the oldest possible.
    pub fn load(&self, key: &[u8]) {
        self.shard(key).lock().insert(key.into(), 0);
    }

    /// Forgets a removed key.
    pub fn forget(&self, key: &[u8]) {
        self.shard(key).lock().swap_remove(key);
    }

    /// The least recently used of up to [`SAMPLES`] randomly chosen keys,
    /// skipping `except` (the key being written). `None` when no other key
    /// exists.
    pub fn victim(&self, except: &[u8]) -> Option<Box<[u8]>> {
        self.victim_unless(|key| key == except)
    }

    /// [`Recency::victim`], skipping every key `skip` names (in a group, the
    /// key being written and victims already promised to other proposals).
    pub fn victim_unless(&self, skip: impl Fn(&[u8]) -> bool) -> Option<Box<[u8]>> {
        if self.len() <= EXACT_BELOW {
            return self.exact_victim(&skip);
        }
        let mut best: Option<(u64, Box<[u8]>)> = None;
        let mut rng = fastrand::Rng::new();
        let mut picked = 0;
        // Bounded attempts: empty shards and `except` cost a try, not a pick.
        for _ in 0..SAMPLES * 4 {
            let shard = self.shards[rng.usize(..SHARDS)].lock();
            if shard.is_empty() {
                continue;
            }
            let (key, &stamp) = shard.get_index(rng.usize(..shard.len())).expect("in range");
            if skip(key) {
                continue;
            }
            if best.as_ref().is_none_or(|(b, _)| stamp < *b) {
                best = Some((stamp, key.clone()));
            }
            picked += 1;
            if picked == SAMPLES {
                break;
            }
        }
        best.map(|(_, k)| k)
    }

    /// Exact LRU over few keys, where random shard picks would mostly
    /// land on empty shards.
    fn exact_victim(&self, skip: &impl Fn(&[u8]) -> bool) -> Option<Box<[u8]>> {
        let mut best: Option<(u64, Box<[u8]>)> = None;
        for shard in self.shards.iter() {
            for (key, &stamp) in shard.lock().iter() {
                if !skip(key) && best.as_ref().is_none_or(|(b, _)| stamp < *b) {
                    best = Some((stamp, key.clone()));
                }
            }
        }
        best.map(|(_, k)| k)
    }

    /// Number of tracked keys.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victim_is_the_oldest_sampled_key_never_the_excluded_one() {
        let r = Recency::default();
        for k in [b"a", b"b", b"c"] {
            r.touch(k);
        }
        r.touch(b"a");
        assert_eq!(r.victim(b"x").as_deref(), Some(&b"b"[..]));
        assert_ne!(r.victim(b"b").as_deref(), Some(&b"b"[..]));
        r.forget(b"b");
        assert_eq!(r.len(), 2);
        assert_eq!(r.victim(b"x").as_deref(), Some(&b"c"[..]));
        r.forget(b"a");
        assert_eq!(r.victim(b"c"), None);
    }

    #[test]
    fn sampling_over_many_keys_picks_old_ones() {
        let r = Recency::default();
        for i in 0..10_000u32 {
            r.touch(&i.to_be_bytes());
        }
        for _ in 0..100 {
            let v = r.victim(b"").unwrap();
            let i = u32::from_be_bytes((*v).try_into().unwrap());
            // The oldest of 16 samples is among the oldest 70% with
            // probability 1 - 0.3^16.
            assert!(i < 7_000, "picked {i}");
        }
    }

    #[test]
    fn keys_loaded_at_start_up_are_older_than_any_touched_key() {
        let r = Recency::default();
        r.touch(b"new");
        r.load(b"old");
        assert_eq!(r.victim(b"").as_deref(), Some(&b"old"[..]));
    }
}
