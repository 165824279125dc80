//! The command layer every front end calls: memcached's semantics for
//! every operation, run through the lock manager over the store, with the
//! shared counters. It is the only door to the store: front ends, the CSV
//! tools and the reports read and write items through [`Kv`], so a rule
//! such as a due delayed `flush_all` applies to every reader alike.
//! Nothing here knows about sockets, HTTP or wire formats.
//!
//! The parts: reads and the service's state here; per-key writes in
//! `write`; whole-store work (flush, listings, export, sweeping, bulk
//! loads) in `whole`; the meta protocol's extras in `meta`; per-key
//! locks in [`locks`]; the `stats` counters in [`stats`]; `stats detail`
//! prefix counts in [`detail`]; the slab-class view of the store in [`sizes`];
//! the keys `flush_all` removed, for `get_flushed`, in `flushed`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::rules::exptime as expiry;
use crate::rules::Clock;
use crate::store::commit::Ticket;
use crate::store::item::state;
use crate::store::{Store, StoreError};

mod apply;
mod awaited;
pub mod detail;
mod entry;
mod evict;
pub mod feed;
mod flushed;
mod fresh;
mod lease;
pub mod locks;
mod meta;
pub mod proposals;
mod read_index;
pub mod replicated;
mod runs;
pub use runs::{RunOutcome, RunWrite};
pub mod sizes;
mod starved;
pub mod stats;
mod whole;
mod write;

/// A stored item as the front ends see it: value, flags, exptime, CAS and
/// the per-item state the meta protocol reports.
pub use crate::store::Item;
use detail::Detail;
pub use fresh::ReadPoint;
use locks::LockManager;
pub use meta::{ArithOptions, ArithResult, MetaGetOptions, MetaHit, SetOptions};
use stats::{bump, Stats};

/// How a storage command treats an existing item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Store only if the item's CAS still equals this value.
    Cas(u64),
}

/// What a storage command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoreOutcome {
    /// Written; `created` is false when an item was replaced.
    Stored { cas: u64, created: bool },
    /// add on an existing key, replace/append/prepend on a missing one.
    NotStored,
    /// cas: the item changed since the client read it.
    Exists,
    /// cas: no such item.
    NotFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// The item's CAS differs from the one the caller required.
    Exists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ArithOutcome {
    Value { value: u64, cas: u64 },
    NotFound,
    NonNumeric,
}

/// An item's metadata as listed by [`Kv::list`] (without its value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: sled::IVec,
    pub size: usize,
    pub flags: u32,
    /// Absolute expiry (unix secs), 0 = never.
    pub exptime: u64,
    pub cas: u64,
}

/// Errors callers must turn into a protocol error.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("object too large for cache")]
    TooLarge,
    #[error("out of memory storing object")]
    NoMemory,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A replicated write found no quorum within `--quorum-timeout-ms`.
    #[error("no quorum")]
    NoQuorum,
    /// A replication failure or limit, in words a client may see.
    #[error("{0}")]
    Replica(&'static str),
}

