//! The in-memory read index: every item's record, by key, in sharded hash
//! tables beside sled.
//!
//! sled's lookups descend a tree whose depth (and page-cache misses) grow
//! with the store, so at 10^7 keys a read cost twice what it cost at 10^4.
//! With the index a read is one hash probe whatever the size; sled still
//! holds every item and remains the only thing that is persisted (the index
//! is rebuilt from it after start-up, see [`ShardGuard::load`]).
//!
//! Memory: the index holds every item, so its per-item cost is the
//! store's. A slot is 16 bytes (a thin pointer to an [`Entry`], which
//! holds key and record in one allocation, and the dirty flag), and the
//! index keeps its own copy of each record rather than sharing sled's
//! buffers, so that sled's page cache, which then serves only writes, can
//! stay small and really free what it evicts (see `bench/profile.md`,
//! session 6: 10^6 items of 100 B cost ~150 MiB of entries and ~34 MiB
//! of tables).
//!
//! Loading 10^6 items takes about a second, so the server does not wait for
//! it: until a shard is loaded, a key the shard has not seen may still be in
//! sled ([`Found::Unknown`]) and the store asks sled. A key removed while
//! its shard loads leaves a tombstone, so the loader cannot bring back a
//! record it read from sled before the removal.
//!
//! Consistency with sled: every write to a key changes the index while
//! holding the key's shard lock ([`Index::lock`]), and sled either under
//! the same lock or later from the write-behind queue
//! (see [`super::behind`]): the slot stays *dirty* until sled has its
//! state, and a dirty removal stays as a tombstone until then. The index
//! is therefore always the newest state, and readers and the lock-free
//! writers (sweeper, clear, eviction, access bookkeeping) decide on it.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use hashbrown::hash_table::{self, HashTable};
use parking_lot::{RwLock, RwLockWriteGuard};

use super::record::{Entry, Raw};

/// Number of shards (a power of two): enough that a writer rarely meets
/// another thread on its shard, and that copying one shard out for the CSV
/// mirror holds its lock only briefly even at 10^7 items (~2,500 each);
/// empty, they cost about 200 KiB.
const SHARDS: usize = 4096;

struct Slot {
    /// The key and its record, or a tombstone: removed while the shard was
    /// loading, or removed and sled not told yet.
    entry: Entry,
    /// sled does not have this state yet; the key is in its shard's
    /// `unsaved` list for the write-behind (see [`super::behind`]).
    dirty: bool,
}

impl Slot {
    fn is(&self, key: &[u8]) -> bool {
        self.entry.key() == key
    }

    fn found(&self) -> Found {
        match Raw::indexed(&self.entry) {
            Some(r) => Found::Record(r),
            None => Found::Absent,
        }
    }
}

struct Shard {
    table: HashTable<Slot>,
    /// Not every record of this shard is in memory yet.
    loading: bool,
    /// Keys that became dirty since the last hand-over, each as a 2-byte
    /// length and the key: appending costs no allocation per write (the
    /// buffer grows once and is reused).
    unsaved: Vec<u8>,
}

/// What the index knows about a key.
#[derive(Debug)]
pub enum Found {
    /// Shared with the index, not copied.
    Record(Raw),
    Absent,
    /// The key's shard is still loading: ask sled.
    Unknown,
}

pub struct Index {
    shards: Box<[RwLock<Shard>]>,
    /// Seeded per process, so clients cannot aim keys at one bucket.
    hasher: foldhash::fast::RandomState,
    complete: AtomicBool,
    /// One bit per shard with a non-empty `unsaved` list, so a hand-over
    /// visits only those.
    unsaved_shards: Box<[AtomicU64]>,
    /// Keys in all `unsaved` lists.
    unsaved: AtomicUsize,
}

