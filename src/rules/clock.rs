//! The clock expiry is read against: the system's unix time, or in tests a
//! manual one that only moves when told, so TTL semantics are tested
//! without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch, as every expiry decision sees them.
/// Cloning shares the clock: a manual clock advanced through one clone is
/// advanced for all.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicU64>>);

impl Clock {
    /// The system's clock (the default).
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock standing at `unix_secs` until [`Clock::advance`] moves it.
    pub fn manual(unix_secs: u64) -> Self {
        Clock(Some(Arc::new(AtomicU64::new(unix_secs))))
    }

    /// The current unix time in seconds.
    pub fn now(&self) -> u64 {
        match &self.0 {
            None => system_now(),
            Some(t) => t.load(Ordering::Acquire),
        }
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, secs: u64) {
        if let Some(t) = &self.0 {
            t.fetch_add(secs, Ordering::AcqRel);
        }
    }
}

/// The system's unix time in seconds (0 before 1970, which never happens).
pub fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::manual(1_000);
        let shared = c.clone();
        assert_eq!(c.now(), 1_000);
        shared.advance(5);
        assert_eq!(c.now(), 1_005);
        let sys = Clock::system();
        sys.advance(1_000_000);
        assert!(sys.now().abs_diff(system_now()) <= 1);
    }
}
