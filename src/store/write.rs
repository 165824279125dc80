//! The write path: every change to an item, and the bulk load.
//!
//! Each single-key change goes through [`Store::write`], which changes the
//! memory index under the key's shard lock and queues sled's part for the
//! write-behind (see [`super::behind`]), or, without the index or with too
//! much queued, writes sled directly; then [`Store::account`] books it.
//! The conditional forms (`*_if_unchanged`) let writers that hold no key
//! lock (sweeper, clear, eviction, access bookkeeping) change an item only
//! if nobody else did meanwhile.

use std::sync::atomic::Ordering;

use super::index::Found;
use super::item::Raw;
use super::{Item, Result, Store, StoreError};

impl Store {
    /// Writes an encoded record (see [`Item::encode`]); returns the record
    /// it replaced, expired or not. Read-modify-write callers also hold the
    /// key's lock.
    pub fn insert(&self, key: &[u8], record: Vec<u8>) -> Result<Option<Raw>> {
        let new_size = Item::footprint(key.len(), record.len());
        self.note_expiry(&record);
        let old = self.write(key, Some(&record), None)?.unwrap_or_default();
        self.account(key, old.as_deref(), Some(new_size));
        Ok(old)
    }

    /// Removes `key`, returning what was there.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Item>> {
        let old = self.write(key, None, None)?.unwrap_or_default();
        self.account(key, old.as_deref(), None);
        match old {
            Some(raw) => Ok(Some(Item::from_raw(raw)?)),
            None => Ok(None),
        }
    }

    /// Removes `key` only if it still holds exactly `item` (used by the
    /// sweeper, which runs without the key lock).
    pub fn remove_if_unchanged(&self, key: &[u8], item: &Item) -> Result<bool> {
        let done = self.write(key, None, Some(item.raw()))?.is_some();
        if done {
            self.account(key, Some(item.raw()), None);
        }
        Ok(done)
    }

    /// Replaces `key`'s record only if it still holds exactly `item`
    /// (lock-free bookkeeping writes such as access tracking on reads).
    pub fn replace_if_unchanged(&self, key: &[u8], item: &Item, record: Vec<u8>) -> Result<bool> {
        let new_size = Item::footprint(key.len(), record.len());
        self.note_expiry(&record);
        let done = self.write(key, Some(&record), Some(item.raw()))?.is_some();
        if done {
            self.account(key, Some(item.raw()), Some(new_size));
        }
        Ok(done)
    }

    /// Sets `key` to `new` (`None` removes it); with `expect`, only if the
    /// key holds exactly that record now. Returns the record it replaced,
    /// or `None` if `expect` did not match.
    ///
    /// With the index, the index changes under the key's shard lock and
    /// sled's part is queued for the write-behind (see [`super::behind`]),
    /// or, if too much is queued, done under the same lock.
    ///
    /// Refused while the disk is full or failing ([`super::fault`]): the
    /// check comes first, so a refused write changes nothing. A write that
    /// changed something gets the next write generation (under the shard
    /// lock with the index, so the committer's rounds see it queued), and
    /// in sync mode a journal entry (see [`super::undo`]), all under the
    /// journal's gate.
    fn write(
        &self,
        key: &[u8],
        new: Option<&[u8]>,
        expect: Option<&[u8]>,
    ) -> Result<Option<Option<Raw>>> {
        let _gate = self.journal.as_ref().map(|j| j.gate());
        if let Err(fault) = self.health.check() {
            return Err(StoreError::Refused(fault));
        }
        let Some(ix) = &self.index else {
            let done = match expect {
                None => Some(
                    match new {
                        Some(r) => self.items.insert(key, r),
                        None => self.items.remove(key),
                    }
                    .map_err(|e| self.sled_failed(e))?
                    .map(Raw::Sled),
                ),
                Some(e) => self
                    .items
                    .compare_and_swap(key, Some(e), new)
                    .map_err(|e| self.sled_failed(e))?
                    .ok()
                    .map(|()| Some(e.to_vec().into())),
            };
            if let Some(old) = &done {
                self.written_one(key, old, new);
            }
            return Ok(done);
        };
        let mut shard = ix.lock(key);
        let old = match shard.current() {
            Found::Record(r) => Some(r),
            Found::Absent => None,
            // Not loaded yet and not written since start (any write leaves
            // a slot until loading ends), so sled is current for this key.
            Found::Unknown => self.items.get(key)?.map(Raw::Sled),
        };
        if expect.is_some_and(|e| old.as_deref() != Some(e)) {
            return Ok(None);
        }
        match &self.behind {
            Some(b) if !b.is_backlogged() => shard.set_unsaved(new),
            _ => match new {
                Some(r) => {
                    self.items.insert(key, r).map_err(|e| self.sled_failed(e))?;
                    shard.set(r);
                }
                None => {
                    self.items.remove(key).map_err(|e| self.sled_failed(e))?;
                    shard.remove();
                }
            },
        }
        self.written_one(key, &old, new);
        drop(shard);
        Ok(Some(old))
    }

    /// Books a write that replaced `old` with `new` (`None`: removed it):
    /// the next generation (with the key's new state in the write-ahead
    /// log, in sync mode with the index), the writer's own-writes range,
    /// the journal entry.
    fn written_one(&self, key: &[u8], old: &Option<Raw>, new: Option<&[u8]>) {
        if old.is_none() && new.is_none() {
            return; // removing nothing changed nothing
        }
        let gen = match &self.wal {
            Some(wal) => wal.log(&self.written, key, new),
            None => self.written.fetch_add(1, Ordering::AcqRel) + 1,
        };
        super::fault::note_own_write(gen);
        if let Some(j) = &self.journal {
            j.record(gen, key, old.clone());
        }
    }

    /// A sled write failed: that is a storage fault too (sled keeps a
    /// failed log write's error until a restart, see [`super::fault`]).
    fn sled_failed(&self, e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(e) => {
                self.health
                    .failed(super::fault::Rounds::Sled, "writing to sled", &e);
                StoreError::Io(e)
            }
            other => StoreError::Sled(other),
        }
    }

    /// Remembers that a record with an exptime exists (before it is
    /// written, so a sweep pass starting later sees the flag).
    pub(super) fn note_expiry(&self, record: &[u8]) {
        if !self.may_expire.load(Ordering::Relaxed) && Item::record_exptime(record) != 0 {
            self.may_expire.store(true, Ordering::Release);
        }
    }

    /// Bulk load for `import` (no server holds the store): writes encoded
    /// records in one sled batch. Much faster than one `insert` per item;
    /// the caller must call [`Store::recount`] when done.
    pub fn apply_batch(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        // Queued writes (say, a `clear` just before) must not land after
        // the batch and undo it.
        self.settle()?;
        let mut batch = sled::Batch::default();
        let mut indexed = Vec::with_capacity(if self.index.is_some() {
            records.len()
        } else {
            0
        });
        for (k, v) in records {
            self.note_expiry(&v);
            let v = sled::IVec::from(v);
            if self.index.is_some() {
                indexed.push((k.clone(), v.clone()));
            }
            batch.insert(k, v);
        }
        self.items.apply_batch(batch)?;
        if let Some(ix) = &self.index {
            for (k, v) in indexed {
                ix.lock(&k).set(&v);
            }
        }
        self.written.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::super::testkit::{
        assert_index_matches_tree, locked_writers, record, reopen, store, BACKLOG,
    };
    use super::*;

    #[test]
    fn writes_queued_for_sled_are_read_at_once_and_reach_it_in_order() {
        let (_dir, s) = store();
        let behind = s.behind.clone().expect("periodic mode with the index");
        let r = |n: u64| Item::encode(0, 0, n, &[b"v"]);
        s.insert(b"k", r(1)).unwrap();
        assert_eq!(record(&s, b"k"), Some(r(1)), "read before sled has it");
        // A writer writing through while the key is still queued...
        behind.set_backlog_limit(0);
        s.insert(b"k", r(2)).unwrap();
        assert_eq!(s.items.get(b"k").unwrap().as_deref(), Some(&r(2)[..]));
        // ...is not undone when the queued entry is handed over.
        behind.set_backlog_limit(BACKLOG);
        s.settle().unwrap();
        assert_eq!(s.items.get(b"k").unwrap().as_deref(), Some(&r(2)[..]));
        // Queued, then removed through: gone from both.
        s.insert(b"k", r(3)).unwrap();
        behind.set_backlog_limit(0);
        assert!(s.remove(b"k").unwrap().is_some());
        behind.set_backlog_limit(BACKLOG);
        assert_index_matches_tree(&s);
        assert!(record(&s, b"k").is_none());
        // A queued removal is a tombstone until sled has it.
        s.insert(b"t", r(4)).unwrap();
        s.settle().unwrap();
        assert!(s.remove(b"t").unwrap().is_some());
        assert!(record(&s, b"t").is_none());
        assert!(s.items.get(b"t").unwrap().is_some(), "not handed over yet");
        assert!(!s
            .remove_if_unchanged(b"t", &Item::from_raw(r(4).into()).unwrap())
            .unwrap());
        assert_index_matches_tree(&s);
        assert_eq!(s.curr_items(), 0);
    }

    /// Each key written twice in a row while hand-overs run flat out and
    /// writers switch between queueing and writing through: a hand-over
    /// that let go of the shard lock before writing sled would leave a
    /// key's first value in sled.
    #[test]
    fn hand_overs_racing_writes_through_never_leave_an_older_value() {
        let (_dir, s) = store();
        let s = Arc::new(s);
        let behind = s.behind.clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mover = {
            let (s, behind, stop) = (s.clone(), behind.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    behind.set_backlog_limit(if round.is_multiple_of(2) { 0 } else { BACKLOG });
                    s.settle().unwrap();
                }
            })
        };
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..40_000u64 {
                        let key = format!("k{w}-{i}");
                        for v in [1, 2] {
                            s.insert(key.as_bytes(), Item::encode(0, 0, v, &[b"v"]))
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        stop.store(true, Ordering::Relaxed);
        mover.join().unwrap();
        behind.set_backlog_limit(BACKLOG);
        assert_index_matches_tree(&s);
    }

    /// Writers racing the write-behind thread (1 ms rounds), `clear`, the
    /// sweeper, and writers forced to write through now and then: sled ends
    /// exactly at the index, and survives a reopen.
    #[test]
    fn write_behind_racing_every_other_writer_ends_at_the_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::for_data_dir(dir.path()).store;
        cfg.flush_interval_ms = 1;
        let s = Arc::new(Store::open(&cfg).unwrap());
        s.load_index().unwrap();
        let writers = locked_writers(&s, 30_000, 7, 300, 5, 11);
        let behind = s.behind.clone().unwrap();
        let mut round = 0u64;
        while !writers.iter().all(|w| w.is_finished()) {
            round += 1;
            // Hand-overs here and in the thread while writers alternate
            // between queueing and writing through.
            behind.set_backlog_limit(if round.is_multiple_of(2) { 0 } else { BACKLOG });
            s.settle().unwrap();
            if round.is_multiple_of(50) {
                s.clear().unwrap();
                s.sweep(None, 1000, crate::rules::clock::system_now())
                    .unwrap();
            }
        }
        writers.into_iter().for_each(|w| w.join().unwrap());
        behind.set_backlog_limit(BACKLOG);
        assert_index_matches_tree(&s);
        let expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..300)
            .map(|i| {
                let k = format!("k{i}").into_bytes();
                let v = record(&s, &k);
                (k, v)
            })
            .collect();
        let (items, bytes) = (s.curr_items(), s.bytes());
        drop(behind); // it holds the database open too
        drop(Arc::into_inner(s).expect("writers are done"));
        cfg.no_memory_index = true;
        let s = reopen(&cfg);
        for (k, v) in expected {
            assert_eq!(record(&s, &k), v, "{}", String::from_utf8_lossy(&k));
        }
        assert_eq!((s.curr_items(), s.bytes()), (items, bytes));
    }
}
