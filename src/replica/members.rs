//! Changing a group's members while it serves: `POST /v1/cluster/members`
//! and `DELETE /v1/cluster/members/{id}` end here, on any node.
//!
//! Only the leader can change the membership, so a follower hands the
//! change to it over `/raft/members` (as it forwards writes), and retries
//! while there is no leader, up to `--quorum-timeout-ms`. On the leader an
//! addition takes three steps, so that the group never counts a voter that
//! cannot vote yet: the node is added as a learner (it receives the log and
//! the snapshot, but does not count towards a quorum), the leader waits
//! until the learner has caught up, and only then promotes it to voter with
//! a joint-consensus membership change. A node that does not catch up
//! within [`CATCH_UP`] stays a learner: the answer says so, and repeating
//! the same request resumes from there (or a DELETE drops the learner).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Membership, Raft, ServerState};
use serde::{Deserialize, Serialize};

use super::network::Config;
use super::{Member, Node};

/// Longest the leader waits for a new learner to catch up before it
/// answers that the node stays a learner. Below the HTTP API's default
/// request timeout (30 s), so the client hears why rather than a 408.
pub const CATCH_UP: Duration = Duration::from_secs(20);

/// Held by the membership change this node is making as leader (one
/// Raft node per process, so one lock per process).
static CHANGING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A change of the group's members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Add node `id`, reached for Raft at `addr` (`host:port`), as a voter.
    Add { id: u64, addr: String },
    /// Remove node `id`, voter or learner.
    Remove { id: u64 },
}

/// Why a membership change was refused or did not complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MemberError {
    /// The server is a single node, not a member of a group.
    #[error("this server is a single node (started without --peers)")]
    NoGroup,
    #[error("node {0} is already a member of the group")]
    Exists(u64),
    #[error(
        "node {0} is already a learner of the group at {1}; remove it first to change its address"
    )]
    OtherAddress(u64, String),
    #[error("node {0} is not a member of the group")]
    Absent(u64),
    /// A change the group cannot make (removing the last voter).
    #[error("{0}")]
    Refused(String),
    /// No leader, or no quorum to commit the change, within the timeout.
    #[error("no quorum")]
    NoQuorum,
    #[error(
        "node {0} did not catch up within {secs} s; it stays a learner: repeat the request \
         to promote it once it has, or remove it",
        secs = CATCH_UP.as_secs()
    )]
    NotCaughtUp(u64),
    /// Asked a node that does not lead (any more): find the leader again.
    #[error("not the leader")]
    NotLeader,
    /// Another membership change is still being committed.
    #[error("another membership change is in progress")]
    InProgress,
}

/// The members of `membership`, voters and learners, by id.
pub fn members_of(membership: &Membership<u64, BasicNode>) -> Vec<Member> {
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| Member {
            id: *id,
            raft_addr: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

/// What [`check_addr`] accepts, as a regular expression (the OpenAPI
/// document's `pattern` for `raft_addr`): a DNS name or IPv4 address, or
/// an IPv6 address in brackets, then a port from 1 to 65535.
pub const ADDR_PATTERN: &str = r"^(?:[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

/// Checks a member's Raft address against [`ADDR_PATTERN`]: `host:port`,
/// with no scheme, path or whitespace (the address goes into
/// `http://{addr}/raft/..`). An address that passes but names no node
/// (a bad IPv6 literal, an unknown name) is only a learner that never
/// catches up: the addition answers so and the learner can be removed.
pub fn check_addr(addr: &str) -> Result<(), String> {
    let bad = || format!("raft_addr {addr:?}: expected host:port, e.g. 10.0.0.4:7000");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            (2..=45).contains(&v6.len())
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => {
            (1..=253).contains(&host.len())
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        }
    };
    let port_ok = !port.starts_with('0')
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0);
    if !host_ok || !port_ok {
        return Err(bad());
    }
    Ok(())
}

