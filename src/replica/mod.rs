//! Raft plumbing for a replicated group, generic over what is replicated:
//! the log on disk ([`log`]), the messages between nodes ([`network`]),
//! and starting a node ([`Node::start`]): forming the group from
//! `--peers` the first time, rejoining it after a restart.
//!
//! openraft does the consensus. What the log carries and how an entry
//! changes the items (the state machine) is the key-value layer's
//! (`kv::replicated`): it proposes client writes here and applies committed
//! entries to the store. This module knows nothing of memcached.

pub mod log;
pub mod members;
pub mod network;
mod ready;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use members::{Change, MemberError};
pub use network::{Config, ForwardHandler, Network, PostError};

/// A running member of a group.
pub struct Node<C: Config> {
    pub raft: Raft<C>,
    pub id: u64,
    /// Every member's Raft address, as `--peers` gave them.
    pub peers: BTreeMap<u64, String>,
    pub network: Network,
    /// True while the log waits for disk space (`log::LogStore::starved`).
    pub log_starved: Arc<std::sync::atomic::AtomicBool>,
    /// The commit index openraft last saved in the log.
    pub committed: Arc<std::sync::atomic::AtomicU64>,
    /// Whether this node restarted as the leader it was (see [`Restored`]).
    pub restored: Restored,
}

/// A leader that restarts before anyone else was elected comes back as the
/// leader of the same term: openraft restores it from the vote on disk and
/// reuses the first entry of its term as the "no-op" a read index must
/// cover. But its commit index and applied position are saved lazily (the
/// log is what is synced), so what it knows as committed after a `kill -9`
/// can be older than writes it acknowledged before: openraft's read index
/// (max of that no-op and the commit index) would let a read miss them.
/// Until it leaves that term, a read index here is at least the last entry
/// of its log at start-up: every write it acknowledged is at or below it,
/// and entries of its own term up to there commit as soon as a quorum has
/// them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Restored {
    /// (term, last log index at start-up) when this node restarts as leader.
    leader: Option<(u64, u64)>,
}

impl Restored {
    /// The least read index that is safe on this node now.
    pub fn floor<C: Config>(&self, raft: &Raft<C>) -> u64 {
        match self.leader {
            Some((term, last)) if raft.metrics().borrow().current_term == term => last,
            _ => 0,
        }
    }
}

/// What `GET /v1/cluster` and `stats` report of a node.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Status {
    pub node_id: u64,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: &'static str,
    pub leader_id: Option<u64>,
    pub term: u64,
    /// The last entry in this node's log.
    pub last_log_index: u64,
    /// The last entry this node knows to be committed (held by a quorum).
    pub commit_index: u64,
    /// The last entry applied to this node's items.
    pub applied_index: u64,
    pub members: Vec<Member>,
    /// The format of the messages between nodes: every node of a group
    /// must speak the same (see docs/replication.md, "Upgrading").
    pub wire_format: u32,
}

/// One member of the group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Member {
    pub id: u64,
    pub raft_addr: String,
    /// false for a learner (receives the log, does not vote).
    pub voter: bool,
}

