//! A connection's pipelined writes, as one unit: in a group they are
//! proposed together and in order (see `replicated::runs`), so a pipeline
//! shares commit rounds instead of taking one per write; on a single node
//! each runs as its own command. Each write's outcome is the one its
//! command would have had alone.

use super::replicated::{Applied, Op};
use super::stats::bump;
use super::{
    unexpected, ArithOptions, ArithResult, DeleteOutcome, Kv, KvError, MetaGetOptions, MetaHit,
    Result, SetOptions, StoreMode, StoreOutcome,
};

/// One write of a run, as the protocols' write commands take it.
#[derive(Clone, Copy, Debug)]
pub enum RunWrite<'a> {
    /// `set`/`add`/`replace`/`append`/`prepend`/`cas` ([`Kv::set_with`]).
    Set {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        value: &'a [u8],
        opts: SetOptions,
    },
    /// `delete`, meta `md` ([`Kv::delete`]).
    Delete { key: &'a [u8], cas: Option<u64> },
    /// Meta `md <key> I` ([`Kv::invalidate`]).
    Invalidate {
        key: &'a [u8],
        cas: Option<u64>,
        exptime: Option<i64>,
        new_cas: Option<u64>,
    },
    /// `incr`/`decr`, meta `ma` ([`Kv::arith_with`]).
    Arith {
        key: &'a [u8],
        delta: u64,
        incr: bool,
        opts: ArithOptions,
    },
    /// `touch` ([`Kv::touch`]).
    Touch { key: &'a [u8], exptime: i64 },
    /// A meta `mg` that changes the item (touch, vivify, win tokens,
    /// `h`/`l`), binary `GAT`/`TOUCH` ([`Kv::meta_get`]).
    MetaGet { key: &'a [u8], opts: MetaGetOptions },
}

/// A run write's outcome, of its command's kind.
#[derive(Debug)]
pub enum RunOutcome {
    Stored(Result<StoreOutcome>),
    Deleted(Result<DeleteOutcome>),
    Arith(Result<ArithResult>),
    Touched(Result<bool>),
    MetaGot(Result<Option<MetaHit>>),
}

impl Kv {
    /// Runs `writes` in order, as one unit in a group (see the module
    /// doc); one outcome per write, in order.
    pub async fn write_run_async(&self, writes: &[RunWrite<'_>]) -> Vec<RunOutcome> {
        let Some(r) = self.replicated() else {
            return writes.iter().map(|w| self.write_now(w)).collect();
        };
        let mut early = Vec::with_capacity(writes.len());
        let mut ops = Vec::with_capacity(writes.len());
        for w in writes {
            match self.op_of(w) {
                Ok(op) => {
                    ops.push(op);
                    early.push(None);
                }
                Err(outcome) => early.push(Some(outcome)),
            }
        }
        let mut answers = r.propose_run(ops).await.into_iter();
        writes
            .iter()
            .zip(early)
            .map(|(w, early)| {
                early.unwrap_or_else(|| {
                    outcome_of(w, answers.next().expect("one answer per proposed write"))
                })
            })
            .collect()
    }

    /// One write on its own (a run of one): its command's `_async` form.
    pub async fn write_async(&self, w: RunWrite<'_>) -> RunOutcome {
        self.write_run_async(&[w])
            .await
            .pop()
            .expect("one outcome per write")
    }

    /// A single node's write: its command, at once.
    fn write_now(&self, w: &RunWrite<'_>) -> RunOutcome {
        match *w {
            RunWrite::Set {
                mode,
                key,
                flags,
                exptime,
                value,
                opts,
            } => RunOutcome::Stored(self.set_with(mode, key, flags, exptime, value, &opts)),
            RunWrite::Delete { key, cas } => RunOutcome::Deleted(self.delete(key, cas)),
            RunWrite::Invalidate {
                key,
                cas,
                exptime,
                new_cas,
            } => RunOutcome::Deleted(self.invalidate(key, cas, exptime, new_cas)),
            RunWrite::Arith {
                key,
                delta,
                incr,
                opts,
            } => RunOutcome::Arith(self.arith_with(key, delta, incr, &opts)),
            RunWrite::Touch { key, exptime } => RunOutcome::Touched(self.touch(key, exptime)),
            RunWrite::MetaGet { key, opts } => RunOutcome::MetaGot(self.meta_get(key, &opts)),
        }
    }

    /// The op a write proposes (the one its command's `_async` form
    /// proposes), or its outcome if it is refused before proposing.
    fn op_of(&self, w: &RunWrite<'_>) -> std::result::Result<Op, RunOutcome> {
        Ok(match *w {
            RunWrite::Set {
                mode,
                key,
                flags,
                exptime,
                value,
                opts,
            } => {
                if value.len() > self.max_item_size {
                    bump(&self.stats.store_too_large);
                    return Err(RunOutcome::Stored(Err(KvError::TooLarge)));
                }
                Op::Set {
                    mode,
                    key: key.to_vec(),
                    flags,
                    exptime,
                    value: value.to_vec(),
                    opts,
                }
            }
            RunWrite::Delete { key, cas } => Op::Delete {
                key: key.to_vec(),
                cas,
            },
            RunWrite::Invalidate {
                key,
                cas,
                exptime,
                new_cas,
            } => Op::Invalidate {
                key: key.to_vec(),
                cas,
                exptime,
                new_cas,
            },
            RunWrite::Arith {
                key,
                delta,
                incr,
                opts,
            } => Op::Arith {
                key: key.to_vec(),
                delta,
                incr,
                opts,
            },
            RunWrite::Touch { key, exptime } => Op::Touch {
                key: key.to_vec(),
                exptime,
            },
            RunWrite::MetaGet { key, opts } => Op::MetaGet {
                key: key.to_vec(),
                opts,
            },
        })
    }
}

/// A proposed write's answer as its command's outcome.
fn outcome_of(w: &RunWrite<'_>, answer: Result<Applied>) -> RunOutcome {
    fn kind<T: TryFrom<Applied, Error = Applied>>(answer: Result<Applied>) -> Result<T> {
        T::try_from(answer?).map_err(unexpected)
    }
    match w {
        RunWrite::Set { .. } => RunOutcome::Stored(kind(answer)),
        RunWrite::Delete { .. } | RunWrite::Invalidate { .. } => RunOutcome::Deleted(kind(answer)),
        RunWrite::Arith { .. } => RunOutcome::Arith(kind(answer)),
        RunWrite::Touch { .. } => RunOutcome::Touched(kind(answer)),
        RunWrite::MetaGet { .. } => RunOutcome::MetaGot(kind(answer)),
    }
}
