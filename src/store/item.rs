//! One stored item and its on-disk encoding.
//!
//! Layout (all little endian), versioned by the first byte so a later format
//! can be read beside this one without a hand-run migration:
//!
//! ```text
//! v1: [format = 1][flags: u32][exptime: u64 absolute unix secs, 0 = never][cas: u64][value ...]
//! v2: [format = 2][flags: u32][exptime: u64][cas: u64][state: u8][atime: u32 unix secs][value ...]
//! ```
//!
//! v2 adds what the meta protocol reports and memcached keeps per item:
//! the [`state`] bits (fetched, stale, win token sent, binary key) and the
//! last access time. Every write produces v2; v1 records still read (as
//! never fetched, not stale, last accessed "now").

pub use super::record::Raw;
#[cfg(test)]
use sled::IVec;

/// The first format byte; records written by older builds still read.
pub const FORMAT_V1: u8 = 1;
/// The format byte written in front of every new item.
pub const FORMAT_V2: u8 = 2;
const HEADER: usize = 1 + 4 + 8 + 8;
const HEADER_V2: usize = HEADER + 1 + 4;

/// Per-item state bits of a v2 record (memcached's `it_flags` subset).
pub mod state {
    /// Read at least once since it was written (meta `h`).
    pub const FETCHED: u8 = 1;
    /// Invalidated by `md I` / `ms I`: served with `X` until rewritten.
    pub const STALE: u8 = 2;
    /// A client already got the recache win token (`W`); others see `Z`.
    pub const TOKEN_SENT: u8 = 4;
    /// The key was given base64-encoded (meta `b`); `k` echoes it that way.
    pub const KEY_BINARY: u8 = 8;
}

/// A stored item, sharing the record's buffer (sled's or the memory
/// index's: no copy of the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    raw: Raw,
}

