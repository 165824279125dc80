//! The lock manager: striped per-key locks.
//!
//! Every write to a key, from either front end, runs while holding that
//! key's stripe, so read-modify-write commands (add, cas, append, incr,
//! HTTP conditional PUT …) can never lose an update. Locks are plain
//! synchronous mutexes held only around store calls, never across I/O or
//! an `.await`, so a stripe is held for microseconds.

use std::hash::BuildHasher;

use parking_lot::{Mutex, MutexGuard};

/// Number of stripes; a power of two so the hash can be masked.
const DEFAULT_STRIPES: usize = 4096;

pub struct LockManager {
    stripes: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

/// Proof that the holder has exclusive write access to a key's stripe.
pub type KeyGuard<'a> = MutexGuard<'a, ()>;

impl Default for LockManager {
    fn default() -> Self {
        Self::with_stripes(DEFAULT_STRIPES)
    }
}

impl LockManager {
    pub fn with_stripes(stripes: usize) -> Self {
        let n = stripes.next_power_of_two();
        LockManager {
            stripes: (0..n).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }

    /// Blocks until the caller holds `key`'s stripe.
    pub fn lock(&self, key: &[u8]) -> KeyGuard<'_> {
        let idx = self.hasher.hash_one(key) as usize & (self.stripes.len() - 1);
        self.stripes[idx].lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn serializes_writers_of_one_key() {
        let locks = Arc::new(LockManager::with_stripes(8));
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (locks, counter) = (locks.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let _g = locks.lock(b"k");
                        // A deliberately non-atomic read-modify-write.
                        let v = counter.load(std::sync::atomic::Ordering::Relaxed);
                        counter.store(v + 1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 40_000);
    }
}
