//! Operations only the meta and binary protocols need, on the same store
//! and lock manager as every other command: reads that report and update
//! per-item state (hit before, last access, stale, win token), and
//! invalidation. Storage and arithmetic extras live in [`Kv::set_with`] and
//! [`Kv::arith_with`] so that there is one copy of each command's logic.

use super::feed::ChangeKind;
use super::{bump, expiry, state, DeleteOutcome, Item, Kv, Lookup, Result, StoreError};

/// A read rewrites an item just to refresh its access time at most this
/// often (memcached's ITEM_UPDATE_INTERVAL), so hot keys do not turn every
/// read into a write. The first read of each item version always records
/// itself (the `h` bit).
pub const ACCESS_UPDATE_INTERVAL: u64 = 60;

/// Extras of a storage command beyond [`super::StoreMode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetOptions {
    /// append/prepend only if the item's CAS equals this (set and replace
    /// use [`super::StoreMode::Cas`]).
    pub cas: Option<u64>,
    /// With [`super::StoreMode::Cas`]: a CAS older than the item's still
    /// stores, and the new item is marked stale (meta `I`).
    pub invalidate: bool,
    /// The new item's CAS instead of a fresh one (meta `E`).
    pub new_cas: Option<u64>,
    /// The client gave the key base64-encoded (meta `b`): remembered with
    /// the item so that `k` echoes it the same way.
    pub binary_key: bool,
}

/// Extras of incr/decr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArithOptions {
    /// Only if the item's CAS equals this.
    pub cas: Option<u64>,
    /// On a miss, create the counter with (initial value, exptime).
    pub vivify: Option<(u64, i64)>,
    /// New exptime on success.
    pub touch: Option<i64>,
    /// The new item's CAS instead of a fresh one (meta `E`).
    pub new_cas: Option<u64>,
    /// A created item's key was given base64-encoded (meta `b`).
    pub binary_key: bool,
}

/// What incr/decr with [`ArithOptions`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ArithResult {
    Value {
        value: u64,
        cas: u64,
        /// The item's absolute exptime afterwards (0 = never).
        exptime: u64,
        /// Created by `vivify`.
        created: bool,
    },
    NotFound,
    NonNumeric,
    /// The item's CAS differs from the required one.
    Exists,
}

/// Options of a meta get (`mg`), binary touch and gat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetaGetOptions {
    /// New exptime (`T`; touch/gat).
    pub touch: Option<i64>,
    /// On a miss, create an empty item with this exptime and hand this
    /// client the win token (`N`).
    pub vivify: Option<i64>,
    /// Hand out the win token if the item's remaining TTL is below this (`R`).
    pub recache: Option<i64>,
    /// Leave the fetched bit and access time alone (`u`).
    pub no_update: bool,
    /// A vivified item's key was given base64-encoded (`b`).
    pub key_binary: bool,
    /// The client asks for access information (`h` or `l`): turns on
    /// access recording by plain reads from then on (see
    /// [`crate::store::Store::enable_access_tracking`]).
    pub report_access: bool,
}

/// A meta get's hit: the item as it is now, plus what it was before this
/// read (memcached reports `h`, `l` and `t` from before the read's updates).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetaHit {
    /// In a group the log's answer carries it as its raw record.
    #[serde(with = "raw_item")]
    pub item: Item,
    /// exptime before `T` (0 for a vivified item).
    pub old_exptime: u64,
    /// Fetched before this read (`h`).
    pub fetched: bool,
    /// Last access before this read, unix secs (`l`).
    pub atime: u64,
    /// Created by `N` on this read.
    pub created: bool,
    /// This client won the right to recache (`W`).
    pub won: bool,
    /// Another client already holds the win token (`Z`).
    pub token_sent: bool,
    /// Invalidated (`X`).
    pub stale: bool,
}

