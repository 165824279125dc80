//! The change feed behind `GET /v1/watch`: every change to the items,
//! whichever protocol made it, as a numbered [`Change`], kept in a bounded
//! history for watchers that reconnect, and handed to the watchers
//! connected now.
//!
//! Every write passes through [`Kv`], so the hooks here (called by `write`,
//! `whole`, `meta` and the lookup) see them all. Until the first watcher
//! connects the feed is off and a hook costs one relaxed atomic load; from
//! then on every change takes the feed's lock for a moment (a push into the
//! history ring and a `try_send` to each watcher whose filter matches).
//! Publishing never waits: a watcher whose queue is full is dropped and
//! told to resync, so a slow watcher never slows a writer.
//!
//! Revisions increase with every change, in the order watchers see them.
//! On a single node a revision is drawn from the store's CAS counter when
//! the change is published (under the feed's lock, so in stream order);
//! that counter is reserved on disk, so revisions keep increasing across
//! restarts. In a replicated group a change's revision is the log index of
//! the entry that made it, the same on every node.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{Item, Kv};

/// Values up to this size travel in the events of `values=true` watchers;
/// larger ones are left out (`value_omitted`).
pub const MAX_EVENT_VALUE: usize = 64 * 1024;
/// Most bytes (keys and values) the history keeps, whatever its length.
pub const MAX_HISTORY_BYTES: usize = 64 * 1024 * 1024;

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new item version: every storage command, incr/decr, touch/gat
    /// (a touch is a `set` with the new TTL), meta invalidation.
    Set,
    /// delete, and an item removed to make room under `--eviction lru`.
    Delete,
    /// An expired item was removed (by the sweeper or found by a command).
    Expire,
    /// `flush_all` (data: when it takes effect).
    Flush,
}

impl ChangeKind {
    /// The SSE event name.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Set => "set",
            ChangeKind::Delete => "delete",
            ChangeKind::Expire => "expire",
            ChangeKind::Flush => "flush",
        }
    }
}

/// One change, as every watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub revision: u64,
    pub kind: ChangeKind,
    /// Empty for a flush.
    pub key: Box<[u8]>,
    /// The item's CAS (for delete and expire: the removed item's; 0 if
    /// unknown or a flush).
    pub cas: u64,
    pub flags: u32,
    /// Absolute expiry (unix secs, 0 = never); a flush: when it takes effect.
    pub exptime: u64,
    /// Value size in bytes.
    pub size: usize,
    /// The value, when some watcher asked for values and it is at most
    /// [`MAX_EVENT_VALUE`] bytes.
    pub value: Option<Box<[u8]>>,
    /// A delete that made room under `--eviction lru`.
    pub evicted: bool,
}

impl Change {
    fn bytes(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, |v| v.len()) + 96
    }
}

/// Which keys a watcher follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Prefix(Vec<u8>),
    Key(Vec<u8>),
}

impl Filter {
    /// The first byte every key it follows starts with (`None`: any key).
    fn first_byte(&self) -> Option<u8> {
        match self {
            Filter::Prefix(p) | Filter::Key(p) => p.first().copied(),
        }
    }

    /// Whether `change` concerns this watcher (a flush concerns everyone).
    pub fn matches(&self, change: &Change) -> bool {
        match self {
            _ if change.kind == ChangeKind::Flush => true,
            Filter::Prefix(p) => change.key.starts_with(p),
            Filter::Key(k) => *change.key == **k,
        }
    }
}

/// Why a watcher's stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Still live.
    No = 0,
    /// Its queue filled up: it fell behind.
    Overflow = 1,
    /// The node's items were replaced wholesale (a replicated node
    /// installed a snapshot).
    Reset = 2,
}

/// The feed's limits (`--watch-history`, `--max-watchers`, `--watch-queue`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub history: usize,
    pub max_watchers: usize,
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            history: 10_000,
            max_watchers: 1024,
            queue: 1024,
        }
    }
}

/// A subscription refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    TooManyWatchers(usize),
}

struct Watcher {
    id: u64,
    filter: Filter,
    values: bool,
    tx: mpsc::Sender<Arc<Change>>,
    ended: Arc<AtomicU8>,
}

