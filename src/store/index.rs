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
//! store's. A slot is an 8-byte thin pointer to an [`Entry`], which holds
//! key and record in one allocation; the few dirty keys (see below) are
//! in a small table of their own rather than a flag in every slot (which
//! would double the slot with padding). The index keeps its own copy of
//! each record rather than sharing sled's buffers, so that sled's page
//! cache, which then serves only writes, can stay small and really free
//! what it evicts (see `bench/profile.md`, session 6: 10^6 items of 100 B
//! cost ~153 MiB of entries and ~18 MiB of tables).
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

/// Capacity a shard's `dirty` table and `unsaved` list keep once emptied:
/// enough for the keys of a normal hand-over interval (a few per shard);
/// what a backlog (up to [`super::behind::BACKLOG_LIMIT`] keys) made them
/// grow to is given back, about 10 MiB over all shards.
const KEEP_DIRTY: usize = 28;
const KEEP_UNSAVED: usize = 1024;

/// What a slot (an entry: a record, or a tombstone, removed while the
/// shard was loading or removed and sled not told yet) tells a reader.
fn found(slot: &Entry) -> Found {
    match Raw::indexed(slot) {
        Some(r) => Found::Record(r),
        None => Found::Absent,
    }
}

struct Shard {
    table: HashTable<Entry>,
    /// The *dirty* keys: sled does not have their state yet, and each is
    /// in the `unsaved` list for the write-behind (see [`super::behind`]).
    /// Each holds its slot's newest entry (so no older record stays alive
    /// here), and every dirty key has a slot in `table`. At most the
    /// write-behind's backlog, so a table of its own costs less than a
    /// flag in every slot.
    dirty: HashTable<Entry>,
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
                        dirty: HashTable::new(),
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

