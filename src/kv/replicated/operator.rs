//! The operator's side of a group, apart from client traffic: changing
//! its members and whether this node is ready for traffic. Both are the
//! Raft layer's (`replica::members`, `replica::ready`); this node's
//! `--quorum-timeout-ms` bounds each commit of a membership change.

use super::Replicated;
use crate::replica::{Change, Member, MemberError};

impl Replicated {
    /// Adds or removes a member, from any node (a follower hands the
    /// change to the leader).
    pub async fn change_members(&self, change: &Change) -> Result<Vec<Member>, MemberError> {
        self.node.change_members(change, self.timeout).await
    }

    /// Whether this node has a leader and is caught up (`/readyz`).
    pub async fn readiness(&self) -> Result<(), String> {
        self.node.readiness().await
    }
}
