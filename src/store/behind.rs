//! Write-behind: with the memory index, a write goes to the index and a
//! queue; sled gets it later, in key-ordered batches, once every
//! `--flush-interval-ms` from a thread of its own.
//!
//! Why: sled clones a leaf (16 records, each a reference count to bump) on
//! every insert. Made one at a time between network round trips, with the
//! leaf cold in the cache, that cost about 4.8 µs of CPU per 1 KB set on
//! this machine; made in key order in one batch per interval, neighbours
//! share hot leaves, and a key written several times in an interval is
//! handed over once (4.3 µs at 100 ms, 1.9 µs at 1 s; see
//! `bench/profile.md`).
//!
//! Durability is what each mode promised before. Periodic mode
//! acknowledged a write before sled's own flusher wrote it, every
//! interval; now this thread's round (hand-over, then flush) plays that
//! part, and sled's flusher is off. In sync mode a write is acknowledged
//! once the write-ahead log holds it ([`super::wal`]); this thread then
//! also checkpoints the log ([`Checkpoint`]). Should the queue reach [`BACKLOG_LIMIT`]
//! keys, writers write through to sled themselves until it drains.
//! `--no-memory-index` never defers.
//!
//! Order: the queue (a list per index shard) holds keys, not values.
//! Whoever hands a key to sled (this thread, [`WriteBehind::drain`], or a
//! writer writing through) holds the key's index shard lock and writes the
//! index's *current* state, so sled always ends at the latest write
//! whatever the order of the hand-overs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::commit::DbFiles;
use super::fault::Rounds;
use super::index::Index;
use super::wal::Wal;

/// Keys allowed to wait before writers write through to sled themselves
/// (a key waits once however often it is written): a few MB of queue, and
/// well under a second to hand over.
pub const BACKLOG_LIMIT: usize = 250_000;

/// Hands the keys the index queued (see [`Index::take_unsaved`]) to sled.
pub struct WriteBehind {
    index: Arc<Index>,
    db: sled::Db,
    items: sled::Tree,
    /// Held by whoever is handing keys over, so [`WriteBehind::drain`]
    /// returns only after an in-flight hand-over finished too.
    handing: Mutex<()>,
    /// [`BACKLOG_LIMIT`], lowered by tests to force writing through.
    limit: AtomicUsize,
    /// Marked failed when a round fails, so writes are refused until one
    /// succeeds again (see [`super::fault`]).
    health: Arc<super::fault::Health>,
    /// The data directory, whose free space each round checks first.
    dir: PathBuf,
    /// Sync mode with the write-ahead log: what a round checkpoints.
    checkpoint: Option<Checkpoint>,
    /// Where a round writes a replicated group's pending position, once
    /// its hand-over put the items it covers in sled (see
    /// `super::replica`).
    meta: sled::Tree,
    notes: Arc<super::replica::Notes>,
}

/// Deleting the sync-mode log's files that sled has made redundant (see
/// [`super::wal`]): once a hand-over that started after generation `G` is
/// in sled and `fdatasync`ed, every write up to `G` is.
pub struct Checkpoint {
    wal: Arc<Wal>,
    written: Arc<AtomicU64>,
    files: Mutex<DbFiles>,
}

impl Checkpoint {
    pub fn new(wal: Arc<Wal>, written: Arc<AtomicU64>, dir: &std::path::Path) -> Self {
        Checkpoint {
            wal,
            written,
            files: Mutex::new(DbFiles::new(dir.to_path_buf())),
        }
    }
}

impl WriteBehind {
    pub fn new(
        index: Arc<Index>,
        db: sled::Db,
        items: sled::Tree,
        health: Arc<super::fault::Health>,
        dir: PathBuf,
        checkpoint: Option<Checkpoint>,
        (meta, notes): (sled::Tree, Arc<super::replica::Notes>),
    ) -> Self {
        WriteBehind {
            meta,
            notes,
            index,
            db,
            items,
            handing: Mutex::new(()),
            limit: AtomicUsize::new(BACKLOG_LIMIT),
            health,
            dir,
            checkpoint,
        }
    }