impl KvError {
    /// The disk fault behind a store error (a full disk, a read-only or
    /// failing data directory), which clients are told in words rather
    /// than as a generic storage failure.
    pub fn storage_fault(&self) -> Option<crate::store::Fault> {
        match self {
            KvError::Store(e) => e.fault(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, KvError>;

/// The shared key-value service.
pub struct Kv {
    store: Store,
    locks: LockManager,
    pub stats: Stats,
    /// `stats detail`: per-prefix counts, off by default.
    pub detail: Detail,
    /// The last `stats items`/`slabs`/`sizes` walk.
    sizes: sizes::SizeCache,
    max_item_size: usize,
    /// Deadline (unix secs) of a delayed `flush_all`, 0 when none is pending.
    flush_at: AtomicU64,
    /// Keys flushes removed and no command has looked up since (at most
    /// 100,000, as 64-bit hashes: about 1.2 MB when full; see `flushed`).
    flushed: flushed::Flushed,
    /// Memory limit reported as `limit_maxbytes` (0 = unlimited).
    limit_maxbytes: AtomicU64,
    started: u64,
    /// What expiry is read against (a manual clock in tests).
    clock: Clock,
    /// Set once this node belongs to a replicated group.
    replica: std::sync::OnceLock<std::sync::Arc<replicated::Replicated>>,
    /// The change feed (`GET /v1/watch`); off until a watcher connects.
    feed: std::sync::Arc<feed::Feed>,
}

enum Lookup {
    Hit(Item),
    Miss,
    Expired,
}

impl Kv {
    /// Opens the store in `cfg.data_dir` and serves it (tests, offline tools).
    pub fn open(cfg: &crate::config::StoreConfig) -> Result<Self> {
        Self::open_with_clock(cfg, Clock::system())
    }

    /// [`Kv::open`] reading expiry against `clock` (a manual one in tests).
    pub fn open_with_clock(cfg: &crate::config::StoreConfig, clock: Clock) -> Result<Self> {
        Ok(Self::with_clock(
            Store::open(cfg)?,
            cfg.max_item_size,
            clock,
        ))
    }

    /// The service over `store`, reading expiry against the system clock.
    pub fn new(store: Store, max_item_size: usize) -> Self {
        Self::with_clock(store, max_item_size, Clock::system())
    }

    /// [`Kv::new`] with the clock given: tests pass a manual one to test
    /// TTLs without sleeping.
    pub fn with_clock(store: Store, max_item_size: usize, clock: Clock) -> Self {
        Kv {
            store,
            locks: LockManager::default(),
            stats: Stats::default(),
            detail: Detail::default(),
            sizes: Default::default(),
            max_item_size,
            flush_at: AtomicU64::new(0),
            flushed: Default::default(),
            limit_maxbytes: AtomicU64::new(0),
            started: clock.now(),
            clock,
            replica: std::sync::OnceLock::new(),
            feed: Default::default(),
        }
    }

    /// The current unix time as expiry sees it (while a replicated entry
    /// is applied: the time its leader stamped on it).
    pub fn now(&self) -> u64 {
        match APPLYING.with(Cell::get) {
            Some((now, _)) => now,
            None => self.clock.now(),
        }
    }

    /// A CAS for a new item version: the store's next one, or while a
    /// replicated entry is applied, the entry's index.
    fn fresh_cas(&self) -> Result<u64> {
        match APPLYING.with(Cell::get) {
            Some((_, cas)) => Ok(cas),
            None => Ok(self.store.next_cas()?),
        }
    }

    /// The group this node belongs to, unless the call comes from applying
    /// an entry of its log (which runs the command here, locally).
    fn replicated(&self) -> Option<&std::sync::Arc<replicated::Replicated>> {
        self.replica
            .get()
            .filter(|_| APPLYING.with(Cell::get).is_none())
    }

    /// Gets `op` committed by the group and returns its answer. The calling
    /// command waits for the commit, off the runtime worker (front ends
    /// call commands synchronously).
    fn replicate(
        &self,
        r: &std::sync::Arc<replicated::Replicated>,
        op: replicated::Op,
    ) -> Result<replicated::Applied> {
        wait_for(r.propose(op))
    }

    /// Makes this node a member of the group `cluster` describes; returns
    /// the router to serve on `--raft-listen`.
    pub async fn join_group(
        self: &std::sync::Arc<Self>,
        cluster: &crate::config::ClusterConfig,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<axum::Router> {
        let (r, router) = replicated::Replicated::start(self, cluster, data_dir).await?;
        if self.replica.set(r).is_err() {
            anyhow::bail!("this node already belongs to a group");
        }
        Ok(router)
    }

    /// This node's view of its group, `None` for a single node.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        self.replica.get().map(|r| r.status())
    }

    /// Adds a member to this node's group or removes one (any node takes
    /// the change and hands it to the leader); the members after it.
    pub async fn change_members(
        &self,
        change: &MemberChange,
    ) -> std::result::Result<Vec<ClusterMember>, MemberError> {
        match self.replica.get() {
            Some(r) => r.change_members(change).await,
            None => Err(MemberError::NoGroup),
        }
    }

    /// Why this node should not get client traffic yet, in a group: no
    /// leader, or its items are still catching up. `Ok` on a single node.
    pub async fn group_readiness(&self) -> std::result::Result<(), String> {
        match self.replica.get() {
            Some(r) => r.readiness().await,
            None => Ok(()),
        }
    }

    /// Stops this node's part in its group (at shutdown, before the
    /// store closes).
    pub async fn leave_group(&self) {
        if let Some(r) = self.replica.get() {
            r.shutdown().await;
        }
    }

    pub fn max_item_size(&self) -> usize {
        self.max_item_size
    }

    /// `cache_memlimit` / `--max-bytes`.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.limit_maxbytes.store(bytes, Ordering::Relaxed);
    }

    pub fn memory_limit(&self) -> u64 {
        self.limit_maxbytes.load(Ordering::Relaxed)
    }

    /// Under `--durability sync`, a ticket covering the writes with
    /// generations `own` (a front end's own, see [`Kv::take_own_writes`]),
    /// or, when it does not know them, every write after generation
    /// `since`; `None` in periodic mode, where nothing waits for the disk.
    /// Front ends await [`Kv::wait_durable`] on it before acknowledging
    /// any write it covers.
    pub fn commit_ticket(&self, own: Option<(u64, u64)>, since: u64) -> Option<Ticket> {
        self.store.commit_ticket(own, since)
    }

    /// The write generations (lowest, highest) of the writes this thread
    /// made since the last call. A front end runs a command's store calls
    /// without yielding, so taking them before and after each command
    /// tells exactly which writes were the command's: a failed commit
    /// refuses a ticket only if it refused one of those.
    pub fn take_own_writes(&self) -> Option<(u64, u64)> {
        self.store.take_own_writes()
    }

    /// Resolves once every write of `ticket` is on disk (group commit:
    /// one disk sync serves every writer waiting at the time); fails if a
    /// failed commit refused any of them.
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        self.store
            .wait_durable(ticket)
            .await
            .map_err(KvError::Store)
    }

    /// Group-commit rounds (disk syncs) run so far; 0 in periodic mode.
    pub fn commit_rounds(&self) -> u64 {
        self.store.commit_rounds()
    }

    /// Waits until this caller's completed writes are durable, as the
    /// durability mode requires (a no-op in periodic mode). The HTTP front
    /// end calls this before answering 2xx to a write.
    ///
    /// `since` is the write generation before the request started; the
    /// ticket covers the writes this thread made since the last
    /// [`Kv::take_own_writes`] (when they were made on a blocking thread,
    /// every write since `since`).
    pub async fn commit(&self, since: u64) -> Result<()> {
        match self.commit_ticket(self.take_own_writes(), since) {
            Some(t) => self.wait_durable(t).await,
            None => Ok(()),
        }
    }

    /// Whether writes go through a replicated group (and are applied to the
    /// store by its apply task, not by the caller's thread).
    pub fn is_replicated(&self) -> bool {
        self.replica.get().is_some()
    }

    /// Why the store refuses writes now (a full or failing disk), if it does.
    pub fn storage_problem(&self) -> Option<String> {
        self.store.storage_problem().or_else(|| {
            self.replica
                .get()
                .filter(|r| r.log_starved())
                .map(|_| "raft log: out of disk space".to_owned())
        })
    }

    /// Storage errors so far: failed flushes and syncs (retries included)
    /// and failed CSV mirror writes.
    pub fn storage_errors(&self) -> u64 {
        self.store.storage_errors()
    }

    /// Counts a CSV mirror write that failed.
    pub fn count_storage_error(&self) {
        self.store.count_storage_error()
    }

    /// Unix time the service started.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Every command's read of a key. Like memcached, finding an expired
    /// item counts as `get_expired` whatever the command; likewise the
    /// first lookup of a key a flush removed counts `get_flushed` (see
    /// [`Kv::forget_flushed`]).
    fn lookup(&self, key: &[u8], now: u64, point: ReadPoint) -> Result<Lookup> {
        self.fresh(point)?;
        self.apply_due_flush(now)?;
        let found = self.store.get(key)?;
        self.forget_flushed(key, found.is_none());
        Ok(match found {
            Some(item) if item.is_expired(now) => {
                bump(&self.stats.get_expired);
                if self.feed.armed() {
                    self.expired_found(key, &item)?;
                }
                Lookup::Expired
            }
            Some(item) => Lookup::Hit(item),
            None => Lookup::Miss,
        })
    }

    /// Called by every command that reads or writes `key`: if a flush
    /// removed it and nothing has looked it up since, forgets it and, when
    /// the command found no item, counts `get_flushed`, as memcached counts
    /// unlinking a flushed item the first time any command finds it. An
    /// item found means the key was written after the flush: not counted.
    /// One relaxed load while no flushed key is remembered.
    fn forget_flushed(&self, key: &[u8], missing: bool) {
        if self.flushed.take(key) && missing {
            bump(&self.stats.get_flushed);
        }
    }

    /// While watchers follow the feed, a command that finds an expired
    /// item removes it (as memcached unlinks it), so that its `expire`
    /// event is sent once. A group leaves expiry to each node's sweeper.
    #[inline(never)]
    fn expired_found(&self, key: &[u8], item: &Item) -> Result<()> {
        if !self.is_replicated() && self.store.remove_if_unchanged(key, item)? {
            self.note_removed(feed::ChangeKind::Expire, key, Some(item));
        }
        Ok(())
    }

    fn live(&self, key: &[u8], now: u64) -> Result<Option<Item>> {
        Ok(match self.lookup(key, now, self.read_point())? {
            Lookup::Hit(item) => Some(item),
            _ => None,
        })
    }

    /// A retrieval (`get`, `gets`, HTTP GET): the live item, counted.
    pub fn get(&self, key: &[u8]) -> Result<Option<Item>> {
        self.get_from(key, self.read_point())
    }

    /// [`Kv::get`] for one of a command's reads that began at `point`
    /// (see [`fresh`]).
    pub fn get_from(&self, key: &[u8], point: ReadPoint) -> Result<Option<Item>> {
        bump(&self.stats.cmd_get);
        let now = self.now();
        let found = self.lookup(key, now, point)?;
        if let Lookup::Hit(item) = &found {
            if self.store.tracks_access() {
                self.note_access(key, item, now);
            }
        }
        if self.detail.enabled() {
            self.detail.get(key, matches!(found, Lookup::Hit(_)));
        }
        Ok(self.count_get(found))
    }

    fn count_get(&self, found: Lookup) -> Option<Item> {
        match found {
            Lookup::Hit(item) => {
                bump(&self.stats.get_hits);
                Some(item)
            }
            Lookup::Expired | Lookup::Miss => {
                bump(&self.stats.get_misses);
                None
            }
        }
    }

    /// Reads an item without counting a get, hit or miss (`me`, tests).
    /// Its lookup still counts `get_expired`/`get_flushed`, as memcached's
    /// `me` does.
    pub fn peek(&self, key: &[u8]) -> Result<Option<Item>> {
        self.live(key, self.now())
    }
}

thread_local! {
    /// While a replicated entry is applied on this thread: the time and
    /// CAS its leader decided (see [`replicated`]).
    static APPLYING: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// Checks a member's Raft address (`host:port`) before a change is tried.
pub use crate::replica::members::{
    check_addr as check_member_addr, ADDR_PATTERN as MEMBER_ADDR_PATTERN,
};
/// A node's view of its replicated group (`GET /v1/cluster`).
pub use crate::replica::Status as ClusterStatus;
/// Membership changes (`POST`/`DELETE /v1/cluster/members`).
pub use crate::replica::{Change as MemberChange, Member as ClusterMember, MemberError};

/// An answer of the wrong kind from the log (a bug, not a client error).
fn unexpected(answer: replicated::Applied) -> KvError {
    tracing::error!("a replicated write answered {answer:?}");
    KvError::Replica("unexpected answer from the group")
}

/// Waits for `f` from synchronous code on the runtime: on the
/// multi-thread runtime the worker hands its other tasks over meanwhile.
fn wait_for<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(f))
        }
        Ok(h) => std::thread::scope(|s| s.spawn(|| h.block_on(f)).join().expect("waiter")),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime to wait on")
            .block_on(f),
    }
}

