//! The writes front ends await: in a replicated group a write waits for
//! its entry's commit, and it waits here as a future on the connection's
//! task.
//!
//! The synchronous commands (`Kv::set_with`, `Kv::delete`, ...) are what
//! tests, the CSV import and a single node use; in a group they block their
//! thread on the commit (`wait_for`, `block_in_place`). With 50 clients
//! that meant 50 threads parked on futexes and a core handed between
//! runtime threads for every write: two thirds of the leader's CPU went to
//! context switches. The front ends call these instead; on a single node
//! each is its synchronous twin and never suspends. The op each builds is
//! the one the synchronous command replicates (they call these through
//! `wait_for`), so the two paths cannot drift apart.

use super::replicated::{Applied, Op, Replicated};
use super::stats::bump;
use super::{
    unexpected, ArithOptions, ArithOutcome, ArithResult, DeleteOutcome, Kv, KvError,
    MetaGetOptions, MetaHit, Result, SetOptions, StoreMode, StoreOutcome,
};

impl Kv {
    /// [`Kv::set_with`], awaiting the group's commit.
    pub async fn set_with_async(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        opts: &SetOptions,
    ) -> Result<StoreOutcome> {
        let Some(r) = self.replicated() else {
            return self.set_with(mode, key, flags, exptime, value, opts);
        };
        if value.len() > self.max_item_size {
            bump(&self.stats.store_too_large);
            return Err(KvError::TooLarge);
        }
        let op = Op::Set {
            mode,
            key: key.to_vec(),
            flags,
            exptime,
            value: value.to_vec(),
            opts: *opts,
        };
        propose_as(r, op).await
    }

    /// [`Kv::meta_get_from`] (`mg`): in a group an `mg` that writes (touch,
    /// vivify, win tokens, `h`/`l`) is a command in the log, and this
    /// awaits its commit as a future instead of parking the thread.
    pub async fn meta_get_async(
        &self,
        key: &[u8],
        opts: &MetaGetOptions,
        point: super::ReadPoint,
    ) -> Result<Option<MetaHit>> {
        match self.replicated() {
            Some(r) if opts.writes() => {
                let op = Op::MetaGet {
                    key: key.to_vec(),
                    opts: *opts,
                };
                propose_as(r, op).await
            }
            _ => self.meta_get_from(key, opts, point),
        }
    }

    /// [`Kv::set`], awaiting the group's commit.
    pub async fn set_async(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
    ) -> Result<StoreOutcome> {
        self.set_with_async(mode, key, flags, exptime, value, &SetOptions::default())
            .await
    }

    /// [`Kv::touch`], awaiting the group's commit.
    pub async fn touch_async(&self, key: &[u8], exptime: i64) -> Result<bool> {
        let Some(r) = self.replicated() else {
            return self.touch(key, exptime);
        };
        let op = Op::Touch {
            key: key.to_vec(),
            exptime,
        };
        propose_as(r, op).await
    }

    /// [`Kv::get_and_touch`] (`gat`), awaiting the group's commit of the
    /// touch; the read is this node's.
    pub async fn get_and_touch_async(
        &self,
        key: &[u8],
        exptime: i64,
    ) -> Result<Option<super::Item>> {
        if self.replicated().is_none() {
            return self.get_and_touch(key, exptime);
        }
        Ok(if self.touch_async(key, exptime).await? {
            self.peek(key)?
        } else {
            None
        })
    }

    /// [`Kv::delete`], awaiting the group's commit.
    pub async fn delete_async(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        let Some(r) = self.replicated() else {
            return self.delete(key, cas);
        };
        let op = Op::Delete {
            key: key.to_vec(),
            cas,
        };
        propose_as(r, op).await
    }

    /// [`Kv::arith_with`], awaiting the group's commit.
    pub async fn arith_with_async(
        &self,
        key: &[u8],
        delta: u64,
        incr: bool,
        opts: &ArithOptions,
    ) -> Result<ArithResult> {
        let Some(r) = self.replicated() else {
            return self.arith_with(key, delta, incr, opts);
        };
        let op = Op::Arith {
            key: key.to_vec(),
            delta,
            incr,
            opts: *opts,
        };
        propose_as(r, op).await
    }

    /// [`Kv::incr_decr`], awaiting the group's commit.
    pub async fn incr_decr_async(
        &self,
        key: &[u8],
        delta: u64,
        incr: bool,
    ) -> Result<ArithOutcome> {
        let result = self
            .arith_with_async(key, delta, incr, &ArithOptions::default())
            .await?;
        Ok(ArithOutcome::from(result))
    }

    /// [`Kv::invalidate`] (`md <key> I`), awaiting the group's commit.
    pub async fn invalidate_async(
        &self,
        key: &[u8],
        cas: Option<u64>,
        exptime: Option<i64>,
        new_cas: Option<u64>,
    ) -> Result<DeleteOutcome> {
        let Some(r) = self.replicated() else {
            return self.invalidate(key, cas, exptime, new_cas);
        };
        let op = Op::Invalidate {
            key: key.to_vec(),
            cas,
            exptime,
            new_cas,
        };
        propose_as(r, op).await
    }

    /// [`Kv::flush_all`], awaiting the group's commit.
    pub async fn flush_all_async(&self, delay: i64) -> Result<()> {
        let Some(r) = self.replicated() else {
            return self.flush_all(delay);
        };
        propose_as(r, Op::FlushAll { delay }).await
    }
}

/// Proposes `op` and returns its answer as the kind the op's command
/// expects (see [`expects`]); any other kind is a bug, logged.
async fn propose_as<T: TryFrom<Applied, Error = Applied>>(r: &Replicated, op: Op) -> Result<T> {
    T::try_from(r.propose(op).await?).map_err(unexpected)
}

/// The answer each kind of proposal expects, as `TryFrom<Applied>`.
macro_rules! expects {
    ($($ty:ty: $pat:pat => $val:expr;)*) => {$(
        impl TryFrom<Applied> for $ty {
            type Error = Applied;
            fn try_from(answer: Applied) -> std::result::Result<Self, Applied> {
                match answer {
                    $pat => Ok($val),
                    other => Err(other),
                }
            }
        }
    )*};
}

expects! {
    Option<MetaHit>: Applied::MetaGot(hit) => hit;
    StoreOutcome: Applied::Stored(outcome) => outcome;
    bool: Applied::Touched(found) => found;
    DeleteOutcome: Applied::Deleted(outcome) => outcome;
    ArithResult: Applied::Arith(result) => result;
    (): Applied::Flushed => ();
}