/// An [`Item`] as the bytes of its record (a replicated `mg`'s answer
/// travels from the leader's state machine to the node that asked).
mod raw_item {
    use super::Item;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(item: &Item, s: S) -> Result<S::Ok, S::Error> {
        <[u8]>::serialize(item.raw().as_ref(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        let bytes = Vec::<u8>::deserialize(d)?;
        Item::from_raw(bytes.into()).map_err(serde::de::Error::custom)
    }
}

impl MetaGetOptions {
    /// Whether this read changes the item (or asks about access that only
    /// the log records, in a group): touch, vivify, win tokens, `h`/`l`.
    pub fn writes(&self) -> bool {
        self.touch.is_some()
            || self.vivify.is_some()
            || self.recache.is_some()
            || self.report_access
    }
}

impl Kv {
    /// `mg` in a replicated group. A read that changes the item (touch,
    /// vivify, win tokens, access reporting) is a command in the log, so
    /// every replica makes the same change with the leader's clock and the
    /// entry's CAS; the answer is the one the state machine computed. Any
    /// other `mg` reads this node's items (after the read barrier) and
    /// records no access: in a group the fetched bit and access time move
    /// only through the log.
    fn replicated_meta_get(
        &self,
        r: &std::sync::Arc<super::replicated::Replicated>,
        key: &[u8],
        opts: &MetaGetOptions,
        point: super::ReadPoint,
    ) -> Result<Option<MetaHit>> {
        use super::replicated::{Applied, Op};
        let through_log = |opts: &MetaGetOptions| {
            let op = Op::MetaGet {
                key: key.to_vec(),
                opts: *opts,
            };
            match self.replicate(r, op)? {
                Applied::MetaGot(hit) => Ok(hit),
                other => Err(super::unexpected(other)),
            }
        };
        if opts.writes() {
            return through_log(opts);
        }
        let Some(item) = self.get_from(key, point)? else {
            return Ok(None);
        };
        let bits = item.state();
        if bits & state::STALE != 0 && bits & state::TOKEN_SENT == 0 {
            // The first reader of an invalidated item wins the token to
            // refresh it: one winner in the whole group, so the log decides.
            return through_log(opts);
        }
        Ok(Some(MetaHit {
            old_exptime: item.exptime(),
            fetched: item.fetched(),
            atime: item.atime().unwrap_or(0),
            created: false,
            won: false,
            token_sent: bits & state::TOKEN_SENT != 0,
            stale: bits & state::STALE != 0,
            item,
        }))
    }

    /// Records a plain read of `item` (the fetched bit, and the access time
    /// at most every [`ACCESS_UPDATE_INTERVAL`]); best effort and
    /// lock-free: if the item changed meanwhile, the new version is simply
    /// unread. Only called once some client has asked for access
    /// information: until then reads write nothing.
    pub(super) fn note_access(&self, key: &[u8], item: &Item, now: u64) {
        let fetched = item.state() & state::FETCHED != 0;
        let fresh = item
            .atime()
            .is_some_and(|t| now < t.saturating_add(ACCESS_UPDATE_INTERVAL));
        if fetched && fresh {
            return;
        }
        let atime = if fresh {
            item.atime().unwrap_or(now)
        } else {
            now
        };
        let record = item.rewrite(item.exptime(), item.state() | state::FETCHED, atime);
        if let Err(e) = self.store.replace_if_unchanged(key, item, record) {
            tracing::warn!("recording an item access failed: {e}");
        }
    }

    /// `mg` (and binary touch/gat): one locked read that may vivify, touch,
    /// hand out a win token and record the access; counted like memcached
    /// (a touch when `touch` is set, else a get).
    pub fn meta_get(&self, key: &[u8], opts: &MetaGetOptions) -> Result<Option<MetaHit>> {
        self.meta_get_from(key, opts, self.read_point())
    }

    /// [`Kv::meta_get`] reading from `point` (see `fresh`): an `mg` that
    /// awaited its read point already reads without waiting again.
    pub fn meta_get_from(
        &self,
        key: &[u8],
        opts: &MetaGetOptions,
        point: super::ReadPoint,
    ) -> Result<Option<MetaHit>> {
        if let Some(r) = self.replicated() {
            return self.replicated_meta_get(r, key, opts, point);
        }
        if opts.report_access {
            self.store.enable_access_tracking()?;
        }
        let _guard = self.locks.lock(key);
        let now = self.now();
        let touching = opts.touch.is_some();
        if touching {
            bump(&self.stats.cmd_touch);
        } else {
            bump(&self.stats.cmd_get);
        }
        let (item, created) = match self.lookup(key, now, point)? {
            Lookup::Hit(item) => (item, false),
            _ if opts.vivify.is_some() => {
                let cas = self.fresh_cas()?;
                let bits = if opts.key_binary {
                    state::KEY_BINARY
                } else {
                    0
                };
                (
                    Item::from_raw(Item::encode_with(0, 0, cas, bits, now, &[]).into())
                        .map_err(StoreError::from)?,
                    true,
                )
            }
            // An expired item was already counted as `get_expired` by
            // the lookup, as for every command.
            _ => {
                bump(if touching {
                    &self.stats.touch_misses
                } else {
                    &self.stats.get_misses
                });
                return Ok(None);
            }
        };
        bump(if touching {
            &self.stats.touch_hits
        } else {
            &self.stats.get_hits
        });
        let bits = item.state();
        let token_sent = bits & state::TOKEN_SENT != 0;
        let stale = bits & state::STALE != 0;
        let fetched = bits & state::FETCHED != 0;
        let old_exptime = item.exptime();
        let mut exptime = old_exptime;
        if let Some(ttl) = opts.touch {
            exptime = expiry::absolute(ttl, now);
        }
        if let (true, Some(ttl)) = (created, opts.vivify) {
            exptime = expiry::absolute(ttl, now);
        }
        let mut won = created;
        if let Some(recache) = opts.recache {
            let below = exptime != 0 && exptime < expiry::absolute(recache, now);
            won |= !token_sent && !created && below;
        }
        // A stale item hands its first reader the token to refresh it.
        won |= stale && !token_sent;
        let mut new_bits = bits;
        if won {
            new_bits |= state::TOKEN_SENT;
        }
        let atime = item.atime().unwrap_or(now);
        let mut new_atime = atime;
        if !opts.no_update {
            new_bits |= state::FETCHED;
            if now >= atime.saturating_add(ACCESS_UPDATE_INTERVAL) {
                new_atime = now;
            }
        }
        let changed = created || new_bits != bits || exptime != old_exptime || new_atime != atime;
        let item = if changed {
            let record = item.rewrite(exptime, new_bits, new_atime);
            // Watchers hear of a new item or TTL, not of access bookkeeping.
            let visible = created || exptime != old_exptime;
            if expiry::is_expired(exptime, now) {
                if let Some(old) = self.store.remove(key)? {
                    self.note_removed(ChangeKind::Expire, key, Some(&old));
                }
            } else {
                self.store.insert(key, record.clone())?;
            }
            let item = Item::from_raw(record.into()).map_err(StoreError::from)?;
            if visible && !expiry::is_expired(exptime, now) {
                self.note_item(key, &item);
            }
            item
        } else {
            item
        };
        Ok(Some(MetaHit {
            item,
            old_exptime: if created { 0 } else { old_exptime },
            fetched,
            atime,
            created,
            won,
            token_sent,
            stale,
        }))
    }

    /// `md <key> I`: instead of deleting, mark the item stale (so the next
    /// reader wins the token to refresh it), give it a new CAS (`new_cas`
    /// or a fresh one) and optionally a new exptime.
    pub fn invalidate(
        &self,
        key: &[u8],
        cas: Option<u64>,
        exptime: Option<i64>,
        new_cas: Option<u64>,
    ) -> Result<DeleteOutcome> {
        if self.replicated().is_some() {
            return super::wait_for(self.invalidate_async(key, cas, exptime, new_cas));
        }
        let _guard = self.locks.lock(key);
        let now = self.now();
        let Some(item) = self.live(key, now)? else {
            bump(&self.stats.delete_misses);
            return Ok(DeleteOutcome::NotFound);
        };
        if cas.is_some_and(|want| want != item.cas()) {
            bump(&self.stats.delete_misses);
            return Ok(DeleteOutcome::Exists);
        }
        let exp = exptime.map_or(item.exptime(), |t| expiry::absolute(t, now));
        let bits = (item.state() | state::STALE) & !state::TOKEN_SENT;
        let cas = match new_cas {
            Some(cas) => cas,
            None => self.fresh_cas()?,
        };
        let atime = item.atime().unwrap_or(now);
        let record = Item::encode_with(item.flags(), exp, cas, bits, atime, &[item.value()]);
        if expiry::is_expired(exp, now) {
            self.store.remove(key)?;
            self.note_removed(ChangeKind::Delete, key, Some(&item));
        } else {
            self.store.insert(key, record)?;
            self.note_set(key, item.flags(), exp, cas, &[item.value()]);
        }
        Ok(DeleteOutcome::Deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::super::StoreMode;
    use super::*;

    fn kv() -> (tempfile::TempDir, Kv) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        (dir, Kv::new(crate::store::Store::open(&cfg).unwrap(), 1024))
    }

    /// A store whose clock only moves when the test says so.
    fn kv_at(unix_secs: u64) -> (tempfile::TempDir, Kv, crate::rules::Clock) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let clock = crate::rules::Clock::manual(unix_secs);
        let store = crate::store::Store::open(&cfg).unwrap();
        (dir, Kv::with_clock(store, 1024, clock.clone()), clock)
    }

    #[test]
    fn mg_of_an_expired_item_counts_one_get_expired() {
        let (_d, kv, clock) = kv_at(1_800_000_000);
        kv.set(StoreMode::Set, b"k", 0, 10, b"v").unwrap();
        let get = MetaGetOptions::default();
        assert!(kv.meta_get(b"k", &get).unwrap().is_some(), "alive at 0 s");
        clock.advance(9);
        assert!(kv.meta_get(b"k", &get).unwrap().is_some(), "alive at 9 s");
        clock.advance(1);
        assert!(kv.meta_get(b"k", &get).unwrap().is_none(), "gone at 10 s");
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(count(&kv.stats.get_expired), 1);
        assert_eq!(count(&kv.stats.get_misses), 1);
        assert_eq!(count(&kv.stats.get_hits), 2);
    }

    #[test]
    fn plain_reads_write_nothing_until_a_client_asks_for_access_info() {
        let (_d, kv) = kv();
        kv.set(StoreMode::Set, b"k", 0, 0, b"v").unwrap();
        let written = kv.store.generation();
        kv.get(b"k").unwrap();
        assert_eq!(kv.store.generation(), written, "a get before tracking");
        let asks = MetaGetOptions {
            report_access: true,
            ..MetaGetOptions::default()
        };
        assert!(!kv.meta_get(b"k", &asks).unwrap().unwrap().fetched);
        kv.set(StoreMode::Set, b"k", 0, 0, b"w").unwrap();
        let written = kv.store.generation();
        kv.get(b"k").unwrap();
        assert_eq!(kv.store.generation(), written + 1, "tracking is on");
        assert!(kv.meta_get(b"k", &asks).unwrap().unwrap().fetched);
    }

    #[test]
    fn first_read_sets_hit_bit_once() {
        let (_d, kv) = kv();
        kv.set(StoreMode::Set, b"k", 0, 0, b"v").unwrap();
        let opts = MetaGetOptions {
            report_access: true,
            ..MetaGetOptions::default()
        };
        assert!(!kv.meta_get(b"k", &opts).unwrap().unwrap().fetched);
        assert!(kv.meta_get(b"k", &opts).unwrap().unwrap().fetched);
        kv.set(StoreMode::Set, b"k", 0, 0, b"w").unwrap();
        kv.get(b"k").unwrap();
        assert!(
            kv.meta_get(b"k", &opts).unwrap().unwrap().fetched,
            "text get counts"
        );
        kv.set(StoreMode::Set, b"u", 0, 0, b"v").unwrap();
        let quiet = MetaGetOptions {
            no_update: true,
            ..opts
        };
        kv.meta_get(b"u", &quiet).unwrap();
        assert!(!kv.meta_get(b"u", &opts).unwrap().unwrap().fetched);
    }

    #[test]
    fn invalidation_hands_out_one_win_token() {
        let (_d, kv) = kv();
        let StoreOutcome::Stored { cas, .. } = kv.set(StoreMode::Set, b"k", 0, 0, b"v").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            kv.invalidate(b"k", Some(cas + 1), None, None).unwrap(),
            DeleteOutcome::Exists
        );
        assert_eq!(
            kv.invalidate(b"k", Some(cas), Some(30), None).unwrap(),
            DeleteOutcome::Deleted
        );
        let opts = MetaGetOptions::default();
        let first = kv.meta_get(b"k", &opts).unwrap().unwrap();
        assert!(first.stale && first.won && !first.token_sent);
        assert_ne!(first.item.cas(), cas);
        let second = kv.meta_get(b"k", &opts).unwrap().unwrap();
        assert!(second.stale && !second.won && second.token_sent);
        // A set with the old CAS and `invalidate` still stores, stale.
        let set = SetOptions {
            invalidate: true,
            ..Default::default()
        };
        assert!(matches!(
            kv.set_with(StoreMode::Cas(cas), b"k", 0, 0, b"n", &set)
                .unwrap(),
            StoreOutcome::Stored { .. }
        ));
        assert!(kv.meta_get(b"k", &opts).unwrap().unwrap().stale);
    }

    #[test]
    fn vivify_and_recache() {
        let (_d, kv) = kv();
        let viv = MetaGetOptions {
            vivify: Some(30),
            ..Default::default()
        };
        let hit = kv.meta_get(b"n", &viv).unwrap().unwrap();
        assert!(hit.created && hit.won && hit.item.value().is_empty());
        let again = kv.meta_get(b"n", &viv).unwrap().unwrap();
        assert!(!again.created && !again.won && again.token_sent);
        kv.set(StoreMode::Set, b"r", 0, 10, b"v").unwrap();
        let recache = MetaGetOptions {
            recache: Some(30),
            ..Default::default()
        };
        assert!(kv.meta_get(b"r", &recache).unwrap().unwrap().won);
        assert!(!kv.meta_get(b"r", &recache).unwrap().unwrap().won);
    }

    #[test]
    fn explicit_cas_and_arith_extras() {
        let (_d, kv) = kv();
        let e = SetOptions {
            new_cas: Some(777),
            ..Default::default()
        };
        assert_eq!(
            kv.set_with(StoreMode::Set, b"k", 0, 0, b"1", &e).unwrap(),
            StoreOutcome::Stored {
                cas: 777,
                created: true
            }
        );
        let wrong = ArithOptions {
            cas: Some(1),
            ..Default::default()
        };
        assert_eq!(
            kv.arith_with(b"k", 1, true, &wrong).unwrap(),
            ArithResult::Exists
        );
        let viv = ArithOptions {
            vivify: Some((5, 0)),
            ..Default::default()
        };
        assert!(matches!(
            kv.arith_with(b"c", 1, true, &viv).unwrap(),
            ArithResult::Value {
                value: 5,
                created: true,
                ..
            }
        ));
        assert!(matches!(
            kv.arith_with(b"c", 1, true, &viv).unwrap(),
            ArithResult::Value {
                value: 6,
                created: false,
                ..
            }
        ));
        let app = SetOptions {
            cas: Some(1),
            ..Default::default()
        };
        assert_eq!(
            kv.set_with(StoreMode::Append, b"k", 0, 0, b"x", &app)
                .unwrap(),
            StoreOutcome::Exists
        );
    }

    use super::super::StoreOutcome;
}