/// The [`state`] bits a new item gets for how its key was given.
fn key_bits(binary_key: bool) -> u8 {
    if binary_key {
        state::KEY_BINARY
    } else {
        0
    }
}

/// Runs whole-store work (`flush_all` walks every item) so that it does
/// not stall the other connections of the calling runtime worker: on the
/// multi-thread runtime the worker hands its tasks to another thread
/// meanwhile. Elsewhere (a current-thread runtime, no runtime) it just runs.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Tests: a fresh store whose clock moves only when the test says so.
#[cfg(test)]
fn test_kv_at(unix_secs: u64) -> (tempfile::TempDir, Kv, Clock) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::Config::for_data_dir(dir.path()).store;
    let clock = Clock::manual(unix_secs);
    let kv = Kv::open_with_clock(&cfg, clock.clone()).unwrap();
    (dir, kv, clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv() -> (tempfile::TempDir, Kv) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let kv = Kv::new(Store::open(&cfg).unwrap(), 1024);
        (dir, kv)
    }

    #[test]
    fn set_reports_created_when_the_old_item_was_missing_or_expired() {
        let (_d, kv) = kv();
        let created = |kv: &Kv, exp| match kv.set(StoreMode::Set, b"k", 0, exp, b"v").unwrap() {
            StoreOutcome::Stored { created, .. } => created,
            other => panic!("{other:?}"),
        };
        assert!(created(&kv, 0), "missing");
        assert!(!created(&kv, -1), "replaces a live item");
        assert!(created(&kv, 0), "the old one had expired");
        assert_eq!(kv.stats.get_expired.load(Ordering::Relaxed), 1);
        assert!(!created(&kv, 0));
        assert_eq!(kv.store.curr_items(), 1);
    }

    #[test]
    fn storage_modes_follow_memcached() {
        let (_d, kv) = kv();
        use StoreMode::*;
        assert_eq!(
            kv.set(Replace, b"k", 0, 0, b"x").unwrap(),
            StoreOutcome::NotStored
        );
        assert_eq!(
            kv.set(Append, b"k", 0, 0, b"x").unwrap(),
            StoreOutcome::NotStored
        );
        let StoreOutcome::Stored { cas, created: true } = kv.set(Add, b"k", 7, 0, b"b").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            kv.set(Add, b"k", 0, 0, b"x").unwrap(),
            StoreOutcome::NotStored
        );
        kv.set(Append, b"k", 0, 0, b"c").unwrap();
        kv.set(Prepend, b"k", 0, 0, b"a").unwrap();
        let item = kv.get(b"k").unwrap().unwrap();
        assert_eq!((item.value(), item.flags()), (&b"abc"[..], 7));
        assert_eq!(
            kv.set(Cas(cas), b"k", 0, 0, b"z").unwrap(),
            StoreOutcome::Exists
        );
        assert_eq!(
            kv.set(Cas(1), b"nope", 0, 0, b"z").unwrap(),
            StoreOutcome::NotFound
        );
        let now_cas = item.cas();
        assert!(matches!(
            kv.set(Cas(now_cas), b"k", 0, 0, b"z").unwrap(),
            StoreOutcome::Stored { created: false, .. }
        ));
        assert!(matches!(
            kv.set(Set, b"big", 0, 0, &[0; 1025]),
            Err(KvError::TooLarge)
        ));
        assert!(matches!(
            kv.set(Append, b"k", 0, 0, &[0; 1024]),
            Err(KvError::NoMemory)
        ));
    }

    #[test]
    fn arithmetic_wraps_and_floors() {
        let (_d, kv) = kv();
        kv.set(StoreMode::Set, b"n", 0, 0, b"18446744073709551615")
            .unwrap();
        assert!(matches!(
            kv.incr_decr(b"n", 2, true).unwrap(),
            ArithOutcome::Value { value: 1, .. }
        ));
        assert!(matches!(
            kv.incr_decr(b"n", 5, false).unwrap(),
            ArithOutcome::Value { value: 0, .. }
        ));
        kv.set(StoreMode::Set, b"s", 0, 0, b"abc").unwrap();
        assert_eq!(
            kv.incr_decr(b"s", 1, true).unwrap(),
            ArithOutcome::NonNumeric
        );
        assert_eq!(
            kv.incr_decr(b"none", 1, true).unwrap(),
            ArithOutcome::NotFound
        );
    }

    #[test]
    fn list_pages_skip_expired_items() {
        let (_d, kv) = kv();
        for k in ["a", "p1", "p2", "p3", "p4", "q"] {
            kv.set(StoreMode::Set, k.as_bytes(), 3, 0, b"vv").unwrap();
        }
        // Expired long ago but not yet swept.
        kv.store
            .insert(b"p0", Item::encode(0, 5, 1, &[b"gone"]))
            .unwrap();
        let (page, more) = kv.list(b"p", None, 2).unwrap();
        let keys: Vec<_> = page.iter().map(|l| l.key.to_vec()).collect();
        assert_eq!((keys, more), (vec![b"p1".to_vec(), b"p2".to_vec()], true));
        assert_eq!((page[0].size, page[0].flags), (2, 3));
        let (page, more) = kv.list(b"p", Some(b"p2"), 2).unwrap();
        assert_eq!((page.len(), more), (2, false));
        assert_eq!(page[1].key.as_ref(), b"p4");
    }

    #[test]
    fn max_bytes_counts_the_whole_record() {
        // Three 1-byte keys with 10-byte values take 37 bytes each (key,
        // 26-byte header, value): a limit one byte short of three refuses
        // the third under noeviction, and `bytes` never passes the limit.
        let (_d, kv) = kv();
        let footprint = 1 + 26 + 10;
        kv.set_memory_limit(3 * footprint - 1);
        for key in [b"a", b"b"] {
            kv.set(StoreMode::Set, key, 0, 0, &[b'v'; 10]).unwrap();
        }
        assert!(matches!(
            kv.set(StoreMode::Set, b"c", 0, 0, &[b'v'; 10]),
            Err(KvError::NoMemory)
        ));
        assert_eq!(kv.bytes(), 2 * footprint);
        assert!(kv.bytes() <= kv.memory_limit());
    }

    #[test]
    fn expired_items_are_invisible() {
        let (_d, kv) = kv();
        kv.set(StoreMode::Set, b"gone", 0, -1, b"v").unwrap();
        assert!(kv.get(b"gone").unwrap().is_none());
        kv.set(StoreMode::Set, b"t", 0, 100, b"v").unwrap();
        assert!(kv.touch(b"t", -1).unwrap());
        assert!(kv.get(b"t").unwrap().is_none());
        assert_eq!(
            kv.set(StoreMode::Add, b"t", 0, 0, b"w").unwrap(),
            StoreOutcome::Stored {
                cas: kv.get(b"t").unwrap().unwrap().cas(),
                created: true
            }
        );
    }
}
