//! `--eviction lru` in a replicated group: the leader chooses the victims
//! and the log carries them.
//!
//! On a single node a write over `--max-bytes` evicts the approximately
//! least recently used items there and then. In a group every replica must
//! drop the same keys, but each node's recency differs (reads are served
//! locally), so a replica may not choose: the leader picks victims from its
//! own recency when it proposes a write ([`Kv::choose_victims`]), the entry
//! carries their keys, and every replica removes them before applying the
//! write ([`Kv::evict_listed`]). A replica never evicts on its own; a write
//! that still does not fit gets `SERVER_ERROR out of memory` on every node
//! alike.
//!
//! Writes in flight are accounted for ([`Promised`]): their growth counts
//! against the limit until they are applied, and a key promised as a
//! victim to one proposal is not promised to another, so 50 concurrent
//! writers each get victims of their own.

use std::collections::HashSet;

use parking_lot::Mutex;

use super::entry::Op;
use super::stats::bump;
use super::{Item, Kv, Result};

/// Growth and victims of proposals not applied yet.
#[derive(Default)]
pub(super) struct Promised {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    keys: HashSet<Vec<u8>>,
    /// Bytes the store will grow by once the proposals in flight apply
    /// (their writes minus their victims; may be negative).
    delta: i64,
}

/// What [`Kv::choose_victims`] promised one proposal.
#[derive(Default)]
pub(super) struct Choice {
    pub victims: Vec<Vec<u8>>,
    delta: i64,
}

impl Promised {
    /// The proposal was applied (or will not be): its growth is in the
    /// store's byte count now, or nowhere.
    pub fn release(&self, choice: Choice) {
        let mut p = self.inner.lock();
        p.delta -= choice.delta;
        for key in &choice.victims {
            p.keys.remove(key);
        }
    }
}

/// The most a write can add to the store: its whole new record (an item it
/// replaces is not subtracted, so the estimate errs towards evicting).
fn growth(op: &Op) -> Option<(&[u8], u64)> {
    let grow = |key: &[u8], value_len| Item::footprint(key.len(), Item::record_len(value_len));
    match op {
        Op::Set { key, value, .. } => Some((key, grow(key, value.len()))),
        // A counter's new value: at most 20 digits.
        Op::Arith { key, .. } => Some((key, grow(key, 20))),
        Op::MetaGet { key, opts } if opts.vivify.is_some() => Some((key, grow(key, 0))),
        _ => None,
    }
}

impl Kv {
    /// On the leader, before proposing `op`: victims enough for it to fit
    /// under `--max-bytes` with every write in flight, promised to it.
    pub(super) fn choose_victims(&self, op: &Op, promised: &Promised) -> Result<Choice> {
        let limit = self.memory_limit();
        let Some((key, grow)) = growth(op).filter(|_| limit > 0 && self.store.evicts()) else {
            return Ok(Choice::default());
        };
        let mut p = promised.inner.lock();
        let used = self.store.bytes() as i64 + p.delta + grow as i64;
        let need = used - limit as i64;
        let victims = if need > 0 && grow <= limit {
            self.store
                .lru_victims(need as u64, |k| k == key || p.keys.contains(k))?
        } else {
            Vec::new()
        };
        let freed: u64 = victims.iter().map(|(_, bytes)| bytes).sum();
        let choice = Choice {
            victims: victims.into_iter().map(|(k, _)| k.into_vec()).collect(),
            delta: grow as i64 - freed as i64,
        };
        p.delta += choice.delta;
        p.keys.extend(choice.victims.iter().cloned());
        Ok(choice)
    }

    /// Every replica, applying the write with CAS `cas`: removes the victims its
    /// leader chose. A victim written again by this or a later entry (a
    /// replay after a crash) stays.
    pub(super) fn evict_listed(&self, victims: &[Vec<u8>], cas: u64) -> Result<()> {
        for key in victims {
            let _guard = self.locks.lock(key);
            if let Some(item) = self.store.get(key)? {
                if item.cas() < cas && self.store.remove_if_unchanged(key, &item)? {
                    bump(&self.stats.evictions);
                }
            }
        }
        Ok(())
    }
}