impl Default for Index {
    /// An index that has loaded nothing yet (every shard loading).
    fn default() -> Self {
        Index {
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        table: HashTable::new(),
                        loading: true,
                        unsaved: Vec::new(),
                    })
                })
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
            complete: AtomicBool::new(false),
            unsaved_shards: (0..SHARDS / 64).map(|_| AtomicU64::new(0)).collect(),
            unsaved: AtomicUsize::new(0),
        }
    }
}

impl Index {
    /// The key's hash and its shard. The shard comes from bits the table
    /// itself does not use for small tables (it takes the low bits for the
    /// bucket and the top seven for its control bytes).
    fn locate(&self, key: &[u8]) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        (hash, (hash >> 40) as usize & (SHARDS - 1))
    }

    fn rehash(&self) -> impl Fn(&Slot) -> u64 + '_ {
        move |slot| self.hasher.hash_one(slot.entry.key())
    }

    pub fn get(&self, key: &[u8]) -> Found {
        let (hash, shard) = self.locate(key);
        let shard = self.shards[shard].read();
        match shard.table.find(hash, |s| s.is(key)) {
            Some(slot) => slot.found(),
            None if shard.loading => Found::Unknown,
            None => Found::Absent,
        }
    }

    /// Exclusive access to `key`'s shard, held across every write's index
    /// update and any sled operation for the key, so sled never receives
    /// an older state after a newer one.
    pub fn lock<'a>(&'a self, key: &'a [u8]) -> ShardGuard<'a> {
        let (hash, shard) = self.locate(key);
        ShardGuard {
            hash,
            key,
            shard_no: shard,
            shard: self.shards[shard].write(),
            index: self,
        }
    }

    /// Keys waiting for the write-behind.
    pub fn unsaved_len(&self) -> usize {
        self.unsaved.load(Ordering::Relaxed)
    }

    /// Takes every key queued for the write-behind so far (each once,
    /// however often it was written). A key queued before the call started
    /// is in the result: writers queue under the shard lock before their
    /// write counts as done.
    pub fn take_unsaved(&self) -> Vec<Box<[u8]>> {
        let mut keys = Vec::new();
        for (w, word) in self.unsaved_shards.iter().enumerate() {
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let shard = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let mut shard = self.shards[shard].write();
                let mut rest = &shard.unsaved[..];
                while let [a, b, tail @ ..] = rest {
                    let len = u16::from_le_bytes([*a, *b]) as usize;
                    keys.push(tail[..len].into());
                    rest = &tail[len..];
                }
                shard.unsaved.clear();
            }
        }
        self.unsaved.fetch_sub(keys.len(), Ordering::Relaxed);
        keys
    }

    /// Ends loading: drops the tombstones, and from now on a key missing
    /// from the index is missing from the store. Called once the loader
    /// has offered every record of sled ([`ShardGuard::load`]).
    pub fn finish_loading(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.write();
            // A removal sled has not seen yet must stay visible.
            shard.table.retain(|s| !s.entry.is_tombstone() || s.dirty);
            shard.loading = false;
        }
        self.complete.store(true, Ordering::Release);
    }

    /// Whether every record is in memory.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// A copy of shard `i`'s keys and records (records shared, not
    /// copied), taken under its read lock for just as long as the copy
    /// takes.
    pub fn shard_entries(&self, i: usize) -> Vec<(Box<[u8]>, Raw)> {
        let shard = self.shards[i].read();
        shard
            .table
            .iter()
            .filter_map(|s| Some((s.entry.key().into(), Raw::indexed(&s.entry)?)))
            .collect()
    }

    /// Records held (tombstones not counted).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.read();
                shard
                    .table
                    .iter()
                    .filter(|s| !s.entry.is_tombstone())
                    .count()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A write-locked shard, for one key (see [`Index::lock`]).
pub struct ShardGuard<'a> {
    hash: u64,
    key: &'a [u8],
    shard_no: usize,
    shard: RwLockWriteGuard<'a, Shard>,
    index: &'a Index,
}

