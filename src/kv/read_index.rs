//! One read index for many concurrent linearizable reads.
//!
//! A read index costs a round of heartbeats to a quorum (and, on a
//! follower, a round trip to the leader). Asked once per read, 50 clients
//! reading at once made 50 rounds at a time and the group read at a tenth
//! of a single node's speed. Here reads share rounds: a read that arrives
//! while no round runs starts one; a read that arrives while a round runs
//! waits for the *next* round, which starts once the running one ends and
//! serves every read that arrived meanwhile. Joining a round already
//! running would not do: that round may have learned its commit point
//! before the read began, and missed a write acknowledged just before it.

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

/// Rounds started and whether one is running.
#[derive(Default)]
struct Rounds {
    started: u64,
    running: bool,
}

/// Shares read-index rounds between concurrent reads.
pub struct ReadIndex {
    rounds: Mutex<Rounds>,
    /// The last round finished: its number and whether it succeeded.
    done: watch::Sender<(u64, bool)>,
}

impl Default for ReadIndex {
    fn default() -> Self {
        ReadIndex {
            rounds: Mutex::new(Rounds::default()),
            done: watch::channel((0, false)).0,
        }
    }
}

impl ReadIndex {
    /// The first round that starts after this call: what a read beginning
    /// now needs. Reads that began together (the keys of one multi-key
    /// `get`) may all pass the same number to [`ReadIndex::wait_from`] and
    /// share one round, as reads arriving together do.
    pub fn next(&self) -> u64 {
        self.rounds.lock().started + 1
    }

    /// Whether a round at or after `need` has finished, and the last one
    /// to finish succeeded: a read from `need` may go ahead without
    /// waiting (checked without suspending, so synchronous callers never
    /// park a thread for a round that is already over).
    pub fn satisfied(&self, need: u64) -> bool {
        let (finished, ok) = *self.done.borrow();
        finished >= need && ok
    }

    /// Rounds started so far (`stats`: `raft_read_index_rounds`).
    pub fn started(&self) -> u64 {
        self.rounds.lock().started
    }

    /// Waits for round `need` (from [`ReadIndex::next`]) or a later one to
    /// finish; `round` makes one (a read index obtained and applied here,
    /// true on success). Returns the last finished round's success: at
    /// once if one at or after `need` has finished already. The read that
    /// starts a round runs it; if that read is cancelled (its time ran
    /// out), the round ends as failed and the reads waiting on it start
    /// another.
    pub async fn wait_from<F, Fut>(self: &Arc<Self>, need: u64, round: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut rx = self.done.subscribe();
        let mut round = Some(round);
        loop {
            let (finished, ok) = *rx.borrow_and_update();
            if finished >= need {
                return ok;
            }
            let number = {
                let mut r = self.rounds.lock();
                if r.running || r.started >= need {
                    None
                } else {
                    r.running = true;
                    r.started += 1;
                    Some(r.started)
                }
            };
            if let Some(number) = number {
                let mut ending = Ending {
                    index: self,
                    number,
                    ok: false,
                };
                if let Some(make) = round.take() {
                    ending.ok = make().await;
                }
                drop(ending);
                continue;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }
}

/// Ends a round when dropped, run to its end or cancelled: no longer
/// running, its outcome published to the reads waiting for it.
struct Ending<'a> {
    index: &'a ReadIndex,
    number: u64,
    ok: bool,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        self.index.rounds.lock().running = false;
        self.index.done.send_replace((self.number, self.ok));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn reads_arriving_during_a_round_share_the_next_one() {
        let ri = Arc::new(ReadIndex::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let (release, gate) = watch::channel(false);
        let round = |rounds: Arc<AtomicU64>, mut gate: watch::Receiver<bool>| {
            move || async move {
                rounds.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                true
            }
        };
        // The first read starts round 1, which waits at the gate.
        let first = tokio::spawn({
            let (ri, r, g) = (ri.clone(), rounds.clone(), gate.clone());
            async move { ri.wait_from(ri.next(), round(r, g)).await }
        });
        while rounds.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Ten reads arrive while it runs: they need round 2, not round 1.
        let later: Vec<_> = (0..10)
            .map(|_| {
                let (ri, r, g) = (ri.clone(), rounds.clone(), gate.clone());
                tokio::spawn(async move { ri.wait_from(ri.next(), round(r, g)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        release.send_replace(true);
        assert!(first.await.unwrap());
        for read in later {
            assert!(read.await.unwrap());
        }
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            2,
            "one shared round for the ten"
        );
    }

    #[tokio::test]
    async fn reads_that_began_together_share_a_finished_round() {
        let ri = Arc::new(ReadIndex::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let round = |rounds: Arc<AtomicU64>| {
            move || async move {
                rounds.fetch_add(1, Ordering::SeqCst);
                true
            }
        };
        // The keys of one command: a point taken before the first read.
        let point = ri.next();
        for _ in 0..100 {
            assert!(ri.wait_from(point, round(rounds.clone())).await);
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 1, "one round for 100 keys");
        assert!(ri.satisfied(point));
        assert!(!ri.satisfied(ri.next()));
        assert_eq!(ri.started(), 1);
        // A read beginning after that round needs a round of its own.
        assert!(ri.wait_from(ri.next(), round(rounds.clone())).await);
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
    }
}
