//! The sled-backed store: items, CAS allocation, size accounting, expiry
//! sweeping and durability. It knows nothing of sockets, protocols or
//! locking policy; the layer above puts memcached semantics on top of it.
//!
//! # Parts
//!
//! [`Store`] is one struct; its methods are spread over files by job, each
//! an `impl Store` block:
//!
//! - `mod.rs` (this file): the struct, [`Store::open`], reads and small
//!   accessors, and the close ([`Drop`]), which must stop the background
//!   threads in order;
//! - `cas.rs`: CAS values, unique across restarts by reserving blocks on disk;
//! - `counts.rs`: item and byte counts (sled keeps none), saved by a clean
//!   close so the next start need not count;
//! - `write.rs`: every mutation of an item, and the bulk load;
//! - `sweep.rs`: work over the whole store rather than one named key
//!   (clear, scan, expiry sweep, eviction, loading the memory index);
//! - `durable.rs`: getting writes to sled and onto disk, including the
//!   group committer under `--durability sync`.
//!
//! Beside them: [`item`] (a record's encoding), [`record`] (a record's
//! bytes as held in memory), [`index`] (the in-memory copy of every record
//! reads use), [`behind`] (the write-behind queue),
//! [`commit`] (group commit), [`wal`] (sync mode's write-ahead log), [`recency`] (LRU stamps), [`fault`] (a full
//! or failing disk: refusing writes, retrying, the free-space check) and
//! [`undo`] (taking back the writes of a failed group commit). What an exptime
//! means comes from [`crate::rules`].
//!
//! # How a write flows
//!
//! index -> write-behind -> sled -> `fdatasync`:
//!
//! 1. With the memory index (the default), a write changes the key's slot
//!    in the [`index`] under the slot's shard lock; from then on every
//!    reader sees it (`write.rs`).
//! 2. The slot is queued for the [`behind`] (write-behind) hand-over,
//!    which later writes the index's current state to sled in key-ordered
//!    batches; when the queue is backlogged the writer writes through to
//!    sled itself. With `--no-memory-index` a write goes to sled at once.
//! 3. sled's `flush` writes its log but issues only `sync_file_range`, no
//!    durability barrier, so a sync also `fdatasync`s sled's files
//!    (`durable.rs`).
//!
//! Who runs steps 2 and 3 depends on the mode. In `periodic`, the
//! write-behind thread hands over and flushes every `--flush-interval-ms`
//! (sled's own flusher does without the index), and `fdatasync` comes
//! only when something needs it: [`Store::sync`] at shutdown or after an
//! import, and reserving a block of CAS values. In `sync`, a writer
//! acknowledges only after a group-commit round that started after its
//! write: with the index, a round appends the writes' records to the
//! [`wal`] and `fdatasync`s it, while the write-behind thread runs as in
//! periodic mode and deletes log files sled has made redundant; without
//! the index, a round flushes and `fdatasync`s sled.
//!
//! [`Store`]: crate::store::Store
//! [`Store::open`]: crate::store::Store::open
//! [`Store::sync`]: crate::store::Store::sync
//! [`item`]: crate::store::item
//! [`index`]: crate::store::index
//! [`record`]: crate::store::record
//! [`behind`]: crate::store::behind
//! [`commit`]: crate::store::commit
//! [`recency`]: crate::store::recency
//! [`fault`]: crate::store::fault
//! [`undo`]: crate::store::undo
//! [`wal`]: crate::store::wal

pub mod behind;
mod cas;
pub mod commit;
mod counts;
mod durable;
pub use commit::DbFiles;
pub use durable::sync_dir_files;
pub mod fault;
pub use fault::Fault;
pub mod index;
pub mod item;
pub mod recency;
pub mod record;
mod replica;
mod sweep;
pub mod undo;
pub mod wal;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{Durability, Eviction, StoreConfig};
use behind::WriteBehind;
use index::{Found, Index};
pub use item::Item;
use recency::Recency;

const META_FORMAT: &[u8] = b"format";
/// Present once any client asked for access information (see
/// [`Store::enable_access_tracking`]).
const META_TRACK_ACCESS: &[u8] = b"track_access";

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
    /// The write was refused, or its commit failed: the disk is full or
    /// failing (see [`fault`]).
    #[error("{0}")]
    Refused(Fault),
}

