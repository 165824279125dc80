//! The leader's read lease: linearizable reads served from the leader's
//! own items without a round of heartbeats per read.
//!
//! A read index ([`super::read_index`]) proves leadership with a quorum
//! round before every read (shared by concurrent reads, still one round
//! trip to the followers and a wait on a busy machine: 0.17x a single
//! node's reads). The lease makes one such proof last a while:
//!
//! - openraft's followers refuse to vote for another candidate for
//!   `election_timeout_max` (2 s here) after the leader's last append or
//!   heartbeat reached them (its `leader_lease`). A read-index round that
//!   *started* at instant `t` and succeeded got answers from a quorum to
//!   messages sent at or after `t`, so no other leader can be elected
//!   before `t + 2 s` by a quorum's clocks.
//! - The lease here ends at `t + LEASE` with `LEASE` half of that, which
//!   leaves a second for clocks running at different rates and for a
//!   process paused between the check and the read (monotonic clocks keep
//!   counting through a `SIGSTOP`, so a paused leader finds its lease over
//!   when it resumes).
//! - The round that took the lease also waited until this node applied
//!   the read index (every write acknowledged before it, its term's first
//!   entry, and a restarted leader's floor); later writes are acknowledged
//!   only after the leader applied them. So a read under the lease sees
//!   every write acknowledged before it began.
//!
//! The lease holds only in the term it was taken and only while this node
//! still calls itself leader. A read that finds less than [`RENEW_BEFORE`]
//! left starts a round in the background, so a steadily read leader never
//! makes a read wait; the first read after a quiet spell takes a round.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a successful read-index round lets the leader read alone.
pub const LEASE: Duration = Duration::from_millis(1000);

/// A read finding less than this left renews the lease in the background.
pub const RENEW_BEFORE: Duration = Duration::from_millis(500);

/// What a read may do under the lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Holds {
    /// Read here, nothing to do.
    Yes,
    /// Read here, and renew the lease (this caller won the renewal).
    YesRenew,
    /// No lease: take a read-index round.
    No,
}

/// The lease: its term and its end, as nanoseconds after `base`.
pub struct Lease {
    base: Instant,
    term: AtomicU64,
    /// 0: no lease.
    until: AtomicU64,
    renewing: AtomicBool,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            base: Instant::now(),
            term: AtomicU64::new(0),
            until: AtomicU64::new(0),
            renewing: AtomicBool::new(false),
        }
    }
}

impl Lease {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// A read-index round that started at `started`, in `term`, succeeded
    /// on the leader.
    pub fn taken(&self, term: u64, started: Instant) {
        let until = self.nanos(started + LEASE).max(1);
        // A newer term replaces the lease; an older round never shortens
        // or moves one of the same term back.
        if self.term.load(Ordering::Acquire) != term {
            self.until.store(0, Ordering::Release);
            self.term.store(term, Ordering::Release);
        }
        self.until.fetch_max(until, Ordering::AcqRel);
    }

    /// Whether a read may be served here now, by a node that is `leader`
    /// in `term` (both as openraft reports them now).
    pub fn holds(&self, leader: bool, term: u64) -> Holds {
        self.holds_at(leader, term, Instant::now())
    }

    fn holds_at(&self, leader: bool, term: u64, now: Instant) -> Holds {
        if !leader || self.term.load(Ordering::Acquire) != term {
            return Holds::No;
        }
        let until = self.until.load(Ordering::Acquire);
        let now = self.nanos(now);
        if until == 0 || now >= until {
            return Holds::No;
        }
        if until - now < RENEW_BEFORE.as_nanos() as u64
            && !self.renewing.swap(true, Ordering::AcqRel)
        {
            return Holds::YesRenew;
        }
        Holds::Yes
    }

    /// A background renewal finished (taken or not).
    pub fn renewed(&self) {
        self.renewing.store(false, Ordering::Release);
    }

    /// Forgets the lease (this node stepped down or failed a round).
    pub fn end(&self) {
        self.until.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_only_in_its_term_while_leading_and_before_its_end() {
        let lease = Lease::default();
        let t = Instant::now();
        assert_eq!(lease.holds_at(true, 1, t), Holds::No, "none taken yet");
        lease.taken(3, t);
        assert_eq!(lease.holds_at(true, 3, t), Holds::Yes);
        assert_eq!(lease.holds_at(false, 3, t), Holds::No, "not leading");
        assert_eq!(lease.holds_at(true, 4, t), Holds::No, "another term");
        assert_eq!(lease.holds_at(true, 3, t + LEASE), Holds::No, "over");
        lease.end();
        assert_eq!(lease.holds_at(true, 3, t), Holds::No, "ended");
    }

    #[test]
    fn one_read_near_the_end_renews_and_the_others_just_read() {
        let lease = Lease::default();
        let t = Instant::now();
        lease.taken(1, t);
        let late = t + LEASE - RENEW_BEFORE + Duration::from_millis(1);
        assert_eq!(lease.holds_at(true, 1, late), Holds::YesRenew);
        assert_eq!(lease.holds_at(true, 1, late), Holds::Yes, "one renewal");
        lease.renewed();
        assert_eq!(lease.holds_at(true, 1, late), Holds::YesRenew);
    }

    #[test]
    fn an_older_round_does_not_shorten_the_lease_and_a_new_term_replaces_it() {
        let lease = Lease::default();
        let t = Instant::now();
        lease.taken(1, t + Duration::from_millis(400));
        lease.taken(1, t);
        let at = t + LEASE + Duration::from_millis(200);
        assert_eq!(lease.holds_at(true, 1, at), Holds::YesRenew, "still held");
        lease.taken(2, t);
        assert_eq!(lease.holds_at(true, 1, t), Holds::No);
        assert_eq!(lease.holds_at(true, 2, at), Holds::No, "term 2's own end");
        assert_eq!(lease.holds_at(true, 2, t), Holds::Yes);
    }
}
