//! What the Raft log of a replicated group carries: one [`Proposal`] per
//! entry (a client's command, [`Op`], stamped by the leader), and what
//! applying it answered ([`Applied`]). Commands, not results: every replica
//! applies them with the same inputs and decides the same (see
//! [`super::replicated`]).

use serde::{Deserialize, Serialize};

use super::{
    ArithOptions, ArithResult, DeleteOutcome, KvError, MetaGetOptions, MetaHit, SetOptions,
    StoreMode, StoreOutcome,
};

/// One log entry's command, stamped by the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Proposal {
    /// The leader's unix time when it proposed: every replica reads the
    /// command's exptimes and delays against it.
    pub now: u64,
    /// (proposer, sequence): a retried forward is applied once. The
    /// proposer part is drawn at random when the process starts, so a
    /// restarted node never reuses an id its earlier run proposed.
    pub id: (u64, u64),
    pub op: Op,
    /// Keys every replica removes before applying `op`: the leader's
    /// `--eviction lru` victims (see `kv::evict`).
    pub victims: Vec<Vec<u8>>,
}

/// A client write, as the log carries it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Op {
    Set {
        mode: StoreMode,
        key: Vec<u8>,
        flags: u32,
        exptime: i64,
        value: Vec<u8>,
        opts: SetOptions,
    },
    Arith {
        key: Vec<u8>,
        delta: u64,
        incr: bool,
        opts: ArithOptions,
    },
    Delete {
        key: Vec<u8>,
        cas: Option<u64>,
    },
    Touch {
        key: Vec<u8>,
        exptime: i64,
    },
    FlushAll {
        delay: i64,
    },
    /// An `mg` that changes the item (see `Kv::replicated_meta_get`).
    MetaGet {
        key: Vec<u8>,
        opts: MetaGetOptions,
    },
    /// `md <key> I`.
    Invalidate {
        key: Vec<u8>,
        cas: Option<u64>,
        exptime: Option<i64>,
        new_cas: Option<u64>,
    },
}

/// What applying an entry answered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Applied {
    /// A Raft entry of its own (blank, membership): no client waits on it.
    Nothing,
    Stored(StoreOutcome),
    Arith(ArithResult),
    Deleted(DeleteOutcome),
    Touched(bool),
    Flushed,
    MetaGot(Option<MetaHit>),
    TooLarge,
    NoMemory,
    /// The store failed on this node (logged there).
    Failed,
    /// The store refused the write for a disk fault (full, read-only,
    /// failing). Never leaves the state machine: [`StateMachine::apply`]
    /// waits and applies the entry again, so no replica skips an entry.
    Starved,
}

impl Applied {
    pub(super) fn from_result<T>(r: Result<T, KvError>, ok: impl FnOnce(T) -> Applied) -> Applied {
        match r {
            Ok(v) => ok(v),
            Err(KvError::TooLarge) => Applied::TooLarge,
            Err(KvError::NoMemory) => Applied::NoMemory,
            Err(e) if e.storage_fault().is_some() => Applied::Starved,
            Err(e) => {
                tracing::error!("applying a replicated write failed: {e}");
                Applied::Failed
            }
        }
    }

    /// The answer as the non-replicated method would have returned it.
    pub fn into_result(self) -> Result<Applied, KvError> {
        match self {
            Applied::TooLarge => Err(KvError::TooLarge),
            Applied::NoMemory => Err(KvError::NoMemory),
            Applied::Failed | Applied::Starved => {
                Err(KvError::Replica("the store failed on the leader"))
            }
            other => Ok(other),
        }
    }
}
