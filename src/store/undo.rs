//! Taking back writes a failed group commit refused (`--durability sync`).
//!
//! A sync-mode write is visible (in the memory index, maybe handed to
//! sled) before the committer's round makes it durable, and is
//! acknowledged only after that round. If a round fails, every write since
//! the last good round is refused (their waiters get the error), so those
//! writes must vanish again: otherwise a client would read a value it was
//! told was not stored, and sled would make it durable in the next good
//! round.
//!
//! How: each write records in the [`Journal`] its generation, its key and
//! the record it replaced. A good round covering generation `T` drops the
//! entries up to `T` (those writes are on disk). After a failed round the
//! committer calls [`Journal::roll_back`]: for each key, the record before
//! its *earliest* remaining entry is the one the last good round left on
//! disk, so the key goes back to it: in the index as a dirty write (the
//! next round hands it to sled, undoing whatever sled got of the refused
//! writes), or in sled itself without the index.
//!
//! The gate: writers hold it shared from the health check to the end of
//! their write (generation and journal entry included); the roll-back
//! holds it exclusively, after [`super::fault::Health`] was marked failed.
//! So no write is half-done while keys are put back, and every write after
//! it is refused before it starts; the generations refused are exactly
//! those after the last good round up to the roll-back's end.
//!
//! What remains: between a refused write and the end of its round (a few
//! milliseconds) another client may read its value, as it may read any
//! write not yet durable; and if sled's own log write failed, sled keeps
//! the refused records until a restart (see [`super::fault`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::index::{Found, Index};
use super::item::Raw;
use super::Item;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

struct Entry {
    gen: u64,
    key: Box<[u8]>,
    prev: Option<Raw>,
}

/// The writes not yet known durable, with what each replaced.
#[derive(Default)]
pub struct Journal {
    gate: RwLock<()>,
    entries: Mutex<Vec<Entry>>,
}

/// What a roll-back changes: the store's parts the committer thread holds.
pub struct Target {
    pub index: Option<Arc<Index>>,
    pub items: sled::Tree,
    pub curr_items: Arc<AtomicU64>,
    pub bytes: Arc<AtomicU64>,
    pub written: Arc<AtomicU64>,
    pub wal: Option<Arc<super::wal::Wal>>,
}

