//! The answers a group's state machine remembers, so that a proposal
//! retried after a leader change is answered, not applied twice.
//!
//! A follower that forwarded a write and got no answer (the leader died
//! after the commit, a timeout) sends it again under the same proposal id.
//! If an entry already applied that id, the state machine answers what it
//! answered then ([`Answers::get`]). That only works if the node applying
//! the retry still knows the answer, and the node may have restarted, or
//! been caught up by a snapshot, in between. So the answers are kept with
//! the items:
//!
//! - saved with the applied position, as a batch of the answers since the
//!   last save ([`Answers::take_save`], `Store::save_replica_state`), after
//!   the items they belong to, and loaded at start ([`Answers::load`]);
//!   entries after the saved position are applied again at start and
//!   remember their answers then;
//! - carried in snapshots ([`Answers::all`], [`Answers::replace`]).
//!
//! Bounded in count ([`REMEMBERED`]) and bytes ([`MAX_BYTES`]): a retry
//! comes within `--quorum-timeout-ms` of its first attempt, and an answer
//! can carry an item (a meta `mg` that touched it), so the oldest go
//! first, in memory and then on disk.

use std::collections::{HashMap, VecDeque};

use super::Applied;

/// How many answers are remembered for retried proposals, at most.
pub const REMEMBERED: usize = 100_000;

/// Bytes of remembered answers, at most (estimated: see [`weight`]).
pub const MAX_BYTES: usize = 64 << 20;

/// A proposal's id: (proposer, sequence).
pub type Id = (u64, u64);

#[derive(Default)]
pub struct Answers {
    by_id: HashMap<Id, Applied>,
    /// Oldest first, with each answer's weight.
    order: VecDeque<(Id, usize)>,
    bytes: usize,
    /// Every remembered answer gets the next serial number: `first` is
    /// the oldest one still remembered, `next` the one after the newest.
    first: u64,
    next: u64,
    /// Remembered since the last save, for the next one.
    unsaved: Vec<(Id, Applied)>,
    /// Saved batches, oldest first: (sequence number, serial after its
    /// last answer). A batch whose answers were all forgotten is dropped.
    saved: VecDeque<(u64, u64)>,
    /// Batches to drop at the next save whatever their answers (a
    /// snapshot replaced them).
    replaced: Vec<u64>,
    next_batch: u64,
}

/// What a save writes: a batch of answers, and batches to drop.
pub struct Save {
    pub batch: Option<(u64, Vec<u8>)>,
    pub drop: Vec<u64>,
}

/// What an answer costs to remember: its slots, and an item it carries.
fn weight(answer: &Applied) -> usize {
    let item = match answer {
        Applied::MetaGot(Some(hit)) => hit.item.raw().len(),
        _ => 0,
    };
    2 * std::mem::size_of::<(Id, Applied)>() + item
}

impl Answers {
    /// The answer applying proposal `id` gave, if it is remembered.
    pub fn get(&self, id: &Id) -> Option<Applied> {
        self.by_id.get(id).cloned()
    }

    /// Remembers the answer to a proposal just applied (saved with the
    /// next [`Answers::take_save`]).
    pub fn remember(&mut self, id: Id, answer: &Applied) {
        if self.insert(id, answer.clone()) {
            self.unsaved.push((id, answer.clone()));
        }
    }

    fn insert(&mut self, id: Id, answer: Applied) -> bool {
        let w = weight(&answer);
        if self.by_id.insert(id, answer).is_some() {
            return false;
        }
        self.order.push_back((id, w));
        self.bytes += w;
        self.next += 1;
        while self.order.len() > REMEMBERED || self.bytes > MAX_BYTES {
            let Some((old, w)) = self.order.pop_front() else {
                break;
            };
            self.by_id.remove(&old);
            self.bytes -= w;
            self.first += 1;
        }
        true
    }

    /// The answers the store kept (`Store::replica_notes`), oldest batch
    /// first.
    pub fn load(batches: Vec<(u64, Vec<u8>)>) -> Result<Self, postcard::Error> {
        let mut answers = Answers::default();
        for (seq, bytes) in batches {
            let batch: Vec<(Id, Applied)> = postcard::from_bytes(&bytes)?;
            for (id, answer) in batch {
                answers.insert(id, answer);
            }
            answers.saved.push_back((seq, answers.next));
            answers.next_batch = seq + 1;
        }
        Ok(answers)
    }

