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
//! The applied position is saved after the items (at most every
//! [`SAVE_EVERY`] while entries apply, as a note the write-behind writes
//! after its next hand-over: `Store::note_replica_state`), so after a crash
//! a node may apply again entries whose writes sled already holds; a
//! set or incr finding its key with a CAS at or above its own was
//! applied already and is skipped, and deletes and flushes are
//! idempotent. That is also why a group starts from an empty store.
//!
//! A follower forwards a write to the leader (memcached clients cannot
//! follow redirects). Each proposal has an id (node, sequence): the state
//! machine remembers recent answers by id, with the items and in
//! snapshots (see `answers`), so a forward retried after a leader change
//! is applied once, even by a node restarted meanwhile.

// openraft's storage traits fix the error type (`StorageError`, about
// 200 bytes); the helpers here return it as the traits do.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
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

mod answers;
mod operator;
mod reads;
mod runs;

use answers::Answers;

openraft::declare_raft_types!(
    /// The group's Raft types: proposals in, answers out.
    pub KvRaft:
        D = Proposals,
        R = Vec<Applied>,
);

/// The applied position is noted at most this often while entries apply
/// (and saved at once whenever the membership changes or a snapshot is
/// built). A save must follow the items into sled; the note waits for the
/// write-behind's next hand-over instead of making one on the apply path
/// (see `store::replica`). A position saved a little late only means a
/// few more entries applied again after a crash, which re-applying
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
    answers: Answers,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
    /// When the position was last saved.
    saved_at: Option<std::time::Instant>,
}

/// What [`StateMachine::save`] writes beside the items.
struct Saved {
    /// The applied index the position names (orders saves).
    index: u64,
    position: Vec<u8>,
    answers: answers::Save,
}

impl State {
    /// The position and the answers to save now.
    fn take_save(&mut self) -> Result<Saved, StorageError<u64>> {
        Ok(Saved {
            index: self.position.applied.map_or(0, |l| l.index),
            position: postcard::to_allocvec(&self.position).map_err(io_err)?,
            answers: self.answers.take_save().map_err(io_err)?,
        })
    }
}

/// A snapshot: every record as stored, and the answers remembered for
/// retried proposals (see `answers`).
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    records: Vec<(Vec<u8>, Vec<u8>)>,
    answers: Vec<(answers::Id, Applied)>,
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
        let answers = Answers::load(kv.store.replica_notes()?)
            .map_err(|_| KvError::Replica("the saved answers of the group are unreadable"))?;
        Ok(StateMachine {
            proposer,
            kv: Arc::downgrade(kv),
            state: Arc::new(Mutex::new(State {
                position,
                answers,
                ..State::default()
            })),
        })
    }

    fn kv(&self) -> Result<Arc<Kv>, StorageError<u64>> {
        self.kv
            .upgrade()
            .ok_or_else(|| io_err("the server is shutting down"))
    }

    /// Saves the position and answers at once (after handing the
    /// write-behind queue to sled).
    fn save(&self, kv: &Kv, state: &mut State) -> Result<(), StorageError<u64>> {
        let saved = state.take_save()?;
        Self::write(kv, &saved, true).map_err(io_err)
    }

    /// Writes `saved` beside the items: `at_once` after handing the queue
    /// to sled (a snapshot, a membership change, shutdown), else as a note
    /// the write-behind writes after its next hand-over (see [`SAVE_EVERY`]).
    fn write(kv: &Kv, saved: &Saved, at_once: bool) -> crate::store::Result<()> {
        let batch = saved.answers.batch.as_ref();
        let batch = batch.map(|(seq, bytes)| (*seq, &bytes[..]));
        let (index, state, drop) = (saved.index, &saved.position, &saved.answers.drop);
        if at_once {
            kv.store.save_replica_state(index, state, batch, drop)
        } else {
            kv.store.note_replica_state(index, state, batch, drop)
        }
    }

    /// [`StateMachine::write`] after applying, waiting out a disk fault as
    /// [`apply_when_stored`] does; other errors stop Raft on this node.
    async fn save_when_stored(&self, kv: &Kv, at_once: bool) -> Result<(), StorageError<u64>> {
        let saved = {
            let mut s = self.state.lock();
            s.saved_at = Some(std::time::Instant::now());
            s.take_save()?
        };
        let write = || Self::write(kv, &saved, at_once);
        until_stored("saving the applied position", write).await
    }
}

