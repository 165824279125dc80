//! Group commit for `--durability sync`.
//!
//! Every store mutation bumps a write generation. A caller that must not
//! acknowledge before its writes are on disk takes a [`Ticket`] (the
//! generations of its writes) and awaits it. One committer thread runs
//! rounds in a loop (an append to the write-ahead log and its `fdatasync`,
//! or without the memory index sled's `flush` and `fdatasync`); each round
//! covers every write whose generation was reached when the round started,
//! so however many clients wait, there is one disk sync per round, not one
//! per write.
//!
//! Waiting is async (a `watch` channel), so no tokio worker ever blocks on
//! the disk.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use super::fault::{Fault, Health, Rounds};
use super::undo::{Journal, Target};
use super::wal::Wal;

/// A writer's writes, as the generations `lo..=hi` they span: waiting on
/// it returns once every write up to `hi` is on disk, or fails if a failed
/// round refused one of them (refused ranges are suffixes of the history,
/// so checking the ends is exact; see [`super::undo`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
}

/// Makes every write so far durable: with the write-ahead log, one frame
/// of it written and `fdatasync`ed (see [`super::wal`]); without, the
/// write-behind queue handed to sled (in key order, one batch per round),
/// then sled's `flush` and the `fdatasync`s of [`DbFiles`].
pub struct Syncer {
    how: How,
    dir: PathBuf,
}

enum How {
    Logged(Arc<Wal>),
    Sled {
        db: sled::Db,
        behind: Option<Arc<super::behind::WriteBehind>>,
        files: DbFiles,
    },
}

impl Syncer {
    pub(crate) fn new(
        db: sled::Db,
        dir: PathBuf,
        behind: Option<Arc<super::behind::WriteBehind>>,
    ) -> Self {
        Syncer {
            how: How::Sled {
                db,
                behind,
                files: DbFiles::new(dir.clone()),
            },
            dir,
        }
    }

    /// Rounds that write the log (sled is written behind).
    pub(crate) fn logged(wal: Arc<Wal>, dir: PathBuf) -> Self {
        Syncer {
            how: How::Logged(wal),
            dir,
        }
    }

    /// What this syncer's rounds write, as [`super::fault::Health`] tracks it.
    pub fn rounds(&self) -> Rounds {
        match self.how {
            How::Logged(_) => Rounds::Log,
            How::Sled { .. } => Rounds::Sled,
        }
    }

    /// One durability barrier for every write up to the generation it
    /// returns, which it reads from `written` first. It writes nothing
    /// when less than [`super::fault::HEADROOM`] is free.
    pub fn sync(&mut self, written: &AtomicU64) -> std::io::Result<u64> {
        let (db, behind, files) = match &mut self.how {
            How::Logged(wal) => {
                super::fault::check_space(&self.dir)?;
                let (target, frame) = wal.take(written);
                wal.write(target, frame)?;
                return Ok(target);
            }
            How::Sled { db, behind, files } => (db, behind, files),
        };
        let target = written.load(Ordering::Acquire);
        super::fault::check_space(&self.dir)?;
        if let Some(b) = behind {
            // Every write whose generation the round covers was queued
            // before its generation was bumped, so it is in this drain.
            b.drain().map_err(|e| match e {
                super::StoreError::Sled(e) => super::fault::io_of(e),
                super::StoreError::Io(e) => e,
                other => std::io::Error::other(other),
            })?;
        }
        files.sync(db)?;
        Ok(target)
    }
}

/// A sled database's durability barrier, repeated cheaply: sled's `flush`
/// (which only issues `sync_file_range`), then `fdatasync` of its log file,
/// kept open, and of any new or grown blob file (sled writes large values
/// to `blobs/` without syncing them). The directory entries are synced the
/// first time only (and `blobs/` when it gains a file): listing the
/// directory, opening every file and syncing the directory each time cost
/// 0.5-1 ms per sync where one `fdatasync` costs 0.2-0.3 ms on this disk,
/// and the Raft log syncs once per entry on every node.
pub struct DbFiles {
    dir: PathBuf,
    log: Option<File>,
    /// Blob files already synced, with the length they had then.
    synced_blobs: HashMap<PathBuf, u64>,
    /// `blobs/` modification time at the last scan that found nothing new;
    /// while it is unchanged no blob was created, so no scan is needed.
    quiet_blobs_mtime: Option<std::time::SystemTime>,
}

