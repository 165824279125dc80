//! Getting acknowledged writes to sled and onto the disk.
//!
//! Two steps, either of which may lag a write: the write-behind hands
//! queued writes to sled ([`Store::settle`]), and a durability barrier
//! makes sled's files durable ([`Store::sync_files`]): sled's own `flush`
//! only issues `sync_file_range`, which is no barrier, so the files are
//! `fdatasync`ed too.
//!
//! Under `--durability sync` the group committer ([`super::commit`]) runs
//! rounds of both; the store hands it what it needs
//! ([`Store::syncer`], [`Store::write_generation`]).

use std::fs::File;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::commit;
use super::{Result, Store};

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
    /// [`Store::sync_files`].
    pub fn sync(&self) -> Result<()> {
        self.settle()?;
        self.sync_files()
    }

    /// Flushes and then `fdatasync`s the database files, because sled's own
    /// flush only issues `sync_file_range`, which is no durability barrier.
    pub(super) fn sync_files(&self) -> Result<()> {
        self.db.flush()?;
        sync_dir_files(&self.dir)?;
        Ok(())
    }

    /// The write generation counter the group committer follows.
    pub fn write_generation(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// A durability handle for the group committer's thread.
    pub fn syncer(&self) -> commit::Syncer {
        commit::Syncer::new(self.db.clone(), self.dir.clone(), self.behind.clone())
    }
}

/// `fdatasync` every regular file below `dir` (sled's db, conf, blobs).
pub(super) fn sync_dir_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            sync_dir_files(&entry.path())?;
        } else if ty.is_file() {
            // A file renamed away meanwhile (the CSV mirror's temp file) needs no sync.
            match File::open(entry.path()) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    File::open(dir)?.sync_all()
}