#[derive(Default)]
struct Inner {
    limits: Limits,
    history: VecDeque<Arc<Change>>,
    history_bytes: usize,
    /// Every change after this revision is in `history`: the revision the
    /// feed started at, or the last one the history dropped.
    floor: u64,
    /// The last revision published.
    last: u64,
    watchers: Vec<Watcher>,
    /// Watchers by the first byte of their filter ([`Filter::first_byte`],
    /// 256 = any key): a change no filter can match skips the watchers.
    by_first: Vec<u32>,
    next_id: u64,
}

impl Inner {
    fn count(&mut self, filter: &Filter, add: bool) {
        if self.by_first.is_empty() {
            self.by_first = vec![0; 257];
        }
        let slot = filter.first_byte().map_or(256, usize::from);
        if add {
            self.by_first[slot] += 1;
        } else {
            self.by_first[slot] -= 1;
        }
    }

    /// Whether some watcher's filter may match `change`.
    fn may_match(&self, change: &Change) -> bool {
        if self.watchers.is_empty() {
            return false;
        }
        match (change.kind, change.key.first()) {
            (ChangeKind::Flush, _) | (_, None) => true,
            (_, Some(&b)) => self.by_first[256] > 0 || self.by_first[usize::from(b)] > 0,
        }
    }
}

/// The change feed (one per [`Kv`]).
#[derive(Default)]
pub struct Feed {
    /// Off until the first watcher: the hooks return after loading this.
    armed: AtomicBool,
    /// In a group: the last log index applied (or being applied), so the
    /// feed knows where it starts when armed.
    applied: AtomicU64,
    watchers: AtomicUsize,
    value_watchers: AtomicUsize,
    events: AtomicU64,
    overflows: AtomicU64,
    inner: Mutex<Inner>,
}

/// A connected watcher: changes already retained that it missed, then the
/// live ones. Dropping it unregisters the watcher.
pub struct Subscription {
    feed: Arc<Feed>,
    id: u64,
    values: bool,
    /// Retained changes after the requested revision, oldest first.
    pub replay: Vec<Arc<Change>>,
    /// The requested revision is older than the history: the watcher must
    /// re-list (`resync`) and then follows live changes.
    pub resync: bool,
    /// The last revision published when it subscribed.
    pub revision: u64,
    pub rx: mpsc::Receiver<Arc<Change>>,
    ended: Arc<AtomicU8>,
}

