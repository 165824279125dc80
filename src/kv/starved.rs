//! A replica whose disk is full (or read-only, or failing) waits instead
//! of skipping or failing: the state machine's writes retry until the
//! store takes them again.
//!
//! Skipping an entry would leave this replica without a write the others
//! hold, for good; returning an error stops Raft on this node until a
//! restart (openraft treats storage errors as fatal). Waiting keeps the
//! node's items a prefix of the log: it falls behind, the group commits on
//! its majority meanwhile, and the node catches up by itself once the
//! store's own retries (`store::fault`) find the disk writable again.

use openraft::StorageError;

use super::replicated::{io_err, Applied, Proposal};
use super::Kv;
use crate::store::fault::RETRY;

/// Applies one entry, waiting while the store refuses writes for a disk
/// fault (see the module doc).
pub(super) async fn apply_when_stored(kv: &Kv, cas: u64, p: &Proposal, counted: bool) -> Applied {
    let apply = || {
        if let Err(e) = kv.evict_listed(&p.victims, cas) {
            return Applied::from_result(Err::<(), _>(e), |()| Applied::Nothing);
        }
        kv.apply_op(cas, p.now, &p.op)
    };
    let mut waited = false;
    loop {
        match super::stats::counting(counted, apply) {
            Applied::Starved => {
                if !waited {
                    tracing::error!(
                        cas,
                        "applying the log waits: the store refuses writes ({})",
                        kv.storage_problem().unwrap_or_else(|| "disk fault".into())
                    );
                    waited = true;
                }
                tokio::time::sleep(RETRY).await;
            }
            answer => {
                if waited {
                    tracing::info!(cas, "applying the log again: the store takes writes");
                }
                return answer;
            }
        }
    }
}

/// Runs `write` until it succeeds, waiting while it fails for a disk fault;
/// any other error is returned.
pub(super) async fn until_stored(
    what: &str,
    mut write: impl FnMut() -> crate::store::Result<()>,
) -> Result<(), StorageError<u64>> {
    let mut waited = false;
    loop {
        match write() {
            Ok(()) => return Ok(()),
            Err(e) if e.fault().is_some() => {
                if !waited {
                    tracing::warn!("{what} waits: {e}");
                    waited = true;
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => return Err(io_err(e)),
        }
    }
}
