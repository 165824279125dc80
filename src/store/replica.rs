//! What a replicated group's state machine keeps beside the items: its
//! position (the last applied entry and the membership, opaque bytes
//! here) and batches of the answers it remembers for retried proposals.
//!
//! The rule is sled's prefix recovery: written after the items of the
//! entries they name, the position and the answers are never ahead of the
//! items after a crash (the entries after the position are applied again).
//! With the write-behind, the items reach sled late, so a save that
//! settled first (handed the queue to sled) cost the applying task a
//! whole hand-over every time, on the commit path (9% of a leader's CPU,
//! bench/profile.md, session 9). So the periodic saves are *notes*
//! ([`Store::note_replica_state`]): the write-behind thread writes the
//! pending note right after its next hand-over, which covers every write
//! made before the note. The saves that must be on disk at once (a
//! snapshot, a membership change, shutdown) still settle first
//! ([`Store::save_replica_state`]). A position is never overwritten by an
//! older one: the one written last is remembered, so a note that waited
//! through a newer save keeps only its answers.

use parking_lot::Mutex;

use super::{Result, Store};

/// Where the position is kept.
const META_REPLICA: &[u8] = b"replica_state";

/// Present once a group's node has started on this store (see
/// [`Store::mark_group_member`]).
const META_GROUP_MEMBER: &[u8] = b"group_member";

/// Prefix of the answer batches' keys: the prefix, then the batch's
/// sequence number big-endian (so they scan in order).
const META_NOTES: &[u8] = b"replica_notes/";

fn note_key(seq: u64) -> Vec<u8> {
    [META_NOTES, &seq.to_be_bytes()].concat()
}

fn note_seq(key: &[u8]) -> Option<u64> {
    let seq = key.strip_prefix(META_NOTES)?;
    Some(u64::from_be_bytes(seq.try_into().ok()?))
}

/// A save: the position at applied index `index`, answer batches to keep,
/// batches to drop.
#[derive(Default)]
pub struct Note {
    index: u64,
    state: Option<Vec<u8>>,
    batches: Vec<(u64, Vec<u8>)>,
    drop: Vec<u64>,
}

impl Note {
    fn new(index: u64, state: &[u8], batch: Option<(u64, &[u8])>, drop: &[u64]) -> Note {
        Note {
            index,
            state: Some(state.to_vec()),
            batches: batch
                .map(|(seq, b)| (seq, b.to_vec()))
                .into_iter()
                .collect(),
            drop: drop.to_vec(),
        }
    }

    /// Folds a newer note into this one.
    fn merge(&mut self, newer: Note) {
        if newer.state.is_some() && newer.index >= self.index {
            self.index = newer.index;
            self.state = newer.state;
        }
        self.batches.extend(newer.batches);
        self.drop.extend(newer.drop);
    }

    fn is_empty(&self) -> bool {
        self.state.is_none() && self.batches.is_empty() && self.drop.is_empty()
    }
}

/// The note waiting for the write-behind, and the last position written.
#[derive(Default)]
pub struct Notes {
    pending: Mutex<Note>,
    /// Index of the position written last; held while writing.
    written: Mutex<u64>,
}

impl Notes {
    /// The pending note, to write once the items it covers are in sled.
    pub fn take(&self) -> Note {
        std::mem::take(&mut *self.pending.lock())
    }

    /// A taken note that could not be written: pending again, under any
    /// newer one.
    pub fn put_back(&self, mut older: Note) {
        let mut pending = self.pending.lock();
        older.merge(std::mem::take(&mut *pending));
        *pending = older;
    }

    fn add(&self, note: Note) {
        self.pending.lock().merge(note);
    }

    /// Writes `note` into `meta` as one batch (all or nothing): its
    /// answer batches and drops, and its position unless a newer one was
    /// written. The caller has handed the items it covers to sled.
    pub fn write(&self, meta: &sled::Tree, note: &Note) -> sled::Result<()> {
        if note.is_empty() {
            return Ok(());
        }
        let mut written = self.written.lock();
        let mut batch = sled::Batch::default();
        for (seq, bytes) in &note.batches {
            batch.insert(note_key(*seq), &bytes[..]);
        }
        // After the inserts: a batch noted and dropped since is gone.
        for &seq in &note.drop {
            batch.remove(note_key(seq));
        }
        let newer = note.state.as_ref().filter(|_| note.index >= *written);
        if let Some(state) = newer {
            batch.insert(META_REPLICA, &state[..]);
        }
        meta.apply_batch(batch)?;
        if newer.is_some() {
            *written = note.index;
        }
        Ok(())
    }
}