impl Subscription {
    /// Why the live stream ended, once the receiver is closed or full.
    pub fn ended(&self) -> Ended {
        match self.ended.load(Ordering::Acquire) {
            1 => Ended::Overflow,
            2 => Ended::Reset,
            _ => Ended::No,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.feed.inner.lock();
        if let Some(i) = inner.watchers.iter().position(|w| w.id == self.id) {
            let gone = inner.watchers.swap_remove(i);
            inner.count(&gone.filter, false);
            self.feed.watchers.fetch_sub(1, Ordering::Relaxed);
            if self.values {
                self.feed.value_watchers.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Feed {
    /// Whether any watcher has connected since start (the hooks' check).
    #[inline]
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    pub fn set_limits(&self, limits: Limits) {
        self.inner.lock().limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.inner.lock().limits
    }

    /// Watchers connected now.
    pub fn watchers(&self) -> u64 {
        self.watchers.load(Ordering::Relaxed) as u64
    }

    /// Changes published so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Watchers dropped because their queue was full.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Whether values should be captured for the changes published now.
    fn wants_values(&self) -> bool {
        self.value_watchers.load(Ordering::Relaxed) > 0
    }

    /// Registers a watcher of `filter`. With `since`, the retained changes
    /// after it come first, or `resync` when the history no longer reaches
    /// back that far. `start` gives the revision the feed starts at when
    /// this is its first watcher.
    pub fn subscribe(
        self: &Arc<Self>,
        filter: Filter,
        since: Option<u64>,
        values: bool,
        start: impl FnOnce() -> u64,
    ) -> Result<Subscription, Refused> {
        let mut inner = self.inner.lock();
        let limits = inner.limits;
        if inner.watchers.len() >= limits.max_watchers {
            return Err(Refused::TooManyWatchers(limits.max_watchers));
        }
        if !self.armed.load(Ordering::SeqCst) {
            self.armed.store(true, Ordering::SeqCst);
            let at = start().max(self.applied.load(Ordering::SeqCst));
            inner.floor = at;
            inner.last = at;
        }
        let (replay, resync) = match since {
            None => (Vec::new(), false),
            Some(s) if s < inner.floor => (Vec::new(), true),
            Some(s) => (
                inner
                    .history
                    .iter()
                    .filter(|c| c.revision > s && filter.matches(c))
                    .cloned()
                    .collect(),
                false,
            ),
        };
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let ended = Arc::new(AtomicU8::new(0));
        inner.next_id += 1;
        let id = inner.next_id;
        inner.count(&filter, true);
        inner.watchers.push(Watcher {
            id,
            filter,
            values,
            tx,
            ended: ended.clone(),
        });
        self.watchers.fetch_add(1, Ordering::Relaxed);
        if values {
            self.value_watchers.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Subscription {
            feed: self.clone(),
            id,
            values,
            replay,
            resync,
            revision: inner.last,
            rx,
            ended,
        })
    }

    /// Publishes `change` with the revision `revision` gives (called under
    /// the feed's lock, so revisions follow publication order). A revision
    /// not above the last one published is dropped (a replicated entry
    /// applied again).
    fn publish(&self, mut change: Change, revision: impl FnOnce(u64) -> u64) {
        let mut inner = self.inner.lock();
        let limits = inner.limits;
        let rev = revision(inner.last);
        if rev <= inner.last {
            return;
        }
        change.revision = rev;
        inner.last = rev;
        if inner.floor == u64::MAX {
            inner.floor = rev - 1;
        }
        let change = Arc::new(change);
        self.events.fetch_add(1, Ordering::Relaxed);
        inner.history_bytes += change.bytes();
        inner.history.push_back(change.clone());
        while inner.history.len() > limits.history
            || (inner.history_bytes > MAX_HISTORY_BYTES && inner.history.len() > 1)
        {
            let Some(old) = inner.history.pop_front() else {
                break;
            };
            inner.history_bytes -= old.bytes();
            inner.floor = old.revision;
        }
        if !inner.may_match(&change) {
            return;
        }
        let mut dropped = Vec::new();
        inner.watchers.retain(|w| {
            if !w.filter.matches(&change) {
                return true;
            }
            match w.tx.try_send(change.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.ended.store(Ended::Overflow as u8, Ordering::Release);
                    self.overflows.fetch_add(1, Ordering::Relaxed);
                    dropped.push(w.filter.clone());
                    if w.values {
                        self.value_watchers.fetch_sub(1, Ordering::Relaxed);
                    }
                    false
                }
                // The stream is gone; its Subscription's drop removes it.
                Err(mpsc::error::TrySendError::Closed(_)) => true,
            }
        });
        self.watchers.fetch_sub(dropped.len(), Ordering::Relaxed);
        for filter in &dropped {
            inner.count(filter, false);
        }
    }

    /// Every watcher must resync and the history starts over (the items
    /// were replaced wholesale).
    pub fn reset(&self) {
        let mut inner = self.inner.lock();
        for w in inner.watchers.drain(..) {
            w.ended.store(Ended::Reset as u8, Ordering::Release);
        }
        inner.by_first.clear();
        self.watchers.store(0, Ordering::Relaxed);
        self.value_watchers.store(0, Ordering::Relaxed);
        inner.history.clear();
        inner.history_bytes = 0;
        // The next change published sets the floor just below itself.
        inner.floor = u64::MAX;
    }
}

impl Kv {
    /// The change feed, for `GET /v1/watch`.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// Subscribes to the feed (see [`Feed::subscribe`]).
    pub fn watch(
        &self,
        filter: Filter,
        since: Option<u64>,
        values: bool,
    ) -> Result<Subscription, Refused> {
        self.feed.subscribe(filter, since, values, || {
            if let Some(group) = self.cluster_status() {
                // What this node had applied when it started (entries
                // applied since pass `note_applying`, which is kept too).
                group.applied_index
            } else {
                // Everything published from now on is above this.
                self.store.next_cas().unwrap_or(0)
            }
        })
    }

    /// The revision of a change published now: the applied entry's index
    /// in a group, else a fresh number from the CAS counter.
    fn revision(&self, last: u64) -> u64 {
        match super::APPLYING.with(std::cell::Cell::get) {
            Some((_, index)) => index,
            None => self.store.next_cas().unwrap_or(last + 1),
        }
    }

    /// In a group: the log entry `index` is being applied (kept even while
    /// the feed is off, so that it knows where it starts).
    pub(super) fn note_applying(&self, index: u64) {
        self.feed.applied.store(index, Ordering::SeqCst);
    }

    /// A new version of `key` was written.
    #[inline]
    pub(super) fn note_set(&self, key: &[u8], flags: u32, exp: u64, cas: u64, value: &[&[u8]]) {
        if self.feed.armed() {
            self.publish_set(key, flags, exp, cas, value);
        }
    }

    #[inline(never)]
    fn publish_set(&self, key: &[u8], flags: u32, exp: u64, cas: u64, value: &[&[u8]]) {
        let size = value.iter().map(|p| p.len()).sum();
        let value = (self.feed.wants_values() && size <= MAX_EVENT_VALUE)
            .then(|| value.concat().into_boxed_slice());
        let change = Change {
            revision: 0,
            kind: ChangeKind::Set,
            key: key.into(),
            cas,
            flags,
            exptime: exp,
            size,
            value,
            evicted: false,
        };
        self.feed.publish(change, |last| self.revision(last));
    }

    /// [`Kv::note_set`] for an item already encoded.
    #[inline]
    pub(super) fn note_item(&self, key: &[u8], item: &Item) {
        if self.feed.armed() {
            self.publish_set(
                key,
                item.flags(),
                item.exptime(),
                item.cas(),
                &[item.value()],
            );
        }
    }

    /// `key` was removed: deleted, expired or evicted (`item` is what was
    /// removed, when known).
    #[inline]
    pub(super) fn note_removed(&self, kind: ChangeKind, key: &[u8], item: Option<&Item>) {
        if self.feed.armed() {
            self.publish_removed(kind, key, item, false);
        }
    }

    #[inline(never)]
    pub(super) fn publish_removed(
        &self,
        kind: ChangeKind,
        key: &[u8],
        item: Option<&Item>,
        evicted: bool,
    ) {
        // Expiry and eviction are each node's own (its clock, its
        // sweeper), not entries of the log: a group reports only what the
        // log carries, so that every node sends the same changes.
        if (kind == ChangeKind::Expire || evicted) && self.is_replicated() {
            return;
        }
        let change = Change {
            revision: 0,
            kind,
            key: key.into(),
            cas: item.map_or(0, Item::cas),
            flags: item.map_or(0, Item::flags),
            exptime: item.map_or(0, Item::exptime),
            size: item.map_or(0, |i| i.value().len()),
            value: None,
            evicted,
        };
        self.feed.publish(change, |last| self.revision(last));
    }

    /// `flush_all` was accepted: it takes effect at `at` (unix secs).
    pub(super) fn note_flush(&self, at: u64) {
        if self.feed.armed() {
            let change = Change {
                revision: 0,
                kind: ChangeKind::Flush,
                key: Box::default(),
                cas: 0,
                flags: 0,
                exptime: at,
                size: 0,
                value: None,
                evicted: false,
            };
            self.feed.publish(change, |last| self.revision(last));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_kv_at as kv_at;
    use super::super::StoreMode;
    use super::*;

    fn drain(sub: &mut Subscription) -> Vec<(ChangeKind, Vec<u8>, u64)> {
        let mut out = Vec::new();
        while let Ok(c) = sub.rx.try_recv() {
            out.push((c.kind, c.key.to_vec(), c.revision));
        }
        out
    }

    fn all() -> Filter {
        Filter::Prefix(Vec::new())
    }

    #[test]
    fn nothing_is_published_before_the_first_watcher() {
        let (_d, kv, _c) = kv_at(1_000);
        kv.set(StoreMode::Set, b"a", 0, 0, b"v").unwrap();
        assert!(!kv.feed().armed());
        assert_eq!(kv.feed().events(), 0);
        let mut sub = kv.watch(all(), None, false).unwrap();
        kv.set(StoreMode::Set, b"b", 0, 0, b"v").unwrap();
        assert_eq!(drain(&mut sub).len(), 1);
        assert_eq!(kv.feed().events(), 1);
    }

    #[test]
    fn every_write_kind_maps_to_one_event_in_revision_order() {
        let (_d, kv, clock) = kv_at(1_000);
        let mut sub = kv.watch(all(), None, true).unwrap();
        kv.set(StoreMode::Set, b"a", 0, 0, b"1").unwrap();
        kv.set(StoreMode::Add, b"a", 0, 0, b"x").unwrap(); // not stored: nothing
        kv.incr_decr(b"a", 2, true).unwrap();
        kv.touch(b"a", 50).unwrap();
        kv.get_and_touch(b"a", 60).unwrap();
        kv.delete(b"a", None).unwrap();
        kv.delete(b"a", None).unwrap(); // a miss: nothing
        kv.set(StoreMode::Set, b"t", 0, 5, b"v").unwrap();
        clock.advance(10);
        assert!(kv.get(b"t").unwrap().is_none());
        assert!(kv.get(b"t").unwrap().is_none(), "expire is sent once");
        kv.flush_all(0).unwrap();
        let got = drain(&mut sub);
        let kinds: Vec<_> = got.iter().map(|(k, key, _)| (*k, key.as_slice())).collect();
        use ChangeKind::*;
        assert_eq!(
            kinds,
            [
                (Set, &b"a"[..]),
                (Set, b"a"),
                (Set, b"a"),
                (Set, b"a"),
                (Delete, b"a"),
                (Set, b"t"),
                (Expire, b"t"),
                (Flush, b""),
            ]
        );
        assert!(got.windows(2).all(|w| w[0].2 < w[1].2), "{got:?}");
    }

    #[test]
    fn the_sweeper_reports_what_it_reclaims() {
        let (_d, kv, clock) = kv_at(1_000);
        let mut sub = kv.watch(all(), None, false).unwrap();
        kv.set(StoreMode::Set, b"t", 0, 5, b"v").unwrap();
        kv.store.settle().unwrap();
        clock.advance(10);
        kv.sweep(None, 100).unwrap();
        let got = drain(&mut sub);
        assert_eq!(got.last().unwrap().0, ChangeKind::Expire);
    }

    #[test]
    fn history_replays_after_a_revision_or_says_resync() {
        let (_d, kv, _c) = kv_at(1_000);
        kv.feed().set_limits(Limits {
            history: 3,
            ..Limits::default()
        });
        let mut first = kv.watch(all(), None, false).unwrap();
        for k in [b"a", b"b", b"c", b"d", b"e"] {
            kv.set(StoreMode::Set, k, 0, 0, b"v").unwrap();
        }
        let seen = drain(&mut first);
        let late = kv.watch(all(), Some(seen[0].2), false).unwrap();
        assert!(
            late.resync && late.replay.is_empty(),
            "a and b were dropped"
        );
        let ok = kv
            .watch(Filter::Key(b"e".to_vec()), Some(seen[1].2 + 1), false)
            .unwrap();
        assert!(!ok.resync);
        assert_eq!(&*ok.replay[0].key, b"e", "only the key's changes replay");
        assert_eq!(ok.replay.len(), 1);
    }

    #[test]
    fn a_full_queue_drops_the_watcher_without_blocking() {
        let (_d, kv, _c) = kv_at(1_000);
        kv.feed().set_limits(Limits {
            queue: 2,
            ..Limits::default()
        });
        let slow = kv.watch(all(), None, false).unwrap();
        let mut other = kv.watch(Filter::Key(b"z".to_vec()), None, false).unwrap();
        for i in 0..10u8 {
            kv.set(StoreMode::Set, &[b'k', i], 0, 0, b"v").unwrap();
        }
        kv.set(StoreMode::Set, b"z", 0, 0, b"v").unwrap();
        assert_eq!(slow.ended(), Ended::Overflow);
        assert_eq!(kv.feed().overflows(), 1);
        assert_eq!(kv.feed().watchers(), 1);
        assert_eq!(drain(&mut other).len(), 1);
        drop(slow);
        assert_eq!(
            kv.feed().watchers(),
            1,
            "dropping it later counts nothing twice"
        );
    }

    #[test]
    fn max_watchers_is_enforced_and_dropping_frees_a_place() {
        let (_d, kv, _c) = kv_at(1_000);
        kv.feed().set_limits(Limits {
            max_watchers: 1,
            ..Limits::default()
        });
        let one = kv.watch(all(), None, false).unwrap();
        assert!(matches!(
            kv.watch(all(), None, false),
            Err(Refused::TooManyWatchers(1))
        ));
        drop(one);
        assert_eq!(kv.feed().watchers(), 0);
        assert!(kv.watch(all(), None, false).is_ok());
    }

    #[test]
    fn applied_entries_take_their_log_index_as_revision() {
        let (_d, kv, _c) = kv_at(1_000);
        let mut sub = kv.watch(all(), None, false).unwrap();
        let op = |key: &[u8]| super::super::replicated::Op::Set {
            mode: StoreMode::Set,
            key: key.to_vec(),
            flags: 0,
            exptime: 0,
            value: b"v".to_vec(),
            opts: Default::default(),
        };
        kv.apply_op(7_000_000, 1_000, &op(b"a"));
        kv.apply_op(7_000_002, 1_000, &op(b"b"));
        kv.apply_op(7_000_002, 1_000, &op(b"c")); // the same index again: dropped
        let got = drain(&mut sub);
        let revs: Vec<u64> = got.iter().map(|g| g.2).collect();
        assert_eq!(revs, [7_000_000, 7_000_002]);
    }

    #[test]
    fn filters_see_only_their_keys_whatever_their_first_byte() {
        let (_d, kv, _c) = kv_at(1_000);
        let mut a = kv
            .watch(Filter::Prefix(b"ab".to_vec()), None, false)
            .unwrap();
        let mut b = kv.watch(Filter::Key(b"b1".to_vec()), None, false).unwrap();
        for k in [&b"ab1"[..], b"ac", b"b1", b"b10", b"c"] {
            kv.set(StoreMode::Set, k, 0, 0, b"v").unwrap();
        }
        kv.flush_all(0).unwrap();
        let keys = |s: &mut Subscription| -> Vec<Vec<u8>> {
            drain(s).into_iter().map(|(_, k, _)| k).collect()
        };
        assert_eq!(keys(&mut a), [b"ab1".to_vec(), Vec::new()]);
        assert_eq!(keys(&mut b), [b"b1".to_vec(), Vec::new()]);
        drop(b);
        kv.set(StoreMode::Set, b"b1", 0, 0, b"v").unwrap();
        kv.set(StoreMode::Set, b"ab2", 0, 0, b"v").unwrap();
        assert_eq!(keys(&mut a), [b"ab2".to_vec()]);
        assert_eq!(kv.feed().events(), 8, "the history keeps every change");
    }

    #[test]
    fn an_eviction_is_a_delete_marked_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::for_data_dir(dir.path()).store;
        cfg.eviction = crate::config::Eviction::Lru;
        let kv = Kv::open(&cfg).unwrap();
        kv.set_memory_limit(3 * (1 + 26 + 10));
        let mut sub = kv.watch(all(), None, false).unwrap();
        for k in [b"a", b"b", b"c", b"d"] {
            kv.set(StoreMode::Set, k, 0, 0, &[b'v'; 10]).unwrap();
        }
        let mut evicted = Vec::new();
        while let Ok(c) = sub.rx.try_recv() {
            if c.evicted {
                assert_eq!(c.kind, ChangeKind::Delete);
                evicted.push(c.key.to_vec());
            }
        }
        assert_eq!(evicted.len(), 1, "one made room for d");
    }

    #[test]
    fn values_are_bounded() {
        let (_d, kv, _c) = kv_at(1_000);
        let mut sub = kv.watch(all(), None, true).unwrap();
        kv.set(StoreMode::Set, b"small", 0, 0, b"abc").unwrap();
        kv.set(StoreMode::Set, b"big", 0, 0, &vec![0; MAX_EVENT_VALUE + 1])
            .unwrap();
        let small = sub.rx.try_recv().unwrap();
        let big = sub.rx.try_recv().unwrap();
        assert_eq!(small.value.as_deref(), Some(&b"abc"[..]));
        assert_eq!((big.value.is_none(), big.size), (true, MAX_EVENT_VALUE + 1));
    }
}
