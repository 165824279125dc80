//! The Raft log and vote on disk: a `raft-log` write-ahead log (by
//! openraft's author, the one Databend's meta-service runs) in
//! `<data-dir>/raft-log`, apart from the item store, so that appending to
//! the log never waits behind the store's write-behind and a log sync
//! covers only the log.
//!
//! openraft acknowledges an append to the leader (and counts it towards a
//! commit) once [`LogFlushed`] is called, so [`LogStore::append`] hands
//! that callback to the WAL's flush worker, which calls it only after its
//! `write` *and* `fdatasync` (`File::sync_data`) of the chunk file. The
//! appending task is not blocked meanwhile, and appends queued while a sync
//! runs share the next one. Votes and truncations wait for their own sync
//! before they return.
//!
//! Why not sled, which the log used first: sled's `flush` hands the write
//! to its I/O thread pool and waits (a chain of thread wake-ups, then
//! `sync_file_range`, then our `fdatasync`: two disk round trips and about
//! ten context switches per entry, on every node, while openraft 0.9's core
//! waits for the leader's sync before it replicates). See
//! `bench/profile.md` ("Raft log") for the measurements.
//!
//! Entries, votes and the commit index are postcard-encoded; log ids are
//! stored as `((term, node), index)`, which orders as openraft orders them.

// openraft's storage traits fix the error type (`StorageError`, about
// 200 bytes); the helpers here return it as the traits do.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    CommittedLeaderId, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError,
    StorageIOError, Vote,
};
use parking_lot::Mutex;
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::{Callback, RaftLog};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A log id as the WAL keeps it: `((term, node), index)`.
type WalId = ((u64, u64), u64);

/// What the WAL calls back when a flush is done (or failed).
pub struct Done(Box<dyn FnOnce(io::Result<()>) + Send>);

impl Callback for Done {
    fn send(self, res: io::Result<()>) {
        (self.0)(res)
    }
}

impl Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Done")
    }
}

/// The WAL's types: postcard bytes for entries and the vote.
#[derive(Debug, Default, PartialEq, Eq, Clone)]
pub struct WalTypes;

impl raft_log::Types for WalTypes {
    type LogId = WalId;
    type LogPayload = Vec<u8>;
    type Vote = Vec<u8>;
    type Callback = Done;
    type UserData = ();

    fn log_index(log_id: &WalId) -> u64 {
        log_id.1
    }

    fn payload_size(payload: &Vec<u8>) -> u64 {
        payload.len() as u64
    }
}

/// A chunk file is closed at this size; purging the log removes whole
/// closed chunks, so this bounds what a purged log still holds on disk.
const CHUNK_BYTES: usize = 16 << 20;
/// Entries kept in memory for the followers' replication and applying.
const CACHE_BYTES: usize = 64 << 20;

fn to_wal(id: &LogId<u64>) -> WalId {
    ((id.leader_id.term, id.leader_id.node_id), id.index)
}

fn from_wal(id: &WalId) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(id.0 .0, id.0 .1), id.1)
}

/// The log of one node.
pub struct LogStore<C: RaftTypeConfig> {
    wal: Arc<Mutex<RaftLog<WalTypes>>>,
    dir: PathBuf,
    /// Set while a write waits for free space (see [`LogStore::wait_for_room`]).
    starved: Arc<AtomicBool>,
    /// The commit index openraft last saved here (`GET /v1/cluster`).
    committed: Arc<AtomicU64>,
    _config: PhantomData<C>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            wal: self.wal.clone(),
            dir: self.dir.clone(),
            starved: self.starved.clone(),
            committed: self.committed.clone(),
            _config: PhantomData,
        }
    }
}