impl<C: Config> Node<C>
where
    C::D: Serialize + DeserializeOwned,
    C::R: Serialize + DeserializeOwned,
    C::Entry: Serialize + DeserializeOwned,
{
    /// Opens the log in `dir`, starts Raft over `sm`, and on the node with
    /// the smallest id of a group never formed before, forms it with every
    /// peer as a voter (the other nodes wait to hear from it, as etcd's
    /// `--initial-cluster` does). Restarted nodes find their log and vote
    /// on disk and rejoin. With `join` (`--join`) the node never forms a
    /// group: it waits until a member adds it (`POST /v1/cluster/members`).
    pub async fn start<SM: RaftStateMachine<C>>(
        id: u64,
        peers: BTreeMap<u64, String>,
        join: bool,
        dir: &Path,
        sm: SM,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(peers.contains_key(&id), "--node-id {id} is not in --peers");
        let config = openraft::Config {
            cluster_name: "memcached-lite".into(),
            // openraft also uses the heartbeat interval as the timeout of
            // each append (which includes the follower's fdatasync): on a
            // busy 2-core machine 100 ms was too short and a follower
            // could stay unreplicated.
            heartbeat_interval: 250,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            // A snapshot copies every item: not too often.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(50_000),
            max_in_snapshot_log_to_keep: 10_000,
            ..Default::default()
        }
        .validate()?;
        let mut log = log::LogStore::<C>::open(dir)?;
        let log_starved = log.starved();
        let committed = log.committed();
        let restored = restored_leadership(&mut log, id).await?;
        let network = Network::new();
        let raft = Raft::new(id, Arc::new(config), network.clone(), log, sm).await?;
        let first = *peers.keys().next().expect("checked non-empty");
        if !join
            && id == first
            && !raft.is_initialized().await?
            && !any_peer_in_a_group(&network, id, &peers).await
        {
            let members: BTreeMap<u64, BasicNode> = peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            if let Err(e) = raft.initialize(members).await {
                tracing::warn!("forming the group: {e}");
            } else {
                tracing::info!(members = peers.len(), "formed a new replicated group");
            }
        }
        Ok(Node {
            raft,
            id,
            peers,
            network,
            log_starved,
            committed,
            restored,
        })
    }

    /// Whether this node leads now, and its term, as openraft reports them.
    pub fn leads(&self) -> (bool, u64) {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        (
            m.state == ServerState::Leader && m.current_leader == Some(self.id),
            m.current_term,
        )
    }

    /// The current leader, if this node knows one.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// A member's Raft address: from the membership, else from `--peers`.
    pub fn addr_of(&self, id: u64) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .or_else(|| self.peers.get(&id).cloned())
    }

    /// This node's view of the group.
    pub fn status(&self) -> Status {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        Status {
            node_id: self.id,
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            leader_id: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            // Never behind what is applied (a follower learns the commit
            // index with the next append, and may apply from a snapshot).
            commit_index: self
                .committed
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(m.last_applied.map_or(0, |l| l.index)),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            members: members::members_of(m.membership_config.membership()),
            wire_format: network::WIRE_FORMAT,
        }
    }
}

/// Whether openraft will restart this node as the leader it was (a
/// committed vote for itself on disk), and from which log position.
async fn restored_leadership<C: Config>(
    log: &mut log::LogStore<C>,
    id: u64,
) -> anyhow::Result<Restored>
where
    C::D: Serialize + DeserializeOwned,
    C::R: Serialize + DeserializeOwned,
    C::Entry: Serialize + DeserializeOwned,
{
    use openraft::storage::RaftLogStorage;
    let vote = log.read_vote().await?;
    let last = log.get_log_state().await?.last_log_id;
    Ok(Restored {
        leader: match (vote, last) {
            (Some(v), Some(last)) if v.is_committed() && v.leader_id().voted_for() == Some(id) => {
                Some((v.leader_id().get_term(), last.index))
            }
            _ => None,
        },
    })
}

/// Whether a peer answers that it belongs to a group already: then this
/// node lost its data (a wiped volume) and must be caught up by the group,
/// not form a new one. Unreachable peers count as not (a group forming for
/// the first time starts its nodes in any order).
async fn any_peer_in_a_group(network: &Network, me: u64, peers: &BTreeMap<u64, String>) -> bool {
    for (id, addr) in peers.iter().filter(|(id, _)| **id != me) {
        let answer = network
            .post(
                addr,
                "/raft/initialized",
                Vec::new(),
                std::time::Duration::from_secs(1),
            )
            .await;
        if let Ok(bytes) = answer {
            if postcard::from_bytes::<bool>(&bytes) == Ok(true) {
                tracing::info!(peer = id, "peers already form a group: joining it");
                return true;
            }
        }
    }
    false
}