    /// Too many keys wait: the caller should write through instead.
    pub fn is_backlogged(&self) -> bool {
        self.queued() >= self.limit.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn set_backlog_limit(&self, keys: usize) {
        self.limit.store(keys, Ordering::Relaxed);
    }

    /// Keys waiting now.
    pub fn queued(&self) -> usize {
        self.index.unsaved_len()
    }

    /// Hands every queued key to sled before returning (scans, `flush_all`,
    /// syncs and shutdown need sled complete). Returns how many.
    pub fn drain(&self) -> super::Result<usize> {
        let _one = self.handing.lock();
        let mut keys = self.index.take_unsaved();
        // In key order, neighbours share sled's leaves while they are hot.
        keys.sort_unstable();
        for (i, key) in keys.iter().enumerate() {
            if let Err(e) = self.save(key) {
                // Still dirty: queue them again for the next round.
                for key in &keys[i..] {
                    self.index.lock(key).requeue();
                }
                return Err(e);
            }
        }
        Ok(keys.len())
    }

    /// Gives sled the key's current index state, if sled lacks it.
    fn save(&self, key: &[u8]) -> super::Result<()> {
        let mut shard = self.index.lock(key);
        match shard.unsaved() {
            Some(Some(record)) => {
                self.items.insert(key, &*record)?;
            }
            Some(None) => {
                self.items.remove(key)?;
            }
            None => return Ok(()),
        }
        shard.saved();
        Ok(())
    }

    /// One round: check the free space (see [`super::fault::check_space`]),
    /// hand every queued key to sled, then flush sled's buffers to the OS;
    /// with the write-ahead log, when a closed file of it waits, also
    /// `fdatasync` sled and delete the files this round made redundant.
    fn round(&self) -> std::io::Result<()> {
        super::fault::check_space(&self.dir)?;
        let reached = self
            .checkpoint
            .as_ref()
            .map(|c| c.written.load(Ordering::Acquire));
        // Noted before this hand-over, so it covers the note's items.
        let note = self.notes.take();
        let handed = self
            .drain()
            .map_err(|e| match e {
                super::StoreError::Sled(e) => super::fault::io_of(e),
                super::StoreError::Io(e) => e,
                other => std::io::Error::other(other),
            })
            .and_then(|_| {
                let written = self.notes.write(&self.meta, &note);
                written.map_err(super::fault::io_of)
            });
        if let Err(e) = handed {
            self.notes.put_back(note);
            return Err(e);
        }
        match (&self.checkpoint, reached) {
            (Some(c), Some(g)) if c.wal.has_closed() => {
                c.files.lock().sync(&self.db)?;
                c.wal.purge(g, false)
            }
            _ => self.db.flush().map(drop).map_err(super::fault::io_of),
        }
    }

    /// Starts the thread that runs a round every `interval` until the
    /// worker is dropped, and a last round then. A failed round marks the
    /// store failed, so new writes are refused while the queued ones
    /// (already acknowledged, as periodic mode does) wait in memory; the
    /// thread then retries every [`super::fault::RETRY`] at most, and the
    /// first good round accepts writes again.
    pub fn start(self: &Arc<Self>, interval: Duration) -> std::io::Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (behind, stop) = (self.clone(), stop.clone());
            std::thread::Builder::new()
                .name("write-behind".into())
                .spawn(move || {
                    if behind.checkpoint.is_some() {
                        yield_the_cpu();
                    }
                    loop {
                        let stopping = stop.load(Ordering::Acquire);
                        let pause = match behind.round() {
                            Ok(()) => {
                                behind.health.recovered(Rounds::Sled);
                                interval
                            }
                            Err(e) => {
                                behind.health.failed(Rounds::Sled, "write-behind flush", &e);
                                interval.min(super::fault::RETRY)
                            }
                        };
                        if stopping {
                            return;
                        }
                        std::thread::park_timeout(pause);
                    }
                })?
        };
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }
}

/// With the write-ahead log, no acknowledgement waits for this thread,
/// so it runs at the lowest CPU priority (nice 19): when the cores are
/// saturated its hand-overs (sled inserts, about a tenth of a second of
/// work per round at 25,000 sets/s of 1 KB) wait, instead of delaying
/// the writes clients wait for. Measured A B with 50 connections of 1 KB
/// sets: higher p99 in 6 of 6 runs without it, fewer sets/s in 5 of 6
/// (`bench/profile.md`, "Session 8"). Should it fall behind, writers
/// write through ([`BACKLOG_LIMIT`]). Periodic mode keeps its normal
/// priority: there this thread's rounds are the durability window.
fn yield_the_cpu() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain syscall on the calling thread's own id.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) } != 0 {
        tracing::debug!("could not lower the write-behind thread's priority");
    }
}

/// The running write-behind thread; dropping it wakes it for a last round
/// and joins it.
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