impl Journal {
    /// Held by a writer from its health check to its journal entry.
    pub fn gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read()
    }

    /// A write with generation `gen` replaced `prev` under `key`.
    pub fn record(&self, gen: u64, key: &[u8], prev: Option<Raw>) {
        self.entries.lock().push(Entry {
            gen,
            key: key.into(),
            prev,
        });
    }

    /// Every write up to `gen` is on disk: forget them.
    pub fn committed(&self, gen: u64) {
        self.entries.lock().retain(|e| e.gen > gen);
    }

    /// Puts every key written since the last good round back to its
    /// committed record; returns the write generation after it, which
    /// ends the range of refused writes. The caller marked the store
    /// failed first, so no new write starts.
    pub fn roll_back(&self, to: &Target) -> u64 {
        let _all = self.gate.write();
        let mut entries = std::mem::take(&mut *self.entries.lock());
        entries.sort_by_key(|e| e.gen);
        let mut first: HashMap<Box<[u8]>, Option<Raw>> = HashMap::new();
        for e in entries {
            first.entry(e.key).or_insert(e.prev);
        }
        let keys = first.len();
        for (key, prev) in first {
            let cur = match &to.index {
                Some(ix) => {
                    let mut shard = ix.lock(&key);
                    let cur = match shard.current() {
                        Found::Record(r) => Some(r),
                        Found::Absent => None,
                        Found::Unknown => to.items.get(&key).ok().flatten().map(Raw::Sled),
                    };
                    shard.set_unsaved(prev.as_deref());
                    // The log may hold the refused state (a torn or failed
                    // frame, or one a later round writes): the restore
                    // follows it there.
                    if let Some(wal) = &to.wal {
                        wal.log(&to.written, &key, prev.as_deref());
                    }
                    cur
                }
                None => {
                    let put = match &prev {
                        Some(r) => to.items.insert(&key, sled::IVec::from(r)),
                        None => to.items.remove(&key),
                    };
                    match put {
                        Ok(cur) => cur.map(Raw::Sled),
                        Err(e) => {
                            tracing::error!("cannot put back a refused write in sled: {e}");
                            continue;
                        }
                    }
                }
            };
            let size = |r: &Option<Raw>| r.as_ref().map(|r| Item::footprint(key.len(), r.len()));
            let (was, now) = (size(&cur), size(&prev));
            let items = now.is_some() as u64;
            let bytes = now.unwrap_or(0);
            to.curr_items
                .fetch_add(items.wrapping_sub(was.is_some() as u64), Ordering::Relaxed);
            to.bytes
                .fetch_add(bytes.wrapping_sub(was.unwrap_or(0)), Ordering::Relaxed);
        }
        // Each failure is logged (at a bounded rate) by `Health`.
        tracing::debug!("took back the writes of {keys} keys");
        // The restores themselves are writes the next round must cover.
        to.written.fetch_add(1, Ordering::AcqRel) + 1
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::testkit::reopen;
    use super::super::{fault, Fault, Store, StoreError};
    use crate::config::{Config, Durability};

    /// The CAS of `key`'s record (each write here has its own).
    fn cas(s: &Store, key: &[u8]) -> Option<u64> {
        s.get(key).unwrap().map(|i| i.cas())
    }

    async fn commit(s: &Store) -> Result<(), StoreError> {
        let t = s.commit_ticket(s.take_own_writes(), 0).expect("sync mode");
        s.wait_durable(t).await
    }

    /// An `fdatasync` failing with EIO, or with EROFS (the filesystem turned
    /// read-only: Linux refuses `mount -o remount,ro` while sled holds its
    /// files open, so the fault is injected): the writes of the failed round
    /// are refused and taken back (never readable), new writes are refused
    /// before they change anything, with the reason, and once syncs work
    /// again the store resumes by itself; a restart finds exactly the
    /// acknowledged writes.
    #[tokio::test]
    async fn a_failed_commit_takes_its_writes_back_and_the_store_resumes() {
        let faults = [
            (libc::EIO, Fault::Io, "disk I/O error"),
            (libc::EROFS, Fault::ReadOnly, "data directory is read-only"),
        ];
        for (no_index, (errno, fault, words)) in [false, true]
            .into_iter()
            .flat_map(|n| faults.map(|f| (n, f)))
        {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = Config::for_data_dir(dir.path()).store;
            cfg.durability = Durability::Sync;
            cfg.no_memory_index = no_index;
            cfg.flush_interval_ms = 3_600_000;
            let r = |n: u64| crate::store::Item::encode(0, 0, n, &[b"v"]);
            {
                let s = Store::open(&cfg).unwrap();
                s.load_index().unwrap();
                s.insert(b"k", r(1)).unwrap();
                s.insert(b"gone", r(2)).unwrap();
                commit(&s).await.unwrap();

                fault::fail_syncs_under(dir.path(), Some(errno));
                s.insert(b"k", r(3)).unwrap();
                s.insert(b"new", r(4)).unwrap();
                s.remove(b"gone").unwrap();
                assert!(matches!(
                    commit(&s).await,
                    Err(StoreError::Refused(f)) if f == fault
                ));
                assert_eq!(cas(&s, b"k"), Some(1), "no_index={no_index}");
                assert_eq!(cas(&s, b"new"), None);
                assert_eq!(cas(&s, b"gone"), Some(2));
                assert_eq!(s.curr_items(), 2);
                let problem = s.storage_problem().unwrap();
                assert!(problem.starts_with(words), "{problem}");
                assert!(matches!(
                    s.insert(b"k", r(5)),
                    Err(StoreError::Refused(f)) if f == fault
                ));
                assert_eq!(cas(&s, b"k"), Some(1));
                s.take_own_writes();

                fault::fail_syncs_under(dir.path(), None);
                let deadline = Instant::now() + Duration::from_secs(5);
                while s.storage_problem().is_some() {
                    assert!(Instant::now() < deadline, "no recovery");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert!(s.storage_errors() >= 1);
                s.insert(b"k", r(6)).unwrap();
                commit(&s).await.unwrap();
            }
            cfg.no_memory_index = true;
            let s = reopen(&cfg);
            assert_eq!(cas(&s, b"k"), Some(6));
            assert_eq!(cas(&s, b"new"), None);
            assert_eq!(cas(&s, b"gone"), Some(2));
            assert_eq!(s.curr_items(), 2);
        }
    }

    /// Writers racing commits that fail and succeed by turns (an injected
    /// EIO switched every few milliseconds): after every refusal the key
    /// reads as last acknowledged, the index and sled agree once the store
    /// recovers, and a reopen finds each key at its last acknowledged write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_racing_failing_commits_keep_exactly_the_acknowledged_writes() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::for_data_dir(dir.path()).store;
        cfg.durability = Durability::Sync;
        cfg.flush_interval_ms = 1;
        let s = Arc::new(Store::open(&cfg).unwrap());
        s.load_index().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(AtomicU64::new(1));
        // Acknowledged and refused writes so far, of all writers.
        let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let (s, stop, ids) = (s.clone(), stop.clone(), ids.clone());
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut acked = std::collections::HashMap::new();
                    let (mut ok, mut refused) = (0u64, 0u64);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let key = format!("w{w}-{}", i % 16).into_bytes();
                        let id = ids.fetch_add(1, Ordering::Relaxed);
                        let done =
                            match s.insert(&key, crate::store::Item::encode(0, 0, id, &[b"v"])) {
                                Ok(_) => commit(&s).await,
                                Err(e) => Err(e),
                            };
                        match done {
                            Ok(()) => {
                                ok += 1;
                                seen[0].fetch_add(1, Ordering::Relaxed);
                                acked.insert(key, id);
                            }
                            Err(StoreError::Refused(Fault::Io)) => {
                                refused += 1;
                                seen[1].fetch_add(1, Ordering::Relaxed);
                                assert_eq!(cas(&s, &key), acked.get(&key).copied());
                            }
                            Err(e) => panic!("unexpected: {e}"),
                        }
                        // A refused write returns at once: let the other
                        // tasks (the one switching the fault) run.
                        tokio::task::yield_now().await;
                    }
                    (acked, ok, refused)
                })
            })
            .collect();
        // Until both outcomes were seen often (at least 60 switches, at
        // most 10 s on a loaded machine).
        let started = Instant::now();
        let mut round = 0u64;
        while round < 60
            || (seen.iter().any(|n| n.load(Ordering::Relaxed) < 50)
                && started.elapsed() < Duration::from_secs(10))
        {
            let errno = round.is_multiple_of(2).then_some(libc::EIO);
            fault::fail_syncs_under(dir.path(), errno);
            tokio::time::sleep(Duration::from_millis(8 + round % 7)).await;
            round += 1;
        }
        fault::fail_syncs_under(dir.path(), None);
        stop.store(true, Ordering::Relaxed);
        let mut expected = std::collections::HashMap::new();
        let (mut ok, mut refused) = (0, 0);
        for w in writers {
            let (acked, o, r) = w.await.unwrap();
            expected.extend(acked);
            ok += o;
            refused += r;
        }
        assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.storage_problem().is_some() {
            assert!(Instant::now() < deadline, "no recovery");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // One more good round: the taken-back records reach sled.
        s.insert(b"last", crate::store::Item::encode(0, 0, u64::MAX, &[b"v"]))
            .unwrap();
        commit(&s).await.unwrap();
        super::super::testkit::assert_index_matches_tree(&s);
        drop(Arc::into_inner(s).expect("writers are done"));
        cfg.no_memory_index = true;
        let s = reopen(&cfg);
        for (key, id) in expected {
            assert_eq!(cas(&s, &key), Some(id), "{}", String::from_utf8_lossy(&key));
        }
    }
}
