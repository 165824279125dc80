//! What the load generator asks for: which operation comes next (an exact
//! set:get cycle, like memtier's `--ratio`) and which key it touches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How keys are chosen from the key space.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyPattern {
    /// Uniformly random keys (independent per connection).
    Random,
    /// Keys 0, 1, 2, ... shared by all connections: one pass populates a store.
    Sequential,
}

/// The next operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
}

/// `SETS:GETS`, memtier's `--ratio` order (`1:10` is one set per ten gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Ratio {
    pub sets: u32,
    pub gets: u32,
}

impl std::str::FromStr for Ratio {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("ratio must be SETS:GETS, e.g. 1:10, got {s:?}");
        let (a, b) = s.split_once(':').ok_or_else(err)?;
        let sets = a.trim().parse().map_err(|_| err())?;
        let gets = b.trim().parse().map_err(|_| err())?;
        if sets == 0 && gets == 0 {
            return Err("ratio 0:0 issues nothing".into());
        }
        Ok(Ratio { sets, gets })
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.sets, self.gets)
    }
}

/// One connection's request stream: deterministic op mix, keys by pattern.
pub struct Workload {
    ratio: Ratio,
    step: u64,
    pattern: KeyPattern,
    key_space: u64,
    prefix: String,
    rng: fastrand::Rng,
    sequence: Arc<AtomicU64>,
    key: Vec<u8>,
}

impl Workload {
    /// `sequence` is shared by all connections of a run (sequential keys).
    pub fn new(
        ratio: Ratio,
        pattern: KeyPattern,
        key_space: u64,
        prefix: &str,
        seed: u64,
        sequence: Arc<AtomicU64>,
    ) -> Self {
        Workload {
            ratio,
            // Stagger connections so they don't all set at the same moment.
            step: seed,
            pattern,
            key_space: key_space.max(1),
            prefix: prefix.to_owned(),
            rng: fastrand::Rng::with_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xbe5c),
            sequence,
            key: Vec::with_capacity(prefix.len() + 20),
        }
    }

    /// The next operation in the exact set:get cycle.
    pub fn next_op(&mut self) -> Op {
        let cycle = u64::from(self.ratio.sets) + u64::from(self.ratio.gets);
        let op = if self.step % cycle < u64::from(self.ratio.sets) {
            Op::Set
        } else {
            Op::Get
        };
        self.step = self.step.wrapping_add(1);
        op
    }

    /// The next key; the returned slice is valid until the next call.
    pub fn next_key(&mut self) -> &[u8] {
        let n = match self.pattern {
            KeyPattern::Random => self.rng.u64(0..self.key_space),
            KeyPattern::Sequential => {
                self.sequence.fetch_add(1, Ordering::Relaxed) % self.key_space
            }
        };
        self.key.clear();
        self.key.extend_from_slice(self.prefix.as_bytes());
        self.key
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(ratio: &str, pattern: KeyPattern, space: u64, seq: &Arc<AtomicU64>) -> Workload {
        Workload::new(
            ratio.parse().unwrap(),
            pattern,
            space,
            "key:",
            0,
            seq.clone(),
        )
    }

    #[test]
    fn ratio_parses_and_rejects() {
        assert_eq!("1:10".parse::<Ratio>(), Ok(Ratio { sets: 1, gets: 10 }));
        assert!("0:0".parse::<Ratio>().is_err());
        assert!("1-10".parse::<Ratio>().is_err());
        assert!("a:1".parse::<Ratio>().is_err());
    }

    #[test]
    fn op_mix_is_exact() {
        let seq = Arc::new(AtomicU64::new(0));
        let mut w = workload("1:10", KeyPattern::Random, 10, &seq);
        let sets = (0..1100).filter(|_| w.next_op() == Op::Set).count();
        assert_eq!(sets, 100);
        let mut only_sets = workload("1:0", KeyPattern::Random, 10, &seq);
        assert!((0..50).all(|_| only_sets.next_op() == Op::Set));
    }

    #[test]
    fn sequential_keys_are_shared_and_wrap() {
        let seq = Arc::new(AtomicU64::new(0));
        let mut a = workload("1:0", KeyPattern::Sequential, 3, &seq);
        let mut b = workload("1:0", KeyPattern::Sequential, 3, &seq);
        assert_eq!(a.next_key(), b"key:0");
        assert_eq!(b.next_key(), b"key:1");
        assert_eq!(a.next_key(), b"key:2");
        assert_eq!(b.next_key(), b"key:0");
    }

    #[test]
    fn random_keys_stay_in_the_key_space() {
        let seq = Arc::new(AtomicU64::new(0));
        let mut w = workload("0:1", KeyPattern::Random, 5, &seq);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let k = String::from_utf8(w.next_key().to_vec()).unwrap();
            let n: u64 = k.strip_prefix("key:").unwrap().parse().unwrap();
            assert!(n < 5);
            seen.insert(n);
        }
        assert_eq!(seen.len(), 5);
    }
}