impl DbFiles {
    /// The files of the sled database in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        DbFiles {
            dir,
            log: None,
            synced_blobs: HashMap::new(),
            quiet_blobs_mtime: None,
        }
    }

    /// Everything `db` was given before the call is on disk after it.
    pub fn sync(&mut self, db: &sled::Db) -> std::io::Result<()> {
        db.flush().map_err(super::fault::io_of)?;
        let log = self.dir.join("db");
        if self.log.is_none() {
            self.log = Some(File::open(&log)?);
            // First round: make the directory entries themselves durable.
            super::durable::sync_dir_files(&self.dir)?;
        }
        super::fault::sync_data(self.log.as_ref().expect("opened above"), &log)?;
        self.sync_new_blobs()
    }

    fn sync_new_blobs(&mut self) -> std::io::Result<()> {
        let blobs = self.dir.join("blobs");
        let mtime = match std::fs::metadata(&blobs) {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if mtime.is_some() && mtime == self.quiet_blobs_mtime {
            return Ok(());
        }
        let entries = match std::fs::read_dir(&blobs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut seen = HashMap::with_capacity(self.synced_blobs.len());
        let (mut new_entry, mut synced_any) = (false, false);
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let len = match entry.metadata() {
                Ok(m) => m.len(),
                // sled's GC removed it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match self.synced_blobs.get(&path) {
                Some(&l) if l == len => {}
                known => {
                    new_entry |= known.is_none();
                    synced_any = true;
                    match File::open(&path) {
                        Ok(f) => super::fault::sync_data(&f, &path)?,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            seen.insert(path, len);
        }
        self.synced_blobs = seen;
        // A blob still being written may have been synced half-way: scan
        // again next round unless this one found nothing to do.
        self.quiet_blobs_mtime = if synced_any { None } else { mtime };
        if new_entry {
            File::open(&blobs)?.sync_all()?;
        }
        Ok(())
    }
}

/// Refused ranges kept for late waiters (a range per failed round).
const KEEP_REFUSED: usize = 1024;

/// What the committer has achieved so far.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every write up to this generation is on disk.
    durable: u64,
    /// Generations a failed round refused (and took back): each range
    /// runs from just after the last good round to the end of the
    /// roll-back (see [`super::undo`]), with the fault.
    refused: VecDeque<(u64, u64, Fault)>,
}

impl Progress {
    fn refusal(&self, t: Ticket) -> Option<Fault> {
        self.refused
            .iter()
            .find(|(lo, hi, _)| *lo <= t.hi && t.lo <= *hi)
            .map(|r| r.2)
    }
}

/// Why waiting for durability failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A round failed and took the write back (see [`super::undo`]).
    #[error("{0}")]
    Refused(Fault),
    #[error("the group committer stopped")]
    Stopped,
}

/// The store's parts a round and a roll-back need, beside the [`Syncer`].
pub struct Parts {
    pub written: Arc<AtomicU64>,
    pub health: Arc<Health>,
    pub journal: Arc<Journal>,
    pub target: Target,
}

/// The committer thread and the handles writers use to wait on it.
pub struct Committer {
    written: Arc<AtomicU64>,
    rounds: Arc<AtomicU64>,
    progress: watch::Receiver<Progress>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer thread. It also runs a round at least every
    /// `idle_flush`, so writes nobody waits on (noreply, sweeper) reach the
    /// disk as in periodic mode.
    ///
    /// A failed round marks the store failed (writes are refused from
    /// then on), takes back every write since the last good round and
    /// tells their waiters; then the thread retries a round every
    /// [`super::fault::RETRY`] (which also hands the taken-back records to
    /// sled) until one succeeds and the store accepts writes again.
    pub fn start(mut syncer: Syncer, parts: Parts, idle_flush: Duration) -> Self {
        let (tx, progress) = watch::channel(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let written = parts.written.clone();
        let thread = {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            std::thread::Builder::new()
                .name("group-commit".into())
                .spawn(move || {
                    let Parts {
                        written,
                        health,
                        journal,
                        target: to,
                    } = parts;
                    let kind = syncer.rounds();
                    let mut durable = 0;
                    let mut failing = false;
                    loop {
                        let target = written.load(Ordering::Acquire);
                        if target == durable && !failing {
                            if stop.load(Ordering::Acquire) {
                                return;
                            }
                            std::thread::park_timeout(idle_flush);
                            if written.load(Ordering::Acquire) == durable {
                                continue;
                            }
                        }
                        rounds.fetch_add(1, Ordering::Relaxed);
                        match syncer.sync(&written) {
                            Ok(target) => {
                                durable = target;
                                journal.committed(target);
                                if std::mem::take(&mut failing) {
                                    health.recovered(kind);
                                }
                                tx.send_modify(|p| p.durable = target);
                            }
                            Err(e) => {
                                let fault = health.failed(kind, "group commit", &e);
                                let upto = journal.roll_back(&to);
                                if upto > durable {
                                    tx.send_modify(|p| {
                                        if p.refused.len() == KEEP_REFUSED {
                                            p.refused.pop_front();
                                        }
                                        p.refused.push_back((durable + 1, upto, fault));
                                    });
                                }
                                failing = true;
                                if stop.load(Ordering::Acquire) {
                                    return;
                                }
                                std::thread::park_timeout(super::fault::RETRY);
                            }
                        }
                    }
                })
                .expect("spawn group-commit thread")
        };
        Committer {
            written,
            rounds,
            progress,
            stop,
            thread: Some(thread),
        }
    }

    /// Disk syncs run so far (each covers every write waiting at its start).
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// A ticket for the writes with generations `lo..=hi` (a writer's own,
    /// see [`super::fault::take_own_writes`]), or, when the writer does not
    /// know them, for every write after generation `since` so far.
    pub fn ticket(&self, own: Option<(u64, u64)>, since: u64) -> Ticket {
        match own {
            Some((lo, hi)) => Ticket { lo, hi },
            None => Ticket {
                lo: since + 1,
                hi: self.written.load(Ordering::Acquire),
            },
        }
    }

    /// Resolves once every write of `ticket` is on disk, or fails if a
    /// failed round refused any of them.
    pub async fn wait(&self, ticket: Ticket) -> Result<(), CommitError> {
        let mut rx = self.progress.clone();
        let settled = |p: &Progress| p.refusal(ticket).is_some() || p.durable >= ticket.hi;
        if !settled(&rx.borrow()) {
            if let Some(t) = self.thread.as_ref() {
                t.thread().unpark();
            }
        }
        let p = rx
            .wait_for(settled)
            .await
            .map_err(|_| CommitError::Stopped)?;
        match p.refusal(ticket) {
            Some(f) => Err(CommitError::Refused(f)),
            None => Ok(()),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Durability};
    use crate::store::{Item, Store};

    #[tokio::test]
    async fn a_ticket_resolves_after_a_sync_covering_its_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::for_data_dir(dir.path()).store;
        cfg.durability = Durability::Sync;
        // No idle rounds: only waiting can start one.
        cfg.flush_interval_ms = 3_600_000;
        let store = Store::open(&cfg).unwrap();
        let c = store.committer.as_ref().expect("sync mode starts it");
        // Nothing written yet: nothing to wait for.
        c.wait(c.ticket(None, 0)).await.unwrap();
        let before = c.rounds();
        store.insert(b"k", Item::encode(0, 0, 1, &[b"v"])).unwrap();
        let t = c.ticket(crate::store::fault::take_own_writes(), 0);
        assert_eq!((t.lo, t.hi), (1, 1), "the write's own generation");
        c.wait(t).await.unwrap();
        assert!(c.rounds() > before, "no sync ran for a waited write");
        // The round wrote the log: a crash now keeps the write (whether
        // or not the write-behind gave it to sled yet).
        let (_image, crashed) = crate::store::testkit::crash_image(&cfg);
        assert_eq!(crashed.get(b"k").unwrap().map(|i| i.cas()), Some(1));
        // Already durable: returns without another round.
        let after = c.rounds();
        c.wait(t).await.unwrap();
        assert_eq!(c.rounds(), after);
    }
}
