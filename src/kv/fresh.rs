//! A command's reads in a group: one read-index round for all its keys.
//!
//! A linearizable read on a follower (or on a leader without its lease)
//! waits for a read-index round that started after the read began (see
//! `read_index`). The keys of one multi-key `get` are reads that all began
//! when the command arrived, so one round started after that serves every
//! key: the command takes a [`ReadPoint`] first, awaits it as a future (no
//! runtime thread parks on it), then reads each key from that point. Asked
//! per key, a 100-key `get` on a follower ran 100 rounds one after another.

use super::{wait_for, Kv, Result};

/// Where a command's reads begin: the read-index round they need. Nothing
/// on a single node or with `--read-consistency local`.
#[derive(Clone, Copy, Debug)]
pub struct ReadPoint(Option<u64>);

impl Kv {
    /// The point a read beginning now reads from.
    pub fn read_point(&self) -> ReadPoint {
        ReadPoint(
            self.replicated()
                .filter(|r| r.linearizable_reads())
                .map(|r| r.read_point()),
        )
    }

    /// Whether reads here wait for a read index (a group with
    /// linearizable reads): then a pipeline of reads is worth answering
    /// from one point (see `memcache::text::run`).
    pub fn reads_need_index(&self) -> bool {
        self.read_point().0.is_some()
    }

    /// Waits, as a future, until reads from `point` see every write
    /// acknowledged before it was taken; `NoQuorum` after
    /// `--quorum-timeout-ms`. A leader under its lease does not wait.
    /// Returns the point the command's reads then use: one that needs no
    /// further check, so each key's lookup neither asks the lease again
    /// nor looks for the round.
    pub async fn fresh_async(&self, point: ReadPoint) -> Result<ReadPoint> {
        if let (Some(p), Some(r)) = (point.0, self.replicated()) {
            if !r.read_under_lease() {
                r.read_barrier_from(p).await?;
            }
        }
        Ok(ReadPoint(None))
    }

    /// [`Kv::fresh_async`] for synchronous callers (every lookup): returns
    /// at once, without handing the runtime thread over, when a finished
    /// round covers the point.
    pub(super) fn fresh(&self, point: ReadPoint) -> Result<()> {
        if let (Some(p), Some(r)) = (point.0, self.replicated()) {
            if !r.read_satisfied(p) && !r.read_under_lease() {
                wait_for(r.read_barrier_from(p))?;
            }
        }
        Ok(())
    }

    /// [`Kv::get`] for an async caller: a read index is awaited as a
    /// future, so a follower's linearizable read parks no runtime thread.
    pub async fn get_async(&self, key: &[u8]) -> Result<Option<super::Item>> {
        let point = self.fresh_async(self.read_point()).await?;
        self.get_from(key, point)
    }

    /// Read-index rounds this node started (`stats`:
    /// `raft_read_index_rounds`; 0 on a single node).
    pub fn read_index_rounds(&self) -> u64 {
        self.replica.get().map_or(0, |r| r.read_rounds())
    }
}
