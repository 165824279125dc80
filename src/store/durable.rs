//! Getting acknowledged writes to sled and onto the disk.
//!
//! Two steps, either of which may lag a write: the write-behind hands
//! queued writes to sled ([`Store::settle`]), and a durability barrier
//! makes sled's files durable ([`Store::sync_files`]): sled's own `flush`
//! only issues `sync_file_range`, which is no barrier, so the files are
//! `fdatasync`ed too.
//!
//! Under `--durability sync` the store also runs the group committer
//! ([`super::commit`]): writers take a [`Ticket`] after their writes and
//! wait on it before acknowledging, and one committer round (hand-over,
//! flush, `fdatasync`) serves every writer waiting at its start. The store
//! owns the committer because a round needs the store's insides (sled's
//! handle, the write-behind queue, the write generation) and must stop
//! before the store closes; the layer above only takes tickets and waits.

use std::fs::File;
use std::path::Path;

use super::commit::{self, Ticket};
use super::{Result, Store, StoreError};

impl Store {
    /// Hands every write the write-behind thread has not given sled yet
    /// to sled now (a no-op without it).
    pub fn settle(&self) -> Result<()> {
        if let Some(b) = &self.behind {
            b.drain()?;
        }
        Ok(())
    }

    /// Writes acknowledged but not yet given to sled (see [`super::behind`]).
    pub fn unsaved_writes(&self) -> usize {
        self.behind.as_ref().map_or(0, |b| b.queued())
    }

    /// Makes every acknowledged write durable: [`Store::settle`], then
    /// `Store::sync_files`; then sled holds everything the write-ahead
    /// log does up to here, so the log's files are deleted.
    pub fn sync(&self) -> Result<()> {
        let reached = self.generation();
        self.settle()?;
        self.sync_files()?;
        if let Some(wal) = &self.wal {
            wal.purge(reached, true)?;
        }
        Ok(())
    }

    /// At open, before anything reads sled: applies what the write-ahead
    /// log of a sync-mode run holds (a crash left it there) to sled, makes
    /// sled durable and deletes the log. Counts saved at a clean close no
    /// longer hold then: the next step counts again.
    pub(super) fn replay_wal(
        dir: &Path,
        db: &sled::Db,
        items: &sled::Tree,
        meta: &sled::Tree,
    ) -> Result<()> {
        let frames = super::wal::replay(dir, |key, record| {
            match record {
                Some(r) => items.insert(key, r),
                None => items.remove(key),
            }
            .map(drop)
            .map_err(super::fault::io_of)
        })?;
        if frames > 0 {
            tracing::info!("replayed {frames} rounds of the write-ahead log into the store");
            meta.remove(super::counts::META_CLEAN_COUNTS)?;
            db.flush()?;
            sync_dir_files(dir)?;
        }
        super::wal::clear(dir)?;
        Ok(())
    }

    /// Flushes and then `fdatasync`s the database files, because sled's own
    /// flush only issues `sync_file_range`, which is no durability barrier.
    pub(super) fn sync_files(&self) -> Result<()> {
        self.db.flush()?;
        sync_dir_files(&self.dir)?;
        Ok(())
    }

    /// Under `--durability sync`, a ticket covering the writes with
    /// generations `own` (a writer's own, see [`Store::take_own_writes`]),
    /// or, when the writer does not know them, every write after
    /// generation `since`; `None` in periodic mode, where nothing waits
    /// for the disk.
    pub fn commit_ticket(&self, own: Option<(u64, u64)>, since: u64) -> Option<Ticket> {
        self.committer.as_ref().map(|c| c.ticket(own, since))
    }

    /// The write generations of this thread's writes since the last call,
    /// as (lowest, highest) (see [`super::fault::take_own_writes`]).
    pub fn take_own_writes(&self) -> Option<(u64, u64)> {
        super::fault::take_own_writes()
    }

    /// Resolves once every write of `ticket` is on disk (group commit:
    /// one disk sync serves every writer waiting at the time); fails with
    /// [`StoreError::Refused`] if a failed round refused any of them. At
    /// once in periodic mode.
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        match &self.committer {
            Some(c) => c.wait(ticket).await.map_err(|e| match e {
                commit::CommitError::Refused(f) => StoreError::Refused(f),
                other => StoreError::Io(std::io::Error::other(other)),
            }),
            None => Ok(()),
        }
    }

    /// Group-commit rounds (disk syncs) run so far; 0 in periodic mode.
    pub fn commit_rounds(&self) -> u64 {
        self.committer.as_ref().map_or(0, commit::Committer::rounds)
    }

    /// Starts the group committer ([`Store::open`] does, in sync mode). It
    /// also runs a round every flush interval when writes nobody waited on
    /// (noreply, the sweeper) are pending, as periodic mode would flush
    /// them.
    pub(super) fn start_committer(&self) -> commit::Committer {
        let parts = commit::Parts {
            written: self.written.clone(),
            health: self.health.clone(),
            journal: self.journal.clone().unwrap_or_default(),
            target: super::undo::Target {
                index: self.index.clone(),
                items: self.items.clone(),
                curr_items: self.curr_items.clone(),
                bytes: self.bytes.clone(),
                written: self.written.clone(),
                wal: self.wal.clone(),
            },
        };
        commit::Committer::start(self.syncer(), parts, self.flush_interval)
    }

    /// A durability handle for the group committer's thread.
    fn syncer(&self) -> commit::Syncer {
        match &self.wal {
            Some(wal) => commit::Syncer::logged(wal.clone(), self.dir.clone()),
            None => commit::Syncer::new(self.db.clone(), self.dir.clone(), self.behind.clone()),
        }
    }
}

