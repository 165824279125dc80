//! Applying a committed log entry on this node (the replicated state
//! machine's step): the command runs here with the time and CAS the log
//! decided, under [`APPLYING`], so it is not proposed again and every
//! replica decides the same.

use super::replicated::{self, Applied, Op};
use super::{Kv, MetaGetOptions, APPLYING};

impl Kv {
    /// Runs a committed entry's command here (the state machine's apply):
    /// with the entry's time and the CAS the log gives it
    /// ([`proposals::cas_of`]), without proposing it again.
    pub(super) fn apply_op(&self, cas: u64, now: u64, op: &replicated::Op) -> replicated::Applied {
        // An entry applied again after a crash finds its own (or a later)
        // write already there: skip it (see `replicated`).
        let written_by_later =
            |key: &[u8]| matches!(self.store.get(key), Ok(Some(item)) if item.cas() >= cas);
        self.note_applying(cas);
        APPLYING.with(|a| a.set(Some((now, cas))));
        let answer = match op {
            Op::Set {
                mode,
                key,
                flags,
                exptime,
                value,
                opts,
            } => {
                if opts.new_cas.is_none() && written_by_later(key) {
                    Applied::Nothing
                } else {
                    Applied::from_result(
                        self.set_with(*mode, key, *flags, *exptime, value, opts),
                        Applied::Stored,
                    )
                }
            }
            Op::Arith {
                key,
                delta,
                incr,
                opts,
            } => {
                if opts.new_cas.is_none() && written_by_later(key) {
                    Applied::Nothing
                } else {
                    Applied::from_result(self.arith_with(key, *delta, *incr, opts), Applied::Arith)
                }
            }
            Op::Delete { key, cas } => {
                Applied::from_result(self.delete(key, *cas), Applied::Deleted)
            }
            Op::Touch { key, exptime } => {
                Applied::from_result(self.touch(key, *exptime), Applied::Touched)
            }
            Op::FlushAll { delay } => {
                Applied::from_result(self.flush_all(*delay), |()| Applied::Flushed)
            }
            Op::MetaGet { key, opts } => {
                if written_by_later(key) {
                    Applied::Nothing
                } else {
                    // `h`/`l` read the item's bits; turning on access
                    // recording by plain reads would write on one node only.
                    let opts = MetaGetOptions {
                        report_access: false,
                        ..*opts
                    };
                    Applied::from_result(self.meta_get(key, &opts), Applied::MetaGot)
                }
            }
            Op::Invalidate {
                key,
                cas,
                exptime,
                new_cas,
            } => {
                if new_cas.is_none() && written_by_later(key) {
                    Applied::Nothing
                } else {
                    Applied::from_result(
                        self.invalidate(key, *cas, *exptime, *new_cas),
                        Applied::Deleted,
                    )
                }
            }
        };
        APPLYING.with(|a| a.set(None));
        answer
    }
}
