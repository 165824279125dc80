//! A record as the store hands it around ([`Raw`]), and the memory
//! index's form of one ([`Entry`]): key and record in a single allocation.
//!
//! Why an index entry of its own rather than sled's `IVec`: the index holds
//! every item, so its per-item cost is the store's. An `IVec` is a 40-byte
//! handle to an `Arc<[u8]>` (16 bytes of counts before the record), and the
//! key needed an allocation of its own beside it; an [`Entry`] is an 8-byte
//! pointer to one block of `[count: 8][length: 8][key length: 2][key]
//! [record]` (triomphe's `ThinArc`, no weak count), which for a 10-byte key
//! and a 100-byte value (127-byte record) is 155 bytes, one 160-byte malloc
//! chunk. And because the index no longer shares sled's buffers, sled's page
//! cache can really drop what it evicts (see `bench/profile.md`, session 6).
//!
//! A read takes a reference to the entry (one atomic increment), never a
//! copy; a write builds a new entry, and sled gets its own copy when the
//! write-behind hands the key over.

use std::ops::Deref;

use sled::IVec;
use triomphe::ThinArc;

/// Set in an entry's key length: the entry is a tombstone (no record).
const TOMBSTONE: u16 = 0x8000;

/// The longest key an [`Entry`] holds. Keys reaching the store are at most
/// 250 bytes (memcached's limit, checked by every front end).
pub const MAX_KEY: usize = TOMBSTONE as usize - 1;

/// One memory-index entry: a key and its record, or a tombstone (a key
/// whose removal must stay visible, see [`super::index`]). Immutable once
/// built; clones share it.
#[derive(Clone)]
pub struct Entry(ThinArc<(), u8>);

impl Entry {
    /// An entry for `key` holding `record` (`None`: a tombstone).
    ///
    /// Panics if `key` is longer than [`MAX_KEY`]: the store's callers
    /// never pass one (see [`MAX_KEY`]).
    pub fn new(key: &[u8], record: Option<&[u8]>) -> Self {
        let len = u16::try_from(key.len())
            .ok()
            .filter(|&l| usize::from(l) <= MAX_KEY)
            .expect("key longer than 32 KiB");
        let head = if record.is_none() {
            len | TOMBSTONE
        } else {
            len
        };
        let record = record.unwrap_or_default();
        // Assembled in a reused buffer, then copied into the entry in one
        // piece: no allocation besides the entry's own.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            buf.extend_from_slice(&head.to_le_bytes());
            buf.extend_from_slice(key);
            buf.extend_from_slice(record);
            let entry = Entry(ThinArc::from_header_and_slice((), &buf));
            if buf.capacity() > 64 * 1024 {
                // A one-off large record: do not keep its buffer.
                *buf = Vec::new();
            }
            entry
        })
    }

    fn head(&self) -> u16 {
        u16::from_le_bytes([self.0.slice[0], self.0.slice[1]])
    }

    fn key_end(&self) -> usize {
        2 + usize::from(self.head() & !TOMBSTONE)
    }

    pub fn key(&self) -> &[u8] {
        &self.0.slice[2..self.key_end()]
    }

    /// The record, `None` for a tombstone.
    pub fn record(&self) -> Option<&[u8]> {
        (self.head() & TOMBSTONE == 0).then(|| &self.0.slice[self.key_end()..])
    }

    pub fn is_tombstone(&self) -> bool {
        self.head() & TOMBSTONE != 0
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key())
            .field("record", &self.record())
            .finish()
    }
}

/// A record's bytes, shared rather than copied: read from sled (its `IVec`)
/// or from the memory index (an [`Entry`] holding a record). Compares by
/// content, whatever the source.
#[derive(Clone)]
pub enum Raw {
    Sled(IVec),
    /// Always a record, never a tombstone (see [`Raw::indexed`]).
    Indexed(Entry),
}

impl Raw {
    /// `entry`'s record, `None` if it is a tombstone.
    pub fn indexed(entry: &Entry) -> Option<Raw> {
        entry.record()?;
        Some(Raw::Indexed(entry.clone()))
    }
}

impl Deref for Raw {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Raw::Sled(v) => v,
            // Empty for a tombstone, which `Raw::indexed` never wraps.
            Raw::Indexed(e) => e.record().unwrap_or_default(),
        }
    }
}

impl AsRef<[u8]> for Raw {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Raw {
    fn eq(&self, other: &Raw) -> bool {
        **self == **other
    }
}

impl Eq for Raw {}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl From<IVec> for Raw {
    fn from(v: IVec) -> Raw {
        Raw::Sled(v)
    }
}

impl From<Vec<u8>> for Raw {
    fn from(v: Vec<u8>) -> Raw {
        Raw::Sled(v.into())
    }
}

impl From<&Raw> for IVec {
    /// sled's copy (an `IVec` it already had is shared, not copied).
    fn from(r: &Raw) -> IVec {
        match r {
            Raw::Sled(v) => v.clone(),
            Raw::Indexed(_) => IVec::from(&**r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holds_its_key_and_record_or_a_tombstone() {
        for key in [&b""[..], b"k", &[0xff; 250], &[7; MAX_KEY]] {
            for record in [
                Some(&b""[..]),
                Some(b"\x02record"),
                Some(&[0x80; 3000]),
                None,
            ] {
                let e = Entry::new(key, record);
                assert_eq!(e.key(), key);
                assert_eq!(e.record(), record);
                assert_eq!(e.is_tombstone(), record.is_none());
                let shared = e.clone();
                drop(e);
                assert_eq!((shared.key(), shared.record()), (key, record));
            }
        }
    }

    #[test]
    #[should_panic(expected = "key longer than 32 KiB")]
    fn an_over_long_key_is_refused_not_misread() {
        Entry::new(&[0; MAX_KEY + 1], Some(b"v"));
    }

    #[test]
    fn raw_compares_by_content_whatever_its_source() {
        let from_index = Raw::indexed(&Entry::new(b"k", Some(b"rec"))).unwrap();
        let from_sled = Raw::from(IVec::from(&b"rec"[..]));
        assert_eq!(from_index, from_sled);
        assert_eq!(&*from_index, b"rec");
        assert_ne!(from_index, Raw::from(b"other".to_vec()));
        assert_eq!(IVec::from(&from_index), IVec::from(&b"rec"[..]));
        assert!(Raw::indexed(&Entry::new(b"k", None)).is_none());
    }

    #[test]
    fn entries_after_a_large_one_are_whole() {
        let big = vec![1u8; 1 << 20];
        let e = Entry::new(b"big", Some(&big));
        assert_eq!(e.record().map(<[u8]>::len), Some(1 << 20));
        let small = Entry::new(b"s", Some(b"x"));
        assert_eq!(small.record(), Some(&b"x"[..]));
    }
}
