//! One stored item and its on-disk encoding.
//!
//! Layout (all little endian), versioned by the first byte so a later format
//! can be read beside this one without a hand-run migration:
//!
//! ```text
//! [format = 1][flags: u32][exptime: u64 absolute unix secs, 0 = never][cas: u64][value ...]
//! ```

use sled::IVec;

/// The format byte written in front of every item.
pub const FORMAT_V1: u8 = 1;
const HEADER: usize = 1 + 4 + 8 + 8;

/// A stored item, borrowed straight from sled's buffer (no copy of the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    raw: IVec,
}

/// Why a stored record could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("corrupt item record ({0})")]
pub struct CorruptItem(&'static str);

impl Item {
    /// Wraps a record read from sled, checking its header.
    pub fn from_raw(raw: IVec) -> Result<Self, CorruptItem> {
        if raw.len() < HEADER {
            return Err(CorruptItem("short header"));
        }
        if raw[0] != FORMAT_V1 {
            return Err(CorruptItem("unknown format byte"));
        }
        Ok(Item { raw })
    }

    /// Encodes a record; `value` may come in pieces (append/prepend).
    pub fn encode(flags: u32, exptime: u64, cas: u64, value: &[&[u8]]) -> Vec<u8> {
        let len: usize = value.iter().map(|p| p.len()).sum();
        let mut out = Vec::with_capacity(HEADER + len);
        out.push(FORMAT_V1);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&exptime.to_le_bytes());
        out.extend_from_slice(&cas.to_le_bytes());
        for part in value {
            out.extend_from_slice(part);
        }
        out
    }

    pub fn flags(&self) -> u32 {
        u32::from_le_bytes(self.raw[1..5].try_into().expect("4 bytes"))
    }

    /// Absolute expiry in unix seconds; 0 means never.
    pub fn exptime(&self) -> u64 {
        u64::from_le_bytes(self.raw[5..13].try_into().expect("8 bytes"))
    }

    pub fn cas(&self) -> u64 {
        u64::from_le_bytes(self.raw[13..21].try_into().expect("8 bytes"))
    }

    pub fn value(&self) -> &[u8] {
        &self.raw[HEADER..]
    }

    /// Length of the record [`Item::encode`] makes for a value this long.
    pub fn record_len(value_len: usize) -> usize {
        HEADER + value_len
    }

    /// Size accounted in `bytes` stats: key + value + header.
    pub fn footprint(key_len: usize, raw_len: usize) -> u64 {
        (key_len + raw_len) as u64
    }

    pub fn raw(&self) -> &IVec {
        &self.raw
    }

    pub fn is_expired(&self, now: u64) -> bool {
        super::expiry::is_expired(self.exptime(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let raw = Item::encode(0xdead_beef, 1_900_000_000, 42, &[b"ab", b"", b"c\r\n"]);
        let item = Item::from_raw(raw.into()).unwrap();
        assert_eq!(item.flags(), 0xdead_beef);
        assert_eq!(item.exptime(), 1_900_000_000);
        assert_eq!(item.cas(), 42);
        assert_eq!(item.value(), b"abc\r\n");
    }

    #[test]
    fn rejects_short_or_unknown_records() {
        assert!(Item::from_raw(IVec::from(&b"\x01abc"[..])).is_err());
        let mut raw = Item::encode(0, 0, 1, &[b"x"]);
        raw[0] = 9;
        assert!(Item::from_raw(raw.into()).is_err());
    }
}