/// `fdatasync` every regular file below `dir` (sled's db, conf, blobs).
pub fn sync_dir_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            sync_dir_files(&entry.path())?;
        } else if ty.is_file() {
            // A file renamed away meanwhile (the CSV mirror's temp file) needs no sync.
            match File::open(entry.path()) {
                Ok(f) => super::fault::sync_data(&f, &entry.path())?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::reopen;
    use super::super::Item;
    use super::*;
    use crate::config::{Config, Durability};

    #[tokio::test]
    async fn only_sync_mode_commits_and_waits() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::for_data_dir(dir.path()).store;
        {
            let s = Store::open(&cfg).unwrap();
            assert_eq!(
                s.commit_ticket(None, 0),
                None,
                "periodic mode waits for nothing"
            );
            assert_eq!(s.commit_rounds(), 0);
        }
        cfg.durability = Durability::Sync;
        cfg.flush_interval_ms = 3_600_000;
        let s = reopen(&cfg);
        s.insert(b"k", Item::encode(0, 0, 1, &[b"v"])).unwrap();
        let t = s
            .commit_ticket(s.take_own_writes(), 0)
            .expect("sync mode starts the committer");
        s.wait_durable(t).await.unwrap();
        assert!(s.commit_rounds() > 0);
        let (_image, crashed) = super::super::testkit::crash_image(&cfg);
        assert_eq!(crashed.get(b"k").unwrap().map(|i| i.cas()), Some(1));
        // Without the memory index a round gives sled the write itself.
        cfg.no_memory_index = true;
        drop(s);
        let s = reopen(&cfg);
        s.insert(b"k2", Item::encode(0, 0, 2, &[b"v"])).unwrap();
        let t = s.commit_ticket(s.take_own_writes(), 0).unwrap();
        s.wait_durable(t).await.unwrap();
        let (_image, crashed) = super::super::testkit::crash_image(&cfg);
        assert_eq!(crashed.get(b"k2").unwrap().map(|i| i.cas()), Some(2));
    }

    /// Sync mode with the index: a crash (the data directory copied while
    /// the store runs) keeps every acknowledged write, removals included,
    /// through the write-ahead log; a clean close leaves no log to replay,
    /// and a checkpoint deletes the log's full files once sled has them.
    #[tokio::test]
    async fn the_write_ahead_log_keeps_acknowledged_writes_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::for_data_dir(dir.path()).store;
        cfg.durability = Durability::Sync;
        cfg.flush_interval_ms = 3_600_000;
        let s = Store::open(&cfg).unwrap();
        s.load_index().unwrap();
        let record = |i: u64| Item::encode(0, 0, i + 1, &[b"v"]);
        (0..100u64).for_each(|i| drop(s.insert(format!("k{i}").as_bytes(), record(i)).unwrap()));
        s.remove(b"k7").unwrap();
        let t = s.commit_ticket(s.take_own_writes(), 0).unwrap();
        s.wait_durable(t).await.unwrap();
        let (_image, crashed) = super::super::testkit::crash_image(&cfg);
        assert_eq!(crashed.curr_items(), 99);
        assert_eq!(crashed.get(b"k7").unwrap().map(|i| i.cas()), None);
        assert_eq!(crashed.get(b"k99").unwrap().map(|i| i.cas()), Some(100));
        drop(crashed);
        // A full file: the write-behind's next round checkpoints it.
        let big = vec![b'x'; super::super::wal::SEGMENT_BYTES as usize];
        s.insert(b"big", Item::encode(0, 0, 500, &[&big])).unwrap();
        let t = s.commit_ticket(s.take_own_writes(), 0).unwrap();
        s.wait_durable(t).await.unwrap();
        // Log files; spares (`spare-*`, ready for the next files) hold none.
        let wal_files = || {
            std::fs::read_dir(super::super::wal::dir_of(dir.path()))
                .unwrap()
                .filter(|e| {
                    !e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("spare")
                })
                .count()
        };
        assert_eq!(wal_files(), 1);
        s.sync().unwrap();
        assert_eq!(wal_files(), 0, "a full sync leaves no log behind");
        drop(s);
        let s = reopen(&cfg);
        assert_eq!(s.curr_items(), 100);
        assert_eq!(s.get(b"big").unwrap().map(|i| i.cas()), Some(500));
        drop(s);
        // With the write-behind running, its rounds checkpoint by themselves.
        cfg.flush_interval_ms = 20;
        let s = reopen(&cfg);
        s.insert(b"big", Item::encode(0, 0, 501, &[&big])).unwrap();
        let t = s.commit_ticket(s.take_own_writes(), 0).unwrap();
        s.wait_durable(t).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while wal_files() > 0 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let (_image, crashed) = super::super::testkit::crash_image(&cfg);
        assert_eq!(crashed.get(b"big").unwrap().map(|i| i.cas()), Some(501));
    }

    /// Writes nobody waited on still reach sled when a sync-mode store
    /// closes (the committer's last round as it stops, else the final
    /// settle), and the close does not hang on the committer's thread.
    #[test]
    fn closing_a_sync_mode_store_keeps_writes_nobody_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::for_data_dir(dir.path()).store;
        cfg.durability = Durability::Sync;
        // Long enough that no idle round runs before the close.
        cfg.flush_interval_ms = 3_600_000;
        {
            let s = Store::open(&cfg).unwrap();
            s.load_index().unwrap();
            for i in 0..1000u64 {
                s.insert(
                    format!("k{i}").as_bytes(),
                    Item::encode(0, 0, i + 1, &[b"v"]),
                )
                .unwrap();
            }
        }
        cfg.no_memory_index = true;
        let s = reopen(&cfg);
        assert_eq!(s.curr_items(), 1000);
        assert_eq!(s.get(b"k999").unwrap().map(|i| i.cas()), Some(1000));
    }
}