impl RaftSnapshotBuilder<KvRaft> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<KvRaft>, StorageError<u64>> {
        let kv = self.kv()?;
        let (applied, membership, answers) = {
            let s = self.state.lock();
            let p = &s.position;
            (p.applied, p.membership.clone(), s.answers.all())
        };
        // Items written by entries after `applied` may be in it too; they
        // are applied again after an install, which skips them (CAS rule).
        // The answers are taken first: each belongs to a write these
        // records hold, so an installing node that answers a retry from
        // them (and so skips it) has the write.
        let records = kv.raw_records().map_err(io_err)?;
        let data = postcard::to_allocvec(&SnapshotData { records, answers }).map_err(io_err)?;
        // openraft purges the log up to this snapshot next, and the snapshot
        // itself lives in memory only: make the items and the applied
        // position durable first, or a crash could restart this node from a
        // disk image older than the log it still has.
        self.save_when_stored(&kv, true).await?;
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
                        let remembered = self.state.lock().answers.get(&p.id);
                        out.push(match remembered {
                            Some(done) => done,
                            None => {
                                let cas = cas_of(entry.log_id.index, pos);
                                let mine = p.id.0 == self.proposer;
                                let answer = apply_when_stored(&kv, cas, &p, mine).await;
                                self.state.lock().answers.remember(p.id, &answer);
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
        if membership_changed || due {
            self.save_when_stored(&kv, membership_changed).await?;
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
        s.answers.replace(decoded.answers);
        s.snapshot = Some((meta.clone(), data));
        self.save(&kv, &mut s)
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

/// Refuses a data directory a single-node server wrote (items, and no
/// sign of a group: no applied position, no member mark), and marks a
/// fresh one as a group member's before anything is applied to it.
fn check_data_dir(kv: &Kv, fresh: bool, data_dir: &std::path::Path) -> anyhow::Result<()> {
    if !fresh {
        return Ok(());
    }
    if kv.curr_items() > 0 && !kv.store.is_group_member()? {
        anyhow::bail!(
            "{} holds {} items written by a single-node server; a replicated group starts \
             from an empty data directory (load the items through the group, e.g. with \
             the CSV export and PUTs)",
            data_dir.display(),
            kv.curr_items()
        );
    }
    Ok(kv.store.mark_group_member()?)
}

/// This node's membership of a group: proposes writes and answers
/// forwarded ones.
pub struct Replicated {
    node: Node<KvRaft>,
    /// A handle on the state machine Raft drives, to save its position
    /// once Raft has stopped.
    state_machine: StateMachine,
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
        check_data_dir(kv, fresh, data_dir)?;
        if data_dir.join("raft").join("db").exists() {
            anyhow::bail!(
                "{} holds a Raft log in the sled format of earlier builds; the log is now a \
                 raft-log WAL in raft-log/. Re-form the group from empty data directories \
                 (move the items through the CSV export and PUTs)",
                data_dir.display()
            );
        }
        let dir = data_dir.join("raft-log");
        let state_machine = sm.clone();
        let node = Node::start(id, peers.0.clone(), cluster.join, &dir, sm).await?;
        let raft = node.raft.clone();
        let restored = node.restored;
        let batcher = Batcher::start(raft.clone(), Arc::downgrade(kv));
        let replicated = Arc::new(Replicated {
            node,
            state_machine,
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
            Err(_) => {
                tracing::warn!("raft did not stop within {limit:?}; exiting anyway");
                return;
            }
        }
        // Nothing applies any more: save the last position and answers, so
        // a restart applies no entry again (every answer it gave stays
        // remembered, not only those of the last periodic save).
        let sm = &self.state_machine;
        if let Ok(kv) = sm.kv() {
            if let Err(e) = sm.save(&kv, &mut sm.state.lock()) {
                tracing::warn!("saving the applied position at shutdown: {e}");
            }
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

    /// A node killed after its first items reached the disk but before its
    /// first position did restarts (it marked its store before applying);
    /// a single-node server's data directory is still refused.
    #[tokio::test]
    async fn a_group_member_without_a_position_restarts_but_single_node_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let kv = reopen(&cfg);
        check_data_dir(&kv, true, dir.path()).unwrap();
        // Applied and on disk, the position not yet (as after a kill in
        // that window): the store alone, no state machine save.
        kv.set(crate::kv::StoreMode::Set, b"k", 0, 0, b"v").unwrap();
        kv.store.sync().unwrap();
        drop(kv);
        let kv = reopen(&cfg);
        assert!(StateMachine::new(&kv, 1)
            .unwrap()
            .state
            .lock()
            .position
            .applied
            .is_none());
        assert_eq!(kv.curr_items(), 1);
        check_data_dir(&kv, true, dir.path()).unwrap();
        drop(kv);
        // The same items written by a single node (no mark) are refused.
        let single = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(single.path()).store;
        let kv = reopen(&cfg);
        kv.set(crate::kv::StoreMode::Set, b"k", 0, 0, b"v").unwrap();
        let err = check_data_dir(&kv, true, single.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("written by a single-node server"), "{err}");
        assert!(
            !kv.store.is_group_member().unwrap(),
            "a refused store is not marked"
        );
    }

    #[test]
    fn the_log_and_state_machine_pass_openrafts_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    /// `incr n 1`, creating `n` at 0 if it is missing (answering 0 then).
    fn incr_op() -> Op {
        Op::Arith {
            key: b"n".to_vec(),
            delta: 1,
            incr: true,
            opts: ArithOptions {
                vivify: Some((0, 0)),
                ..ArithOptions::default()
            },
        }
    }

    /// Entry `index` of the log, holding one proposal: [`incr_op`] under
    /// proposal id `id`.
    fn incr_entry(index: u64, id: (u64, u64)) -> Entry<KvRaft> {
        let op = incr_op();
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposals(vec![Proposal {
                now: 1_800_000_000,
                id,
                op,
                victims: Vec::new(),
            }])),
        }
    }

    /// What applying `entry` answered its one proposal, as `incr`'s value.
    async fn apply_incr(sm: &mut StateMachine, entry: Entry<KvRaft>) -> u64 {
        let mut answers = sm.apply([entry]).await.unwrap();
        match answers.pop().and_then(|mut a| a.pop()) {
            Some(Applied::Arith(ArithResult::Value { value, .. })) => value,
            other => panic!("incr answered {other:?}"),
        }
    }

    /// The store in `cfg` opened again after a close: sled releases its
    /// file lock a moment after the last handle drops.
    fn reopen(cfg: &crate::config::StoreConfig) -> Arc<Kv> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Kv::open(cfg) {
                Err(KvError::Store(crate::store::StoreError::Locked(_)))
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => return Arc::new(other.unwrap()),
            }
        }
    }

    fn value_of(kv: &Kv) -> Vec<u8> {
        kv.peek(b"n").unwrap().unwrap().value().to_vec()
    }

    #[tokio::test]
    async fn a_retry_after_a_restart_is_answered_not_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let retried = (7, 1);
        {
            let kv = Arc::new(Kv::open(&cfg).unwrap());
            let mut sm = StateMachine::new(&kv, 1).unwrap();
            assert_eq!(apply_incr(&mut sm, incr_entry(5, retried)).await, 0);
        }
        // The node restarted; the forwarder retries (a new entry, same id).
        let kv = reopen(&cfg);
        let mut sm = StateMachine::new(&kv, 2).unwrap();
        assert_eq!(apply_incr(&mut sm, incr_entry(6, retried)).await, 0);
        assert_eq!(value_of(&kv), b"0", "the retried incr applied twice");
        assert_eq!(apply_incr(&mut sm, incr_entry(7, (7, 2))).await, 1);
    }

    #[tokio::test]
    async fn a_node_caught_up_by_snapshot_answers_retries_from_it() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let kv =
            |d: &tempfile::TempDir| reopen(&crate::config::Config::for_data_dir(d.path()).store);
        let (kv_a, kv_b) = (kv(&a), kv(&b));
        let mut sm_a = StateMachine::new(&kv_a, 1).unwrap();
        assert_eq!(apply_incr(&mut sm_a, incr_entry(5, (7, 1))).await, 0);
        let snapshot = sm_a.build_snapshot().await.unwrap();
        let mut sm_b = StateMachine::new(&kv_b, 2).unwrap();
        sm_b.install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(apply_incr(&mut sm_b, incr_entry(6, (7, 1))).await, 0);
        assert_eq!(value_of(&kv_b), b"0", "the retried incr applied twice");
        drop(sm_b);
        // And it keeps them across its own restart.
        drop(kv_b);
        let kv_b = kv(&b);
        let mut sm_b = StateMachine::new(&kv_b, 3).unwrap();
        assert_eq!(apply_incr(&mut sm_b, incr_entry(7, (7, 1))).await, 0);
        assert_eq!(value_of(&kv_b), b"0");
    }

    #[test]
    fn replaying_an_applied_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let kv = Arc::new(Kv::open(&cfg).unwrap());
        let incr = |index| kv.apply_op(index, 1_800_000_000, &incr_op());
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
