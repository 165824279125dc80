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
    /// Waits for a round that started after this call; `round` makes one
    /// (a read index obtained and applied here, true on success). Returns
    /// that round's success, or a later round's if several finished
    /// meanwhile. The read that starts a round runs it; if that read is
    /// cancelled (its time ran out), the round ends as failed and the
    /// reads waiting on it start another.
    pub async fn wait<F, Fut>(self: &Arc<Self>, round: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut rx = self.done.subscribe();
        let need = self.rounds.lock().started + 1;
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
            async move { ri.wait(round(r, g)).await }
        });
        while rounds.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Ten reads arrive while it runs: they need round 2, not round 1.
        let later: Vec<_> = (0..10)
            .map(|_| {
                let (ri, r, g) = (ri.clone(), rounds.clone(), gate.clone());
                tokio::spawn(async move { ri.wait(round(r, g)).await })
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
}
