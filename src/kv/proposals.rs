//! Group commit for a leader's proposals: many client writes, one Raft entry.
//!
//! openraft 0.9 appends each `client_write` as its own entry, and its core
//! waits for that append's `fdatasync` before it takes the next one: one
//! disk sync per client write, one at a time (about 150 writes/s on the
//! bench machine, whatever the number of clients). So the leader queues
//! its writes here, and a task hands everything queued to Raft as one
//! entry ([`Proposals`]) while at most [`IN_FLIGHT`] such entries await
//! their commit: writes that arrive meanwhile wait for the next entry. A
//! write is still answered only after its entry is committed (appended and
//! synced on a majority) and applied.

use std::sync::{Arc, Weak};

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::evict::{Choice, Promised};
use super::replicated::{Applied, KvRaft, Op, Proposal};
use super::Kv;

/// Entries proposed but not yet committed, at most. Two keep the leader's
/// log busy: one entry is appended (synced) while the next fills up.
const IN_FLIGHT: usize = 2;

/// The most writes in one entry; also what a CAS leaves for a write's
/// position in its entry (see [`cas_of`]).
pub const MAX_OPS: usize = 1 << 12;

/// Value bytes in one entry before the next write waits for another one
/// (a single larger write still goes, alone).
const MAX_BYTES: usize = 1 << 20;

/// One Raft entry's payload: the leader's queued writes, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Proposals(pub Vec<Proposal>);

impl std::fmt::Display for Proposals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} proposals", self.0.len())
    }
}

/// The CAS of the write at `pos` in the entry at log index `index`: unique
/// and increasing in log order across the group, decided by the log alone
/// (so the same on every replica). Re-applying a write whose key holds a
/// CAS at or above its own is skipped (see `replicated`).
pub fn cas_of(index: u64, pos: usize) -> u64 {
    debug_assert!(pos < MAX_OPS);
    (index << 12) | pos as u64
}

/// Why a batched write got no answer from this node.
pub enum Refused {
    /// Not the leader (any more), or Raft failed: try again.
    Retry,
}

struct Waiting {
    proposal_id: (u64, u64),
    op: Op,
    answer: oneshot::Sender<Result<Applied, Refused>>,
}

/// Where a queued write's answer arrives.
pub type Answer = oneshot::Receiver<Result<Applied, Refused>>;

/// The leader's proposal queue (on every node: whoever leads uses it).
pub struct Batcher {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl Batcher {
    /// Starts the task that turns queued writes into entries of `raft`;
    /// it ends when the batcher is dropped.
    pub fn start(raft: Raft<KvRaft>, kv: Weak<Kv>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, kv, rx));
        Batcher { queue }
    }

    /// Queues `op` for the next entry (at once: ops queued one after
    /// another are proposed in that order); the receiver gets its answer.
    pub fn queue(&self, proposal_id: (u64, u64), op: Op) -> Result<Answer, Refused> {
        let (answer, rx) = oneshot::channel();
        let waiting = Waiting {
            proposal_id,
            op,
            answer,
        };
        self.queue.send(waiting).map_err(|_| Refused::Retry)?;
        Ok(rx)
    }
}

fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Set { key, value, .. } => key.len() + value.len(),
        Op::Arith { key, .. }
        | Op::Delete { key, .. }
        | Op::Touch { key, .. }
        | Op::MetaGet { key, .. }
        | Op::Invalidate { key, .. } => key.len(),
        Op::FlushAll { .. } => 0,
    }
}

async fn run(raft: Raft<KvRaft>, kv: Weak<Kv>, mut rx: mpsc::UnboundedReceiver<Waiting>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // `--eviction lru` victims and growth of the entries in flight.
    let promised = Arc::new(Promised::default());
    let mut carried: Option<Waiting> = None;
    loop {
        let first = match carried.take() {
            Some(w) => w,
            None => match rx.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        // Writes keep queueing while every slot is taken: the next entry
        // carries them all.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = op_bytes(&first.op);
        let mut batch = vec![first];
        while batch.len() < MAX_OPS {
            let Ok(w) = rx.try_recv() else { break };
            bytes += op_bytes(&w.op);
            if bytes > MAX_BYTES {
                carried = Some(w);
                break;
            }
            batch.push(w);
        }
        let kv = kv.upgrade();
        let now = kv.as_ref().map_or(0, |kv| kv.clock.now());
        let mut choices = Vec::new();
        let (proposals, answers): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|w| {
                let choice = kv.as_ref().map_or_else(Choice::default, |kv| {
                    kv.choose_victims(&w.op, &promised).unwrap_or_else(|e| {
                        tracing::warn!("choosing eviction victims failed: {e}");
                        Choice::default()
                    })
                });
                let p = Proposal {
                    now,
                    id: w.proposal_id,
                    op: w.op,
                    victims: choice.victims.clone(),
                };
                choices.push(choice);
                (p, w.answer)
            })
            .unzip();
        drop(kv);
        let raft = raft.clone();
        let promised = promised.clone();
        tokio::spawn(async move {
            let written = raft.client_write(Proposals(proposals)).await;
            drop(permit);
            // Applied here (openraft answers after the leader applied it),
            // or not at all.
            for choice in choices {
                promised.release(choice);
            }
            match written {
                Ok(w) if w.data.len() == answers.len() => {
                    for (tx, a) in answers.into_iter().zip(w.data) {
                        let _ = tx.send(Ok(a));
                    }
                }
                other => {
                    match other {
                        Ok(w) => tracing::error!(
                            "an entry of {} writes answered {}",
                            answers.len(),
                            w.data.len()
                        ),
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {}
                        Err(e) => tracing::warn!("proposal failed: {e}"),
                    }
                    for tx in answers {
                        let _ = tx.send(Err(Refused::Retry));
                    }
                }
            }
        });
    }
}