    fn rehash(&self) -> impl Fn(&Entry) -> u64 + '_ {
        move |slot| self.hasher.hash_one(slot.key())
    }

    pub fn get(&self, key: &[u8]) -> Found {
        let (hash, shard) = self.locate(key);
        let shard = self.shards[shard].read();
        match shard.table.find(hash, |s| s.key() == key) {
            Some(slot) => found(slot),
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
                if shard.unsaved.capacity() > KEEP_UNSAVED {
                    // A backlog's list: do not keep its size.
                    shard.unsaved = Vec::new();
                } else {
                    shard.unsaved.clear();
                }
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
            let Shard { table, dirty, .. } = &mut *shard;
            // A removal sled has not seen yet must stay visible.
            table.retain(|s| {
                !s.is_tombstone()
                    || dirty
                        .find(self.hasher.hash_one(s.key()), |d| d.key() == s.key())
                        .is_some()
            });
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
            .filter_map(|s| Some((s.key().into(), Raw::indexed(s)?)))
            .collect()
    }

    /// Records held (tombstones not counted).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.read();
                shard.table.iter().filter(|s| !s.is_tombstone()).count()
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
        let (key, index) = (self.key, self.index);
        let entry = Entry::new(key, record);
        let was_dirty = self.mark(dirty.then(|| entry.clone()));
        match self
            .shard
            .table
            .entry(self.hash, |s| s.key() == key, index.rehash())
        {
            hash_table::Entry::Occupied(mut o) => *o.get_mut() = entry,
            hash_table::Entry::Vacant(v) => {
                v.insert(entry);
            }
        }
        was_dirty
    }

    /// Marks the key dirty (`Some`: with its slot's new entry) or clean;
    /// returns whether it was dirty.
    fn mark(&mut self, dirty: Option<Entry>) -> bool {
        let (key, index) = (self.key, self.index);
        let table = &mut self.shard.dirty;
        match dirty {
            Some(entry) => match table.entry(self.hash, |d| d.key() == key, index.rehash()) {
                hash_table::Entry::Occupied(mut o) => {
                    *o.get_mut() = entry;
                    true
                }
                hash_table::Entry::Vacant(v) => {
                    v.insert(entry);
                    false
                }
            },
            // `find_entry`, not `entry`: a clean write must not make the
            // (usually empty) table allocate.
            None => match table.find_entry(self.hash, |d| d.key() == key) {
                Ok(o) => {
                    o.remove();
                    if table.is_empty() && table.capacity() > KEEP_DIRTY {
                        // A backlog's table, drained: do not keep its size.
                        table.shrink_to(0, index.rehash());
                    }
                    true
                }
                Err(_) => false,
            },
        }
    }

    fn is_dirty(&self) -> bool {
        let key = self.key;
        self.shard
            .dirty
            .find(self.hash, |d| d.key() == key)
            .is_some()
    }

    fn slot(&self) -> Option<&Entry> {
        let key = self.key;
        self.shard.table.find(self.hash, |s| s.key() == key)
    }

    /// What the index holds for the key, under the write lock.
    pub fn current(&self) -> Found {
        match self.slot() {
            Some(slot) => found(slot),
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
        if self.is_dirty() {
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
        // A dirty key always has a slot (a missing one would read as a
        // removal).
        self.is_dirty().then(|| self.slot().and_then(Raw::indexed))
    }

    /// sled now has the key's state: the slot is clean, and a tombstone
    /// goes unless the loader still needs it.
    pub fn saved(&mut self) {
        self.mark(None);
        let key = self.key;
        if !self.shard.loading {
            if let Ok(o) = self.shard.table.find_entry(self.hash, |s| s.key() == key) {
                if o.get().is_tombstone() {
                    o.remove();
                }
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
            self.mark(None);
            let key = self.key;
            if let Ok(o) = self.shard.table.find_entry(self.hash, |s| s.key() == key) {
                o.remove();
            }
        }
    }

    /// The loader's offer of a record it read from sled: taken only if no
    /// write (or removal) of the key reached the index since, because any
    /// such write is newer than what the loader read.
    pub fn load(&mut self, record: &[u8]) {
        if self.shard.loading && self.slot().is_none() {
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

    fn dirty_keys(ix: &Index) -> usize {
        ix.shards.iter().map(|s| s.read().dirty.len()).sum()
    }

    fn slots(ix: &Index) -> usize {
        ix.shards.iter().map(|s| s.read().table.len()).sum()
    }

    #[test]
    fn only_dirty_keys_are_in_the_dirty_tables() {
        let ix = Index::default();
        ix.lock(b"clean").set(rec("1"));
        assert_eq!(dirty_keys(&ix), 0);
        for v in ["1", "2", "3"] {
            ix.lock(b"d").set_unsaved(Some(rec(v)));
        }
        assert_eq!(dirty_keys(&ix), 1);
        assert_eq!(ix.unsaved_len(), 1, "queued once");
        let newest = ix.lock(b"d").unsaved().unwrap();
        assert_eq!(newest.as_deref(), Some(&b"3"[..]));
        // A dirty removal, and a removal sled already has, while loading:
        // both tombstones until loading ends, then only the dirty one.
        ix.lock(b"dirty-gone").set_unsaved(None);
        ix.lock(b"clean-gone").remove();
        assert_eq!((dirty_keys(&ix), slots(&ix)), (2, 4));
        ix.finish_loading();
        assert_eq!((dirty_keys(&ix), slots(&ix)), (2, 3));
        assert!(matches!(ix.get(b"dirty-gone"), Found::Absent));
        assert!(matches!(ix.lock(b"dirty-gone").unsaved(), Some(None)));
        // Written through, saved, or removed through: clean again.
        ix.lock(b"d").set(rec("4"));
        assert!(ix.lock(b"d").unsaved().is_none());
        ix.lock(b"dirty-gone").saved();
        assert_eq!((dirty_keys(&ix), slots(&ix)), (0, 2));
        ix.lock(b"d").set_unsaved(Some(rec("5")));
        ix.lock(b"d").remove();
        assert_eq!((dirty_keys(&ix), slots(&ix)), (0, 1));
        assert!(record(&ix, b"d").is_none());
        assert_eq!(&*record(&ix, b"clean").unwrap(), b"1");
    }

    #[test]
    fn a_drained_backlog_gives_its_memory_back() {
        let ix = Index::default();
        ix.finish_loading();
        let keys: Vec<String> = (0..200_000).map(|i| format!("k{i}")).collect();
        for k in &keys {
            ix.lock(k.as_bytes()).set_unsaved(Some(rec("v")));
        }
        let grown = |ix: &Index| {
            ix.shards.iter().any(|s| {
                let s = s.read();
                s.dirty.capacity() > KEEP_DIRTY || s.unsaved.capacity() > KEEP_UNSAVED
            })
        };
        assert!(grown(&ix), "200,000 keys over 4,096 shards need more");
        for k in ix.take_unsaved() {
            ix.lock(&k).saved();
        }
        assert!(!grown(&ix));
        assert_eq!((dirty_keys(&ix), ix.len()), (0, 200_000));
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