impl StoreError {
    /// The disk fault behind this error, if it is one: what clients are told.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StoreError::Refused(f) => Some(*f),
            StoreError::Io(e) => Some(Fault::of(e)).filter(|f| *f != Fault::Io),
            StoreError::Sled(sled::Error::Io(e)) => Some(Fault::of(e)).filter(|f| *f != Fault::Io),
            _ => None,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The persistent item store.
pub struct Store {
    db: sled::Db,
    items: sled::Tree,
    meta: sled::Tree,
    dir: PathBuf,
    /// The next CAS value to hand out (see [`cas`]).
    next_cas: AtomicU64,
    /// The first CAS value not yet reserved on disk.
    cas_limit: AtomicU64,
    /// Held while a new block of CAS values is reserved.
    cas_reserve: Mutex<()>,
    /// Item and byte counts, which may wrap below zero for a moment (see
    /// [`counts`]).
    curr_items: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    /// Write generation: bumped after every mutation (see [`commit`]).
    written: Arc<AtomicU64>,
    /// Whether writes are accepted (see [`fault`]).
    health: Arc<fault::Health>,
    /// Sync mode: the writes a failed round must take back (see [`undo`]).
    journal: Option<Arc<undo::Journal>>,
    /// Sync mode with the index: the write-ahead log a round syncs (see
    /// [`wal`]), sled being written behind.
    wal: Option<Arc<wal::Wal>>,
    /// Last-access stamps, kept only under `--eviction lru`.
    recency: Option<Recency>,
    /// Every record in memory for reads (`None` with `--no-memory-index`).
    index: Option<Arc<Index>>,
    /// Deferred hand-over of writes to sled (with the index).
    behind: Option<Arc<WriteBehind>>,
    /// The group committer's thread, under `--durability sync` only.
    /// Stopped first by [`Store`]'s `Drop`, after one last round for any
    /// write not yet durable.
    committer: Option<commit::Committer>,
    /// The write-behind thread (with the index and, in sync mode, the
    /// write-ahead log), stopped by
    /// [`Store`]'s `Drop`, which so hands every queued write to sled before
    /// sled closes.
    behind_worker: Option<behind::Worker>,
    /// A replicated group's position and answers, waiting for the
    /// write-behind's next hand-over (see [`replica`]).
    notes: Arc<replica::Notes>,
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
    /// Opens (or creates) the store in `cfg.data_dir`. Under
    /// `--durability sync` it also starts the group committer, so that
    /// whoever holds the store can wait for durability
    /// ([`Store::commit_ticket`], [`Store::wait_durable`]) without
    /// assembling it from the store's insides.
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
        Self::replay_wal(&cfg.data_dir, &db, &items, &meta)?;
        let reserved = cas::reserved(&meta)?;
        let track_access = meta.contains_key(META_TRACK_ACCESS)?;
        let index = (!cfg.no_memory_index).then(|| Arc::new(Index::default()));
        let health = Arc::new(fault::Health::default());
        let written = Arc::new(AtomicU64::new(0));
        let wal = match (&index, cfg.durability) {
            (Some(_), Durability::Sync) => Some(Arc::new(wal::Wal::open(&cfg.data_dir)?)),
            _ => None,
        };
        let notes = Arc::new(replica::Notes::default());
        let behind = index.as_ref().map(|ix| {
            Arc::new(WriteBehind::new(
                ix.clone(),
                db.clone(),
                items.clone(),
                health.clone(),
                cfg.data_dir.clone(),
                wal.clone()
                    .map(|wal| behind::Checkpoint::new(wal, written.clone(), &cfg.data_dir)),
                (meta.clone(), notes.clone()),
            ))
        });
        // Without the log, sync mode's committer hands the queue over
        // each round; with it, the write-behind thread does, as in
        // periodic mode, and checkpoints the log.
        let interval = std::time::Duration::from_millis(cfg.flush_interval_ms.max(1));
        let behind_worker = match (&behind, cfg.durability, &wal) {
            (Some(b), Durability::Periodic, _) | (Some(b), _, Some(_)) => Some(b.start(interval)?),
            _ => None,
        };
        let mut store = Store {
            db,
            items,
            meta,
            dir: cfg.data_dir.clone(),
            next_cas: AtomicU64::new(reserved.max(1)),
            cas_limit: AtomicU64::new(reserved.max(1)),
            cas_reserve: Mutex::new(()),
            curr_items: Arc::new(AtomicU64::new(0)),
            bytes: Arc::new(AtomicU64::new(0)),
            written,
            health,
            journal: (cfg.durability == Durability::Sync).then(Default::default),
            wal,
            recency: (cfg.eviction == Eviction::Lru).then(Recency::default),
            index,
            behind,
            committer: None,
            behind_worker,
            notes,
            durability: cfg.durability,
            flush_interval: interval,
            track_access: AtomicBool::new(track_access),
            may_expire: AtomicBool::new(false),
        };
        store.restore_counts()?;
        // Last, as when the layer above started it after opening: nothing
        // above may fail with the thread already running.
        if cfg.durability == Durability::Sync {
            store.committer = Some(store.start_committer());
        }
        Ok(store)
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
    fn raw(&self, key: &[u8]) -> Result<Option<item::Raw>> {
        Ok(match self.index.as_ref().map(|ix| ix.get(key)) {
            Some(Found::Record(r)) => Some(r),
            Some(Found::Absent) => None,
            Some(Found::Unknown) | None => self.items.get(key)?.map(item::Raw::Sled),
        })
    }

    /// Changes so far to the items (any insert or removal bumps it).
    pub fn generation(&self) -> u64 {
        self.written.load(Ordering::Acquire)
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

    /// The data directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why writes are refused now (a full or failing disk), if they are.
    pub fn storage_problem(&self) -> Option<String> {
        self.health.problem()
    }

    /// Failed flushes and syncs so far, retries and CSV mirror writes
    /// included.
    pub fn storage_errors(&self) -> u64 {
        self.health.errors()
    }

    /// Counts a storage error that refuses nothing (a CSV mirror write).
    pub fn count_storage_error(&self) {
        self.health.count_error()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The committer first: its thread runs one last round (hand-over,
        // flush, fdatasync) if any write is not yet durable, then exits;
        // joining it here, while the write-behind queue and sled are
        // intact, cannot wait on anything this thread holds.
        self.committer.take();
        // Then the write-behind thread (periodic mode), which first empties
        // its queue into sled. Either thread's last round leaves nothing
        // queued unless a hand-over failed and put keys back: the settle
        // below tries those once more. sled itself closes (and flushes)
        // after this, when the fields drop.
        self.behind_worker.take();
        if let Err(e) = self.settle() {
            tracing::error!("writes not handed to sled at close: {e}");
        }
    }
}

#[cfg(test)]
mod testkit;

#[cfg(test)]
mod tests {
    use super::testkit::reopen;
    use super::*;

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
}