impl Store {
    /// Saves the state machine's position (`state`, at applied index
    /// `index`) now, with a batch of answers (`batch`: sequence number,
    /// bytes) and the answer batches to `drop`, after handing every queued
    /// write to sled (see the module doc); pending notes go with it.
    pub fn save_replica_state(
        &self,
        index: u64,
        state: &[u8],
        batch: Option<(u64, &[u8])>,
        drop: &[u64],
    ) -> Result<()> {
        let mut note = self.notes.take();
        note.merge(Note::new(index, state, batch, drop));
        let written = self
            .settle()
            .and_then(|()| Ok(self.notes.write(&self.meta, &note)?));
        if written.is_err() {
            self.notes.put_back(note);
        }
        written
    }

    /// [`Store::save_replica_state`] without waiting: with the write-behind
    /// the note is written after its next hand-over (within
    /// `--flush-interval-ms`); without, now (sled has the items already).
    pub fn note_replica_state(
        &self,
        index: u64,
        state: &[u8],
        batch: Option<(u64, &[u8])>,
        drop: &[u64],
    ) -> Result<()> {
        let note = Note::new(index, state, batch, drop);
        if self.behind.is_some() {
            self.notes.add(note);
            return Ok(());
        }
        Ok(self.notes.write(&self.meta, &note)?)
    }

    /// Records, durably, that this store belongs to a group's node, before
    /// the node applies anything. A node killed after the write-behind
    /// made an item durable but before its first position was (the
    /// position is saved after the items it covers, and a concurrent
    /// hand-over may flush the items first) restarts with items and no
    /// position; this mark tells that apart from a single-node server's
    /// data directory, which a group must not start on. Its items are
    /// then applied again from the log (the CAS rule skips them): no
    /// snapshot can have purged the log yet, since building one saves the
    /// position and syncs first.
    pub fn mark_group_member(&self) -> Result<()> {
        if self.meta.contains_key(META_GROUP_MEMBER)? {
            return Ok(());
        }
        self.meta.insert(META_GROUP_MEMBER, &[1])?;
        self.sync()
    }

    /// Whether [`Store::mark_group_member`] ran on this store.
    pub fn is_group_member(&self) -> Result<bool> {
        Ok(self.meta.contains_key(META_GROUP_MEMBER)?)
    }

    /// The position saved last, if any.
    pub fn replica_state(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(META_REPLICA)?.map(|v| v.to_vec()))
    }

    /// The answer batches kept, by sequence number, oldest first.
    pub fn replica_notes(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut notes = Vec::new();
        for kv in self.meta.scan_prefix(META_NOTES) {
            let (key, value) = kv?;
            if let Some(seq) = note_seq(&key) {
                notes.push((seq, value.to_vec()));
            }
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_written_after_the_next_hand_over_and_never_over_a_newer_save() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::for_data_dir(dir.path()).store;
        // Only the close hands anything over.
        cfg.flush_interval_ms = 3_600_000;
        {
            let s = Store::open(&cfg).unwrap();
            s.insert(b"k", super::super::Item::encode(0, 0, 1, &[b"v"]))
                .unwrap();
            s.note_replica_state(5, b"at 5", Some((0, b"answers 0")), &[])
                .unwrap();
            assert_eq!(s.replica_state().unwrap(), None, "not before a hand-over");
            // A save settles and writes at once, with the pending note's
            // answers; an older note after it keeps its answers only.
            s.save_replica_state(9, b"at 9", None, &[]).unwrap();
            assert_eq!(s.replica_state().unwrap().as_deref(), Some(&b"at 9"[..]));
            s.note_replica_state(7, b"at 7", Some((1, b"answers 1")), &[0])
                .unwrap();
        }
        let s = super::super::testkit::reopen(&cfg);
        assert_eq!(s.replica_state().unwrap().as_deref(), Some(&b"at 9"[..]));
        assert_eq!(s.replica_notes().unwrap(), vec![(1, b"answers 1".to_vec())]);
        assert!(s.get(b"k").unwrap().is_some());
    }
}