/// Why a stored record could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("corrupt item record ({0})")]
pub struct CorruptItem(&'static str);

impl Item {
    /// Wraps a stored record, checking its header.
    pub fn from_raw(raw: Raw) -> Result<Self, CorruptItem> {
        let need = match raw.first() {
            Some(&FORMAT_V1) => HEADER,
            Some(&FORMAT_V2) => HEADER_V2,
            Some(_) => return Err(CorruptItem("unknown format byte")),
            None => return Err(CorruptItem("short header")),
        };
        if raw.len() < need {
            return Err(CorruptItem("short header"));
        }
        Ok(Item { raw })
    }

    /// Encodes a fresh record (no state bits, accessed now); `value` may
    /// come in pieces (append/prepend).
    pub fn encode(flags: u32, exptime: u64, cas: u64, value: &[&[u8]]) -> Vec<u8> {
        Self::encode_with(
            flags,
            exptime,
            cas,
            0,
            crate::rules::clock::system_now(),
            value,
        )
    }

    /// Encodes a v2 record with explicit [`state`] bits and access time.
    pub fn encode_with(
        flags: u32,
        exptime: u64,
        cas: u64,
        state: u8,
        atime: u64,
        value: &[&[u8]],
    ) -> Vec<u8> {
        let len: usize = value.iter().map(|p| p.len()).sum();
        let mut out = Vec::with_capacity(HEADER_V2 + len);
        out.push(FORMAT_V2);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&exptime.to_le_bytes());
        out.extend_from_slice(&cas.to_le_bytes());
        out.push(state);
        out.extend_from_slice(&u32::try_from(atime).unwrap_or(u32::MAX).to_le_bytes());
        for part in value {
            out.extend_from_slice(part);
        }
        out
    }

    /// This item re-encoded (always as v2) with the same flags, CAS and
    /// value but a new exptime, state and access time.
    pub fn rewrite(&self, exptime: u64, state: u8, atime: u64) -> Vec<u8> {
        Self::encode_with(
            self.flags(),
            exptime,
            self.cas(),
            state,
            atime,
            &[self.value()],
        )
    }

    fn header_len(&self) -> usize {
        if self.raw[0] == FORMAT_V1 {
            HEADER
        } else {
            HEADER_V2
        }
    }

    /// The [`state`] bits (0 for v1 records).
    pub fn state(&self) -> u8 {
        if self.raw[0] == FORMAT_V1 {
            0
        } else {
            self.raw[HEADER]
        }
    }

    /// Read at least once since it was written (meta `h`, `me`'s `fetch`).
    pub fn fetched(&self) -> bool {
        self.state() & state::FETCHED != 0
    }

    /// The key was given base64-encoded (meta `b`), so `k` echoes it so.
    pub fn binary_key(&self) -> bool {
        self.state() & state::KEY_BINARY != 0
    }

    /// Last access (unix secs); `None` for v1 records, which never kept it.
    pub fn atime(&self) -> Option<u64> {
        (self.raw[0] != FORMAT_V1).then(|| {
            u32::from_le_bytes(self.raw[HEADER + 1..HEADER_V2].try_into().expect("4 bytes")) as u64
        })
    }

    pub fn flags(&self) -> u32 {
        u32::from_le_bytes(self.raw[1..5].try_into().expect("4 bytes"))
    }

    /// The exptime of an encoded record (0 when too short to hold one).
    pub fn record_exptime(record: &[u8]) -> u64 {
        record
            .get(5..13)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// Absolute expiry in unix seconds; 0 means never.
    pub fn exptime(&self) -> u64 {
        u64::from_le_bytes(self.raw[5..13].try_into().expect("8 bytes"))
    }

    pub fn cas(&self) -> u64 {
        u64::from_le_bytes(self.raw[13..21].try_into().expect("8 bytes"))
    }

    pub fn value(&self) -> &[u8] {
        &self.raw[self.header_len()..]
    }

    /// Length of the record [`Item::encode`] makes for a value this long
    /// (every write makes a v2 record).
    pub fn record_len(value_len: usize) -> usize {
        HEADER_V2 + value_len
    }

    /// Size accounted in `bytes` stats: key + value + header.
    pub fn footprint(key_len: usize, raw_len: usize) -> u64 {
        (key_len + raw_len) as u64
    }

    pub fn raw(&self) -> &Raw {
        &self.raw
    }

    pub fn is_expired(&self, now: u64) -> bool {
        crate::rules::exptime::is_expired(self.exptime(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_len_is_the_length_encode_makes() {
        for n in [0, 1, 10, 1000] {
            let value = vec![b'x'; n];
            assert_eq!(Item::record_len(n), Item::encode(0, 0, 1, &[&value]).len());
        }
    }

    #[test]
    fn round_trips_every_field() {
        let raw = Item::encode(0xdead_beef, 1_900_000_000, 42, &[b"ab", b"", b"c\r\n"]);
        let item = Item::from_raw(raw.into()).unwrap();
        assert_eq!(item.flags(), 0xdead_beef);
        assert_eq!(item.exptime(), 1_900_000_000);
        assert_eq!(item.cas(), 42);
        assert_eq!(item.value(), b"abc\r\n");
        assert_eq!(item.state(), 0);
        let item = Item::from_raw(item.rewrite(7, state::STALE, 1_800_000_000).into()).unwrap();
        assert_eq!(
            (item.exptime(), item.cas(), item.value()),
            (7, 42, &b"abc\r\n"[..])
        );
        assert_eq!(
            (item.state(), item.atime()),
            (state::STALE, Some(1_800_000_000))
        );
    }

    #[test]
    fn still_reads_v1_records() {
        let mut raw = vec![FORMAT_V1];
        raw.extend_from_slice(&9u32.to_le_bytes());
        raw.extend_from_slice(&0u64.to_le_bytes());
        raw.extend_from_slice(&5u64.to_le_bytes());
        raw.extend_from_slice(b"old");
        let item = Item::from_raw(raw.into()).unwrap();
        assert_eq!(
            (item.flags(), item.cas(), item.value()),
            (9, 5, &b"old"[..])
        );
        assert_eq!((item.state(), item.atime()), (0, None));
        let v2 = Item::from_raw(item.rewrite(0, state::FETCHED, 3).into()).unwrap();
        assert_eq!(
            (v2.flags(), v2.cas(), v2.value(), v2.state()),
            (9, 5, &b"old"[..], state::FETCHED)
        );
    }

    #[test]
    fn rejects_short_or_unknown_records() {
        assert!(Item::from_raw(IVec::from(&b"\x01abc"[..]).into()).is_err());
        assert!(Item::from_raw(IVec::from(&[FORMAT_V2; 22][..]).into()).is_err());
        let mut raw = Item::encode(0, 0, 1, &[b"x"]);
        raw[0] = 9;
        assert!(Item::from_raw(raw.into()).is_err());
    }
}
