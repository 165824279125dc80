//! The in-memory read index: every item's record, by key, in sharded hash
//! tables beside sled.
//!
//! sled's lookups descend a tree whose depth (and page-cache misses) grow
//! with the store, so at 10^7 keys a read cost twice what it cost at 10^4.
//! With the index a read is one hash probe whatever the size; sled still
//! holds every item and remains the only thing that is persisted (the index
//! is rebuilt from it at start-up). Records are sled's own reference-counted
//! `IVec`s, so a record sled still caches is held once.
//!
//! Consistency with sled: every write to a key changes sled and then the
//! index while holding the key's shard lock ([`Index::lock`]), so readers
//! and the lock-free writers (sweeper, clear, eviction, access bookkeeping)
//! never see one changed without the other.

use hashbrown::hash_table::{Entry, HashTable};
use parking_lot::{RwLock, RwLockWriteGuard};
use sled::IVec;
use std::hash::BuildHasher;

/// Number of shards (a power of two): enough that a writer rarely meets
/// another thread on its shard, and that copying one shard out for the CSV
/// mirror holds its lock only briefly even at 10^7 items (~2,500 each);
/// empty, they cost about 160 KiB.
const SHARDS: usize = 4096;

struct Slot {
    key: Box<[u8]>,
    record: IVec,
}

pub struct Index {
    shards: Box<[RwLock<HashTable<Slot>>]>,
    /// Seeded per process, so clients cannot aim keys at one bucket.
    hasher: foldhash::fast::RandomState,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl Index {
    /// The key's hash and its shard. The shard comes from bits the table
    /// itself does not use for small tables (it takes the low bits for the
    /// bucket and the top seven for its control bytes).
    fn locate(&self, key: &[u8]) -> (u64, &RwLock<HashTable<Slot>>) {
        let hash = self.hasher.hash_one(key);
        let shard = (hash >> 40) as usize & (SHARDS - 1);
        (hash, &self.shards[shard])
    }

    fn rehash(&self) -> impl Fn(&Slot) -> u64 + '_ {
        move |slot| self.hasher.hash_one(&*slot.key)
    }

    pub fn get(&self, key: &[u8]) -> Option<IVec> {
        let (hash, shard) = self.locate(key);
        let table = shard.read();
        table
            .find(hash, |s| *s.key == *key)
            .map(|s| s.record.clone())
    }

    /// Exclusive access to `key`'s shard. The store holds it across the
    /// sled operation *and* the index update of every write, so the two
    /// change together: a lock-free writer (sweeper, clear, eviction) can
    /// never act on a sled record the index does not show yet.
    pub fn lock<'a>(&'a self, key: &'a [u8]) -> ShardGuard<'a> {
        let (hash, shard) = self.locate(key);
        ShardGuard {
            hash,
            key,
            table: shard.write(),
            index: self,
        }
    }

    /// Drops every entry and the tables' memory.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            *shard.write() = HashTable::new();
        }
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// A copy of shard `i`'s entries (records shared, not copied), taken
    /// under its read lock for just as long as the copy takes.
    pub fn shard_entries(&self, i: usize) -> Vec<(Box<[u8]>, IVec)> {
        let table = self.shards[i].read();
        table
            .iter()
            .map(|s| (s.key.clone(), s.record.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.read().is_empty())
    }
}

/// A write-locked shard, for one key (see [`Index::lock`]).
pub struct ShardGuard<'a> {
    hash: u64,
    key: &'a [u8],
    table: RwLockWriteGuard<'a, HashTable<Slot>>,
    index: &'a Index,
}

impl ShardGuard<'_> {
    pub fn set(&mut self, record: IVec) {
        let key = self.key;
        match self
            .table
            .entry(self.hash, |s| *s.key == *key, self.index.rehash())
        {
            Entry::Occupied(mut o) => o.get_mut().record = record,
            Entry::Vacant(v) => {
                v.insert(Slot {
                    key: key.into(),
                    record,
                });
            }
        }
    }

    pub fn remove(&mut self) {
        let key = self.key;
        if let Ok(o) = self.table.find_entry(self.hash, |s| *s.key == *key) {
            o.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(s: &str) -> IVec {
        IVec::from(s)
    }

    #[test]
    fn set_get_remove() {
        let ix = Index::default();
        assert!(ix.get(b"a").is_none());
        ix.lock(b"a").set(rec("1"));
        ix.lock(b"b").set(rec("2"));
        ix.lock(b"a").set(rec("3"));
        assert_eq!(&*ix.get(b"a").unwrap(), b"3");
        assert_eq!(ix.len(), 2);
        ix.lock(b"a").remove();
        ix.lock(b"never").remove();
        assert!(ix.get(b"a").is_none());
        assert_eq!(ix.len(), 1);
        ix.clear();
        assert_eq!(ix.len(), 0);
        assert!(ix.is_empty());
    }

    #[test]
    fn many_keys_across_shards() {
        let ix = Index::default();
        for i in 0..100_000u32 {
            ix.lock(&i.to_be_bytes())
                .set(IVec::from(&i.to_le_bytes()[..]));
        }
        assert_eq!(ix.len(), 100_000);
        let copied: usize = (0..ix.shards()).map(|i| ix.shard_entries(i).len()).sum();
        assert_eq!(copied, 100_000);
        for i in (0..100_000u32).step_by(7) {
            assert_eq!(&*ix.get(&i.to_be_bytes()).unwrap(), &i.to_le_bytes());
        }
    }
}
