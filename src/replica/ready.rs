//! Whether a member of a group should get client traffic (`/readyz`): it
//! knows a leader, and its items are caught up with the leader's. A
//! Kubernetes rolling restart moves to the next pod only once this one is
//! ready, so a restarted node that is still replaying or receiving a
//! snapshot never lets a second node go down while the group depends on it.

use std::time::Duration;

use openraft::ServerState;

use super::network::Config;
use super::Node;

/// How many entries a ready follower may be behind the leader's applied
/// index: a busy group keeps followers a few batches behind; a node still
/// catching up after a restart is thousands behind.
pub const READY_MAX_LAG: u64 = 1000;

/// A leader that has not heard from a quorum for this long is probably cut
/// off from its group (it steps down after an election timeout, 1-2 s).
const STALE_LEADER_MS: u64 = 3000;

impl<C: Config> Node<C> {
    /// `Ok` when this node has a leader and has applied within
    /// [`READY_MAX_LAG`] entries of it; otherwise why not, in words.
    pub async fn readiness(&self) -> Result<(), String> {
        let (leader, state, applied, quorum_ack, member) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (
                m.current_leader,
                m.state,
                m.last_applied.map_or(0, |l| l.index),
                m.millis_since_quorum_ack,
                m.membership_config
                    .membership()
                    .get_node(&self.id)
                    .is_some(),
            )
        };
        if !member {
            return Err("not a member of a group yet (waiting to be added)".into());
        }
        let Some(leader) = leader else {
            return Err("no leader".into());
        };
        if leader == self.id {
            return match (state, quorum_ack) {
                (ServerState::Leader, Some(ms)) if ms < STALE_LEADER_MS => Ok(()),
                _ => Err("leader without a recent quorum".into()),
            };
        }
        let addr = self
            .addr_of(leader)
            .ok_or_else(|| format!("leader {leader} has no known address"))?;
        let bytes = self
            .network
            .post(&addr, "/raft/applied", Vec::new(), Duration::from_secs(2))
            .await
            .map_err(|e| {
                tracing::debug!(leader, "readiness: asking the leader: {e}");
                format!("leader {leader} does not answer")
            })?;
        let leader_applied: u64 = postcard::from_bytes(&bytes)
            .map_err(|_| format!("leader {leader} answered something unreadable"))?;
        if leader_applied > applied + READY_MAX_LAG {
            return Err(format!(
                "catching up: applied {applied} of the leader's {leader_applied}"
            ));
        }
        Ok(())
    }
}