impl<C: Config> Node<C> {
    /// Makes `change` from any node: on the leader directly, elsewhere by
    /// handing it to the leader. While no leader is known (an election),
    /// it retries until `quorum` has passed, then answers `NoQuorum`.
    pub async fn change_members(
        &self,
        change: &Change,
        quorum: Duration,
    ) -> Result<Vec<Member>, MemberError> {
        let deadline = tokio::time::Instant::now() + quorum;
        loop {
            let attempt = match self.leader() {
                Some(leader) if leader == self.id => on_leader(&self.raft, change, quorum).await,
                Some(leader) => self.forward_change(leader, change, quorum).await,
                None => Err(MemberError::NotLeader),
            };
            let why = match attempt {
                Err(e @ (MemberError::NotLeader | MemberError::InProgress)) => e,
                done => return done,
            };
            let pause = Duration::from_millis(50);
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(match why {
                    MemberError::InProgress => why,
                    _ => MemberError::NoQuorum,
                });
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Hands `change` to the leader and waits for its answer (which may
    /// take the learner's catch-up).
    async fn forward_change(
        &self,
        leader: u64,
        change: &Change,
        quorum: Duration,
    ) -> Result<Vec<Member>, MemberError> {
        let Some(addr) = self.addr_of(leader) else {
            return Err(MemberError::NotLeader);
        };
        let body = postcard::to_allocvec(change).map_err(|_| MemberError::NotLeader)?;
        let patience = quorum * 3 + CATCH_UP + Duration::from_secs(5);
        match self
            .network
            .post(&addr, "/raft/members", body, patience)
            .await
        {
            Ok(bytes) => postcard::from_bytes(&bytes).unwrap_or_else(|e| {
                tracing::warn!(leader, "unreadable answer to a membership change: {e}");
                Err(MemberError::NotLeader)
            }),
            Err(e) => {
                tracing::debug!(leader, "forwarding a membership change: {e}");
                Err(MemberError::NotLeader)
            }
        }
    }
}

/// Makes `change` on this node, which must lead; each step that needs a
/// quorum gets `quorum` to commit.
pub async fn on_leader<C: Config>(
    raft: &Raft<C>,
    change: &Change,
    quorum: Duration,
) -> Result<Vec<Member>, MemberError> {
    // One change at a time, each deciding on the membership the one before
    // left: a second waits for the first (which may wait for a learner to
    // catch up) rather than failing as in progress.
    let _one_at_a_time = CHANGING.lock().await;
    let (leads, membership) = {
        let m = raft.metrics();
        let m = m.borrow();
        (
            m.state == ServerState::Leader,
            m.membership_config.membership().clone(),
        )
    };
    if !leads {
        return Err(MemberError::NotLeader);
    }
    let is_voter = |id: u64| membership.voter_ids().any(|v| v == id);
    let changed = match change {
        Change::Add { id, addr } => {
            let id = *id;
            match membership.get_node(&id) {
                Some(_) if is_voter(id) => return Err(MemberError::Exists(id)),
                Some(node) if node.addr != *addr => {
                    return Err(MemberError::OtherAddress(id, node.addr.clone()))
                }
                // A learner at this address: an earlier request added it
                // and it had not caught up; carry on from there.
                Some(_) => {}
                None => {
                    let learner = BasicNode::new(addr);
                    committed(quorum, raft.add_learner(id, learner, false)).await?;
                    tracing::info!(node = id, %addr, "added a learner");
                }
            }
            caught_up(raft, id).await?;
            let promote = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
            let done = committed(quorum * 2, raft.change_membership(promote, false)).await?;
            tracing::info!(node = id, "promoted to voter");
            done
        }
        Change::Remove { id } => {
            let id = *id;
            if membership.get_node(&id).is_none() {
                return Err(MemberError::Absent(id));
            }
            let changes = if is_voter(id) {
                if membership.voter_ids().all(|v| v == id) {
                    return Err(MemberError::Refused(format!(
                        "node {id} is the group's last voter; a group cannot remove it"
                    )));
                }
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            };
            let done = committed(quorum * 2, raft.change_membership(changes, false)).await?;
            tracing::info!(node = id, "removed from the group");
            done
        }
    };
    Ok(match changed {
        Some(m) => members_of(&m),
        None => members_of(raft.metrics().borrow().membership_config.membership()),
    })
}

/// Waits up to `limit` for a membership entry to commit; its membership.
async fn committed<C: Config>(
    limit: Duration,
    change: impl std::future::Future<
        Output = Result<
            openraft::raft::ClientWriteResponse<C>,
            RaftError<u64, ClientWriteError<u64, BasicNode>>,
        >,
    >,
) -> Result<Option<Membership<u64, BasicNode>>, MemberError> {
    match tokio::time::timeout(limit, change).await {
        Err(_) => Err(MemberError::NoQuorum),
        Ok(Ok(written)) => Ok(written.membership),
        Ok(Err(RaftError::APIError(e))) => Err(match e {
            ClientWriteError::ForwardToLeader(_) => MemberError::NotLeader,
            ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_)) => {
                MemberError::InProgress
            }
            ClientWriteError::ChangeMembershipError(ChangeMembershipError::LearnerNotFound(l)) => {
                MemberError::Absent(l.node_id)
            }
            ClientWriteError::ChangeMembershipError(other) => {
                MemberError::Refused(other.to_string())
            }
        }),
        Ok(Err(RaftError::Fatal(e))) => {
            tracing::error!("membership change: raft stopped: {e}");
            Err(MemberError::NoQuorum)
        }
    }
}

/// Waits until the leader has replicated to learner `id` everything it
/// had when the learner was added, so promoting it cannot stall commits.
async fn caught_up<C: Config>(raft: &Raft<C>, id: u64) -> Result<(), MemberError> {
    let target = raft.metrics().borrow().last_log_index.unwrap_or(0);
    let matched = |m: &openraft::RaftMetrics<u64, BasicNode>| {
        m.replication
            .as_ref()
            .map(|r| r.get(&id).cloned().flatten().map_or(0, |l| l.index))
    };
    let waited = raft
        .wait(Some(CATCH_UP))
        .metrics(
            // Stop waiting too when this node stops leading (None).
            |m| matched(m).is_none_or(|index| index >= target),
            "a new learner catching up",
        )
        .await;
    match waited {
        Ok(m) if matched(&m).is_some() => Ok(()),
        Ok(_) => Err(MemberError::NotLeader),
        Err(_) => Err(MemberError::NotCaughtUp(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_addresses_are_host_and_port() {
        for good in [
            "127.0.0.1:7004",
            "memcached-lite-3.memcached-lite-headless:7000",
            "[::1]:7000",
        ] {
            assert_eq!(check_addr(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1:",
            ":7000",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            "http://h:7000",
            "h:7000/raft",
            "h 1:7000",
            "a:b:7000",
            "[zz]:7000",
            "h:07000",
            "h:+7000",
        ] {
            assert!(check_addr(bad).is_err(), "{bad}");
        }
    }
}