impl ShardGuard<'_> {
    /// Stores `record` (`None`: a tombstone); returns whether the slot was
    /// dirty before.
    fn put(&mut self, record: Option<&[u8]>, dirty: bool) -> bool {
        let key = self.key;
        let entry = Entry::new(key, record);
        match self
            .shard
            .table
            .entry(self.hash, |s| s.is(key), self.index.rehash())
        {
            hash_table::Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                slot.entry = entry;
                std::mem::replace(&mut slot.dirty, dirty)
            }
            hash_table::Entry::Vacant(v) => {
                v.insert(Slot { entry, dirty });
                false
            }
        }
    }

    fn slot(&self) -> Option<&Slot> {
        let key = self.key;
        self.shard.table.find(self.hash, |s| s.is(key))
    }

    /// What the index holds for the key, under the write lock.
    pub fn current(&self) -> Found {
        match self.slot() {
            Some(slot) => slot.found(),
            None if self.shard.loading => Found::Unknown,
            None => Found::Absent,
        }
    }

    /// Records a write (`None`: a removal) that sled has not been given
    /// yet, queueing the key for the write-behind unless it is queued
    /// already.
    pub fn set_unsaved(&mut self, record: Option<&[u8]>) {
        if !self.put(record, true) {
            self.queue();
        }
    }

    /// Queues the key again if it is still dirty (a hand-over that failed).
    pub fn requeue(&mut self) {
        if self.slot().is_some_and(|s| s.dirty) {
            self.queue();
        }
    }

    fn queue(&mut self) {
        // Keys are at most 250 bytes (memcached's limit, checked by both
        // front ends), far below the 2-byte length.
        let len = u16::try_from(self.key.len()).expect("key longer than 64 KiB");
        self.shard.unsaved.extend_from_slice(&len.to_le_bytes());
        self.shard.unsaved.extend_from_slice(self.key);
        self.index.unsaved.fetch_add(1, Ordering::Relaxed);
        self.index.unsaved_shards[self.shard_no / 64]
            .fetch_or(1 << (self.shard_no % 64), Ordering::AcqRel);
    }

    /// The state sled still lacks, if the key is dirty: `Some(None)` is a
    /// removal.
    pub fn unsaved(&self) -> Option<Option<Raw>> {
        self.slot()
            .filter(|s| s.dirty)
            .map(|s| Raw::indexed(&s.entry))
    }

    /// sled now has the key's state: the slot is clean, and a tombstone
    /// goes unless the loader still needs it.
    pub fn saved(&mut self) {
        let key = self.key;
        let loading = self.shard.loading;
        if let Ok(mut o) = self.shard.table.find_entry(self.hash, |s| s.is(key)) {
            if o.get().entry.is_tombstone() && !loading {
                o.remove();
            } else {
                o.get_mut().dirty = false;
            }
        }
    }

    /// A write sled already has.
    pub fn set(&mut self, record: &[u8]) {
        self.put(Some(record), false);
    }

    /// A removal sled already has.
    pub fn remove(&mut self) {
        if self.shard.loading {
            self.put(None, false);
        } else {
            let key = self.key;
            if let Ok(o) = self.shard.table.find_entry(self.hash, |s| s.is(key)) {
                o.remove();
            }
        }
    }

    /// The loader's offer of a record it read from sled: taken only if no
    /// write (or removal) of the key reached the index since, because any
    /// such write is newer than what the loader read.
    pub fn load(&mut self, record: &[u8]) {
        let key = self.key;
        if self.shard.loading && self.shard.table.find(self.hash, |s| s.is(key)).is_none() {
            self.put(Some(record), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(s: &str) -> &[u8] {
        s.as_bytes()
    }

    fn record(ix: &Index, key: &[u8]) -> Option<Raw> {
        match ix.get(key) {
            Found::Record(r) => Some(r),
            Found::Absent => None,
            Found::Unknown => panic!("unknown after loading"),
        }
    }

    #[test]
    fn set_get_remove() {
        let ix = Index::default();
        ix.finish_loading();
        assert!(record(&ix, b"a").is_none());
        ix.lock(b"a").set(rec("1"));
        ix.lock(b"b").set(rec("2"));
        ix.lock(b"a").set(rec("3"));
        assert_eq!(&*record(&ix, b"a").unwrap(), b"3");
        assert_eq!(ix.len(), 2);
        ix.lock(b"a").remove();
        ix.lock(b"never").remove();
        assert!(record(&ix, b"a").is_none());
        assert_eq!(ix.len(), 1);
        assert!(!ix.is_empty());
    }

    #[test]
    fn the_loader_never_overrides_a_newer_write_or_removal() {
        let ix = Index::default();
        assert!(matches!(ix.get(b"x"), Found::Unknown));
        ix.lock(b"written").set(rec("new"));
        ix.lock(b"removed").remove();
        assert!(matches!(ix.get(b"removed"), Found::Absent));
        // The loader read these from sled before the writes above.
        ix.lock(b"written").load(rec("old"));
        ix.lock(b"removed").load(rec("old"));
        ix.lock(b"plain").load(rec("disk"));
        ix.finish_loading();
        assert!(ix.is_complete());
        assert_eq!(&*record(&ix, b"written").unwrap(), b"new");
        assert!(record(&ix, b"removed").is_none());
        assert_eq!(&*record(&ix, b"plain").unwrap(), b"disk");
        assert!(record(&ix, b"x").is_none());
        // Tombstones are gone, and loading is over.
        assert_eq!(ix.len(), 2);
        ix.lock(b"late").load(rec("ignored"));
        assert!(record(&ix, b"late").is_none());
    }

    #[test]
    fn unsaved_keys_are_queued_once_until_taken() {
        let ix = Index::default();
        ix.finish_loading();
        for i in 0..1000u32 {
            let key = format!("k{}", i % 400);
            ix.lock(key.as_bytes()).set_unsaved(Some(rec("v")));
        }
        ix.lock(b"gone").set_unsaved(None);
        assert_eq!(ix.unsaved_len(), 401);
        let mut keys = ix.take_unsaved();
        keys.sort();
        let mut want: Vec<Box<[u8]>> = (0..400)
            .map(|i| format!("k{i}").as_bytes().into())
            .collect();
        want.push(b"gone"[..].into());
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(ix.unsaved_len(), 0);
        assert!(ix.take_unsaved().is_empty());
        // Taken but not saved yet: still dirty, so a failed hand-over can
        // queue it again; once saved, there is nothing to queue.
        ix.lock(b"k1").requeue();
        assert_eq!(ix.take_unsaved(), vec![Box::<[u8]>::from(&b"k1"[..])]);
        ix.lock(b"k1").saved();
        ix.lock(b"k1").requeue();
        assert_eq!(ix.unsaved_len(), 0);
        // A saved tombstone is gone; the removal reads as absent throughout.
        assert!(matches!(ix.get(b"gone"), Found::Absent));
        ix.lock(b"gone").saved();
        assert!(matches!(ix.get(b"gone"), Found::Absent));
        assert_eq!(ix.len(), 400);
    }

    #[test]
    fn many_keys_across_shards() {
        let ix = Index::default();
        for i in 0..100_000u32 {
            ix.lock(&i.to_be_bytes()).load(&i.to_le_bytes());
        }
        ix.finish_loading();
        assert_eq!(ix.len(), 100_000);
        let copied: usize = (0..ix.shards()).map(|i| ix.shard_entries(i).len()).sum();
        assert_eq!(copied, 100_000);
        for i in (0..100_000u32).step_by(7) {
            assert_eq!(&*record(&ix, &i.to_be_bytes()).unwrap(), &i.to_le_bytes());
        }
    }
}
