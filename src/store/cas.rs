//! CAS values: unique and increasing, never handed out twice, even across
//! a crash.
//!
//! Writing the last value handed out on every write would cost a sled write
//! each time; instead a block of [`CAS_BLOCK`] values is reserved on disk
//! (and synced) before the first of them is handed out, and a restart
//! resumes after the reservation. A restart skips the rest of the block,
//! which costs nothing: CAS values need only be unique, not dense.

use std::sync::atomic::Ordering;

use super::{Result, Store};

/// How many CAS values are reserved on disk at a time. A restart resumes
/// after the reservation, so a CAS value is never handed out twice.
const CAS_BLOCK: u64 = 1 << 20;
/// The first CAS value not yet reserved (little-endian `u64`).
const META_CAS_RESERVED: &[u8] = b"cas_reserved";

/// Where a store opened on `meta` resumes handing out CAS values: after
/// every value reserved before (1 for a new store).
pub(super) fn reserved(meta: &sled::Tree) -> Result<u64> {
    Ok(meta
        .get(META_CAS_RESERVED)?
        .and_then(|v| v.as_ref().try_into().ok().map(u64::from_le_bytes))
        .unwrap_or(1))
}

impl Store {
    /// A fresh CAS value: unique, increasing, never reused across restarts.
    pub fn next_cas(&self) -> Result<u64> {
        let cas = self.next_cas.fetch_add(1, Ordering::Relaxed);
        if cas >= self.cas_limit.load(Ordering::Acquire) {
            let _guard = self.cas_reserve.lock();
            let limit = self.cas_limit.load(Ordering::Acquire);
            if cas >= limit {
                let new_limit = cas.max(limit) + CAS_BLOCK;
                self.meta
                    .insert(META_CAS_RESERVED, &new_limit.to_le_bytes())?;
                self.sync_files()?;
                self.cas_limit.store(new_limit, Ordering::Release);
            }
        }
        Ok(cas)
    }

    /// Makes sure CAS values handed out from now on are all above `max`
    /// (imported items keep their CAS; new ones must never collide with it).
    pub fn reserve_cas_above(&self, max: u64) -> Result<()> {
        let _guard = self.cas_reserve.lock();
        if self.next_cas.load(Ordering::Acquire) > max {
            return Ok(());
        }
        let next = max + 1;
        let limit = next + CAS_BLOCK;
        self.meta.insert(META_CAS_RESERVED, &limit.to_le_bytes())?;
        self.sync_files()?;
        self.next_cas.fetch_max(next, Ordering::AcqRel);
        self.cas_limit.store(limit, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::reopen;
    use super::*;

    #[test]
    fn cas_values_increase_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::for_data_dir(dir.path()).store;
        let last = {
            let s = Store::open(&cfg).unwrap();
            let a = s.next_cas().unwrap();
            let b = s.next_cas().unwrap();
            assert!(b > a);
            b
        };
        let s = reopen(&cfg);
        assert!(s.next_cas().unwrap() > last);
    }
}
