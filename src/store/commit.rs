//! Group commit for `--durability sync`.
//!
//! Every store mutation bumps a write generation. A caller that must not
//! acknowledge before its writes are on disk takes a [`Ticket`] (the
//! generation after its writes) and awaits it. One committer thread runs
//! `flush + fdatasync` in a loop; each round covers every write whose
//! generation was reached when the round started, so however many clients
//! wait, there is one disk sync per round, not one per write.
//!
//! Waiting is async (a `watch` channel), so no tokio worker ever blocks on
//! the disk.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

/// A point in the write history: waiting on it returns once every write up
/// to it is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(pub(crate) u64);

/// Makes every write so far durable: hands the write-behind queue to sled
/// (in key order, one batch per round), then sled's `flush` (which only
/// issues `sync_file_range`) followed by `fdatasync` of the log file and of
/// any blob file (sled writes large values to `blobs/` without syncing
/// them).
pub struct Syncer {
    db: sled::Db,
    behind: Option<Arc<super::behind::WriteBehind>>,
    dir: PathBuf,
    log: Option<File>,
    /// Blob files already synced, with the length they had then.
    synced_blobs: HashMap<PathBuf, u64>,
    /// `blobs/` modification time at the last scan that found nothing new;
    /// while it is unchanged no blob was created, so no scan is needed.
    quiet_blobs_mtime: Option<std::time::SystemTime>,
}

impl Syncer {
    pub(crate) fn new(
        db: sled::Db,
        dir: PathBuf,
        behind: Option<Arc<super::behind::WriteBehind>>,
    ) -> Self {
        Syncer {
            db,
            behind,
            dir,
            log: None,
            synced_blobs: HashMap::new(),
            quiet_blobs_mtime: None,
        }
    }

    /// One durability barrier for everything written before the call.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if let Some(b) = &self.behind {
            // Every write whose generation the round covers was queued
            // before its generation was bumped, so it is in this drain.
            b.drain().map_err(std::io::Error::other)?;
        }
        self.db.flush().map_err(std::io::Error::other)?;
        if self.log.is_none() {
            self.log = Some(File::open(self.dir.join("db"))?);
            // First round: make the directory entries themselves durable.
            super::durable::sync_dir_files(&self.dir)?;
        }
        self.log.as_ref().expect("opened above").sync_data()?;
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
                        Ok(f) => f.sync_data()?,
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

/// What the committer has achieved so far.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every write up to this generation is on disk.
    durable: u64,
    /// The last round failed for writes up to this generation.
    failed: u64,
    error: Option<Arc<str>>,
}

/// Why waiting for durability failed.
#[derive(Debug, thiserror::Error)]
#[error("could not make the write durable: {0}")]
pub struct CommitError(Arc<str>);

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
    pub fn start(mut syncer: Syncer, written: Arc<AtomicU64>, idle_flush: Duration) -> Self {
        let (tx, progress) = watch::channel(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let thread = {
            let (written, stop, rounds) = (written.clone(), stop.clone(), rounds.clone());
            std::thread::Builder::new()
                .name("group-commit".into())
                .spawn(move || {
                    let mut durable = 0;
                    loop {
                        let target = written.load(Ordering::Acquire);
                        if target == durable {
                            if stop.load(Ordering::Acquire) {
                                return;
                            }
                            std::thread::park_timeout(idle_flush);
                            if written.load(Ordering::Acquire) == durable {
                                continue;
                            }
                        }
                        let target = written.load(Ordering::Acquire);
                        rounds.fetch_add(1, Ordering::Relaxed);
                        match syncer.sync() {
                            Ok(()) => {
                                durable = target;
                                tx.send_modify(|p| p.durable = target);
                            }
                            Err(e) => {
                                tracing::error!("group commit failed: {e}");
                                tx.send_modify(|p| {
                                    p.failed = target;
                                    p.error = Some(e.to_string().into());
                                });
                                durable = target;
                                std::thread::sleep(Duration::from_millis(10));
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

    /// The generation covering every write completed so far.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.written.load(Ordering::Acquire))
    }

    /// Resolves once every write up to `ticket` is on disk.
    pub async fn wait(&self, ticket: Ticket) -> Result<(), CommitError> {
        let mut rx = self.progress.clone();
        if rx.borrow().durable >= ticket.0 {
            return Ok(());
        }
        if let Some(t) = self.thread.as_ref() {
            t.thread().unpark();
        }
        let p = rx
            .wait_for(|p| p.durable >= ticket.0 || p.failed >= ticket.0)
            .await
            .map_err(|_| CommitError("committer stopped".into()))?;
        if p.durable >= ticket.0 {
            Ok(())
        } else {
            Err(CommitError(
                p.error.clone().unwrap_or_else(|| "unknown".into()),
            ))
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
        c.wait(c.ticket()).await.unwrap();
        let before = c.rounds();
        store.insert(b"k", Item::encode(0, 0, 1, &[b"v"])).unwrap();
        let t = c.ticket();
        assert!(t > super::Ticket(0));
        c.wait(t).await.unwrap();
        assert!(c.rounds() > before, "no sync ran for a waited write");
        // The round handed the queued write to sled before syncing it.
        assert_eq!(store.unsaved_writes(), 0);
        assert!(store.items.get(b"k").unwrap().is_some());
        // Already durable: returns without another round.
        let after = c.rounds();
        c.wait(t).await.unwrap();
        assert_eq!(c.rounds(), after);
    }
}
