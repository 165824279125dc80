//! Fixtures the store's unit tests share (compiled for tests only).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::{behind, Item, Store, StoreError};
use crate::config::StoreConfig;

/// The write-behind's usual backlog limit, which tests lower to 0 to
/// force writers to write through and then restore.
pub(super) const BACKLOG: usize = behind::BACKLOG_LIMIT;

/// A new store (default config: memory index, periodic mode) with its
/// index loaded.
pub(super) fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::Config::for_data_dir(dir.path()).store;
    let s = Store::open(&cfg).unwrap();
    s.load_index().unwrap();
    (dir, s)
}

/// Opens again after a drop: sled's flusher thread may hold the
/// directory lock for a moment after the last handle goes.
pub(super) fn reopen(cfg: &StoreConfig) -> Store {
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

/// `key`'s record as a read sees it.
pub(super) fn record(s: &Store, key: &[u8]) -> Option<Vec<u8>> {
    s.get(key).unwrap().map(|i| i.raw().to_vec())
}

/// Index and tree hold exactly the same records (once every queued
/// write reached the tree).
pub(super) fn assert_index_matches_tree(s: &Store) {
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

/// Per-key mutual exclusion for test writers, as the layer above gives
/// every read-modify-write: a key always maps to the same one of a few
/// mutexes. Defined here because the store must not depend on that layer.
pub(super) struct KeyLocks {
    stripes: Vec<Mutex<()>>,
    hasher: RandomState,
}

impl KeyLocks {
    pub(super) fn with_stripes(n: usize) -> Self {
        KeyLocks {
            stripes: (0..n).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Blocks until the caller holds `key`'s stripe.
    pub(super) fn lock(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        let i = self.hasher.hash_one(key) as usize % self.stripes.len();
        self.stripes[i].lock()
    }
}

/// Three writers, each op under its key's lock (as the layer above
/// does): `ops` sets of `k{(i * stride + w) % keys}`, every
/// `expire_every`-th one already expired, every `remove_every`-th removed
/// again at once.
pub(super) fn locked_writers(
    s: &Arc<Store>,
    ops: u64,
    stride: u64,
    keys: u64,
    expire_every: u64,
    remove_every: u64,
) -> Vec<std::thread::JoinHandle<()>> {
    let locks = Arc::new(KeyLocks::with_stripes(64));
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

/// What a crash at this moment would leave on disk: a copy of the data
/// directory, opened (without the memory index, so sled itself answers)
/// as the next start would open it, write-ahead log replay included.
pub(super) fn crash_image(cfg: &StoreConfig) -> (tempfile::TempDir, Store) {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let dest = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &dest);
            } else {
                std::fs::copy(entry.path(), dest).unwrap();
            }
        }
    }
    let image = tempfile::tempdir().unwrap();
    copy(&cfg.data_dir, image.path());
    let mut cfg = cfg.clone();
    cfg.data_dir = image.path().to_path_buf();
    cfg.no_memory_index = true;
    cfg.durability = crate::config::Durability::Periodic;
    let s = Store::open(&cfg).unwrap();
    (image, s)
}