    /// The batch to save with the applied position now (the answers
    /// remembered since the last call) and the saved batches to drop.
    pub fn take_save(&mut self) -> Result<Save, postcard::Error> {
        let batch = if self.unsaved.is_empty() {
            None
        } else {
            let bytes = postcard::to_allocvec(&self.unsaved)?;
            self.unsaved.clear();
            let seq = self.next_batch;
            self.next_batch += 1;
            self.saved.push_back((seq, self.next));
            Some((seq, bytes))
        };
        let mut drop = std::mem::take(&mut self.replaced);
        while let Some(&(seq, end)) = self.saved.front() {
            if end > self.first {
                break;
            }
            drop.push(seq);
            self.saved.pop_front();
        }
        Ok(Save { batch, drop })
    }

    /// Every remembered answer, oldest first (for a snapshot).
    pub fn all(&self) -> Vec<(Id, Applied)> {
        self.order
            .iter()
            .filter_map(|(id, _)| Some((*id, self.by_id.get(id)?.clone())))
            .collect()
    }

    /// Remembers `answers` (a snapshot's) instead of what was remembered;
    /// the next save writes them and drops every batch saved before.
    pub fn replace(&mut self, answers: Vec<(Id, Applied)>) {
        let mut replaced = std::mem::take(&mut self.replaced);
        replaced.extend(self.saved.iter().map(|(seq, _)| *seq));
        *self = Answers {
            replaced,
            next_batch: self.next_batch,
            ..Answers::default()
        };
        for (id, answer) in answers {
            self.remember(id, &answer);
        }
    }

    /// Answers remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::StoreOutcome;

    fn stored() -> Applied {
        Applied::Stored(StoreOutcome::NotStored)
    }

    #[test]
    fn saved_batches_load_back_and_forgotten_ones_are_dropped() {
        let mut a = Answers::default();
        for i in 0..10 {
            a.remember((1, i), &stored());
        }
        let first = a.take_save().unwrap();
        let (seq, bytes) = first.batch.unwrap();
        assert!(first.drop.is_empty());
        assert!(a.take_save().unwrap().batch.is_none(), "nothing new");

        let loaded = Answers::load(vec![(seq, bytes)]).unwrap();
        assert_eq!(loaded.len(), 10);
        assert!(matches!(loaded.get(&(1, 3)), Some(Applied::Stored(_))));
        assert!(loaded.get(&(1, 10)).is_none());

        // Push the first batch's answers out of memory: it goes from disk.
        for i in 0..REMEMBERED as u64 {
            a.remember((2, i), &stored());
        }
        assert!(a.get(&(1, 9)).is_none());
        let next = a.take_save().unwrap();
        assert_eq!(next.drop, vec![seq]);
        assert_eq!(next.batch.unwrap().0, seq + 1);
    }

    #[test]
    fn big_answers_are_bounded_in_bytes() {
        use crate::kv::MetaHit;
        let record = crate::store::Item::encode(0, 0, 1, &[&vec![b'x'; 1 << 20]]);
        let hit = MetaHit {
            item: crate::store::Item::from_raw(record.into()).unwrap(),
            old_exptime: 0,
            fetched: false,
            atime: 0,
            created: false,
            won: false,
            token_sent: false,
            stale: false,
        };
        let mut a = Answers::default();
        for i in 0..200 {
            a.remember((1, i), &Applied::MetaGot(Some(hit.clone())));
        }
        assert!(a.bytes <= MAX_BYTES);
        assert!(a.len() < 70, "{} answers of 1 MiB remembered", a.len());
        assert!(a.get(&(1, 199)).is_some(), "the newest stay");
    }

    #[test]
    fn a_snapshots_answers_replace_the_saved_ones() {
        let mut a = Answers::default();
        a.remember((1, 1), &stored());
        let old = a.take_save().unwrap().batch.unwrap().0;
        a.replace(vec![((3, 1), stored()), ((3, 2), stored())]);
        assert!(a.get(&(1, 1)).is_none());
        assert!(a.get(&(3, 2)).is_some());
        let save = a.take_save().unwrap();
        assert_eq!(save.drop, vec![old]);
        let (seq, bytes) = save.batch.unwrap();
        assert!(seq > old);
        assert_eq!(Answers::load(vec![(seq, bytes)]).unwrap().len(), 2);
    }
}
