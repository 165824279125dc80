//! memcached semantics over a replicated group: what the Raft log carries
//! ([`Proposal`]), how a committed entry changes the items (the
//! [`StateMachine`]), and how a client's write gets into the log from any
//! node ([`Replicated::propose`]).
//!
//! The log carries commands, not results: `set k 0 60 ...`, `incr k 1`.
//! Every replica applies them in log order with the same inputs, so every
//! replica decides the same: the proposing leader stamps each entry with
//! its unix time (relative exptimes and delays become the same absolute
//! times everywhere), and the write at position `p` of entry `i` (an
//! entry carries many, see `proposals`) gets CAS `cas_of(i, p)` (unique
//! and increasing across the group, whoever leads).
//!
//! A CAS decided by the log position also makes re-applying idempotent.
//! The applied position is saved after the items
//! (`Store::save_replica_state`, at most every [`SAVE_EVERY`] while
//! entries apply), so after a crash
//! a node may apply again entries whose writes sled already holds; a
//! set or incr finding its key with a CAS at or above its own was
//! applied already and is skipped, and deletes and flushes are
//! idempotent. That is also why a group starts from an empty store.
//!
//! A follower forwards a write to the leader (memcached clients cannot
//! follow redirects). Each proposal has an id (node, sequence): the state
//! machine remembers recent answers by id, so a forward retried after a
//! leader change is applied once.

// openraft's storage traits fix the error type (`StorageError`, about
// 200 bytes); the helpers here return it as the traits do.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Cursor;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use super::entry::{Applied, Op, Proposal};
use super::lease::Lease;
use super::proposals::{cas_of, Batcher, Proposals};
use super::read_index::ReadIndex;
use super::starved::{apply_when_stored, until_stored};
use super::{Kv, KvError};
use crate::replica::{ForwardHandler, Node};

mod operator;
mod reads;
mod runs;

openraft::declare_raft_types!(
    /// The group's Raft types: proposals in, answers out.
    pub KvRaft:
        D = Proposals,
        R = Vec<Applied>,
);

/// How many answers the state machine remembers for retried proposals.
const REMEMBERED: usize = 100_000;

/// The applied position is saved at most this often while entries apply
/// (and whenever the membership changes or a snapshot is built). Saving
/// first hands the write-behind queue to sled, and doing that after every
/// entry put it on every write's path; a position saved a little late only
/// means a few more entries applied again after a crash, which re-applying
/// tolerates (see the module doc).
const SAVE_EVERY: Duration = Duration::from_millis(50);

/// The position a node's items are at, saved with them.
#[derive(Default, Serialize, Deserialize)]
struct Position {
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

#[derive(Default)]
struct State {
    position: Position,
    answers: HashMap<(u64, u64), Applied>,
    order: VecDeque<(u64, u64)>,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
    /// When the position was last saved.
    saved_at: Option<std::time::Instant>,
}

impl State {
    fn remember(&mut self, id: (u64, u64), answer: &Applied) {
        if self.answers.insert(id, answer.clone()).is_none() {
            self.order.push_back(id);
            if self.order.len() > REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.answers.remove(&old);
                }
            }
        }
    }
}

/// The items of a snapshot: every record as stored.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Applies committed entries to the store through [`Kv`]. Clones share
/// their state (openraft builds snapshots from a clone).
#[derive(Clone)]
pub struct StateMachine {
    kv: Weak<Kv>,
    state: Arc<Mutex<State>>,
    /// This process's proposer id: entries it proposed are counted in
    /// `stats` here, others' only where they were proposed.
    proposer: u64,
}

pub(super) fn io_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

impl StateMachine {
    fn new(kv: &Arc<Kv>, proposer: u64) -> Result<Self, KvError> {
        let position = match kv.store.replica_state()? {
            Some(bytes) => postcard::from_bytes(&bytes)
                .map_err(|_| KvError::Replica("the saved replication state is unreadable"))?,
            None => Position::default(),
        };
        Ok(StateMachine {
            proposer,
            kv: Arc::downgrade(kv),
            state: Arc::new(Mutex::new(State {
                position,
                ..State::default()
            })),
        })
    }

    fn kv(&self) -> Result<Arc<Kv>, StorageError<u64>> {
        self.kv
            .upgrade()
            .ok_or_else(|| io_err("the server is shutting down"))
    }

    fn save(&self, kv: &Kv, state: &State) -> Result<(), StorageError<u64>> {
        let bytes = postcard::to_allocvec(&state.position).map_err(io_err)?;
        kv.store.save_replica_state(&bytes).map_err(io_err)
    }

