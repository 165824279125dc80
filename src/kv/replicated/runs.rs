//! Proposing writes from any node: on the leader into its batcher's next
//! entry, on a follower forwarded to the leader (memcached clients cannot
//! follow redirects), retried across leader changes until
//! `--quorum-timeout-ms`.
//!
//! A run of writes (a connection's pipelined storage commands) is proposed
//! as one ordered unit, so it shares entries instead of taking one commit
//! round per write: on the leader every write of the run is queued before
//! any is awaited, and a follower forwards the whole run in one request,
//! which the leader queues the same way. The order holds because the
//! batcher's queue is FIFO and entries commit in log order. A retry starts
//! again at the first write that got no answer and proposes it and every
//! later one again in order, under their first ids: the state machine
//! remembers answers by id, so a write that was applied after all is not
//! applied twice, and no later write of the run overtakes an earlier one.

use std::time::Duration;

use tokio::time::Instant;

use super::super::proposals::Refused;
use super::{Applied, Attempt, KvError, Op, Replicated};

/// A proposal's id: (proposer, sequence).
type Id = (u64, u64);

/// The pause before asking again after no leader, or a leader change.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

impl Replicated {
    /// Gets `op` committed and applied through the leader, from any node;
    /// `KvError::NoQuorum` once `--quorum-timeout-ms` has passed.
    pub async fn propose(&self, op: Op) -> Result<Applied, KvError> {
        self.propose_run(vec![op])
            .await
            .pop()
            .expect("one answer per write")
    }

    /// Gets `ops` committed and applied in their order, as one unit (see
    /// the module doc); one answer per op, in order. Writes not answered
    /// by the deadline get `KvError::NoQuorum`.
    pub async fn propose_run(&self, ops: Vec<Op>) -> Vec<Result<Applied, KvError>> {
        let ids: Vec<Id> = ops
            .iter()
            .map(|_| {
                (
                    self.proposer,
                    self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        let deadline = Instant::now() + self.timeout;
        let mut answers = Vec::with_capacity(ops.len());
        while answers.len() < ops.len() {
            let from = answers.len();
            let attempt = match self.node.leader() {
                Some(leader) if leader == self.node.id => {
                    self.write_here(&ids[from..], &ops[from..], deadline).await
                }
                Some(leader) => {
                    self.forward(leader, &ids[from..], &ops[from..], deadline)
                        .await
                }
                None => vec![Err(Attempt::Retry)],
            };
            let mut expired = false;
            for a in attempt {
                match a {
                    Ok(answer) => answers.push(answer.into_result()),
                    Err(Attempt::Expired) => {
                        expired = true;
                        break;
                    }
                    // This one and the rest go again, in order.
                    Err(Attempt::Retry) => break,
                }
            }
            if answers.len() == ops.len() {
                break;
            }
            if expired || Instant::now() + RETRY_PAUSE >= deadline {
                answers.resize_with(ops.len(), || Err(KvError::NoQuorum));
                break;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        answers
    }

    /// Proposes on this node, which believes it leads: every op is queued
    /// for the batcher's next entries, in order, before any is awaited.
    async fn write_here(
        &self,
        ids: &[Id],
        ops: &[Op],
        deadline: Instant,
    ) -> Vec<Result<Applied, Attempt>> {
        let queued: Vec<_> = ids
            .iter()
            .zip(ops)
            .map(|(id, op)| self.batcher.queue(*id, op.clone()))
            .collect();
        let mut answers = Vec::with_capacity(queued.len());
        for q in queued {
            let answer = match q {
                Err(Refused::Retry) => Err(Attempt::Retry),
                Ok(rx) => match tokio::time::timeout_at(deadline, rx).await {
                    Err(_) => Err(Attempt::Expired),
                    Ok(Ok(Ok(answer))) => Ok(answer),
                    Ok(Ok(Err(Refused::Retry)) | Err(_)) => Err(Attempt::Retry),
                },
            };
            answers.push(answer);
        }
        answers
    }

    /// Hands the writes to the leader in one request and waits for their
    /// answers (`None`: not committed there, ask again).
    async fn forward(
        &self,
        leader: u64,
        ids: &[Id],
        ops: &[Op],
        deadline: Instant,
    ) -> Vec<Result<Applied, Attempt>> {
        let retry = || vec![Err(Attempt::Retry)];
        let Some(addr) = self.node.addr_of(leader) else {
            return retry();
        };
        let run: Vec<(Id, &Op)> = ids.iter().copied().zip(ops).collect();
        let Ok(body) = postcard::to_allocvec(&run) else {
            return retry();
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match self
            .node
            .network
            .post(&addr, "/raft/forward", body, left)
            .await
        {
            Ok(bytes) => match postcard::from_bytes::<Vec<Option<Applied>>>(&bytes) {
                Ok(answers) => answers
                    .into_iter()
                    .map(|a| a.ok_or(Attempt::Retry))
                    .collect(),
                Err(_) => retry(),
            },
            Err(e) => {
                tracing::debug!(leader, "forwarding writes: {e}");
                retry()
            }
        }
    }

    /// The leader's side of [`Replicated::forward`].
    pub(super) async fn serve_forward(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let run: Vec<(Id, Op)> = postcard::from_bytes(body).map_err(|e| e.to_string())?;
        let (ids, ops): (Vec<Id>, Vec<Op>) = run.into_iter().unzip();
        let deadline = Instant::now() + self.timeout;
        let answers: Vec<Option<Applied>> = self
            .write_here(&ids, &ops, deadline)
            .await
            .into_iter()
            .map(Result::ok)
            .collect();
        postcard::to_allocvec(&answers).map_err(|e| e.to_string())
    }
}
