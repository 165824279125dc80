//! The Raft log and vote on disk: a sled database of its own in
//! `<data-dir>/raft`, apart from the item store, so that appending to the
//! log never waits behind the store's write-behind and a log sync covers
//! only the log.
//!
//! openraft acknowledges an append to the leader (and counts it towards a
//! commit) once [`LogFlushed`] is called, so [`LogStore::append`] calls it
//! only after sled's flush *and* an `fdatasync` of the log's files: sled's
//! own flush issues `sync_file_range`, which is no durability barrier.
//! Entries are keyed by their index (big-endian, so sled's order is the
//! log's) and encoded with postcard.
//!
//! The sync runs on a thread of its own ([`Syncer`]), not in `append`:
//! openraft's core awaits the callback, but the runtime worker that polls
//! it stays free meanwhile (with one worker, a sync inside `append` stalled
//! every connection and every Raft message of the node for the whole
//! `fdatasync`). Appends that arrive while a sync runs share the next one.

// openraft's storage traits fix the error type (`StorageError`, about
// 200 bytes); the helpers here return it as the traits do.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};

use crate::store::DbFiles;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    LogId, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError, StorageIOError,
    Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"last_purged";

/// The log of one node.
pub struct LogStore<C: RaftTypeConfig> {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    dir: PathBuf,
    /// The log's files, for `fdatasync` (shared with the syncer thread).
    files: Arc<Mutex<DbFiles>>,
    /// Set while a write waits for free space (see [`LogStore::wait_for_room`]).
    starved: Arc<AtomicBool>,
    /// The commit index openraft last saved here (`GET /v1/cluster`).
    committed: Arc<AtomicU64>,
    syncer: Syncer<C>,
    _config: PhantomData<C>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            log: self.log.clone(),
            meta: self.meta.clone(),
            dir: self.dir.clone(),
            files: self.files.clone(),
            starved: self.starved.clone(),
            committed: self.committed.clone(),
            syncer: self.syncer.clone(),
            _config: PhantomData,
        }
    }
}

/// The thread that syncs appended entries and then reports them flushed:
/// one sync for every append waiting when it starts. It ends when the
/// last [`LogStore`] clone is dropped.
struct Syncer<C: RaftTypeConfig> {
    tx: std::sync::mpsc::Sender<LogFlushed<C>>,
}

impl<C: RaftTypeConfig> Clone for Syncer<C> {
    fn clone(&self) -> Self {
        Syncer {
            tx: self.tx.clone(),
        }
    }
}

impl<C: RaftTypeConfig> Syncer<C> {
    fn start(db: sled::Db, files: Arc<Mutex<DbFiles>>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<LogFlushed<C>>();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let synced = files.lock().sync(&db);
                    for callback in waiting {
                        let result = match &synced {
                            Ok(()) => Ok(()),
                            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                        };
                        callback.log_io_completed(result);
                    }
                }
            })?;
        Ok(Syncer { tx })
    }
}

type NodeIdOf<C> = <C as RaftTypeConfig>::NodeId;

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self, sled::Error> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            // Every append and vote syncs itself.
            .flush_every_ms(None)
            .open()?;
        let meta = db.open_tree("meta")?;
        let files = Arc::new(Mutex::new(DbFiles::new(dir.to_path_buf())));
        let committed = meta
            .get(COMMITTED)?
            .and_then(|v| postcard::from_bytes::<Option<LogId<NodeIdOf<C>>>>(&v).ok())
            .flatten()
            .map_or(0, |l| l.index);
        Ok(LogStore {
            log: db.open_tree("log")?,
            meta,
            syncer: Syncer::start(db.clone(), files.clone())?,
            files,
            db,
            dir: dir.to_path_buf(),
            starved: Arc::new(AtomicBool::new(false)),
            committed: Arc::new(AtomicU64::new(committed)),
            _config: PhantomData,
        })
    }

    /// The commit index as openraft last reported it to this log.
    pub fn committed(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    /// True while the log waits for free space: this node neither appends
    /// nor votes, and the group commits without it.
    pub fn starved(&self) -> Arc<AtomicBool> {
        self.starved.clone()
    }

    /// Waits until the log's filesystem has room for a write.
    ///
    /// sled 0.34 cannot recover from a failed write of its own log (the
    /// error sticks until a reopen; see `store::fault`), and openraft stops
    /// a node for good when its storage returns an error. So a full disk
    /// is met before sled writes: the write waits here, keeping the free
    /// space headroom, and resumes by itself once space returns. Meanwhile
    /// this node answers no appends or votes: to the others it is a slow
    /// member, and the group keeps committing on its majority (this node
    /// catches up afterwards from the leader's log or a snapshot).
    async fn wait_for_room(&self) {
        let mut waited = false;
        while let Err(e) = crate::store::fault::check_space(&self.dir) {
            if !waited {
                tracing::error!(
                    dir = %self.dir.display(),
                    "raft log: {e}; this node stops appending until space returns"
                );
                self.starved.store(true, Ordering::Relaxed);
                waited = true;
            }
            tokio::time::sleep(crate::store::fault::RETRY).await;
        }
        if waited {
            self.starved.store(false, Ordering::Relaxed);
            tracing::info!(dir = %self.dir.display(), "raft log: space returned, appending again");
        }
    }

    /// Syncs the log now, on the caller's thread (votes, truncations).
    fn sync(&self) -> std::io::Result<()> {
        self.files.lock().sync(&self.db)
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeIdOf<C>>> {
        let raw = self.meta.get(key).map_err(|e| StorageIOError::read(&e))?;
        raw.map(|v| postcard::from_bytes(&v).map_err(|e| StorageIOError::read(&e).into()))
            .transpose()
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
    ) -> Result<(), StorageError<NodeIdOf<C>>> {
        let bytes = postcard::to_allocvec(value).map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeIdOf<C>>>, StorageError<NodeIdOf<C>>> {
        match self.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            None => Ok(None),
            Some((_, v)) => {
                let entry: C::Entry =
                    postcard::from_bytes(&v).map_err(|e| StorageIOError::read_logs(&e))?;
                Ok(Some(entry.get_log_id().clone()))
            }
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn to_bound(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let range = (to_bound(range.start_bound()), to_bound(range.end_bound()));
        self.log
            .range(range)
            .map(|kv| {
                let (_, v) = kv.map_err(|e| StorageIOError::read_logs(&e))?;
                Ok(postcard::from_bytes(&v).map_err(|e| StorageIOError::read_logs(&e))?)
            })
            .collect()
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let last_purged_log_id = self.get_meta(PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id.clone());
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.wait_for_room().await;
        self.put_meta(VOTE, vote)?;
        self.sync().map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // Not synced: a lost commit index is learned again from the leader.
        self.put_meta(COMMITTED, &committed)?;
        if let Some(c) = &committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self
            .get_meta::<Option<LogId<C::NodeId>>>(COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.wait_for_room().await;
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes =
                postcard::to_allocvec(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.insert(&index_key(entry.get_log_id().index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // Acknowledged only once on disk (openraft counts it towards a
        // commit): the syncer calls back after its next sync.
        if let Err(std::sync::mpsc::SendError(callback)) = self.syncer.tx.send(callback) {
            let synced = self.sync();
            callback.log_io_completed(synced);
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.wait_for_room().await;
        let mut batch = sled::Batch::default();
        for kv in self.log.range(index_key(log_id.index)..) {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.sync().map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.put_meta(PURGED, &log_id)?;
        let mut batch = sled::Batch::default();
        for kv in self.log.range(..=index_key(log_id.index)) {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
