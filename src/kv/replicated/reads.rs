//! Reads in a group: whether a read may be served from this node's items
//! now (the leader's lease, see `kv::lease`), and otherwise the read-index
//! round that makes it linearizable (shared by concurrent reads, see
//! `kv::read_index`).

use std::sync::Arc;
use std::time::Duration;

use super::super::lease::Holds;
use super::{KvError, Replicated};

impl Replicated {
    /// Whether reads go through [`Replicated::read_barrier`].
    pub fn linearizable_reads(&self) -> bool {
        self.linearizable
    }

    /// Whether a linearizable read may be served from this node's items
    /// right now without a read-index round: it leads under a lease (see
    /// [`super::lease`]). A read near the lease's end renews it in the
    /// background.
    pub fn read_under_lease(self: &Arc<Self>) -> bool {
        let (leader, term) = self.node.leads();
        match self.lease.holds(leader, term) {
            Holds::No => false,
            Holds::Yes => true,
            Holds::YesRenew => {
                let this = self.clone();
                let renew = async move {
                    let _ = this.read_barrier().await;
                    this.lease.renewed();
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => drop(h.spawn(renew)),
                    Err(_) => self.lease.renewed(),
                }
                true
            }
        }
    }

    /// Waits until a read here sees every write acknowledged before this
    /// call: the leader confirms with a quorum that it still leads and
    /// names its commit point (a read index), and this node waits until it
    /// has applied that far. Concurrent reads share one such round (see
    /// [`ReadIndex`]). `KvError::NoQuorum` after `--quorum-timeout-ms`.
    pub async fn read_barrier(self: &Arc<Self>) -> Result<(), KvError> {
        self.read_barrier_from(self.read_point()).await
    }

    /// The read-index round a read beginning now needs: reads that began
    /// together (one command's keys) pass it to
    /// [`Replicated::read_barrier_from`] and share one round.
    pub fn read_point(&self) -> u64 {
        self.reads.next()
    }

    /// Whether reads from `point` may go ahead now, without a round.
    pub fn read_satisfied(&self, point: u64) -> bool {
        self.reads.satisfied(point)
    }

    /// Read-index rounds this node started (`raft_read_index_rounds`).
    pub fn read_rounds(&self) -> u64 {
        self.reads.started()
    }

    /// [`Replicated::read_barrier`] for reads that began at `point` (from
    /// [`Replicated::read_point`]): returns at once if a round that started
    /// after that point has succeeded. A failed round is retried with a
    /// fresh round.
    pub async fn read_barrier_from(self: &Arc<Self>, point: u64) -> Result<(), KvError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut need = point;
        loop {
            let this = self.clone();
            let round = move || async move { this.read_index_round(deadline).await };
            let waited = self.reads.wait_from(need, round);
            match tokio::time::timeout_at(deadline, waited).await {
                Err(_) => return Err(KvError::NoQuorum),
                Ok(true) => return Ok(()),
                Ok(false) => {}
            }
            let pause = Duration::from_millis(20);
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(KvError::NoQuorum);
            }
            tokio::time::sleep(pause).await;
            need = self.read_point();
        }
    }

    /// One read-index round: this node has applied all the leader had
    /// committed when the round began (false: no leader, or it failed).
    async fn read_index_round(&self, deadline: tokio::time::Instant) -> bool {
        match self.node.leader() {
            Some(leader) if leader == self.node.id => {
                let started = std::time::Instant::now();
                let (_, term) = self.node.leads();
                let ensured =
                    tokio::time::timeout_at(deadline, self.node.raft.ensure_linearizable()).await;
                if !matches!(ensured, Ok(Ok(_))) {
                    self.lease.end();
                    return false;
                }
                // A restarted leader also waits for its floor (see
                // `replica::Restored`).
                let applied = match self.node.restored.floor(&self.node.raft) {
                    0 => true,
                    floor => self.applied_at_least(floor, deadline).await,
                };
                if applied && self.node.leads() == (true, term) {
                    self.lease.taken(term, started);
                }
                applied
            }
            Some(leader) => self.follower_read_index(leader, deadline).await,
            None => false,
        }
    }

    /// Asks the leader for a read index and waits to have applied it.
    async fn follower_read_index(&self, leader: u64, deadline: tokio::time::Instant) -> bool {
        let Some(addr) = self.node.addr_of(leader) else {
            return false;
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(bytes) = self
            .node
            .network
            .post(&addr, "/raft/read-index", Vec::new(), left)
            .await
        else {
            return false;
        };
        let Ok(index) = postcard::from_bytes::<u64>(&bytes) else {
            return false;
        };
        self.applied_at_least(index, deadline).await
    }

    /// Waits until this node has applied `index`; false at the deadline.
    async fn applied_at_least(&self, index: u64, deadline: tokio::time::Instant) -> bool {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.node
            .raft
            .wait(Some(left))
            .applied_index_at_least(Some(index), "a linearizable read")
            .await
            .is_ok()
    }
}