    /// [`StateMachine::save`] after applying, waiting out a disk fault as
    /// [`apply_when_stored`] does; other errors stop Raft on this node.
    async fn save_when_stored(&self, kv: &Kv) -> Result<(), StorageError<u64>> {
        let bytes = {
            let mut s = self.state.lock();
            s.saved_at = Some(std::time::Instant::now());
            postcard::to_allocvec(&s.position).map_err(io_err)?
        };
        until_stored("saving the applied position", || {
            kv.store.save_replica_state(&bytes)
        })
        .await
    }
}

impl RaftSnapshotBuilder<KvRaft> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<KvRaft>, StorageError<u64>> {
        let kv = self.kv()?;
        let (applied, membership) = {
            let s = self.state.lock();
            (s.position.applied, s.position.membership.clone())
        };
        // Items written by entries after `applied` may be in it too; they
        // are applied again after an install, which skips them (CAS rule).
        let records = kv.raw_records().map_err(io_err)?;
        let data = postcard::to_allocvec(&SnapshotData { records }).map_err(io_err)?;
        // openraft purges the log up to this snapshot next, and the snapshot
        // itself lives in memory only: make the items and the applied
        // position durable first, or a crash could restart this node from a
        // disk image older than the log it still has.
        self.save_when_stored(&kv).await?;
        until_stored("syncing the store before a snapshot", || kv.store.sync()).await?;
        let mut s = self.state.lock();
        s.snapshots_built += 1;
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: format!("{}-{}", applied.map_or(0, |l| l.index), s.snapshots_built),
        };
        s.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<KvRaft> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let s = self.state.lock();
        Ok((s.position.applied, s.position.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Applied>>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<KvRaft>> + Send,
        I::IntoIter: Send,
    {
        let kv = self.kv()?;
        let mut answers = Vec::new();
        let mut membership_changed = false;
        for entry in entries {
            let answer = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Membership(m) => {
                    self.state.lock().position.membership =
                        StoredMembership::new(Some(entry.log_id), m);
                    membership_changed = true;
                    Vec::new()
                }
                EntryPayload::Normal(batch) => {
                    let mut out = Vec::with_capacity(batch.0.len());
                    for (pos, p) in batch.0.into_iter().enumerate() {
                        let remembered = self.state.lock().answers.get(&p.id).cloned();
                        out.push(match remembered {
                            Some(done) => done,
                            None => {
                                let cas = cas_of(entry.log_id.index, pos);
                                let mine = p.id.0 == self.proposer;
                                let answer = apply_when_stored(&kv, cas, &p, mine).await;
                                self.state.lock().remember(p.id, &answer);
                                answer
                            }
                        });
                    }
                    out
                }
            };
            self.state.lock().position.applied = Some(entry.log_id);
            answers.push(answer);
        }
        let due = self
            .state
            .lock()
            .saved_at
            .is_none_or(|at| at.elapsed() >= SAVE_EVERY);
        if due || membership_changed {
            self.save_when_stored(&kv).await?;
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let kv = self.kv()?;
        let data = snapshot.into_inner();
        let decoded: SnapshotData = postcard::from_bytes(&data).map_err(io_err)?;
        kv.replace_records(decoded.records).map_err(io_err)?;
        let mut s = self.state.lock();
        s.position = Position {
            applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        s.snapshot = Some((meta.clone(), data));
        self.save(&kv, &s)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<KvRaft>>, StorageError<u64>> {
        let s = self.state.lock();
        Ok(s.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

/// This node's membership of a group: proposes writes and answers
/// forwarded ones.
pub struct Replicated {
    node: Node<KvRaft>,
    /// Whether reads wait for a read index (see [`Replicated::read_barrier`]).
    linearizable: bool,
    /// This process's proposer id (see [`Proposal::id`]).
    proposer: u64,
    seq: AtomicU64,
    timeout: Duration,
    /// The leader's queue of writes for its next entry.
    batcher: Batcher,
    /// Read-index rounds shared by concurrent reads.
    reads: Arc<ReadIndex>,
    /// The leader's read lease (see [`super::lease`]).
    lease: Lease,
}

/// Why one attempt at a proposal did not get an answer.
enum Attempt {
    /// No leader, a leader change, a peer not answering: try again.
    Retry,
    /// The time for a quorum ran out.
    Expired,
}

impl Replicated {
    /// Starts this node of the group described by `cluster` over `kv`'s
    /// store; returns the router to serve on `--raft-listen`.
    pub async fn start(
        kv: &Arc<Kv>,
        cluster: &crate::config::ClusterConfig,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<(Arc<Self>, axum::Router)> {
        let (Some(id), Some(peers)) = (cluster.node_id, cluster.peers.as_ref()) else {
            anyhow::bail!("--peers needs --node-id and --raft-listen");
        };
        let proposer = fastrand::u64(..);
        let sm = StateMachine::new(kv, proposer)?;
        let fresh = sm.state.lock().position.applied.is_none();
        if fresh && kv.curr_items() > 0 {
            anyhow::bail!(
                "{} holds {} items written by a single-node server; a replicated group starts \
                 from an empty data directory (load the items through the group, e.g. with \
                 the CSV export and PUTs)",
                data_dir.display(),
                kv.curr_items()
            );
        }
        if data_dir.join("raft").join("db").exists() {
            anyhow::bail!(
                "{} holds a Raft log in the sled format of earlier builds; the log is now a \
                 raft-log WAL in raft-log/. Re-form the group from empty data directories \
                 (move the items through the CSV export and PUTs)",
                data_dir.display()
            );
        }
        let dir = data_dir.join("raft-log");
        let node = Node::start(id, peers.0.clone(), cluster.join, &dir, sm).await?;
        let raft = node.raft.clone();
        let restored = node.restored;
        let batcher = Batcher::start(raft.clone(), Arc::downgrade(kv));
        let replicated = Arc::new(Replicated {
            node,
            batcher,
            reads: Arc::default(),
            lease: Lease::default(),
            linearizable: cluster.read_consistency == crate::config::ReadConsistency::Linearizable,
            proposer,
            seq: AtomicU64::new(0),
            timeout: Duration::from_millis(cluster.quorum_timeout_ms.max(1)),
        });
        let weak = Arc::downgrade(&replicated);
        let forward: ForwardHandler = Arc::new(move |body| {
            let weak = weak.clone();
            Box::pin(async move {
                match weak.upgrade() {
                    Some(r) => r.serve_forward(&body).await,
                    None => Err("shutting down".into()),
                }
            })
        });
        Ok((
            replicated.clone(),
            crate::replica::network::router(raft, forward, restored, replicated.timeout),
        ))
    }

    /// This node's view of the group.
    pub fn status(&self) -> crate::replica::Status {
        self.node.status()
    }

    /// True while this node's Raft log waits for disk space.
    pub fn log_starved(&self) -> bool {
        self.node
            .log_starved
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops Raft (at shutdown, before the store closes).
    pub async fn shutdown(&self) {
        // Bounded: a log stuck waiting for its disk (full, or its directory
        // deleted under the server) must not keep the process from exiting.
        let limit = Duration::from_secs(5);
        match tokio::time::timeout(limit, self.node.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("stopping raft: {e}"),
            Err(_) => tracing::warn!("raft did not stop within {limit:?}; exiting anyway"),
        }
    }

    /// Members as `--peers` listed them (id -> Raft address).
    pub fn peers(&self) -> &BTreeMap<u64, String> {
        &self.node.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{ArithOptions, ArithResult};
    use crate::replica::log::LogStore;
    use openraft::testing::{StoreBuilder, Suite};

    /// A fresh log and state machine over a fresh store, for openraft's
    /// own storage suite; the guard keeps the directory and the Kv alive.
    struct Builder;

    impl StoreBuilder<KvRaft, LogStore<KvRaft>, StateMachine, (tempfile::TempDir, Arc<Kv>)>
        for Builder
    {
        async fn build(
            &self,
        ) -> Result<((tempfile::TempDir, Arc<Kv>), LogStore<KvRaft>, StateMachine), StorageError<u64>>
        {
            let dir = tempfile::tempdir().map_err(io_err)?;
            let cfg = crate::config::Config::for_data_dir(dir.path().join("items")).store;
            let kv = Arc::new(Kv::open(&cfg).map_err(io_err)?);
            let log = LogStore::open(&dir.path().join("raft-log")).map_err(io_err)?;
            let sm = StateMachine::new(&kv, 1).map_err(io_err)?;
            Ok(((dir, kv), log, sm))
        }
    }

    #[test]
    fn the_log_and_state_machine_pass_openrafts_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    #[test]
    fn replaying_an_applied_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let kv = Arc::new(Kv::open(&cfg).unwrap());
        let incr = |index| {
            kv.apply_op(
                index,
                1_800_000_000,
                &Op::Arith {
                    key: b"n".to_vec(),
                    delta: 1,
                    incr: true,
                    opts: ArithOptions {
                        vivify: Some((0, 0)),
                        ..ArithOptions::default()
                    },
                },
            )
        };
        incr(5);
        incr(6);
        // A crash made the node apply entry 6 again: skipped.
        assert!(matches!(incr(6), Applied::Nothing));
        let item = kv.peek(b"n").unwrap().unwrap();
        assert_eq!((item.value(), item.cas()), (&b"1"[..], 6));
        assert!(matches!(
            incr(7),
            Applied::Arith(ArithResult::Value {
                value: 2,
                cas: 7,
                ..
            })
        ));
    }
}
