//! memcached's expiry rules, in one place (the time they are read against
//! comes from [`super::Clock`]).
//!
//! An exptime of 0 never expires; 1..=30 days is relative to now; anything
//! larger is an absolute unix time; a negative one is already expired.

/// Relative exptimes above this are absolute unix times (memcached's REALTIME_MAXDELTA).
pub const MAX_RELATIVE: i64 = 60 * 60 * 24 * 30;

/// Stored for items that are expired on arrival: a unix time in the past.
pub const ALREADY_EXPIRED: u64 = 1;

/// Turns a client's exptime into the absolute time stored with the item.
pub fn absolute(exptime: i64, now: u64) -> u64 {
    match exptime {
        0 => 0,
        e if e < 0 => ALREADY_EXPIRED,
        e if e <= MAX_RELATIVE => now + e as u64,
        e => e as u64,
    }
}

/// Whether an item with this stored exptime is gone at `now`.
pub fn is_expired(exptime: u64, now: u64) -> bool {
    exptime != 0 && exptime <= now
}

/// Seconds left before expiry, `None` for items that never expire.
pub fn remaining(exptime: u64, now: u64) -> Option<u64> {
    (exptime != 0).then(|| exptime.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_memcached_rules() {
        let now = 1_800_000_000;
        assert_eq!(absolute(0, now), 0);
        assert_eq!(absolute(10, now), now + 10);
        assert_eq!(absolute(MAX_RELATIVE, now), now + MAX_RELATIVE as u64);
        assert_eq!(absolute(MAX_RELATIVE + 1, now), MAX_RELATIVE as u64 + 1);
        assert!(is_expired(absolute(MAX_RELATIVE + 1, now), now));
        assert!(is_expired(absolute(-1, now), now));
        assert!(!is_expired(absolute(1_900_000_000, now), now));
        assert!(!is_expired(0, now));
        assert_eq!(remaining(now + 5, now), Some(5));
        assert_eq!(remaining(0, now), None);
    }
}