fn read_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::read_logs(openraft::AnyError::error(e)).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_logs(openraft::AnyError::error(e)).into()
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Entry: Serialize + DeserializeOwned,
{
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut config = raft_log::Config::new(dir.display());
        config.wal.chunk_max_size = Some(CHUNK_BYTES);
        config.wal.read_buffer_size = Some(1 << 20);
        // No waiting for more appends before a sync: openraft hands the
        // next append only after this one is flushed, so nothing would come.
        config.wal.flush_batch_wait = Some(std::time::Duration::ZERO);
        config.log_cache_capacity = Some(CACHE_BYTES);
        let wal = RaftLog::<WalTypes>::open(Arc::new(config))?;
        let committed = wal.log_state().committed().map_or(0, |c| c.1);
        Ok(LogStore {
            wal: Arc::new(Mutex::new(wal)),
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
    /// openraft stops a node for good when its storage returns an error,
    /// so a full disk is met before the WAL writes: the write waits here,
    /// keeping the free space headroom, and resumes by itself once space
    /// returns. Meanwhile this node answers no appends or votes: to the
    /// others it is a slow member, and the group keeps committing on its
    /// majority (this node catches up afterwards from the leader's log or a
    /// snapshot).
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

    /// Syncs everything written so far and waits for it (votes,
    /// truncations): on a blocking-capable thread, as it waits for the disk.
    fn sync_now(&self) -> io::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let done = Done(Box::new(move |res| {
            Callback::send(tx, res);
        }));
        self.wal.lock().flush(true, Some(done))?;
        rx.recv()
            .map_err(|_| io::Error::other("the log's flush worker stopped"))?
    }

    fn entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<C::Entry>, StorageError<u64>> {
        let wal = self.wal.lock();
        let state = wal.log_state();
        let first = state.purged().map_or(0, |p| p.1 + 1);
        let end = state.last().map_or(0, |l| l.1 + 1);
        let from = match range.0 {
            Bound::Included(i) => i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => first,
        }
        .max(first);
        let to = match range.1 {
            Bound::Included(i) => i + 1,
            Bound::Excluded(i) => i,
            Bound::Unbounded => end,
        }
        .min(end);
        if from >= to {
            return Ok(Vec::new());
        }
        wal.read(from, to)
            .map(|r| {
                let (_, bytes) = r.map_err(read_err)?;
                postcard::from_bytes(&bytes).map_err(read_err)
            })
            .collect()
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<u64>> {
        self.entries((range.start_bound().cloned(), range.end_bound().cloned()))
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        let wal = self.wal.lock();
        let state = wal.log_state();
        let last_purged_log_id = state.purged().map(from_wal);
        let last_log_id = state.last().map(from_wal).or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.wait_for_room().await;
        let bytes = postcard::to_allocvec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.wal
            .lock()
            .save_vote(bytes)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.sync_now()
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        let wal = self.wal.lock();
        wal.log_state()
            .vote()
            .map(|v| postcard::from_bytes(v).map_err(|e| StorageIOError::read_vote(&e).into()))
            .transpose()
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        // Not synced: a lost commit index is learned again from the leader
        // (the next synced append carries it to disk anyway).
        if let Some(c) = &committed {
            let mut wal = self.wal.lock();
            wal.commit(to_wal(c)).map_err(write_err)?;
            wal.flush(false, None).map_err(write_err)?;
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.wal.lock().log_state().committed().map(from_wal))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.wait_for_room().await;
        let mut wal = self.wal.lock();
        // Entries a purge already covers are in the state machine's
        // snapshot: the WAL cannot hold them again, and openraft never reads
        // them (its storage suite appends such an entry after a purge).
        let purged = wal.log_state().purged().map(|p| p.1);
        let mut records = Vec::new();
        for entry in entries {
            if purged.is_some_and(|p| entry.get_log_id().index <= p) {
                continue;
            }
            let bytes = postcard::to_allocvec(&entry).map_err(write_err)?;
            records.push((to_wal(entry.get_log_id()), bytes));
        }
        wal.append(records).map_err(write_err)?;
        // Acknowledged only once on disk (openraft counts it towards a
        // commit): the flush worker calls back after write + fdatasync.
        let done = Done(Box::new(move |res| callback.log_io_completed(res)));
        wal.flush(true, Some(done)).map_err(write_err)?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.wait_for_room().await;
        self.wal.lock().truncate(log_id.index).map_err(write_err)?;
        self.sync_now().map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut wal = self.wal.lock();
        wal.purge(to_wal(&log_id)).map_err(write_err)?;
        // Synced with the next append; chunks go once the purge is on disk.
        wal.flush(false, None).map_err(write_err)?;
        Ok(())
    }
}
